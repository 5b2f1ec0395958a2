//! Where one action's cycle of calls stands, read from its record in a phone's status: what every
//! lifecycle that asks for an action weighs before asking again.

use super::*;
use crate::api::{ActionStatus, CloudPhoneStatus};
use jiff::Timestamp;
use std::time::Duration;

/// An action's cycle of calls at `now`.
pub(super) struct Cycle {
    /// When the last call was (to be) sent.
    pub requested_at: Option<Timestamp>,
    /// Calls of the current cycle.
    pub attempts: i32,
    /// When the last call's grace period ends.
    pub grace_end: Option<Timestamp>,
    /// The last call was never seen under way or done.
    pub unconfirmed: bool,
    /// ... and its grace period runs still: no second call.
    pub in_flight: bool,
    /// The vendor answered the last call without starting anything (no such instance, already
    /// under way or done) and the backoff of its attempt runs until then: no call before, even
    /// while the vendor's status still shows the phase a call starts from.
    pub answered_until: Option<Timestamp>,
    /// A new reconcile request may lift a refusal: at most once per backoff step after the refused
    /// call, so that a request repeated in a loop is no storm of refused calls.
    pub may_lift: bool,
}

impl Cycle {
    /// The cycle of `record`, whose calls have a `grace` period; `retry_refused` when a person asks
    /// to try again.
    pub(super) fn of(
        record: Option<&ActionStatus>,
        grace: Duration,
        now: Timestamp,
        config: &PlanConfig,
        retry_refused: bool,
    ) -> Cycle {
        let requested_at = record.and_then(|r| r.requested_at.as_ref()).map(|t| t.0);
        let attempts = record.map_or(0, |r| r.attempts);
        let grace_end = until(requested_at, grace);
        let unconfirmed = record.is_some_and(|r| r.in_flight);
        // NB: a call that may have started something keeps its request id (see `record_result`).
        let answered = record.is_some_and(|r| !r.in_flight && r.request_id.is_none());
        Cycle {
            requested_at,
            attempts,
            grace_end,
            unconfirmed,
            in_flight: unconfirmed && grace_end.is_some_and(|end| now < end),
            answered_until: until(requested_at, config.backoff(attempts))
                .filter(|until| answered && attempts > 0 && now < *until),
            may_lift: retry_refused
                && until(requested_at, config.backoff(attempts.max(1)))
                    .is_none_or(|until| now >= until),
        }
    }
}

/// `d` after `from`.
pub(super) fn until(from: Option<Timestamp>, d: Duration) -> Option<Timestamp> {
    from.map(|t| t.checked_add(d).unwrap_or(Timestamp::MAX))
}

/// The Ready condition while a call the vendor answered without starting anything waits for its
/// backoff (see [`Cycle::answered_until`]): the one its answer wrote, or else `fallback`. `None`
/// when the spec changed since (a new generation calls at once).
pub(super) fn held_answer(
    status: &CloudPhoneStatus,
    generation: Option<i64>,
    answered_until: Option<Timestamp>,
    fallback: impl FnOnce(Timestamp) -> ReadyCondition,
) -> Option<ReadyCondition> {
    // NB: the reasons a call's answer writes when it started nothing (see `record_result`).
    const ANSWERED: [&str; 3] = ["InstanceNotFound", "BackingUp", "Restoring"];
    let until = answered_until?;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .filter(|c| c.observed_generation == generation)?;
    Some(match ANSWERED.into_iter().find(|r| *r == ready.reason) {
        Some(reason) => ReadyCondition::new("False", reason, ready.message.clone()),
        None => fallback(until),
    })
}

/// The Ready condition of a refusal (`reason`) the status holds for this `generation`: held until
/// the spec changes.
pub(super) fn held_refusal(
    status: &CloudPhoneStatus,
    generation: Option<i64>,
    reason: &'static str,
) -> Option<ReadyCondition> {
    let refused = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.reason == reason)
        .filter(|c| c.observed_generation == generation)?;
    Some(ReadyCondition::new(
        "False",
        reason,
        refused.message.clone(),
    ))
}
