//! Never a storm at the vendor: the engine's answer to each kind of vendor error, against the
//! simulator over HTTP. A configuration or credential error opens the account's circuit breaker; a
//! business error about one instance isolates that instance; a blip writes nothing.

use crate::support;

use cloudphone_operator::api::{CloudPhone, Lifecycle, Phase};
use cloudphone_operator::koophone::{Auth, Credentials, Token};
use cloudphone_operator::metrics::Metrics;
use cloudphone_operator::plan::SYNCED;
use cloudphone_operator::reconciler::{
    BreakerConfig, Engine, InjectedWriteFailure, MemoryStore, PhoneStore,
};
use cloudphone_operator::sim::{CannedError, Faults, Simulator};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `support::fleet` with every phone at `lifecycle`.
fn fleet(n: usize, lifecycle: Lifecycle) -> (Vec<CloudPhone>, Vec<(String, i64)>) {
    let (mut phones, instances) = support::fleet(n);
    phones.iter_mut().for_each(|p| p.spec.lifecycle = lifecycle);
    (phones, instances)
}

async fn simulator(instances: Vec<(String, i64)>, faults: Faults) -> Simulator {
    support::simulator(instances).faults(faults).start().await
}

fn engine(sim: &Simulator, store: Arc<MemoryStore>, auth: Arc<Auth>) -> Engine<MemoryStore> {
    support::engine(sim, store)
        .auth(auth)
        .grace(Duration::from_secs(30))
        .breaker(BreakerConfig {
            first_probe_after: Duration::from_millis(200),
            max_probe_interval: Duration::from_millis(400),
        })
        .build()
}

fn synced(store: &MemoryStore, name: &str) -> Option<(String, String)> {
    let phone = store.get(&support::key(name))?;
    let c = phone
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == SYNCED)?
        .clone();
    Some((c.status, c.reason))
}

#[tokio::test]
async fn a_configuration_error_costs_the_calls_in_flight_then_one_probe_per_backoff_step() {
    let _deadline = support::deadline(
        "a_configuration_error_costs_the_calls_in_flight_then_one_probe_per_backoff_step",
    );
    let (phones, instances) = fleet(1000, Lifecycle::BackedUp);
    let sim = simulator(
        instances,
        Faults {
            answer_all: Some(CannedError {
                status: 400,
                code: "0000".into(),
            }),
            ..Faults::default()
        },
    )
    .await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(Metrics::new());
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))))
        .with_metrics(metrics.clone());
    let started = Instant::now();
    let mut ticks = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        engine.tick().await;
        ticks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first tick: at most the 8 calls in flight when the first answer came. Then one probe
    // at 200ms, 600ms, 1000ms and 1400ms (the wait doubles, at most 400ms): 4 probes at most.
    let calls = sim.counters().calls("batch-query-status");
    assert!(
        calls <= 8 + 4,
        "{calls} status calls in {ticks} ticks; the naive bisection costs 1,990 a tick"
    );
    assert!(ticks >= 10, "only {ticks} ticks ran");
    assert_eq!(
        sim.counters().calls("backup"),
        0,
        "no backup during an outage"
    );
    assert_eq!(
        synced(&store, "p00007"),
        Some(("False".into(), "TenantNotFound".into()))
    );
    assert!(
        metrics
            .encode()
            .contains("cloudphone_vendor_breaker_open{account=\"default\"} 1"),
        "{}",
        metrics.encode()
    );

    // Fixed at the vendor: the next probe passes, the breaker closes, the fleet converges.
    sim.set_faults(Faults::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    engine.tick().await;
    engine.tick().await;
    assert_eq!(
        synced(&store, "p00007"),
        Some(("True".into(), "Observed".into()))
    );
    assert!(
        metrics
            .encode()
            .contains("cloudphone_vendor_breaker_open{account=\"default\"} 0")
    );
    assert!(sim.counters().calls("backup") >= 10);
}

