//! The plan of one phone: from its object, this tick's observation of its instance and what the
//! engine remembers of it, its new status and the vendor action to take, if any.

use super::*;
use crate::api::{
    CloudPhoneStatus, EffectiveReason, LOAD_UNTIL as LOAD_UNTIL_ANNOTATION, Lifecycle, Phase,
    Transition,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::borrow::Cow;

/// The plan for one phone.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned<'a> {
    /// The status to write: borrowed from the old one while nothing changed (a steady phone costs
    /// no copy), owned once something did. With an action, it already records the action's call,
    /// to be written before the call is sent.
    pub status: Cow<'a, CloudPhoneStatus>,
    /// The vendor action to take for the phone's instance.
    pub action: Option<Action>,
    /// The phone's receipt (see [`Memory::receipt`]) rides on this status, or belongs to an older
    /// call: it is forgotten.
    pub receipt_spent: bool,
    /// The action planned for the phone and why it is held (an ownership move, an earlier term),
    /// if it is.
    pub held: Option<(Action, String)>,
    /// Before the planned prepare is sent, ask the vendor whether it still holds an earlier one of
    /// the instance for each of these users (`prepare-progress`): the phone's own call never seen
    /// under way, and another object's before this one owned the instance. The vendor shows an
    /// instance Idle while its prepare is queued, so the status alone cannot tell. Empty: none.
    pub ask_progress: Vec<String>,
}

impl Planned<'_> {
    /// True when the planned status is the old one, untouched.
    pub fn unchanged(&self) -> bool {
        matches!(self.status, Cow::Borrowed(_))
    }
}

/// Plans one phone: `None` while it waits (the store lags this term's write of it, or its account's
/// project is not known yet: no call, no write); otherwise its new status from its disposition and
/// this tick's observation, and its action, held while the phone's other action is in flight or an
/// ownership move may have one outstanding for the instance; the vendor's ids of its last accepted
/// call ride on a status written anyway.
pub fn plan_phone<'a>(
    phone: &PhoneView<'a>,
    disposition: &Disposition,
    observation: Option<&Observation>,
    memory: &Memory<'_>,
    cx: &Context<'_>,
) -> Option<Planned<'a>> {
    if memory.lagging || phone.account == Route::Unknown {
        return None;
    }
    let mut planned = from_observation(
        phone,
        disposition,
        observation,
        memory.unobserved,
        cx.now,
        cx.config,
    );
    if let Some(action) = planned.action
        && let Some(why) = previous_action(action, Some(&planned.status), cx.now, cx.config)
    {
        hold_for(
            &mut planned,
            action,
            PREVIOUS_ACTION_PENDING,
            phone,
            why,
            cx.now,
        );
    }
    if let Some(action) = planned.action
        && let Some(why) = handover_wait(
            phone,
            memory
                .intents
                .and_then(|intents| intents.previous(phone, cx.now, cx.config)),
            cx.earlier,
            cx.now,
            cx.config,
        )
    {
        hold_for(&mut planned, action, AWAITING_HANDOVER, phone, why, cx.now);
    }
    if planned.action == Some(Action::Prepare) {
        planned.ask_progress = earlier_prepares(phone, memory, cx);
    }
    // NB: only on a phone observed this tick: a phone its account no longer serves (or suspended,
    // or a duplicate) shows nothing the vendor said, its own call's ids included.
    if let Some(receipt) = memory.receipt
        && *disposition == Disposition::Query
    {
        planned.receipt_spent = ride(phone.status, &mut planned.status, receipt);
    }
    Some(planned)
}

/// Why a planned `action` must wait for another action's call on the instance, if it must: that
/// call's intent is in flight in `status` (as this tick's observation left it: the vendor has not
/// shown it under way) and within its grace period.
/// Switching a lifecycle back and forth never leaves two actions in flight for one instance.
fn previous_action(
    action: Action,
    status: Option<&CloudPhoneStatus>,
    now: Timestamp,
    config: &PlanConfig,
) -> Option<String> {
    let status = status?;
    Action::ALL
        .into_iter()
        .filter(|a| *a != action)
        .find_map(|other| {
            let record = other.record(status).filter(|r| r.in_flight)?;
            let at = record.requested_at.as_ref()?.0;
            let until = at
                .checked_add(other.grace(config))
                .unwrap_or(Timestamp::MAX);
            (now < until).then(|| {
                format!(
                    "the {} requested at {at} is not yet seen under way: no {} before {until}",
                    other.name(),
                    action.name()
                )
            })
        })
}

