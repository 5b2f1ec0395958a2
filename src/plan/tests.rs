use super::*;
use crate::api::{CloudPhone, CloudPhoneStatus, EffectiveReason, Lifecycle, Phase};
use crate::test_phone::cloudphone;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use proptest::prelude::*;
use std::time::Duration;

const T0: i64 = 1_790_000_000; // 2026-09-21, a whole second

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(T0 + second).unwrap()
}

fn config() -> PlanConfig {
    PlanConfig {
        grace_period: Duration::from_secs(60),
        backoff_base: Duration::from_secs(30),
        backoff_max: Duration::from_secs(600),
        prepare_grace_period: Duration::from_secs(180),
        max_load_until: Duration::from_secs(7 * 86_400),
        restore_estimate: Duration::from_secs(300),
    }
}

/// What the planner's tests do with a test phone (built with [`cloudphone`]).
trait Planning: Sized {
    /// The planner's view of it, its calls going by the operator's own account.
    fn view(&self) -> PhoneView<'_>;
    /// Plans this phone alone.
    fn plan(&self, observation: Option<Observation>, now: Timestamp) -> Plan;
    fn with_status(self, status: CloudPhoneStatus) -> Self;
    fn key(&self) -> PhoneKey;
}

impl Planning for CloudPhone {
    fn view(&self) -> PhoneView<'_> {
        PhoneView::of(self, Route::Scope(DEFAULT_SCOPE))
    }
    fn plan(&self, observation: Option<Observation>, now: Timestamp) -> Plan {
        let p = plan_one(&self.view(), &Disposition::Query, observation.as_ref(), now);
        Plan {
            status: p.status.into_owned(),
            backup: p.action == Some(Action::Backup),
            action: p.action,
        }
    }
    fn with_status(mut self, status: CloudPhoneStatus) -> Self {
        self.status = Some(status);
        self
    }
    fn key(&self) -> PhoneKey {
        PhoneKey::of(self)
    }
}

/// Plans one phone as production does, with nothing remembered of it and no earlier term.
fn plan_one<'a>(
    view: &PhoneView<'a>,
    disposition: &Disposition,
    observation: Option<&Observation>,
    now: Timestamp,
) -> Planned<'a> {
    let config = config();
    let cx = Context {
        now,
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    plan_phone(view, disposition, observation, &Memory::default(), &cx)
        .expect("a phone with nothing remembered and a known account is planned")
}

/// Plans every phone of a tick as production does: the owners' instances observed, nothing
/// remembered.
fn plan<'a>(
    views: &[PhoneView<'a>],
    dispositions: &[Disposition],
    observe: impl Fn(&str) -> Option<Observation>,
    now: Timestamp,
) -> Vec<Planned<'a>> {
    views
        .iter()
        .zip(dispositions)
        .map(|(view, disposition)| {
            let observation = match disposition {
                Disposition::Query => observe(&view.spec.instance_id),
                _ => None,
            };
            plan_one(view, disposition, observation.as_ref(), now)
        })
        .collect()
}

/// A [`Planned`] that owns its status, to outlive the test phone it was planned from.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    status: CloudPhoneStatus,
    backup: bool,
    action: Option<Action>,
}

fn condition<'a>(status: &'a CloudPhoneStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

fn ready(status: &CloudPhoneStatus) -> (&str, &str) {
    let c = condition(status, READY);
    (c.status.as_str(), c.reason.as_str())
}

fn failure() -> Observation {
    Observation::Failed(Failure {
        reason: "Timeout".into(),
        message: "status query timed out".into(),
    })
}

#[test]
fn every_lifecycle_and_phase_pair_has_its_ready_condition_and_action() {
    use Observation::*;
    // (lifecycle BackedUp?, interruptStreaming, observation, Ready status, Ready reason, backup?)
    let table: Vec<(bool, bool, Observation, &str, &str, bool)> = vec![
        (false, false, Status(0), "True", "Observed", false),
        (false, false, Status(1), "True", "Observed", false),
        (false, false, Status(2), "True", "Observed", false),
        (false, false, Status(3), "True", "Observed", false),
        (false, true, Status(3), "True", "Observed", false),
        (false, false, Status(4), "True", "Observed", false),
        (false, false, Status(5), "True", "Observed", false),
        (false, false, Status(6), "True", "Observed", false),
        (false, false, Status(7), "True", "Observed", false),
        (false, false, Status(99), "True", "Observed", false),
        (false, false, Missing, "False", "InstanceNotFound", false),
        (false, false, failure(), "Unknown", "Pending", false),
        (true, false, Status(0), "True", "BackedUp", false),
        (true, false, Status(1), "False", "Restoring", false),
        (true, false, Status(2), "False", "BackupRequested", true),
        (true, false, Status(7), "False", "BackupRequested", true),
        (true, false, Status(3), "False", "Streaming", false),
        (true, true, Status(3), "False", "BackupRequested", true),
        (true, false, Status(4), "False", "BackingUp", false),
        (true, false, Status(5), "False", "BackupRequested", true),
        (true, false, Status(6), "False", "RestoreFailed", false),
        (true, false, Status(99), "False", "UnknownStatus", false),
        (true, false, Status(-1), "False", "UnknownStatus", false),
        (true, false, Missing, "False", "InstanceNotFound", false),
        (true, false, failure(), "Unknown", "Pending", false),
    ];
    for (backed_up, interrupt, observation, ready_status, reason, backup) in table {
        let mut phone = cloudphone("p", "kp1").observed();
        if backed_up {
            phone = phone.backed_up();
        }
        if interrupt {
            phone = phone.interrupt_streaming();
        }
        let phone = phone.build();
        let planned = phone.plan(Some(observation.clone()), at(0));
        let case = format!(
            "{:?} interrupt={interrupt} {observation:?}",
            phone.spec.lifecycle
        );
        assert_eq!(ready(&planned.status), (ready_status, reason), "{case}");
        assert_eq!(planned.backup, backup, "{case}");
        assert_eq!(planned.status.observed_generation, Some(1), "{case}");
        match &observation {
            Status(code) => {
                assert_eq!(planned.status.instance_status, Some(*code), "{case}");
                assert_eq!(planned.status.phase, Phase::from_code(*code), "{case}");
                assert_eq!(condition(&planned.status, SYNCED).status, "True", "{case}");
            }
            Missing => assert_eq!(planned.status.phase, Phase::NotFound, "{case}"),
            Failed(_) => {
                let synced = condition(&planned.status, SYNCED);
                assert_eq!(
                    (synced.status.as_str(), synced.reason.as_str()),
                    ("False", "Timeout")
                );
                assert_eq!(planned.status.phase, Phase::Pending, "{case}");
            }
        }
    }
}

#[test]
fn a_streaming_phone_says_what_would_unblock_it() {
    let planned = cloudphone("p", "kp1")
        .backed_up()
        .build()
        .plan(Some(Observation::Status(3)), at(0));
    assert!(
        condition(&planned.status, READY)
            .message
            .contains("spec.interruptStreaming: true")
    );
}

#[test]
fn a_backup_is_recorded_in_the_status_written_ahead_of_the_call() {
    let planned = cloudphone("p", "kp1")
        .backed_up()
        .build()
        .plan(Some(Observation::Status(2)), at(5));
    let backup = planned.status.backup.unwrap();
    assert_eq!(backup.requested_at, Some(Time(at(5))));
    assert_eq!(backup.attempts, 1);
    assert!(backup.in_flight);
}

#[test]
fn no_second_request_until_the_vendor_shows_backing_up_or_the_grace_period_passes() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let first = phone.plan(Some(Observation::Status(2)), at(0));
    assert!(first.backup);
    let phone = phone.with_status(first.status);
    for second in [1, 30, 59] {
        let again = phone.plan(Some(Observation::Status(2)), at(second));
        assert!(!again.backup, "asked again {second}s after the first call");
        assert_eq!(ready(&again.status), ("False", "BackupRequested"));
    }
    // Past the grace period the vendor still shows no start: asked again after the backoff of
    // one attempt (30s), not at once and not every grace period forever.
    for second in [60, 89] {
        let not_started = phone.plan(Some(Observation::Status(2)), at(second));
        assert!(
            !not_started.backup,
            "asked again {second}s after the first call"
        );
        assert_eq!(ready(&not_started.status), ("False", "BackupNotStarted"));
    }
    let after_backoff = phone.plan(Some(Observation::Status(2)), at(90));
    assert!(
        after_backoff.backup,
        "a lost call is asked again after the grace period and the backoff"
    );
    let status = after_backoff.status;
    assert_eq!(status.backup.as_ref().unwrap().attempts, 2);
    // The second attempt lost too: the next waits 60s + 60s.
    let phone = phone.with_status(status);
    assert!(
        !phone
            .plan(Some(Observation::Status(2)), at(90 + 119))
            .backup
    );
    assert!(
        phone
            .plan(Some(Observation::Status(2)), at(90 + 120))
            .backup
    );
}

#[test]
fn an_intent_is_stamped_with_the_time_its_call_leaves() {
    let mut status = cloudphone("p", "kp1")
        .backed_up()
        .build()
        .plan(Some(Observation::Status(2)), at(0))
        .status;
    let leaves = at(74).checked_add(Duration::from_millis(1)).unwrap();
    Action::Backup.stamp_intent(
        &mut status,
        Some(1),
        CallStamp {
            at: leaves,
            request_id: "r-9",
            scope: DEFAULT_SCOPE,
            key: None,
        },
        &config(),
    );
    assert_eq!(
        status.backup.as_ref().unwrap().requested_at,
        Some(Time(at(75))),
        "rounded up, so that the grace period never ends early"
    );
    let message = &condition(&status, READY).message;
    assert!(message.contains(&at(75).to_string()), "{message}");
    assert_eq!(
        status.backup.as_ref().unwrap().request_id.as_deref(),
        Some("r-9"),
        "the intent records the request id its call will carry"
    );
}

#[test]
fn a_call_that_left_late_restarts_the_grace_period_from_when_it_left() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let intent = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let late = at(40).checked_add(Duration::from_millis(300)).unwrap();
    let accepted = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Accepted {
            request_id: "r1".into(),
            task_id: None,
            job_id: None,
            sent_at: late,
            vendor_status: None,
        },
        at(41),
        &config(),
    );
    // To the second: the grace period counts from the second the call left in.
    assert_eq!(
        accepted.backup.as_ref().unwrap().requested_at,
        Some(Time(at(40)))
    );
    let phone = phone.with_status(accepted);
    let waiting = phone.plan(Some(Observation::Status(2)), at(99));
    assert!(!waiting.backup, "the grace period counts from the call");
    assert_eq!(ready(&waiting.status), ("False", "BackupRequested"));
}

