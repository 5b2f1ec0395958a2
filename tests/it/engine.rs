//! The tick engine on the in-memory store against the simulator, over real HTTP.

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, Lifecycle, Phase};
use cloudphone_operator::plan::{READY, SYNCED};
use cloudphone_operator::reconciler::{
    Engine, EngineConfig, InjectedWriteFailure, IntentsRecord, MemoryIntentsRecord, MemoryStore,
    PhoneStore, RecordError, TickReport,
};
use cloudphone_operator::sim::{Faults, SimConfig, Simulator, Timings, code};
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::fleet;

/// A test phone created at the shared fixed instant.
fn phone(name: &str, instance: &str) -> CloudPhone {
    support::cloudphone(name, instance).build()
}

async fn simulator(instances: Vec<(String, i64)>, backup_duration: Duration) -> Simulator {
    support::simulator(instances)
        .backup_duration(backup_duration)
        .start()
        .await
}

fn engine(sim: &Simulator, store: Arc<MemoryStore>, grace: Duration) -> Engine<MemoryStore> {
    support::engine(sim, store)
        .grace(grace)
        .backoff(Duration::from_millis(500), Duration::from_secs(2))
        .build()
}

fn status_of(store: &MemoryStore, name: &str) -> CloudPhoneStatus {
    let key = support::key(name);
    store.get(&key).unwrap().status.clone().unwrap_or_default()
}

fn condition(status: &CloudPhoneStatus, type_: &str) -> (String, String) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

fn all_idle(store: &MemoryStore) -> bool {
    store
        .snapshot()
        .iter()
        .all(|p| p.status.as_ref().is_some_and(|s| s.phase == Phase::Idle))
}

/// Runs `engine` ticking every 100ms while `leader` says so; send on the returned channel to shut it
/// down (the tick in flight gets `shutdown_grace`).
fn spawn_leader_loop(
    engine: &Arc<Engine<MemoryStore>>,
    leader: tokio::sync::watch::Receiver<bool>,
    shutdown_grace: Duration,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = engine.clone();
    let runner = tokio::spawn(async move {
        engine
            .run_while_leading(Duration::from_millis(100), leader, shutdown_grace, async {
                let _ = stop_rx.await;
            })
            .await
    });
    (stop_tx, runner)
}

/// Runs `engine` ticking every hour (at once first) and on its trigger; send on the returned
/// channel to shut it down.
fn spawn_hourly_loop(
    engine: &Arc<Engine<MemoryStore>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = engine.clone();
    let runner = tokio::spawn(async move {
        engine
            .run(Duration::from_secs(3600), Duration::from_secs(1), async {
                let _ = stop_rx.await;
            })
            .await
    });
    (stop_tx, runner)
}

/// Stops a loop spawned by [`spawn_leader_loop`] or [`spawn_hourly_loop`] and waits for it to end.
async fn stop_loop(stop_tx: tokio::sync::oneshot::Sender<()>, runner: tokio::task::JoinHandle<()>) {
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
}

