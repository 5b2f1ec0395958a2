//! The Argo CD health check (docs/argocd-health.lua), run in Lua against statuses that the
//! operator's own planner produces, and kept identical to the copy in docs/argocd.md.

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, Lifecycle};
use cloudphone_operator::plan::{
    Action, ActionResult, Context, DEFAULT_SCOPE, Disposition, EarlierTerms, Memory, Observation,
    PhoneKey, PhoneView, PlanConfig, Route, plan_phone,
};
use jiff::Timestamp;
use mlua::{Lua, LuaSerdeExt};

const SCRIPT: &str = include_str!("../../docs/argocd-health.lua");
const ACCOUNT_SCRIPT: &str = include_str!("../../docs/argocd-health-account.lua");

fn phone(lifecycle: Lifecycle) -> CloudPhone {
    support::cloudphone("p1", "kp1")
        .namespace("fleet-a")
        .lifecycle(lifecycle)
        .build()
}

/// The status the planner gives `phone` for this disposition and observation.
fn planned(
    phone: &CloudPhone,
    disposition: Disposition,
    observation: Option<Observation>,
) -> CloudPhoneStatus {
    let config = PlanConfig::default();
    let cx = Context {
        now: Timestamp::from_second(1_790_000_000).unwrap(),
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    plan_phone(
        &PhoneView::of(phone, Route::Scope(DEFAULT_SCOPE)),
        &disposition,
        observation.as_ref(),
        &Memory::default(),
        &cx,
    )
    .expect("planned")
    .status
    .into_owned()
}

fn health(phone: &CloudPhone) -> (String, String) {
    run(SCRIPT, serde_json::to_value(phone).unwrap())
}

/// Runs a health script on `obj`: (status, message).
fn run(script: &str, obj: serde_json::Value) -> (String, String) {
    let lua = Lua::new();
    let obj = lua.to_value(&obj).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let hs: mlua::Table = lua.load(script).eval().unwrap();
    (
        hs.get("status").unwrap(),
        hs.get::<Option<String>>("message")
            .unwrap()
            .unwrap_or_default(),
    )
}

fn with_status(mut phone: CloudPhone, status: CloudPhoneStatus) -> CloudPhone {
    phone.status = Some(status);
    phone
}

#[test]
fn health_follows_the_operators_status() {
    let backed_up = phone(Lifecycle::BackedUp);
    let observe = |code| Some(Observation::Status(code));
    let cases: Vec<(&str, CloudPhone, &str)> = vec![
        ("no status yet", backed_up.clone(), "Progressing"),
        (
            "idle",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(0)),
            ),
            "Healthy",
        ),
        (
            "observed",
            with_status(
                phone(Lifecycle::Observed),
                planned(&phone(Lifecycle::Observed), Disposition::Query, observe(3)),
            ),
            "Healthy",
        ),
        (
            "backup requested",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(2)),
            ),
            "Progressing",
        ),
        (
            "backing up",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(4)),
            ),
            "Progressing",
        ),
        (
            "restoring",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(1)),
            ),
            "Progressing",
        ),
        (
            "streaming, waiting",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(3)),
            ),
            "Progressing",
        ),
        (
            "backup failed",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(5)),
            ),
            "Degraded",
        ),
        (
            "restore failed",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(6)),
            ),
            "Degraded",
        ),
        (
            "unknown code",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(42)),
            ),
            "Degraded",
        ),
        (
            "not found",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, Some(Observation::Missing)),
            ),
            "Degraded",
        ),
        (
            "duplicate",
            with_status(
                backed_up.clone(),
                planned(
                    &backed_up,
                    Disposition::Duplicate {
                        owner: PhoneKey {
                            namespace: "fleet-a".into(),
                            name: "p0".into(),
                        },
                    },
                    None,
                ),
            ),
            "Degraded",
        ),
        (
            "invalid spec",
            with_status(
                backed_up.clone(),
                planned(
                    &backed_up,
                    Disposition::InvalidSpec {
                        message: "spec.instanceId is bad".into(),
                    },
                    None,
                ),
            ),
            "Degraded",
        ),
    ];
    for (name, phone, want) in cases {
        let (status, message) = health(&phone);
        assert_eq!(status, want, "{name}: {message}");
    }
}