#[test]
fn a_permanent_refusal_holds_until_the_spec_changes() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let intent = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let failure = Failure {
        reason: "NoPermission".into(),
        message: "backup call answered KOOPHONE.API.1001: no permission".into(),
    };
    let refused = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Refused { failure },
        at(1),
        &config(),
    );
    assert_eq!(ready(&refused), ("False", "BackupRefused"));
    assert!(is_settled(&refused));
    let phone = phone.with_status(refused);
    for second in [2, 3600, 86_400] {
        let later = phone.plan(Some(Observation::Status(2)), at(second));
        assert!(!later.backup, "asked again {second}s after a refusal");
        assert_eq!(ready(&later.status), ("False", "BackupRefused"));
    }
    let mut changed = phone.clone();
    changed.metadata.generation = Some(2);
    assert!(changed.plan(Some(Observation::Status(2)), at(5)).backup);
}

fn no_permission() -> ActionResult {
    ActionResult::NotPermitted {
        failure: Failure {
            reason: "NoPermission".into(),
            message: "backup call answered KOOPHONE.API.1001: no permission".into(),
        },
    }
}

/// The phone's plan at `now` (the vendor showing DataLoaded), and, when it backs up, its intent
/// stamped as the call leaves then and the call's `result` recorded.
fn call(phone: &CloudPhone, now: i64, result: &ActionResult) -> Option<CloudPhoneStatus> {
    let plan = phone.plan(Some(Observation::Status(2)), at(now));
    if !plan.backup {
        return None;
    }
    let mut intent = plan.status;
    Action::Backup.stamp_intent(
        &mut intent,
        phone.metadata.generation,
        CallStamp {
            at: at(now),
            request_id: "req",
            scope: DEFAULT_SCOPE,
            key: None,
        },
        &config(),
    );
    Some(Action::Backup.record_result(
        &intent,
        phone.metadata.generation,
        result,
        at(now),
        &config(),
    ))
}

#[test]
fn a_first_no_permission_is_retried_once_after_the_grace_period_and_a_second_is_a_refusal() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let first = call(&phone, 0, &no_permission()).expect("the first call");
    assert_eq!(ready(&first), ("False", BACKUP_PERMISSION_PENDING));
    let message = &condition(&first, READY).message;
    assert!(
        message.contains("1001") && message.contains("retried once"),
        "{message}"
    );
    assert!(
        !is_settled(&first),
        "a wait that ends by itself: Reconciling"
    );
    let phone = phone.with_status(first.clone());
    for second in [1, 30, 59] {
        let held = phone.plan(Some(Observation::Status(2)), at(second));
        assert!(!held.backup, "retried {second}s after the first 1001");
        assert_eq!(held.status, first, "the hold writes nothing");
    }
    // After the grace period (60s), once: a second 1001 in a row is a refusal, held for good.
    let second = call(&phone, 61, &no_permission()).expect("the retry");
    assert_eq!(ready(&second), ("False", BACKUP_REFUSED));
    let refused = phone.clone().with_status(second);
    for later in [62, 3600, 86_400] {
        assert!(call(&refused, later, &no_permission()).is_none());
    }
    // A retry the vendor accepts goes on as any backup.
    let accepted = ActionResult::Accepted {
        request_id: "req".into(),
        task_id: None,
        job_id: None,
        sent_at: at(61),
        vendor_status: None,
    };
    let backing_up = call(&phone, 61, &accepted).expect("the retry");
    assert_eq!(ready(&backing_up), ("False", "BackupRequested"));
    // And a first 1001 after that, in a later backup, is a first again.
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .build()
        .with_status(backing_up);
    let later = call(&phone, 400, &no_permission()).expect("a later backup");
    assert_eq!(ready(&later), ("False", BACKUP_PERMISSION_PENDING));
}

#[test]
fn the_vendor_showing_backing_up_ends_the_wait() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let requested = phone.plan(Some(Observation::Status(2)), at(0));
    let backing_up = phone
        .clone()
        .with_status(requested.status)
        .plan(Some(Observation::Status(4)), at(10));
    assert!(!backing_up.status.backup.as_ref().unwrap().in_flight);
    let idle = phone
        .clone()
        .with_status(backing_up.status)
        .plan(Some(Observation::Status(0)), at(20));
    assert_eq!(ready(&idle.status), ("True", "BackedUp"));
    assert_eq!(idle.status.backup.as_ref().unwrap().attempts, 0);
    // Restored by someone else later: a new cycle asks at once.
    let reloaded = phone
        .with_status(idle.status)
        .plan(Some(Observation::Status(2)), at(25));
    assert!(reloaded.backup);
}

#[test]
fn backup_failures_are_retried_with_exponential_backoff() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let mut status = phone.plan(Some(Observation::Status(5)), at(0)).status;
    let mut now = 0;
    for (attempt, backoff) in [
        (1i32, 30i64),
        (2, 60),
        (3, 120),
        (4, 240),
        (5, 480),
        (6, 600),
        (7, 600),
    ] {
        assert_eq!(status.backup.as_ref().unwrap().attempts, attempt);
        let p = phone.clone().with_status(status.clone());
        // The vendor shows the backup under way, then failed again.
        status = p.plan(Some(Observation::Status(4)), at(now + 1)).status;
        let p = phone.clone().with_status(status.clone());
        let early = p.plan(Some(Observation::Status(5)), at(now + backoff - 1));
        assert!(
            !early.backup,
            "attempt {attempt}: retried before {backoff}s"
        );
        assert_eq!(ready(&early.status), ("False", "BackupFailed"));
        let due = p.plan(Some(Observation::Status(5)), at(now + backoff));
        assert!(due.backup, "attempt {attempt}: not retried at {backoff}s");
        status = due.status;
        now += backoff;
    }
}

#[test]
fn observed_and_suspended_phones_never_act() {
    for code in 0..10 {
        let observed = cloudphone("p", "kp1")
            .observed()
            .build()
            .plan(Some(Observation::Status(code)), at(0));
        assert!(!observed.backup);
    }
    let suspended = cloudphone("p", "kp1").backed_up().suspended().build();
    let planned = plan_one(&suspended.view(), &Disposition::Suspended, None, at(0));
    assert_eq!(planned.action, None);
    assert_eq!(ready(&planned.status), ("Unknown", "Suspended"));
}

#[test]
fn the_older_object_owns_a_shared_instance() {
    let phones = [
        cloudphone("newer", "kp1").backed_up().created(10).build(),
        cloudphone("older", "kp1").backed_up().created(5).build(),
        cloudphone("other", "kp2").backed_up().build(),
        cloudphone("sleeper", "kp2")
            .backed_up()
            .created(-5000)
            .suspended()
            .build(),
        cloudphone("bad", "kp 1").backed_up().build(),
    ];
    let views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
    let d = dispositions(&views);
    assert_eq!(
        d[0],
        Disposition::Duplicate {
            owner: phones[1].key()
        }
    );
    assert_eq!(d[1], Disposition::Query);
    assert_eq!(d[2], Disposition::Query, "a suspended phone owns nothing");
    assert_eq!(d[3], Disposition::Suspended);
    assert!(
        matches!(&d[4], Disposition::InvalidSpec { message } if message.contains("spec.instanceId"))
    );
    let mut queried: Vec<&str> = d
        .queried
        .iter()
        .map(|&i| views[i].spec.instance_id.as_str())
        .collect();
    queried.sort_unstable();
    assert_eq!(queried, ["kp1", "kp2"]);
    let planned = plan_one(&views[0], &d[0], None, at(0));
    assert_eq!(ready(&planned.status), ("False", "DuplicateInstance"));
    assert!(
        condition(&planned.status, READY)
            .message
            .contains("fleet/older")
    );
}

#[test]
fn one_id_in_two_account_scopes_is_two_instances_and_a_blocked_phone_owns_nothing() {
    let phones = [
        cloudphone("a-old", "kp1").observed().created(1).build(),
        cloudphone("b", "kp1").observed().created(2).build(),
        cloudphone("a-new", "kp1").observed().created(3).build(),
        cloudphone("blocked", "kp2").observed().created(0).build(),
        cloudphone("c", "kp2").observed().created(5).build(),
    ];
    let mut views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
    views[0].account = Route::Scope("tenant-a");
    views[1].account = Route::Scope("tenant-b");
    views[2].account = Route::Scope("tenant-a");
    views[3].account = Route::Blocked(AccountBlock {
        reason: ACCOUNT_NOT_ALLOWED,
        message: "CloudPhoneAccount \"a\" does not admit namespace \"fleet\"".into(),
    });
    views[4].account = Route::Scope("tenant-a");
    let d = dispositions(&views);
    assert_eq!(d[0], Disposition::Query);
    assert_eq!(d[1], Disposition::Query, "the same id under another tenant");
    assert!(matches!(&d[2], Disposition::Duplicate { owner } if owner.name == "a-old"));
    assert!(matches!(&d[3], Disposition::AccountBlocked(b) if b.reason == ACCOUNT_NOT_ALLOWED));
    assert_eq!(
        d[4],
        Disposition::Query,
        "a blocked phone, older, owns nothing"
    );
    let mut queried: Vec<&str> = d.queried.iter().map(|&i| views[i].key.name).collect();
    queried.sort_unstable();
    assert_eq!(queried, ["a-old", "b", "c"]);

    let planned = plan_one(&views[3], &d[3], None, at(0));
    assert_eq!(ready(&planned.status), ("False", ACCOUNT_NOT_ALLOWED));
    assert_eq!(planned.action, None);
    assert!(
        condition(&planned.status, SYNCED)
            .message
            .contains("does not admit")
    );
    assert!(
        is_settled(&planned.status),
        "a person must act: it is not pending"
    );
}

#[test]
fn ownership_ties_go_to_the_first_name() {
    let phones = [
        cloudphone("b", "kp1").observed().build(),
        cloudphone("a", "kp1").observed().build(),
    ];
    let views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
    let d = dispositions(&views);
    assert_eq!(d[1], Disposition::Query);
    assert!(matches!(d[0], Disposition::Duplicate { .. }));
}