/// Waits (up to `polls` times 20 ms) until the simulator has answered `n` status calls.
async fn wait_for_status_calls(sim: &Simulator, n: u64, polls: usize) {
    for _ in 0..polls {
        if sim.counters().calls("batch-query-status") >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ticks until every phone is Idle, returning the reports; fails after `max` ticks.
async fn tick_until_idle(engine: &Engine<MemoryStore>, max: usize) -> Vec<TickReport> {
    let mut reports = Vec::new();
    for _ in 0..max {
        reports.push(engine.tick().await);
        if all_idle(engine.store()) {
            return reports;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the fleet did not converge in {max} ticks: {:?}",
        reports.last()
    );
}

#[tokio::test]
async fn a_fleet_of_250_converges_with_3_status_calls_a_tick_and_3_backup_calls_in_all() {
    let _deadline = support::deadline(
        "a_fleet_of_250_converges_with_3_status_calls_a_tick_and_3_backup_calls_in_all",
    );
    let (phones, instances) = fleet(250);
    let sim = simulator(instances, Duration::from_millis(300)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_secs(30));
    let reports = tick_until_idle(&engine, 40).await;
    for report in &reports {
        assert_eq!(report.status_calls, 3, "{report:?}");
    }
    assert_eq!(reports[0].backup_calls, 3);
    assert_eq!(reports[0].backups_requested, 250);
    let counters = sim.counters();
    assert_eq!(counters.calls("backup"), 3);
    assert_eq!(counters.backups_started, 250);
    assert_eq!(
        counters.calls("batch-query-status"),
        3 * reports.len() as u64
    );
    for p in store.snapshot() {
        let status = p.status.clone().unwrap();
        assert_eq!(
            condition(&status, READY),
            ("True".into(), "BackedUp".into())
        );
        assert_eq!(status.instance_status, Some(code::IDLE));
        assert_eq!(status.observed_generation, Some(1));
        assert!(status.backup.unwrap().request_id.is_some());
    }
    // Steady state: nothing changed, nothing written.
    let writes = store.writes();
    let steady = engine.tick().await;
    assert_eq!(
        (
            steady.statuses_written,
            steady.backup_calls,
            steady.status_calls
        ),
        (0, 0, 3)
    );
    assert_eq!(store.writes(), writes);
}

#[tokio::test]
async fn injected_faults_delay_convergence_but_never_double_a_backup() {
    let _deadline =
        support::deadline("injected_faults_delay_convergence_but_never_double_a_backup");
    let (phones, instances) = fleet(1000);
    let sim = simulator(instances, Duration::from_millis(200)).await;
    sim.set_faults(Faults {
        server_error_rate: 0.2,
        garbage_rate: 0.05,
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_millis(600));
    tick_until_idle(&engine, 100).await;
    let counters = sim.counters();
    let backup = &counters.endpoints["backup"];
    assert!(
        backup.outcomes.get("injected-500").copied().unwrap_or(0)
            + backup
                .outcomes
                .get("injected-garbage")
                .copied()
                .unwrap_or(0)
            > 0,
        "the faults were injected: {backup:?}"
    );
    for (id, instance) in sim.instances() {
        assert_eq!(instance.backups_started, 1, "{id}: {instance:?}");
        assert_eq!(
            instance.backup_requests, 1,
            "{id} was sent a second backup call: {instance:?}"
        );
    }
}

#[tokio::test]
async fn one_bad_id_in_a_chunk_of_100_costs_the_other_99_nothing() {
    let _deadline = support::deadline("one_bad_id_in_a_chunk_of_100_costs_the_other_99_nothing");
    let (mut phones, mut instances) = fleet(100);
    phones
        .iter_mut()
        .for_each(|p| p.spec.lifecycle = Lifecycle::Observed);
    instances.iter_mut().for_each(|i| i.1 = code::STREAMING);
    let sim = simulator(instances, Duration::from_secs(1)).await;
    let mut faults = Faults::default();
    faults.rejected_ids.insert("kp00042".into());
    sim.set_faults(faults).unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_secs(30));
    // Synced turns False only once the failure persisted: three ticks by default.
    for tick in 1..=3 {
        let report = engine.tick().await;
        // One call, then a split at each of about log2(100) levels: two calls per level.
        assert!(report.status_calls <= 1 + 2 * 7, "{report:?}");
        assert_eq!(report.query_errors, 1, "{report:?} {:?}", sim.counters());
        if tick < 3 {
            let bad = status_of(&store, "p00042");
            assert!(
                bad.conditions.iter().all(|c| c.type_ != SYNCED),
                "a failure reported before it persisted: {bad:?}"
            );
        }
    }
    for p in store.snapshot() {
        let status = p.status.clone().unwrap();
        if p.spec.instance_id == "kp00042" {
            assert_eq!(
                condition(&status, SYNCED),
                ("False".into(), "InvalidParameter".into())
            );
            assert_eq!(status.phase, Phase::Pending);
        } else {
            assert_eq!(
                condition(&status, SYNCED),
                ("True".into(), "Observed".into()),
                "{}",
                p.spec.instance_id
            );
            assert_eq!(status.phase, Phase::Streaming);
        }
    }
}

#[tokio::test]
async fn a_backup_refused_for_one_instance_still_backs_up_the_others() {
    let _deadline =
        support::deadline("a_backup_refused_for_one_instance_still_backs_up_the_others");
    let (phones, instances) = fleet(10);
    let sim = simulator(instances, Duration::from_secs(5)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_secs(30));
    let tick = tokio::spawn(async move { engine.tick().await });
    // Once the status query is answered (DataLoaded for all), someone else starts a backup of
    // kp00003 before our backup call: the vendor refuses that call whole with 2006.
    while sim.counters().calls("batch-query-status") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.seed([("kp00003", code::BACKING_UP)]);
    let report = tick.await.unwrap();
    assert_eq!(report.backups_requested, 9, "{report:?}");
    assert_eq!(report.backup_errors, 0, "2006 is a wait, not an error");
    assert_eq!(sim.counters().backups_started, 9);
    assert!(report.backup_calls <= 1 + 2 * 4, "{report:?}");
    assert_eq!(
        condition(&status_of(&store, "p00003"), READY).1,
        "BackingUp"
    );
    assert_eq!(
        condition(&status_of(&store, "p00004"), READY).1,
        "BackupRequested"
    );
}

#[tokio::test]
async fn a_fresh_engine_after_a_restart_does_not_back_up_again() {
    let _deadline = support::deadline("a_fresh_engine_after_a_restart_does_not_back_up_again");
    let (phones, instances) = fleet(150);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let first = engine(&sim, store.clone(), Duration::from_secs(60));
    assert_eq!(first.tick().await.backups_requested, 150);
    drop(first);
    let restarted = engine(&sim, store.clone(), Duration::from_secs(60));
    for _ in 0..3 {
        let report = restarted.tick().await;
        assert_eq!(report.backup_calls, 0, "{report:?}");
    }
    assert_eq!(sim.counters().calls("backup"), 2);
    assert_eq!(status_of(&store, "p00000").phase, Phase::BackingUp);
}

#[tokio::test]
async fn a_restart_while_the_vendor_still_shows_data_loaded_waits_for_the_grace_period() {
    let _deadline = support::deadline(
        "a_restart_while_the_vendor_still_shows_data_loaded_waits_for_the_grace_period",
    );
    // The vendor accepted the call but its status query lags: a fresh engine must not call again
    // before the grace period, because the status written ahead of the call records it.
    let (phones, instances) = fleet(5);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let first = engine(&sim, store.clone(), Duration::from_secs(60));
    first.tick().await;
    drop(first);
    sim.seed((0..5).map(|i| {
        (
            ["kp00000", "kp00001", "kp00002", "kp00003", "kp00004"][i],
            code::DATA_LOADED,
        )
    }));
    let restarted = engine(&sim, store.clone(), Duration::from_secs(60));
    let report = restarted.tick().await;
    assert_eq!(report.backup_calls, 0, "{report:?}");
    assert_eq!(
        condition(&status_of(&store, "p00000"), READY).1,
        "BackupRequested"
    );
}

#[tokio::test]
async fn suspended_duplicate_and_invalid_phones_make_no_vendor_call() {
    let _deadline = support::deadline("suspended_duplicate_and_invalid_phones_make_no_vendor_call");
    let mut suspended = phone("suspended", "kp1");
    suspended.spec.suspend = true;
    let owner = phone("owner", "kp2");
    let mut duplicate = phone("duplicate", "kp2");
    duplicate.metadata.creation_timestamp =
        Some(Time(Timestamp::from_second(1_800_000_000).unwrap()));
    let invalid = phone("invalid", "not valid!");
    let sim = simulator(
        vec![
            ("kp1".into(), code::DATA_LOADED),
            ("kp2".into(), code::IDLE),
        ],
        Duration::from_secs(1),
    )
    .await;
    let store = Arc::new(MemoryStore::new([suspended, owner, duplicate, invalid]));
    let report = engine(&sim, store.clone(), Duration::from_secs(30))
        .tick()
        .await;
    assert_eq!(report.queried, 1);
    assert_eq!(sim.counters().endpoints["batch-query-status"].ids, 1);
    assert_eq!(report.backup_calls, 0);
    assert_eq!(
        condition(&status_of(&store, "suspended"), READY).1,
        "Suspended"
    );
    assert_eq!(
        condition(&status_of(&store, "duplicate"), READY).1,
        "DuplicateInstance"
    );
    assert_eq!(
        condition(&status_of(&store, "invalid"), READY).1,
        "InvalidSpec"
    );
    assert_eq!(
        condition(&status_of(&store, "owner"), READY),
        ("True".into(), "BackedUp".into())
    );
}

#[tokio::test]
async fn failed_status_writes_are_retried_next_tick_and_deleted_phones_skipped() {
    let _deadline =
        support::deadline("failed_status_writes_are_retried_next_tick_and_deleted_phones_skipped");
    let (phones, instances) = fleet(3);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let key = support::key;
    // p00000's write-ahead conflicts: its backup is not sent this tick.
    store.fail_writes(key("p00000"), InjectedWriteFailure::Conflict, 1);
    store.fail_writes(key("p00001"), InjectedWriteFailure::Gone, 1);
    let engine = engine(&sim, store.clone(), Duration::from_secs(60));
    let first = engine.tick().await;
    assert_eq!(first.write_errors, 1, "{first:?}");
    assert_eq!(first.backups_requested, 1);
    assert_eq!(sim.instance("kp00000").unwrap().backup_requests, 0);
    assert_eq!(sim.instance("kp00001").unwrap().backup_requests, 0);
    let second = engine.tick().await;
    assert_eq!(second.backups_requested, 2, "{second:?}");
    for id in ["kp00000", "kp00001", "kp00002"] {
        assert_eq!(sim.instance(id).unwrap().backup_requests, 1, "{id}");
    }
    // A phone deleted between ticks is simply forgotten.
    store.remove(&key("p00002"));
    let third = engine.tick().await;
    assert_eq!((third.phones, third.write_errors), (2, 0));
}

#[tokio::test]
async fn a_trigger_during_a_tick_causes_exactly_one_more_tick() {
    let _deadline = support::deadline("a_trigger_during_a_tick_causes_exactly_one_more_tick");
    let (phones, instances) = fleet(1);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = Arc::new(
        support::engine(&sim, store)
            .grace(Duration::from_secs(60))
            .config(|c| c.min_tick_spacing = Duration::from_millis(200))
            .build(),
    );
    let trigger = engine.trigger();
    let (stop_tx, runner) = spawn_hourly_loop(&engine);
    // The first tick starts at once; trigger three times while it waits on the slow vendor.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        trigger.fire();
    }
    let status_calls = || sim.counters().calls("batch-query-status");
    for _ in 0..100 {
        if status_calls() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status_calls(),
        2,
        "three triggers during one tick cause exactly one more tick"
    );
    stop_loop(stop_tx, runner).await;
}

#[tokio::test]
async fn only_the_leader_ticks_and_a_lost_lease_cuts_the_tick() {
    let _deadline = support::deadline("only_the_leader_ticks_and_a_lost_lease_cuts_the_tick");
    let (phones, instances) = fleet(1);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(500),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = Arc::new(engine(&sim, store.clone(), Duration::from_secs(60)));
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(false);
    let (stop_tx, runner) = spawn_leader_loop(&engine, leader_rx, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sim.counters().calls("batch-query-status"),
        0,
        "a standby never calls the vendor"
    );
    leader_tx.send(true).unwrap();
    while sim.counters().calls("batch-query-status") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first tick is waiting on the slow vendor: losing the lease now cuts it before its
    // backup call is sent.
    leader_tx.send(false).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        sim.counters().calls("backup"),
        0,
        "no vendor call after the lease was lost"
    );
    assert_eq!(sim.counters().calls("batch-query-status"), 1);
    assert_eq!(store.writes(), 0);
    stop_loop(stop_tx, runner).await;
}

#[tokio::test]
async fn a_wave_of_transitions_publishes_at_most_the_cap_and_one_summary() {
    let _deadline =
        support::deadline("a_wave_of_transitions_publishes_at_most_the_cap_and_one_summary");
    let (phones, instances) = fleet(250);
    let sim = simulator(instances, Duration::from_secs(5)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let client = support::sim_client(&sim);
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine = Engine::new(
        store.clone(),
        client,
        EngineConfig {
            max_events_per_tick: 10,
            ..EngineConfig::default()
        },
    )
    .with_metrics(metrics.clone());
    let report = engine.tick().await;
    assert_eq!(report.backups_requested, 250);
    let events = store.events();
    assert_eq!(events.len(), 11, "{events:?}");
    let summary = &events
        .iter()
        .find(|(_, e)| e.reason == "EventsCapped")
        .unwrap()
        .1;
    assert!(
        summary.message.contains("240 more events"),
        "{}",
        summary.message
    );
    assert!(
        metrics
            .encode()
            .contains("cloudphone_events_dropped_total 240"),
        "{}",
        metrics.encode()
    );
}

#[tokio::test]
async fn events_are_published_once_per_transition() {
    let _deadline = support::deadline("events_are_published_once_per_transition");
    let (phones, instances) = fleet(3);
    let sim = simulator(instances, Duration::from_millis(200)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_secs(60));
    tick_until_idle(&engine, 40).await;
    for _ in 0..3 {
        engine.tick().await;
    }
    let events = store.events();
    let count = |reason: &str| events.iter().filter(|(_, e)| e.reason == reason).count();
    assert_eq!(count("BackupRequested"), 3, "{events:?}");
    assert_eq!(count("BackedUp"), 3, "{events:?}");
    assert_eq!(events.len(), 6, "{events:?}");
}

#[tokio::test]
async fn ticks_record_metrics() {
    let _deadline = support::deadline("ticks_record_metrics");
    let (phones, instances) = fleet(3);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let client = support::sim_client(&sim).with_observer(metrics.clone());
    let engine = Engine::new(store, client, EngineConfig::default()).with_metrics(metrics.clone());
    engine.tick().await;
    assert!(engine.last_success().is_some());
    let text = metrics.encode();
    for line in [
        "cloudphone_vendor_calls_total{endpoint=\"batch-query-status\",code=\"ok\",account=\"default\"} 1",
        "cloudphone_vendor_calls_total{endpoint=\"backup\",code=\"ok\",account=\"default\"} 1",
        "cloudphone_backups_requested_total 3",
        // One write per backup on the happy path: the intent, which carries the call's request id;
        // the vendor's task and job ids ride on the next write the observation needs anyway.
        "cloudphone_status_writes_total{outcome=\"ok\"} 3",
        "cloudphone_phones{namespace=\"fleet\",phase=\"DataLoaded\",lifecycle=\"BackedUp\",effective_lifecycle=\"BackedUp\"} 3",
        "cloudphone_backups_total{outcome=\"accepted\"} 3",
        "cloudphone_tick_duration_seconds_count 1",
        "cloudphone_credentials_usable 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let duration: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cloudphone_tick_duration_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        duration > 0.0,
        "the tick's duration is recorded: {duration}"
    );
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_during_the_shutdown_grace_stops_at_once() {
    let _deadline =
        support::deadline("a_leader_that_loses_its_lease_during_the_shutdown_grace_stops_at_once");
    let (phones, instances) = fleet(1);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(800),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = Arc::new(engine(&sim, store.clone(), Duration::from_secs(60)));
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(true);
    let (stop_tx, runner) = spawn_leader_loop(&engine, leader_rx, Duration::from_secs(30));
    while sim.counters().calls("batch-query-status") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGTERM while the tick waits on the slow vendor: the tick may finish within the grace...
    let _ = stop_tx.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...but not once the Lease is gone.
    leader_tx.send(false).unwrap();
    tokio::time::timeout(Duration::from_millis(500), runner)
        .await
        .expect("the tick was not cut when the lease was lost")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        sim.counters().calls("backup"),
        0,
        "a backup call after the lease was lost"
    );
}

#[tokio::test]
async fn a_new_owner_sends_no_backup_within_the_grace_period_of_the_previous_owners_intent() {
    let _deadline = support::deadline(
        "a_new_owner_sends_no_backup_within_the_grace_period_of_the_previous_owners_intent",
    );
    let sim = Simulator::start(
        SimConfig {
            instances: vec![("kp1".into(), code::DATA_LOADED)],
            timings: Timings {
                backup_queue_delay: Duration::from_secs(3),
                ..Timings::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let store = Arc::new(MemoryStore::new([phone("old", "kp1")]));
    let engine = engine(&sim, store.clone(), Duration::from_secs(60));
    let report = engine.tick().await;
    assert_eq!(report.backups_requested, 1);
    // The owner is deleted and another object takes the instance over, while the vendor still
    // shows DataLoaded (the backup is queued).
    store.remove(&support::key("old"));
    store.insert(phone("new", "kp1"));
    for _ in 0..3 {
        let report = engine.tick().await;
        assert_eq!(report.backup_calls, 0, "{report:?}");
    }
    assert_eq!(sim.instance("kp1").unwrap().requests_while_busy, 0);
    assert_eq!(
        condition(&status_of(&store, "new"), READY),
        ("False".into(), "AwaitingHandover".into())
    );
}

/// A simulator whose backups stay queued (the instance DataLoaded) for `queued`.
async fn queued_simulator(instances: &[&str], queued: Duration) -> Simulator {
    Simulator::start(
        SimConfig {
            instances: instances
                .iter()
                .map(|i| ((*i).to_owned(), code::DATA_LOADED))
                .collect(),
            timings: Timings {
                backup_queue_delay: queued,
                ..Timings::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// A new process (kill -9 of the last one): a fresh engine, nothing in memory, over the same store
/// and the same intents record (the Lease).
fn process(
    sim: &Simulator,
    store: &Arc<MemoryStore>,
    lease: &MemoryIntentsRecord,
) -> Engine<MemoryStore> {
    engine(sim, store.clone(), Duration::from_secs(120))
        .with_intents_record(Arc::new(lease.clone()))
}

fn ready_of(store: &MemoryStore, name: &str) -> (String, String, String) {
    let status = status_of(store, name);
    let c = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// A phone created just now.
fn new_phone(name: &str, instance: &str) -> CloudPhone {
    let mut p = phone(name, instance);
    p.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    p
}

#[tokio::test]
async fn a_fresh_install_backs_up_at_its_first_tick_once_its_intents_are_recorded() {
    let _deadline = support::deadline(
        "a_fresh_install_backs_up_at_its_first_tick_once_its_intents_are_recorded",
    );
    // 300 phones created just now, in three chunks backed up at once.
    let ids: Vec<String> = (0..300).map(|i| format!("kp{i:03}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let sim = Arc::new(queued_simulator(&ids, Duration::from_secs(3)).await);
    let store = Arc::new(MemoryStore::new(
        ids.iter().map(|id| new_phone(&format!("young-{id}"), id)),
    ));
    let lease = MemoryIntentsRecord::default();
    let spy = Arc::new(Spy {
        inner: lease.clone(),
        sim_backups_at_extend: Mutex::default(),
        sim: Some(sim.clone()),
        fail: AtomicBool::new(false),
    });
    let report = engine(&sim, store.clone(), Duration::from_secs(120))
        .with_intents_record(spy.clone())
        .tick()
        .await;
    assert_eq!(report.backups_requested, 300, "{report:?}");
    assert_eq!(report.backup_calls, 3, "{report:?}");
    assert_eq!(
        *spy.sim_backups_at_extend.lock().unwrap(),
        vec![0],
        "the record is written once, before the first call"
    );
    let requested = store
        .snapshot()
        .iter()
        .filter_map(|p| p.status.as_ref()?.backup.as_ref()?.requested_at.clone())
        .map(|t| t.0)
        .max()
        .unwrap();
    let until = lease.get().unwrap();
    assert!(
        until >= requested + Duration::from_secs(120 + 5),
        "the record {until} covers the intent {requested} plus the grace period and the intent's age"
    );
}

/// The intents record of a test: the one shared, and what the vendor had seen when it was extended.
struct Spy {
    inner: MemoryIntentsRecord,
    sim_backups_at_extend: Mutex<Vec<u64>>,
    sim: Option<Arc<Simulator>>,
    fail: AtomicBool,
}

impl IntentsRecord for Spy {
    fn read(&self) -> BoxFuture<'_, Result<Option<Timestamp>, RecordError>> {
        self.inner.read()
    }

    fn extend(&self, until: Timestamp) -> BoxFuture<'_, Result<(), RecordError>> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err(RecordError::Store {
                    source: "the API server is down".into(),
                });
            }
            if let Some(sim) = &self.sim {
                let calls = sim.counters().calls("backup");
                self.sim_backups_at_extend.lock().unwrap().push(calls);
            }
            self.inner.extend(until).await
        })
    }
}

#[tokio::test]
async fn a_record_that_cannot_be_written_means_no_backup_call() {
    let _deadline = support::deadline("a_record_that_cannot_be_written_means_no_backup_call");
    let sim = queued_simulator(&["kp1"], Duration::from_secs(3)).await;
    let store = Arc::new(MemoryStore::new([phone("p", "kp1")]));
    let spy = Arc::new(Spy {
        inner: MemoryIntentsRecord::default(),
        sim_backups_at_extend: Mutex::default(),
        sim: None,
        fail: AtomicBool::new(true),
    });
    let engine =
        engine(&sim, store.clone(), Duration::from_secs(120)).with_intents_record(spy.clone());
    for _ in 0..2 {
        let report = engine.tick().await;
        assert_eq!(report.backup_calls, 0, "{report:?}");
    }
    assert_eq!(sim.counters().calls("backup"), 0);
    assert!(
        status_of(&store, "p").backup.is_none_or(|b| !b.in_flight),
        "no intent is written for a call that cannot be recorded"
    );
    let (_, reason, message) = ready_of(&store, "p");
    assert_eq!(reason, "BackupCallFailed");
    assert!(message.contains("Lease"), "{message}");
    spy.fail.store(false, Ordering::SeqCst);
    assert_eq!(engine.tick().await.backups_requested, 1);
}

/// An intents record whose API server never answers.
struct Hanging;

impl IntentsRecord for Hanging {
    fn read(&self) -> BoxFuture<'_, Result<Option<Timestamp>, RecordError>> {
        Box::pin(std::future::pending())
    }

    fn extend(&self, _until: Timestamp) -> BoxFuture<'_, Result<(), RecordError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_record_that_never_answers_holds_the_phones_without_stalling_the_tick() {
    let _deadline =
        support::deadline("a_record_that_never_answers_holds_the_phones_without_stalling_the_tick");
    let sim = queued_simulator(&["kp1"], Duration::from_secs(3)).await;
    let store = Arc::new(MemoryStore::new([phone("p", "kp1")]));
    let engine = engine(&sim, store.clone(), Duration::from_secs(120))
        .with_intents_record(Arc::new(Hanging));
    let report = tokio::time::timeout(Duration::from_secs(30), engine.tick())
        .await
        .expect("the tick ends");
    assert_eq!(report.backup_calls, 0, "{report:?}");
    assert_eq!(report.queried, 1, "the phones are still observed");
    let (_, reason, message) = ready_of(&store, "p");
    assert_eq!(reason, "AwaitingHandover");
    assert!(message.contains("not known"), "{message}");
}

#[tokio::test]
async fn the_record_is_extended_before_a_call_whose_intent_would_end_later() {
    let _deadline =
        support::deadline("the_record_is_extended_before_a_call_whose_intent_would_end_later");
    let sim = queued_simulator(&["kp1", "kp2"], Duration::from_secs(3)).await;
    let store = Arc::new(MemoryStore::new([phone("a", "kp1")]));
    let lease = MemoryIntentsRecord::default();
    let engine = process(&sim, &store, &lease);
    assert_eq!(engine.tick().await.backups_requested, 1);
    let first = lease.get().unwrap();
    // Past what the first extension covered (it is written a little ahead).
    tokio::time::sleep(Duration::from_secs(6)).await;
    store.insert(phone("b", "kp2"));
    assert_eq!(engine.tick().await.backups_requested, 1);
    let requested = status_of(&store, "b")
        .backup
        .unwrap()
        .requested_at
        .unwrap()
        .0;
    let second = lease.get().unwrap();
    assert!(second > first);
    assert!(
        second >= requested + Duration::from_secs(120 + 5),
        "the record {second} covers the later intent {requested}"
    );
}

#[tokio::test]
async fn an_owner_deleted_and_its_instance_named_by_a_new_object_waits_across_kills() {
    let _deadline = support::deadline(
        "an_owner_deleted_and_its_instance_named_by_a_new_object_waits_across_kills",
    );
    let sim = queued_simulator(&["kp1"], Duration::from_secs(5)).await;
    let store = Arc::new(MemoryStore::new([phone("old", "kp1")]));
    let lease = MemoryIntentsRecord::default();
    assert_eq!(
        process(&sim, &store, &lease).tick().await.backups_requested,
        1
    );
    // kill -9; the owner is deleted and a new object names its instance (renamed, moved,
    // re-created), while the vendor still shows it DataLoaded (the backup is queued).
    store.remove(&support::key("old"));
    store.insert(new_phone("new", "kp1"));
    for _ in 0..2 {
        let report = process(&sim, &store, &lease).tick().await;
        assert_eq!(report.backup_calls, 0, "{report:?}");
        // kill -9 again
    }
    assert_eq!(sim.counters().calls("backup"), 1);
    let (status, reason, message) = ready_of(&store, "new");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "AwaitingHandover")
    );
    assert!(message.contains("earlier term"), "{message}");
}

#[tokio::test]
async fn a_duplicate_promoted_after_a_kill_waits_for_the_earlier_terms_intents() {
    let _deadline =
        support::deadline("a_duplicate_promoted_after_a_kill_waits_for_the_earlier_terms_intents");
    let sim = queued_simulator(&["kp1"], Duration::from_secs(5)).await;
    // Both old objects: the duplicate is no younger than the grace period.
    let owner = support::cloudphone("owner", "kp1").created(0).build();
    let duplicate = support::cloudphone("duplicate", "kp1").created(10).build();
    let store = Arc::new(MemoryStore::new([owner, duplicate]));
    let lease = MemoryIntentsRecord::default();
    assert_eq!(
        process(&sim, &store, &lease).tick().await.backups_requested,
        1
    );
    assert_eq!(ready_of(&store, "duplicate").1, "DuplicateInstance");
    // kill -9; the owner is deleted: the duplicate is promoted in the next process.
    store.remove(&support::key("owner"));
    let report = process(&sim, &store, &lease).tick().await;
    assert_eq!(report.backup_calls, 0, "{report:?}");
    assert_eq!(sim.counters().calls("backup"), 1);
    assert_eq!(ready_of(&store, "duplicate").1, "AwaitingHandover");
}

#[tokio::test]
async fn a_suspended_duplicate_promoted_later_waits() {
    let _deadline = support::deadline("a_suspended_duplicate_promoted_later_waits");
    let sim = queued_simulator(&["kp1"], Duration::from_secs(5)).await;
    let owner = support::cloudphone("owner", "kp1").created(0).build();
    let duplicate = support::cloudphone("duplicate", "kp1")
        .created(10)
        .suspended()
        .build();
    let store = Arc::new(MemoryStore::new([owner, duplicate.clone()]));
    let lease = MemoryIntentsRecord::default();
    assert_eq!(
        process(&sim, &store, &lease).tick().await.backups_requested,
        1
    );
    // kill -9; meanwhile the owner is deleted. The next process ticks once (the duplicate still
    // suspended: no owner), then the duplicate is resumed.
    store.remove(&support::key("owner"));
    let next = process(&sim, &store, &lease);
    assert_eq!(next.tick().await.backup_calls, 0);
    let mut resumed = (*store.get(&support::key("duplicate")).unwrap()).clone();
    resumed.spec.suspend = false;
    store.insert(resumed);
    let report = next.tick().await;
    assert_eq!(report.backup_calls, 0, "{report:?}");
    assert_eq!(sim.counters().calls("backup"), 1);
    assert_eq!(ready_of(&store, "duplicate").1, "AwaitingHandover");
}

#[tokio::test]
async fn an_account_blocked_duplicate_promoted_later_waits_for_the_blocked_owners_intent() {
    let _deadline = support::deadline(
        "an_account_blocked_duplicate_promoted_later_waits_for_the_blocked_owners_intent",
    );
    let sim = queued_simulator(&["kp1"], Duration::from_secs(5)).await;
    let owner = support::cloudphone("owner", "kp1").created(0).build();
    // It names an account that does not exist: blocked, it owns nothing.
    let duplicate = support::cloudphone("duplicate", "kp1")
        .created(10)
        .account("missing")
        .build();
    let store = Arc::new(MemoryStore::new([owner, duplicate]));
    let lease = MemoryIntentsRecord::default();
    assert_eq!(
        process(&sim, &store, &lease).tick().await.backups_requested,
        1
    );
    assert_eq!(ready_of(&store, "duplicate").1, "AccountNotFound");
    // kill -9; meanwhile the owner is blocked in turn (it names the missing account). The next
    // process ticks once, then the duplicate is unblocked (it names no account): promoted.
    let mut blocked = (*store.get(&support::key("owner")).unwrap()).clone();
    blocked.spec.account_ref = Some(cloudphone_operator::api::AccountRef {
        name: "missing".into(),
    });
    store.insert(blocked);
    let next = process(&sim, &store, &lease);
    assert_eq!(next.tick().await.backup_calls, 0);
    let mut unblocked = (*store.get(&support::key("duplicate")).unwrap()).clone();
    unblocked.spec.account_ref = None;
    store.insert(unblocked);
    let report = next.tick().await;
    assert_eq!(report.backup_calls, 0, "{report:?}");
    assert_eq!(sim.counters().calls("backup"), 1);
    let (_, reason, message) = ready_of(&store, "duplicate");
    assert_eq!(reason, "AwaitingHandover");
    assert!(
        message.contains("fleet/owner"),
        "the blocked owner's intent is known in the scope it was made in: {message}"
    );
}

#[tokio::test]
async fn two_duplicates_promoted_in_turn_across_kills_both_wait() {
    let _deadline = support::deadline("two_duplicates_promoted_in_turn_across_kills_both_wait");
    let sim = queued_simulator(&["kp1"], Duration::from_secs(5)).await;
    let store = Arc::new(MemoryStore::new([
        support::cloudphone("owner", "kp1").created(0).build(),
        support::cloudphone("first", "kp1").created(10).build(),
        support::cloudphone("second", "kp1").created(20).build(),
    ]));
    let lease = MemoryIntentsRecord::default();
    assert_eq!(
        process(&sim, &store, &lease).tick().await.backups_requested,
        1
    );
    for (gone, promoted) in [("owner", "first"), ("first", "second")] {
        // kill -9, then the current owner is deleted.
        store.remove(&support::key(gone));
        let report = process(&sim, &store, &lease).tick().await;
        assert_eq!(report.backup_calls, 0, "{promoted}: {report:?}");
        assert_eq!(ready_of(&store, promoted).1, "AwaitingHandover");
    }
    assert_eq!(sim.counters().calls("backup"), 1);
}

#[tokio::test]
async fn a_term_after_a_quiet_spell_holds_nothing_and_a_recorded_time_holds_until_it_passes() {
    let _deadline = support::deadline(
        "a_term_after_a_quiet_spell_holds_nothing_and_a_recorded_time_holds_until_it_passes",
    );
    let sim = queued_simulator(&["kp1", "kp2"], Duration::from_secs(5)).await;
    let lease = MemoryIntentsRecord::default();
    // The last term's intents ended a second ago.
    lease
        .extend(Timestamp::now() - Duration::from_secs(1))
        .await
        .unwrap();
    let quiet = Arc::new(MemoryStore::new([new_phone("quiet", "kp1")]));
    assert_eq!(
        process(&sim, &quiet, &lease).tick().await.backups_requested,
        1
    );

    let ahead = MemoryIntentsRecord::default();
    ahead
        .extend(Timestamp::now() + Duration::from_secs(2))
        .await
        .unwrap();
    let store = Arc::new(MemoryStore::new([phone("p", "kp2")]));
    let engine = process(&sim, &store, &ahead);
    assert_eq!(engine.tick().await.backup_calls, 0);
    assert_eq!(ready_of(&store, "p").1, "AwaitingHandover");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(engine.tick().await.backups_requested, 1);
}

#[tokio::test]
async fn a_tick_cut_by_its_deadline_keeps_what_it_wrote_and_the_next_starts_elsewhere() {
    let _deadline = support::deadline(
        "a_tick_cut_by_its_deadline_keeps_what_it_wrote_and_the_next_starts_elsewhere",
    );
    let (mut phones, instances) = fleet(300);
    phones
        .iter_mut()
        .for_each(|p| p.spec.lifecycle = Lifecycle::Observed);
    let sim = simulator(instances, Duration::from_secs(1)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(400),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let client = support::sim_client(&sim);
    let engine = Engine::new(
        store.clone(),
        client,
        EngineConfig {
            vendor_calls_in_flight: 1,
            tick_deadline: Duration::from_millis(600),
            ..EngineConfig::default()
        },
    );
    let observed = || {
        store
            .snapshot()
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase != Phase::Pending))
            .count()
    };
    let first = engine.tick().await;
    assert!(first.chunks_cut >= 1, "{first:?}");
    assert!(
        first.statuses_written >= 100,
        "the finished chunk's statuses are written as it goes: {first:?}"
    );
    assert_eq!(observed(), first.statuses_written);
    // One chunk a tick fits the deadline; the order rotates, so three ticks observe every phone.
    engine.tick().await;
    engine.tick().await;
    assert_eq!(observed(), 300, "a deadline starved some phones");
}

/// The value of one sample of the Prometheus text, by its exact name and labels.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_longest_not_ready_gauge_counts_from_readys_transition_and_skips_suspended_phones() {
    let _deadline = support::deadline(
        "the_longest_not_ready_gauge_counts_from_readys_transition_and_skips_suspended_phones",
    );
    let phones = vec![
        support::cloudphone("stuck", "kp-stuck").build(),
        support::cloudphone("off", "kp-off").suspended().build(),
        support::cloudphone("fine", "kp-fine").build(),
    ];
    let instances = vec![
        ("kp-stuck".to_owned(), code::RESTORE_FAILED),
        ("kp-off".to_owned(), code::DATA_LOADED),
        ("kp-fine".to_owned(), code::IDLE),
    ];
    let sim = simulator(instances, Duration::from_millis(200)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_metrics(metrics.clone());
    engine.tick().await;
    let gauge = || sample(&metrics.encode(), "cloudphone_longest_not_ready_seconds").unwrap();
    assert_eq!(gauge(), 0.0, "no phone had a Ready condition yet");
    // Ready went False two hours ago on the stuck phone, three on the suspended one.
    let now = Timestamp::now();
    for (name, hours) in [("stuck", 2), ("off", 3)] {
        let mut phone = (*store.get(&support::key(name)).unwrap()).clone();
        let ready = phone
            .status
            .as_mut()
            .unwrap()
            .conditions
            .iter_mut()
            .find(|c| c.type_ == READY)
            .unwrap();
        assert_ne!(ready.status, "True", "{name}");
        ready.last_transition_time = Time(now - jiff::SignedDuration::from_hours(hours));
        store.insert(phone);
    }
    engine.tick().await;
    let longest = gauge();
    assert!(
        (7_200.0..7_300.0).contains(&longest),
        "the stuck phone's two hours, not the suspended one's three: {longest}"
    );
}

#[tokio::test]
async fn slo_metrics_follow_the_fleet_and_a_standby_exports_no_fleet_gauges() {
    let _deadline =
        support::deadline("slo_metrics_follow_the_fleet_and_a_standby_exports_no_fleet_gauges");
    let (phones, instances) = fleet(3);
    let sim = simulator(instances, Duration::from_millis(200)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine = Arc::new(
        support::engine(&sim, store.clone())
            .build()
            .with_metrics(metrics.clone()),
    );
    engine.tick().await;
    let text = metrics.encode();
    // The test phones were created in 2023: their data has been un-backed-up since.
    let oldest = sample(&text, "cloudphone_oldest_unbacked_seconds").unwrap();
    assert!(oldest > 86_400.0 * 365.0, "{oldest}");
    tick_until_idle(&engine, 40).await;
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "cloudphone_oldest_unbacked_seconds"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "cloudphone_backups_total{outcome=\"completed\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "cloudphone_backup_duration_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "cloudphone_phones{namespace=\"fleet\",phase=\"Idle\",lifecycle=\"BackedUp\",effective_lifecycle=\"BackedUp\"}"
        ),
        Some(3.0)
    );
    let steady_writes = store.writes();
    engine.tick().await;
    assert_eq!(
        store.writes(),
        steady_writes,
        "lastBackupTime is written once"
    );
    assert_eq!(
        sample(
            &metrics.encode(),
            "cloudphone_backups_total{outcome=\"completed\"}"
        ),
        Some(3.0),
        "and counted once"
    );

    // Leading, then standing by: the fleet gauges go with the leadership.
    let (leading, leader) = tokio::sync::watch::channel(true);
    let (stop, runner) = spawn_leader_loop(&engine, leader, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics.encode();
    assert!(text.contains("cloudphone_phones{"), "{text}");
    assert!(
        text.contains("cloudphone_vendor_breaker_open{account=\"default\"} 0"),
        "{text}"
    );
    leading.send_replace(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics.encode();
    assert!(!text.contains("cloudphone_phones{"), "{text}");
    assert_eq!(
        sample(&text, "cloudphone_oldest_unbacked_seconds"),
        Some(0.0)
    );
    // Nor an account's breaker: the leader's breakers say nothing about a standby.
    assert!(
        !text.contains("cloudphone_vendor_breaker_open{"),
        "a standby exports no breaker series:\n{text}"
    );
    let _ = stop.send(());
    runner.await.unwrap();
}

#[tokio::test]
async fn an_overlong_reconcile_request_is_ignored_reported_once_and_never_freezes_the_phone() {
    let _deadline = support::deadline(
        "an_overlong_reconcile_request_is_ignored_reported_once_and_never_freezes_the_phone",
    );
    let sim = simulator(vec![("kp1".into(), code::IDLE)], Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new([support::cloudphone("p1", "kp1")
        .lifecycle(Lifecycle::BackedUp)
        .build()]));
    let engine = engine(&sim, store.clone(), Duration::from_secs(60));
    engine.tick().await;
    assert_eq!(status_of(&store, "p1").phase, Phase::Idle);
    // A 300-character request (the status field holds 256), then a user restores the phone.
    let mut annotated = (*store.get(&support::key("p1")).unwrap()).clone();
    annotated.metadata.annotations = Some(
        [(
            "cloudphone.io/reconcile-requested-at".to_owned(),
            "x".repeat(300),
        )]
        .into(),
    );
    store.insert(annotated);
    sim.seed([("kp1", code::DATA_LOADED)]);
    let before = store.writes();
    engine.tick().await;
    engine.tick().await;
    assert!(store.writes() > before, "no status write went through");
    let status = status_of(&store, "p1");
    assert_eq!(
        status.last_handled_reconcile_at, None,
        "an invalid request is not echoed"
    );
    assert_eq!(
        sim.instance("kp1").unwrap().backups_started,
        1,
        "the restored phone was backed up again"
    );
    assert_eq!(status.phase, Phase::BackingUp, "{status:?}");
    let reported: Vec<_> = store
        .events()
        .into_iter()
        .filter(|(_, e)| e.reason == "ReconcileRequestInvalid")
        .collect();
    assert_eq!(reported.len(), 1, "once, not every tick: {reported:?}");
    assert!(reported[0].1.warning);
}

#[tokio::test]
async fn a_reconcile_request_in_a_loop_costs_one_chunk_per_spacing_and_never_the_fleet() {
    let _deadline = support::deadline(
        "a_reconcile_request_in_a_loop_costs_one_chunk_per_spacing_and_never_the_fleet",
    );
    let (phones, _) = fleet(1000);
    let instances = (0..1000)
        .map(|i| (format!("kp{i:05}"), code::IDLE))
        .collect();
    let sim = simulator(instances, Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let spacing = Duration::from_secs(1);
    let engine = Arc::new(
        support::engine(&sim, store)
            .config(|c| c.min_tick_spacing = spacing)
            .build(),
    );
    let trigger = engine.trigger();
    let (stop_tx, runner) = spawn_hourly_loop(&engine);
    // The first whole tick: 1,000 ids, 10 calls.
    let status_calls = || sim.counters().calls("batch-query-status");
    wait_for_status_calls(&sim, 10, 200).await;
    assert_eq!(status_calls(), 10);
    // One phone annotated every 0.2 s for 4 s, as the watch reports it.
    let looped = Duration::from_secs(4);
    let started = tokio::time::Instant::now();
    while started.elapsed() < looped {
        trigger.request("uid-p00007");
        trigger.wake();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(spacing + Duration::from_millis(500)).await;
    let early = status_calls() - 10;
    // At most one early tick per spacing (and one after the loop), each one call for its phone.
    let bound = (looped.as_millis() / spacing.as_millis()) as u64 + 2;
    assert!(
        (1..=bound).contains(&early),
        "{early} status calls for 20 requests of one phone (at most {bound})"
    );
    assert_eq!(
        sim.counters().endpoints["batch-query-status"].ids,
        1000 + early
    );
    stop_loop(stop_tx, runner).await;
}

#[tokio::test]
async fn under_one_call_a_second_every_backup_of_a_thousand_phones_leaves_within_the_intent_age() {
    let _deadline = support::deadline(
        "under_one_call_a_second_every_backup_of_a_thousand_phones_leaves_within_the_intent_age",
    );
    let (phones, instances) = fleet(1000);
    let sim = simulator(instances, Duration::from_secs(300)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .grace(Duration::from_secs(120))
        .calls_per_second(1)
        .build();
    // 10 status calls and 10 backup calls at one a second: a tick of about 20 s. Every backup
    // must leave: the gate withholds any call later than the intent age after its intent.
    let report = engine.tick().await;
    assert_eq!(report.chunks_cut, 0, "{report:?}");
    assert_eq!(report.backups_requested, 1000, "{report:?}");
    assert_eq!(sim.counters().backups_started, 1000);
    assert_eq!(report.backup_calls, 10);
    for phone in store.snapshot() {
        let status = phone.status.as_ref().unwrap();
        let backup = status.backup.as_ref().unwrap();
        assert!(backup.request_id.is_some(), "{status:?}");
        assert_eq!(condition(status, READY).1, "BackupRequested");
    }
}

#[tokio::test]
async fn a_withheld_backup_clears_its_intent_and_is_asked_again_next_tick() {
    let _deadline =
        support::deadline("a_withheld_backup_clears_its_intent_and_is_asked_again_next_tick");
    let (phones, instances) = fleet(3);
    let sim = simulator(instances, Duration::from_secs(300)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let fence = cloudphone_operator::run::leader::LeaseFence::new(Duration::from_secs(10));
    let engine = engine(&sim, store.clone(), Duration::from_secs(120)).with_fence(fence.clone());
    // Leadership not fresh (no renewal yet): the intents are written, every call withheld.
    let report = engine.tick().await;
    assert_eq!(report.backup_calls, 0);
    assert_eq!(sim.counters().calls("backup"), 0);
    for phone in store.snapshot() {
        let status = phone.status.as_ref().unwrap();
        assert!(
            status.backup.as_ref().is_none_or(|b| !b.in_flight),
            "a call that never left keeps no intent: {status:?}"
        );
        assert_eq!(condition(status, READY).1, "BackupCallFailed");
    }
    // Fresh again: asked at once, not after the 120 s grace period of an intent that never left.
    fence.renewed(tokio::time::Instant::now());
    let report = engine.tick().await;
    assert_eq!(report.backups_requested, 3, "{report:?}");
    assert_eq!(sim.counters().backups_started, 3);
}

#[tokio::test]
async fn status_writes_that_keep_failing_are_counted_named_and_reported_once_a_spell() {
    let _deadline = support::deadline(
        "status_writes_that_keep_failing_are_counted_named_and_reported_once_a_spell",
    );
    let captured = support::Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // NB: the test's runtime is current-thread: every line of the engine reaches this subscriber.
    let _logs = tracing::subscriber::set_default(subscriber);
    let (phones, instances) = fleet(2);
    let sim = simulator(instances, Duration::from_secs(30)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine = Arc::new(
        engine(&sim, store.clone(), Duration::from_secs(60)).with_metrics(metrics.clone()),
    );
    let failing = || sample(&metrics.encode(), "cloudphone_status_write_failing_phones");
    let reported = || {
        store
            .events()
            .into_iter()
            .filter(|(_, e)| e.reason == "StatusWriteFailing")
            .collect::<Vec<_>>()
    };
    // p00000's writes are refused four times in a row (as a webhook or a 422 would refuse them).
    store.fail_writes(support::key("p00000"), InjectedWriteFailure::Refused, 4);
    engine.tick().await;
    assert_eq!(failing(), Some(1.0), "the gauge counts the phone at once");
    engine.tick().await;
    assert!(reported().is_empty(), "two failures make no spell yet");
    engine.tick().await;
    let events = reported();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, support::key("p00000"));
    assert!(events[0].1.warning);
    assert!(
        events[0].1.message.contains("injected refusal"),
        "the event names the error: {}",
        events[0].1.message
    );
    engine.tick().await;
    assert_eq!(reported().len(), 1, "once a spell, not every tick");
    assert_eq!(failing(), Some(1.0));
    let logs = captured.text();
    assert!(
        logs.lines().any(|l| l.contains("status write failed")
            && l.contains("phone=fleet/p00000")
            && l.contains("injected refusal")),
        "the log names the phone and the error:\n{logs}"
    );
    // The fifth write goes through: the spell ends, the gauge falls.
    engine.tick().await;
    assert_eq!(failing(), Some(0.0));
    assert!(
        store.get(&support::key("p00000")).unwrap().status.is_some(),
        "the phone's status is written at last"
    );
    // A new spell (a reconcile request asks for a write) is reported again.
    store.fail_writes(support::key("p00000"), InjectedWriteFailure::Refused, 100);
    let mut annotated = (*store.get(&support::key("p00000")).unwrap()).clone();
    annotated.metadata.annotations = Some(
        [(
            "cloudphone.io/reconcile-requested-at".to_owned(),
            "2026-12-06T21:00:00Z".to_owned(),
        )]
        .into(),
    );
    store.insert(annotated);
    for _ in 0..3 {
        engine.tick().await;
    }
    assert_eq!(reported().len(), 2, "a new spell, a new event");
    assert_eq!(failing(), Some(1.0));

    // A standby exports no failing phones: the leader's count says nothing of it.
    let (leading, leader) = tokio::sync::watch::channel(true);
    let (stop, runner) = spawn_leader_loop(&engine, leader, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failing(), Some(1.0));
    leading.send_replace(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failing(), Some(0.0), "a standby shows no failing writes");
    let _ = stop.send(());
    runner.await.unwrap();
}

#[tokio::test]
async fn an_early_tick_of_a_few_phones_never_counts_as_reaching_the_vendor() {
    let _deadline =
        support::deadline("an_early_tick_of_a_few_phones_never_counts_as_reaching_the_vendor");
    let sim = simulator(
        vec![("kp1".into(), code::DATA_LOADED)],
        Duration::from_secs(30),
    )
    .await;
    // Every call fails: no tick reaches the vendor.
    sim.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new([
        phone("p1", "kp1"),
        support::cloudphone("parked", "kp2").suspended().build(),
    ]));
    let engine = Arc::new(
        support::engine(&sim, store)
            .retries(0)
            .config(|c| c.min_tick_spacing = Duration::from_millis(100))
            .build(),
    );
    let trigger = engine.trigger();
    let (stop_tx, runner) = spawn_hourly_loop(&engine);
    wait_for_status_calls(&sim, 1, 100).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A tenant annotates its suspended phone: an early tick with no vendor call at all.
    trigger.request("uid-parked");
    trigger.wake();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        engine.last_success(),
        None,
        "an early tick of a suspended phone kept the no-successful-tick alert quiet"
    );
    stop_loop(stop_tx, runner).await;
}

#[tokio::test]
async fn a_few_backups_spread_over_many_chunks_leave_in_one_call() {
    let _deadline = support::deadline("a_few_backups_spread_over_many_chunks_leave_in_one_call");
    let (phones, mut instances) = fleet(300);
    // Three phones need a backup, one in each status chunk; the rest are backed up already.
    for (i, (_, status)) in instances.iter_mut().enumerate() {
        *status = if i % 100 == 42 {
            code::DATA_LOADED
        } else {
            code::IDLE
        };
    }
    let sim = simulator(instances, Duration::from_millis(300)).await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_secs(30));
    let report = engine.tick().await;
    assert_eq!(report.status_calls, 3);
    assert_eq!((report.backup_calls, report.backups_requested), (1, 3));
    assert_eq!(sim.counters().backups_started, 3);
}
