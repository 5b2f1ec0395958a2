//! `cloudphone-operator run`: the operator on a cluster. Wires the watch cache, the tick engine,
//! leader election, the vendor client and the HTTP listener, and shuts them down in order.
//!
//! - [`accounts`]: the CloudPhoneAccounts' watches, clients and statuses.
//! - [`args`]: every flag of the binary.
//! - [`credentials`]: the vendor credentials' sources, among them the watched Secret.
//! - `label_selector`: the text form of a label selector, for the flags the operator matches itself.
//! - [`leader`]: the Lease election and the freshness fence of backup calls.
//! - [`schema_check`]: the CRD revision gate.
//! - `readiness`: `/readyz` and the gate of the ticks.
//! - [`tasks`]: the supervised tasks: one that ends early ends `run` with an error.

pub mod accounts;
pub mod args;
pub mod credentials;
mod label_selector;
pub mod leader;
mod readiness;
pub mod schema_check;
pub mod tasks;

pub use args::RunArgs;

use crate::http;
use crate::koophone::{self, Auth, Client, ClientConfig, CredentialsError, Token};
use crate::metrics::Metrics;
use crate::plan::PlanConfig;
use crate::reconciler::{Engine, EngineConfig, INTENT_MAX_AGE, KubeStore, WatchConfig, phone_apis};
use crate::sim::{self, SimConfig, Simulator};
use kube::api::ListParams;
use kube::runtime::events::Reporter;
use leader::{Leadership, LeaseConfig, LeaseIntents};
use readiness::{OperatorReadiness, tick_gate};
use schema_check::CrdProblem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tasks::{TaskEnd, TaskEnded, Tasks};
use tokio::sync::watch;
use tracing::{error, info};

/// Why `run` cannot start. Messages name the flag or resource at fault and never a credential.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "no vendor credentials: give --credentials-secret, --token-file or --token-env (or --simulate to try without an account)"
    )]
    NoCredentials,
    #[error("give only one of --credentials-secret, --token-file and --token-env")]
    ConflictingCredentials,
    #[error(transparent)]
    SecretRef(#[from] credentials::BadSecretRef),
    #[error(transparent)]
    StaticToken(#[from] credentials::StaticTokenError),
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster service account): {0}")]
    Kube(#[source] kube::Error),
    #[error("cannot list CloudPhones in {scope}: {hint}")]
    Preflight {
        scope: String,
        hint: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Vendor(#[from] koophone::Error),
    #[error(transparent)]
    Simulator(#[from] sim::StartError),
    #[error("--metrics-addr {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: exiting so that Kubernetes restarts the operator")]
    TaskEnded(#[source] TaskEnded),
    #[error("--tick-interval must be longer than zero")]
    ZeroInterval,
    #[error("--tick-deadline must be longer than zero")]
    ZeroDeadline,
    #[error(
        "--min-tick-spacing {spacing:?} is longer than --tick-interval {interval:?}: early ticks would come later than the interval's own"
    )]
    SpacingOverInterval {
        spacing: Duration,
        interval: Duration,
    },
    #[error(
        "--backup-grace-period {0:?} is too short: it must be at least {MIN_GRACE_PERIOD:?} (a backup call may leave up to {INTENT_MAX_AGE:?} after its intent, and the vendor needs time to show it)"
    )]
    GracePeriodTooShort(Duration),
}

/// The shortest `--backup-grace-period`: the call may leave [`INTENT_MAX_AGE`] after its intent,
/// and the vendor takes seconds to show a backup as started.
pub const MIN_GRACE_PERIOD: Duration = Duration::from_secs(15);

/// Refuses flag values that the operator cannot run safely with.
fn validate(args: &RunArgs) -> Result<(), RunError> {
    if args.tick_interval.is_zero() {
        return Err(RunError::ZeroInterval);
    }
    if args.tick_deadline.is_some_and(|d| d.is_zero()) {
        return Err(RunError::ZeroDeadline);
    }
    if let Some(spacing) = args.min_tick_spacing
        && spacing > args.tick_interval
    {
        return Err(RunError::SpacingOverInterval {
            spacing,
            interval: args.tick_interval,
        });
    }
    if args.backup_grace_period < MIN_GRACE_PERIOD {
        return Err(RunError::GracePeriodTooShort(args.backup_grace_period));
    }
    Ok(())
}

/// The default least time between a tick and an early tick: a reconcile request in a loop costs
/// at most one early tick (of its own phones) per 10 s.
const DEFAULT_MIN_TICK_SPACING: Duration = Duration::from_secs(10);

/// `--min-tick-spacing`, else the default or the tick interval when that is shorter.
fn min_tick_spacing(args: &RunArgs) -> Duration {
    args.min_tick_spacing
        .unwrap_or(DEFAULT_MIN_TICK_SPACING.min(args.tick_interval))
}

/// The namespaces the operator's own credentials serve; `None`: every watched namespace.
fn own_tenants(args: &RunArgs) -> Option<crate::reconciler::Tenants> {
    if args.own_account_namespaces.is_empty() && args.own_account_namespace_selector.is_none() {
        return None;
    }
    Some(crate::reconciler::Tenants {
        namespaces: args.own_account_namespaces.iter().cloned().collect(),
        selector: args.own_account_namespace_selector.clone(),
    })
}

/// Reads the static token named by the flags; its value never reaches an error or a log line.
pub fn read_token(args: &RunArgs) -> Result<Token, RunError> {
    credentials::static_token(args.token_file.as_deref(), args.token_env.as_deref())?
        .ok_or(RunError::NoCredentials)
}

/// The operator's own namespace: POD_NAMESPACE, else the service account's, else the kubeconfig's.
fn pod_namespace(client: &kube::Client) -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_owned())
}

