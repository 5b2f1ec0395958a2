//! The plan of one phone: its new status from this tick's observation, and whether to back it up.

use super::*;
use crate::api::{BackupStatus, CloudPhoneSpec, CloudPhoneStatus, Lifecycle, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::borrow::Cow;
use std::time::Duration;

/// What this tick's status query said of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The vendor listed the instance with this status code.
    Status(i64),
    /// The vendor's answer did not list the instance.
    Missing,
    /// The query for this instance failed.
    Failed(Failure),
}

/// The plan for one phone.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned<'a> {
    /// The status to write: borrowed from the old one while nothing changed (a steady phone costs
    /// no copy), owned once something did. When `backup` is true it already records the backup
    /// call, to be written before the call is sent.
    pub status: Cow<'a, CloudPhoneStatus>,
    /// Request a backup of the phone's instance.
    pub backup: bool,
}

impl Planned<'_> {
    /// True when the planned status is the old one, untouched.
    pub fn unchanged(&self) -> bool {
        matches!(self.status, Cow::Borrowed(_))
    }
}

/// Plans one phone from its disposition and this tick's observation of its instance.
pub fn plan_phone<'a>(
    phone: &PhoneView<'a>,
    disposition: &Disposition,
    observation: Option<&Observation>,
    now: Timestamp,
    config: &PlanConfig,
) -> Planned<'a> {
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
        // A phone its account does not serve shows nothing the vendor said, even what an earlier
        // account saw: whether an id exists in a project is not a tenant's to learn.
        if matches!(disposition, Disposition::AccountBlocked(_))
            && (status.instance_status.is_some() || status.phase != Phase::Pending)
        {
            let s = status.to_mut();
            s.instance_status = None;
            s.phase = Phase::Pending;
        }
        return Planned {
            status,
            backup: false,
        };
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
            Planned {
                status,
                backup: false,
            }
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
            Planned {
                status,
                backup: false,
            }
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
            Planned {
                status,
                backup: false,
            }
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
            if phase == Phase::Idle
                && let Some(done) = backup_completed(&status, previous_phase, now)
            {
                status.to_mut().last_backup_time = Some(Time(done));
            }
            if let Some(b) = status.backup.as_ref() {
                let settle = b.in_flight && matches!(phase, Phase::BackingUp | Phase::Idle);
                let reset = b.attempts != 0 && phase == Phase::Idle;
                if settle || reset {
                    let b = status.to_mut().backup.as_mut().expect("checked above");
                    if settle {
                        b.in_flight = false;
                    }
                    if reset {
                        b.attempts = 0;
                    }
                }
            }
            let (ready, backup) = match phone.spec.lifecycle {
                Lifecycle::Observed => (
                    ReadyCondition::new(
                        "True",
                        "Observed",
                        "the operator only observes this instance",
                    ),
                    false,
                ),
                Lifecycle::BackedUp => backed_up(
                    phone.spec,
                    phone.generation,
                    &status,
                    *code,
                    now,
                    config,
                    retry_refused,
                ),
            };
            if backup {
                let b = status
                    .to_mut()
                    .backup
                    .get_or_insert_with(BackupStatus::default);
                b.requested_at = Some(Time(now));
                b.request_id = None;
                b.task_id = None;
                b.job_id = None;
                b.attempts = b.attempts.saturating_add(1);
                b.in_flight = true;
            }
            let mut c = LazyConditions {
                status: &mut status,
                generation: phone.generation,
                now,
            };
            c.set(SYNCED, "True", "Observed", "");
            c.set(READY, ready.status, ready.reason, &ready.message);
            Planned { status, backup }
        }
    }
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

/// When the vendor's Idle, seen `now`, completes a backup, if it does: the phone was BackingUp, or
/// a backup was requested after the last completion the status records (the vendor may go from
/// queued to Idle between two ticks). Never before the request (a `requestedAt` is rounded up to
/// the second), so that it never fires twice for one backup: a steady Idle phone writes nothing.
fn backup_completed(
    status: &CloudPhoneStatus,
    previous_phase: Phase,
    now: Timestamp,
) -> Option<Timestamp> {
    let requested = status
        .backup
        .as_ref()
        .and_then(|b| b.requested_at.as_ref())
        .map(|t| t.0);
    let last = status.last_backup_time.as_ref().map(|t| t.0);
    let completed =
        previous_phase == Phase::BackingUp || requested.is_some_and(|r| last.is_none_or(|l| l < r));
    completed.then(|| requested.map_or(now, |r| now.max(r)))
}