#[tokio::test]
async fn new_credentials_close_the_breaker_at_once() {
    let _deadline = support::deadline("new_credentials_close_the_breaker_at_once");
    let (phones, instances) = fleet(10, Lifecycle::Observed);
    let sim = simulator(
        instances,
        Faults {
            answer_all: Some(CannedError {
                status: 403,
                code: "APIGW.0301".into(),
            }),
            ..Faults::default()
        },
    )
    .await;
    let store = Arc::new(MemoryStore::new(phones));
    let auth = Arc::new(Auth::token(Token::new("old")));
    let engine = engine(&sim, store.clone(), auth.clone());
    for _ in 0..3 {
        engine.tick().await;
    }
    assert_eq!(
        synced(&store, "p00001"),
        Some(("False".into(), "CredentialsRejected".into()))
    );
    let before = sim.counters().calls("batch-query-status");
    engine.tick().await;
    assert_eq!(
        sim.counters().calls("batch-query-status"),
        before,
        "no call while the breaker is open"
    );
    sim.set_faults(Faults::default()).unwrap();
    auth.set(Ok(Credentials::token(Token::new("rotated"))));
    engine.tick().await;
    assert_eq!(
        synced(&store, "p00001"),
        Some(("True".into(), "Observed".into())),
        "rotated credentials are tried at once"
    );
}

#[tokio::test]
async fn a_business_error_for_one_id_leaves_its_99_neighbours_synced() {
    let _deadline =
        support::deadline("a_business_error_for_one_id_leaves_its_99_neighbours_synced");
    let (phones, instances) = fleet(100, Lifecycle::Observed);
    let mut faults = Faults::default();
    faults.foreign_ids.insert("kp00042".into());
    let sim = simulator(instances, faults).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))));
    for _ in 0..3 {
        let report = engine.tick().await;
        assert!(report.status_calls <= 1 + 2 * 7, "{report:?}");
        assert_eq!(report.query_errors, 1, "{report:?}");
    }
    for p in store.snapshot() {
        let name = p.metadata.name.clone().unwrap();
        if p.spec.instance_id == "kp00042" {
            assert_eq!(
                synced(&store, &name),
                Some(("False".into(), "NotOwned".into()))
            );
        } else {
            assert_eq!(
                synced(&store, &name),
                Some(("True".into(), "Observed".into())),
                "{name}"
            );
            assert_eq!(p.status.as_ref().unwrap().phase, Phase::DataLoaded);
        }
    }
}

#[tokio::test]
async fn a_blip_writes_nothing() {
    let _deadline = support::deadline("a_blip_writes_nothing");
    let (phones, instances) = fleet(20, Lifecycle::Observed);
    let sim = simulator(instances, Faults::default()).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))));
    engine.tick().await;
    let writes = store.writes();
    sim.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let report = engine.tick().await;
    assert_eq!(report.query_errors, 20);
    sim.set_faults(Faults::default()).unwrap();
    engine.tick().await;
    assert_eq!(
        store.writes(),
        writes,
        "a one-tick failure changed statuses"
    );
}

#[tokio::test]
async fn a_conflicting_intent_write_sends_no_backup_call() {
    let _deadline = support::deadline("a_conflicting_intent_write_sends_no_backup_call");
    let (phones, instances) = fleet(2, Lifecycle::BackedUp);
    let sim = simulator(instances, Faults::default()).await;
    let store = Arc::new(MemoryStore::new(phones));
    store.fail_writes(support::key("p00000"), InjectedWriteFailure::Conflict, 1);
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))));
    let report = engine.tick().await;
    assert_eq!(report.backups_requested, 1, "{report:?}");
    assert_eq!(sim.instance("kp00000").unwrap().backup_requests, 0);
    assert_eq!(sim.instance("kp00001").unwrap().backup_requests, 1);
    engine.tick().await;
    assert_eq!(
        sim.instance("kp00000").unwrap().backup_requests,
        1,
        "planned afresh, and backed up, next tick"
    );
}

#[tokio::test]
async fn one_id_answered_4001_is_not_found_and_its_neighbours_observed() {
    let _deadline =
        support::deadline("one_id_answered_4001_is_not_found_and_its_neighbours_observed");
    let (phones, instances) = fleet(100, Lifecycle::Observed);
    let mut faults = Faults::default();
    faults.vanished_ids.insert("kp00013".into());
    let sim = simulator(instances, faults).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))));
    let report = engine.tick().await;
    assert_eq!(
        report.query_errors, 0,
        "a missing instance is an answer: {report:?}"
    );
    let gone = store.get(&support::key("p00013")).unwrap();
    assert_eq!(gone.status.as_ref().unwrap().phase, Phase::NotFound);
    let neighbour = store.get(&support::key("p00014")).unwrap();
    assert_eq!(neighbour.status.as_ref().unwrap().phase, Phase::DataLoaded);
}

