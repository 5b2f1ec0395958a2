//! The vendor actions the planner asks for, and what each one's call does to a phone's status: its
//! record in the status, its intent stamped as the call leaves, its outcome, a call that never left.
//! The one place that lists what an action is (see `ARCHITECTURE.md`, "Adding a vendor action").

use super::*;
use crate::api::{BackupStatus, CloudPhoneStatus};
use jiff::Timestamp;

/// A vendor action the planner asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Back the instance's data up to object storage, releasing its physical instance.
    Backup,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 1] = [Action::Backup];

    /// The action's place in [`Action::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short, bounded name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Backup => "backup",
        }
    }

    /// The action's record in a phone's status (its last call: when, which request, attempts,
    /// whether it is in flight).
    pub fn record(self, status: &CloudPhoneStatus) -> Option<&BackupStatus> {
        match self {
            Action::Backup => status.backup.as_ref(),
        }
    }

    /// The action's record in a phone's status, to change it.
    pub fn record_mut(self, status: &mut CloudPhoneStatus) -> &mut Option<BackupStatus> {
        match self {
            Action::Backup => &mut status.backup,
        }
    }

    /// The key that groups phones into one call within an account: phones of one call share it.
    /// A backup call takes any instances of the account.
    pub fn call_key(self, _spec: &crate::api::CloudPhoneSpec) -> Option<&str> {
        match self {
            Action::Backup => None,
        }
    }

    /// Re-stamps a planned intent with the time its call leaves, the `x-request-id` it will carry
    /// and the account `scope` it is made in, so that the grace period counts from the call.
    pub fn stamp_intent(
        self,
        status: &mut CloudPhoneStatus,
        generation: Option<i64>,
        at: Timestamp,
        request_id: &str,
        scope: &str,
        config: &PlanConfig,
    ) {
        match self {
            Action::Backup => {
                backup::stamp_intent(status, generation, at, request_id, scope, config)
            }
        }
    }

    /// A planned call that surely never left: the record as it was before the plan (`before`),
    /// `Ready` saying why.
    pub fn not_sent(
        self,
        planned: &CloudPhoneStatus,
        before: Option<&BackupStatus>,
        generation: Option<i64>,
        why: &str,
        now: Timestamp,
    ) -> CloudPhoneStatus {
        match self {
            Action::Backup => backup::backup_not_sent(planned, before, generation, why, now),
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
        }
    }

    /// What a fresh observation says of an instance whose call was refused whole: `None` when it
    /// still needs a call; otherwise the result to record without one.
    pub fn settled_without_a_call(self, observation: &Observation) -> Option<ActionResult> {
        match self {
            Action::Backup => backup::settled_without_a_call(observation),
        }
    }
}
