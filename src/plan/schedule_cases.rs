//! The cases an adversarial review of the `Scheduled` lifecycle found (issue 22), each at fixed
//! instants: no unspread mass action, no wave lost, no flap, no false alarm. Each failed before
//! its fix.

use super::*;
use crate::api::{
    CloudPhoneSchedule, CloudPhoneScheduleSpec, CloudPhoneScheduleStatus, CloudPhoneStatus,
    EffectiveReason, ExceptionLifecycle, Lifecycle, Phase, ScheduleException, ScheduleWindow,
    WaveAnchor, Weekday,
};
use crate::test_phone::cloudphone;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn utc(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// 08:00-20:00 Berlin on `days` (2026-07-01 is a Wednesday; CEST, +2), woken `lead` ahead.
fn office(days: &[Weekday], lead: &str) -> CloudPhoneSchedule {
    let mut s = CloudPhoneSchedule::new(
        "office",
        CloudPhoneScheduleSpec {
            time_zone: "Europe/Berlin".into(),
            windows: vec![ScheduleWindow {
                days: days.to_vec(),
                start: "08:00".into(),
                end: "20:00".into(),
            }],
            exceptions: vec![],
            prewarm_lead: Some(lead.into()),
            suspend: false,
            dry_run: false,
        },
    );
    s.metadata.namespace = Some("fleet".into());
    s
}

/// `s` with a wave to `lifecycle` from `from` for its change at `edge` in its status, written for
/// its current generation.
fn with_wave(
    mut s: CloudPhoneSchedule,
    edge: &str,
    from: &str,
    lifecycle: Lifecycle,
) -> CloudPhoneSchedule {
    s.status = Some(CloudPhoneScheduleStatus {
        observed_generation: s.metadata.generation,
        wave: Some(WaveAnchor {
            edge: Time(utc(edge)),
            from: Time(utc(from)),
            lifecycle,
        }),
        ..Default::default()
    });
    s
}

fn status(lifecycle: Lifecycle, reason: EffectiveReason) -> CloudPhoneStatus {
    CloudPhoneStatus {
        effective_lifecycle: Some(lifecycle),
        effective_reason: Some(reason),
        ..Default::default()
    }
}

/// How many of 1000 phones (each with `status`, observed `phase`) the schedule moves to
/// `lifecycle` at `now`: each of those is acted on (a prepare or a backup) in this very tick.
fn moved_now(
    tick: &ScheduleTick,
    status: &CloudPhoneStatus,
    phase: Phase,
    lifecycle: Lifecycle,
    now: Timestamp,
) -> usize {
    (0..1000)
        .filter(|i| {
            let uid = format!("uid-{i}");
            matches!(
                scheduled(ScheduleLink::Found(tick), "office", Some(&uid), status, phase, now),
                Kept::At(e) if e.lifecycle == lifecycle && phase_differs(phase, lifecycle)
            )
        })
        .count()
}

/// The observed phase is not what `lifecycle` keeps: a vendor action follows.
fn phase_differs(phase: Phase, lifecycle: Lifecycle) -> bool {
    let loaded = matches!(
        phase,
        Phase::DataLoaded | Phase::Streaming | Phase::Restoring
    );
    match lifecycle {
        Lifecycle::Loaded => !loaded,
        _ => loaded,
    }
}

#[test]
fn finding_1_dry_run_turned_off_mid_window_spreads_the_wake() {
    // The dry run has run since the wave's edge (07:30 CEST, 05:30Z): it computed every phone
    // Loaded (effectiveLifecycle written, Ready DryRun, nothing called; the instances are Idle).
    let mut dry = office(&ALL_DAYS, "30m");
    dry.metadata.generation = Some(1);
    dry.spec.dry_run = true;
    let dry = with_wave(
        dry,
        "2026-07-01T05:30:00Z",
        "2026-07-01T05:30:00Z",
        Lifecycle::Loaded,
    );
    let mut after_dry_run = status(Lifecycle::Loaded, EffectiveReason::ScheduleWindow);
    after_dry_run
        .conditions
        .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: READY.into(),
            status: "True".into(),
            reason: DRY_RUN.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(utc("2026-07-01T05:30:00Z")),
        });
    // 12:00 CEST: a person turns the dry run off (generation 2).
    let now = utc("2026-07-01T10:00:00Z");
    let mut live = dry.clone();
    live.spec.dry_run = false;
    live.metadata.generation = Some(2);
    let tick = ScheduleTick::read(&live, now, RESTORE_ESTIMATE, None);
    let at_once = moved_now(&tick, &after_dry_run, Phase::Idle, Lifecycle::Loaded, now);
    assert!(
        at_once < 30,
        "{at_once} of 1000 phones prepared in the tick that turned dryRun off"
    );
}

