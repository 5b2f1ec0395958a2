//! The state of one tick: where each phone's plan starts ([`Frame`]), what became of each group
//! of phones settled together ([`Group`]: one status chunk, or the phones that need no call), and
//! what the tick did ([`TickReport`]). Data only; the steps that fill it are the engine's.

use super::store::WriteError;
use crate::api::{CloudPhone, CloudPhoneStatus, Phase};
use crate::plan::{AccountTick, Action, ActionResult, PhoneEvent};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// This term's last write of a phone: the versions its chain of writes was made against, and the
/// version the last one made. While the store still shows one of `against`, its cache lags the
/// write and the phone waits for it; no copy of the status is kept.
#[derive(Debug)]
pub(crate) struct Written {
    pub against: Vec<Option<String>>,
    pub version: Option<String>,
}

/// What a tick knows before any vendor call; its groups only read it.
pub(crate) struct Frame<'a> {
    pub snapshot: &'a [Arc<CloudPhone>],
    /// The phones whose cached object is older than this term's last write of them: they wait for
    /// the watch to catch up (see [`crate::plan::Memory::lagging`]).
    pub lagging: Vec<bool>,
    /// The leadership term the tick runs in.
    pub term: u64,
    /// Events this tick may still publish (`--max-events-per-tick`): the ones past it are only
    /// counted, never held.
    pub events_left: AtomicUsize,
}

impl<'a> Frame<'a> {
    /// The status of phone `i` as the store shows it.
    pub fn status(&self, i: usize) -> Option<&CloudPhoneStatus> {
        self.snapshot[i].status.as_ref()
    }

    /// The version a write planned from phone `i`'s stored object is fenced with.
    pub fn version(&self, i: usize) -> Option<&str> {
        self.snapshot[i].metadata.resource_version.as_deref()
    }
}

/// An intent written and what came of its call.
pub(crate) struct Sent {
    pub intent: CloudPhoneStatus,
    pub version: Option<String>,
    pub result: ActionResult,
}

/// One phone's part in a group.
pub(crate) struct Outcome<'a> {
    pub index: usize,
    /// The planned status, then the final one (what the server holds when a write failed);
    /// borrowed from the frame while it is the phone's base status, untouched.
    pub new: Cow<'a, CloudPhoneStatus>,
    /// The status and version this tick's last successful write of the phone left on the server.
    pub written: Option<(CloudPhoneStatus, Option<String>)>,
    /// A write of the phone failed: nothing more is done for it this tick.
    pub stopped: bool,
}

impl<'a> Outcome<'a> {
    pub fn new(index: usize, planned: Cow<'a, CloudPhoneStatus>) -> Outcome<'a> {
        Outcome {
            index,
            new: planned,
            written: None,
            stopped: false,
        }
    }

    /// The status the server holds as far as this tick knows.
    pub fn current<'s>(&'s self, frame: &'s Frame<'_>) -> Option<&'s CloudPhoneStatus> {
        match &self.written {
            Some((status, _)) => Some(status),
            None => frame.status(self.index),
        }
    }

    /// The version the next write of the phone is fenced with.
    pub fn fence(&self, frame: &Frame<'_>) -> Option<String> {
        match &self.written {
            Some((_, version)) => version.clone(),
            None => frame.version(self.index).map(str::to_owned),
        }
    }

    pub fn committed(&mut self, status: CloudPhoneStatus, version: Option<String>) {
        self.written = Some((status, version));
    }

    /// A write failed: the phone keeps what the server holds, and nothing more is done for it.
    pub fn stop(&mut self, frame: &Frame<'_>) {
        self.stopped = true;
        self.new = Cow::Owned(self.current(frame).cloned().unwrap_or_default());
    }

    /// True when the final status differs from what the server holds as far as this tick knows:
    /// it needs a write.
    pub fn changed(&self, frame: &Frame<'_>) -> bool {
        // NB: a status still borrowed is the base one, untouched: no comparison needed.
        if self.written.is_none() && matches!(self.new, Cow::Borrowed(_)) {
            return false;
        }
        self.current(frame) != Some(&*self.new)
    }

    /// True when the server now holds this tick's final status of the phone.
    pub fn settled(&self) -> bool {
        self.written.as_ref().is_some_and(|(s, _)| *s == *self.new)
    }
}

/// Phones settled together, and what it cost. Once sealed, only what the end of the tick needs is
/// kept (each phone's phase, and the events of what the API server now holds), not the statuses: a
/// converging fleet would otherwise hold two copies of every status until the tick ends.
#[derive(Default)]
pub(crate) struct Group<'a> {
    pub phones: Vec<Outcome<'a>>,
    pub phases: Vec<(usize, Phase)>,
    /// Backups seen complete in this group: seconds from their request.
    pub durations: Vec<(Action, f64)>,
    /// The parks and wakes this group's writes made.
    pub moves: Vec<crate::plan::Move>,
    pub events: Vec<(usize, PhoneEvent)>,
    /// Events past the tick's cap: how many, and the phone of the first.
    pub events_dropped: usize,
    pub first_dropped: Option<usize>,
    pub report: TickReport,
}

