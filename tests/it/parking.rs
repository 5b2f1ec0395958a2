//! Idle parking and the session service's handshake end to end: the engine on the in-memory store
//! against the simulator over real HTTP (issue 22).

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, EffectiveReason, Lifecycle};
use cloudphone_operator::plan::{PhoneEvent, PhoneKey, READY, WAITING_FOR_IDLE};
use cloudphone_operator::reconciler::{Engine, MemoryStore, PhoneStore, WriteError};
use cloudphone_operator::sim::code;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A store that, once armed, runs `hook` on the inner store right before the next status write of
/// `trigger` lands: a write by someone else between the operator's snapshot and its own.
struct Racing {
    inner: MemoryStore,
    trigger: PhoneKey,
    armed: AtomicBool,
    hook: Box<dyn Fn(&MemoryStore) + Send + Sync>,
}

impl PhoneStore for Racing {
    fn snapshot(&self) -> Vec<Arc<CloudPhone>> {
        self.inner.snapshot()
    }

    async fn write_status(
        &self,
        phone: &CloudPhone,
        fence: Option<&str>,
        status: &CloudPhoneStatus,
    ) -> Result<Option<String>, WriteError> {
        if PhoneKey::of(phone) == self.trigger && self.armed.swap(false, Ordering::SeqCst) {
            (self.hook)(&self.inner);
        }
        self.inner.write_status(phone, fence, status).await
    }

    async fn publish(&self, phone: &CloudPhone, event: &PhoneEvent) {
        self.inner.publish(phone, event).await;
    }
}

fn ready_reason(phone: &CloudPhone) -> Option<String> {
    phone
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.reason.clone())
}

#[tokio::test]
async fn a_session_service_that_sets_load_until_before_the_backup_intent_lands_stops_the_backup() {
    let _deadline = support::deadline(
        "a_session_service_that_sets_load_until_before_the_backup_intent_lands_stops_the_backup",
    );
    let mut phone = support::cloudphone("p", "kp1").backed_up().build();
    phone.spec.user_id = Some("u1".into());
    let sim = support::simulator(vec![("kp1".into(), code::DATA_LOADED)])
        .start()
        .await;
    // The session service hands a device token out for this phone: it sets load-until (an hour
    // ahead) between the operator's snapshot and its backup intent.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let store = Arc::new(Racing {
        inner: MemoryStore::new([phone]),
        trigger: support::key("p"),
        armed: AtomicBool::new(true),
        hook: Box::new(move |inner: &MemoryStore| {
            let mut phone = (*inner.get(&support::key("p")).unwrap()).clone();
            phone
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(cloudphone_operator::api::LOAD_UNTIL.into(), until.clone());
            inner.insert(phone);
        }),
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
    let engine = Engine::new(store.clone(), client, Default::default());
    engine.tick().await;
    assert!(
        !store.armed.load(Ordering::SeqCst),
        "the session service wrote"
    );
    assert_eq!(
        sim.counters().calls("backup"),
        0,
        "the backup intent's write was fenced off (409): no backup left"
    );
    // The next tick reads the annotation: the phone is kept loaded, and nothing is backed up.
    for _ in 0..3 {
        engine.tick().await;
    }
    assert_eq!(sim.counters().calls("backup"), 0);
    let phone = store.inner.get(&support::key("p")).unwrap();
    let status = phone.status.as_ref().unwrap();
    assert_eq!(
        (status.effective_lifecycle, status.effective_reason),
        (Some(Lifecycle::Loaded), Some(EffectiveReason::LoadUntil))
    );
    assert_eq!(ready_reason(&phone).as_deref(), Some("Loaded"));
}