#[test]
fn last_transition_time_moves_only_when_the_condition_status_changes() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let first = phone.plan(Some(Observation::Status(3)), at(0)).status;
    let t_ready = condition(&first, READY).last_transition_time.clone();
    // Same Ready status (False), another reason: the time stays.
    let second = phone
        .clone()
        .with_status(first)
        .plan(Some(Observation::Status(4)), at(50))
        .status;
    assert_eq!(condition(&second, READY).reason, "BackingUp");
    assert_eq!(condition(&second, READY).last_transition_time, t_ready);
    let third = phone
        .with_status(second)
        .plan(Some(Observation::Status(0)), at(90))
        .status;
    assert_eq!(condition(&third, READY).last_transition_time, Time(at(90)));
}

#[test]
fn a_failed_query_keeps_the_last_observation_and_ready() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let idle = phone.plan(Some(Observation::Status(0)), at(0)).status;
    let failed = phone
        .with_status(idle.clone())
        .plan(Some(failure()), at(30));
    assert!(!failed.backup);
    assert_eq!(failed.status.phase, Phase::Idle);
    assert_eq!(failed.status.instance_status, Some(0));
    assert_eq!(ready(&failed.status), ("True", "BackedUp"));
    assert_eq!(condition(&failed.status, SYNCED).status, "False");
}

#[test]
fn sub_second_times_are_cut_to_whole_seconds() {
    let now = Timestamp::from_millisecond((T0 * 1000) + 999).unwrap();
    let planned = cloudphone("p", "kp1")
        .backed_up()
        .build()
        .plan(Some(Observation::Status(2)), now);
    assert_eq!(
        planned.status.backup.unwrap().requested_at,
        Some(Time(at(0)))
    );
}

#[test]
fn backup_results_are_recorded() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let planned = phone.plan(Some(Observation::Status(2)), at(0));
    let accepted = Action::Backup.record_result(
        &planned.status,
        Some(1),
        &ActionResult::Accepted {
            request_id: "r-1".into(),
            task_id: Some("t-1".into()),
            job_id: Some("j-1".into()),
            sent_at: at(0),
            vendor_status: None,
        },
        at(1),
        &config(),
    );
    let b = accepted.backup.as_ref().unwrap();
    // The task and job ids ride on the phone's next write (the engine keeps them meanwhile), so
    // that the intent is the one write of a backup on the happy path.
    assert_eq!(
        (
            b.request_id.as_deref(),
            b.task_id.as_deref(),
            b.job_id.as_deref()
        ),
        (Some("r-1"), None, None)
    );
    assert_eq!(
        condition(&accepted, READY),
        condition(&planned.status, READY),
        "the same text before and after the call"
    );
    let mut intent = planned.status.clone();
    Action::Backup.stamp_intent(
        &mut intent,
        Some(1),
        CallStamp {
            at: at(0),
            request_id: "r-1",
            scope: DEFAULT_SCOPE,
            key: None,
        },
        &config(),
    );
    let happy = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Accepted {
            request_id: "r-1".into(),
            task_id: Some("t-1".into()),
            job_id: Some("j-1".into()),
            sent_at: at(0),
            vendor_status: None,
        },
        at(0),
        &config(),
    );
    assert_eq!(
        happy, intent,
        "an accepted call needs no write after its intent"
    );
    let refused = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Failed {
            failure: Failure {
                reason: "InvalidParameter".into(),
                message: "refused".into(),
            },
            ambiguous: false,
        },
        at(0),
        &config(),
    );
    assert_eq!(
        refused.backup.as_ref().unwrap().request_id,
        None,
        "a call that certainly started nothing leaves no request id"
    );
    let busy = Action::Backup.record_result(
        &planned.status,
        Some(1),
        &ActionResult::AlreadyBackingUp,
        at(1),
        &config(),
    );
    assert_eq!(ready(&busy), ("False", "BackingUp"));
    let restoring = Action::Backup.record_result(
        &planned.status,
        Some(1),
        &ActionResult::Restoring,
        at(1),
        &config(),
    );
    assert!(!restoring.backup.as_ref().unwrap().in_flight);
    let failed = Action::Backup.record_result(
        &planned.status,
        Some(1),
        &ActionResult::Failed {
            failure: Failure {
                reason: "Timeout".into(),
                message: "timed out".into(),
            },
            ambiguous: true,
        },
        at(1),
        &config(),
    );
    assert_eq!(ready(&failed), ("False", "BackupCallFailed"));
    assert!(
        failed.backup.as_ref().unwrap().in_flight,
        "an ambiguous call waits for the grace period"
    );
    let not_sent = Action::Backup.record_result(
        &planned.status,
        Some(1),
        &ActionResult::NotSent,
        at(1),
        &config(),
    );
    assert_eq!(not_sent, planned.status);
}

#[test]
fn events_fire_on_transitions_only() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let reasons = |old: Option<&CloudPhoneStatus>, new: &CloudPhoneStatus| -> Vec<&'static str> {
        events(&phone.spec, old, new)
            .into_iter()
            .map(|e| e.reason)
            .collect()
    };
    let data_loaded = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let accepted = Action::Backup.record_result(
        &data_loaded,
        Some(1),
        &ActionResult::Accepted {
            request_id: "r1".into(),
            task_id: None,
            job_id: None,
            sent_at: at(0),
            vendor_status: None,
        },
        at(0),
        &config(),
    );
    assert_eq!(reasons(None, &accepted), ["BackupRequested"]);
    assert_eq!(
        reasons(Some(&accepted), &accepted),
        Vec::<&str>::new(),
        "no event when nothing changed"
    );
    let p = phone.clone().with_status(accepted.clone());
    let failed = p.plan(Some(Observation::Status(5)), at(10)).status;
    assert_eq!(reasons(Some(&accepted), &failed), ["BackupFailed"]);
    let idle = phone
        .clone()
        .with_status(failed.clone())
        .plan(Some(Observation::Status(0)), at(20))
        .status;
    assert_eq!(reasons(Some(&failed), &idle), ["BackedUp"]);
    assert_eq!(reasons(Some(&idle), &idle), Vec::<&str>::new());
    let missing = phone
        .clone()
        .with_status(idle.clone())
        .plan(Some(Observation::Missing), at(30))
        .status;
    assert_eq!(reasons(Some(&idle), &missing), ["InstanceNotFound"]);
    let dup = plan_one(
        &phone.view(),
        &Disposition::Duplicate {
            owner: PhoneKey {
                namespace: "fleet".into(),
                name: "older".into(),
            },
        },
        None,
        at(0),
    )
    .status;
    let e = events(&phone.spec, None, &dup);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].reason, "DuplicateInstance");
    assert!(e[0].warning && e[0].message.contains("fleet/older"));
    assert!(events(&phone.spec, Some(&dup), &dup).is_empty());
}

// ---- property tests ----

fn arb_observation() -> impl Strategy<Value = Option<Observation>> {
    prop_oneof![
        (-1i64..9).prop_map(|c| Some(Observation::Status(c))),
        Just(Some(Observation::Missing)),
        Just(Some(failure())),
        Just(None),
    ]
}

fn arb_phone() -> impl Strategy<Value = CloudPhone> {
    (
        (0usize..6, 0usize..3, any::<bool>(), any::<bool>(), 0i64..5),
        (0usize..4, 0usize..4),
        prop::collection::vec((arb_observation(), 0i64..200, 0usize..3), 0..4),
    )
        .prop_map(
            |((id, lifecycle, interrupt, suspend, created), (idle, load_until), history)| {
                let ids = ["kp1", "kp2", "kp3", "kp4", "", "bad id"];
                let mut phone =
                    cloudphone(&format!("p{id}-{created}-{lifecycle}"), ids[id]).created(created);
                if let Some(timeout) = [None, Some("0"), Some("60s"), Some("5m")][idle] {
                    phone = phone.idle_timeout(timeout);
                }
                let until = [None, Some(at(100).to_string()), Some(at(300).to_string())]
                    .get(load_until)
                    .cloned()
                    .unwrap_or(Some("not a time".into()));
                if let Some(until) = &until {
                    phone = phone.load_until(until);
                }
                let mut phone = phone.build();
                phone.spec.interrupt_streaming = interrupt;
                phone.spec.suspend = suspend;
                // A previous status reached by planning through a random history, the lifecycle
                // switched in Git between steps.
                let mut history = history;
                history.sort_by_key(|(_, second, _)| *second);
                let set = |phone: &mut CloudPhone, n| {
                    set_lifecycle(phone, n);
                    // NB: a load-until wakes a BackedUp phone for its user.
                    if until.is_some() && phone.spec.lifecycle == Lifecycle::BackedUp {
                        phone.spec.user_id = Some("u1".into());
                    }
                };
                for (observation, second, declared) in history {
                    set(&mut phone, declared);
                    let status = phone.plan(observation, at(second)).status;
                    phone.status = Some(status);
                }
                set(&mut phone, lifecycle);
                phone
            },
        )
}

/// A phone whose action was just requested (a backup from DataLoaded, or a prepare from Idle, at a
/// time in 0..200), its lifecycle then switched in Git: the case a second action could double.
fn arb_switched_phone() -> impl Strategy<Value = CloudPhone> {
    (1usize..3, 0usize..3, 0i64..200, arb_observation()).prop_map(|(first, then, second, seen)| {
        let mut phone = cloudphone("switched", "kp1").build();
        set_lifecycle(&mut phone, first);
        let code = if first == 1 { 2 } else { 0 };
        let requested = phone
            .plan(Some(Observation::Status(code)), at(second))
            .status;
        phone.status = Some(requested);
        // Perhaps one more observation while it is in flight.
        let seen = phone.plan(seen, at(second + 1)).status;
        phone.status = Some(seen);
        set_lifecycle(&mut phone, then);
        phone
    })
}

/// Declares lifecycle `n` of Observed, BackedUp and Loaded (for user `u1`).
fn set_lifecycle(phone: &mut CloudPhone, n: usize) {
    phone.spec.lifecycle = [Lifecycle::Observed, Lifecycle::BackedUp, Lifecycle::Loaded][n % 3];
    phone.spec.user_id = (phone.spec.lifecycle == Lifecycle::Loaded).then(|| "u1".to_owned());
}