impl Group<'_> {
    /// Turns the outcomes into phases and events, and drops them. A phone whose final status was
    /// not written has no events: they come with the write that is retried next tick, so that none
    /// is published twice.
    pub fn seal(&mut self, frame: &Frame<'_>) {
        self.phases.reserve(self.phones.len());
        for phone in std::mem::take(&mut self.phones) {
            let i = phone.index;
            if phone.settled() {
                for action in Action::ALL {
                    if let Some(seconds) = completed(action, frame.status(i), &phone.new) {
                        self.durations.push((action, seconds));
                    }
                }
                if let Some(moved) = crate::plan::moved(frame.status(i), &phone.new) {
                    self.moves.push(moved);
                }
                let spec = &frame.snapshot[i].spec;
                for event in crate::plan::events(spec, frame.status(i), &phone.new) {
                    let kept = frame
                        .events_left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok();
                    if kept {
                        self.events.push((i, event));
                    } else {
                        self.events_dropped += 1;
                        self.first_dropped.get_or_insert(i);
                    }
                }
            }
            self.phases.push((i, phone.new.phase));
        }
    }
}

/// Seconds from request to completion of a call of `action` that `new` records as completed and
/// `old` did not.
fn completed(
    action: Action,
    old: Option<&CloudPhoneStatus>,
    new: &CloudPhoneStatus,
) -> Option<f64> {
    let done = action.completion(new)?;
    if old.and_then(|o| action.completion(o)) == Some(done) {
        return None;
    }
    let requested = action.record(new)?.requested_at.as_ref()?;
    let seconds = done.0.duration_since(requested.0).as_secs_f64();
    (seconds >= 0.0).then_some(seconds)
}

/// What one tick did, for its log line, the metrics and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Phones in the snapshot.
    pub phones: usize,
    /// Distinct instance ids queried.
    pub queried: usize,
    /// Status calls sent (splits included, retries inside the client not).
    pub status_calls: u64,
    /// Backup calls sent.
    pub backup_calls: u64,
    /// Phones whose backup the vendor accepted.
    pub backups_requested: usize,
    /// Status writes that succeeded.
    pub statuses_written: usize,
    /// Phones whose status query failed.
    pub query_errors: usize,
    /// Phones whose backup call failed (not counting the vendor's "already backing up").
    pub backup_errors: usize,
    /// Prepare calls sent.
    pub prepare_calls: u64,
    /// Phones whose prepare the vendor accepted.
    pub prepares_requested: usize,
    /// Phones whose prepare call failed.
    pub prepare_errors: usize,
    /// Status writes that failed (deleted objects not counted).
    pub write_errors: usize,
    /// Wall time of the tick.
    pub duration: Duration,
    /// Why the tick made no vendor call at all (unusable credentials), if so.
    pub skipped: Option<String>,
    /// Status chunks the tick deadline cut before they finished.
    pub chunks_cut: usize,
    /// What the tick found of each CloudPhoneAccount, by name.
    pub accounts: Vec<AccountTick>,
}

impl TickReport {
    pub(crate) fn note_write_error(&mut self, err: &WriteError) {
        if !matches!(err, WriteError::Gone(_)) {
            self.write_errors += 1;
        }
    }

    /// Counts what came of one phone's call of `action`: a request the vendor accepted, or an
    /// error (not the vendor's "already under way" nor a call withheld).
    pub(crate) fn count(&mut self, action: Action, result: &ActionResult) {
        let (requested, errors) = match action {
            Action::Backup => (&mut self.backups_requested, &mut self.backup_errors),
            Action::Prepare => (&mut self.prepares_requested, &mut self.prepare_errors),
        };
        match result {
            ActionResult::Accepted { .. } => *requested += 1,
            ActionResult::AlreadyBackingUp
            | ActionResult::Restoring
            | ActionResult::AlreadyDone
            | ActionResult::Withheld => {}
            _ => *errors += 1,
        }
    }

    /// The calls of `action` a batcher made this tick are counted.
    pub(crate) fn add_calls(&mut self, action: Action, calls: u64) {
        match action {
            Action::Backup => self.backup_calls += calls,
            Action::Prepare => self.prepare_calls += calls,
        }
    }

    /// Adds a group's counts to the tick's.
    pub(crate) fn absorb(&mut self, other: &TickReport) {
        self.queried += other.queried;
        self.backups_requested += other.backups_requested;
        self.statuses_written += other.statuses_written;
        self.query_errors += other.query_errors;
        self.backup_errors += other.backup_errors;
        self.prepares_requested += other.prepares_requested;
        self.prepare_errors += other.prepare_errors;
        self.write_errors += other.write_errors;
    }
}
