//! The `Loaded` lifecycle end to end: the engine on the in-memory store brings parked phones back
//! with the vendor's prepare, against the simulator over real HTTP.

use crate::support;

use cloudphone_operator::api::{CloudPhone, Phase};
use cloudphone_operator::plan::{LOADED, READY};
use cloudphone_operator::reconciler::{Engine, MemoryStore, PhoneStore, TickReport};
use cloudphone_operator::sim::{Simulator, code};
use std::sync::Arc;
use std::time::Duration;

/// `n` phones `p00000`... naming instances `kp00000`..., Loaded for the user of `user(i)`, and those
/// instances parked (Idle).
fn parked_fleet(n: usize, user: impl Fn(usize) -> String) -> (Vec<CloudPhone>, Vec<(String, i64)>) {
    let phones = (0..n)
        .map(|i| {
            support::cloudphone(&format!("p{i:05}"), &format!("kp{i:05}"))
                .loaded(&user(i))
                .build()
        })
        .collect();
    let instances = (0..n).map(|i| (format!("kp{i:05}"), code::IDLE)).collect();
    (phones, instances)
}

fn all_loaded(store: &MemoryStore) -> bool {
    store.snapshot().iter().all(|p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::DataLoaded)
    })
}

async fn tick_until_loaded(engine: &Engine<MemoryStore>, max: usize) -> Vec<TickReport> {
    let mut reports = Vec::new();
    for _ in 0..max {
        reports.push(engine.tick().await);
        if all_loaded(engine.store()) {
            return reports;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the fleet was not loaded in {max} ticks: {:?}",
        reports.last()
    );
}

/// No instance saw a second prepare while its first was queued or restoring.
fn no_second_prepare(sim: &Simulator) {
    for (id, instance) in sim.instances() {
        assert_eq!(
            instance.prepare_requests_while_busy, 0,
            "{id}: {instance:?}"
        );
    }
}

#[tokio::test]
async fn a_parked_fleet_is_brought_back_and_then_costs_no_write() {
    let _deadline = support::deadline("a_parked_fleet_is_brought_back_and_then_costs_no_write");
    let (phones, instances) = parked_fleet(250, |i| format!("u{}", i % 2));
    let sim = support::simulator(instances)
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(30))
        .build();
    let reports = tick_until_loaded(&engine, 40).await;
    let prepares: usize = reports.iter().map(|r| r.prepares_requested).sum();
    assert_eq!(prepares, 250);
    let counters = sim.counters();
    assert_eq!(counters.prepares_started, 250);
    // Two users of 125 phones each, spread over the three status chunks: two calls a user.
    assert_eq!(counters.calls("prepare"), 4);
    assert_eq!(counters.calls("backup"), 0);
    no_second_prepare(&sim);
    for p in store.snapshot() {
        let status = p.status.clone().unwrap();
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", LOADED)
        );
        assert!(status.last_loaded_time.is_some());
        assert!(status.prepare.unwrap().request_id.is_some());
    }
    let writes = store.writes();
    let steady = engine.tick().await;
    assert_eq!(
        (
            steady.statuses_written,
            steady.prepare_calls,
            steady.status_calls
        ),
        (0, 0, 3)
    );
    assert_eq!(store.writes(), writes);
}

#[tokio::test]
async fn a_prepare_queued_past_its_grace_period_is_asked_about_never_sent_twice() {
    let _deadline =
        support::deadline("a_prepare_queued_past_its_grace_period_is_asked_about_never_sent_twice");
    let (phones, instances) = parked_fleet(3, |_| "u1".to_owned());
    // The vendor holds each prepare queued for 4 s, the instance showing Idle all along: longer
    // than the operator's grace period (1 s) and backoff (0.5 s).
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(4))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build();
    tick_until_loaded(&engine, 80).await;
    let counters = sim.counters();
    assert_eq!(
        counters.calls("prepare"),
        1,
        "one call for the three, never again"
    );
    assert!(
        counters.calls("prepare-progress") >= 3,
        "each re-send was asked about first: {counters:?}"
    );
    assert_eq!(counters.prepares_started, 3);
    no_second_prepare(&sim);
}

