//! The early-tick trigger: who asked for a tick out of turn (a whole one, or some phones'), taken
//! by the loop when the tick starts.

use super::*;

/// A handle that asks the engine for an early tick. A request during a tick causes exactly one
/// more tick; several requests before a tick starts cause one. An early tick caused by the phones
/// named with [`Trigger::request`] plans and queries only those phones; a bare [`Trigger::fire`]
/// asks for a whole tick.
#[derive(Clone, Default)]
pub struct Trigger(pub(super) Arc<TriggerState>);

#[derive(Default)]
pub(super) struct TriggerState {
    pub(super) notify: Notify,
    pending: Mutex<Requested>,
}

/// What the early ticks asked for since the last tick started.
#[derive(Debug, Default)]
pub(super) struct Requested {
    /// A whole tick.
    whole: bool,
    /// The phones (by [`ObjectId`]) whose change asked for the tick.
    phones: foldhash::HashSet<ObjectId>,
}

impl Trigger {
    /// Asks for a whole early tick.
    pub fn fire(&self) {
        self.pending().whole = true;
        self.0.notify.notify_one();
    }

    /// Names a phone (its uid) whose change asks for an early tick; the tick is asked for by the
    /// next [`Trigger::wake`].
    pub fn request(&self, uid: &str) {
        self.pending().phones.insert(uid.to_owned());
    }

    /// Asks for an early tick of the phones named since the last tick (a whole one if none was).
    pub fn wake(&self) {
        let mut pending = self.pending();
        if pending.phones.is_empty() {
            pending.whole = true;
        }
        drop(pending);
        self.0.notify.notify_one();
    }

    /// Resolves at the next fire (or at once for a fire not yet consumed). The engine consumes
    /// fires itself: use this only on a trigger that no engine runs on.
    pub async fn fired(&self) {
        self.0.notify.notified().await;
    }

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Requested> {
        self.0.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was asked since the last call: a whole tick, some phones, or nothing (what a wake
    /// asked for was served by a tick since).
    pub(super) fn take(&self) -> Asked {
        let taken = std::mem::take(&mut *self.pending());
        match (taken.whole, taken.phones.is_empty()) {
            (true, _) => Asked::Whole,
            (false, false) => Asked::Phones(taken.phones),
            (false, true) => Asked::Nothing,
        }
    }
}

/// What the early ticks asked for.
pub(super) enum Asked {
    Whole,
    Phones(foldhash::HashSet<ObjectId>),
    Nothing,
}