/// The users of the earlier prepares of the phone's instance the vendor may still hold queued: the
/// phone's own, never seen under way (in flight past its grace period), and another object's that
/// this term remembers (see [`Intents::earlier_prepares`]), each the user its call named, whatever
/// the spec names now (the spec's for a record that does not say).
fn earlier_prepares(phone: &PhoneView, memory: &Memory<'_>, cx: &Context<'_>) -> Vec<String> {
    let spec_user = || phone.spec.user_id.clone();
    let own = phone
        .status
        .and_then(|s| Action::Prepare.record(s))
        .filter(|r| r.in_flight)
        .and_then(|own| own.user_id.as_deref().map(str::to_owned).or_else(spec_user));
    let mut users: Vec<String> = own.into_iter().collect();
    for other in memory
        .intents
        .into_iter()
        .flat_map(|intents| intents.earlier_prepares(phone, cx.now, cx.config))
    {
        if let Some(user) = other.user.clone().or_else(spec_user)
            && !users.contains(&user)
        {
            users.push(user);
        }
    }
    users
}

/// Holds the planned `action`: the phone keeps its old record of it and says why it waits.
fn hold_for<'a>(
    planned: &mut Planned<'a>,
    action: Action,
    reason: &str,
    phone: &PhoneView<'a>,
    why: String,
    now: Timestamp,
) {
    let status = planned.status.to_mut();
    action.set_record(status, phone.status.and_then(|s| action.record(s)).cloned());
    Conditions {
        list: &mut status.conditions,
        generation: phone.generation,
        now: whole_seconds(now),
    }
    .set(READY, "False", reason, &why);
    // NB: a phone held tick after tick plans its old status again: no copy of it.
    if let Some(old) = phone.status
        && *planned.status == *old
    {
        planned.status = Cow::Borrowed(old);
    }
    planned.action = None;
    planned.held = Some((action, why));
}

/// Puts the vendor's task and job ids of the call that `status` records into it when it is written
/// anyway: the happy path costs no write of its own for them. True when the receipt is spent: it
/// rode, or it belongs to an older call than the one recorded.
fn ride(
    old: Option<&CloudPhoneStatus>,
    status: &mut Cow<'_, CloudPhoneStatus>,
    receipt: &Receipt,
) -> bool {
    let recorded = status.backup.as_ref().and_then(|b| b.request_id.as_deref());
    if recorded != Some(receipt.request_id.as_str()) {
        return true;
    }
    if matches!(status, Cow::Borrowed(_)) || old == Some(&**status) {
        return false;
    }
    let Some(backup) = status.to_mut().backup.as_mut() else {
        return false;
    };
    backup.task_id = receipt.task_id.clone();
    backup.job_id = receipt.job_id.clone();
    true
}