#[test]
fn every_stalled_phone_is_degraded_and_a_reconciling_one_is_not_healthy() {
    use cloudphone_operator::plan::{AccountBlock, STALLED_REASONS};
    let p = phone(Lifecycle::BackedUp);
    for reason in STALLED_REASONS {
        let status = planned(
            &p,
            Disposition::AccountBlocked(AccountBlock {
                reason,
                message: "a person must act".into(),
            }),
            None,
        );
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True"),
            "{reason}"
        );
        assert_eq!(
            health(&with_status(p.clone(), status)).0,
            "Degraded",
            "{reason}"
        );
    }
    let requested = planned(&p, Disposition::Query, Some(Observation::Status(2)));
    assert!(
        requested
            .conditions
            .iter()
            .any(|c| c.type_ == "Reconciling")
    );
    assert_eq!(health(&with_status(p, requested)).0, "Progressing");
}

#[test]
fn a_phone_whose_account_cannot_serve_it_is_degraded() {
    use cloudphone_operator::plan::{
        ACCOUNT_NOT_ALLOWED, ACCOUNT_NOT_FOUND, ACCOUNT_NOT_READY, AccountBlock,
    };
    let p = phone(Lifecycle::BackedUp);
    for reason in [ACCOUNT_NOT_FOUND, ACCOUNT_NOT_ALLOWED, ACCOUNT_NOT_READY] {
        let status = planned(
            &p,
            Disposition::AccountBlocked(AccountBlock {
                reason,
                message: "no vendor call".into(),
            }),
            None,
        );
        let (health, message) = health(&with_status(p.clone(), status));
        assert_eq!(health, "Degraded", "{reason}");
        assert!(message.starts_with(reason), "{message}");
    }
}