proptest! {
    // NB: more cases than the default: a switch that a status does not settle is rarer.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever the lifecycle switches in Git (BackedUp, Loaded, Observed, back and forth), a
    /// planned action never leaves another action's call in flight for the instance: the new one
    /// waits until the previous one is seen under way or its grace period is over.
    #[test]
    fn never_two_actions_in_flight_for_one_instance_across_lifecycle_switches(
        phone in prop_oneof![arb_phone(), arb_switched_phone()],
        observation in arb_observation(),
        now in 0i64..400,
    ) {
        let config = config();
        let planned = phone.plan(observation, at(now));
        // No lifecycle or userId change clears an action's record.
        for action in Action::ALL {
            let old = phone.status.as_ref().and_then(|s| action.record(s));
            prop_assert!(
                old.is_none() || action.record(&planned.status).is_some(),
                "{} lost its {action:?} record",
                phone.key()
            );
        }
        if let Some(action) = planned.action {
            let old = phone.status.as_ref();
            for other in Action::ALL.into_iter().filter(|a| *a != action) {
                let in_flight = old
                    .and_then(|s| other.record(s))
                    .filter(|r| r.in_flight)
                    .and_then(|r| r.requested_at.as_ref())
                    .is_some_and(|t| at(now) < t.0.checked_add(other.grace(&config)).unwrap());
                // NB: unless the vendor shows the other call under way or done (it settles).
                let settled = planned
                    .status
                    .instance_status
                    .is_some_and(|code| other.settled_by(Phase::from_code(code)));
                prop_assert!(
                    !in_flight || settled,
                    "{} planned a {action:?} while its {other:?} was in flight",
                    phone.key()
                );
            }
        }
    }

}

proptest! {
    #[test]
    fn a_phone_seen_streaming_or_kept_loaded_is_never_backed_up(
        phone in arb_phone(),
        code in prop_oneof![Just(3i64), 0i64..8],
        now in 0i64..700,
    ) {
        // Whatever its history, a phone seen Streaming is backed up only when streams may be
        // interrupted and it has no idle timeout; one seen loaded and unused, only once its
        // effective lifecycle is BackedUp (no load-until ahead, no idle wait running).
        let p = phone.plan(Some(Observation::Status(code)), at(now));
        if p.action == Some(Action::Backup) {
            let timeout = idle_timeout(phone.spec.idle_timeout.as_deref()).unwrap_or_default();
            if code == 3 {
                prop_assert!(
                    phone.spec.interrupt_streaming && timeout.is_zero(),
                    "{}: backed up while streaming", phone.key()
                );
            }
            prop_assert_eq!(p.status.effective_lifecycle, Some(Lifecycle::BackedUp));
            let until = LoadUntil::read(phone.load_until(), at(now), config().max_load_until);
            prop_assert!(
                !matches!(until, LoadUntil::Until(t) if at(now) < t),
                "{}: backed up before its load-until", phone.key()
            );
        }
    }

    #[test]
    fn observed_or_suspended_phones_never_act(
        phones in prop::collection::vec(arb_phone(), 1..12),
        observations in prop::collection::vec(arb_observation(), 4),
        now in 200i64..400,
    ) {
        let views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
        let d = dispositions(&views);
        let observe = |id: &str| observation_for(&observations, id);
        let planned = plan(&views, &d, observe, at(now));
        for (phone, p) in phones.iter().zip(&planned) {
            if phone.spec.lifecycle == Lifecycle::Observed || phone.spec.suspend {
                prop_assert!(p.action.is_none(), "{} acted", phone.key());
            }
        }
    }

    #[test]
    fn never_two_actions_for_one_instance(
        phones in prop::collection::vec(arb_phone(), 1..12),
        observations in prop::collection::vec(arb_observation(), 4),
        now in 200i64..400,
    ) {
        let views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
        let d = dispositions(&views);
        let planned = plan(&views, &d, |id| observation_for(&observations, id), at(now));
        let mut acted = std::collections::HashSet::new();
        for (phone, p) in phones.iter().zip(&planned) {
            if p.action.is_some() {
                prop_assert!(acted.insert(phone.spec.instance_id.clone()), "two actions for {}", phone.spec.instance_id);
            }
        }
    }

    #[test]
    fn planning_again_on_the_plan_adds_no_action_and_changes_nothing(
        phones in prop::collection::vec(arb_phone(), 1..12),
        observations in prop::collection::vec(arb_observation(), 4),
        now in 200i64..400,
    ) {
        let views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
        let d = dispositions(&views);
        let observe = |id: &str| observation_for(&observations, id);
        let first = plan(&views, &d, observe, at(now));
        let replanned: Vec<CloudPhone> = phones
            .iter()
            .zip(&first)
            .map(|(phone, p)| phone.clone().with_status(p.status.clone().into_owned()))
            .collect();
        let views2: Vec<PhoneView> = replanned.iter().map(CloudPhone::view).collect();
        let second = plan(&views2, &d, observe, at(now));
        for ((phone, a), b) in phones.iter().zip(&first).zip(&second) {
            prop_assert!(b.action.is_none(), "{} acted again on its own plan", phone.key());
            prop_assert_eq!(&a.status, &b.status, "{} changed on replanning", phone.key());
            // A steady phone costs no copy of its status: the tick's CPU at scale depends on it.
            prop_assert!(b.unchanged(), "{} copied its status on replanning though nothing changed", phone.key());
        }
    }
}

/// Routes to the vendor: the operator's own account first, then CloudPhoneAccounts, each with the
/// project its credentials name (`None`: a bare token, whose project the operator cannot know).
fn arb_routes() -> impl Strategy<Value = Vec<Option<&'static str>>> {
    prop::collection::vec(
        prop_oneof![Just(Some("p1")), Just(Some("p2")), Just(None)],
        1..5,
    )
}

fn route_name(i: usize) -> String {
    if i == 0 {
        "default".to_owned()
    } else {
        format!("account-{i}")
    }
}

proptest! {
    /// Whatever the routes (the operator's own account, CloudPhoneAccounts of one project or of
    /// several, bare tokens), first tick or later: never two actions for one instance of a project.
    #[test]
    fn never_two_actions_for_one_instance_across_accounts_and_routes(
        routes in arb_routes(),
        phones in prop::collection::vec((arb_phone(), 0usize..8), 2..14),
        // Mostly DataLoaded: the state a backup starts from.
        observations in prop::collection::vec(
            prop_oneof![3 => Just(Some(Observation::Status(2))), 1 => arb_observation()],
            4,
        ),
        now in 200i64..400,
    ) {
        let scopes: Vec<String> = routes
            .iter()
            .enumerate()
            .map(|(i, project)| account_scope(&route_name(i), *project))
            .collect();
        // What the vendor knows: a bare token reaches a project too, one the operator cannot name
        // (here a project of its own: the README says what is not detected when it is shared).
        let truth = |route: usize| match routes[route] {
            Some(project) => project.to_owned(),
            None => format!("hidden-{}", route_name(route)),
        };
        let phones: Vec<(CloudPhone, usize)> = phones
            .into_iter()
            .enumerate()
            .map(|(n, (mut phone, route))| {
                // Distinct names: one object per entry.
                phone.metadata.name = Some(format!("{}-{n}", phone.key().name));
                (phone, route % routes.len())
            })
            .collect();
        let views: Vec<PhoneView> = phones
            .iter()
            .map(|(phone, route)| PhoneView {
                account: Route::Scope(scopes[*route].as_str()),
                ..phone.view()
            })
            .collect();
        let d = dispositions(&views);
        let planned = plan(&views, &d, |id| observation_for(&observations, id), at(now));
        let mut acted = std::collections::HashSet::new();
        for ((phone, route), p) in phones.iter().zip(&planned) {
            if p.action.is_some() {
                let instance = (truth(*route), phone.spec.instance_id.clone());
                prop_assert!(acted.insert(instance.clone()), "two actions for {instance:?}");
            }
        }
    }
}

proptest! {
    /// Within the grace period of a tick's backups, the next tick never sends a second one for
    /// any of their instances, whatever ownership moves in between (owners deleted, duplicates
    /// promoted) and whether leadership moved (a new term remembers nothing of the first, only
    /// until when its intents may be outstanding): each phone planned as production plans it,
    /// with what the engine remembers.
    #[test]
    fn never_a_second_action_for_one_instance_across_ownership_moves_and_terms(
        phones in prop::collection::vec(arb_phone(), 2..12),
        gone in prop::collection::vec(any::<bool>(), 12),
        new_term in any::<bool>(),
        later in 0i64..60,
        now in 200i64..400,
    ) {
        let config = config();
        // Every instance DataLoaded: the state a backup starts from.
        let loaded = Observation::Status(2);
        let grace = config.grace_period;
        let phones: Vec<CloudPhone> = phones
            .into_iter()
            .enumerate()
            .map(|(n, mut phone)| {
                phone.metadata.name = Some(format!("{}-{n}", phone.key().name));
                phone.metadata.uid = Some(format!("uid-{n}"));
                phone
            })
            .collect();
        let tick = |phones: &[CloudPhone], intents: &mut Intents, earlier: &EarlierTerms, now: Timestamp| {
            let views: Vec<PhoneView> = phones.iter().map(CloudPhone::view).collect();
            let d = dispositions(&views);
            intents.observe(&views, now, &config);
            let cx = Context { now, config: &config, earlier };
            let planned: Vec<(CloudPhone, Option<Action>)> = views
                .iter()
                .zip(d.iter())
                .zip(phones)
                .filter_map(|((view, disposition), phone)| {
                    let observation = (*disposition == Disposition::Query).then_some(&loaded);
                    let memory = Memory {
                        intents: Some(&*intents),
                        ..Memory::default()
                    };
                    let p = plan_phone(view, disposition, observation, &memory, &cx)?;
                    let phone = phone.clone().with_status(p.status.into_owned());
                    Some((phone, p.action))
                })
                .collect();
            // The engine records each intent it writes.
            for (phone, action) in &planned {
                if let Some(action) = *action {
                    let at = phone.status.as_ref().and_then(|s| action.record(s)).and_then(|b| b.requested_at.as_ref()).unwrap().0;
                    intents.record(DEFAULT_SCOPE, &phone.spec.instance_id, Intent {
                        owner: phone.key().to_string(),
                        uid: phone.metadata.uid.clone(),
                        requested_at: at,
                        action,
                        user: None,
                    });
                }
            }
            planned
        };
        let mut intents = Intents::default();
        let first = tick(&phones, &mut intents, &EarlierTerms::Settled, at(now));
        let backed_up: std::collections::HashSet<String> = first
            .iter()
            .filter(|(_, action)| action.is_some())
            .map(|(phone, _)| phone.spec.instance_id.clone())
            .collect();
        // Some objects are deleted; the rest show the status the first tick wrote.
        let survivors: Vec<CloudPhone> = first
            .into_iter()
            .zip(&gone)
            .filter(|(_, gone)| !**gone)
            .map(|((phone, _), _)| phone)
            .collect();
        let earlier = if new_term {
            intents = Intents::default();
            EarlierTerms::Until(at(now).checked_add(grace).unwrap())
        } else {
            EarlierTerms::Settled
        };
        let second = tick(&survivors, &mut intents, &earlier, at(now + later));
        for (phone, action) in &second {
            if action.is_some() {
                prop_assert!(
                    !backed_up.contains(&phone.spec.instance_id),
                    "{} backed up {} again {later}s after the first call (new term: {new_term})",
                    phone.key(),
                    phone.spec.instance_id
                );
            }
        }
    }
}

