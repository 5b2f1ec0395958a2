//! A backup call's bookkeeping: the intent stamped as the call leaves, and what its outcome does to
//! the status.

use super::*;
use crate::api::{ActionStatus, CloudPhoneStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The Ready condition of the one retry after a first `1001`, from its plan to its result: the
/// same text before and after the intent's stamp, at the time the call leaves.
pub(super) fn permission_retry(at: Timestamp) -> ReadyCondition {
    ReadyCondition::new(
        "False",
        BACKUP_PERMISSION_PENDING,
        format!(
            "the vendor answered the last backup call with no permission (1001), which newly granted IAM permissions give for minutes: the call is retried once, at {at}; a second refusal holds the phone (BackupRefused) until the spec changes"
        ),
    )
}

/// What came of the backup call for one phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionResult {
    /// The vendor accepted the call.
    Accepted {
        request_id: String,
        task_id: Option<String>,
        job_id: Option<String>,
        /// When the call left: `requestedAt` becomes this, so that the grace period counts from
        /// the call even when it left seconds after its intent was written.
        sent_at: Timestamp,
        /// The vendor's answer for this instance, when the call's answer listed one (a prepare's
        /// `status_list`).
        vendor_status: Option<i64>,
    },
    /// The vendor answered 2006: a backup is already under way.
    AlreadyBackingUp,
    /// The vendor answered 2005: the instance is being restored.
    Restoring,
    /// The vendor shows the action's end state already (a prepare: the data on a physical
    /// instance): no call is needed.
    AlreadyDone,
    /// The vendor answered 4001: no such instance.
    NotFound,
    /// The call failed; `ambiguous` when the vendor may have acted on it (time-out, 5xx).
    Failed { failure: Failure, ambiguous: bool },
    /// The vendor refused the instance for good (not the tenant's, another region): no further
    /// call until the spec changes.
    Refused { failure: Failure },
    /// The vendor answered `1001`, no permission on the instance: for good, unless the account's
    /// IAM permissions were granted minutes ago and still propagate. A first one is retried once
    /// after the grace period; a second in a row is a refusal.
    NotPermitted { failure: Failure },
    /// No call was sent because the status recording it could not be written first.
    NotSent,
    /// The intent was written but the call was withheld (leadership not fresh, or the intent too
    /// old): the intent stays, without the request id of a call that never left, and its grace
    /// period runs as for a lost call.
    Withheld,
}

impl ActionResult {
    /// True when the call certainly started nothing at the vendor: anything but an accepted call or
    /// a failure whose fate is unknown (a time-out, a 5xx, a lost answer).
    pub fn started_nothing(&self) -> bool {
        match self {
            ActionResult::Accepted { .. } => false,
            ActionResult::Failed { ambiguous, .. } => !ambiguous,
            _ => true,
        }
    }

    /// A bounded label for metrics: `accepted`, `already_backing_up`, `restoring`, `already_done`,
    /// `not_found`, `failed`, `refused`, `not_sent` or `withheld`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ActionResult::Accepted { .. } => "accepted",
            ActionResult::AlreadyBackingUp => "already_backing_up",
            ActionResult::Restoring => "restoring",
            ActionResult::AlreadyDone => "already_done",
            ActionResult::NotFound => "not_found",
            ActionResult::Failed { .. } => "failed",
            ActionResult::Refused { .. } | ActionResult::NotPermitted { .. } => "refused",
            ActionResult::NotSent => "not_sent",
            ActionResult::Withheld => "withheld",
        }
    }
}

