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

/// The Ready reason of phone `name` in `store`.
fn ready_reason(store: &MemoryStore, name: &str) -> (String, String) {
    let phone = store.get(&support::key(name)).expect("the phone");
    let status = phone.status.clone().unwrap_or_default();
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_owner_of_an_instance_asks_before_preparing_what_its_old_owner_left_queued() {
    let _deadline = support::deadline(
        "a_new_owner_of_an_instance_asks_before_preparing_what_its_old_owner_left_queued",
    );
    let (phones, instances) = parked_fleet(1, |_| "u1".to_owned());
    // The vendor holds the prepare queued for 6 s, the instance showing Idle all along: past the
    // grace period (1 s) and backoff (0.5 s) of the operator.
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(6))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    // The object is deleted, and another one takes the instance over (Argo CD renaming it).
    store.remove(&support::key("p00000"));
    store.insert(
        support::cloudphone("renamed", "kp00000")
            .loaded("u1")
            .uid("uid-renamed")
            .build(),
    );
    tick_until_loaded(&engine, 150).await;
    assert_eq!(
        sim.counters().calls("prepare"),
        1,
        "the new owner sent a second prepare while the first was queued"
    );
    assert!(sim.counters().calls("prepare-progress") >= 1);
    no_second_prepare(&sim);
}

#[tokio::test]
async fn after_a_change_of_user_the_vendor_is_asked_about_the_user_the_call_named() {
    let _deadline = support::deadline(
        "after_a_change_of_user_the_vendor_is_asked_about_the_user_the_call_named",
    );
    let (phones, instances) = parked_fleet(1, |_| "u1".to_owned());
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(6))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    let record = store.get(&support::key("p00000")).unwrap();
    let record = record.status.as_ref().unwrap().prepare.as_ref().unwrap();
    assert_eq!(record.user_id.as_deref(), Some("u1"), "{record:?}");
    // The spec names another user while the vendor holds u1's prepare queued: the vendor knows
    // no prepare of u2 (prepare-progress answers 2 for it).
    let mut changed = (*store.get(&support::key("p00000")).unwrap()).clone();
    changed.spec.user_id = Some("u2".into());
    changed.metadata.generation = Some(2);
    store.insert(changed);
    tick_until_loaded(&engine, 150).await;
    assert_eq!(
        sim.counters().calls("prepare"),
        1,
        "a second prepare, for the new user, while the first was queued"
    );
    no_second_prepare(&sim);
}

#[tokio::test]
async fn a_prepare_cut_short_by_the_tick_deadline_keeps_the_vendors_answers() {
    let _deadline =
        support::deadline("a_prepare_cut_short_by_the_tick_deadline_keeps_the_vendors_answers");
    let (phones, instances) = parked_fleet(5, |_| "u1".to_owned());
    // Queued for a minute, the instances showing Idle; every answer takes 400 ms.
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(60))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(6))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .config(|c| c.tick_deadline = Duration::from_millis(1500))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    let first_call = |p: &CloudPhone| {
        p.status
            .as_ref()
            .unwrap()
            .prepare
            .as_ref()
            .unwrap()
            .requested_at
            .clone()
            .unwrap()
            .0
    };
    let called_at = first_call(&store.snapshot()[0]);
    tokio::time::sleep(Duration::from_millis(6600)).await;
    sim.set_faults(cloudphone_operator::sim::Faults {
        latency: Duration::from_millis(400),
        ..Default::default()
    })
    .unwrap();
    // Each tick is cut after a status query and two or three questions of one instance each:
    // what the vendor answered is kept, so that the next tick asks about the others.
    let mut ticks = 0;
    while ticks < 8 {
        engine.tick().await;
        ticks += 1;
        if store.snapshot().iter().all(|p| first_call(p) > called_at) {
            break;
        }
    }
    let asked = sim.counters().calls("prepare-progress");
    assert!(
        store.snapshot().iter().all(|p| first_call(p) > called_at),
        "after {ticks} ticks cut short ({asked} questions), some phones' answers were never kept"
    );
    assert!(
        asked <= 5 + ticks,
        "{asked} questions in {ticks} ticks for 5 instances: answers asked again"
    );
    assert_eq!(sim.counters().calls("prepare"), 1);
}

