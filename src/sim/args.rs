//! The flags of `cloudphone-operator simulate`, and the simulator's configuration they make.

use crate::flags::parse_duration;
use crate::sim::{self, Faults, SimConfig, Timings};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not a probability in [0, 1]"))
    }
}

/// Flags of `cloudphone-operator simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, env = "CLOUDPHONE_SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// An instance to create, as ID=STATE (STATE: a status code or a name such as DataLoaded). Repeatable.
    #[arg(
        long = "instance",
        env = "CLOUDPHONE_SIM_INSTANCE",
        value_delimiter = ',',
        value_name = "ID=STATE"
    )]
    instances: Vec<String>,
    /// A YAML or JSON file of instances: `instances: [{instance_id: a1, status: DataLoaded}]`.
    #[arg(long, env = "CLOUDPHONE_SIM_SEED_FILE")]
    seed_file: Option<PathBuf>,
    /// A token the vendor endpoints accept (repeatable); without any, any non-empty token is accepted.
    #[arg(
        long = "accept-token",
        env = "CLOUDPHONE_SIM_ACCEPT_TOKEN",
        hide_env_values = true
    )]
    accept_tokens: Vec<String>,
    /// An IAM user the simulated IAM endpoint issues tokens to, as USER@DOMAIN=PASSWORD (repeatable).
    #[arg(long = "iam-user", env = "CLOUDPHONE_SIM_IAM_USER", hide_env_values = true, value_delimiter = ',', value_name = "USER@DOMAIN=PASSWORD", value_parser = parse_iam_user)]
    iam_users: Vec<sim::IamUser>,
    /// Lifetime of the tokens the simulated IAM endpoint issues.
    #[arg(long, env = "CLOUDPHONE_SIM_TOKEN_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    token_lifetime: Duration,
    /// An access key pair whose signed calls are accepted, as AK=SK (repeatable).
    #[arg(long = "access-key", env = "CLOUDPHONE_SIM_ACCESS_KEY", hide_env_values = true, value_delimiter = ',', value_name = "AK=SK", value_parser = parse_access_key)]
    access_keys: Vec<(String, String)>,
    /// A token of a tenant other than the default one, as TENANT=TOKEN (repeatable): its calls
    /// see only the tenant's instances, seeded as TENANT/ID.
    #[arg(long = "tenant-token", env = "CLOUDPHONE_SIM_TENANT_TOKEN", hide_env_values = true, value_delimiter = ',', value_name = "TENANT=TOKEN", value_parser = parse_tenant_token)]
    tenant_tokens: Vec<(String, String)>,
    /// How long a backup takes.
    #[arg(long, env = "CLOUDPHONE_SIM_BACKUP_DURATION", default_value = "3s", value_parser = parse_duration)]
    backup_duration: Duration,
    /// How long a restore takes.
    #[arg(long, env = "CLOUDPHONE_SIM_RESTORE_DURATION", default_value = "3s", value_parser = parse_duration)]
    restore_duration: Duration,
    /// Probability that a backup ends in BackupFailed (5).
    #[arg(long, env = "CLOUDPHONE_SIM_BACKUP_FAILURE_RATE", default_value = "0", value_parser = parse_rate)]
    backup_failure_rate: f64,
    /// How long an accepted backup waits in the vendor's queue (the instance still showing its old
    /// status) before it shows BackingUp; a backup call naming a queued instance is answered 2006.
    #[arg(long, env = "CLOUDPHONE_SIM_BACKUP_QUEUE_DELAY", default_value = "0ms", value_parser = parse_duration)]
    backup_queue_delay: Duration,
    /// Probability that a restore (after a prepare) ends in RestoreFailed (6).
    #[arg(long, env = "CLOUDPHONE_SIM_RESTORE_FAILURE_RATE", default_value = "0", value_parser = parse_rate)]
    restore_failure_rate: f64,
    /// How long an accepted prepare waits in the vendor's queue (the instance still showing Idle)
    /// before it shows Restoring; a backup call naming a queued instance is answered 2005.
    #[arg(long, env = "CLOUDPHONE_SIM_PREPARE_QUEUE_DELAY", default_value = "0ms", value_parser = parse_duration)]
    prepare_queue_delay: Duration,
    /// Latency added to every answer.
    #[arg(long, env = "CLOUDPHONE_SIM_LATENCY", default_value = "0ms", value_parser = parse_duration)]
    latency: Duration,
    /// Rate of calls delayed by a further --latency-spike.
    #[arg(long, env = "CLOUDPHONE_SIM_LATENCY_SPIKE_RATE", default_value = "0", value_parser = parse_rate)]
    latency_spike_rate: f64,
    /// The extra delay of a latency spike.
    #[arg(long, env = "CLOUDPHONE_SIM_LATENCY_SPIKE", default_value = "0ms", value_parser = parse_duration)]
    latency_spike: Duration,
    /// Rate of HTTP 500 answers.
    #[arg(long, env = "CLOUDPHONE_SIM_SERVER_ERROR_RATE", default_value = "0", value_parser = parse_rate)]
    server_error_rate: f64,
    /// Rate of HTTP 429 answers (with Retry-After: 1).
    #[arg(long, env = "CLOUDPHONE_SIM_RATE_LIMIT_RATE", default_value = "0", value_parser = parse_rate)]
    rate_limit_rate: f64,
    /// Rate of HTTP 200 answers carrying business error 9999.
    #[arg(long, env = "CLOUDPHONE_SIM_BUSINESS_ERROR_RATE", default_value = "0", value_parser = parse_rate)]
    business_error_rate: f64,
    /// Rate of HTTP 200 answers whose body is not JSON.
    #[arg(long, env = "CLOUDPHONE_SIM_GARBAGE_RATE", default_value = "0", value_parser = parse_rate)]
    garbage_rate: f64,
    /// An instance id to pretend not to know (repeatable).
    #[arg(
        long = "unknown-id",
        env = "CLOUDPHONE_SIM_UNKNOWN_ID",
        value_delimiter = ','
    )]
    unknown_ids: Vec<String>,
    /// An instance id to refuse as a wrong parameter: any call naming it is answered 400 (repeatable).
    #[arg(
        long = "rejected-id",
        env = "CLOUDPHONE_SIM_REJECTED_ID",
        value_delimiter = ','
    )]
    rejected_ids: Vec<String>,
    /// An instance id that is not the tenant's: any call naming it is answered HTTP 200 with
    /// business error 1012 (repeatable).
    #[arg(
        long = "foreign-id",
        env = "CLOUDPHONE_SIM_FOREIGN_ID",
        value_delimiter = ','
    )]
    foreign_ids: Vec<String>,
    /// An instance id the vendor says does not exist: any call naming it is answered HTTP 200
    /// with business error 4001 (repeatable).
    #[arg(
        long = "vanished-id",
        env = "CLOUDPHONE_SIM_VANISHED_ID",
        value_delimiter = ','
    )]
    vanished_ids: Vec<String>,
    /// Answer every call with this error, as HTTP:CODE (e.g. `400:0000`, tenant not found).
    #[arg(long, env = "CLOUDPHONE_SIM_ANSWER_ALL", value_name = "HTTP:CODE", value_parser = parse_canned)]
    answer_all: Option<sim::CannedError>,
    /// Answer every backup call with this error, as HTTP:CODE (status queries as usual).
    #[arg(long, env = "CLOUDPHONE_SIM_ANSWER_ALL_BACKUPS", value_name = "HTTP:CODE", value_parser = parse_canned)]
    answer_all_backups: Option<sim::CannedError>,
    /// Answer every prepare call with this error, as HTTP:CODE (status queries as usual).
    #[arg(long, env = "CLOUDPHONE_SIM_ANSWER_ALL_PREPARES", value_name = "HTTP:CODE", value_parser = parse_canned)]
    answer_all_prepares: Option<sim::CannedError>,
    /// Answer every prepare-progress call with this error, as HTTP:CODE (other calls as usual).
    #[arg(long, env = "CLOUDPHONE_SIM_ANSWER_ALL_PROGRESS", value_name = "HTTP:CODE", value_parser = parse_canned)]
    answer_all_progress: Option<sim::CannedError>,
    /// Answer in the older shapes (status results without `data`, backup without `data`).
    #[arg(long, env = "CLOUDPHONE_SIM_LEGACY_ANSWERS")]
    legacy_answers: bool,
    /// Answer refused backups with HTTP 200 instead of 400.
    #[arg(long, env = "CLOUDPHONE_SIM_BUSINESS_ERRORS_AS_200")]
    business_errors_as_200: bool,
    /// Seed of the simulator's randomness.
    #[arg(long, env = "CLOUDPHONE_SIM_SEED", default_value = "0")]
    seed: u64,
    /// Create an unknown instance in this state the first time a call names it.
    #[arg(long, env = "CLOUDPHONE_SIM_AUTO_CREATE", value_name = "STATE", value_parser = parse_state_flag)]
    auto_create: Option<i64>,
}