#[tokio::test]
async fn an_operator_killed_mid_tick_resumes_without_a_second_prepare() {
    let _deadline =
        support::deadline("an_operator_killed_mid_tick_resumes_without_a_second_prepare");
    let n = 300;
    let (phones, instances) = parked_fleet(n, |i| format!("u{}", i % 3));
    // Queued for a second, the instance still showing Idle: a restart that forgot its intent would
    // prepare it again.
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(1))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    sim.set_faults(cloudphone_operator::sim::Faults {
        latency: Duration::from_millis(150),
        ..Default::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    // NB: a short backoff: a kill between an intent and its call leaves an intent no call
    // followed, prepared again after its grace period and the backoff of one attempt.
    let engine = || {
        support::engine(&sim, store.clone())
            .prepare_grace(Duration::from_secs(2))
            .backoff(Duration::from_millis(500), Duration::from_secs(1))
            .build()
    };
    // Kill at several points of the tick: during the status queries, between the intent writes
    // and the prepare calls, and while prepare calls are in flight.
    for kill_after in [50, 200, 320, 450] {
        let engine = engine();
        let _ = tokio::time::timeout(Duration::from_millis(kill_after), engine.tick()).await;
        drop(engine);
    }
    let before = sim.counters().prepares_started;
    assert!(
        before > 0,
        "the killed ticks left prepares behind them, for the restart to find"
    );
    sim.set_faults(cloudphone_operator::sim::Faults::default())
        .unwrap();
    tick_until_loaded(&engine(), 80).await;
    assert_eq!(sim.counters().prepares_started, n as u64);
    no_second_prepare(&sim);
    for (id, instance) in sim.instances() {
        assert_eq!(instance.prepares_started, 1, "{id}: {instance:?}");
    }
}

#[tokio::test]
async fn a_user_the_vendor_refuses_is_prepare_refused_and_never_opens_the_breaker() {
    let _deadline = support::deadline(
        "a_user_the_vendor_refuses_is_prepare_refused_and_never_opens_the_breaker",
    );
    let (phones, instances) = parked_fleet(5, |_| "u-unknown".to_owned());
    let sim = support::simulator(instances)
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    // The vendor refuses every prepare (1000, whole), as it would for a user it does not know;
    // status queries still pass.
    sim.set_faults(cloudphone_operator::sim::Faults {
        answer_all_prepares: Some(cloudphone_operator::sim::CannedError {
            status: 400,
            code: "1000".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone()).build();
    let first = engine.tick().await;
    assert_eq!(first.prepares_requested, 0);
    let calls = sim.counters().calls("prepare");
    for p in store.snapshot() {
        let status = p.status.clone().unwrap();
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.reason, "PrepareRefused", "{}", ready.message);
        assert!(ready.message.contains("u-unknown"), "{}", ready.message);
    }
    // Held: no further prepare; the account's status queries go on (no breaker opened).
    let second = engine.tick().await;
    assert_eq!(
        sim.counters().calls("prepare"),
        calls,
        "a refused user is not asked again"
    );
    assert_eq!((second.status_calls, second.query_errors), (1, 0));
}

#[tokio::test]
async fn a_prepare_the_vendor_keeps_queued_keeps_the_intents_record_ahead() {
    let _deadline =
        support::deadline("a_prepare_the_vendor_keeps_queued_keeps_the_intents_record_ahead");
    let (phones, instances) = parked_fleet(1, |_| "u1".to_owned());
    // Queued far longer than the record's lead from the one call (grace 1 s + intent age 5 s +
    // 1 s + 5 s ahead: about 12 s).
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(60))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let record = cloudphone_operator::reconciler::MemoryIntentsRecord::default();
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build()
        .with_intents_record(Arc::new(record.clone()));
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(16) {
        engine.tick().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.counters().calls("prepare"), 1);
    let until = record.get().expect("a record");
    assert!(
        until > jiff::Timestamp::now(),
        "the record says every intent is over ({until}) while the vendor still holds the prepare queued"
    );
}
