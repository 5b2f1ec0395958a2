//! The `BackedUp` lifecycle: from the vendor's status, the `Ready` condition and whether to call
//! backup now.

use super::*;
use crate::api::{CloudPhoneSpec, CloudPhoneStatus, Phase};
use jiff::Timestamp;
use std::time::Duration;

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
    let Cycle {
        requested_at,
        attempts,
        grace_end,
        unconfirmed,
        in_flight,
        may_lift,
        answered_until,
    } = Cycle::of(
        status.backup.as_ref(),
        config.grace_period,
        now,
        config,
        retry_refused,
    );
    let wait_until = |d: Duration| until(requested_at, d);
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
    // A permanent refusal holds until the spec changes: asking again cannot help (a reconcile
    // request lifts it: see `Cycle::may_lift`).
    if !may_lift
        && matches!(
            phase,
            Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed
        )
        && let Some(held) = held_refusal(status, generation, BACKUP_REFUSED)
    {
        return (held, false);
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
            } else if let Some(held) = held_answer(
                status,
                generation,
                answered_until.filter(|_| permission_pending.is_none()),
                |retry_at| {
                    ReadyCondition::new(
                        "False",
                        "BackupNotStarted",
                        format!(
                            "the vendor answered the backup requested at {} without starting one; next attempt at {}",
                            fmt_time(requested_at),
                            fmt_time(Some(retry_at))
                        ),
                    )
                },
            ) {
                (held, false)
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