fn parse_iam_user(text: &str) -> Result<sim::IamUser, String> {
    let (who, password) = text
        .split_once('=')
        .ok_or("expected USER@DOMAIN=PASSWORD")?;
    let (name, domain) = who.split_once('@').ok_or("expected USER@DOMAIN=PASSWORD")?;
    Ok(sim::IamUser {
        name: name.to_owned(),
        password: password.to_owned(),
        domain: domain.to_owned(),
    })
}

fn parse_access_key(text: &str) -> Result<(String, String), String> {
    let (ak, sk) = text.split_once('=').ok_or("expected AK=SK")?;
    Ok((ak.to_owned(), sk.to_owned()))
}

fn parse_tenant_token(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((tenant, token))
            if !tenant.is_empty() && !token.is_empty() && !tenant.contains('/') =>
        {
            Ok((tenant.to_owned(), token.to_owned()))
        }
        _ => Err("expected TENANT=TOKEN (a tenant name without /, and a token)".to_owned()),
    }
}

fn parse_state_flag(text: &str) -> Result<i64, String> {
    sim::parse_state(text)
}

/// The tenants of `--tenant-token` flags.
fn tenants(tokens: Vec<(String, String)>) -> Vec<sim::SimTenant> {
    let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (tenant, token) in tokens {
        by_name.entry(tenant).or_default().push(token);
    }
    by_name
        .into_iter()
        .map(|(name, tokens)| sim::SimTenant {
            name,
            tokens,
            access_keys: Vec::new(),
        })
        .collect()
}