#[tokio::test]
async fn after_an_outage_the_first_probe_leaves_after_the_first_backoff_step() {
    let _deadline =
        support::deadline("after_an_outage_the_first_probe_leaves_after_the_first_backoff_step");
    let (phones, instances) = fleet(1000, Lifecycle::Observed);
    // Every call answered 0000 after 100 ms: the 8 calls in flight all fail, one opens the
    // breaker and the other 7 fail after it opened.
    let sim = simulator(
        instances,
        Faults {
            latency: Duration::from_millis(100),
            answer_all: Some(CannedError {
                status: 400,
                code: "0000".into(),
            }),
            ..Faults::default()
        },
    )
    .await;
    let store = Arc::new(MemoryStore::new(phones));
    // The production back-off: 10 s, doubling, at most 10 minutes.
    let engine = support::engine(&sim, store.clone())
        .breaker(BreakerConfig::default())
        .build();
    let started = Instant::now();
    let first = engine.tick().await;
    let opened = Instant::now();
    assert_eq!(first.status_calls, 8, "{first:?}");
    sim.set_faults(Faults::default()).unwrap();
    let probe = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let at = Instant::now();
        let report = engine.tick().await;
        if report.status_calls > 0 {
            break Some((at, report));
        }
        if started.elapsed() > Duration::from_secs(20) {
            break None;
        }
    };
    let Some((at, report)) = probe else {
        panic!("no call within 20 s of the outage (the README promises a first probe after 10 s)");
    };
    let (after_start, after_open) = (at - started, at - opened);
    assert!(
        after_start >= Duration::from_secs(9) && after_open <= Duration::from_secs(12),
        "the first probe left {after_open:?} after the breaker opened"
    );
    assert!(report.query_errors < report.queried, "{report:?}");
}

/// The simulator answering every call HTTP 400 `1000`: the vendor refuses the request itself.
fn refusing_everything() -> Faults {
    Faults {
        answer_all: Some(CannedError {
            status: 400,
            code: "1000".into(),
        }),
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_vendor_refusing_every_call_as_a_bad_parameter_opens_the_breaker_in_a_few_calls() {
    let _deadline = support::deadline(
        "a_vendor_refusing_every_call_as_a_bad_parameter_opens_the_breaker_in_a_few_calls",
    );
    // A first start: no id of the account ever answered.
    let (phones, instances) = fleet(1000, Lifecycle::BackedUp);
    let sim = simulator(instances, refusing_everything()).await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(Metrics::new());
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))))
        .with_metrics(metrics.clone());
    // 2.5 s of ticks 50 ms apart under a breaker of 200 ms, doubling, at most 400 ms: more ticks
    // and more probes than 25 s under the production breaker (10 s, doubling) would see.
    let started = Instant::now();
    let mut ticks = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        engine.tick().await;
        ticks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = sim.counters().calls("batch-query-status");
    assert!(
        calls <= 200,
        "{calls} status calls in {ticks} ticks; splitting every chunk down to single ids costs 1,990 a tick"
    );
    assert!(ticks >= 10, "only {ticks} ticks ran");
    assert_eq!(sim.counters().calls("backup"), 0);
    let (status, reason) = synced(&store, "p00007").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ConfigurationError")
    );
    assert!(
        metrics
            .encode()
            .contains("cloudphone_vendor_breaker_open{account=\"default\"} 1"),
        "{}",
        metrics.encode()
    );
}

#[tokio::test]
async fn a_vendor_that_starts_refusing_every_call_is_told_by_one_id_that_answered_before() {
    let _deadline = support::deadline(
        "a_vendor_that_starts_refusing_every_call_is_told_by_one_id_that_answered_before",
    );
    let (phones, instances) = fleet(1000, Lifecycle::Observed);
    let sim = simulator(instances, Faults::default()).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))));
    engine.tick().await;
    sim.set_faults(refusing_everything()).unwrap();
    sim.reset_counters();
    let report = engine.tick().await;
    // The calls in flight when the first refusal came, their halves, and the one id asked alone.
    assert!(
        report.status_calls <= 8 * 3 + 1,
        "{} status calls: {report:?}",
        report.status_calls
    );
    for _ in 0..2 {
        engine.tick().await;
    }
    assert_eq!(
        synced(&store, "p00420"),
        Some(("False".into(), "ConfigurationError".into()))
    );
    assert!(sim.counters().calls("batch-query-status") <= 8 * 3 + 1);
}