#[test]
fn a_duplicate_in_another_namespace_is_not_told_who_owns_the_instance() {
    let owner = cloudphone("owner", "kp1").observed().created(1).build();
    let other = cloudphone("other", "kp1")
        .namespace("tenant-b")
        .observed()
        .created(2)
        .build();
    let same = cloudphone("same", "kp1").observed().created(3).build();
    let views = [owner.view(), other.view(), same.view()];
    let d = dispositions(&views);
    let message = |i: usize| {
        let planned = plan_one(&views[i], &d[i], None, at(0));
        assert_eq!(ready(&planned.status), ("False", "DuplicateInstance"));
        condition(&planned.status, READY).message.clone()
    };
    let told = message(1);
    assert!(
        !told.contains("owner") && !told.contains("fleet") && told.contains("another"),
        "{told}"
    );
    assert!(
        message(2).contains("fleet/owner"),
        "the same namespace is told"
    );
}

#[test]
fn a_phone_its_account_does_not_serve_shows_nothing_the_vendor_said() {
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .interrupt_streaming()
        .build();
    let served = phone.plan(Some(Observation::Status(3)), at(0)).status;
    assert_eq!(served.instance_status, Some(3));
    let phone = phone.with_status(served);
    let blocked = Disposition::AccountBlocked(AccountBlock {
        reason: ACCOUNT_NOT_ALLOWED,
        message: "not admitted".into(),
    });
    let planned = plan_one(&phone.view(), &blocked, None, at(10));
    assert_eq!(planned.action, None);
    assert_eq!(planned.status.instance_status, None);
    assert_eq!(planned.status.phase, Phase::Pending);
    assert_eq!(ready(&planned.status), ("False", ACCOUNT_NOT_ALLOWED));
}

fn observation_for(observations: &[Option<Observation>], id: &str) -> Option<Observation> {
    let index = match id {
        "kp1" => 0,
        "kp2" => 1,
        "kp3" => 2,
        _ => 3,
    };
    observations[index].clone()
}

#[test]
fn kstatus_conditions_follow_ready_reason_by_reason() {
    // (Ready status, Ready reason, the kstatus condition that is True)
    let table = [
        ("True", "BackedUp", None),
        ("True", "Observed", None),
        ("False", "BackupRequested", Some(RECONCILING)),
        ("False", "BackingUp", Some(RECONCILING)),
        ("False", "Restoring", Some(RECONCILING)),
        ("False", "BackupNotStarted", Some(RECONCILING)),
        ("False", "BackupFailed", Some(RECONCILING)),
        ("False", "BackupCallFailed", Some(RECONCILING)),
        ("False", AWAITING_HANDOVER, Some(RECONCILING)),
        ("False", "Streaming", Some(RECONCILING)),
        ("Unknown", "Pending", Some(RECONCILING)),
        ("Unknown", "Suspended", None),
        ("False", BACKUP_REFUSED, Some(STALLED)),
        ("False", "RestoreFailed", Some(STALLED)),
        ("False", "UnknownStatus", Some(STALLED)),
        ("False", "InstanceNotFound", Some(STALLED)),
        ("False", "DuplicateInstance", Some(STALLED)),
        ("False", "InvalidSpec", Some(STALLED)),
        ("False", ACCOUNT_NOT_FOUND, Some(STALLED)),
        ("False", ACCOUNT_NOT_ALLOWED, Some(STALLED)),
        ("False", ACCOUNT_NOT_READY, Some(STALLED)),
    ];
    for (status, reason, want) in table {
        assert_eq!(kstatus_condition(status, reason), want, "{status} {reason}");
    }
    // Through the planner: a backup under way is Reconciling, its end clears it, and a status
    // never carries both.
    let phone = cloudphone("p", "kp1").backed_up().build();
    let requested = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let kstatus = |s: &CloudPhoneStatus| -> Vec<(String, String)> {
        s.conditions
            .iter()
            .filter(|c| c.type_ == RECONCILING || c.type_ == STALLED)
            .map(|c| (c.type_.clone(), c.reason.clone()))
            .collect()
    };
    assert_eq!(
        kstatus(&requested),
        [(RECONCILING.into(), "BackupRequested".into())]
    );
    let idle = phone
        .clone()
        .with_status(requested)
        .plan(Some(Observation::Status(0)), at(30))
        .status;
    assert_eq!(kstatus(&idle), []);
    let gone = phone
        .clone()
        .with_status(idle.clone())
        .plan(Some(Observation::Missing), at(60))
        .status;
    assert_eq!(
        kstatus(&gone),
        [(STALLED.into(), "InstanceNotFound".into())]
    );
    // A status written before these conditions existed gets them on the next plan, once.
    let mut old = gone.clone();
    old.conditions.retain(|c| c.type_ != STALLED);
    let again = phone
        .clone()
        .with_status(old)
        .plan(Some(Observation::Missing), at(90));
    assert_eq!(
        kstatus(&again.status),
        [(STALLED.into(), "InstanceNotFound".into())]
    );
    let steady = phone
        .clone()
        .with_status(again.status.clone())
        .plan(Some(Observation::Missing), at(120));
    assert_eq!(steady.status, again.status, "then nothing changes");
}

#[test]
fn last_backup_time_is_set_when_a_backup_is_seen_complete_and_only_then() {
    let phone = cloudphone("p", "kp1").backed_up().build();
    let first_idle = phone.plan(Some(Observation::Status(0)), at(0)).status;
    assert_eq!(
        first_idle.last_backup_time, None,
        "idle from the start: no backup seen"
    );
    let requested = phone.plan(Some(Observation::Status(2)), at(10)).status;
    let backing_up = phone
        .clone()
        .with_status(requested.clone())
        .plan(Some(Observation::Status(4)), at(20))
        .status;
    assert_eq!(backing_up.last_backup_time, None);
    let done = phone
        .clone()
        .with_status(backing_up)
        .plan(Some(Observation::Status(0)), at(90))
        .status;
    assert_eq!(done.last_backup_time, Some(Time(at(90))));
    let steady = phone
        .clone()
        .with_status(done.clone())
        .plan(Some(Observation::Status(0)), at(120));
    assert_eq!(steady.status, done, "a steady Idle phone writes nothing");
    // The vendor went from queued to Idle between two ticks: BackingUp was never seen.
    let quick = phone
        .clone()
        .with_status(requested)
        .plan(Some(Observation::Status(0)), at(30))
        .status;
    assert_eq!(quick.last_backup_time, Some(Time(at(30))));
    // An Observed phone's backup, made by someone else, is seen complete too.
    let observed = cloudphone("o", "kp2").observed().build();
    let was_backing_up = observed.plan(Some(Observation::Status(4)), at(0)).status;
    let idle = observed
        .clone()
        .with_status(was_backing_up)
        .plan(Some(Observation::Status(0)), at(50))
        .status;
    assert_eq!(idle.last_backup_time, Some(Time(at(50))));
}

#[test]
fn a_reconcile_request_is_echoed_only_after_an_observation_and_lifts_a_refusal() {
    let builder = cloudphone("p", "kp1").backed_up();
    let phone = builder.clone().build();
    let intent = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let refused = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Refused {
            failure: Failure {
                reason: "NoPermission".into(),
                message: "backup call answered KOOPHONE.API.1001".into(),
            },
        },
        at(1),
        &config(),
    );
    let asked = builder
        .clone()
        .status(refused)
        .reconcile_requested("2026-11-25T10:00:00Z");
    let requested = asked.clone().build();
    let failed = requested.plan(Some(failure()), at(5));
    assert_eq!(
        failed.status.last_handled_reconcile_at, None,
        "a failed query is no fresh observation"
    );
    let not_queried = requested.plan(None, at(5));
    assert_eq!(not_queried.status.last_handled_reconcile_at, None);
    let observed = requested.plan(Some(Observation::Status(2)), at(5));
    assert_eq!(
        observed.status.last_handled_reconcile_at.as_deref(),
        Some("2026-11-25T10:00:00Z")
    );
    assert!(
        !observed.backup,
        "within the backoff step after the refused call a request lifts nothing: no storm of refused calls"
    );
    assert_eq!(ready(&observed.status).1, BACKUP_REFUSED);
    let later = asked
        .clone()
        .status(observed.status.clone())
        .reconcile_requested("2026-11-25T10:01:00Z")
        .build()
        .plan(Some(Observation::Status(2)), at(40));
    assert!(
        later.backup,
        "a request after the backoff step lifts the BackupRefused hold: asked again"
    );
    let again = asked
        .clone()
        .status(later.status)
        .reconcile_requested("2026-11-25T10:01:00Z")
        .build()
        .plan(Some(Observation::Status(2)), at(45));
    assert!(!again.backup, "once per request: the call is in flight");
    let missing = cloudphone("m", "kp9")
        .observed()
        .reconcile_requested("1")
        .build()
        .plan(Some(Observation::Missing), at(0));
    assert_eq!(
        missing.status.last_handled_reconcile_at.as_deref(),
        Some("1"),
        "NotFound is an observation too"
    );
}

