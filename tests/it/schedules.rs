//! Scheduled phones end to end: the engine on the in-memory stores (phones and
//! CloudPhoneSchedules) against the simulator over real HTTP (issue 22). The schedules are written
//! in UTC around the wall clock, since the engine reads the time itself.

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, EffectiveReason, Lifecycle};
use cloudphone_operator::plan::READY;
use cloudphone_operator::reconciler::{MemorySchedules, MemoryStore};
use cloudphone_operator::sim::code;
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

/// `n` phones on schedule `on` for user u1, their instances at `code`, kept parked by the schedule
/// so far (members of its waves, not phones that have just joined it).
fn fleet(n: usize, on: &str, code: i64) -> (Vec<CloudPhone>, Vec<(String, i64)>) {
    let phones = (0..n)
        .map(|i| {
            let mut phone = support::cloudphone(&format!("p{i:04}"), &format!("kp{i:04}"))
                .scheduled(on, "u1")
                .build();
            phone.status = Some(CloudPhoneStatus {
                effective_lifecycle: Some(Lifecycle::BackedUp),
                effective_reason: Some(EffectiveReason::OutsideWindow),
                ..Default::default()
            });
            phone
        })
        .collect();
    let instances = (0..n).map(|i| (format!("kp{i:04}"), code)).collect();
    (phones, instances)
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

fn effective(store: &MemoryStore, n: usize, lifecycle: Lifecycle) -> usize {
    (0..n)
        .filter(|i| {
            let phone = store.get(&support::key(&format!("p{i:04}"))).unwrap();
            phone.status.as_ref().and_then(|s| s.effective_lifecycle) == Some(lifecycle)
        })
        .count()
}

#[tokio::test]
async fn a_window_opening_wakes_the_fleet_at_each_phones_turn_not_at_once() {
    let _deadline =
        support::deadline("a_window_opening_wakes_the_fleet_at_each_phones_turn_not_at_once");
    // The window starts in an hour, woken an hour ahead: the wave began this minute, and spreads
    // over 55 minutes (a restore before the start).
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", 60, 180, "1h",
    )]));
    let (phones, instances) = fleet(300, "office", code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    let woken = effective(&store, 300, Lifecycle::Loaded);
    assert!(
        woken < 30,
        "{woken} of 300 woken in the wave's first minute (about 300/55 a minute expected)"
    );
    assert!(sim.counters().calls("prepare") <= 1);
    // Every other phone says when its turn comes: within the wave, before the start.
    let start = Timestamp::now() + SignedDuration::from_mins(61);
    let waiting = store.get(&support::key("p0001")).unwrap();
    let status = waiting.status.as_ref().unwrap();
    if status.effective_lifecycle == Some(Lifecycle::BackedUp) {
        let next = status.next_transition.as_ref().expect("its turn");
        assert_eq!(next.lifecycle, Lifecycle::Loaded);
        assert!(next.at.0 < start - SignedDuration::from_mins(5));
    }
    // The schedule's status: its wave anchored at the edge, its phones counted.
    let s = schedules.get("fleet", "office").unwrap();
    let st = s.status.as_ref().expect("the schedule's status is written");
    let wave = st.wave.as_ref().expect("the wave's anchor");
    assert_eq!(
        wave.from, wave.edge,
        "a wave acted on at its edge spreads from it"
    );
    assert_eq!(st.counts.parked + st.counts.preparing, 300);
    assert_eq!(
        st.current_window
            .as_deref()
            .map(|w| w.starts_with("Window")),
        Some(true)
    );
    // A second tick a moment later wakes no more than the turns that came meanwhile.
    engine.tick().await;
    assert!(effective(&store, 300, Lifecycle::Loaded) < 40);
}

#[tokio::test]
async fn a_schedule_first_acted_on_mid_window_spreads_from_then_and_a_restart_resumes_it() {
    let _deadline = support::deadline(
        "a_schedule_first_acted_on_mid_window_spreads_from_then_and_a_restart_resumes_it",
    );
    // The window began an hour ago: the operator first sees it now (a schedule created, a fresh
    // install). Woken 30 minutes ahead: the wave spreads over 25 minutes from now.
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", -60, 180, "30m",
    )]));
    let (phones, instances) = fleet(300, "office", code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    let woken = effective(&store, 300, Lifecycle::Loaded);
    assert!(woken < 30, "{woken} of 300 woken at once mid-window");
    let prepares = sim.counters().calls("prepare");
    assert!(prepares <= 1, "{prepares} prepare calls");
    // A new operator (a restart, a failover) resumes the wave from the anchor in the status.
    let anchor = schedules
        .get("fleet", "office")
        .unwrap()
        .status
        .clone()
        .unwrap()
        .wave;
    let restarted = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    restarted.tick().await;
    assert!(effective(&store, 300, Lifecycle::Loaded) < 40);
    assert_eq!(
        schedules
            .get("fleet", "office")
            .unwrap()
            .status
            .clone()
            .unwrap()
            .wave,
        anchor,
        "the same wave"
    );
}