#[test]
fn finding_2_a_wave_reaches_every_phone_while_the_schedules_status_cannot_be_written() {
    // Created mid-window (12:00 CEST): the wave spreads from now over 25 minutes. The status
    // write fails (a Role without cloudphoneschedules/status, an API outage): each tick reads
    // the schedule with no anchor, and the engine's memory of the anchor it computed (passed as
    // `remembered`, as the engine does). Ticks every 30 s for 40 minutes.
    let schedule = office(&ALL_DAYS, "30m");
    let parked = status(Lifecycle::BackedUp, EffectiveReason::OutsideWindow);
    let start = utc("2026-07-01T10:00:00Z");
    let mut woken = [false; 100];
    let mut remembered: Option<WaveAnchor> = None;
    for t in 0..80 {
        let now = start + jiff::SignedDuration::from_secs(30 * t);
        let tick = ScheduleTick::read(&schedule, now, RESTORE_ESTIMATE, remembered.as_ref());
        if let ScheduleState::Active(active) = &tick.state {
            remembered = Some(active.wave.clone());
        }
        for (i, w) in woken.iter_mut().enumerate() {
            let uid = format!("uid-{i}");
            if matches!(
                scheduled(ScheduleLink::Found(&tick), "office", Some(&uid), &parked, Phase::Idle, now),
                Kept::At(e) if e.lifecycle == Lifecycle::Loaded
            ) {
                *w = true;
            }
        }
    }
    let n = woken.iter().filter(|w| **w).count();
    assert_eq!(n, 100, "only {n} of 100 phones woken in 40 minutes");
}

#[test]
fn finding_3_an_exception_in_force_deleted_or_an_operator_back_after_days_spreads_the_change() {
    // A schedule without windows, loaded for an event from 2026-07-01 to 2026-07-04; its wave
    // ran at the exception's start (midnight CEST, 22:00Z).
    let mut event = office(&[], "30m");
    event.spec.windows.clear();
    event.spec.exceptions = vec![ScheduleException {
        name: "launch".into(),
        from: "2026-07-01".into(),
        until: "2026-07-04".into(),
        lifecycle: ExceptionLifecycle::Loaded,
    }];
    let event = with_wave(
        event,
        "2026-06-30T22:00:00Z",
        "2026-06-30T22:00:00Z",
        Lifecycle::Loaded,
    );
    let loaded = status(Lifecycle::Loaded, EffectiveReason::Exception);
    // 12:00 CEST: the event is cancelled, the exception deleted.
    let now = utc("2026-07-01T10:00:00Z");
    let mut cancelled = event.clone();
    cancelled.spec.exceptions.clear();
    let tick = ScheduleTick::read(&cancelled, now, RESTORE_ESTIMATE, None);
    let at_once = moved_now(&tick, &loaded, Phase::DataLoaded, Lifecycle::BackedUp, now);
    assert!(
        at_once < 30,
        "exception deleted: {at_once} of 1000 phones backed up in one tick"
    );
    // A Wednesday-only window; the operator stopped Wednesday noon with the wake's anchor stored
    // and comes back Saturday noon: the window's end (Wednesday 20:00) is out of `since`'s sight.
    let wednesday = with_wave(
        office(&[Weekday::Wed], "30m"),
        "2026-07-01T05:30:00Z",
        "2026-07-01T05:30:00Z",
        Lifecycle::Loaded,
    );
    let saturday = utc("2026-07-04T10:00:00Z");
    let tick = ScheduleTick::read(&wednesday, saturday, RESTORE_ESTIMATE, None);
    let window = status(Lifecycle::Loaded, EffectiveReason::ScheduleWindow);
    let at_once = moved_now(
        &tick,
        &window,
        Phase::DataLoaded,
        Lifecycle::BackedUp,
        saturday,
    );
    assert!(
        at_once < 30,
        "operator back after 3 days: {at_once} of 1000 phones backed up in one tick"
    );
    // The day shift (08:00-20:00, its park wave anchored at 20:00 CEST) becomes a night shift
    // (20:30-08:00, woken from 20:00) at 21:00 CEST: the new wake's edge is the old park's.
    let day = with_wave(
        office(&ALL_DAYS, "30m"),
        "2026-07-01T18:00:00Z",
        "2026-07-01T18:00:00Z",
        Lifecycle::BackedUp,
    );
    let mut night = day.clone();
    night.spec.windows[0].start = "20:30".into();
    night.spec.windows[0].end = "08:00".into();
    let now = utc("2026-07-01T19:00:00Z");
    let tick = ScheduleTick::read(&night, now, RESTORE_ESTIMATE, None);
    let parked = status(Lifecycle::BackedUp, EffectiveReason::OutsideWindow);
    let at_once = moved_now(&tick, &parked, Phase::Idle, Lifecycle::Loaded, now);
    assert!(
        at_once < 30,
        "day shift edited to a night shift: {at_once} of 1000 phones prepared in one tick"
    );
}

