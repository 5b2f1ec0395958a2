//! The flags of `cloudphone-operator run`. Flags only; what they start is [`super::run`].

use crate::flags::{parse_duration, parse_interval};
use crate::koophone::DEFAULT_BASE_URL;
use crate::reconciler::SyncedAfter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// After a prepare call, no second call for the phone until the vendor shows it Restoring or
    /// its data loaded, or this long (restores take longer than backups; before asking again the
    /// operator asks the vendor whether it holds the prepare queued).
    #[arg(long, env = "CLOUDPHONE_PREPARE_GRACE_PERIOD", default_value = "10m", value_parser = parse_duration)]
    pub prepare_grace_period: Duration,
    /// The furthest ahead a cloudphone.io/load-until annotation may be: a value further ahead is
    /// ignored (a LoadUntilInvalid Warning event), so that a typo cannot keep a phone loaded for
    /// a year.
    #[arg(long, env = "CLOUDPHONE_MAX_LOAD_UNTIL", default_value = "7d", value_parser = parse_duration)]
    pub max_load_until: Duration,
    /// How long a restore (a prepare) is taken to last: a CloudPhoneSchedule's wakes are spread
    /// over its prewarmLead less this, so that the last phone woken is ready by the window's start.
    /// Set it to the p95 of cloudphone_prepare_duration_seconds once it is known.
    #[arg(long, env = "CLOUDPHONE_RESTORE_ESTIMATE", default_value = "5m", value_parser = parse_duration)]
    pub restore_estimate: Duration,
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
    /// A vendor user the Loaded phones of the operator's own account may be readied for
    /// (repeatable, or comma-separated; as a CloudPhoneAccount's spec.allowedUserIds): a phone
    /// naming another is Ready=False, AccountNotAllowed, with no vendor call. Unset: any user.
    #[arg(
        long = "own-account-allowed-user-ids",
        env = "CLOUDPHONE_OWN_ACCOUNT_ALLOWED_USER_IDS",
        value_delimiter = ',',
        value_parser = parse_user_id
    )]
    pub own_account_allowed_user_ids: Vec<String>,
    /// The operator's own account's vendor calls in flight at once, at most (status queries,
    /// backups and prepares together; as a CloudPhoneAccount's spec.limits.callsInFlight). Unset:
    /// bounded by --vendor-concurrency per kind of call only.
    #[arg(
        long,
        env = "CLOUDPHONE_OWN_ACCOUNT_CALLS_IN_FLIGHT",
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub own_account_calls_in_flight: Option<u16>,
    /// The operator's own account's vendor calls started per second, at most (retries included; as
    /// a CloudPhoneAccount's spec.limits.callsPerSecond): flipping ten thousand phones in one commit
    /// is then paced, not a burst. Unset: no rate bound.
    #[arg(
        long,
        env = "CLOUDPHONE_OWN_ACCOUNT_CALLS_PER_SECOND",
        value_parser = clap::value_parser!(u16).range(1..=1000)
    )]
    pub own_account_calls_per_second: Option<u16>,
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

/// A vendor user id: 1-32 characters of [A-Za-z0-9_-], as spec.userId.
fn parse_user_id(id: &str) -> Result<String, String> {
    crate::api::check_instance_id(id)
        .map(|()| id.to_owned())
        .map_err(|why| format!("the user id {id:?} {why}"))
}
