//! The fault suite: the engine against the simulator's fault injection, asserting what a user relies
//! on: the fleet converges, no instance gets two backup calls in one cycle, every phone ends with a
//! status that says where it stands and why.

use crate::support;

use cloudphone_operator::api::{CloudPhone, Phase};
use cloudphone_operator::plan::{READY, SYNCED, is_settled};
use cloudphone_operator::reconciler::{Engine, InjectedWriteFailure, MemoryStore, PhoneStore};
use cloudphone_operator::sim::{Faults, Simulator, code};
use std::sync::Arc;
use std::time::Duration;

use support::{cloudphone, key};

async fn simulator(instances: Vec<(String, i64)>, backup: Duration) -> Simulator {
    support::simulator(instances)
        .backup_duration(backup)
        .seed(7)
        .start()
        .await
}

fn engine(sim: &Simulator, store: Arc<MemoryStore>, timeout: Duration) -> Engine<MemoryStore> {
    support::engine(sim, store)
        .request_timeout(timeout)
        .retries(2)
        .grace(Duration::from_millis(800))
        .backoff(Duration::from_millis(200), Duration::from_secs(1))
        .build()
}

/// Ticks until every phone is settled; panics after `max` ticks.
async fn settle(engine: &Engine<MemoryStore>, max: usize) -> usize {
    for tick in 1..=max {
        engine.tick().await;
        if engine
            .store()
            .snapshot()
            .iter()
            .all(|p| p.status.as_ref().is_some_and(is_settled))
        {
            return tick;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unsettled: Vec<String> = engine
        .store()
        .snapshot()
        .iter()
        .filter(|p| !p.status.as_ref().is_some_and(is_settled))
        .map(|p| {
            format!(
                "{}: {:?}",
                p.metadata.name.as_deref().unwrap_or(""),
                p.status
            )
        })
        .take(3)
        .collect();
    panic!("not settled after {max} ticks: {unsettled:#?}");
}

fn assert_one_backup_per_instance(sim: &Simulator) {
    for (id, instance) in sim.instances() {
        if instance.backups_started > 0 || instance.backup_requests > 0 {
            assert_eq!(
                (instance.backup_requests, instance.backups_started),
                (1, 1),
                "{id} was sent more than one backup call in its cycle"
            );
        }
    }
}

#[tokio::test]
async fn a_hostile_vendor_delays_convergence_but_never_doubles_a_backup() {
    let _deadline =
        support::deadline("a_hostile_vendor_delays_convergence_but_never_doubles_a_backup");
    let n = 600;
    let phones: Vec<CloudPhone> = (0..n)
        .map(|i| {
            cloudphone(&format!("p{i:04}"), &format!("kp{i:04}"))
                .created(i)
                .build()
        })
        .collect();
    let sim = simulator(
        (0..n)
            .map(|i| (format!("kp{i:04}"), code::DATA_LOADED))
            .collect(),
        Duration::from_millis(300),
    )
    .await;
    sim.set_faults(Faults {
        server_error_rate: 0.2,
        garbage_rate: 0.05,
        // Past the client's 300ms time-out: the call is processed, its answer never read.
        latency_spike_rate: 0.05,
        latency_spike: Duration::from_millis(600),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_millis(300));
    settle(&engine, 200).await;
    let counters = sim.counters();
    let outcomes = &counters.endpoints["batch-query-status"].outcomes;
    assert!(
        outcomes.get("injected-500").copied().unwrap_or(0) > 0
            && outcomes.get("injected-garbage").copied().unwrap_or(0) > 0
    );
    assert_eq!(counters.backups_started, n as u64);
    assert_one_backup_per_instance(&sim);
    for p in store.snapshot() {
        let status = p.status.clone().unwrap();
        assert_eq!(status.phase, Phase::Idle, "{:?}", p.metadata.name);
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == READY && c.status == "True")
        );
    }
}

#[tokio::test]
async fn bad_ids_duplicates_and_unknown_instances_each_say_why() {
    let _deadline = support::deadline("bad_ids_duplicates_and_unknown_instances_each_say_why");
    let sim = simulator(
        vec![
            ("kp1".into(), code::DATA_LOADED),
            ("kp2".into(), code::DATA_LOADED),
            ("kp3".into(), code::IDLE),
        ],
        Duration::from_millis(200),
    )
    .await;
    let mut faults = Faults::default();
    faults.unknown_ids.insert("kp3".into());
    sim.set_faults(faults).unwrap();
    let phones = vec![
        cloudphone("owner", "kp1").build(),
        cloudphone("duplicate", "kp1").created(10).build(),
        cloudphone("ok", "kp2").build(),
        cloudphone("hidden", "kp3").build(),
        cloudphone("nowhere", "kp9").build(),
        cloudphone("too-long", &"x".repeat(40)).build(),
        cloudphone("bad-chars", "kp 1").build(),
    ];
    let store = Arc::new(MemoryStore::new(phones));
    let engine = engine(&sim, store.clone(), Duration::from_secs(2));
    settle(&engine, 40).await;
    let reason = |name: &str| {
        let status = store.get(&key(name)).unwrap().status.clone().unwrap();
        status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap()
    };
    assert_eq!(reason("owner").0, "BackedUp");
    assert_eq!(reason("ok").0, "BackedUp");
    let (dup, message) = reason("duplicate");
    assert_eq!(dup, "DuplicateInstance");
    assert!(message.contains("fleet/owner"), "{message}");
    assert_eq!(reason("hidden").0, "InstanceNotFound");
    assert_eq!(reason("nowhere").0, "InstanceNotFound");
    let (invalid, message) = reason("too-long");
    assert_eq!(invalid, "InvalidSpec");
    assert!(
        message.contains("spec.instanceId") && message.contains("32"),
        "{message}"
    );
    assert_eq!(reason("bad-chars").0, "InvalidSpec");
    assert_one_backup_per_instance(&sim);
    // Only valid, owned ids ever reached the vendor.
    assert!(sim.counters().endpoints["batch-query-status"].max_ids_per_call <= 4);
}

#[tokio::test]
async fn a_phone_deleted_mid_tick_and_failed_writes_lose_nothing() {
    let _deadline = support::deadline("a_phone_deleted_mid_tick_and_failed_writes_lose_nothing");
    let n = 50;
    let phones: Vec<CloudPhone> = (0..n)
        .map(|i| {
            cloudphone(&format!("p{i:02}"), &format!("kp{i:02}"))
                .created(i)
                .build()
        })
        .collect();
    let sim = simulator(
        (0..n)
            .map(|i| (format!("kp{i:02}"), code::DATA_LOADED))
            .collect(),
        Duration::from_millis(200),
    )
    .await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(200),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    store.fail_writes(key("p01"), InjectedWriteFailure::Conflict, 2);
    store.fail_writes(key("p02"), InjectedWriteFailure::Gone, 1);
    let engine = Arc::new(engine(&sim, store.clone(), Duration::from_secs(2)));
    let first = tokio::spawn({
        let engine = engine.clone();
        async move { engine.tick().await }
    });
    // Deleted while the tick waits on the vendor.
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.remove(&key("p03"));
    let report = first.await.unwrap();
    assert!(report.write_errors >= 1, "{report:?}");
    sim.set_faults(Faults::default()).unwrap();
    settle(&engine, 40).await;
    assert_eq!(store.snapshot().len(), n as usize - 1);
    assert!(
        store.get(&key("p03")).is_none(),
        "a deleted phone is not recreated by a write"
    );
    for p in store.snapshot() {
        assert_eq!(
            p.status.as_ref().unwrap().phase,
            Phase::Idle,
            "{:?}",
            p.metadata.name
        );
    }
    assert_one_backup_per_instance(&sim);
}

#[tokio::test]
async fn an_operator_killed_mid_tick_resumes_without_a_duplicate_backup() {
    let _deadline =
        support::deadline("an_operator_killed_mid_tick_resumes_without_a_duplicate_backup");
    let n = 300;
    let phones: Vec<CloudPhone> = (0..n)
        .map(|i| {
            cloudphone(&format!("p{i:03}"), &format!("kp{i:03}"))
                .created(i)
                .build()
        })
        .collect();
    let sim = simulator(
        (0..n)
            .map(|i| (format!("kp{i:03}"), code::DATA_LOADED))
            .collect(),
        Duration::from_millis(300),
    )
    .await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    // Kill at several points of the tick: during the status queries, between the intent writes
    // and the backup calls, and while backup calls are in flight.
    for kill_after in [
        Duration::from_millis(50),
        Duration::from_millis(200),
        Duration::from_millis(320),
    ] {
        let engine = engine(&sim, store.clone(), Duration::from_secs(2));
        let _ = tokio::time::timeout(kill_after, engine.tick()).await;
        drop(engine);
    }
    sim.set_faults(Faults::default()).unwrap();
    let restarted = engine(&sim, store.clone(), Duration::from_secs(2));
    settle(&restarted, 80).await;
    assert_eq!(sim.counters().backups_started, n as u64);
    assert_one_backup_per_instance(&sim);
    for p in store.snapshot() {
        let status = p.status.clone().unwrap();
        assert_eq!(status.phase, Phase::Idle);
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == SYNCED && c.status == "True")
        );
    }
}
