//! The steps of [`run_supervising`](super::run_supervising) that build and start the operator's
//! parts, each with its one-line contract, in the order `run` calls them.

use super::accounts;
use super::args::RunArgs;
use super::credentials;
use super::error::RunError;
use super::flags::{min_tick_spacing, own_tenants, read_token};
use super::identity::{lease_namespace, pod_namespace};
use super::leader::{Leadership, LeaseConfig, LeaseIntents};
use super::readiness::{OperatorReadiness, tick_gate};
use super::schema_check::{self, CrdProblem, Verdict};
use super::tasks::Tasks;
use crate::api::CloudPhoneAccount;
use crate::http;
use crate::koophone::{Auth, Client, ClientConfig, CredentialsError, Token};
use crate::metrics::Metrics;
use crate::plan::PlanConfig;
use crate::reconciler::{AccountsFeed, Engine, EngineConfig, KubeStore, WatchConfig, Watches};
use crate::sim::{self, SimConfig, Simulator};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// A Secret's namespace and name.
type SecretRef = (String, String);

/// The vendor credentials the flags name: the Secret to watch (not read yet), else the static
/// token; a stand-in under `--simulate`. Refuses a Secret given with a static token.
pub(super) fn vendor_auth(
    args: &RunArgs,
    client: &kube::Client,
) -> Result<(Option<SecretRef>, Arc<Auth>), RunError> {
    let secret = match &args.credentials_secret {
        _ if args.simulate => None,
        Some(_) if args.token_file.is_some() || args.token_env.is_some() => {
            return Err(RunError::ConflictingCredentials);
        }
        Some(text) => Some(credentials::parse_secret_ref(text, &pod_namespace(client))?),
        None => None,
    };
    let auth = Arc::new(match (&secret, args.simulate) {
        (_, true) => Auth::token(Token::new("simulated")),
        (Some((namespace, name)), false) => Auth::new(Err(CredentialsError::SecretMissing(
            format!("{namespace}/{name} (not read yet)"),
        ))),
        (None, false) => Auth::token(read_token(args)?),
    });
    Ok((secret, auth))
}

/// Starts the watch of the credentials Secret into `auth`, when the flags name one.
pub(super) fn watch_credentials(
    tasks: &mut Tasks,
    client: &kube::Client,
    secret: Option<SecretRef>,
    auth: &Arc<Auth>,
) {
    if let Some((namespace, name)) = secret {
        info!(secret = %format!("{namespace}/{name}"), "vendor credentials from a watched Secret");
        tasks.spawn(
            "credentials Secret watch",
            credentials::watch(client.clone(), namespace, name, auth.clone()),
        );
    }
}

/// Under `--simulate`, starts the in-process vendor simulator on a free local port.
pub(super) async fn start_simulator(args: &RunArgs) -> Result<Option<Simulator>, RunError> {
    if !args.simulate {
        return Ok(None);
    }
    let simulator = Simulator::start(
        SimConfig {
            auto_create: Some(sim::code::DATA_LOADED),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("a literal socket address"),
    )
    .await?;
    info!(url = %simulator.url(), "--simulate: calling the in-process vendor simulator");
    Ok(Some(simulator))
}

/// The operator's metrics, whose credentials gauge follows `auth`.
pub(super) fn metrics(auth: &Arc<Auth>) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    {
        let auth = auth.clone();
        metrics.follow_credentials(move || auth.status().is_ok());
    }
    metrics
}

/// The vendor client of the operator's own credentials, observed by `metrics`, and its config
/// (the accounts' clients start from it).
pub(super) fn vendor_client(
    args: &RunArgs,
    vendor_url: &str,
    auth: &Arc<Auth>,
    metrics: &Arc<Metrics>,
) -> Result<(Client, ClientConfig), RunError> {
    let client_config = ClientConfig {
        base_url: vendor_url.to_owned(),
        request_timeout: args.vendor_timeout,
        ..ClientConfig::default()
    };
    // NB: the own account's limits are its client's alone: the accounts' clients are made from
    // `client_config`, each with the limits of its own spec.
    let own = ClientConfig {
        calls_in_flight: args.own_account_calls_in_flight.map(usize::from),
        calls_per_second: args.own_account_calls_per_second.map(u32::from),
        ..client_config.clone()
    };
    let vendor = Client::new(own, auth.clone())?.with_observer(metrics.clone());
    Ok((vendor, client_config))
}