#[test]
fn a_backup_seen_complete_within_the_second_of_its_rounded_up_request_is_recorded_once() {
    // The intent's requestedAt is rounded up to the second: the vendor can show Idle before it.
    let phone = cloudphone("p", "kp1").backed_up().build();
    let mut requested = phone.plan(Some(Observation::Status(2)), at(10)).status;
    requested.backup.as_mut().unwrap().requested_at = Some(Time(at(11)));
    let done = phone
        .clone()
        .with_status(requested)
        .plan(Some(Observation::Status(0)), at(10))
        .status;
    assert_eq!(
        done.last_backup_time,
        Some(Time(at(11))),
        "never before the request"
    );
    let later = phone
        .clone()
        .with_status(done.clone())
        .plan(Some(Observation::Status(0)), at(12));
    assert_eq!(later.status, done, "recorded once: no second write");
}

#[test]
fn every_phase_of_a_loaded_phone_has_its_ready_condition_and_action() {
    use Observation::*;
    // (observation, Ready status, Ready reason, prepare?)
    let table: Vec<(Observation, &str, &str, bool)> = vec![
        (Status(0), "False", "PrepareRequested", true),
        (Status(1), "False", "Restoring", false),
        (Status(2), "True", LOADED, false),
        (Status(7), "True", LOADED, false),
        (Status(3), "True", LOADED, false),
        (Status(4), "False", "BackingUp", false),
        (Status(5), "True", LOADED, false),
        (Status(6), "False", "PrepareRequested", true),
        (Status(99), "False", "UnknownStatus", false),
        (Missing, "False", "InstanceNotFound", false),
        (failure(), "Unknown", "Pending", false),
    ];
    for (observation, ready_status, reason, prepare) in table {
        let phone = cloudphone("p", "kp1").loaded("u1").build();
        let planned = phone.plan(Some(observation.clone()), at(0));
        let case = format!("{observation:?}");
        assert_eq!(ready(&planned.status), (ready_status, reason), "{case}");
        assert_eq!(planned.action, prepare.then_some(Action::Prepare), "{case}");
        if prepare {
            let record = planned.status.prepare.as_ref().unwrap();
            assert!(record.in_flight && record.attempts == 1, "{case}");
            assert!(planned.status.backup.is_none(), "{case}");
        }
    }
}

#[test]
fn a_prepare_is_asked_once_per_grace_period_and_its_restore_completes_the_load() {
    let phone = cloudphone("p", "kp1").loaded("u1").build();
    let first = phone.plan(Some(Observation::Status(0)), at(0));
    assert_eq!(first.action, Some(Action::Prepare));
    let phone = phone.with_status(first.status);
    // Still Idle (queued at the vendor) within the prepare grace period (180 s): no second call.
    for second in [1, 100, 179] {
        let again = phone.plan(Some(Observation::Status(0)), at(second));
        assert_eq!(
            again.action, None,
            "asked again {second}s after the first call"
        );
        assert_eq!(ready(&again.status), ("False", "PrepareRequested"));
    }
    // Past it, the backoff of one attempt (30 s) first.
    let not_started = phone.plan(Some(Observation::Status(0)), at(200));
    assert_eq!(not_started.action, None);
    assert_eq!(ready(&not_started.status), ("False", "PrepareNotStarted"));
    assert_eq!(
        phone.plan(Some(Observation::Status(0)), at(210)).action,
        Some(Action::Prepare)
    );
    // Restoring settles the call; the data loaded completes it, once.
    let restoring = phone.plan(Some(Observation::Status(1)), at(20)).status;
    assert!(!restoring.prepare.as_ref().unwrap().in_flight);
    let phone = phone.with_status(restoring);
    let loaded = phone.plan(Some(Observation::Status(2)), at(60));
    assert_eq!(ready(&loaded.status), ("True", LOADED));
    assert_eq!(loaded.status.last_loaded_time, Some(Time(at(60))));
    assert_eq!(loaded.status.prepare.as_ref().unwrap().attempts, 0);
    let phone = phone.with_status(loaded.status.clone());
    let steady = phone.plan(Some(Observation::Status(2)), at(90));
    assert_eq!(
        steady.status, loaded.status,
        "a loaded phone writes nothing"
    );
}

#[test]
fn a_change_of_user_on_a_loaded_phone_prepares_nothing() {
    let phone = cloudphone("p", "kp1").loaded("u1").build();
    let loaded = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let mut phone = phone.with_status(loaded);
    phone.spec.user_id = Some("u2".into());
    phone.metadata.generation = Some(2);
    let planned = phone.plan(Some(Observation::Status(2)), at(10));
    assert_eq!(planned.action, None);
    assert_eq!(ready(&planned.status), ("True", LOADED));
}

#[test]
fn a_failed_restore_is_prepared_again_with_the_backoff_of_the_attempts() {
    let phone = cloudphone("p", "kp1").loaded("u1").build();
    let first = phone.plan(Some(Observation::Status(0)), at(0)).status;
    let phone = phone.with_status(first);
    // Seen restoring, then failed: attempt 1 waits its backoff (30 s).
    let restoring = phone.plan(Some(Observation::Status(1)), at(5)).status;
    let phone = phone.with_status(restoring);
    let failed = phone.plan(Some(Observation::Status(6)), at(10));
    assert_eq!(failed.action, None);
    assert_eq!(ready(&failed.status), ("False", PREPARE_FAILED));
    let phone = phone.with_status(failed.status);
    assert_eq!(
        phone.plan(Some(Observation::Status(6)), at(30)).action,
        Some(Action::Prepare)
    );
}

#[test]
fn switching_a_lifecycle_waits_for_the_other_actions_call() {
    // A backup is requested; the vendor still shows the data loaded (queued).
    let phone = cloudphone("p", "kp1").backed_up().build();
    let backing = phone.plan(Some(Observation::Status(2)), at(0));
    assert!(backing.backup);
    let mut phone = phone.with_status(backing.status);
    // Git flips it to Loaded, then back to BackedUp while the vendor shows Idle but the backup's
    // record says nothing settled it... Idle settles a backup: the prepare goes out.
    phone.spec.lifecycle = Lifecycle::Loaded;
    phone.spec.user_id = Some("u1".into());
    let loaded = phone.plan(Some(Observation::Status(2)), at(5));
    assert_eq!(loaded.action, None, "already loaded");
    // A prepare requested from Idle; Git flips to BackedUp; the vendor shows DataLoaded before
    // Restoring was ever seen: the backup waits for the prepare's grace period (180 s).
    let phone = cloudphone("q", "kp2").loaded("u1").build();
    let preparing = phone.plan(Some(Observation::Status(0)), at(0));
    assert_eq!(preparing.action, Some(Action::Prepare));
    let mut phone = phone.with_status(preparing.status);
    phone.spec.lifecycle = Lifecycle::BackedUp;
    let held = phone.plan(Some(Observation::Status(4)), at(10));
    assert_eq!(held.action, None, "BackingUp: nothing to do");
    let mut in_flight = phone.status.clone().unwrap();
    in_flight.prepare.as_mut().unwrap().in_flight = true;
    let phone = phone.with_status(in_flight);
    // Status 5 (a backup exception) does not settle a prepare: the backup waits for it.
    let waits = phone.plan(Some(Observation::Status(5)), at(10));
    assert_eq!(waits.action, None);
    assert_eq!(ready(&waits.status), ("False", PREVIOUS_ACTION_PENDING));
    assert_eq!(
        phone.plan(Some(Observation::Status(5)), at(181)).action,
        Some(Action::Backup),
        "past the prepare's grace period"
    );
}

#[test]
fn a_loaded_phones_events_fire_on_its_transitions_only() {
    let phone = cloudphone("p", "kp1").loaded("u1").build();
    let reasons = |old: Option<&CloudPhoneStatus>, new: &CloudPhoneStatus| -> Vec<&'static str> {
        events(&phone.spec, old, new)
            .into_iter()
            .map(|e| e.reason)
            .collect()
    };
    let idle = phone.plan(Some(Observation::Status(0)), at(0)).status;
    let accepted = Action::Prepare.record_result(
        &idle,
        Some(1),
        &ActionResult::Accepted {
            request_id: "r1".into(),
            task_id: None,
            job_id: None,
            sent_at: at(0),
            vendor_status: Some(1),
        },
        at(0),
        &config(),
    );
    assert_eq!(reasons(None, &accepted), ["PrepareRequested"]);
    assert_eq!(accepted.prepare.as_ref().unwrap().vendor_status, Some(1));
    assert!(reasons(Some(&accepted), &accepted).is_empty());
    let p = phone.clone().with_status(accepted.clone());
    let failed = p.plan(Some(Observation::Status(6)), at(10)).status;
    assert_eq!(reasons(Some(&accepted), &failed), ["PrepareFailed"]);
    let loaded = phone
        .clone()
        .with_status(failed.clone())
        .plan(Some(Observation::Status(2)), at(20))
        .status;
    assert_eq!(reasons(Some(&failed), &loaded), ["Loaded"]);
    let streaming = phone
        .clone()
        .with_status(loaded.clone())
        .plan(Some(Observation::Status(3)), at(30))
        .status;
    assert!(
        reasons(Some(&loaded), &streaming).is_empty(),
        "a user streaming on a loaded phone is no new load"
    );
}

#[test]
fn a_loaded_phone_without_a_usable_user_is_told_which_field_and_makes_no_call() {
    for (user, expected) in [
        (None, "spec.userId is required"),
        (Some("u 1"), "spec.userId \"u 1\""),
    ] {
        let mut phone = cloudphone("p", "kp1").loaded("u1").build();
        phone.spec.user_id = user.map(str::to_owned);
        let view = phone.view();
        let d = dispositions(std::slice::from_ref(&view));
        assert!(d.queried.is_empty(), "{user:?}: owns no instance");
        let planned = plan_one(&view, &d[0], None, at(0));
        assert_eq!(ready(&planned.status), ("False", "InvalidSpec"));
        let message = &condition(&planned.status, READY).message;
        assert!(message.contains(expected), "{message}");
        assert_eq!(planned.action, None);
    }
}

