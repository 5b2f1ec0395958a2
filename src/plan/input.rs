//! What the planner is given for each phone beside its object: this tick's observation of its
//! instance, what the engine remembers of it, and what holds for the whole tick.

use super::*;
use jiff::Timestamp;

/// What the engine remembers of one phone across ticks: the planner's input beside the object and
/// this tick's observation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory<'m> {
    /// This term wrote the phone and the store does not show that write yet: nothing is planned
    /// (a plan from the older object would only be fenced off); it waits for the watch.
    pub lagging: bool,
    /// Another object's intent for the phone's instance within its grace period (see
    /// [`Intents::previous`]): an ownership move.
    pub previous: Option<&'m Intent>,
    /// The vendor's ids of the phone's last accepted call, waiting for its next write.
    pub receipt: Option<&'m Receipt>,
}

/// What holds for every phone of a tick.
#[derive(Clone, Copy, Debug)]
pub struct Context<'c> {
    pub now: Timestamp,
    pub config: &'c PlanConfig,
    /// What this leadership term knows of earlier terms' outstanding intents.
    pub earlier: &'c EarlierTerms,
}

/// The vendor's ids for an accepted call, kept by the engine until the phone's next write carries
/// them (see [`Memory::receipt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The `x-request-id` of the call they answer.
    pub request_id: String,
    pub task_id: Option<String>,
    pub job_id: Option<String>,
}

/// The last action intent seen for an instance (see [`Intents`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The object that wrote it (`namespace/name`) and its uid.
    pub owner: String,
    pub uid: Option<String>,
    /// When its call was (to be) sent.
    pub requested_at: Timestamp,
    /// The action it announced: its grace period is the action's.
    pub action: Action,
}

impl Intent {
    /// When its grace period ends.
    pub fn until(&self, config: &PlanConfig) -> Timestamp {
        self.requested_at
            .checked_add(self.action.grace(config))
            .unwrap_or(Timestamp::MAX)
    }
}

/// What a term knows of the intents that earlier terms may still have outstanding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EarlierTerms {
    /// None: nothing was recorded, or the recorded time has passed.
    Settled,
    /// Some may be outstanding until then.
    Until(Timestamp),
    /// Not known (the record could not be read; why): held as if ahead.
    Unknown(String),
}