#[test]
fn finding_8_what_the_crd_admits_and_the_operator_refuses_fails_closed() {
    // The CRD's rule compares from and until with a date read as its midnight, so that the same
    // instant written two ways is refused; a date that does not exist passes the text rule, and
    // the operator refuses it: the schedule is Valid=False and its phones are held.
    let rules = serde_json::to_string(&crate::api::schedule_crd()).unwrap();
    assert!(
        rules.contains("size(self.from) == 10"),
        "the rule reads a date as its midnight"
    );
    for (from, until) in [
        ("2026-12-24", "2026-12-24T00:00"),
        ("2026-02-30", "2026-03-02"),
    ] {
        let mut s = office(&ALL_DAYS, "30m");
        s.spec.exceptions = vec![ScheduleException {
            name: "x".into(),
            from: from.into(),
            until: until.into(),
            lifecycle: ExceptionLifecycle::BackedUp,
        }];
        let why = schedule::read(&s.spec).expect_err("refused");
        assert!(why.contains("spec.exceptions[0]"), "{why}");
    }
}

#[test]
fn finding_4_ten_thousand_phones_switched_to_scheduled_mid_window_are_spread() {
    // The morning's wave ran from its edge; at 12:00 CEST one commit switches the fleet from
    // BackedUp to Scheduled.
    let schedule = with_wave(
        office(&ALL_DAYS, "30m"),
        "2026-07-01T05:30:00Z",
        "2026-07-01T05:30:00Z",
        Lifecycle::Loaded,
    );
    let declared = status(Lifecycle::BackedUp, EffectiveReason::Declared);
    let now = utc("2026-07-01T10:00:00Z");
    let tick = ScheduleTick::read(&schedule, now, RESTORE_ESTIMATE, None);
    let at_once = moved_now(&tick, &declared, Phase::Idle, Lifecycle::Loaded, now);
    assert!(
        at_once < 30,
        "{at_once} of 1000 phones prepared in one tick"
    );
}

#[test]
fn finding_5_a_short_lead_still_spreads_a_change_that_is_not_at_an_edge() {
    let now = utc("2026-07-01T10:00:00Z");
    let parked = status(Lifecycle::BackedUp, EffectiveReason::Declared);
    let created = ScheduleTick::read(&office(&ALL_DAYS, "5m"), now, RESTORE_ESTIMATE, None);
    let at_once = moved_now(&created, &parked, Phase::Idle, Lifecycle::Loaded, now);
    assert!(
        at_once < 30,
        "prewarmLead 5m, created mid-window: {at_once} of 1000 prepared in one tick"
    );
    // prewarmLead 0, the window's end (20:00 CEST): the park is spread over MIN_SPREAD.
    let end = utc("2026-07-01T18:00:00Z");
    let ending = ScheduleTick::read(&office(&ALL_DAYS, "0"), end, RESTORE_ESTIMATE, None);
    let loaded = status(Lifecycle::Loaded, EffectiveReason::ScheduleWindow);
    let at_once = moved_now(
        &ending,
        &loaded,
        Phase::DataLoaded,
        Lifecycle::BackedUp,
        end,
    );
    assert!(
        at_once < 30,
        "prewarmLead 0, window end: {at_once} of 1000 backed up in one tick"
    );
}