#[tokio::test]
async fn phones_whose_schedule_is_missing_invalid_unsynced_or_deleted_are_held_as_they_are() {
    let _deadline = support::deadline(
        "phones_whose_schedule_is_missing_invalid_unsynced_or_deleted_are_held_as_they_are",
    );
    // Inside a window with no lead: each phone's turn is now. Loaded phones in a window.
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", -10, 120, "0",
    )]));
    let (mut phones, instances) = fleet(3, "office", code::DATA_LOADED);
    phones[1].spec.schedule_ref.as_mut().unwrap().name = "nowhere".into();
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    let p0 = store.get(&support::key("p0000")).unwrap();
    assert_eq!(ready_reason(&p0).as_deref(), Some("Loaded"));
    assert_eq!(
        p0.status.as_ref().unwrap().effective_reason,
        Some(EffectiveReason::ScheduleWindow)
    );
    let p1 = store.get(&support::key("p0001")).unwrap();
    assert_eq!(ready_reason(&p1).as_deref(), Some("ScheduleNotFound"));
    // The schedule is deleted mid-window: nobody is parked.
    schedules.remove("fleet", "office");
    engine.tick().await;
    assert_eq!(sim.counters().calls("backup"), 0);
    let p0 = store.get(&support::key("p0000")).unwrap();
    assert_eq!(ready_reason(&p0).as_deref(), Some("ScheduleNotFound"));
    // An unknown zone: Valid=False, the phones held.
    let mut bad = support::utc_schedule("office", -10, 120, "0");
    bad.spec.time_zone = "Europe/Atlantis".into();
    schedules.insert(bad);
    engine.tick().await;
    let p0 = store.get(&support::key("p0000")).unwrap();
    assert_eq!(ready_reason(&p0).as_deref(), Some("ScheduleInvalid"));
    let s = schedules.get("fleet", "office").unwrap();
    let valid = s
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Valid")
        .unwrap();
    assert_eq!(valid.status, "False");
    assert!(
        valid.message.contains("Europe/Atlantis"),
        "{}",
        valid.message
    );
    // The schedules' watch not synced (the CRD missing after a helm upgrade): held, and told.
    schedules.set_synced(false);
    engine.tick().await;
    let p0 = store.get(&support::key("p0000")).unwrap();
    let ready = p0
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .unwrap();
    assert_eq!(ready.reason, "ScheduleNotFound");
    assert!(ready.message.contains("CRD"), "{}", ready.message);
    assert_eq!(
        sim.counters().calls("backup") + sim.counters().calls("prepare"),
        0
    );
}

#[tokio::test]
async fn a_dry_run_shows_what_it_would_do_and_calls_nothing() {
    let _deadline = support::deadline("a_dry_run_shows_what_it_would_do_and_calls_nothing");
    // The window opens this minute, with no lead: at its edge, every phone's turn is now.
    let mut s = support::utc_schedule("office", 0, 120, "0");
    s.spec.dry_run = true;
    let schedules = Arc::new(MemorySchedules::new([s]));
    let (phones, instances) = fleet(5, "office", code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 0);
    assert_eq!(effective(&store, 5, Lifecycle::Loaded), 5, "computed");
    let p = store.get(&support::key("p0000")).unwrap();
    assert_eq!(ready_reason(&p).as_deref(), Some("DryRun"));
    let would_wake = store
        .events()
        .iter()
        .filter(|(_, e)| e.reason == "WouldWake")
        .count();
    assert_eq!(would_wake, 5, "one WouldWake a phone, not one a tick");
}

#[tokio::test]
async fn outside_its_window_a_phone_is_parked_but_never_while_a_user_streams() {
    let _deadline =
        support::deadline("outside_its_window_a_phone_is_parked_but_never_while_a_user_streams");
    // The window is hours away; no lead: each phone's turn is now.
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", 180, 240, "0",
    )]));
    let (phones, mut instances) = fleet(2, "office", code::DATA_LOADED);
    instances[1].1 = code::STREAMING;
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    engine.tick().await;
    assert_eq!(
        sim.counters().calls("backup"),
        1,
        "one call, for the phone not in use"
    );
    let p0 = store.get(&support::key("p0000")).unwrap();
    assert_eq!(
        p0.status.as_ref().unwrap().effective_reason,
        Some(EffectiveReason::OutsideWindow)
    );
    assert!(p0.status.as_ref().unwrap().backup.is_some());
    let p1 = store.get(&support::key("p0001")).unwrap();
    assert!(
        p1.status.as_ref().unwrap().backup.is_none(),
        "streaming: left alone"
    );
    // Not one write to a spec or metadata: only statuses (the store counts status writes).
    assert_eq!(p0.spec.lifecycle, Lifecycle::Scheduled);
}

