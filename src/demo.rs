//! The quick start: the simulator in-process, seeded with the fleet of `examples/`, and the example
//! `CloudPhone` manifests held in memory.

use crate::api::{CloudPhone, Phase, check_instance_id};
use crate::koophone::{Client, ClientConfig, Token};
use crate::sim::{self, SimConfig, Simulator, Timings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The example manifests, embedded so that the demo runs from any directory.
const EXAMPLE_CLOUDPHONES: &str = include_str!("../examples/cloudphones.yaml");
/// The example simulator fleet, embedded likewise.
const EXAMPLE_FLEET: &str = include_str!("../examples/simulator-fleet.yaml");

/// Flags of `cloudphone-operator demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// CloudPhone manifests (multi-document YAML); default: the embedded examples/cloudphones.yaml.
    #[arg(long, env = "CLOUDPHONE_DEMO_CLOUDPHONES")]
    pub cloudphones: Option<PathBuf>,
    /// The simulator's fleet; default: the embedded examples/simulator-fleet.yaml.
    #[arg(long, env = "CLOUDPHONE_DEMO_FLEET")]
    pub fleet: Option<PathBuf>,
}

/// A demo input that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{source_name}: document {index}: {reason}")]
    Manifest {
        source_name: String,
        index: usize,
        reason: String,
    },
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error(transparent)]
    Seed(#[from] sim::SeedError),
    #[error(transparent)]
    Start(#[from] sim::StartError),
    #[error(transparent)]
    Client(#[from] crate::koophone::Error),
}

/// Reads multi-document YAML of `CloudPhone` objects, naming the document that does not parse.
pub fn parse_manifests(source_name: &str, text: &str) -> Result<Vec<CloudPhone>, DemoError> {
    use serde::Deserialize;
    let mut phones = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| DemoError::Manifest {
            source_name: source_name.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let phone: CloudPhone = serde_yaml::from_value(value).map_err(|e| DemoError::Manifest {
            source_name: source_name.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        phones.push(phone);
    }
    Ok(phones)
}

fn read_or_embedded(path: &Option<PathBuf>, embedded: &str) -> Result<(String, String), DemoError> {
    match path {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|e| DemoError::Read(path.display().to_string(), e)),
        None => Ok(("(embedded examples)".to_owned(), embedded.to_owned())),
    }
}

/// Runs the demo; `Ok(true)` when every phone was observed or reported with its reason.
pub async fn run(args: DemoArgs) -> Result<bool, DemoError> {
    let (name, text) = read_or_embedded(&args.cloudphones, EXAMPLE_CLOUDPHONES)?;
    let phones = parse_manifests(&name, &text)?;
    let fleet = match &args.fleet {
        Some(path) => sim::read_seed_file(path)?,
        None => sim::parse_seed_text("(embedded examples)", EXAMPLE_FLEET)?,
    };
    let simulator = Simulator::start(
        SimConfig {
            instances: fleet,
            timings: Timings {
                backup_duration: Duration::from_secs(2),
                ..Timings::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("a literal socket address"),
    )
    .await?;
    let client = Client::new(
        ClientConfig {
            base_url: simulator.url(),
            ..ClientConfig::default()
        },
        Token::new("demo-token"),
    )?;
    let ids: Vec<String> = phones
        .iter()
        .map(|p| p.spec.instance_id.clone())
        .filter(|id| check_instance_id(id).is_ok())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut observed = BTreeMap::new();
    for chunk in client.batch_query_status(&ids).await? {
        let report = chunk.result?;
        observed.extend(report.observed);
    }
    println!(
        "{:<28} {:<14} {:<10} {:>4}  PHASE",
        "NAME", "INSTANCE", "LIFECYCLE", "CODE"
    );
    for phone in &phones {
        let id = &phone.spec.instance_id;
        let (code, phase) = match (check_instance_id(id), observed.get(id)) {
            (Err(reason), _) => ("-".to_owned(), format!("invalid spec.instanceId: {reason}")),
            (Ok(()), Some(code)) => (code.to_string(), Phase::from_code(*code).to_string()),
            (Ok(()), None) => ("-".to_owned(), Phase::NotFound.to_string()),
        };
        println!(
            "{:<28} {:<14} {:<10} {:>4}  {}",
            phone.metadata.name.as_deref().unwrap_or("?"),
            id.chars().take(14).collect::<String>(),
            phone.spec.lifecycle.as_str(),
            code,
            phase
        );
    }
    simulator.shutdown().await;
    Ok(true)
}
