//! Conditions set with the Kubernetes conventions, on an owned status or on one borrowed until it
//! changes; kstatus's `Reconciling` and `Stalled` follow `Ready`. Also what the plan's other
//! parts decide a Ready condition from: [`ReadyCondition`], [`Failure`], the backup reasons.

use super::*;
use crate::api::CloudPhoneStatus;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::borrow::Cow;

/// kstatus's abnormal-true condition: the operator is working towards the declared lifecycle.
pub const RECONCILING: &str = "Reconciling";
/// kstatus's abnormal-true condition: the phone cannot reach its lifecycle until a person acts.
pub const STALLED: &str = "Stalled";

/// The Ready reason of a permanent refusal by the vendor, held until `metadata.generation` changes.
pub const BACKUP_REFUSED: &str = "BackupRefused";

/// The Ready reason after a first `1001` (no permission on the instance) answered a backup call:
/// IAM permissions take minutes to propagate, so the call is retried once after the grace period;
/// a second `1001` in a row is [`BACKUP_REFUSED`].
pub const BACKUP_PERMISSION_PENDING: &str = "BackupPermissionPending";

/// The Ready reason of a `Loaded` phone whose data is on a physical instance.
pub const LOADED: &str = "Loaded";

/// The Ready reason of a permanent refusal of a prepare by the vendor, held until
/// `metadata.generation` changes.
pub const PREPARE_REFUSED: &str = "PrepareRefused";

/// The Ready reason of a `Loaded` phone whose restoration the vendor reports failed; retried with
/// the backoff of the attempts.
pub const PREPARE_FAILED: &str = "PrepareFailed";

/// The Ready reason of a `BackedUp` phone whose data is loaded and in use, or idle for less than
/// its `spec.idleTimeout`: it is where it should be for now (no kstatus condition).
pub const WAITING_FOR_IDLE: &str = "WaitingForIdle";

/// Ready reasons that say a person must act: the phone is `Stalled`.
pub const STALLED_REASONS: [&str; 12] = [
    BACKUP_REFUSED,
    PREPARE_REFUSED,
    "RestoreFailed",
    "InstanceNotFound",
    "DuplicateInstance",
    "InvalidSpec",
    "UnknownStatus",
    ACCOUNT_NOT_FOUND,
    ACCOUNT_NOT_ALLOWED,
    ACCOUNT_NOT_READY,
    super::SCHEDULE_NOT_FOUND,
    super::SCHEDULE_INVALID,
];

/// Which of kstatus's conditions a Ready condition implies, True; the other is absent. None while
/// Ready is True, or the phone is suspended (nothing is under way, and nothing is wrong).
pub fn kstatus_condition(ready_status: &str, reason: &str) -> Option<&'static str> {
    if ready_status == "True" || reason == "Suspended" || reason == WAITING_FOR_IDLE {
        None
    } else if STALLED_REASONS.contains(&reason) {
        Some(STALLED)
    } else {
        Some(RECONCILING)
    }
}

fn is_kstatus(type_: &str) -> bool {
    type_ == RECONCILING || type_ == STALLED
}

/// The conditions of one status, set with the Kubernetes conventions.
pub(super) struct Conditions<'a> {
    pub(super) list: &'a mut Vec<Condition>,
    pub(super) generation: Option<i64>,
    pub(super) now: Timestamp,
}

impl Conditions<'_> {
    /// Sets a condition; `lastTransitionTime` changes only when its status changes.
    pub(super) fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let now = Time(self.now);
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                    c.status = status.to_owned();
                }
                if c.reason != reason {
                    c.reason = reason.to_owned();
                }
                if c.message != message {
                    c.message = message.to_owned();
                }
                c.observed_generation = self.generation;
            }
            None => {
                self.list.push(Condition {
                    type_: type_.to_owned(),
                    status: status.to_owned(),
                    reason: reason.to_owned(),
                    message: message.to_owned(),
                    observed_generation: self.generation,
                    last_transition_time: now,
                });
                // Ready first, then Synced, whatever order they were first set in.
                self.list.sort_by_key(|c| match c.type_.as_str() {
                    READY => 0,
                    SYNCED => 1,
                    _ => 2,
                });
            }
        }
        if type_ == READY {
            let derived = kstatus_condition(status, reason);
            self.list
                .retain(|c| !is_kstatus(&c.type_) || Some(c.type_.as_str()) == derived);
            if let Some(t) = derived {
                self.set(t, "True", reason, message);
            }
        }
    }
}

/// [`Conditions`] on a status borrowed until a condition actually changes: setting a condition
/// to what it already says copies nothing.
pub(super) struct LazyConditions<'s, 'a> {
    pub(super) status: &'s mut Cow<'a, CloudPhoneStatus>,
    pub(super) generation: Option<i64>,
    pub(super) now: Timestamp,
}

impl LazyConditions<'_, '_> {
    pub(super) fn has(&self, type_: &str) -> bool {
        self.status.conditions.iter().any(|c| c.type_ == type_)
    }

    pub(super) fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let says = |type_: &str, status: &str| {
            self.status.conditions.iter().any(|c| {
                c.type_ == type_
                    && c.status == status
                    && c.reason == reason
                    && c.message == message
                    && c.observed_generation == self.generation
            })
        };
        let mut same = says(type_, status);
        if same && type_ == READY {
            // kstatus's conditions follow Ready (a status written before them gets them too).
            let derived = kstatus_condition(status, reason);
            same = derived.is_none_or(|t| says(t, "True"))
                && self
                    .status
                    .conditions
                    .iter()
                    .all(|c| !is_kstatus(&c.type_) || Some(c.type_.as_str()) == derived);
        }
        if !same {
            Conditions {
                list: &mut self.status.to_mut().conditions,
                generation: self.generation,
                now: self.now,
            }
            .set(type_, status, reason, message);
        }
    }
}

/// The Ready condition a plan decides.
pub(super) struct ReadyCondition {
    pub(super) status: &'static str,
    pub(super) reason: &'static str,
    /// Most messages are fixed texts: no allocation for them on every phone of every tick.
    pub(super) message: Cow<'static, str>,
}

impl ReadyCondition {
    pub(super) fn new(
        status: &'static str,
        reason: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> ReadyCondition {
        ReadyCondition {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// A failed vendor call, as it is reported on a phone: a CamelCase reason (a bounded label such
/// as `Timeout` or `Internal`) and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

/// The Ready condition after a failed `what` call (`reason`): why, whether the vendor may have
/// acted on it (then the phase it `shows` when it did), and when the next call may go.
pub(super) fn call_failed(
    what: &str,
    reason: &'static str,
    shows: &str,
    failure: &Failure,
    ambiguous: bool,
    grace_end: Option<Timestamp>,
) -> ReadyCondition {
    let next = if ambiguous {
        format!("the vendor may have started it: waiting for it to show {shows}")
    } else {
        "the vendor did not act on it".to_owned()
    };
    ReadyCondition::new(
        "False",
        reason,
        format!(
            "{what} call failed ({}): {}; {next}; the next call is not before {}",
            failure.reason,
            failure.message,
            fmt_time(grace_end)
        ),
    )
}

/// The Ready condition (`reason`) of a call the vendor refuses for good (to `verb` the instance):
/// held until the spec changes.
pub(super) fn refused_for_good(
    reason: &'static str,
    verb: &str,
    failure: &Failure,
) -> ReadyCondition {
    ReadyCondition::new(
        "False",
        reason,
        format!(
            "the vendor refuses to {verb} the instance ({}): {}; no further call until the spec changes",
            failure.reason, failure.message
        ),
    )
}