#[test]
fn a_call_the_vendor_answered_without_starting_anything_waits_its_backoff() {
    // The vendor answers the call for the instance without starting anything (no such instance,
    // already restoring or restored, a backup under way), yet its status query still shows the
    // phase the call starts from: the next call waits the backoff of the attempt (30 s), not a tick.
    let backup = cloudphone("p", "kp1").backed_up().build();
    let prepare = cloudphone("p", "kp1").loaded("u1").build();
    let cases = [
        (&backup, 2, Action::Backup, ActionResult::NotFound),
        (&backup, 2, Action::Backup, ActionResult::Restoring),
        (&prepare, 0, Action::Prepare, ActionResult::NotFound),
        (&prepare, 0, Action::Prepare, ActionResult::AlreadyDone),
        (&prepare, 0, Action::Prepare, ActionResult::AlreadyBackingUp),
        (&prepare, 6, Action::Prepare, ActionResult::NotFound),
    ];
    for (phone, code, action, result) in cases {
        let case = format!("{action:?} from status {code}, answered {result:?}");
        let generation = phone.metadata.generation;
        let plan = phone.plan(Some(Observation::Status(code)), at(0));
        assert_eq!(plan.action, Some(action), "{case}");
        let mut intent = plan.status;
        action.stamp_intent(
            &mut intent,
            generation,
            CallStamp {
                at: at(0),
                request_id: "req",
                scope: DEFAULT_SCOPE,
                key: action.call_key(&phone.spec),
            },
            &config(),
        );
        let answered = action.record_result(&intent, generation, &result, at(0), &config());
        let phone = phone.clone().with_status(answered.clone());
        for second in [1, 10, 29] {
            let again = phone.plan(Some(Observation::Status(code)), at(second));
            assert_eq!(again.action, None, "{case}: called again at {second}s");
            // NB: a failed restore says so, with its next attempt, whatever the call answered.
            if code != 6 {
                assert_eq!(again.status, answered, "{case}: the wait writes nothing");
            }
        }
        assert_eq!(
            phone.plan(Some(Observation::Status(code)), at(31)).action,
            Some(action),
            "{case}: not called again after the backoff"
        );
    }
}

/// The effective lifecycle, reason and next transition a status shows.
fn kept(
    status: &CloudPhoneStatus,
) -> (
    Option<Lifecycle>,
    Option<EffectiveReason>,
    Option<(i64, Lifecycle)>,
) {
    (
        status.effective_lifecycle,
        status.effective_reason,
        status
            .next_transition
            .as_ref()
            .map(|t| (t.at.0.as_second() - T0, t.lifecycle)),
    )
}

#[test]
fn a_backed_up_phone_with_an_idle_timeout_is_parked_only_once_unused_that_long_continuously() {
    use EffectiveReason::*;
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .build();
    // First seen loaded and unused: the wait starts, written once.
    let first = phone.plan(Some(Observation::Status(2)), at(0));
    assert_eq!(first.action, None, "backed up at once");
    assert_eq!(ready(&first.status), ("False", WAITING_FOR_IDLE));
    assert_eq!(first.status.idle_since, Some(Box::new(Time(at(0)))));
    assert_eq!(
        kept(&first.status),
        (
            Some(Lifecycle::Loaded),
            Some(WaitingForIdle),
            Some((600, Lifecycle::BackedUp))
        )
    );
    assert!(
        !first
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == RECONCILING || c.type_ == STALLED)
    );
    let waiting = phone.clone().with_status(first.status.clone());
    for second in [1, 300, 599] {
        let again = waiting.plan(Some(Observation::Status(2)), at(second));
        assert_eq!(again.action, None, "backed up after {second}s");
        assert_eq!(again.status, first.status, "the wait writes nothing");
    }
    let due = waiting.plan(Some(Observation::Status(7)), at(600));
    assert_eq!(due.action, Some(Action::Backup));
    assert_eq!(ready(&due.status), ("False", "BackupRequested"));
    assert_eq!(
        kept(&due.status),
        (Some(Lifecycle::BackedUp), Some(Declared), None)
    );
    // A user streams at 300: the wait is gone, and starts again when the session ends.
    let streaming = waiting.plan(Some(Observation::Status(3)), at(300));
    assert_eq!(streaming.action, None);
    assert_eq!(streaming.status.idle_since, None);
    assert_eq!(ready(&streaming.status), ("False", WAITING_FOR_IDLE));
    let ended = phone.clone().with_status(streaming.status);
    let again = ended.plan(Some(Observation::Status(2)), at(400));
    assert_eq!(again.status.idle_since, Some(Box::new(Time(at(400)))));
    let again = ended.with_status(again.status);
    assert_eq!(
        again.plan(Some(Observation::Status(2)), at(999)).action,
        None
    );
    assert_eq!(
        again.plan(Some(Observation::Status(2)), at(1000)).action,
        Some(Action::Backup)
    );
}

#[test]
fn a_streaming_phone_is_never_parked_for_idleness_even_when_streams_may_be_interrupted() {
    for interrupt in [false, true] {
        let mut phone = cloudphone("p", "kp1").backed_up().idle_timeout("60s");
        if interrupt {
            phone = phone.interrupt_streaming();
        }
        let mut phone = phone.build();
        for second in (0..7200).step_by(30) {
            let planned = phone.plan(Some(Observation::Status(3)), at(second));
            assert_eq!(
                planned.action, None,
                "interrupt={interrupt}: parked at {second}s"
            );
            phone = phone.with_status(planned.status);
        }
    }
}

#[test]
fn a_missing_or_failed_observation_postpones_the_park_without_a_write() {
    let config = config();
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .build();
    let first = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let phone = phone.with_status(first.clone());
    let view = phone.view();
    let plan_at = |observation: Observation, second: i64, unobserved: Option<i64>| {
        let cx = Context {
            now: at(second),
            config: &config,
            earlier: &EarlierTerms::Settled,
        };
        let memory = Memory {
            unobserved: unobserved.map(at),
            ..Memory::default()
        };
        plan_phone(&view, &Disposition::Query, Some(&observation), &memory, &cx).unwrap()
    };
    // The failed observation itself writes nothing.
    let failed = plan_at(failure(), 300, None);
    assert_eq!(failed.action, None);
    assert_eq!(failed.status.idle_since, first.idle_since);
    // Seen loaded again: not idle continuously since 0, but since the failure at 300.
    let after = plan_at(Observation::Status(2), 600, Some(300));
    assert_eq!(after.action, None, "parked on a stretch a failure broke");
    assert_eq!(
        after.status.idle_since, first.idle_since,
        "idleSince not moved"
    );
    // NB: the postponement lives in memory: the status still says 600, and is not written.
    assert_eq!(*after.status, first, "the postponement writes nothing");
    assert_eq!(
        plan_at(Observation::Status(2), 900, Some(300)).action,
        Some(Action::Backup)
    );
    assert_eq!(
        plan_at(Observation::Status(2), 600, None).action,
        Some(Action::Backup),
        "without the failure, idle long enough"
    );
}

#[test]
fn a_load_until_annotation_keeps_a_backed_up_phone_loaded_until_its_time() {
    use EffectiveReason::*;
    let until = at(3600).to_string();
    let mut phone = cloudphone("p", "kp1")
        .backed_up()
        .load_until(&until)
        .build();
    phone.spec.user_id = Some("u1".into());
    // Parked: woken (prepared for its user).
    let woken = phone.plan(Some(Observation::Status(0)), at(0));
    assert_eq!(woken.action, Some(Action::Prepare));
    assert_eq!(
        kept(&woken.status),
        (
            Some(Lifecycle::Loaded),
            Some(LoadUntil),
            Some((3600, Lifecycle::BackedUp))
        )
    );
    // Loaded: kept so, not backed up, until its time.
    let loaded = phone.plan(Some(Observation::Status(2)), at(10));
    assert_eq!(loaded.action, None);
    assert_eq!(ready(&loaded.status), ("True", LOADED));
    let phone = phone.with_status(loaded.status.clone());
    assert_eq!(
        phone.plan(Some(Observation::Status(2)), at(3599)).status,
        loaded.status
    );
    let expired = phone.plan(Some(Observation::Status(2)), at(3600));
    assert_eq!(expired.action, Some(Action::Backup));
    assert_eq!(
        kept(&expired.status),
        (Some(Lifecycle::BackedUp), Some(Declared), None)
    );
    // Too far ahead, or not a time: ignored.
    for bad in [at(8 * 86_400).to_string(), "tonight".to_owned()] {
        let ignored = cloudphone("p", "kp1").backed_up().load_until(&bad).build();
        assert_eq!(
            ignored.plan(Some(Observation::Status(2)), at(0)).action,
            Some(Action::Backup),
            "{bad}"
        );
    }
    // Without a user to ready it for, a parked phone is not woken, and says why.
    let no_user = cloudphone("p", "kp1")
        .backed_up()
        .load_until(&until)
        .build();
    let held = no_user.plan(Some(Observation::Status(0)), at(0));
    assert_eq!(held.action, None);
    let c = condition(&held.status, READY);
    assert_eq!(c.reason, "InvalidSpec");
    assert!(
        c.message.contains("spec.userId") && c.message.contains("load-until"),
        "{}",
        c.message
    );
}

#[test]
fn a_phone_woken_by_load_until_is_parked_no_sooner_than_its_idle_timeout_after() {
    let until = at(100).to_string();
    let mut phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .load_until(&until)
        .build();
    phone.spec.user_id = Some("u1".into());
    let mut second = 0;
    let mut parked_at = None;
    // Woken at 0, restoring, loaded; the annotation expires at 100.
    for code in [
        0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    ] {
        let planned = phone.plan(Some(Observation::Status(code)), at(second));
        if planned.action == Some(Action::Backup) {
            parked_at = Some(second);
            break;
        }
        phone = phone.with_status(planned.status);
        second += 30;
    }
    let parked_at = parked_at.expect("parked in the end");
    assert!(parked_at >= 100 + 600, "parked at {parked_at}s: flapped");
}

// Review of issue 22 (adversarial): each test below failed on the code it was written against.

#[test]
fn a_backup_in_flight_when_a_user_starts_streaming_is_not_sent_again_the_moment_the_session_ends() {
    // Idle for its 10m: the backup is asked for at 600, and the vendor accepts it but never shows
    // it under way. A user streams from 630 to 1800: that observation restarts the idle clock, so
    // the session's end is no park (nor a second backup call) before 1800 + 600.
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .build();
    let first = phone.plan(Some(Observation::Status(2)), at(0));
    let phone = phone.with_status(first.status);
    let due = phone.plan(Some(Observation::Status(2)), at(600));
    assert_eq!(due.action, Some(Action::Backup));
    let mut status = due.status;
    status.backup.as_mut().unwrap().request_id = Some("request-1".into());
    let mut phone = phone.with_status(status);
    for second in (630..=1800).step_by(30) {
        let planned = phone.plan(Some(Observation::Status(3)), at(second));
        assert_eq!(
            planned.action, None,
            "backed up while streaming at {second}"
        );
        phone = phone.with_status(planned.status);
    }
    let ended = phone.plan(Some(Observation::Status(2)), at(1830));
    assert_eq!(
        ended.action, None,
        "a backup asked for again the moment the user stopped streaming, not after spec.idleTimeout"
    );
}