#[test]
fn finding_6_a_phone_waiting_for_its_turn_by_design_is_not_late() {
    let asked = |at: &str| CloudPhoneStatus {
        effective_lifecycle: Some(Lifecycle::Loaded),
        effective_reason: Some(EffectiveReason::ScheduleWindow),
        prepare: Some(Box::new(crate::api::ActionStatus {
            requested_at: Some(Time(utc(at))),
            ..Default::default()
        })),
        ..Default::default()
    };
    // Created at 12:00 CEST: its wave has just begun, spread over 25 minutes.
    let now = utc("2026-07-01T10:00:00Z");
    let created = ScheduleTick::read(&office(&ALL_DAYS, "30m"), now, RESTORE_ESTIMATE, None);
    let waiting = status(Lifecycle::BackedUp, EffectiveReason::OutsideWindow);
    assert!(
        !is_late(&created, Some(&waiting), Phase::Idle, false, now),
        "a phone waiting for its turn counted late"
    );
    assert!(
        !is_late(
            &created,
            Some(&asked("2026-07-01T09:58:00Z")),
            Phase::Restoring,
            false,
            now
        ),
        "a phone asked two minutes ago counted late"
    );
    assert!(
        is_late(
            &created,
            Some(&asked("2026-07-01T09:50:00Z")),
            Phase::Idle,
            false,
            now
        ),
        "a phone asked ten minutes ago and still parked is late"
    );
    assert!(
        !is_late(
            &created,
            Some(&asked("2026-07-01T09:50:00Z")),
            Phase::Idle,
            true,
            now
        ),
        "a suspended phone counted late"
    );
    // A Loaded exception on a windowless schedule starts at midnight CEST: its wake starts then.
    let mut event = office(&[], "30m");
    event.spec.windows.clear();
    event.spec.exceptions = vec![ScheduleException {
        name: "launch".into(),
        from: "2026-07-01".into(),
        until: "2026-07-04".into(),
        lifecycle: ExceptionLifecycle::Loaded,
    }];
    let start = utc("2026-06-30T22:00:30Z");
    let tick = ScheduleTick::read(&event, start, RESTORE_ESTIMATE, None);
    assert!(
        !is_late(
            &tick,
            Some(&asked("2026-06-30T22:00:20Z")),
            Phase::Idle,
            false,
            start
        ),
        "a phone late 30 s into an exception whose wake began then"
    );
    // Its status does not call the pace too slow: the wake simply begins at the start.
    let s = schedule_status(
        &tick,
        None,
        None,
        &SchedulePhones {
            wake_calls: 1,
            pace: Some(Pace {
                calls: 100.0,
                actions: 75.0,
            }),
            ..Default::default()
        },
        start,
    )
    .unwrap();
    let risk = s
        .conditions
        .iter()
        .find(|c| c.type_ == PREWARM_AT_RISK)
        .unwrap();
    assert_eq!(
        (risk.status.as_str(), risk.reason.as_str()),
        ("False", "WaveAfterStart")
    );
}