/// Records the outcome of a backup call in the status the plan wrote ahead of it.
pub(super) fn record_backup_result(
    status: &CloudPhoneStatus,
    generation: Option<i64>,
    result: &ActionResult,
    now: Timestamp,
    config: &PlanConfig,
) -> CloudPhoneStatus {
    let now = whole_seconds(now);
    let mut status = status.clone();
    // The intent of the one retry after a first `1001` carries its reason (see `stamp_intent`).
    let retried = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == BACKUP_PERMISSION_PENDING);
    let backup = status.backup.get_or_insert_with(ActionStatus::default);
    let requested_at = backup.requested_at.as_ref().map(|t| t.0);
    let grace_end = requested_at.and_then(|t| t.checked_add(config.grace_period).ok());
    // The intent carries the request id of the call it announces: a call that certainly started
    // no backup leaves none behind (and no BackupRequested event).
    if result.started_nothing() {
        backup.request_id = None;
    }
    let ready = match result {
        ActionResult::Accepted {
            request_id,
            sent_at,
            ..
        } => {
            // NB: the vendor's task and job ids are not recorded here: on the happy path the
            // intent is the one write of a backup, and they ride on the next write (see the engine).
            backup.request_id = Some(request_id.clone());
            // The grace period counts from when the call left, to the second: a call that left a
            // second or more after its intent moves it.
            let left = whole_seconds(*sent_at);
            let requested_at = requested_at.map_or(left, |at| at.max(left));
            backup.requested_at = Some(Time(requested_at));
            requested(Some(requested_at), config)
        }
        ActionResult::AlreadyBackingUp => ReadyCondition::new(
            "False",
            "BackingUp",
            "the vendor reports a backup of the instance already under way",
        ),
        // NB: never for a backup: the status query shows the end state.
        ActionResult::Restoring | ActionResult::AlreadyDone => {
            backup.in_flight = false;
            ReadyCondition::new(
                "False",
                "Restoring",
                "the vendor is restoring the instance; a backup follows when it is done",
            )
        }
        ActionResult::NotFound => {
            backup.in_flight = false;
            ReadyCondition::new(
                "False",
                "InstanceNotFound",
                "the vendor answered the backup call that the instance does not exist: check spec.instanceId",
            )
        }
        ActionResult::Failed { failure, ambiguous } => call_failed(
            "backup",
            "BackupCallFailed",
            "BackingUp",
            failure,
            *ambiguous,
            grace_end,
        ),
        ActionResult::NotPermitted { failure } if !retried => {
            // NB: not in flight: the hold until the grace period's end is the Ready reason's.
            backup.in_flight = false;
            ReadyCondition::new(
                "False",
                BACKUP_PERMISSION_PENDING,
                format!(
                    "the vendor refused the backup call ({}): {}; newly granted IAM permissions take minutes to propagate, so the call is retried once, after {}; a second refusal holds the phone (BackupRefused) until the spec changes",
                    failure.reason,
                    failure.message,
                    fmt_time(grace_end)
                ),
            )
        }
        ActionResult::Refused { failure } | ActionResult::NotPermitted { failure } => {
            backup.in_flight = false;
            refused_for_good(BACKUP_REFUSED, "back up", failure)
        }
        ActionResult::NotSent | ActionResult::Withheld => return status,
    };
    Conditions {
        list: &mut status.conditions,
        generation,
        now,
    }
    .set(READY, ready.status, ready.reason, &ready.message);
    status
}

/// The Ready condition from a backup call until the vendor shows it under way. The same text before
/// and after the call, so that planning again on a planned status changes nothing.
pub(super) fn requested(requested_at: Option<Timestamp>, config: &PlanConfig) -> ReadyCondition {
    let grace_end =
        requested_at.map(|t| t.checked_add(config.grace_period).unwrap_or(Timestamp::MAX));
    ReadyCondition::new(
        "False",
        "BackupRequested",
        format!(
            "backup requested at {}, waiting for the vendor to show BackingUp (asks again after {} if it does not)",
            fmt_time(requested_at),
            fmt_time(grace_end)
        ),
    )
}

/// What a fresh observation says of an instance whose backup call was refused whole: `None` when
/// it still needs a call; otherwise the result to record without one.
pub(super) fn settled_without_a_call(observation: &Observation) -> Option<ActionResult> {
    match observation {
        Observation::Status(code) => match Phase::from_code(*code) {
            // NB: Idle too: the backup ended between the calls; the next status query records it.
            Phase::BackingUp | Phase::Idle => Some(ActionResult::AlreadyBackingUp),
            Phase::Restoring => Some(ActionResult::Restoring),
            Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed => None,
            // Not a state a backup starts from: a call would be refused again.
            Phase::RestoreFailed | Phase::Unknown | Phase::Pending | Phase::NotFound => {
                Some(ActionResult::Failed {
                    failure: Failure {
                        reason: "NotBackupable".into(),
                        message: format!(
                            "the vendor shows status {code}, from which no backup starts"
                        ),
                    },
                    ambiguous: false,
                })
            }
        },
        Observation::Missing => Some(ActionResult::NotFound),
        // Not known: no call for it this tick. NB: not Withheld: the refused call did leave, so
        // its intent stays and its grace period runs.
        Observation::Failed(query) => Some(ActionResult::Failed {
            failure: Failure {
                reason: query.reason.clone(),
                message: format!(
                    "the backup call was refused whole, and the status query that followed failed ({}): {}",
                    query.reason, query.message
                ),
            },
            ambiguous: false,
        }),
    }
}
