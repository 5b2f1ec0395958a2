//! Every flag of the binary: the `clap` structs of `run`, `simulate` and `demo`, and their value
//! parsers. Flags only; what they start lives beside (`run`), in [`crate::sim`] and [`crate::demo`].

use crate::koophone::DEFAULT_BASE_URL;
use crate::reconciler::SyncedAfter;
use crate::sim::{self, Faults, SimConfig, Timings};
use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Keeps a fleet of KooPhone cloud phones at their declared lifecycles, as CloudPhone resources.
#[derive(Parser, Debug)]
#[command(name = "cloudphone-operator", version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "CLOUDPHONE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator against the cluster of the kubeconfig or the in-cluster service account.
    Run(Box<RunArgs>),
    /// Print a CustomResourceDefinition as YAML (default: CloudPhone's).
    Crd {
        /// Which CRD: cloudphones or cloudphoneaccounts.
        #[arg(value_enum, default_value = "cloudphones")]
        kind: CrdKind,
    },
    /// Run the vendor API simulator as a stand-alone HTTP server.
    Simulate(Box<SimulateArgs>),
    /// The quick start: a simulated fleet and the example CloudPhones, queried and shown.
    Demo(DemoArgs),
}

/// The CRDs `cloudphone-operator crd` prints, by plural (as under `crds/`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    Cloudphones,
    Cloudphoneaccounts,
}

impl From<CrdKind> for crate::api::CrdKind {
    fn from(kind: CrdKind) -> crate::api::CrdKind {
        match kind {
            CrdKind::Cloudphones => crate::api::CrdKind::CloudPhones,
            CrdKind::Cloudphoneaccounts => crate::api::CrdKind::CloudPhoneAccounts,
        }
    }
}

/// Parses `500ms`, `30s`, `5m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 500ms, 30s or 5m: {e}"))
}

/// A duration that must not be zero, such as a tick interval.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "{text:?} is zero; give a positive duration such as 30s"
        )),
        d => Ok(d),
    }
}