#[test]
fn an_accounts_health_follows_the_status_the_operator_writes() {
    use cloudphone_operator::plan::{AccountTick, account_status};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let now = Time(Timestamp::from_second(1_790_000_000).unwrap());
    let account = |status: Option<serde_json::Value>, generation: i64| {
        let mut object = serde_json::json!({
            "apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneAccount",
            "metadata": {"name": "team-a", "generation": generation},
            "spec": {"credentialsSecretRef": {"name": "s"}},
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        object
    };
    let tick = |problem: Option<&str>| AccountTick {
        name: "team-a".into(),
        generation: Some(1),
        phones: 12,
        credentials: Some(1),
        problem: problem.map(|reason| cloudphone_operator::plan::Failure {
            reason: reason.into(),
            message: "the vendor refused the credentials".into(),
        }),
    };
    let written =
        |problem| serde_json::to_value(account_status(&tick(problem), None, &now)).unwrap();
    assert_eq!(run(ACCOUNT_SCRIPT, account(None, 1)).0, "Progressing");
    assert_eq!(
        run(ACCOUNT_SCRIPT, account(Some(written(None)), 1)),
        ("Healthy".into(), "12 phones".into())
    );
    let (health, message) = run(
        ACCOUNT_SCRIPT,
        account(Some(written(Some("CredentialsRejected"))), 1),
    );
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("CredentialsRejected"), "{message}");
    assert_eq!(
        run(ACCOUNT_SCRIPT, account(Some(written(None)), 2)).0,
        "Progressing",
        "a spec the operator has not observed yet"
    );
}

#[test]
fn a_suspended_phone_is_suspended_whatever_its_status() {
    let mut p = phone(Lifecycle::BackedUp);
    let status = planned(&p, Disposition::Query, Some(Observation::Status(0)));
    p.spec.suspend = true;
    assert_eq!(health(&with_status(p, status)).0, "Suspended");
}

#[test]
fn a_spec_change_not_yet_observed_is_progressing() {
    let mut p = phone(Lifecycle::BackedUp);
    let status = planned(&p, Disposition::Query, Some(Observation::Status(0)));
    p.metadata.generation = Some(2);
    let (health, message) = health(&with_status(p, status));
    assert_eq!(health, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
}

#[test]
fn a_backup_call_that_failed_is_progressing_not_degraded() {
    let p = phone(Lifecycle::BackedUp);
    let intent = planned(&p, Disposition::Query, Some(Observation::Status(2)));
    let failed = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Failed {
            failure: cloudphone_operator::plan::Failure {
                reason: "Timeout".into(),
                message: "timed out".into(),
            },
            ambiguous: true,
        },
        Timestamp::from_second(1_790_000_000).unwrap(),
        &PlanConfig::default(),
    );
    assert_eq!(health(&with_status(p, failed)).0, "Progressing");
}

#[test]
fn the_docs_carry_the_same_script() {
    let docs = include_str!("../../docs/argocd.md");
    for (script, file) in [
        (SCRIPT, "docs/argocd-health.lua"),
        (ACCOUNT_SCRIPT, "docs/argocd-health-account.lua"),
        (SCHEDULE_SCRIPT, "docs/argocd-health-schedule.lua"),
    ] {
        let indented: String = script
            .lines()
            .map(|l| {
                if l.trim().is_empty() {
                    "\n".to_owned()
                } else {
                    format!("    {l}\n")
                }
            })
            .collect();
        assert!(
            docs.contains(&indented),
            "docs/argocd.md's argocd-cm snippet differs from {file}"
        );
    }
}

#[test]
fn a_loaded_phones_health_follows_its_prepare() {
    let loaded = support::cloudphone("p1", "kp1")
        .namespace("fleet-a")
        .loaded("u1")
        .build();
    let observe = |code| Some(Observation::Status(code));
    let health_at = |code: i64| {
        health(&with_status(
            loaded.clone(),
            planned(&loaded, Disposition::Query, observe(code)),
        ))
        .0
    };
    assert_eq!(health_at(0), "Progressing", "prepare requested");
    assert_eq!(health_at(1), "Progressing", "restoring");
    assert_eq!(health_at(2), "Healthy", "loaded");
    assert_eq!(health_at(3), "Healthy", "a user streaming");
    // A restoration exception after a first attempt: the retry waits its backoff, PrepareFailed.
    let requested = planned(&loaded, Disposition::Query, observe(0));
    let restoring = planned(
        &with_status(loaded.clone(), requested),
        Disposition::Query,
        observe(1),
    );
    let failed = planned(
        &with_status(loaded.clone(), restoring),
        Disposition::Query,
        observe(6),
    );
    let ready = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .reason
        .clone();
    assert_eq!(ready, "PrepareFailed");
    assert_eq!(health(&with_status(loaded.clone(), failed)).0, "Degraded");
}

#[test]
fn a_phone_waiting_for_idleness_is_healthy_and_one_kept_loaded_too() {
    let waiting = support::cloudphone("p1", "kp1")
        .backed_up()
        .idle_timeout("30m")
        .build();
    for code in [2, 3] {
        let status = planned(
            &waiting,
            Disposition::Query,
            Some(Observation::Status(code)),
        );
        let (health, message) = health(&with_status(waiting.clone(), status));
        assert_eq!(health, "Healthy", "status {code}: {message}");
        assert!(message.contains("idleTimeout"), "{message}");
    }
}

const SCHEDULE_SCRIPT: &str = include_str!("../../docs/argocd-health-schedule.lua");

fn utc(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Every day 08:00-20:00 UTC, woken 30 minutes ahead, in fleet-a; its wave anchored at `edge` (as
/// the status the operator wrote at that edge says), when given.
fn office(edge: Option<&str>) -> cloudphone_operator::api::CloudPhoneSchedule {
    use cloudphone_operator::api::{
        CloudPhoneSchedule, CloudPhoneScheduleSpec, CloudPhoneScheduleStatus, ScheduleWindow,
        WaveAnchor, Weekday,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let mut s = CloudPhoneSchedule::new(
        "office",
        CloudPhoneScheduleSpec {
            time_zone: "UTC".into(),
            windows: vec![ScheduleWindow {
                days: vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ],
                start: "08:00".into(),
                end: "20:00".into(),
            }],
            exceptions: vec![],
            prewarm_lead: Some("30m".into()),
            suspend: false,
            dry_run: false,
        },
    );
    s.metadata.namespace = Some("fleet-a".into());
    s.metadata.generation = Some(1);
    s.status = edge.map(|edge| CloudPhoneScheduleStatus {
        observed_generation: Some(1),
        wave: Some(WaveAnchor {
            edge: Time(utc(edge)),
            from: Time(utc(edge)),
            lifecycle: cloudphone_operator::api::Lifecycle::Loaded,
        }),
        ..Default::default()
    });
    s
}

/// The status the planner gives the Scheduled `phone` at `now`, its schedule as `link` says.
fn planned_scheduled(
    phone: &CloudPhone,
    link: cloudphone_operator::plan::ScheduleLink<'_>,
    code: i64,
    now: Timestamp,
) -> CloudPhoneStatus {
    let config = PlanConfig::default();
    let cx = Context {
        now,
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    plan_phone(
        &PhoneView::of(phone, Route::Scope(DEFAULT_SCOPE)).with_schedule(link),
        &Disposition::Query,
        Some(&Observation::Status(code)),
        &Memory::default(),
        &cx,
    )
    .expect("planned")
    .status
    .into_owned()
}

fn ready_of(status: &CloudPhoneStatus) -> (String, String) {
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    (ready.status.clone(), ready.reason.clone())
}

#[test]
fn a_scheduled_phone_held_until_a_person_acts_is_degraded() {
    use cloudphone_operator::plan::{
        RESTORE_ESTIMATE, SCHEDULE_INVALID, SCHEDULE_NOT_FOUND, ScheduleLink, ScheduleTick,
    };
    let p = support::cloudphone("p1", "kp1")
        .namespace("fleet-a")
        .scheduled("office", "u1")
        .build();
    let now = utc("2026-07-01T10:00:00Z");
    let mut invalid = office(None);
    invalid.spec.time_zone = "Europe/Atlantis".into();
    let invalid = ScheduleTick::read(&invalid, now, RESTORE_ESTIMATE, None);
    for (name, link, reason) in [
        ("missing", ScheduleLink::Missing, SCHEDULE_NOT_FOUND),
        (
            "watch not synced",
            ScheduleLink::NotSynced,
            SCHEDULE_NOT_FOUND,
        ),
        ("not valid", ScheduleLink::Found(&invalid), SCHEDULE_INVALID),
    ] {
        let status = planned_scheduled(&p, link, 0, now);
        assert_eq!(ready_of(&status), ("False".into(), reason.into()), "{name}");
        let (health, message) = health(&with_status(p.clone(), status));
        assert_eq!(health, "Degraded", "{name}: {message}");
        assert!(message.starts_with(reason), "{name}: {message}");
    }
}

#[test]
fn a_scheduled_phone_follows_its_schedule_suspended_dry_run_waiting_and_woken() {
    use cloudphone_operator::api::{EffectiveReason, Lifecycle};
    use cloudphone_operator::plan::{
        DRY_RUN, RESTORE_ESTIMATE, SCHEDULE_SUSPENDED, ScheduleLink, ScheduleTick,
    };
    let p = support::cloudphone("p1", "kp1")
        .namespace("fleet-a")
        .scheduled("office", "u1")
        .build();
    let mid_window = utc("2026-07-01T10:00:00Z");

    // Its schedule suspended: held as it is, Ready=True; Suspended, as the schedule shows.
    let mut suspended = office(None);
    suspended.spec.suspend = true;
    let suspended = ScheduleTick::read(&suspended, mid_window, RESTORE_ESTIMATE, None);
    let status = planned_scheduled(&p, ScheduleLink::Found(&suspended), 0, mid_window);
    assert_eq!(
        ready_of(&status),
        ("True".into(), SCHEDULE_SUSPENDED.into())
    );
    let (shown, message) = health(&with_status(p.clone(), status));
    assert_eq!(shown, "Suspended", "{message}");
    assert!(message.contains("suspended"), "{message}");

    // A dry run: the schedule would wake it, nothing is called; Healthy.
    let mut dry = office(Some("2026-07-01T07:30:00Z"));
    dry.spec.dry_run = true;
    let dry = ScheduleTick::read(&dry, mid_window, RESTORE_ESTIMATE, None);
    let status = planned_scheduled(&p, ScheduleLink::Found(&dry), 0, mid_window);
    assert_eq!(ready_of(&status), ("True".into(), DRY_RUN.into()));
    assert_eq!(health(&with_status(p.clone(), status)).0, "Healthy");

    // Parked outside its window (the wave of the window's end long over): Healthy.
    let night = utc("2026-07-01T06:00:00Z");
    let parked_wave = office(Some("2026-06-30T20:00:00Z"));
    let parked_tick = ScheduleTick::read(&parked_wave, night, RESTORE_ESTIMATE, None);
    let parked = planned_scheduled(&p, ScheduleLink::Found(&parked_tick), 0, night);
    assert_eq!(parked.effective_lifecycle, Some(Lifecycle::BackedUp));
    assert_eq!(
        parked.effective_reason,
        Some(EffectiveReason::OutsideWindow)
    );
    assert_eq!(health(&with_status(p.clone(), parked.clone())).0, "Healthy");

    // At the wave's edge, before its turn: held, its Ready condition as it was (Healthy); a phone
    // the operator never planned has none yet (Pending): Progressing.
    let edge = utc("2026-07-01T07:30:00Z");
    let wave = ScheduleTick::read(&office(None), edge, RESTORE_ESTIMATE, None);
    let before = with_status(p.clone(), parked.clone());
    let waiting = planned_scheduled(&before, ScheduleLink::Found(&wave), 0, edge);
    assert_eq!(
        waiting.effective_lifecycle,
        Some(Lifecycle::BackedUp),
        "p1's turn is after the edge"
    );
    assert_eq!(
        waiting.next_transition.as_ref().map(|t| t.lifecycle),
        Some(Lifecycle::Loaded)
    );
    assert_eq!(ready_of(&waiting), ready_of(&parked));
    assert_eq!(health(&with_status(p.clone(), waiting)).0, "Healthy");
    let first = planned_scheduled(&p, ScheduleLink::Found(&wave), 0, edge);
    assert_eq!(ready_of(&first), ("Unknown".into(), "Pending".into()));
    assert_eq!(health(&with_status(p.clone(), first)).0, "Progressing");

    // Its turn come (the wave's spread is over): woken, Progressing; its data loaded, Healthy.
    let late = utc("2026-07-01T07:58:00Z");
    let wave = ScheduleTick::read(
        &office(Some("2026-07-01T07:30:00Z")),
        late,
        RESTORE_ESTIMATE,
        None,
    );
    let woken = planned_scheduled(&before, ScheduleLink::Found(&wave), 0, late);
    assert_eq!(woken.effective_lifecycle, Some(Lifecycle::Loaded));
    assert_eq!(
        health(&with_status(p.clone(), woken.clone())).0,
        "Progressing"
    );
    let loaded = planned_scheduled(
        &with_status(p.clone(), woken),
        ScheduleLink::Found(&wave),
        2,
        late,
    );
    assert_eq!(health(&with_status(p, loaded)).0, "Healthy");
}

#[test]
fn a_schedules_health_follows_the_status_the_operator_writes() {
    use cloudphone_operator::plan::{
        RESTORE_ESTIMATE, SchedulePhones, ScheduleTick, schedule_status,
    };
    let object = |s: &cloudphone_operator::api::CloudPhoneSchedule| {
        run(SCHEDULE_SCRIPT, serde_json::to_value(s).unwrap())
    };
    // The status the operator writes for `s` at `now`, its phones `phones`.
    let written = |mut s: cloudphone_operator::api::CloudPhoneSchedule,
                   now: &str,
                   phones: &SchedulePhones| {
        let now = utc(now);
        let tick = ScheduleTick::read(&s, now, RESTORE_ESTIMATE, None);
        s.status = Some(
            schedule_status(&tick, s.metadata.generation, s.status.as_ref(), phones, now)
                .expect("a first status"),
        );
        s
    };
    let counted = SchedulePhones {
        counts: cloudphone_operator::api::ScheduleCounts {
            loaded: 7,
            parked: 0,
            preparing: 2,
            failed: 1,
        },
        wake_calls: 1,
        pace: Some(cloudphone_operator::plan::Pace {
            calls: 10.0 / 0.75,
            actions: 10.0,
        }),
        ..Default::default()
    };

    assert_eq!(object(&office(None)).0, "Progressing", "no status yet");

    let open = written(office(None), "2026-07-01T07:31:00Z", &counted);
    let (health, message) = object(&open);
    assert_eq!(health, "Healthy", "{message}");
    assert!(
        message.starts_with("Window 08:00-20:00: 7 loaded, 0 parked, 2 preparing, 1 failed"),
        "{message}"
    );
    assert!(
        message.contains("next: BackedUp at 2026-07-01T20:00:00Z"),
        "{message}"
    );

    let mut edited = open.clone();
    edited.metadata.generation = Some(2);
    let (health, message) = object(&edited);
    assert_eq!(health, "Progressing");
    assert!(message.contains("generation 2"), "{message}");

    let mut bad = office(None);
    bad.spec.time_zone = "Mars/Olympus".into();
    let (health, message) = object(&written(bad, "2026-07-01T10:00:00Z", &counted));
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("InvalidSpec: "), "{message}");
    assert!(message.contains("Mars/Olympus"), "{message}");

    let mut paused = office(None);
    paused.spec.suspend = true;
    let paused = written(paused, "2026-07-01T10:00:00Z", &counted);
    assert_eq!(object(&paused).0, "Suspended");
    // Suspended in Git but not yet seen by the operator: its phones still follow the windows.
    let mut unseen = open.clone();
    unseen.spec.suspend = true;
    unseen.metadata.generation = Some(2);
    assert_eq!(object(&unseen).0, "Progressing");

    // Before the wake: ten thousand calls at one a second cannot be ready by 08:00.
    let slow = SchedulePhones {
        wake_calls: 10_000,
        pace: Some(cloudphone_operator::plan::Pace {
            calls: 1.0 / 0.75,
            actions: 1.0,
        }),
        ..counted.clone()
    };
    let at_risk = written(office(None), "2026-07-01T07:00:00Z", &slow);
    let (health, message) = object(&at_risk);
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("PaceTooSlow: "), "{message}");
    let on_time = written(office(None), "2026-07-01T07:00:00Z", &counted);
    let (health, message) = object(&on_time);
    assert_eq!(health, "Healthy", "{message}");
    assert!(message.starts_with("Outside: "), "{message}");
}