/// The namespace of the Lease: the flag, else the operator's own namespace.
fn lease_namespace(args: &RunArgs, client: &kube::Client) -> String {
    args.lease_namespace
        .clone()
        .unwrap_or_else(|| pod_namespace(client))
}

/// This replica's identity in the Lease: the flag, else the pod name, else the host name plus a
/// random suffix, so that two processes on one host (or two containers sharing a host name) never
/// both believe they hold the Lease.
fn identity(args: &RunArgs) -> String {
    let nonempty = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(id) = args.identity.clone().and_then(nonempty) {
        return id;
    }
    if let Some(pod) = std::env::var("POD_NAME").ok().and_then(nonempty) {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .and_then(nonempty)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(nonempty)
        })
        .unwrap_or_else(|| "cloudphone-operator".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// One list call per watched namespace, so that a missing CRD, missing RBAC or a bad selector is a
/// clear error at start rather than a watch retrying forever.
pub async fn preflight(client: &kube::Client, args: &RunArgs) -> Result<(), RunError> {
    let mut params = ListParams::default().limit(1);
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    for api in phone_apis(client, &args.namespaces) {
        if let Err(e) = api.list(&params).await {
            let scope = if args.namespaces.is_empty() {
                "all namespaces".to_owned()
            } else {
                format!("namespaces {}", args.namespaces.join(","))
            };
            let hint = match &e {
                kube::Error::Api(s) if s.code == 404 => {
                    "the CloudPhone CRD is not installed: kubectl apply -f crds/cloudphone.io_cloudphones.yaml".to_owned()
                }
                kube::Error::Api(s) if s.code == 403 => {
                    "the service account may not list cloudphones.cloudphone.io: apply the RBAC of docs/install.md".to_owned()
                }
                kube::Error::Api(s) if s.code == 400 => format!("--selector {:?} is refused: {}", args.selector.as_deref().unwrap_or(""), s.message),
                other => other.to_string(),
            };
            return Err(RunError::Preflight {
                scope,
                hint,
                source: e,
            });
        }
    }
    Ok(())
}

/// Runs the operator until SIGTERM or Ctrl-C resolves `shutdown`.
pub async fn run(
    args: RunArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    validate(&args)?;
    let client = kube::Client::try_default().await.map_err(RunError::Kube)?;
    run_with_client(args, client, shutdown).await
}

/// [`run`] with a given Kubernetes client (the tests give one on a mocked API server).
pub async fn run_with_client(
    args: RunArgs,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_supervising(args, client, shutdown, Tasks::new()).await
}

/// [`run_with_client`], supervising `tasks` (already running) with the operator's own: one that
/// ends early stops the operator as any of them would (a test's way to end one).
pub async fn run_supervising(
    args: RunArgs,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut tasks: Tasks,
) -> Result<(), RunError> {
    // NB: every flag by name, no `..`: a flag added to RunArgs fails to compile here until it is
    // wired below (or said to be unused), so none is parsed and silently dropped.
    let RunArgs {
        vendor_url: _,
        credentials_secret: _,
        token_file: _,
        token_env: _,
        tick_interval: _,
        namespaces: _,
        selector: _,
        metrics_addr: _,
        leader_election: _,
        lease_name: _,
        lease_namespace: _,
        identity: _,
        simulate: _,
        backup_grace_period: _,
        backup_backoff: _,
        backup_backoff_max: _,
        vendor_timeout: _,
        vendor_concurrency: _,
        debounce: _,
        min_tick_spacing: _,
        shutdown_timeout: _,
        synced_after: _,
        tick_deadline: _,
        max_events_per_tick: _,
        allowed_vendor_hosts: _,
        account_selector: _,
        own_account_namespaces: _,
        own_account_namespace_selector: _,
    } = &args;
    validate(&args)?;
    let secret = match &args.credentials_secret {
        _ if args.simulate => None,
        Some(_) if args.token_file.is_some() || args.token_env.is_some() => {
            return Err(RunError::ConflictingCredentials);
        }
        Some(text) => Some(credentials::parse_secret_ref(
            text,
            &pod_namespace(&client),
        )?),
        None => None,
    };
    let auth = Arc::new(match (&secret, args.simulate) {
        (_, true) => Auth::token(Token::new("simulated")),
        (Some((namespace, name)), false) => Auth::new(Err(CredentialsError::SecretMissing(
            format!("{namespace}/{name} (not read yet)"),
        ))),
        (None, false) => Auth::token(read_token(&args)?),
    });
    preflight(&client, &args).await?;
    // Every long-lived task below runs in `tasks`: one that ends early ends `run`.
    if let Some((namespace, name)) = secret {
        info!(secret = %format!("{namespace}/{name}"), "vendor credentials from a watched Secret");
        tasks.spawn(
            "credentials Secret watch",
            credentials::watch(client.clone(), namespace, name, auth.clone()),
        );
    }

    let simulator = if args.simulate {
        let simulator = Simulator::start(
            SimConfig {
                auto_create: Some(sim::code::DATA_LOADED),
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().expect("a literal socket address"),
        )
        .await?;
        info!(url = %simulator.url(), "--simulate: calling the in-process vendor simulator");
        Some(simulator)
    } else {
        None
    };
    let vendor_url = simulator
        .as_ref()
        .map_or_else(|| args.vendor_url.clone(), Simulator::url);

    let metrics = Arc::new(Metrics::new());
    {
        let auth = auth.clone();
        metrics.follow_credentials(move || auth.status().is_ok());
    }
    let client_config = ClientConfig {
        base_url: vendor_url.clone(),
        request_timeout: args.vendor_timeout,
        ..ClientConfig::default()
    };
    let vendor = Client::new(client_config.clone(), auth.clone())?.with_observer(metrics.clone());
    // The CloudPhoneAccounts: their watches feed the engine; their statuses follow its ticks.
    let (account_store, account_writer) = kube::runtime::reflector::store();
    let (account_feed, accounts_feed) = watch::channel(None);
    let (accounts_error_tx, accounts_error) = watch::channel(None);
    tasks.spawn(
        "CloudPhoneAccount watch",
        accounts::watch(
            client.clone(),
            accounts::AccountsConfig {
                namespace: pod_namespace(&client),
                allowed: accounts::AllowedHosts::new(args.allowed_vendor_hosts.clone())
                    .with_url(&vendor_url),
                default_vendor_url: vendor_url,
                client: client_config,
                metrics: Some(metrics.clone()),
                selector: args.account_selector.clone(),
            },
            account_store.clone(),
            account_writer,
            account_feed,
            accounts_error_tx,
        ),
    );

    let identity = identity(&args);
    let reporter = Reporter {
        controller: "cloudphone-operator".into(),
        instance: Some(identity.clone()),
    };
    let (store, watches) = KubeStore::new(
        client.clone(),
        WatchConfig {
            namespaces: args.namespaces.clone(),
            selector: args.selector.clone(),
            debounce: args.debounce,
        },
        reporter,
    );
    let store = Arc::new(store);
    // Without leader election this replica always leads; the sender lives as long as `run`.
    let (_always_leading, always_rx) = watch::channel(true);
    let namespace = lease_namespace(&args, &client);
    // NB: the intents record is kept in the Lease with or without leader election: a restart
    // reads what the killed process may have left outstanding.
    let intents_record = LeaseIntents::new(
        client.clone(),
        &namespace,
        &args.lease_name,
        args.leader_election.then(|| identity.clone()),
    );
    let (leadership, leader) = if args.leader_election {
        info!(lease = %args.lease_name, %namespace, %identity, "leader election on");
        let leadership = Leadership::spawn(
            client.clone(),
            LeaseConfig::new(&args.lease_name, namespace, &identity),
        );
        let rx = leadership.receiver();
        (Some(leadership), rx)
    } else {
        info!("leader election off: this replica ticks");
        (None, always_rx)
    };
    let engine = Engine::new(
        store.clone(),
        vendor,
        EngineConfig {
            plan: PlanConfig {
                grace_period: args.backup_grace_period,
                backoff_base: args.backup_backoff,
                backoff_max: args.backup_backoff_max,
            },
            vendor_calls_in_flight: args.vendor_concurrency,
            synced_after: args.synced_after,
            max_events_per_tick: args.max_events_per_tick,
            tick_deadline: args.tick_deadline.unwrap_or(args.tick_interval * 3),
            min_tick_spacing: min_tick_spacing(&args),
            ..EngineConfig::default()
        },
    )
    .with_metrics(metrics.clone())
    .with_accounts(accounts_feed.clone())
    .with_intents_record(Arc::new(intents_record));
    let engine = match own_tenants(&args) {
        Some(tenants) => engine.with_own_tenants(tenants),
        None => engine,
    };
    tasks.spawn(
        "CloudPhoneAccount status writer",
        accounts::write_statuses(
            client.clone(),
            account_store,
            engine.account_reports(),
            Reporter {
                controller: "cloudphone-operator".into(),
                instance: Some(identity.clone()),
            },
        ),
    );
    let engine = Arc::new(match &leadership {
        Some(leadership) => engine.with_fence(leadership.fence()),
        None => engine,
    });
    tasks.spawn("CloudPhone watch", watches.run(engine.trigger()));

    {
        // NB: this task ends when the election does (its sender dropped): supervised, that is
        // an election that stopped.
        let mut rx = leader.clone();
        let metrics = metrics.clone();
        tasks.spawn("leader election", async move {
            loop {
                metrics.leader.set(i64::from(*rx.borrow_and_update()));
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    let (crd_verdict, crd) = watch::channel(Err(CrdProblem::NotChecked));
    tasks.spawn(
        "CloudPhone CRD watch",
        schema_check::watch(client.clone(), crd_verdict),
    );
    let (may_tick, gate) = tick_gate(leader.clone(), crd.clone());
    tasks.spawn("tick gate", gate);

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    info!(addr = %args.metrics_addr, "serving /metrics, /healthz and /readyz");
    let readiness = Arc::new(OperatorReadiness {
        store: store.clone(),
        crd,
        accounts: accounts_feed,
        accounts_error,
    });
    let app = http::router(metrics.clone(), readiness);
    let stopping = tasks.token();
    tasks.spawn_graceful("HTTP listener", async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopping.cancelled_owned())
            .await
            .map_err(Into::into)
    });

    // The tick loop: once the cache has synced, ticks while the gate is open, until `stop_ticks`.
    let stop_ticks = tokio_util::sync::CancellationToken::new();
    let ticking = {
        let (store, engine, stop) = (store.clone(), engine.clone(), stop_ticks.clone());
        let (interval, grace) = (args.tick_interval, args.shutdown_timeout);
        async move {
            tokio::select! {
                () = store.wait_until_synced() => info!("CloudPhone watch cache synced"),
                () = stop.cancelled() => return,
            }
            engine
                .run_while_leading(interval, may_tick, grace, stop.cancelled_owned())
                .await;
        }
    };
    tokio::pin!(ticking);
    let mut ticking_ended = false;
    let ended = tokio::select! {
        () = shutdown => None,
        ended = tasks.first_ended() => Some(ended),
        () = &mut ticking => {
            ticking_ended = true;
            Some(TaskEnded { task: "tick loop", end: TaskEnd::Returned })
        }
    };
    if let Some(ended) = &ended {
        error!(task = ended.task, reason = %ended.end, "a task of the operator ended while it ran: stopping, to exit non-zero (Kubernetes restarts the pod)");
    }

    // Shutdown, in order, in this one place:
    info!("shutting down");
    // 1. No tick starts; a tick in flight gets the shutdown timeout to finish (none once
    //    leadership is lost).
    stop_ticks.cancel();
    if !ticking_ended {
        ticking.await;
    }
    // 2. The Lease is handed back, so that a standby takes over at once.
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    // 3. Every other task: the watches stop, the HTTP listener finishes its requests.
    tasks.shutdown(SHUTDOWN_TASKS_WITHIN).await;
    // 4. The simulator, last: a tick in flight may still have called it.
    if let Some(simulator) = simulator {
        simulator.shutdown().await;
    }
    match ended {
        Some(ended) => Err(RunError::TaskEnded(ended)),
        None => Ok(()),
    }
}

/// How long the tasks have to stop once the ticks have (the HTTP listener's requests in flight).
const SHUTDOWN_TASKS_WITHIN: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn defaults_follow_the_design() {
        let a = args(&[]);
        assert_eq!(a.vendor_url, "https://koophone.myhuaweicloud.com");
        assert_eq!(a.tick_interval, Duration::from_secs(30));
        assert_eq!(a.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert!(a.leader_election);
        assert_eq!(a.lease_name, "cloudphone-operator");
        assert!(a.namespaces.is_empty());
        assert!(!a.simulate);
    }

    #[test]
    fn namespaces_repeat_or_split_on_commas_and_leader_election_turns_off() {
        let a = args(&[
            "--namespace",
            "a",
            "--namespace",
            "b,c",
            "--leader-election=false",
            "--tick-interval",
            "500ms",
        ]);
        assert_eq!(a.namespaces, ["a", "b", "c"]);
        assert!(!a.leader_election);
        assert_eq!(a.tick_interval, Duration::from_millis(500));
    }

    #[test]
    fn the_own_accounts_namespaces_come_from_a_list_and_a_selector() {
        assert!(own_tenants(&args(&[])).is_none(), "unset: every namespace");
        let t = own_tenants(&args(&[
            "--own-account-namespaces",
            "platform,ops",
            "--own-account-namespace-selector",
            "tenant=platform",
        ]))
        .unwrap();
        assert!(t.admits("ops", None));
        let labels = std::collections::BTreeMap::from([("tenant".into(), "platform".into())]);
        assert!(t.admits("labelled", Some(&labels)));
        assert!(!t.admits("team-b", Some(&Default::default())));
        let err = Cli::try_parse_from(["run", "--own-account-namespace-selector", "a in (b"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--own-account-namespace-selector"), "{err}");
    }

    #[test]
    fn an_early_tick_spacing_over_the_interval_is_refused() {
        assert_eq!(min_tick_spacing(&args(&[])), Duration::from_secs(10));
        let short = args(&["--tick-interval", "5s"]);
        assert!(
            validate(&short).is_ok(),
            "the default follows a short interval"
        );
        assert_eq!(min_tick_spacing(&short), Duration::from_secs(5));
        let err = validate(&args(&[
            "--tick-interval",
            "5s",
            "--min-tick-spacing",
            "6s",
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--min-tick-spacing") && err.contains("--tick-interval"),
            "{err}"
        );
        assert!(
            validate(&args(&[
                "--tick-interval",
                "5s",
                "--min-tick-spacing",
                "2s"
            ]))
            .is_ok()
        );
    }

    #[test]
    fn a_grace_period_shorter_than_a_late_call_is_refused() {
        let err = validate(&args(&["--backup-grace-period", "5s"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--backup-grace-period"), "{err}");
        assert!(validate(&args(&["--backup-grace-period", "15s"])).is_ok());
        assert!(validate(&args(&[])).is_ok());
    }

    #[test]
    fn the_identity_is_the_flag_or_else_unique_per_process() {
        assert_eq!(identity(&args(&["--identity", "pod-7"])), "pod-7");
        // NB: POD_NAME is not set under cargo test; the host name fallback gets a random suffix.
        if std::env::var("POD_NAME").is_err() {
            let (a, b) = (identity(&args(&[])), identity(&args(&[])));
            assert_ne!(a, b, "two processes on one host must not share an identity");
        }
    }

    #[test]
    fn a_bad_duration_names_the_value() {
        let err = Cli::try_parse_from(["run", "--tick-interval", "soon"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--tick-interval") && err.contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn tokens_come_from_a_file_or_a_variable_and_never_show_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token-value\n").unwrap();
        let a = args(&["--token-file", file.to_str().unwrap()]);
        assert_eq!(read_token(&a).unwrap().expose(), "s3cret-token-value");

        std::fs::write(&file, "  \n").unwrap();
        let err = read_token(&a).unwrap_err().to_string();
        assert!(
            err.contains("--token-file") && err.contains("empty"),
            "{err}"
        );

        let missing = args(&["--token-file", "/nonexistent/token"]);
        let err = read_token(&missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/token"), "{err}");

        let unset = args(&["--token-env", "CLOUDPHONE_TEST_SURELY_UNSET_VAR"]);
        let err = read_token(&unset).unwrap_err().to_string();
        assert!(
            err.contains("CLOUDPHONE_TEST_SURELY_UNSET_VAR") && err.contains("not set"),
            "{err}"
        );

        let err = read_token(&args(&[])).unwrap_err().to_string();
        assert!(
            err.contains("--token-file") && err.contains("--simulate"),
            "{err}"
        );
    }
}