/// The CloudPhoneAccounts as the accounts' watch keeps them: the engine reads `feed`, the status
/// writer `store`, `/readyz` `error`.
pub(super) struct Accounts {
    pub(super) store: Store<CloudPhoneAccount>,
    pub(super) feed: AccountsFeed,
    pub(super) error: watch::Receiver<Option<String>>,
}

/// Starts the watch of the CloudPhoneAccounts (and of their Secrets and namespaces).
pub(super) fn watch_accounts(
    tasks: &mut Tasks,
    client: &kube::Client,
    args: &RunArgs,
    vendor_url: String,
    client_config: ClientConfig,
    metrics: &Arc<Metrics>,
) -> Accounts {
    let (account_store, account_writer) = kube::runtime::reflector::store();
    let (account_feed, accounts_feed) = watch::channel(None);
    let (accounts_error_tx, accounts_error) = watch::channel(None);
    tasks.spawn(
        "CloudPhoneAccount watch",
        accounts::watch(
            client.clone(),
            accounts::AccountsConfig {
                namespace: pod_namespace(client),
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
    Accounts {
        store: account_store,
        feed: accounts_feed,
        error: accounts_error,
    }
}

/// The events' reporter: the operator, this replica's identity as its instance.
fn reporter(identity: &str) -> Reporter {
    Reporter {
        controller: "cloudphone-operator".into(),
        instance: Some(identity.to_owned()),
    }
}

/// The CloudPhones' watch cache, and its watches, not started yet.
pub(super) fn phone_store(
    client: &kube::Client,
    args: &RunArgs,
    identity: &str,
) -> (Arc<KubeStore>, Watches) {
    let (store, watches) = KubeStore::new(
        client.clone(),
        WatchConfig {
            namespaces: args.namespaces.clone(),
            selector: args.selector.clone(),
            debounce: args.debounce,
        },
        reporter(identity),
    );
    (Arc::new(store), watches)
}

/// Whether this replica leads: the running election, or none and always true.
pub(super) struct Leading {
    pub(super) election: Option<Leadership>,
    pub(super) receiver: watch::Receiver<bool>,
    /// Without leader election this replica always leads; the sender lives as long as `run`.
    _always: watch::Sender<bool>,
}

/// The intents record in the Lease, and the election on that Lease when the flags turn it on
/// (started here).
pub(super) fn lease(
    client: &kube::Client,
    args: &RunArgs,
    identity: &str,
) -> (LeaseIntents, Leading) {
    let (always, always_rx) = watch::channel(true);
    let namespace = lease_namespace(args, client);
    // NB: the intents record is kept in the Lease with or without leader election: a restart
    // reads what the killed process may have left outstanding.
    let intents_record = LeaseIntents::new(
        client.clone(),
        &namespace,
        &args.lease_name,
        args.leader_election.then(|| identity.to_owned()),
    );
    let (election, receiver) = if args.leader_election {
        info!(lease = %args.lease_name, %namespace, %identity, "leader election on");
        let leadership = Leadership::spawn(
            client.clone(),
            LeaseConfig::new(&args.lease_name, namespace, identity),
        );
        let rx = leadership.receiver();
        (Some(leadership), rx)
    } else {
        info!("leader election off: this replica ticks");
        (None, always_rx)
    };
    let leading = Leading {
        election,
        receiver,
        _always: always,
    };
    (intents_record, leading)
}

/// The engine's settings, from the flags.
fn engine_config(args: &RunArgs) -> EngineConfig {
    EngineConfig {
        plan: PlanConfig {
            grace_period: args.backup_grace_period,
            backoff_base: args.backup_backoff,
            backoff_max: args.backup_backoff_max,
            prepare_grace_period: args.prepare_grace_period,
            max_load_until: args.max_load_until,
            restore_estimate: args.restore_estimate,
        },
        vendor_calls_in_flight: args.vendor_concurrency,
        synced_after: args.synced_after,
        max_events_per_tick: args.max_events_per_tick,
        tick_deadline: args.tick_deadline.unwrap_or(args.tick_interval * 3),
        min_tick_spacing: min_tick_spacing(args),
        tick_interval: args.tick_interval,
        ..EngineConfig::default()
    }
}

/// The tick engine over `store` and `vendor`, fed the accounts, recording its intents in the
/// Lease, serving the own credentials' tenants only when the flags say so; not fenced yet.
pub(super) fn engine(
    store: Arc<KubeStore>,
    vendor: Client,
    args: &RunArgs,
    metrics: &Arc<Metrics>,
    accounts: &Accounts,
    intents_record: LeaseIntents,
) -> Engine<KubeStore> {
    let engine = Engine::new(store, vendor, engine_config(args))
        .with_metrics(metrics.clone())
        .with_accounts(accounts.feed.clone())
        .with_intents_record(Arc::new(intents_record));
    let engine = match own_tenants(args) {
        Some(tenants) => engine.with_own_tenants(tenants),
        None => engine,
    };
    if args.own_account_allowed_user_ids.is_empty() {
        return engine;
    }
    engine.with_own_allowed_users(args.own_account_allowed_user_ids.iter().cloned().collect())
}

/// Starts the writer of the accounts' statuses, after each of `engine`'s ticks.
pub(super) fn write_account_statuses(
    tasks: &mut Tasks,
    client: &kube::Client,
    accounts: Store<CloudPhoneAccount>,
    engine: &Engine<KubeStore>,
    identity: &str,
) {
    tasks.spawn(
        "CloudPhoneAccount status writer",
        accounts::write_statuses(
            client.clone(),
            accounts,
            engine.account_reports(),
            reporter(identity),
        ),
    );
}

/// The engine, its backup calls fenced by the election's freshness when there is one.
pub(super) fn fenced(engine: Engine<KubeStore>, leading: &Leading) -> Arc<Engine<KubeStore>> {
    Arc::new(match &leading.election {
        Some(leadership) => engine.with_fence(leadership.fence()),
        None => engine,
    })
}

/// Starts the task that keeps the leader gauge on `leader`.
///
/// NB: this task ends when the election does (its sender dropped): supervised, that is an
/// election that stopped.
pub(super) fn follow_leadership(
    tasks: &mut Tasks,
    leader: &watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
) {
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

/// Starts the CRD check and the gate of the ticks (open while leading with a current CRD);
/// returns the gate and the CRD's verdict.
pub(super) fn gate_ticks(
    tasks: &mut Tasks,
    client: &kube::Client,
    leader: &watch::Receiver<bool>,
) -> (watch::Receiver<bool>, watch::Receiver<Verdict>) {
    let (crd_verdict, crd) = watch::channel(Err(CrdProblem::NotChecked));
    tasks.spawn(
        "CloudPhone CRD watch",
        schema_check::watch(client.clone(), crd_verdict),
    );
    let (may_tick, gate) = tick_gate(leader.clone(), crd.clone());
    tasks.spawn("tick gate", gate);
    (may_tick, crd)
}

/// Binds `--metrics-addr` and starts the HTTP listener of `/metrics`, `/healthz` and `/readyz`;
/// it finishes its requests once `tasks` stop.
pub(super) async fn serve_http(
    tasks: &mut Tasks,
    addr: SocketAddr,
    metrics: &Arc<Metrics>,
    readiness: OperatorReadiness,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    info!(addr = %addr, "serving /metrics, /healthz and /readyz");
    let app = http::router(metrics.clone(), Arc::new(readiness));
    let stopping = tasks.token();
    tasks.spawn_graceful("HTTP listener", async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopping.cancelled_owned())
            .await
            .map_err(Into::into)
    });
    Ok(())
}

/// The tick loop: once the cache has synced, ticks while `may_tick`, until `stop`; a tick in
/// flight then gets `grace` to finish.
pub(super) async fn tick_loop(
    store: Arc<KubeStore>,
    engine: Arc<Engine<KubeStore>>,
    interval: Duration,
    grace: Duration,
    may_tick: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    tokio::select! {
        () = store.wait_until_synced() => info!("CloudPhone watch cache synced"),
        () = stop.cancelled() => return,
    }
    engine
        .run_while_leading(interval, may_tick, grace, stop.cancelled_owned())
        .await;
}
