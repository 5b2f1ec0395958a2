//! The `Loaded` lifecycle: from the vendor's status, the `Ready` condition and whether to call
//! prepare now.

use super::*;
use crate::api::{ActionStatus, CloudPhoneStatus, Phase};
use jiff::Timestamp;
use std::time::Duration;

/// The `Loaded` lifecycle: the Ready condition, and whether to call prepare now.
///
/// The declared end state is the data on a physical instance (DataLoaded or Streaming). From Idle
/// a prepare is called; Restoring and BackingUp are waited through (a backup under way finishes
/// first); a RestoreFailed is retried with the backoff of a failed backup.
pub(super) fn loaded(
    generation: Option<i64>,
    status: &CloudPhoneStatus,
    code: i64,
    now: Timestamp,
    config: &PlanConfig,
    retry_refused: bool,
) -> (ReadyCondition, bool) {
    let Cycle {
        requested_at,
        attempts,
        grace_end,
        unconfirmed,
        in_flight,
        may_lift,
        answered_until,
    } = Cycle::of(
        status.prepare.as_deref(),
        config.prepare_grace_period,
        now,
        config,
        retry_refused,
    );
    let wait_until = |d: Duration| until(requested_at, d);
    let phase = Phase::from_code(code);
    // A permanent refusal holds until the spec changes (a reconcile request lifts it: see
    // `Cycle::may_lift`).
    if !may_lift
        && matches!(phase, Phase::Idle | Phase::RestoreFailed)
        && let Some(held) = held_refusal(status, generation, PREPARE_REFUSED)
    {
        return (held, false);
    }
    match phase {
        Phase::DataLoaded | Phase::Streaming => (
            ReadyCondition::new(
                "True",
                LOADED,
                "instance data is on a physical instance, ready to stream",
            ),
            false,
        ),
        // NB: a backup exception leaves the data where it was: on the physical instance.
        Phase::BackupFailed => (
            ReadyCondition::new(
                "True",
                LOADED,
                "instance data is on a physical instance (the vendor reports that an earlier backup failed: the data never left it)",
            ),
            false,
        ),
        Phase::Restoring => (
            ReadyCondition::new(
                "False",
                "Restoring",
                "the vendor is restoring the instance's data onto a physical instance",
            ),
            false,
        ),
        Phase::BackingUp => (
            ReadyCondition::new(
                "False",
                "BackingUp",
                "a backup of the instance is under way: the instance is prepared when it ends",
            ),
            false,
        ),
        Phase::Idle => {
            // The vendor never showed the last call's restore start within the grace period: ask
            // again (after asking the vendor whether it holds it queued), with the backoff of the
            // attempts so far.
            let retry_at = grace_end.map(|end| {
                end.checked_add(config.backoff(attempts))
                    .unwrap_or(Timestamp::MAX)
            });
            if in_flight {
                (prepare_in_flight(status.prepare.as_deref(), config), false)
            } else if let Some(held) = held_answer(status, generation, answered_until, |retry_at| {
                ReadyCondition::new(
                    "False",
                    "PrepareNotStarted",
                    format!(
                        "the vendor answered the prepare requested at {} without starting one; next attempt at {}",
                        fmt_time(requested_at),
                        fmt_time(Some(retry_at))
                    ),
                )
            }) {
                (held, false)
            } else if unconfirmed
                && retry_at.is_some_and(|at| now < at)
                && status
                    .prepare
                    .as_ref()
                    .is_some_and(|r| r.unanswered_checks >= UNANSWERED_CHECKS_REPORTED)
            {
                // NB: the same text as while in flight: no flip to PrepareNotStarted and back.
                (prepare_in_flight(status.prepare.as_deref(), config), false)
            } else if unconfirmed && retry_at.is_some_and(|at| now < at) {
                (
                    ReadyCondition::new(
                        "False",
                        "PrepareNotStarted",
                        format!(
                            "the vendor did not show the prepare requested at {} as started within the grace period; next attempt at {}",
                            fmt_time(requested_at),
                            fmt_time(retry_at)
                        ),
                    ),
                    false,
                )
            } else {
                (prepare_requested(Some(now), config), true)
            }
        }
        Phase::RestoreFailed => {
            let retry_at = wait_until(config.backoff(attempts));
            if in_flight {
                (prepare_in_flight(status.prepare.as_deref(), config), false)
            } else if attempts > 0 && retry_at.is_some_and(|at| now < at) {
                (
                    ReadyCondition::new(
                        "False",
                        PREPARE_FAILED,
                        format!(
                            "the vendor reports a restoration exception after attempt {attempts}; next attempt at {}",
                            fmt_time(retry_at)
                        ),
                    ),
                    false,
                )
            } else {
                (prepare_requested(Some(now), config), true)
            }
        }
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

/// Questions in a row the vendor could not answer about an unconfirmed prepare (whether it still
/// holds it queued), from which the phone says so: Ready reason PrepareFailed, still no second call.
pub const UNANSWERED_CHECKS_REPORTED: i32 = 3;

/// The Ready condition of a prepare in flight: requested, waiting for the vendor to show it under
/// way; PrepareFailed once the vendor could not say [`UNANSWERED_CHECKS_REPORTED`] times in a row
/// whether it still holds it (the operator sends no second prepare until it can).
pub(super) fn prepare_in_flight(
    record: Option<&ActionStatus>,
    config: &PlanConfig,
) -> ReadyCondition {
    let requested_at = record.and_then(|r| r.requested_at.as_ref()).map(|t| t.0);
    let Some(record) = record.filter(|r| r.unanswered_checks >= UNANSWERED_CHECKS_REPORTED) else {
        return prepare_requested(requested_at, config);
    };
    ReadyCondition::new(
        "False",
        PREPARE_FAILED,
        format!(
            "the vendor could not say {} times in a row whether it still holds the prepare of this instance for user {} (prepare-progress failed): no second prepare is sent until it can; asked again after {}",
            record.unanswered_checks,
            record.user_id.as_deref().unwrap_or("(not recorded)"),
            fmt_time(until(requested_at, config.prepare_grace_period))
        ),
    )
}

/// The Ready condition from a prepare call until the vendor shows it under way. The same text
/// before and after the call, so that planning again on a planned status changes nothing.
pub(super) fn prepare_requested(
    requested_at: Option<Timestamp>,
    config: &PlanConfig,
) -> ReadyCondition {
    let grace_end = requested_at.map(|t| {
        t.checked_add(config.prepare_grace_period)
            .unwrap_or(Timestamp::MAX)
    });
    ReadyCondition::new(
        "False",
        "PrepareRequested",
        format!(
            "prepare requested at {}, waiting for the vendor to show Restoring (asks again after {} if it does not)",
            fmt_time(requested_at),
            fmt_time(grace_end)
        ),
    )
}