#[tokio::test]
async fn a_fleet_switched_to_scheduled_in_one_commit_mid_window_is_woken_over_the_lead_not_at_once()
{
    let _deadline = support::deadline(
        "a_fleet_switched_to_scheduled_in_one_commit_mid_window_is_woken_over_the_lead_not_at_once",
    );
    // The window has been open for an hour and its wave is long over; the phones were BackedUp
    // (Declared) and are switched to Scheduled in one commit.
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", -60, 180, "30m",
    )]));
    let (mut phones, instances) = fleet(2000, "office", code::IDLE);
    for phone in &mut phones {
        phone.status.as_mut().unwrap().effective_reason = Some(EffectiveReason::Declared);
    }
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    let woken = effective(&store, 2000, Lifecycle::Loaded);
    assert!(woken < 40, "{woken} of 2000 switched phones woken at once");
    // Each held phone shows its turn, within the lead from now.
    let p = store.get(&support::key("p0003")).unwrap();
    let next = p
        .status
        .as_ref()
        .unwrap()
        .next_transition
        .as_ref()
        .map(|n| n.at.0);
    if p.status.as_ref().unwrap().effective_lifecycle == Some(Lifecycle::BackedUp) {
        let latest = Timestamp::now() + SignedDuration::from_mins(26);
        assert!(next.is_some_and(|at| at < latest), "{next:?}");
    }
    engine.tick().await;
    assert!(effective(&store, 2000, Lifecycle::Loaded) < 60);
}

#[tokio::test]
async fn an_exception_overrides_the_windows_and_is_named_on_its_phones() {
    let _deadline =
        support::deadline("an_exception_overrides_the_windows_and_is_named_on_its_phones");
    // No window today but a Loaded exception that begins this minute (a late shift).
    let mut s = support::utc_schedule("office", 180, 240, "0");
    let at = |m: i64| {
        (Timestamp::now() + SignedDuration::from_mins(m))
            .strftime("%Y-%m-%dT%H:%M")
            .to_string()
    };
    s.spec.exceptions = vec![cloudphone_operator::api::ScheduleException {
        name: "late-shift".into(),
        from: at(0),
        until: at(120),
        lifecycle: cloudphone_operator::api::ExceptionLifecycle::Loaded,
    }];
    let schedules = Arc::new(MemorySchedules::new([s]));
    let (phones, instances) = fleet(3, "office", code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    assert_eq!(sim.counters().calls("prepare"), 1, "one call for the three");
    // NB: the call's own record says what the call did; the next tick's plan names the exception.
    engine.tick().await;
    let p = store.get(&support::key("p0000")).unwrap();
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.effective_reason, Some(EffectiveReason::Exception));
    let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert!(
        ready
            .message
            .contains("exception late-shift of CloudPhoneSchedule office"),
        "{}",
        ready.message
    );
    let woken = store
        .events()
        .iter()
        .filter(|(_, e)| e.reason == "Woken" && e.message.contains("exception"))
        .count();
    assert_eq!(woken, 3);
    let st = schedules
        .get("fleet", "office")
        .unwrap()
        .status
        .clone()
        .unwrap();
    assert_eq!(st.current_window.as_deref(), Some("Exception late-shift"));
}

#[tokio::test]
async fn turning_a_dry_run_off_mid_window_wakes_the_phones_at_their_turns_not_at_once() {
    let _deadline = support::deadline(
        "turning_a_dry_run_off_mid_window_wakes_the_phones_at_their_turns_not_at_once",
    );
    // The window opens this minute, with no lead: in the dry run every phone's turn comes at
    // once, and each would be woken.
    let mut s = support::utc_schedule("office", 0, 180, "0");
    s.spec.dry_run = true;
    let schedules = Arc::new(MemorySchedules::new([s.clone()]));
    let (phones, instances) = fleet(500, "office", code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    assert_eq!(
        effective(&store, 500, Lifecycle::Loaded),
        500,
        "the dry run computed"
    );
    assert_eq!(sim.counters().calls("prepare"), 0);
    // The dry run ends, with a lead of 30 minutes: the wakes are spread from now.
    s.spec.dry_run = false;
    s.spec.prewarm_lead = Some("30m".into());
    schedules.insert(s);
    engine.tick().await;
    let prepares = sim.counters().calls("prepare");
    assert!(
        prepares <= 1,
        "{prepares} prepare calls once the dry run ended"
    );
}

#[tokio::test]
async fn a_wave_whose_status_cannot_be_written_is_not_started_again_every_tick() {
    let _deadline =
        support::deadline("a_wave_whose_status_cannot_be_written_is_not_started_again_every_tick");
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", -60, 180, "30m",
    )]));
    schedules.fail_writes(true);
    let (phones, instances) = fleet(50, "office", code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    let turn = |store: &MemoryStore| {
        (0..50)
            .filter_map(|i| {
                let p = store.get(&support::key(&format!("p{i:04}"))).unwrap();
                let s = p.status.as_ref()?;
                (s.effective_lifecycle == Some(Lifecycle::BackedUp))
                    .then(|| s.next_transition.as_ref().map(|n| n.at.0))
                    .flatten()
            })
            .collect::<Vec<_>>()
    };
    let first = turn(&store);
    assert!(!first.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    engine.tick().await;
    let second = turn(&store);
    assert_eq!(
        first[..first.len().min(second.len())],
        second[..first.len().min(second.len())],
        "the same turns"
    );
    assert_eq!(schedules.writes(), 0);
}