/// The `BackedUp` lifecycle: the Ready condition, and whether to call backup now.
pub(super) fn backed_up(
    spec: &CloudPhoneSpec,
    generation: Option<i64>,
    status: &CloudPhoneStatus,
    code: i64,
    now: Timestamp,
    config: &PlanConfig,
    retry_refused: bool,
) -> (ReadyCondition, bool) {
    let backup = status.backup.as_ref();
    let requested_at = backup.and_then(|b| b.requested_at.as_ref()).map(|t| t.0);
    let attempts = backup.map_or(0, |b| b.attempts);
    let wait_until = |d: Duration| requested_at.map(|t| t.checked_add(d).unwrap_or(Timestamp::MAX));
    let grace_end = wait_until(config.grace_period);
    let unconfirmed = backup.is_some_and(|b| b.in_flight);
    let in_flight = unconfirmed && grace_end.is_some_and(|end| now < end);
    let waiting_for_vendor = || requested(requested_at, config);
    // After a first `1001` (not in flight: no call is awaited), the one retry is held until the
    // grace period's end; the retry carries the reason, so that a second `1001` is a refusal.
    let permission_pending = (!unconfirmed)
        .then(|| {
            status.conditions.iter().find(|c| {
                c.type_ == READY
                    && c.reason == BACKUP_PERMISSION_PENDING
                    && c.observed_generation == generation
            })
        })
        .flatten();
    let request = || match permission_pending {
        Some(_) => (permission_retry(now), true),
        None => (requested(Some(now), config), true),
    };
    let phase = Phase::from_code(code);
    // A permanent refusal holds until the spec changes: asking again cannot help. A reconcile
    // request lifts it, at most once per backoff step after the refused call: a request repeated
    // in a loop is no storm of refused calls.
    let may_lift = retry_refused
        && wait_until(config.backoff(attempts.max(1))).is_none_or(|until| now >= until);
    if !may_lift
        && matches!(
            phase,
            Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed
        )
        && let Some(refused) = status
            .conditions
            .iter()
            .find(|c| c.type_ == READY && c.reason == BACKUP_REFUSED)
        && refused.observed_generation == generation
    {
        return (
            ReadyCondition::new("False", BACKUP_REFUSED, refused.message.clone()),
            false,
        );
    }
    if let Some(pending) = permission_pending
        && matches!(
            phase,
            Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed
        )
        && grace_end.is_some_and(|end| now < end)
    {
        return (
            ReadyCondition::new("False", BACKUP_PERMISSION_PENDING, pending.message.clone()),
            false,
        );
    }
    match phase {
        Phase::Idle => (
            ReadyCondition::new(
                "True",
                "BackedUp",
                "instance data is in object storage; no physical instance is held",
            ),
            false,
        ),
        Phase::BackingUp => (
            ReadyCondition::new(
                "False",
                "BackingUp",
                "the vendor is backing up the instance",
            ),
            false,
        ),
        Phase::Restoring => (
            ReadyCondition::new(
                "False",
                "Restoring",
                "the vendor is restoring the instance; a backup follows when it is done",
            ),
            false,
        ),
        Phase::Streaming if !spec.interrupt_streaming => (
            ReadyCondition::new(
                "False",
                "Streaming",
                "a user is streaming: the backup waits until the session ends (set spec.interruptStreaming: true to back up anyway)",
            ),
            false,
        ),
        Phase::DataLoaded | Phase::Streaming => {
            // The vendor never showed the last call's backup start within the grace period: ask
            // again, but with the backoff of the attempts so far, not every grace period forever.
            let retry_at = grace_end.map(|end| {
                end.checked_add(config.backoff(attempts))
                    .unwrap_or(Timestamp::MAX)
            });
            if in_flight {
                (waiting_for_vendor(), false)
            } else if unconfirmed && retry_at.is_some_and(|at| now < at) {
                (
                    ReadyCondition::new(
                        "False",
                        "BackupNotStarted",
                        format!(
                            "the vendor did not show the backup requested at {} as started within the grace period; next attempt at {}",
                            fmt_time(requested_at),
                            fmt_time(retry_at)
                        ),
                    ),
                    false,
                )
            } else {
                request()
            }
        }
        Phase::BackupFailed => {
            let retry_at = wait_until(config.backoff(attempts));
            if in_flight {
                (waiting_for_vendor(), false)
            } else if attempts > 0 && retry_at.is_some_and(|at| now < at) {
                (
                    ReadyCondition::new(
                        "False",
                        "BackupFailed",
                        format!(
                            "the vendor reports a backup exception after attempt {attempts}; next attempt at {}",
                            fmt_time(retry_at)
                        ),
                    ),
                    false,
                )
            } else {
                request()
            }
        }
        Phase::RestoreFailed => (
            ReadyCondition::new(
                "False",
                "RestoreFailed",
                "the vendor reports a restoration exception; the operator does not act: check the instance in the KooPhone console",
            ),
            false,
        ),
        Phase::Unknown | Phase::Pending | Phase::NotFound => (
            ReadyCondition::new(
                "False",
                "UnknownStatus",
                format!(
                    "vendor status code {code} is not known to this operator version; no action is taken"
                ),
            ),
            false,
        ),
    }
}