/// The status and action of one phone from its disposition and this tick's observation.
fn from_observation<'a>(
    phone: &PhoneView<'a>,
    disposition: &Disposition,
    observation: Option<&Observation>,
    unobserved: Option<Timestamp>,
    now: Timestamp,
    config: &PlanConfig,
) -> Planned<'a> {
    // NB: the exact time for a load-until: one with a fraction of a second ends at it, not at the
    // next whole second.
    let exact_now = now;
    let now = whole_seconds(now);
    let mut status = match phone.status {
        Some(old) => Cow::Borrowed(old),
        None => Cow::Owned(CloudPhoneStatus::default()),
    };
    if status.observed_generation != phone.generation {
        status.to_mut().observed_generation = phone.generation;
    }
    let mut c = LazyConditions {
        status: &mut status,
        generation: phone.generation,
        now,
    };
    let id = &phone.spec.instance_id;
    // A phone that makes no vendor call says why, in both conditions.
    let no_call: Option<(&str, &str, Cow<str>)> = match disposition {
        Disposition::Suspended => Some((
            "Unknown",
            "Suspended",
            Cow::Borrowed("spec.suspend is true: the operator makes no vendor call for this phone"),
        )),
        Disposition::InvalidSpec { message } => {
            Some(("False", "InvalidSpec", Cow::Borrowed(message.as_str())))
        }
        // NB: the owner is named only to its own namespace: another tenant learns no more than
        // that the instance is taken.
        Disposition::Duplicate { owner } if owner.namespace == phone.key.namespace => Some((
            "False",
            "DuplicateInstance",
            Cow::Owned(format!(
                "instance {id} is managed by the older CloudPhone {owner}; this one makes no vendor \
                 call: delete it or point spec.instanceId at another instance"
            )),
        )),
        Disposition::Duplicate { .. } => Some((
            "False",
            "DuplicateInstance",
            Cow::Owned(format!(
                "instance {id} is managed by another, older CloudPhone; this one makes no vendor \
                 call: delete it or point spec.instanceId at another instance"
            )),
        )),
        Disposition::AccountBlocked(block) => {
            Some(("False", block.reason, Cow::Borrowed(block.message.as_str())))
        }
        Disposition::Query => None,
    };
    if let Some((condition, reason, message)) = no_call {
        c.set(READY, condition, reason, &message);
        c.set(SYNCED, condition, reason, &message);
        // NB: a stretch the operator does not watch (suspended, blocked, a duplicate) never counts
        // as idle: the wait starts again once it watches.
        if status.idle_since.is_some() {
            status.to_mut().idle_since = None;
        }
        // NB: nor is it kept at anything but what it declares: no stale "kept loaded" (or next
        // transition) left for the gauges and the summary to count.
        if status
            .effective_lifecycle
            .is_some_and(|l| l != phone.spec.lifecycle)
            || status
                .effective_reason
                .is_some_and(|r| r != EffectiveReason::Declared)
            || status.next_transition.is_some()
        {
            let s = status.to_mut();
            s.effective_lifecycle = Some(phone.spec.lifecycle);
            s.effective_reason = Some(EffectiveReason::Declared);
            s.next_transition = None;
        }
        // A phone its account does not serve shows nothing the vendor said, even what an earlier
        // account saw: whether an id exists in a project is not a tenant's to learn.
        if matches!(disposition, Disposition::AccountBlocked(_))
            && (status.instance_status.is_some() || status.phase != Phase::Pending)
        {
            let s = status.to_mut();
            s.instance_status = None;
            s.phase = Phase::Pending;
        }
        return Planned::no_action(status);
    }
    match observation {
        None => {
            if !c.has(READY) {
                c.set(
                    READY,
                    "Unknown",
                    "Pending",
                    "waiting for the first status query",
                );
            }
            Planned::no_action(status)
        }
        Some(Observation::Failed(failure)) => {
            c.set(SYNCED, "False", &failure.reason, &failure.message);
            if !c.has(READY) {
                c.set(
                    READY,
                    "Unknown",
                    "Pending",
                    "waiting for a successful status query",
                );
            }
            Planned::no_action(status)
        }
        Some(Observation::Missing) => {
            echo_reconcile_request(phone, &mut status);
            if status.instance_status.is_some() || status.phase != Phase::NotFound {
                let s = status.to_mut();
                s.instance_status = None;
                s.phase = Phase::NotFound;
            }
            let mut c = LazyConditions {
                status: &mut status,
                generation: phone.generation,
                now,
            };
            c.set(SYNCED, "True", "Observed", "");
            c.set(
                READY,
                "False",
                "InstanceNotFound",
                &format!(
                    "the vendor does not list instance {id}: check spec.instanceId and that the \
                     credentials' project holds it"
                ),
            );
            Planned::no_action(status)
        }
        Some(Observation::Status(code)) => {
            // A new reconcile request lifts a BackupRefused hold: a person asks to try again.
            let retry_refused = echo_reconcile_request(phone, &mut status);
            let phase = Phase::from_code(*code);
            let previous_phase = status.phase;
            if status.instance_status != Some(*code) || status.phase != phase {
                let s = status.to_mut();
                s.instance_status = Some(*code);
                s.phase = phase;
            }
            for action in Action::ALL {
                if let Some(done) = action.completed(&status, previous_phase, phase, now) {
                    *action.completion_mut(status.to_mut()) = Some(Time(done));
                }
                let Some(record) = action.record(&status) else {
                    continue;
                };
                let settle = record.in_flight && action.settled_by(phase);
                let reset = record.attempts != 0 && action.done_by(phase);
                if settle || reset {
                    let record = action.record_mut(status.to_mut()).expect("checked above");
                    if settle {
                        record.in_flight = false;
                        record.unanswered_checks = 0;
                    }
                    if reset {
                        record.attempts = 0;
                    }
                }
            }
            let load_until = LoadUntil::read(phone.load_until, exact_now, config.max_load_until);
            let schedule_name = phone
                .spec
                .schedule_ref
                .as_ref()
                .map_or("", |r| r.name.as_str());
            let (mut kept, held) = match phone.spec.lifecycle {
                Lifecycle::Scheduled => {
                    // NB: a load-until ahead keeps a parked verdict loaded, and is one phone's
                    // explicit wake (the session service's handshake) for a phone waiting for its
                    // turn, or whose schedule cannot be followed, as for any other: it moves no
                    // fleet.
                    let kept_loaded = Some(effective(Lifecycle::BackedUp, load_until, exact_now))
                        .filter(|e| e.reason == EffectiveReason::LoadUntil);
                    match scheduled(
                        phone.schedule,
                        schedule_name,
                        phone.uid,
                        &status,
                        phase,
                        exact_now,
                    ) {
                        Kept::At(at) if at.lifecycle == Lifecycle::BackedUp => {
                            (kept_loaded.unwrap_or(at), None)
                        }
                        Kept::At(at) => (at, None),
                        Kept::Held { shown, ready } => match kept_loaded {
                            Some(e) => (e, None),
                            None => (shown, Some(ready)),
                        },
                    }
                }
                declared => (effective(declared, load_until, exact_now), None),
            };
            // NB: a dry run of a schedule that cannot be followed (not valid, suspended) says why
            // it is held, not what it would do.
            let dry_run = match phone.schedule {
                ScheduleLink::Found(tick) if phone.spec.lifecycle == Lifecycle::Scheduled => {
                    tick.dry_run && matches!(tick.state, ScheduleState::Active(_))
                }
                _ => false,
            };
            let mut idle_since = None;
            let mut keep_ready = false;
            let (ready, action) = match (held, kept.lifecycle) {
                (Some(ready), _) => {
                    // NB: a held phone keeps its idle clock as it was: nothing is decided on it;
                    // but a use seen meanwhile restarts it, or its turn parks a phone used minutes
                    // ago on a clock started before the use.
                    idle_since = status
                        .idle_since
                        .as_deref()
                        .map(|t| t.0)
                        .filter(|_| !matches!(phase, Phase::Streaming | Phase::Restoring));
                    let ready = match ready {
                        Some((reason, st, message)) => ReadyCondition::new(st, reason, message),
                        None => {
                            // NB: waiting for its turn changes nothing of what the phone is: its
                            // Ready condition stays as it was, unless it says why the schedule
                            // could not be followed (that has passed) or there is none.
                            keep_ready = status.conditions.iter().any(|c| {
                                c.type_ == READY
                                    && ![
                                        SCHEDULE_NOT_FOUND,
                                        SCHEDULE_INVALID,
                                        SCHEDULE_SUSPENDED,
                                        DRY_RUN,
                                    ]
                                    .contains(&c.reason.as_str())
                            });
                            ReadyCondition::new(
                                "Unknown",
                                "Pending",
                                format!(
                                    "waiting for its turn in the wave of CloudPhoneSchedule {schedule_name}"
                                ),
                            )
                        }
                    };
                    (ready, None)
                }
                (None, Lifecycle::Observed | Lifecycle::Scheduled) => (
                    ReadyCondition::new(
                        "True",
                        "Observed",
                        "the operator only observes this instance",
                    ),
                    None,
                ),
                (None, Lifecycle::BackedUp) => {
                    // NB: the schema (and the dispositions) refuse an idleTimeout that is not one.
                    let timeout =
                        idle_timeout(phone.spec.idle_timeout.as_deref()).unwrap_or_default();
                    let wait = (!timeout.is_zero())
                        .then(|| idle_wait(&status, phase, timeout, unobserved, now));
                    idle_since = wait.and_then(|w| w.since);
                    // NB: a backup asked for within its grace period is waited for as any; one the
                    // vendor never showed under way is asked again only once idle again.
                    let asked = backup_in_grace(&status, now, config);
                    match wait {
                        Some(wait)
                            if !asked
                                && ((wait.in_use && phase == Phase::Streaming)
                                    || wait.until.is_some()) =>
                        {
                            kept = Effective {
                                lifecycle: Lifecycle::Loaded,
                                reason: EffectiveReason::WaitingForIdle,
                                next: wait.due.map(|at| (at, Lifecycle::BackedUp)),
                            };
                            (waiting_for_idle(wait, phase, phone.spec), None)
                        }
                        _ => {
                            let (ready, call) = backed_up(
                                phone.spec,
                                phone.generation,
                                &status,
                                *code,
                                now,
                                config,
                                retry_refused,
                            );
                            (ready, call.then_some(Action::Backup))
                        }
                    }
                }
                (None, Lifecycle::Loaded)
                    if kept.reason == EffectiveReason::LoadUntil
                        && backup_in_grace(&status, now, config) =>
                {
                    // NB: never "ready to stream" while being parked: the session service that set
                    // the annotation after the backup's intent landed reads this and picks another.
                    (
                        ReadyCondition::new(
                            "False",
                            "BackupRequested",
                            format!(
                                "a backup was requested before the {LOAD_UNTIL_ANNOTATION} annotation was set: the phone is being parked (pick another); the annotation wakes it again afterwards unless it is removed"
                            ),
                        ),
                        None,
                    )
                }
                (None, Lifecycle::Loaded) => {
                    let (ready, call) =
                        loaded(phone.generation, &status, *code, now, config, retry_refused);
                    match phone.spec.user_id {
                        // NB: only a BackedUp phone kept loaded by its load-until annotation names
                        // no user: the dispositions refuse a Loaded one.
                        None if call => (
                            ReadyCondition::new(
                                "False",
                                "InvalidSpec",
                                format!(
                                    "the {LOAD_UNTIL_ANNOTATION} annotation keeps the data loaded, but spec.userId names no user to ready the instance for: it is neither prepared nor backed up until the annotation's time"
                                ),
                            ),
                            None,
                        ),
                        _ => (ready, call.then_some(Action::Prepare)),
                    }
                }
            };
            let (ready, action) = if dry_run {
                (dry_run_ready(action, kept, schedule_name), None)
            } else {
                (ready, action)
            };
            let ready = match (&phone.schedule, kept.reason) {
                (ScheduleLink::Found(tick), EffectiveReason::Exception) => {
                    named_exception(ready, tick, schedule_name)
                }
                _ => ready,
            };
            let idle_since = idle_since.map(|at| Box::new(Time(at)));
            let next = kept.next.map(|(at, lifecycle)| {
                Box::new(Transition {
                    at: Time(whole_seconds(at)),
                    lifecycle,
                })
            });
            if status.idle_since != idle_since
                || status.effective_lifecycle != Some(kept.lifecycle)
                || status.effective_reason != Some(kept.reason)
                || status.next_transition != next
            {
                let s = status.to_mut();
                s.idle_since = idle_since;
                s.effective_lifecycle = Some(kept.lifecycle);
                s.effective_reason = Some(kept.reason);
                s.next_transition = next;
            }
            if let Some(action) = action {
                let record = action.record_or_default(status.to_mut());
                record.requested_at = Some(Time(now));
                record.request_id = None;
                record.task_id = None;
                record.job_id = None;
                record.vendor_status = None;
                record.attempts = record.attempts.saturating_add(1);
                record.in_flight = true;
            }
            let mut c = LazyConditions {
                status: &mut status,
                generation: phone.generation,
                now,
            };
            c.set(SYNCED, "True", "Observed", "");
            if !keep_ready {
                c.set(READY, ready.status, ready.reason, &ready.message);
            }
            Planned {
                status,
                action,
                receipt_spent: false,
                held: None,
                ask_progress: Vec::new(),
            }
        }
    }
}