#[tokio::test]
async fn an_idle_phone_is_parked_after_its_timeout_and_a_session_or_a_failed_query_starts_the_wait_again()
 {
    let _deadline = support::deadline(
        "an_idle_phone_is_parked_after_its_timeout_and_a_session_or_a_failed_query_starts_the_wait_again",
    );
    let phone = support::cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("3s")
        .build();
    let sim = support::simulator(vec![("kp1".into(), code::DATA_LOADED)])
        .backup_duration(Duration::from_millis(300))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new([phone]));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_metrics(metrics.clone());
    let started = std::time::Instant::now();
    engine.tick().await;
    let waiting = store.get(&support::key("p")).unwrap();
    assert_eq!(ready_reason(&waiting).as_deref(), Some(WAITING_FOR_IDLE));
    // A user streams at 1 s for 2 s: the wait starts again when the session ends.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.seed([("kp1", code::STREAMING)]);
    engine.tick().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.seed([("kp1", code::DATA_LOADED)]);
    engine.tick().await;
    let session_ended = started.elapsed();
    // One status query fails two seconds later: the wait counts from then.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.set_faults(cloudphone_operator::sim::Faults {
        fail_next_calls: 4,
        ..Default::default()
    })
    .unwrap();
    engine.tick().await;
    let failed_at = started.elapsed();
    assert_eq!(sim.counters().calls("backup"), 0);
    let parked_at = loop {
        engine.tick().await;
        if sim.counters().calls("backup") > 0 {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never parked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        parked_at >= failed_at + Duration::from_secs(2),
        "parked at {parked_at:?}, less than the idle timeout after the failed query at {failed_at:?} (the session ended at {session_ended:?})"
    );
    assert_eq!(sim.counters().calls("backup"), 1);
    let text = metrics.encode();
    assert!(
        text.contains("cloudphone_parks_total{reason=\"idle\"} 1"),
        "{text}"
    );
    let events = store.events();
    assert!(
        events
            .iter()
            .any(|(_, e)| e.reason == "Parked" && e.message.contains("3s")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_phone_rightly_kept_loaded_fires_no_backup_or_readiness_gauge() {
    let _deadline =
        support::deadline("a_phone_rightly_kept_loaded_fires_no_backup_or_readiness_gauge");
    // Created long ago, never backed up: a BackedUp phone that is waiting for idleness (in use)
    // and one kept loaded by its load-until are where they should be.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let mut kept = support::cloudphone("kept", "kp2")
        .backed_up()
        .load_until(&until)
        .build();
    kept.spec.user_id = Some("u1".into());
    let phones = vec![
        support::cloudphone("in-use", "kp1")
            .backed_up()
            .idle_timeout("1h")
            .build(),
        kept,
    ];
    let sim = support::simulator(vec![
        ("kp1".into(), code::STREAMING),
        ("kp2".into(), code::DATA_LOADED),
    ])
    .start()
    .await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_metrics(metrics.clone());
    engine.tick().await;
    engine.tick().await;
    let text = metrics.encode();
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    assert_eq!(
        value("cloudphone_oldest_unbacked_seconds"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value("cloudphone_longest_not_ready_seconds"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains(r#"lifecycle="BackedUp",effective_lifecycle="Loaded""#),
        "{text}"
    );
    assert_eq!(sim.counters().calls("backup"), 0);
}

// Review of issue 22 (adversarial): each test below failed on the code it was written against.

#[tokio::test]
async fn a_load_until_never_wakes_a_phone_for_a_user_its_account_does_not_allow() {
    let _deadline =
        support::deadline("a_load_until_never_wakes_a_phone_for_a_user_its_account_does_not_allow");
    // The operator's own account allows user u1 only. A tenant's BackedUp phone names another
    // user and sets load-until: its wake must not ready the instance for that user.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let mut phone = support::cloudphone("p", "kp1")
        .backed_up()
        .load_until(&until)
        .build();
    phone.spec.user_id = Some("intruder".into());
    let sim = support::simulator(vec![("kp1".into(), code::IDLE)])
        .start()
        .await;
    let store = Arc::new(MemoryStore::new([phone]));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_own_allowed_users(["u1".to_owned()].into());
    for _ in 0..3 {
        engine.tick().await;
    }
    assert_eq!(
        sim.instance("kp1").unwrap().prepare_requests,
        0,
        "the instance was prepared for a user the account does not allow ({:?})",
        ready_reason(&store.get(&support::key("p")).unwrap())
    );
}

#[tokio::test]
async fn a_new_operator_process_does_not_count_the_time_no_one_watched_as_idle() {
    let _deadline =
        support::deadline("a_new_operator_process_does_not_count_the_time_no_one_watched_as_idle");
    let phone = support::cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("3s")
        .build();
    let sim = support::simulator(vec![("kp1".into(), code::DATA_LOADED)])
        .start()
        .await;
    let store = Arc::new(MemoryStore::new([phone]));
    let first = support::engine(&sim, store.clone()).build();
    first.tick().await;
    let waiting = store.get(&support::key("p")).unwrap();
    assert_eq!(ready_reason(&waiting).as_deref(), Some(WAITING_FOR_IDLE));
    // The operator goes away (an upgrade, a crash, a failover); a user streams meanwhile, for
    // longer than the idle timeout, and stops just before a new process's first tick.
    drop(first);
    sim.seed([("kp1", code::STREAMING)]);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    sim.seed([("kp1", code::DATA_LOADED)]);
    let second = support::engine(&sim, store.clone()).build();
    second.tick().await;
    assert_eq!(
        sim.counters().calls("backup"),
        0,
        "parked the moment a session it never saw ended: the idleSince written before the restart counted as idle"
    );
}
