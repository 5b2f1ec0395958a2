//! A prepare call's bookkeeping: the intent stamped as the call leaves, what its outcome does to the
//! status, and what a fresh observation settles without a call.

use super::*;
use crate::api::{CloudPhoneStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Records the outcome of a prepare call in the status the plan wrote ahead of it.
pub(super) fn record_result(
    status: &CloudPhoneStatus,
    generation: Option<i64>,
    result: &ActionResult,
    now: Timestamp,
    config: &PlanConfig,
) -> CloudPhoneStatus {
    let now = whole_seconds(now);
    let mut status = status.clone();
    let prepare = status.prepare.get_or_insert_with(Box::default);
    let requested_at = prepare.requested_at.as_ref().map(|t| t.0);
    let grace_end = requested_at.and_then(|t| t.checked_add(config.prepare_grace_period).ok());
    if result.started_nothing() {
        prepare.request_id = None;
    }
    let ready = match result {
        ActionResult::Accepted {
            request_id,
            sent_at,
            vendor_status,
            ..
        } => {
            prepare.request_id = Some(request_id.clone());
            prepare.vendor_status = vendor_status.and_then(|v| i32::try_from(v).ok());
            let left = whole_seconds(*sent_at);
            let requested_at = requested_at.map_or(left, |at| at.max(left));
            prepare.requested_at = Some(Time(requested_at));
            prepare_requested(Some(requested_at), config)
        }
        ActionResult::AlreadyBackingUp => {
            prepare.in_flight = false;
            ReadyCondition::new(
                "False",
                "BackingUp",
                "a backup of the instance is under way: the instance is prepared when it ends",
            )
        }
        ActionResult::Restoring | ActionResult::AlreadyDone => {
            prepare.in_flight = false;
            ReadyCondition::new(
                "False",
                "Restoring",
                "the vendor shows the instance's data restoring or restored: no prepare call is needed",
            )
        }
        ActionResult::NotFound => {
            prepare.in_flight = false;
            ReadyCondition::new(
                "False",
                "InstanceNotFound",
                "the vendor answered the prepare call that the instance does not exist: check spec.instanceId",
            )
        }
        ActionResult::Failed { failure, ambiguous } => call_failed(
            "prepare",
            "PrepareCallFailed",
            "Restoring",
            failure,
            *ambiguous,
            grace_end,
        ),
        ActionResult::Refused { failure } | ActionResult::NotPermitted { failure } => {
            prepare.in_flight = false;
            refused_for_good(PREPARE_REFUSED, "prepare", failure)
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

/// What a fresh observation says of an instance whose prepare call was refused whole: `None` when
/// it still needs a call; otherwise the result to record without one.
pub(super) fn settled_without_a_call(observation: &Observation) -> Option<ActionResult> {
    match observation {
        Observation::Status(code) => match Phase::from_code(*code) {
            Phase::Idle | Phase::RestoreFailed => None,
            Phase::Restoring => Some(ActionResult::Restoring),
            Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed => {
                Some(ActionResult::AlreadyDone)
            }
            Phase::BackingUp => Some(ActionResult::AlreadyBackingUp),
            Phase::Unknown | Phase::Pending | Phase::NotFound => Some(ActionResult::Failed {
                failure: Failure {
                    reason: "NotPreparable".into(),
                    message: format!(
                        "the vendor shows status {code}, from which no prepare starts"
                    ),
                },
                ambiguous: false,
            }),
        },
        Observation::Missing => Some(ActionResult::NotFound),
        Observation::Failed(query) => Some(ActionResult::Failed {
            failure: Failure {
                reason: query.reason.clone(),
                message: format!(
                    "the prepare call was refused whole, and the status query that followed failed ({}): {}",
                    query.reason, query.message
                ),
            },
            ambiguous: false,
        }),
    }
}