/// The Ready condition of a phone whose schedule is a dry run: what it would do.
fn dry_run_ready(action: Option<Action>, kept: Effective, schedule: &str) -> ReadyCondition {
    let would = match action {
        Some(Action::Prepare) => "would prepare (wake) it now".to_owned(),
        Some(Action::Backup) => "would back it up (park it) now".to_owned(),
        None => format!("keeps it {}", kept.lifecycle.as_str()),
    };
    ReadyCondition::new(
        "True",
        DRY_RUN,
        format!(
            "CloudPhoneSchedule {schedule} is a dry run: nothing is called; the schedule {would}"
        ),
    )
}

/// `ready` with the name of the schedule's exception in force appended.
fn named_exception(ready: ReadyCondition, tick: &ScheduleTick, schedule: &str) -> ReadyCondition {
    let ScheduleState::Active(active) = &tick.state else {
        return ready;
    };
    let Some(name) = active.exception.as_deref() else {
        return ready;
    };
    ReadyCondition::new(
        ready.status,
        ready.reason,
        format!(
            "{} (exception {name} of CloudPhoneSchedule {schedule})",
            ready.message
        ),
    )
}

/// True when a backup of the phone was asked for and its grace period runs (the vendor has not shown
/// it under way yet).
fn backup_in_grace(status: &CloudPhoneStatus, now: Timestamp, config: &PlanConfig) -> bool {
    status.backup.as_ref().is_some_and(|b| {
        b.in_flight
            && b.requested_at
                .as_ref()
                .and_then(|t| t.0.checked_add(config.grace_period).ok())
                .is_some_and(|end| now < end)
    })
}