#[test]
fn a_stretch_spent_suspended_never_counts_as_idle() {
    // Waiting for idleness since 0, then suspended from 60 (no query: the operator sees nothing,
    // the user may stream all along), resumed at 3600 and seen loaded and unused.
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .build();
    let first = phone.plan(Some(Observation::Status(2)), at(0)).status;
    assert_eq!(first.idle_since, Some(Box::new(Time(at(0)))));
    let mut suspended = phone.clone().with_status(first);
    suspended.spec.suspend = true;
    let held = plan_one(&suspended.view(), &Disposition::Suspended, None, at(60))
        .status
        .into_owned();
    let mut resumed = suspended.clone().with_status(held);
    resumed.spec.suspend = false;
    let planned = resumed.plan(Some(Observation::Status(2)), at(3600));
    assert_eq!(
        planned.action, None,
        "parked on an idle stretch the operator never watched (idleSince {:?})",
        planned.status.idle_since
    );
}

#[test]
fn a_phone_whose_backup_already_left_never_reads_ready_to_stream_when_load_until_is_set() {
    // The session service sets load-until on a phone whose backup intent landed just before (the
    // call leaves within the intent age): the annotation's early tick must not tell it, or anyone
    // reading Ready, that the data is ready to stream while the backup is on its way.
    let mut phone = cloudphone("p", "kp1").backed_up().build();
    phone.spec.user_id = Some("u1".into());
    let due = phone.plan(Some(Observation::Status(2)), at(0));
    assert_eq!(due.action, Some(Action::Backup));
    let mut status = due.status;
    status.backup.as_mut().unwrap().request_id = Some("request-1".into());
    let mut phone = phone.with_status(status);
    phone
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(crate::api::LOAD_UNTIL.into(), at(3600).to_string());
    let planned = phone.plan(Some(Observation::Status(2)), at(2));
    assert!(planned.status.backup.as_ref().unwrap().in_flight);
    assert_ne!(
        ready(&planned.status),
        ("True", LOADED),
        "a phone being parked reads ready to stream"
    );
}

#[test]
fn a_load_until_with_a_fraction_of_a_second_wakes_no_phone_after_its_time() {
    let until = at(100) + jiff::SignedDuration::from_millis(500);
    let mut phone = cloudphone("p", "kp1")
        .backed_up()
        .load_until(&until.to_string())
        .build();
    phone.spec.user_id = Some("u1".into());
    let now = at(100) + jiff::SignedDuration::from_millis(700);
    let planned = phone.plan(Some(Observation::Status(0)), now);
    assert_eq!(
        planned.action, None,
        "woken at {now} for a load-until of {until}"
    );
}

#[test]
fn a_failed_observation_postpones_the_park_without_a_write_even_once_the_phone_is_seen_again() {
    // The issue and lifecycles.md: a missing or failed observation postpones the park "in memory,
    // with no write". A vendor that fails one query in three must not make every waiting phone
    // write its status after each failure (nextTransition and Ready's message moving with it).
    let config = config();
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .build();
    let first = phone.plan(Some(Observation::Status(2)), at(0)).status;
    let mut phone = phone.with_status(first);
    let mut writes = Vec::new();
    for (second, failed_at) in [(30, 20), (60, 50), (90, 80)] {
        let cx = Context {
            now: at(second),
            config: &config,
            earlier: &EarlierTerms::Settled,
        };
        let memory = Memory {
            unobserved: Some(at(failed_at)),
            ..Memory::default()
        };
        let view = phone.view();
        let planned = plan_phone(
            &view,
            &Disposition::Query,
            Some(&Observation::Status(2)),
            &memory,
            &cx,
        )
        .unwrap();
        assert_eq!(planned.action, None);
        if !planned.unchanged() {
            writes.push(second);
        }
        let status = planned.status.into_owned();
        phone = phone.with_status(status);
    }
    assert_eq!(
        writes,
        Vec::<i64>::new(),
        "a status write after each failure"
    );
}

#[test]
fn a_restore_that_never_ends_is_not_hidden_by_an_idle_timeout() {
    // A BackedUp phone (idleTimeout 0) and a Loaded one read Reconciling while the vendor shows
    // Restoring, so that cloudphone_longest_not_ready_seconds and the NotReady alert see a restore
    // stuck for hours. With an idleTimeout the phone reads WaitingForIdle (no kstatus condition,
    // Argo CD Healthy, not counted) for as long as the restore lasts.
    let phones = [
        cloudphone("declared", "kp1").backed_up().build(),
        cloudphone("idle", "kp1")
            .backed_up()
            .idle_timeout("10m")
            .build(),
    ];
    for phone in phones {
        let mut phone = phone;
        for second in (0..=7200).step_by(600) {
            let planned = phone.plan(Some(Observation::Status(1)), at(second));
            phone = phone.with_status(planned.status);
        }
        let status = phone.status.as_ref().unwrap();
        assert!(
            status.conditions.iter().any(|c| c.type_ == RECONCILING),
            "{}: restoring for two hours reads {:?}",
            phone.metadata.name.as_deref().unwrap_or_default(),
            ready(status)
        );
    }
}

#[test]
fn a_phone_the_operator_does_not_act_on_is_kept_at_what_it_declares() {
    // Waiting for idleness (kept loaded, a next transition), then suspended: the gauges and the
    // summary must not go on counting it as kept loaded.
    let phone = cloudphone("p", "kp1")
        .backed_up()
        .idle_timeout("10m")
        .build();
    let waiting = phone.plan(Some(Observation::Status(2)), at(0)).status;
    assert_eq!(
        waiting.effective_reason,
        Some(EffectiveReason::WaitingForIdle)
    );
    let mut suspended = phone.with_status(waiting);
    suspended.spec.suspend = true;
    let held = plan_one(&suspended.view(), &Disposition::Suspended, None, at(60));
    assert_eq!(
        kept(&held.status),
        (
            Some(Lifecycle::BackedUp),
            Some(EffectiveReason::Declared),
            None
        )
    );
    assert_eq!(held.status.idle_since, None);
    // Held again: nothing more to write.
    let again = suspended.clone().with_status(held.status.into_owned());
    let twice = plan_one(&again.view(), &Disposition::Suspended, None, at(120));
    assert!(twice.unchanged(), "{:?}", twice.status);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_scheduled_phone_is_never_woken_outside_its_time_nor_parked_inside_it(
        start in 0i16..1440,
        length in 1i16..1440,
        lead in prop_oneof![Just("0"), Just("30m"), Just("2h")],
        // Around Berlin's spring-forward night (2026-03-29), over a week.
        offset in 0i64..(7 * 86_400),
        code in 0i64..8,
        previous in 0usize..5,
        load_until in 0usize..3,
        anchored in any::<bool>(),
    ) {
        use crate::api::{CloudPhoneSchedule, CloudPhoneScheduleSpec, ScheduleWindow, Weekday};
        let hhmm = |m: i16| format!("{:02}:{:02}", m / 60 % 24, m % 60);
        let mut schedule = CloudPhoneSchedule::new(
            "office",
            CloudPhoneScheduleSpec {
                time_zone: "Europe/Berlin".into(),
                windows: vec![ScheduleWindow {
                    days: vec![Weekday::Mon, Weekday::Wed, Weekday::Thu, Weekday::Sat, Weekday::Sun],
                    start: hhmm(start),
                    end: hhmm((start + length) % 1440),
                }],
                exceptions: vec![],
                prewarm_lead: Some(lead.into()),
                suspend: false,
                dry_run: false,
            },
        );
        schedule.metadata.namespace = Some("fleet".into());
        prop_assume!(start != (start + length) % 1440);
        let now = Timestamp::from_second(1_774_310_400 + offset).unwrap(); // 2026-03-24T00:00Z
        let tick0 = ScheduleTick::read(&schedule, now, config().restore_estimate, None);
        if anchored && let ScheduleState::Active(active) = &tick0.state {
            schedule.status = Some(crate::api::CloudPhoneScheduleStatus {
                wave: Some(active.wave.clone()),
                ..Default::default()
            });
        }
        let tick = ScheduleTick::read(&schedule, now, config().restore_estimate, None);
        let verdict = schedule::read(&schedule.spec).unwrap().verdict(now);
        let kept = [
            None,
            Some((Lifecycle::BackedUp, EffectiveReason::OutsideWindow)),
            Some((Lifecycle::Loaded, EffectiveReason::ScheduleWindow)),
            Some((Lifecycle::BackedUp, EffectiveReason::Declared)),
            Some((Lifecycle::Loaded, EffectiveReason::LoadUntil)),
        ][previous];
        let until = [
            None,
            Some(now + jiff::SignedDuration::from_hours(1)),
            Some(now - jiff::SignedDuration::from_hours(1)),
        ][load_until];
        let mut phone = cloudphone("p", "kp1").scheduled("office", "u1").status(CloudPhoneStatus {
            effective_lifecycle: kept.map(|k| k.0),
            effective_reason: kept.map(|k| k.1),
            ..Default::default()
        });
        if let Some(until) = until {
            phone = phone.load_until(&until.to_string());
        }
        let phone = phone.build();
        let view = phone.view().with_schedule(ScheduleLink::Found(&tick));
        let p = plan_one(&view, &Disposition::Query, Some(&Observation::Status(code)), now);
        let kept_loaded = until.is_some_and(|t| now < t);
        match p.action {
            Some(Action::Prepare) => prop_assert!(
                verdict.lifecycle == Lifecycle::Loaded || kept_loaded,
                "woken at {now} outside its window ({verdict:?})"
            ),
            Some(Action::Backup) => prop_assert!(
                verdict.lifecycle == Lifecycle::BackedUp && !kept_loaded,
                "parked at {now} inside its window or its load-until ({verdict:?})"
            ),
            None => {}
        }
    }
}