#[tokio::test]
async fn one_tenants_bogus_ids_in_a_shared_account_stay_its_own_refusals() {
    let _deadline =
        support::deadline("one_tenants_bogus_ids_in_a_shared_account_stay_its_own_refusals");
    // Three teams' namespaces share the operator's account; team-b's 100 phones name ids the
    // vendor refuses (HTTP 400, 1000). The tick's order spreads them over every chunk.
    let mut phones = Vec::new();
    let mut instances = Vec::new();
    let mut faults = Faults::default();
    for (team, n) in [("team-a", 300), ("team-b", 100), ("team-c", 200)] {
        for i in 0..n {
            let id = format!("{team}-{i:04}");
            phones.push(
                support::cloudphone(&format!("p-{i:04}"), &id)
                    .namespace(team)
                    .build(),
            );
            if team == "team-b" {
                faults.rejected_ids.insert(id);
            } else {
                instances.push((id, cloudphone_operator::sim::code::DATA_LOADED));
            }
        }
    }
    let sim = simulator(instances, faults).await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(Metrics::new());
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))))
        .with_metrics(metrics.clone());
    for _ in 0..3 {
        let report = engine.tick().await;
        assert_eq!(report.query_errors, 100, "{report:?}");
    }
    assert!(
        metrics
            .encode()
            .contains("cloudphone_vendor_breaker_open{account=\"default\"} 0"),
        "{}",
        metrics.encode()
    );
    assert_eq!(
        sim.counters().backups_started,
        500,
        "every good phone backed up"
    );
    for p in store.snapshot() {
        let namespace = p.metadata.namespace.clone().unwrap();
        let synced = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == SYNCED))
            .map(|c| (c.status.clone(), c.reason.clone()));
        let want = if namespace == "team-b" {
            ("False", "InvalidParameter")
        } else {
            ("True", "Observed")
        };
        assert_eq!(
            synced,
            Some((want.0.into(), want.1.into())),
            "{namespace}/{}",
            p.metadata.name.as_deref().unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn splitting_refused_calls_keeps_to_the_accounts_cap_on_calls_in_flight() {
    let _deadline =
        support::deadline("splitting_refused_calls_keeps_to_the_accounts_cap_on_calls_in_flight");
    // Every tenth id refused (HTTP 400, 1000): every chunk splits down to them.
    let (phones, instances) = fleet(400, Lifecycle::Observed);
    let mut faults = Faults {
        latency: Duration::from_millis(20),
        ..Faults::default()
    };
    for (id, _) in instances.iter().step_by(10) {
        faults.rejected_ids.insert(id.clone());
    }
    let sim = simulator(instances, faults).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .calls_in_flight(4)
        .breaker(BreakerConfig::default())
        .build();
    let report = engine.tick().await;
    assert_eq!(report.query_errors, 40, "{report:?}");
    let counters = sim.counters();
    let query = &counters.endpoints["batch-query-status"];
    assert!(
        query.calls > 100,
        "the chunks were not split: {} calls",
        query.calls
    );
    assert!(
        query.max_in_flight <= 4,
        "{} status calls in flight at once, the cap is 4",
        query.max_in_flight
    );
}

#[tokio::test]
async fn a_vendor_refusing_every_backup_call_is_no_storm_and_the_intents_stay() {
    let _deadline =
        support::deadline("a_vendor_refusing_every_backup_call_is_no_storm_and_the_intents_stay");
    let (phones, instances) = fleet(1000, Lifecycle::BackedUp);
    // Status queries answer; every backup call is refused 400 1000, whatever its ids.
    let sim = simulator(
        instances,
        Faults {
            answer_all_backups: Some(CannedError {
                status: 400,
                code: "1000".into(),
            }),
            ..Faults::default()
        },
    )
    .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Arc::new(Auth::token(Token::new("t"))));
    let report = engine.tick().await;
    // Ten chunks: each its call, a status query, then three ids alone; halving down to single ids
    // would cost 199 backup calls a chunk.
    let backups = sim.counters().calls("backup");
    assert!(
        backups <= 40,
        "{backups} backup calls for 1,000 phones: {report:?}"
    );
    for phone in store.snapshot() {
        let status = phone.status.as_ref().unwrap();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "BackupCallFailed", "{status:?}");
        assert!(
            status.backup.as_ref().is_some_and(|b| b.in_flight),
            "a refused call left: its intent stays, and its grace period runs: {status:?}"
        );
    }
    let systematic = store
        .snapshot()
        .iter()
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.message.contains("ConfigurationError"))
            })
        })
        .count();
    assert!(
        systematic >= 900,
        "{systematic} phones told the refusal is systematic"
    );
    // Within the grace period, nothing more.
    engine.tick().await;
    assert_eq!(sim.counters().calls("backup"), backups);
}