/// Flags of `cloudphone-operator run`; each has a `CLOUDPHONE_<FLAG>` environment fallback.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Base URL of the KooPhone API.
    #[arg(long, env = "CLOUDPHONE_VENDOR_URL", default_value = DEFAULT_BASE_URL)]
    pub vendor_url: String,
    /// A Secret holding the vendor credentials, as NAMESPACE/NAME (or NAME in the operator's
    /// namespace): a `token`; or `username`, `password`, `domain`, `project`|`projectId`,
    /// `region`|`iamEndpoint`; or `accessKey`, `secretKey`, `projectId` (and `securityToken`).
    /// Watched: a rotation is used from the next call.
    #[arg(
        long,
        env = "CLOUDPHONE_CREDENTIALS_SECRET",
        value_name = "[NAMESPACE/]NAME"
    )]
    pub credentials_secret: Option<String>,
    /// A file holding a static vendor token (for example a mounted Secret key).
    #[arg(long, env = "CLOUDPHONE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The name of an environment variable holding a static vendor token.
    #[arg(long, env = "CLOUDPHONE_TOKEN_ENV", value_name = "VAR")]
    pub token_env: Option<String>,
    /// Time between ticks.
    #[arg(long, env = "CLOUDPHONE_TICK_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub tick_interval: Duration,
    /// A namespace to watch (repeatable, or comma-separated); default: all namespaces.
    #[arg(
        long = "namespace",
        env = "CLOUDPHONE_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// A label selector: only CloudPhones matching it are managed (to split a fleet across deployments).
    #[arg(long, env = "CLOUDPHONE_SELECTOR")]
    pub selector: Option<String>,
    /// Address of the HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "CLOUDPHONE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader on a Lease so that only one replica calls the vendor (`--leader-election=false` to turn off).
    #[arg(long, env = "CLOUDPHONE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease: the election's, and with or without it where each process records until when its backup intents may be outstanding.
    #[arg(
        long,
        env = "CLOUDPHONE_LEASE_NAME",
        default_value = "cloudphone-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; default: the pod's namespace (POD_NAMESPACE or the service account's).
    #[arg(long, env = "CLOUDPHONE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease; default: POD_NAME, else the host name plus a random suffix.
    #[arg(long, env = "CLOUDPHONE_IDENTITY")]
    pub identity: Option<String>,
    /// Run against an in-process vendor simulator instead of the vendor (no credentials needed):
    /// every instance a CloudPhone names starts as DataLoaded.
    #[arg(long, env = "CLOUDPHONE_SIMULATE")]
    pub simulate: bool,
    /// After a backup call, no second call for the phone until the vendor shows it BackingUp or Idle, or this long.
    #[arg(long, env = "CLOUDPHONE_BACKUP_GRACE_PERIOD", default_value = "2m", value_parser = parse_duration)]
    pub backup_grace_period: Duration,
    /// Wait after a first failed backup before the next attempt (doubled for each further one).
    #[arg(long, env = "CLOUDPHONE_BACKUP_BACKOFF", default_value = "1m", value_parser = parse_duration)]
    pub backup_backoff: Duration,
    /// Longest wait between backup attempts.
    #[arg(long, env = "CLOUDPHONE_BACKUP_BACKOFF_MAX", default_value = "1h", value_parser = parse_duration)]
    pub backup_backoff_max: Duration,
    /// Time-out of one vendor call.
    #[arg(long, env = "CLOUDPHONE_VENDOR_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub vendor_timeout: Duration,
    /// Hosts a CloudPhoneAccount's credentials may be sent to (its spec.vendorUrl and a password
    /// Secret's IAM endpoint): `host`, `host:port` or `*.domain` (comma-separated). The operator's
    /// own --vendor-url (and the simulator under --simulate) is allowed as well.
    #[arg(
        long,
        env = "CLOUDPHONE_ALLOWED_VENDOR_HOSTS",
        value_delimiter = ',',
        default_value = super::accounts::DEFAULT_ALLOWED_HOSTS
    )]
    pub allowed_vendor_hosts: Vec<String>,
    /// A label selector on CloudPhoneAccounts: only those matching it are used (and have their
    /// status written) by this deployment. When a fleet is split across deployments, give each
    /// its own accounts, so that one writes each account's status; default: all accounts.
    #[arg(long, env = "CLOUDPHONE_ACCOUNT_SELECTOR")]
    pub account_selector: Option<String>,
    /// A namespace whose CloudPhones without spec.accountRef may use the operator's own
    /// credentials (repeatable, or comma-separated). With neither this nor
    /// --own-account-namespace-selector, every watched namespace may: set one when tenants share
    /// the cluster.
    #[arg(
        long = "own-account-namespaces",
        env = "CLOUDPHONE_OWN_ACCOUNT_NAMESPACES",
        value_delimiter = ','
    )]
    pub own_account_namespaces: Vec<String>,
    /// A label selector on namespaces (`tenant=platform`, `tier in (a,b)`): the CloudPhones without
    /// spec.accountRef of the namespaces it matches may use the operator's own credentials, as
    /// well as those of --own-account-namespaces.
    #[arg(
        long,
        env = "CLOUDPHONE_OWN_ACCOUNT_NAMESPACE_SELECTOR",
        value_parser = super::label_selector::parse
    )]
    pub own_account_namespace_selector: Option<kube::core::Selector>,
    /// Vendor calls of one kind in flight at once.
    #[arg(long, env = "CLOUDPHONE_VENDOR_CONCURRENCY", default_value = "8")]
    pub vendor_concurrency: usize,
    /// The least time between a tick's start and an early tick (caused by a create, a spec change
    /// or a reconcile request); at most --tick-interval. Default: 10s, or --tick-interval when
    /// shorter.
    #[arg(long, env = "CLOUDPHONE_MIN_TICK_SPACING", value_parser = parse_duration)]
    pub min_tick_spacing: Option<Duration>,
    /// Quiet time after a create or spec change before the early tick.
    #[arg(long, env = "CLOUDPHONE_DEBOUNCE", default_value = "1s", value_parser = parse_duration)]
    pub debounce: Duration,
    /// On SIGTERM, how long the tick in flight may take to finish before it is cut.
    #[arg(long, env = "CLOUDPHONE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// How long a status query failure must persist before a phone's Synced condition turns
    /// False: a number of consecutive ticks (`3`) or a duration (`2m`). A blip writes nothing.
    #[arg(long, env = "CLOUDPHONE_SYNCED_AFTER", default_value = "3")]
    pub synced_after: SyncedAfter,
    /// A tick still running after this long is cut: the statuses it wrote stay, the unfinished
    /// chunks go first next tick. Default: three tick intervals.
    #[arg(long, env = "CLOUDPHONE_TICK_DEADLINE", value_parser = parse_duration)]
    pub tick_deadline: Option<Duration>,
    /// Events published in one tick at most; the rest are counted in
    /// cloudphone_events_dropped_total and summarised in one event.
    #[arg(long, env = "CLOUDPHONE_MAX_EVENTS_PER_TICK", default_value = "100")]
    pub max_events_per_tick: usize,
}

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

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        // Conflicting names, bad defaults and the like fail here, not in a user's shell.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_zero_tick_interval_is_refused_by_its_flag() {
        let err = Cli::try_parse_from(["cloudphone-operator", "run", "--tick-interval", "0s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tick-interval"), "{err}");
        assert!(err.contains("zero"), "{err}");
        let err = Cli::try_parse_from(["cloudphone-operator", "demo", "--tick-interval", "0ms"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zero"), "{err}");
        assert!(parse_interval("250ms").is_ok());
    }

    #[test]
    fn durations_name_the_value_and_an_example() {
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("\"soon\"") && err.contains("30s"), "{err}");
    }
}