impl SimulateArgs {
    /// The simulator's configuration and listen address.
    pub fn into_config(self) -> Result<(SimConfig, SocketAddr), sim::SeedError> {
        let SimulateArgs {
            listen,
            instances,
            seed_file,
            accept_tokens,
            iam_users,
            token_lifetime,
            access_keys,
            tenant_tokens,
            backup_duration,
            restore_duration,
            backup_failure_rate,
            backup_queue_delay,
            restore_failure_rate,
            prepare_queue_delay,
            latency,
            latency_spike_rate,
            latency_spike,
            server_error_rate,
            rate_limit_rate,
            business_error_rate,
            garbage_rate,
            unknown_ids,
            rejected_ids,
            foreign_ids,
            vanished_ids,
            answer_all,
            answer_all_backups,
            answer_all_prepares,
            answer_all_progress,
            legacy_answers,
            business_errors_as_200,
            seed,
            auto_create,
        } = self;
        let mut seeded = match seed_file {
            Some(path) => sim::read_seed_file(&path)?,
            None => Vec::new(),
        };
        for flag in &instances {
            seeded.push(sim::parse_instance_flag(flag)?);
        }
        let config = SimConfig {
            instances: seeded,
            timings: Timings {
                backup_duration,
                restore_duration,
                backup_failure_rate,
                backup_queue_delay,
                restore_failure_rate,
                prepare_queue_delay,
            },
            faults: Faults {
                latency,
                latency_spike_rate,
                latency_spike,
                server_error_rate,
                rate_limit_rate,
                business_error_rate,
                garbage_rate,
                unknown_ids: unknown_ids.into_iter().collect(),
                legacy_answers,
                fail_next_calls: 0,
                rejected_ids: rejected_ids.into_iter().collect(),
                foreign_ids: foreign_ids.into_iter().collect(),
                vanished_ids: vanished_ids.into_iter().collect(),
                answer_all,
                answer_all_backups,
                answer_all_prepares,
                answer_all_progress,
            },
            tokens: accept_tokens,
            iam_users,
            token_lifetime: Some(token_lifetime),
            access_keys,
            business_errors_as_200,
            seed,
            auto_create,
            tenants: tenants(tenant_tokens),
        };
        Ok((config, listen))
    }
}

/// `HTTP:CODE`, e.g. `400:0000`.
fn parse_canned(text: &str) -> Result<sim::CannedError, String> {
    let (status, code) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not HTTP:CODE, e.g. 400:0000"))?;
    let status: u16 = status
        .trim()
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("{status:?} is not an HTTP status"))?;
    Ok(sim::CannedError {
        status,
        code: code.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn timings(flags: &[&str]) -> Result<Timings, String> {
        let cli = Cli::try_parse_from(std::iter::once("simulate").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        Ok(cli.args.into_config().map_err(|e| e.to_string())?.0.timings)
    }

    #[test]
    fn prepare_flags_set_the_timings_and_refuse_a_rate_that_is_not_a_probability() {
        let set = timings(&[
            "--restore-failure-rate",
            "0.25",
            "--prepare-queue-delay",
            "2s",
            "--restore-duration",
            "5s",
        ])
        .unwrap();
        assert_eq!(
            (
                set.restore_failure_rate,
                set.prepare_queue_delay,
                set.restore_duration
            ),
            (0.25, Duration::from_secs(2), Duration::from_secs(5))
        );
        let defaults = timings(&[]).unwrap();
        assert_eq!(
            (defaults.restore_failure_rate, defaults.prepare_queue_delay),
            (0.0, Duration::ZERO)
        );
        let refused = timings(&["--restore-failure-rate", "1.5"]).unwrap_err();
        assert!(refused.contains("--restore-failure-rate"), "{refused}");
    }
}