/// The Ready condition of a BackedUp phone waiting for idleness (`wait`, at an observation of
/// `phase`).
fn waiting_for_idle(
    wait: IdleWait,
    phase: Phase,
    spec: &crate::api::CloudPhoneSpec,
) -> ReadyCondition {
    let timeout = spec.idle_timeout.as_deref().unwrap_or_default();
    let message = match (wait.due.filter(|_| wait.until.is_some()), phase) {
        (Some(due), _) => format!(
            "the data is loaded and unused since {}: backed up at {due} unless it is used before (spec.idleTimeout {timeout}; later if the operator could not watch it meanwhile)",
            fmt_time(wait.since)
        ),
        (None, Phase::Streaming) => format!(
            "a user is streaming: the backup waits until the phone has been unused for spec.idleTimeout ({timeout})"
        ),
        (None, _) => format!(
            "the data is being restored: the backup waits until the phone has been loaded and unused for spec.idleTimeout ({timeout})"
        ),
    };
    ReadyCondition::new("False", WAITING_FOR_IDLE, message)
}

/// Echoes a new `cloudphone.io/reconcile-requested-at` in `status.lastHandledReconcileAt`: called
/// on a vendor observation, made in this tick, which started after the snapshot showed the value.
/// True when the value is new.
fn echo_reconcile_request(phone: &PhoneView, status: &mut Cow<'_, CloudPhoneStatus>) -> bool {
    match phone.reconcile_requested {
        Some(requested) if status.last_handled_reconcile_at.as_deref() != Some(requested) => {
            status.to_mut().last_handled_reconcile_at = Some(requested.to_owned());
            true
        }
        _ => false,
    }
}

