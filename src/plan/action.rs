//! The vendor actions the planner asks for, and what each one's call does to a phone's status: its
//! record in the status, its intent stamped as the call leaves, its outcome, a call that never left.
//! The one place that lists what an action is (see `ARCHITECTURE.md`, "Adding a vendor action").

use super::*;
use crate::api::{ActionStatus, CloudPhoneSpec, CloudPhoneStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// What an intent is stamped with as its call leaves (see [`Action::stamp_intent`]).
#[derive(Clone, Copy, Debug)]
pub struct CallStamp<'s> {
    /// When the call leaves.
    pub at: Timestamp,
    /// The `x-request-id` the call carries.
    pub request_id: &'s str,
    /// The account scope the call is made in.
    pub scope: &'s str,
    /// The call's key (see [`Action::call_key`]: a prepare's user).
    pub key: Option<&'s str>,
}

/// A vendor action the planner asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Back the instance's data up to object storage, releasing its physical instance.
    Backup,
    /// Bring the instance's data back onto a physical instance, ready to stream for a user.
    Prepare,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 2] = [Action::Backup, Action::Prepare];

    /// The action's place in [`Action::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short, bounded name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Backup => "backup",
            Action::Prepare => "prepare",
        }
    }

    /// After a call, no second one for the phone until the vendor shows it under way, or this long
    /// has passed.
    pub fn grace(self, config: &PlanConfig) -> Duration {
        match self {
            Action::Backup => config.grace_period,
            Action::Prepare => config.prepare_grace_period,
        }
    }

    /// True when the vendor's `phase` shows a call of the action under way or done: its record is
    /// then no longer in flight.
    pub fn settled_by(self, phase: Phase) -> bool {
        match self {
            Action::Backup => phase.is_parked_or_parking(),
            Action::Prepare => phase.is_loaded_or_loading(),
        }
    }

    /// True when the vendor's `phase` is the action's end state: a new cycle of attempts starts.
    pub fn done_by(self, phase: Phase) -> bool {
        match self {
            Action::Backup => phase == Phase::Idle,
            Action::Prepare => matches!(phase, Phase::DataLoaded | Phase::Streaming),
        }
    }

    /// The phase in which the vendor shows a call of the action under way.
    fn under_way(self) -> Phase {
        match self {
            Action::Backup => Phase::BackingUp,
            Action::Prepare => Phase::Restoring,
        }
    }

    /// When the vendor's `phase`, seen `now` after `previous`, completes a call of the action, if it
    /// does: the phase is the action's end state, and the phone was seen under way, or a call was
    /// requested after the last completion the status records (the vendor may go from queued to
    /// done between two ticks). Never before the request (a `requestedAt` is rounded up to the
    /// second), so that it never fires twice for one call: a steady phone writes nothing.
    pub fn completed(
        self,
        status: &CloudPhoneStatus,
        previous: Phase,
        phase: Phase,
        now: Timestamp,
    ) -> Option<Timestamp> {
        if !self.done_by(phase) {
            return None;
        }
        let requested = self
            .record(status)
            .and_then(|r| r.requested_at.as_ref())
            .map(|t| t.0);
        let last = self.completion(status).map(|t| t.0);
        let completed =
            previous == self.under_way() || requested.is_some_and(|r| last.is_none_or(|l| l < r));
        completed.then(|| requested.map_or(now, |r| now.max(r)))
    }

    /// The last completion of the action the status records (`lastBackupTime`,
    /// `lastLoadedTime`).
    pub fn completion(self, status: &CloudPhoneStatus) -> Option<&Time> {
        match self {
            Action::Backup => status.last_backup_time.as_ref(),
            Action::Prepare => status.last_loaded_time.as_ref(),
        }
    }

    /// The status field of the last completion of the action (`lastBackupTime`,
    /// `lastLoadedTime`).
    pub fn completion_mut(self, status: &mut CloudPhoneStatus) -> &mut Option<Time> {
        match self {
            Action::Backup => &mut status.last_backup_time,
            Action::Prepare => &mut status.last_loaded_time,
        }
    }

    /// The action's record in a phone's status (its last call: when, which request, attempts,
    /// whether it is in flight).
    pub fn record(self, status: &CloudPhoneStatus) -> Option<&ActionStatus> {
        match self {
            Action::Backup => status.backup.as_ref(),
            Action::Prepare => status.prepare.as_deref(),
        }
    }

    /// The action's record in a phone's status, to change it.
    pub fn record_mut(self, status: &mut CloudPhoneStatus) -> Option<&mut ActionStatus> {
        match self {
            Action::Backup => status.backup.as_mut(),
            Action::Prepare => status.prepare.as_deref_mut(),
        }
    }

    /// The action's record in a phone's status, made when it has none.
    pub fn record_or_default(self, status: &mut CloudPhoneStatus) -> &mut ActionStatus {
        match self {
            Action::Backup => status.backup.get_or_insert_with(ActionStatus::default),
            Action::Prepare => status.prepare.get_or_insert_with(Box::default),
        }
    }

    /// Replaces the action's record in a phone's status.
    pub fn set_record(self, status: &mut CloudPhoneStatus, record: Option<ActionStatus>) {
        match self {
            Action::Backup => status.backup = record,
            Action::Prepare => status.prepare = record.map(Box::new),
        }
    }

    /// The key that groups phones into one call within an account: phones of one call share it.
    /// A backup call takes any instances of the account; a prepare call, those of one user.
    pub fn call_key(self, spec: &CloudPhoneSpec) -> Option<&str> {
        match self {
            Action::Backup => None,
            Action::Prepare => spec.user_id.as_deref(),
        }
    }

    /// Re-stamps a planned intent with the time its call leaves (`at`, just before the intent is
    /// written), so that `requestedAt` and the grace period count from the call, not from the start
    /// of a tick that may have spent minutes querying; and with the `x-request-id` the call will
    /// carry, so that on the happy path the intent is the call's one status write; and with the
    /// account `scope` the call is made in, so that the intent is known whatever the phone names
    /// later; and with the call's `key` (a prepare's user), asked about before any second call.
    pub fn stamp_intent(
        self,
        status: &mut CloudPhoneStatus,
        generation: Option<i64>,
        stamp: CallStamp<'_>,
        config: &PlanConfig,
    ) {
        let CallStamp {
            at,
            request_id,
            scope,
            key,
        } = stamp;
        let at = next_whole_second(at);
        let Some(record) = self.record_mut(status) else {
            return;
        };
        record.requested_at = Some(Time(at));
        record.request_id = Some(request_id.to_owned());
        record.scope = Some(scope.to_owned());
        record.user_id = key.map(Box::from);
        record.unanswered_checks = 0;
        record.task_id = None;
        record.job_id = None;
        record.vendor_status = None;
        let ready = match self {
            // NB: the retry of a first `1001` keeps its reason through the intent: recording its
            // result tells a second refusal in a row from a first.
            Action::Backup
                if status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == READY && c.reason == BACKUP_PERMISSION_PENDING) =>
            {
                permission_retry(at)
            }
            Action::Backup => requested(Some(at), config),
            Action::Prepare => prepare_requested(Some(at), config),
        };
        Conditions {
            list: &mut status.conditions,
            generation,
            now: at,
        }
        .set(READY, ready.status, ready.reason, &ready.message);
    }

    /// A planned call that surely never left (withheld before it was sent, or not even tried: the
    /// account paused, its credentials unusable): the record as it was before the plan (`before`),
    /// so that no grace period runs for a call that does not exist and the next tick plans it
    /// again, and `Ready` saying why.
    pub fn not_sent(
        self,
        planned: &CloudPhoneStatus,
        before: Option<&ActionStatus>,
        generation: Option<i64>,
        why: &str,
        now: Timestamp,
    ) -> CloudPhoneStatus {
        let now = whole_seconds(now);
        let mut status = planned.clone();
        self.set_record(&mut status, before.cloned());
        let reason = match self {
            Action::Backup => "BackupCallFailed",
            Action::Prepare => "PrepareCallFailed",
        };
        Conditions {
            list: &mut status.conditions,
            generation,
            now,
        }
        .set(
            READY,
            "False",
            reason,
            &format!(
                "{why}: no {} call left; it is asked again next tick",
                self.name()
            ),
        );
        status
    }

    /// A planned call not sent because the vendor may still hold an earlier one of the instance
    /// (a question about it was `answered` that it does, or could not be answered): the record as
    /// it was before the plan (`before`), its grace period started again at `now`, so that the next
    /// question comes a grace period later, not every tick; the questions in a row not answered
    /// counted. The record keeps the user its own call named (`own_user` for one that names none),
    /// never another object's: that one is another tenant's to know.
    #[allow(clippy::too_many_arguments)]
    pub fn still_under_way(
        self,
        planned: &CloudPhoneStatus,
        before: Option<&ActionStatus>,
        generation: Option<i64>,
        own_user: Option<&str>,
        answered: bool,
        now: Timestamp,
        config: &PlanConfig,
    ) -> CloudPhoneStatus {
        let now = whole_seconds(now);
        let mut status = planned.clone();
        let mut record = before.cloned().unwrap_or_default();
        record.requested_at = Some(Time(now));
        record.in_flight = true;
        record.user_id = record.user_id.or_else(|| own_user.map(Box::from));
        record.unanswered_checks = if answered {
            0
        } else {
            record.unanswered_checks.saturating_add(1)
        };
        let ready = self.in_flight_ready(Some(&record), config);
        self.set_record(&mut status, Some(record));
        Conditions {
            list: &mut status.conditions,
            generation,
            now,
        }
        .set(READY, ready.status, ready.reason, &ready.message);
        status
    }

    /// The Ready condition while `record`'s call is in flight (within its grace period).
    fn in_flight_ready(self, record: Option<&ActionStatus>, config: &PlanConfig) -> ReadyCondition {
        match self {
            Action::Backup => requested(
                record.and_then(|r| r.requested_at.as_ref()).map(|t| t.0),
                config,
            ),
            Action::Prepare => prepare_in_flight(record, config),
        }
    }

    /// Records what came of the call in the status its intent wrote.
    pub fn record_result(
        self,
        status: &CloudPhoneStatus,
        generation: Option<i64>,
        result: &ActionResult,
        now: Timestamp,
        config: &PlanConfig,
    ) -> CloudPhoneStatus {
        match self {
            Action::Backup => backup::record_backup_result(status, generation, result, now, config),
            Action::Prepare => prepare::record_result(status, generation, result, now, config),
        }
    }

    /// What a fresh observation says of an instance whose call was refused whole: `None` when it
    /// still needs a call; otherwise the result to record without one.
    pub fn settled_without_a_call(self, observation: &Observation) -> Option<ActionResult> {
        match self {
            Action::Backup => backup::settled_without_a_call(observation),
            Action::Prepare => prepare::settled_without_a_call(observation),
        }
    }
}