/// Plans a `Scheduled` phone (idleTimeout 3h, uid `uid`) with `status`, observed at `code`, under
/// `schedule` at `now`.
fn plan_scheduled(
    schedule: &CloudPhoneSchedule,
    uid: &str,
    status: CloudPhoneStatus,
    code: i64,
    now: Timestamp,
) -> (CloudPhoneStatus, Option<Action>) {
    let phone = cloudphone("p", "kp1")
        .uid(uid)
        .created(-100)
        .scheduled("office", "u1")
        .idle_timeout("3h")
        .status(status)
        .build();
    let tick = ScheduleTick::read(schedule, now, RESTORE_ESTIMATE, None);
    let view = PhoneView::of(&phone, Route::Scope(DEFAULT_SCOPE))
        .with_schedule(ScheduleLink::Found(&tick));
    let config = PlanConfig::default();
    let cx = Context {
        now,
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    let planned = plan_phone(
        &view,
        &Disposition::Query,
        Some(&Observation::Status(code)),
        &Memory::default(),
        &cx,
    )
    .expect("planned");
    (planned.status.into_owned(), planned.action)
}

#[test]
fn finding_7_a_stream_seen_while_a_phone_is_held_restarts_its_idle_clock() {
    // Outside the window (the window ended 20:00 CEST, 18:00Z): the phone waits for idleness
    // (idleTimeout 3h) since 20:05 CEST, due 23:05 CEST.
    let waiting = CloudPhoneStatus {
        effective_lifecycle: Some(Lifecycle::Loaded),
        effective_reason: Some(EffectiveReason::WaitingForIdle),
        idle_since: Some(Box::new(Time(utc("2026-07-01T18:05:00Z")))),
        instance_status: Some(2),
        phase: Phase::DataLoaded,
        ..Default::default()
    };
    // 21:00 CEST the schedule is suspended; a user streams from 21:30 until 23:10.
    let mut suspended = office(&ALL_DAYS, "30m");
    suspended.spec.suspend = true;
    let (held, action) = plan_scheduled(
        &suspended,
        "uid-late",
        waiting,
        3,
        utc("2026-07-01T19:30:00Z"),
    );
    assert_eq!(action, None);
    // 23:00 CEST it is unsuspended: the park is spread from then over 30 minutes; pick a phone
    // whose turn is after 23:10.
    let resumed = office(&ALL_DAYS, "30m");
    let unsuspended = utc("2026-07-01T21:00:00Z");
    let uid = (0..1000)
        .map(|i| format!("uid-{i}"))
        .find(|uid| {
            schedule::spread_at(unsuspended, std::time::Duration::from_secs(1800), uid)
                > utc("2026-07-01T21:20:00Z")
        })
        .unwrap();
    let resumed = with_wave(
        resumed,
        "2026-07-01T18:00:00Z",
        "2026-07-01T21:00:00Z",
        Lifecycle::BackedUp,
    );
    let (held, action) = plan_scheduled(&resumed, &uid, held, 3, utc("2026-07-01T21:05:00Z"));
    assert_eq!(action, None, "streaming");
    // 23:10 CEST the stream ends; at the phone's turn it is idle for minutes, not 3 hours.
    let turn = schedule::spread_at(unsuspended, std::time::Duration::from_secs(1800), &uid);
    let (_, action) = plan_scheduled(&resumed, &uid, held, 2, turn);
    assert_eq!(
        action, None,
        "backed up at {turn}, minutes after a stream, with idleTimeout 3h"
    );
}

#[test]
fn finding_9_load_until_wakes_a_phone_waiting_for_its_turn() {
    // Created at 12:00 CEST: the wake is spread from now over 25 minutes. The session service
    // sets load-until on a parked phone whose turn is 20 minutes away, for a user now.
    let now = utc("2026-07-01T10:00:00Z");
    let uid = (0..1000)
        .map(|i| format!("uid-{i}"))
        .find(|uid| {
            schedule::spread_at(now, std::time::Duration::from_secs(1500), uid)
                > utc("2026-07-01T10:20:00Z")
        })
        .unwrap();
    let phone = cloudphone("p", "kp1")
        .uid(&uid)
        .created(-100)
        .scheduled("office", "u1")
        .load_until("2026-07-01T12:00:00Z")
        .status(status(Lifecycle::BackedUp, EffectiveReason::OutsideWindow))
        .build();
    let tick = ScheduleTick::read(&office(&ALL_DAYS, "30m"), now, RESTORE_ESTIMATE, None);
    let view = PhoneView::of(&phone, Route::Scope(DEFAULT_SCOPE))
        .with_schedule(ScheduleLink::Found(&tick));
    let config = PlanConfig::default();
    let cx = Context {
        now,
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    let planned = plan_phone(
        &view,
        &Disposition::Query,
        Some(&Observation::Status(0)),
        &Memory::default(),
        &cx,
    )
    .expect("planned");
    assert_eq!(
        planned.action,
        Some(Action::Prepare),
        "kept as {:?}",
        planned.status.effective_reason
    );
}

#[test]
fn finding_10_a_new_phone_already_where_its_schedule_wants_it_is_kept_there_at_once() {
    // Created at 12:00 CEST mid-window, new (no status yet), its data already loaded: nothing to
    // call, no turn to wait for.
    let now = utc("2026-07-01T10:00:00Z");
    let tick = ScheduleTick::read(&office(&ALL_DAYS, "30m"), now, RESTORE_ESTIMATE, None);
    let new = CloudPhoneStatus::default();
    let waited = (0..1000)
        .filter(|i| {
            let uid = format!("uid-{i}");
            !matches!(
                scheduled(ScheduleLink::Found(&tick), "office", Some(&uid), &new, Phase::DataLoaded, now),
                Kept::At(e) if e.lifecycle == Lifecycle::Loaded
            )
        })
        .count();
    assert_eq!(
        waited, 0,
        "{waited} of 1000 loaded phones held for a turn they do not need"
    );
}

#[test]
fn finding_11_phones_joining_at_a_wake_edge_with_no_lead_are_still_spread() {
    // The window's wake edge is now (08:00 CEST, no lead): its own wave spreads nothing, but 1000
    // phones switched to Scheduled in this very commit are not moved at once.
    let now = utc("2026-07-01T06:00:10Z");
    let tick = ScheduleTick::read(&office(&ALL_DAYS, "0"), now, RESTORE_ESTIMATE, None);
    let declared = status(Lifecycle::BackedUp, EffectiveReason::Declared);
    let at_once = moved_now(&tick, &declared, Phase::Idle, Lifecycle::Loaded, now);
    assert!(
        at_once < 30,
        "{at_once} of 1000 joining phones prepared in one tick"
    );
}

#[test]
fn finding_12_a_wave_edge_rewrites_only_the_phones_whose_turn_it_is() {
    // A phone parked outside the window, planned a minute before the wake's edge (07:30 CEST,
    // 05:30Z) and again just after it, its turn later in the wave: nothing of its status changes,
    // so the edge costs no write of it (the bench saw every phone written at each edge).
    let schedule = office(&ALL_DAYS, "30m");
    let uid = (0..1000)
        .map(|i| format!("uid-{i}"))
        .find(|uid| {
            schedule::spread_at(
                utc("2026-07-01T05:30:00Z"),
                std::time::Duration::from_secs(1500),
                uid,
            ) > utc("2026-07-01T05:40:00Z")
        })
        .unwrap();
    let parked = CloudPhoneStatus {
        instance_status: Some(0),
        phase: Phase::Idle,
        ..status(Lifecycle::BackedUp, EffectiveReason::OutsideWindow)
    };
    let (before, action) = plan_scheduled(&schedule, &uid, parked, 0, utc("2026-07-01T05:29:00Z"));
    assert_eq!(action, None);
    let (after, action) = plan_scheduled(
        &schedule,
        &uid,
        before.clone(),
        0,
        utc("2026-07-01T05:30:05Z"),
    );
    assert_eq!(action, None);
    assert_eq!(
        after, before,
        "the edge changed the status of a phone whose turn is later"
    );
}

#[test]
fn finding_13_a_dry_run_of_a_schedule_that_cannot_be_followed_says_why() {
    // A dry run whose zone is unknown: the phone says ScheduleInvalid, not DryRun.
    let mut invalid = office(&ALL_DAYS, "30m");
    invalid.spec.time_zone = "Mars/Olympus".into();
    invalid.spec.dry_run = true;
    let (status, action) = plan_scheduled(
        &invalid,
        "uid-1",
        status(Lifecycle::BackedUp, EffectiveReason::OutsideWindow),
        0,
        utc("2026-07-01T10:00:00Z"),
    );
    assert_eq!(action, None);
    let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert_eq!(ready.reason, SCHEDULE_INVALID);
}