impl<'a> Planned<'a> {
    fn no_action(status: Cow<'a, CloudPhoneStatus>) -> Planned<'a> {
        Planned {
            status,
            action: None,
            receipt_spent: false,
            held: None,
            ask_progress: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ActionStatus;
    use crate::api::CloudPhone;
    use crate::test_phone::cloudphone;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).unwrap()
    }

    /// BackedUp phone `fleet/p` of instance `kp1`.
    fn phone(status: Option<CloudPhoneStatus>) -> CloudPhone {
        let phone = cloudphone("p", "kp1").uid("u-p").created(-100);
        match status {
            Some(status) => phone.status(status),
            None => phone,
        }
        .build()
    }

    /// A status recording an accepted backup call `request-1`, still in flight.
    fn requested() -> CloudPhoneStatus {
        CloudPhoneStatus {
            instance_status: Some(2),
            phase: Phase::DataLoaded,
            backup: Some(ActionStatus {
                requested_at: Some(Time(at(0))),
                request_id: Some("request-1".into()),
                attempts: 1,
                in_flight: true,
                ..ActionStatus::default()
            }),
            ..CloudPhoneStatus::default()
        }
    }

    fn receipt(request_id: &str) -> Receipt {
        Receipt {
            request_id: request_id.into(),
            task_id: Some("task-9".into()),
            job_id: Some("job-9".into()),
        }
    }

    fn plan<'a>(
        view: &PhoneView<'a>,
        disposition: &Disposition,
        observation: Option<&Observation>,
        memory: &Memory,
    ) -> Option<Planned<'a>> {
        let config = PlanConfig::default();
        let cx = Context {
            now: at(10),
            config: &config,
            earlier: &EarlierTerms::Settled,
        };
        plan_phone(view, disposition, observation, memory, &cx)
    }

    #[test]
    fn a_phone_whose_write_the_cache_lags_or_whose_account_is_unknown_is_not_planned() {
        let p = phone(None);
        let loaded = Observation::Status(2);
        let lagging = Memory {
            lagging: true,
            ..Memory::default()
        };
        let known = PhoneView::of(&p, Route::Scope(DEFAULT_SCOPE));
        assert!(plan(&known, &Disposition::Query, Some(&loaded), &lagging).is_none());
        let unknown = PhoneView::of(&p, Route::Unknown);
        let d = dispositions(std::slice::from_ref(&unknown));
        assert!(
            d.queried.is_empty(),
            "a phone whose account is unknown owns nothing"
        );
        assert!(plan(&unknown, &d[0], None, &Memory::default()).is_none());
        let planned = plan(
            &known,
            &Disposition::Query,
            Some(&loaded),
            &Memory::default(),
        );
        assert_eq!(planned.unwrap().action, Some(Action::Backup));
    }

    #[test]
    fn the_vendors_ids_ride_on_a_write_of_their_call_only_and_never_on_a_phone_its_account_does_not_serve()
     {
        // The status as the planner leaves it after the call, so that planning it again with the
        // same observation changes nothing.
        let first = phone(Some(requested()));
        let status = plan(
            &PhoneView::of(&first, Route::Scope(DEFAULT_SCOPE)),
            &Disposition::Query,
            Some(&Observation::Status(2)),
            &Memory::default(),
        )
        .unwrap()
        .status
        .into_owned();
        let mine = receipt("request-1");
        let memory = Memory {
            receipt: Some(&mine),
            ..Memory::default()
        };
        let p = phone(Some(status));
        let phone = PhoneView::of(&p, Route::Scope(DEFAULT_SCOPE));
        // Nothing else changes: no write, and the receipt waits.
        let steady = plan(
            &phone,
            &Disposition::Query,
            Some(&Observation::Status(2)),
            &memory,
        )
        .unwrap();
        assert!(steady.unchanged() && !steady.receipt_spent);
        // The vendor shows the backup under way: the write carries the ids.
        let written = plan(
            &phone,
            &Disposition::Query,
            Some(&Observation::Status(4)),
            &memory,
        )
        .unwrap();
        assert!(written.receipt_spent);
        let b = written.status.backup.as_ref().unwrap();
        assert_eq!(
            (b.task_id.as_deref(), b.job_id.as_deref()),
            (Some("task-9"), Some("job-9"))
        );
        // A receipt of another call is dropped, never written.
        let older = receipt("request-0");
        let stale = plan(
            &phone,
            &Disposition::Query,
            Some(&Observation::Status(4)),
            &Memory {
                receipt: Some(&older),
                ..Memory::default()
            },
        )
        .unwrap();
        assert!(stale.receipt_spent);
        assert_eq!(stale.status.backup.as_ref().unwrap().task_id, None);
        // Its account no longer serves the phone: the status is rewritten, without the ids.
        let block = AccountBlock {
            reason: ACCOUNT_NOT_ALLOWED,
            message: "CloudPhoneAccount \"a\" does not admit namespace \"fleet\"".into(),
        };
        let blocked = PhoneView::of(&p, Route::Blocked(block.clone()));
        let planned = plan(&blocked, &Disposition::AccountBlocked(block), None, &memory).unwrap();
        assert!(!planned.unchanged());
        assert!(
            !planned.receipt_spent,
            "the receipt waits for a write the phone's account serves"
        );
        assert_eq!(planned.status.backup.as_ref().unwrap().task_id, None);
    }
}