#[tokio::test]
async fn a_vendor_that_cannot_say_where_a_prepare_stands_gets_no_second_and_the_phone_says_so() {
    let _deadline = support::deadline(
        "a_vendor_that_cannot_say_where_a_prepare_stands_gets_no_second_and_the_phone_says_so",
    );
    let (phones, instances) = parked_fleet(1, |_| "u1".to_owned());
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(60))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_millis(500))
        .backoff(Duration::from_millis(200), Duration::from_millis(200))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    sim.set_faults(cloudphone_operator::sim::Faults {
        answer_all_progress: Some(cloudphone_operator::sim::CannedError {
            status: 500,
            code: "9999".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let mut said = false;
    while started.elapsed() < Duration::from_secs(15) {
        engine.tick().await;
        let (reason, message) = ready_reason(&store, "p00000");
        if reason == cloudphone_operator::plan::PREPARE_FAILED {
            assert!(message.contains("prepare-progress"), "{message}");
            said = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        said,
        "the phone never said the vendor cannot tell: {:?}",
        ready_reason(&store, "p00000")
    );
    assert_eq!(sim.counters().calls("prepare"), 1, "no second prepare");
    assert!(sim.counters().calls("prepare-progress") >= 3);
}

/// A store that, on the first write of `trigger` once armed, runs `hook`: something the vendor does
/// between the tick's status query and its calls.
struct Hooked {
    inner: MemoryStore,
    trigger: cloudphone_operator::plan::PhoneKey,
    armed: std::sync::atomic::AtomicBool,
    hook: Box<dyn Fn() + Send + Sync>,
}

impl PhoneStore for Hooked {
    fn snapshot(&self) -> Vec<Arc<CloudPhone>> {
        self.inner.snapshot()
    }

    async fn write_status(
        &self,
        phone: &CloudPhone,
        fence: Option<&str>,
        status: &cloudphone_operator::api::CloudPhoneStatus,
    ) -> Result<Option<String>, cloudphone_operator::reconciler::WriteError> {
        let written = self.inner.write_status(phone, fence, status).await;
        if cloudphone_operator::plan::PhoneKey::of(phone) == self.trigger
            && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            (self.hook)();
        }
        written
    }

    async fn publish(&self, phone: &CloudPhone, event: &cloudphone_operator::plan::PhoneEvent) {
        self.inner.publish(phone, event).await;
    }
}

#[tokio::test]
async fn a_restore_that_starts_after_the_status_query_gets_no_second_prepare() {
    let _deadline =
        support::deadline("a_restore_that_starts_after_the_status_query_gets_no_second_prepare");
    let (mut phones, mut instances) = parked_fleet(1, |_| "u1".to_owned());
    phones.push(
        support::cloudphone("watched", "kp-watched")
            .observed()
            .build(),
    );
    instances.push(("kp-watched".into(), code::DATA_LOADED));
    let sim = Arc::new(
        support::simulator(instances)
            .prepare_queue_delay(Duration::from_secs(60))
            .restore_duration(Duration::from_millis(300))
            .start()
            .await,
    );
    let hook = {
        let sim = sim.clone();
        // The vendor's queue lets the prepare go: the instance starts restoring.
        Box::new(move || sim.seed([("kp00000", code::RESTORING)]))
    };
    let store = Arc::new(Hooked {
        inner: MemoryStore::new(phones),
        trigger: support::key("watched"),
        armed: false.into(),
        hook,
    });
    let client = cloudphone_operator::koophone::Client::new(
        cloudphone_operator::koophone::ClientConfig {
            base_url: sim.url(),
            request_timeout: Duration::from_secs(2),
            retry: support::quick_retries(3),
            ..Default::default()
        },
        Arc::<cloudphone_operator::koophone::Auth>::from(
            cloudphone_operator::koophone::Token::new("t"),
        ),
    )
    .unwrap();
    let mut config = cloudphone_operator::reconciler::EngineConfig::default();
    config.plan.prepare_grace_period = Duration::from_secs(1);
    config.plan.backoff_base = Duration::from_millis(500);
    config.plan.backoff_max = Duration::from_secs(1);
    let engine = Engine::new(store.clone(), client, config);
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    // NB: past the grace period and backoff counted from the call's second, rounded up.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // The next tick queries the instance (Idle: queued), then writes the other phone (its spec
    // changed), and the restore starts right then, before the question about the prepare.
    let mut watched = (*store.inner.get(&support::key("watched")).unwrap()).clone();
    watched.metadata.generation = Some(2);
    store.inner.insert(watched);
    store.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    engine.tick().await;
    assert!(
        !store.armed.load(std::sync::atomic::Ordering::SeqCst),
        "the hook ran"
    );
    assert_eq!(
        sim.counters().calls("prepare-progress"),
        1,
        "asked after the hook"
    );
    assert_eq!(
        sim.counters().calls("prepare"),
        1,
        "prepared again while restoring: {:?}",
        sim.instance("kp00000")
    );
    no_second_prepare(&sim);
}

// NB: a known limit (docs/concepts/safety.md, "What does not hold"): a term that never saw the old
// owner knows only until when its intents may be outstanding, not that one was a prepare the vendor
// still holds queued past that; the fix needs a record of such instances kept with the Lease.
#[tokio::test]
#[ignore = "known limit: a prepare queued past the intents record, its owner deleted across a change of leader"]
async fn a_new_owner_after_a_leadership_change_asks_before_preparing_what_its_old_owner_left_queued()
 {
    let _deadline = support::deadline(
        "a_new_owner_after_a_leadership_change_asks_before_preparing_what_its_old_owner_left_queued",
    );
    let (phones, instances) = parked_fleet(1, |_| "u1".to_owned());
    // The vendor holds the prepare queued for 25 s, the instance showing Idle all along: past the
    // intents record's lead from the one call (grace 1 s + intent age 5 s + 1 s + 5 s ahead).
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(25))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let record = cloudphone_operator::reconciler::MemoryIntentsRecord::default();
    let engine = || {
        support::engine(&sim, store.clone())
            .prepare_grace(Duration::from_secs(1))
            .backoff(Duration::from_millis(500), Duration::from_secs(1))
            .build()
            .with_intents_record(Arc::new(record.clone()))
    };
    let first = engine();
    first.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    // The object is deleted and another one takes the instance over (Argo CD renaming it), and
    // leadership moves: the new leader never saw the old object.
    drop(first);
    store.remove(&support::key("p00000"));
    store.insert(
        support::cloudphone("renamed", "kp00000")
            .loaded("u1")
            .uid("uid-renamed")
            .build(),
    );
    let second = engine();
    tick_until_loaded(&second, 400).await;
    assert_eq!(
        sim.counters().calls("prepare"),
        1,
        "the new owner sent a second prepare while the first was queued ({} questions asked)",
        sim.counters().calls("prepare-progress")
    );
    no_second_prepare(&sim);
}

/// An intents record that reads but cannot be written (the API server refusing the Lease's
/// update).
struct Unwritable;

impl cloudphone_operator::reconciler::IntentsRecord for Unwritable {
    fn read(
        &self,
    ) -> futures::future::BoxFuture<
        '_,
        Result<Option<jiff::Timestamp>, cloudphone_operator::reconciler::RecordError>,
    > {
        Box::pin(async { Ok(None) })
    }

    fn extend(
        &self,
        _until: jiff::Timestamp,
    ) -> futures::future::BoxFuture<'_, Result<(), cloudphone_operator::reconciler::RecordError>>
    {
        Box::pin(async {
            Err(cloudphone_operator::reconciler::RecordError::Store {
                source: "the API server refuses the Lease's update".into(),
            })
        })
    }
}

#[tokio::test]
async fn a_lease_that_cannot_be_written_is_no_prepare_progress_question_every_tick() {
    let _deadline = support::deadline(
        "a_lease_that_cannot_be_written_is_no_prepare_progress_question_every_tick",
    );
    // Five phones whose prepare, an hour ago, the vendor never showed under way (it dropped it):
    // each is asked about once, then called.
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let phones: Vec<CloudPhone> = (0..5)
        .map(|i| {
            support::cloudphone(&format!("p{i:05}"), &format!("kp{i:05}"))
                .loaded("u1")
                .status(cloudphone_operator::api::CloudPhoneStatus {
                    instance_status: Some(code::IDLE),
                    phase: Phase::Idle,
                    prepare: Some(Box::new(cloudphone_operator::api::ActionStatus {
                        requested_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            long_ago,
                        )),
                        request_id: Some("r-1".into()),
                        attempts: 1,
                        in_flight: true,
                        user_id: Some("u1".into()),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .build()
        })
        .collect();
    let instances = (0..5).map(|i| (format!("kp{i:05}"), code::IDLE)).collect();
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(60))
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .with_intents_record(Arc::new(Unwritable));
    let ticks = 6;
    for _ in 0..ticks {
        engine.tick().await;
    }
    assert_eq!(
        sim.counters().calls("prepare"),
        0,
        "no call without a record"
    );
    let asked = sim.counters().calls("prepare-progress");
    assert!(
        asked <= 5,
        "{asked} prepare-progress questions in {ticks} ticks for 5 instances: each asked again every tick while the Lease cannot be written ({:?})",
        ready_reason(&store, "p00000")
    );
}

#[tokio::test]
async fn a_tenant_taking_over_an_instance_never_learns_the_user_another_tenant_prepared_it_for() {
    let _deadline = support::deadline(
        "a_tenant_taking_over_an_instance_never_learns_the_user_another_tenant_prepared_it_for",
    );
    // Tenant a's phone, on the account both tenants share, prepared for a's user.
    let phones = vec![
        support::cloudphone("mine", "kp00000")
            .namespace("team-a")
            .loaded("ua-secret")
            .uid("uid-a")
            .build(),
    ];
    let sim = support::simulator(vec![("kp00000".into(), code::IDLE)])
        .prepare_queue_delay(Duration::from_secs(8))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    // Tenant a deletes its phone; tenant b names the same instance, for its own user.
    store.remove(&cloudphone_operator::plan::PhoneKey {
        namespace: "team-a".into(),
        name: "mine".into(),
    });
    store.insert(
        support::cloudphone("theirs", "kp00000")
            .namespace("team-b")
            .loaded("ub")
            .uid("uid-b")
            .build(),
    );
    let theirs = cloudphone_operator::plan::PhoneKey {
        namespace: "team-b".into(),
        name: "theirs".into(),
    };
    let mut seen = Vec::new();
    for _ in 0..120 {
        engine.tick().await;
        let phone = store.get(&theirs).expect("b's phone");
        let text = serde_json::to_string(&phone.status).unwrap();
        if text.contains("ua-secret") {
            seen.push(text);
            break;
        }
        if all_loaded(&store) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.is_empty(),
        "tenant b's status names tenant a's user: {seen:?}"
    );
}

#[tokio::test]
async fn a_tick_cut_while_asking_keeps_the_answers_that_nothing_is_queued() {
    let _deadline =
        support::deadline("a_tick_cut_while_asking_keeps_the_answers_that_nothing_is_queued");
    // Five phones whose prepare, an hour ago, the vendor never showed under way and no longer
    // holds (it lost it): each needs one question, then a prepare.
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let phones: Vec<CloudPhone> = (0..5)
        .map(|i| {
            support::cloudphone(&format!("p{i:05}"), &format!("kp{i:05}"))
                .loaded("u1")
                .status(cloudphone_operator::api::CloudPhoneStatus {
                    instance_status: Some(code::IDLE),
                    phase: Phase::Idle,
                    prepare: Some(Box::new(cloudphone_operator::api::ActionStatus {
                        requested_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            long_ago,
                        )),
                        request_id: Some("r-1".into()),
                        attempts: 1,
                        in_flight: true,
                        user_id: Some("u1".into()),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .build()
        })
        .collect();
    let instances = (0..5).map(|i| (format!("kp{i:05}"), code::IDLE)).collect();
    let sim = support::simulator(instances)
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    // The account is paced at 2 calls a second (as a fleet's flip to Loaded is), and the tick's
    // deadline is 2 s: the status query and three questions fit in a tick, not five.
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(60))
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .calls_per_second(2)
        .config(|c| c.tick_deadline = Duration::from_secs(2))
        .build();
    let ticks = 6;
    for _ in 0..ticks {
        engine.tick().await;
    }
    let asked = sim.counters().calls("prepare-progress");
    let prepared = sim.counters().calls("prepare");
    assert!(
        prepared >= 1 && asked <= 5 + ticks,
        "{asked} questions and {prepared} prepare calls in {ticks} ticks cut short: the answers that nothing is queued were dropped with each cut and the same instances asked again ({:?})",
        ready_reason(&store, "p00000")
    );
}

#[tokio::test]
async fn a_promoted_duplicate_with_a_stale_prepare_of_its_own_asks_about_the_owners_queued_one() {
    let _deadline = support::deadline(
        "a_promoted_duplicate_with_a_stale_prepare_of_its_own_asks_about_the_owners_queued_one",
    );
    // The younger object prepared the instance for another user long ago (its record never
    // settled: a duplicate observes nothing), then the older one took the instance over.
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let phones = vec![
        support::cloudphone("owner", "kp00000")
            .loaded("u1")
            .created(-1000)
            .build(),
        support::cloudphone("younger", "kp00000")
            .loaded("u1")
            .created(-10)
            .status(cloudphone_operator::api::CloudPhoneStatus {
                prepare: Some(Box::new(cloudphone_operator::api::ActionStatus {
                    requested_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        long_ago,
                    )),
                    request_id: Some("r-old".into()),
                    attempts: 1,
                    in_flight: true,
                    user_id: Some("u-old".into()),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .build(),
    ];
    // The owner's prepare is queued for 8 s, the instance showing Idle all along.
    let sim = support::simulator(vec![("kp00000".into(), code::IDLE)])
        .prepare_queue_delay(Duration::from_secs(8))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    // The owner is deleted: the duplicate is promoted while the owner's prepare is queued.
    store.remove(&support::key("owner"));
    tick_until_loaded(&engine, 150).await;
    assert_eq!(
        sim.counters().calls("prepare"),
        1,
        "the promoted duplicate asked about its own stale prepare (u-old), not the owner's queued one (u1), and prepared again"
    );
    no_second_prepare(&sim);
}

#[tokio::test]
async fn a_new_owner_kept_from_asking_by_a_vendor_outage_still_asks_before_preparing() {
    let _deadline = support::deadline(
        "a_new_owner_kept_from_asking_by_a_vendor_outage_still_asks_before_preparing",
    );
    let (phones, instances) = parked_fleet(1, |_| "u1".to_owned());
    // The vendor holds the prepare queued for 30 s (a queue an outage backed up).
    let sim = support::simulator(instances)
        .prepare_queue_delay(Duration::from_secs(30))
        .restore_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .prepare_grace(Duration::from_secs(1))
        .backoff(Duration::from_millis(500), Duration::from_secs(1))
        .build();
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1);
    // The object is renamed, and the vendor answers nothing for 5 s: the new owner is never
    // planned while this term remembers the old owner's prepare (two grace periods).
    store.remove(&support::key("p00000"));
    store.insert(
        support::cloudphone("renamed", "kp00000")
            .loaded("u1")
            .uid("uid-renamed")
            .build(),
    );
    sim.set_faults(cloudphone_operator::sim::Faults {
        answer_all: Some(cloudphone_operator::sim::CannedError {
            status: 503,
            code: "9999".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(5) {
        engine.tick().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.set_faults(cloudphone_operator::sim::Faults::default())
        .unwrap();
    tick_until_loaded(&engine, 400).await;
    assert_eq!(
        sim.counters().calls("prepare"),
        1,
        "after the outage the new owner prepared without asking ({} questions) while the old owner's prepare was queued",
        sim.counters().calls("prepare-progress")
    );
    no_second_prepare(&sim);
}
