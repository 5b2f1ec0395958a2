//! The quick start: the simulator in-process, seeded with the fleet of `examples/`, and the real tick
//! engine on the example `CloudPhone` manifests held in memory, shown converging tick by tick.

use crate::api::{CloudPhone, EffectiveReason, Phase};
use crate::flags::{parse_duration, parse_interval};
use crate::koophone::{Client, ClientConfig, Token};
use crate::plan::{PlanConfig, READY, is_settled};
use crate::reconciler::{Engine, EngineConfig, MemoryStore, PhoneStore, TickReport};
use crate::sim::{self, SimConfig, Simulator, Timings};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The example manifests, embedded so that the demo runs from any directory.
const EXAMPLE_CLOUDPHONES: &str = include_str!("../examples/cloudphones.yaml");
/// The example simulator fleet, embedded likewise.
const EXAMPLE_FLEET: &str = include_str!("../examples/simulator-fleet.yaml");

/// The user's session the demo starts: on this instance, for this long (a shift phone of the
/// examples, BackedUp with an idle timeout).
const DEMO_SESSION: (&str, Duration) = ("kp0801", Duration::from_secs(5));

/// Flags of `cloudphone-operator demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// CloudPhone manifests (multi-document YAML); default: the embedded examples/cloudphones.yaml.
    #[arg(long, env = "CLOUDPHONE_DEMO_CLOUDPHONES")]
    pub cloudphones: Option<PathBuf>,
    /// The simulator's fleet; default: the embedded examples/simulator-fleet.yaml.
    #[arg(long, env = "CLOUDPHONE_DEMO_FLEET")]
    pub fleet: Option<PathBuf>,
    /// Time between ticks.
    #[arg(long, env = "CLOUDPHONE_DEMO_TICK_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    pub tick_interval: Duration,
    /// How long the simulated vendor takes to back up an instance.
    #[arg(long, env = "CLOUDPHONE_DEMO_BACKUP_DURATION", default_value = "3s", value_parser = parse_duration)]
    pub backup_duration: Duration,
    /// Give up (and exit 1) when the fleet has not settled after this long.
    #[arg(long, env = "CLOUDPHONE_DEMO_TIMEOUT", default_value = "50s", value_parser = parse_duration)]
    pub timeout: Duration,
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
    for (index, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = yaml_serde::Value::deserialize(document).map_err(|e| DemoError::Manifest {
            source_name: source_name.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let phone: CloudPhone = yaml_serde::from_value(value).map_err(|e| DemoError::Manifest {
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

/// Gives manifests what the API server would: a uid, a generation, and a creation time (in
/// document order, so that the first of two objects naming one instance is the older).
fn as_if_created(mut phones: Vec<CloudPhone>) -> Vec<CloudPhone> {
    let base = Timestamp::now().as_second() - 3600;
    for (i, phone) in phones.iter_mut().enumerate() {
        let meta = &mut phone.metadata;
        meta.uid
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        meta.generation.get_or_insert(1);
        meta.namespace.get_or_insert_with(|| "default".to_owned());
        if meta.creation_timestamp.is_none() {
            let t = Timestamp::from_second(base + i as i64).unwrap_or_else(|_| Timestamp::now());
            meta.creation_timestamp = Some(Time(t));
        }
    }
    phones
}

/// Runs the demo; `Ok(true)` when every phone reached what it declares or was reported unable to.
pub async fn run(args: DemoArgs) -> Result<bool, DemoError> {
    let (name, text) = read_or_embedded(&args.cloudphones, EXAMPLE_CLOUDPHONES)?;
    let phones = as_if_created(parse_manifests(&name, &text)?);
    let fleet = match &args.fleet {
        Some(path) => sim::read_seed_file(path)?,
        None => sim::parse_seed_text("(embedded examples)", EXAMPLE_FLEET)?,
    };
    let simulator = Simulator::start(
        SimConfig {
            instances: fleet,
            timings: Timings {
                backup_duration: args.backup_duration,
                restore_duration: args.backup_duration,
                ..Timings::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("a literal socket address"),
    )
    .await?;
    if simulator.start_session(DEMO_SESSION.0, DEMO_SESSION.1) {
        println!(
            "demo: a user streams from {} for {} (its phone waits for idleness before it is parked)",
            DEMO_SESSION.0,
            humantime::format_duration(DEMO_SESSION.1)
        );
    }
    let client = Client::new(
        ClientConfig {
            base_url: simulator.url(),
            ..ClientConfig::default()
        },
        Token::new("demo-token"),
    )?;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = Engine::new(
        store.clone(),
        client,
        EngineConfig {
            plan: PlanConfig {
                grace_period: Duration::from_secs(10),
                backoff_base: Duration::from_secs(2),
                backoff_max: Duration::from_secs(20),
                prepare_grace_period: Duration::from_secs(20),
                ..PlanConfig::default()
            },
            ..EngineConfig::default()
        },
    );
    println!(
        "demo: {} CloudPhones against the vendor simulator at {} (backups take {}); ticking every {}",
        store.snapshot().len(),
        simulator.url(),
        humantime::format_duration(args.backup_duration),
        humantime::format_duration(args.tick_interval)
    );
    let started = Instant::now();
    let mut tick = 0;
    let settled = loop {
        tick += 1;
        let report = engine.tick().await;
        let snapshot = store.snapshot();
        println!("{}", tick_line(tick, &report, &snapshot));
        // NB: a phone waiting for idleness is where it should be for now, but the demo shows it
        // parked.
        if snapshot.iter().all(|p| {
            p.status.as_ref().is_some_and(|s| {
                is_settled(s) && s.effective_reason != Some(EffectiveReason::WaitingForIdle)
            })
        }) {
            break true;
        }
        if started.elapsed() >= args.timeout {
            break false;
        }
        tokio::time::sleep(args.tick_interval).await;
    };
    let snapshot = store.snapshot();
    print_summary(&snapshot);
    let counters = simulator.counters();
    println!(
        "vendor calls: {} status queries, {} backup calls, {} prepare calls; {} backups started, {} prepares started; {} status writes",
        counters.calls("batch-query-status"),
        counters.calls("backup"),
        counters.calls("prepare"),
        counters.backups_started,
        counters.prepares_started,
        store.writes()
    );
    if settled {
        println!(
            "settled after {tick} ticks ({:.1}s): every phone reached its declared lifecycle or says why it cannot",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "not settled after {}: the phones above still in progress did not finish",
            humantime::format_duration(args.timeout)
        );
    }
    simulator.shutdown().await;
    Ok(settled)
}

/// `tick  3 | Idle 12, BackingUp 8, ... | 1 status call, 1 backup call, 1 prepare call, 14 writes`
fn tick_line(tick: usize, report: &TickReport, snapshot: &[Arc<CloudPhone>]) -> String {
    let mut by_phase: BTreeMap<usize, (Phase, usize)> = BTreeMap::new();
    for phone in snapshot {
        let phase = phone.status.as_ref().map(|s| s.phase).unwrap_or_default();
        let order = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
        by_phase.entry(order).or_insert((phase, 0)).1 += 1;
    }
    let phases: Vec<String> = by_phase.values().map(|(p, n)| format!("{p} {n}")).collect();
    format!(
        "tick {tick:>2} | {} | {} status calls, {} backup calls, {} backups requested, {} prepare calls, {} prepares requested, {} statuses written",
        phases.join(", "),
        report.status_calls,
        report.backup_calls,
        report.backups_requested,
        report.prepare_calls,
        report.prepares_requested,
        report.statuses_written
    )
}

fn print_summary(snapshot: &[Arc<CloudPhone>]) {
    println!();
    println!(
        "{:<30} {:<12} {:<10} {:<10} {:<13} {:<7} {:<17} MESSAGE",
        "NAME", "INSTANCE", "LIFECYCLE", "EFFECTIVE", "PHASE", "READY", "REASON"
    );
    for phone in snapshot {
        let status = phone.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == READY);
        let message: String = ready
            .map_or("", |c| c.message.as_str())
            .chars()
            .take(90)
            .collect();
        println!(
            "{:<30} {:<12} {:<10} {:<10} {:<13} {:<7} {:<17} {}",
            format!(
                "{}/{}",
                phone.metadata.namespace.as_deref().unwrap_or(""),
                phone.metadata.name.as_deref().unwrap_or("")
            ),
            phone.spec.instance_id.chars().take(12).collect::<String>(),
            phone.spec.lifecycle.as_str(),
            status.effective_lifecycle.map_or("-", |l| l.as_str()),
            status.phase.as_str(),
            ready.map_or("-", |c| c.status.as_str()),
            ready.map_or("-", |c| c.reason.as_str()),
            message
        );
    }
    println!();
}
