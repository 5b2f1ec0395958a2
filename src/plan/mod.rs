//! The pure planner: desired specs, observed statuses and the engine's memory in, new statuses and
//! vendor actions out ([`plan_phone`], the one decision production makes for each phone).
//!
//! No I/O, no clock reads, no randomness: the tick passes `now` in. Guarantees, tested below and by
//! property tests: no action for `Observed` or suspended phones; at most one action per instance;
//! planning again on the planned output with the same observation adds no action; the new status
//! equals the old one when nothing changed, so an unchanged phone causes no write.
//!
//! - `identity`: keys, views and dispositions (ownership of an instance id).
//! - `observation`: what this tick's status query said of an instance.
//! - `input`: what else the plan of a phone is given: the engine's memory, the tick's context.
//! - `phone`: the per-phone plan and its output.
//! - `action`: the vendor actions, and what each one's call does to the status.
//! - `backed_up`: the `BackedUp` lifecycle's rules; `loaded`: the `Loaded` lifecycle's; `cycle`: where
//!   an action's cycle of calls stands, which both weigh.
//! - `backup`: the intent of a backup call and what its outcome records.
//! - [`events`]: events on transitions, and settledness.
//! - `conditions`: `Ready` and `Synced`, set with the Kubernetes conventions, and kstatus's
//!   `Reconciling` and `Stalled`, which follow `Ready`.
//! - `handover`: ownership moves between objects naming one instance.
//! - `account`: a CloudPhoneAccount's status and events after a tick.
//! - `effective`: the one table that decides what a phone is kept at (declared, `load-until`,
//!   idleness), and its parks and wakes.
//! - [`schedule`]: a schedule's windows and exceptions in its time zone; `scheduled`: each
//!   `CloudPhoneSchedule` at a tick, its wave, and what it makes of a `Scheduled` phone.

use jiff::Timestamp;
use std::time::Duration;

/// The `Ready` condition: the declared lifecycle is reached (or, for `Observed`, observed).
pub const READY: &str = "Ready";
/// The `Synced` condition: the last status query for this phone succeeded.
pub const SYNCED: &str = "Synced";

/// Tunables of the planner.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    /// After a backup call, no second call for the same phone until the vendor shows BackingUp or
    /// Idle, or this long has passed (the call was lost, or the vendor refused it).
    pub grace_period: Duration,
    /// The wait after a first failed backup before the next attempt; doubled for each further one.
    pub backoff_base: Duration,
    /// No wait between attempts exceeds this.
    pub backoff_max: Duration,
    /// After a prepare call, no second call for the same phone until the vendor shows Restoring or
    /// the data loaded, or this long has passed: restores take longer than backups.
    pub prepare_grace_period: Duration,
    /// The furthest ahead a `cloudphone.io/load-until` annotation may be; one further is ignored.
    pub max_load_until: Duration,
    /// How long a restore is taken to last: a schedule's wakes end this long before its window's
    /// start (see [`RESTORE_ESTIMATE`]).
    pub restore_estimate: Duration,
}

/// The default of [`PlanConfig::max_load_until`]: a week.
pub const DEFAULT_MAX_LOAD_UNTIL: Duration = Duration::from_secs(7 * 86_400);

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            // The vendor shows BackingUp within seconds of accepting a backup; two minutes covers a
            // slow vendor and a few missed ticks without leaving a lost call unnoticed for long.
            grace_period: Duration::from_secs(120),
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
            // A queued restore may wait minutes before the vendor shows Restoring.
            prepare_grace_period: Duration::from_secs(600),
            max_load_until: DEFAULT_MAX_LOAD_UNTIL,
            restore_estimate: RESTORE_ESTIMATE,
        }
    }
}

impl PlanConfig {
    /// The longest grace period of any action: how long any intent may be outstanding.
    pub fn longest_grace(&self) -> Duration {
        self.grace_period.max(self.prepare_grace_period)
    }

    /// The wait after the given number of failed attempts.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
        self.backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max)
    }
}

/// Kubernetes stores times to the second: planning in whole seconds keeps a status read back from
/// the API server equal to the one written, so that it is not written again.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `t` rounded up to a whole second: a `requestedAt` rounded down would end its grace period up to
/// a second early.
fn next_whole_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        return t;
    }
    Timestamp::from_second(t.as_second().saturating_add(1)).unwrap_or(t)
}

fn fmt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
}

mod account;
mod action;
mod backed_up;
mod backup;
mod conditions;
mod cycle;
mod effective;
mod events;
mod handover;
mod identity;
mod input;
mod loaded;
mod observation;
mod phone;
mod prepare;
pub mod schedule;
mod schedule_report;
mod scheduled;

pub use account::{AccountEvent, AccountTick, account_event, account_status};
pub use action::{Action, CallStamp};
use backed_up::backed_up;
pub use backup::ActionResult;
use backup::{permission_retry, requested};
pub use conditions::{
    BACKUP_PERMISSION_PENDING, BACKUP_REFUSED, Failure, LOADED, PREPARE_FAILED, PREPARE_REFUSED,
    RECONCILING, STALLED, STALLED_REASONS, WAITING_FOR_IDLE, kstatus_condition,
};
use conditions::{Conditions, LazyConditions, ReadyCondition, call_failed, refused_for_good};
use cycle::{Cycle, held_answer, held_refusal, until};
pub use effective::{
    Effective, IdleWait, LoadUntil, Move, effective, idle_timeout, idle_wait, moved,
};
pub use events::{PhoneEvent, events, is_settled};
use handover::handover_wait;
pub use handover::{AWAITING_HANDOVER, PREVIOUS_ACTION_PENDING};
pub use identity::{
    ACCOUNT_NOT_ALLOWED, ACCOUNT_NOT_FOUND, ACCOUNT_NOT_READY, AccountBlock, DEFAULT_SCOPE,
    Disposition, Dispositions, KeyRef, PhoneKey, PhoneView, Route, account_scope, dispositions,
};
pub use input::{Context, EarlierTerms, Intent, Intents, Memory, Receipt};
pub use loaded::UNANSWERED_CHECKS_REPORTED;
use loaded::{loaded, prepare_in_flight, prepare_requested};
pub use observation::Observation;
pub use phone::{Planned, plan_phone};
pub use schedule_report::{
    PREWARM_AT_RISK, Pace, SchedulePhones, VALID, is_late, schedule_status, should_be_ready,
};
pub use scheduled::{
    Active, DRY_RUN, EDGE_SLACK, Kept, MIN_SPREAD, RESTORE_ESTIMATE, SCHEDULE_INVALID,
    SCHEDULE_NOT_FOUND, SCHEDULE_SUSPENDED, ScheduleLink, ScheduleState, ScheduleTick, scheduled,
};

#[cfg(test)]
mod schedule_cases;
#[cfg(test)]
mod tests;
