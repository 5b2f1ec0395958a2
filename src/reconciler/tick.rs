//! The state of one tick: where each phone's plan starts ([`Frame`]), and what became of each
//! group of phones settled together ([`Group`]: one status chunk, or the phones that need no call).
//! Data only; the steps that fill it are the engine's.

use super::engine::TickReport;
use super::store::WriteError;
use crate::api::{CloudPhone, CloudPhoneStatus, Phase};
use crate::plan::{BackupResult, PhoneEvent, PhoneView};
use std::sync::Arc;

/// A status this engine wrote in this leadership term: the versions its chain of writes was made
/// against, the version the last one made, and its status. Kept only while the store still shows
/// one of `against`.
#[derive(Debug)]
pub(crate) struct Written {
    pub against: Vec<Option<String>>,
    pub version: Option<String>,
    pub status: CloudPhoneStatus,
}

/// A phone's starting point in a tick: as the store shows it, or this term's own later write.
pub(crate) enum Base<'a> {
    Stored(&'a CloudPhone),
    Written(Arc<Written>),
}

impl Base<'_> {
    pub fn status(&self) -> Option<&CloudPhoneStatus> {
        match self {
            Base::Stored(phone) => phone.status.as_ref(),
            Base::Written(w) => Some(&w.status),
        }
    }

    /// The version a write planned from this base is fenced with.
    pub fn version(&self) -> Option<&str> {
        match self {
            Base::Stored(phone) => phone.metadata.resource_version.as_deref(),
            Base::Written(w) => w.version.as_deref(),
        }
    }
}

/// What a tick knows before any vendor call; its groups only read it.
pub(crate) struct Frame<'a> {
    pub snapshot: &'a [Arc<CloudPhone>],
    pub base: Vec<Base<'a>>,
    /// The leadership term the tick runs in.
    pub term: u64,
}

impl<'a> Frame<'a> {
    pub fn views(&self) -> Vec<PhoneView<'_>> {
        self.snapshot
            .iter()
            .zip(&self.base)
            .map(|(phone, base)| PhoneView {
                status: base.status(),
                ..PhoneView::of(phone)
            })
            .collect()
    }
}

/// An intent written and what came of its call.
pub(crate) struct Sent {
    pub intent: CloudPhoneStatus,
    pub version: Option<String>,
    pub result: BackupResult,
}

/// One phone's part in a group.
pub(crate) struct Outcome {
    pub index: usize,
    /// The planned status, then the final one (what the server holds when a write failed).
    pub new: CloudPhoneStatus,
    /// The status and version this tick's last successful write of the phone left on the server.
    pub written: Option<(CloudPhoneStatus, Option<String>)>,
    /// A write of the phone failed: nothing more is done for it this tick.
    pub stopped: bool,
}

impl Outcome {
    pub fn new(index: usize, planned: CloudPhoneStatus) -> Outcome {
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
            None => frame.base[self.index].status(),
        }
    }

    /// The version the next write of the phone is fenced with.
    pub fn fence(&self, frame: &Frame<'_>) -> Option<String> {
        match &self.written {
            Some((_, version)) => version.clone(),
            None => frame.base[self.index].version().map(str::to_owned),
        }
    }

    pub fn committed(&mut self, status: CloudPhoneStatus, version: Option<String>) {
        self.written = Some((status, version));
    }

    /// A write failed: the phone keeps what the server holds, and nothing more is done for it.
    pub fn stop(&mut self, frame: &Frame<'_>) {
        self.stopped = true;
        self.new = self.current(frame).cloned().unwrap_or_default();
    }

    /// True when the server now holds this tick's final status of the phone.
    pub fn settled(&self) -> bool {
        self.written.as_ref().is_some_and(|(s, _)| *s == self.new)
    }
}

/// Phones settled together, and what it cost. Once sealed, only what the end of the tick needs is
/// kept (each phone's phase, and the events of what the API server now holds), not the statuses: a
/// converging fleet would otherwise hold two copies of every status until the tick ends.
#[derive(Default)]
pub(crate) struct Group {
    pub phones: Vec<Outcome>,
    pub phases: Vec<(usize, Phase)>,
    pub events: Vec<(usize, PhoneEvent)>,
    pub report: TickReport,
}

impl Group {
    /// Turns the outcomes into phases and events, and drops them. A phone whose final status was
    /// not written has no events: they come with the write that is retried next tick, so that none
    /// is published twice.
    pub fn seal(&mut self, frame: &Frame<'_>) {
        for phone in std::mem::take(&mut self.phones) {
            let i = phone.index;
            if phone.settled() {
                let spec = &frame.snapshot[i].spec;
                for event in crate::plan::events(spec, frame.base[i].status(), &phone.new) {
                    self.events.push((i, event));
                }
            }
            self.phases.push((i, phone.new.phase));
        }
    }
}

impl TickReport {
    pub(crate) fn note_write_error(&mut self, err: &WriteError) {
        if !matches!(err, WriteError::Gone(_)) {
            self.write_errors += 1;
        }
    }

    /// Adds a group's counts to the tick's.
    pub(crate) fn absorb(&mut self, other: &TickReport) {
        self.queried += other.queried;
        self.backups_requested += other.backups_requested;
        self.statuses_written += other.statuses_written;
        self.query_errors += other.query_errors;
        self.backup_errors += other.backup_errors;
        self.write_errors += other.write_errors;
    }
}
