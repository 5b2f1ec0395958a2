//! `cloudphone-operator run`: the operator on a cluster. Wires the watch cache, the tick engine,
//! leader election, the vendor client and the HTTP listener, and shuts them down in order.
//!
//! - [`accounts`]: the CloudPhoneAccounts' watches, clients and statuses.
//! - [`args`]: every flag of the binary.
//! - [`credentials`]: the vendor credentials' sources, among them the watched Secret.
//! - `error`: [`RunError`], why `run` stops or cannot start.
//! - `flags`: the flag values refused and the settings derived from them.
//! - `identity`: this replica's namespace, the Lease's, and its identity in the Lease.
//! - `label_selector`: the text form of a label selector, for the flags the operator matches itself.
//! - [`leader`]: the Lease election, the freshness fence of backup calls and the intents record
//!   kept in the Lease.
//! - `preflight`: the CloudPhones listed once before anything starts.
//! - [`schema_check`]: the CRD revision gate.
//! - `readiness`: `/readyz` and the gate of the ticks.
//! - `schedules`: the CloudPhoneSchedules' watch cache and status writes.
//! - [`tasks`]: the supervised tasks: one that ends early ends `run` with an error.
//! - `wiring`: the steps of [`run_supervising`], each building or starting one part.

pub mod accounts;
pub mod args;
pub mod credentials;
mod error;
mod flags;
mod identity;
mod label_selector;
pub mod leader;
mod preflight;
mod readiness;
mod schedules;
pub mod schema_check;
pub mod tasks;
mod wiring;

pub use args::RunArgs;
pub use error::{MIN_GRACE_PERIOD, RunError};
pub use flags::read_token;
pub use preflight::preflight;

use crate::sim;
use flags::validate;
use identity::identity;
use readiness::OperatorReadiness;
use std::time::Duration;
use tasks::{TaskEnd, TaskEnded, Tasks};
use tracing::{error, info};

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
        prepare_grace_period: _,
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
        own_account_allowed_user_ids: _,
        max_load_until: _,
        restore_estimate: _,
        own_account_calls_in_flight: _,
        own_account_calls_per_second: _,
    } = &args;
    validate(&args)?;
    let (secret, auth) = wiring::vendor_auth(&args, &client)?;
    preflight(&client, &args).await?;
    // Every long-lived task below runs in `tasks`: one that ends early ends `run`.
    wiring::watch_credentials(&mut tasks, &client, secret, &auth);
    let simulator = wiring::start_simulator(&args).await?;
    let vendor_url = simulator
        .as_ref()
        .map_or_else(|| args.vendor_url.clone(), sim::Simulator::url);
    let metrics = wiring::metrics(&auth);
    let (vendor, client_config) = wiring::vendor_client(&args, &vendor_url, &auth, &metrics)?;
    // The CloudPhoneAccounts: their watches feed the engine; their statuses follow its ticks.
    let accounts = wiring::watch_accounts(
        &mut tasks,
        &client,
        &args,
        vendor_url,
        client_config,
        &metrics,
    );
    let identity = identity(&args);
    let (store, watches) = wiring::phone_store(&client, &args, &identity);
    let schedules = schedules::KubeSchedules::watch(&mut tasks, &client, &args.namespaces);
    let (intents_record, leading) = wiring::lease(&client, &args, &identity);
    let engine = wiring::engine(
        store.clone(),
        vendor,
        &args,
        &metrics,
        &accounts,
        intents_record,
    )
    .with_schedules(schedules.clone());
    wiring::write_account_statuses(&mut tasks, &client, accounts.store, &engine, &identity);
    let engine = wiring::fenced(engine, &leading);
    tasks.spawn("CloudPhone watch", watches.run(engine.trigger()));
    wiring::follow_leadership(&mut tasks, &leading.receiver, &metrics);
    let (may_tick, crd) = wiring::gate_ticks(&mut tasks, &client, &leading.receiver);
    let readiness = OperatorReadiness {
        store: store.clone(),
        crd,
        accounts: accounts.feed,
        accounts_error: accounts.error,
        schedules,
    };
    wiring::serve_http(&mut tasks, args.metrics_addr, &metrics, readiness).await?;

    // The tick loop: once the cache has synced, ticks while the gate is open, until `stop_ticks`.
    let stop_ticks = tokio_util::sync::CancellationToken::new();
    let ticking = wiring::tick_loop(
        store.clone(),
        engine.clone(),
        args.tick_interval,
        args.shutdown_timeout,
        may_tick,
        stop_ticks.clone(),
    );
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
    if let Some(leadership) = leading.election {
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
    use super::flags::{min_tick_spacing, own_tenants};
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
    fn the_own_accounts_allowed_users_are_vendor_user_ids() {
        let a = args(&["--own-account-allowed-user-ids", "alice,bob_2"]);
        assert_eq!(a.own_account_allowed_user_ids, ["alice", "bob_2"]);
        assert!(
            args(&[]).own_account_allowed_user_ids.is_empty(),
            "unset: any"
        );
        let err = Cli::try_parse_from(["run", "--own-account-allowed-user-ids", "a b"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--own-account-allowed-user-ids") && err.contains("[A-Za-z0-9_-]"),
            "{err}"
        );
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

    // NB: lower bounds only: a loaded machine can make the calls slower, never faster.
    #[tokio::test]
    async fn the_own_accounts_limits_pace_its_calls() {
        let _deadline = crate::test_deadline::deadline("the_own_accounts_limits_pace_its_calls");
        let sim = crate::sim::Simulator::start(
            crate::sim::SimConfig {
                instances: vec![("kp1".to_owned(), crate::sim::code::IDLE)],
                ..crate::sim::SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let auth = std::sync::Arc::new(crate::koophone::Auth::token(crate::koophone::Token::new(
            "t",
        )));
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let four_calls = |flags: &[&str]| {
            let (client, _) =
                wiring::vendor_client(&args(flags), &sim.url(), &auth, &metrics).unwrap();
            async move {
                let ids = vec!["kp1".to_owned()];
                let started = std::time::Instant::now();
                let calls = (0..4).map(|_| client.query_status_chunk(&ids));
                for result in futures::future::join_all(calls).await {
                    result.unwrap();
                }
                started.elapsed()
            }
        };
        let paced = four_calls(&["--own-account-calls-per-second", "10"]).await;
        assert!(
            paced >= Duration::from_millis(300),
            "10 calls a second: the fourth starts 300 ms after the first, took {paced:?}"
        );
        sim.set_faults(crate::sim::Faults {
            latency: Duration::from_millis(100),
            ..crate::sim::Faults::default()
        })
        .unwrap();
        let one_at_a_time = four_calls(&["--own-account-calls-in-flight", "1"]).await;
        assert!(
            one_at_a_time >= Duration::from_millis(400),
            "one call in flight: four 100 ms calls in a row, took {one_at_a_time:?}"
        );
    }
}
