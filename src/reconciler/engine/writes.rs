//! The writing half of a tick: changed statuses written under one cap on writes in flight, each
//! fenced by the version it was planned from, this term's writes recorded; events published; the
//! phones whose writes keep being refused counted, logged and reported.

use super::*;
use crate::api::{CloudPhone, CloudPhoneStatus};
use crate::metrics::OutcomeLabels;
use crate::plan::{PhoneEvent, PhoneKey};
use futures::{StreamExt, stream};
use std::time::Duration;
use tracing::{debug, info, warn};

/// An event publish that takes longer is abandoned: events are best effort, a tick is not.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Failed status writes of one phone in a row that make a failing spell, reported by a Warning
/// event and a log line: one failure is retried next tick and mostly goes through (an API server
/// restarting, a webhook's time-out); three in a row (a minute at the default interval) are no
/// accident, and the phone's status stays frozen until one goes through.
pub(super) const FAILING_SPELL: u32 = 3;

/// The longest error text an event's message carries: the API server caps a message at 1 KiB.
const MAX_EVENT_ERROR_CHARS: usize = 512;

/// A phone whose last status writes failed (refused, not its deletion nor a fence).
#[derive(Debug, Default)]
pub(super) struct FailingWrites {
    /// Failed writes in a row.
    count: u32,
    /// The last error, for the spell's event while it is due.
    due: Option<String>,
}

/// Versions of one phone a chain of this term's writes was made against, at most: a tick writes a
/// phone at most twice (intent, then receipt), so a few ticks of a lagging cache fit.
const MAX_CHAINED_WRITES: usize = 8;

impl<S: PhoneStore> Engine<S> {
    /// Writes the final status of every phone of `group` whose status changed, unless a write of
    /// it failed earlier in this tick.
    pub(super) async fn write_changed(&self, frame: &Frame<'_>, group: &mut Group<'_>) {
        let changed: Vec<usize> = (0..group.phones.len())
            .filter(|&k| {
                let phone = &group.phones[k];
                !phone.stopped && phone.changed(frame)
            })
            .collect();
        // NB: a phone planned with nothing to write has the status it should: no spell goes on.
        if !self.failing_writes_empty() {
            for phone in &group.phones {
                if !phone.stopped && !phone.changed(frame) {
                    self.write_through(&frame.snapshot[phone.index]);
                }
            }
        }
        self.write_these(frame, group, changed).await;
    }

    /// Writes the final status of the phones of `group` at `these` (each changed, none stopped).
    pub(super) async fn write_these(
        &self,
        frame: &Frame<'_>,
        group: &mut Group<'_>,
        these: Vec<usize>,
    ) {
        let changed = these;
        if changed.is_empty() {
            return;
        }
        let writes = changed
            .iter()
            .map(|&k| {
                let phone = &group.phones[k];
                (phone.index, phone.fence(frame), &*phone.new)
            })
            .collect();
        let results = self.write_each(frame, writes).await;
        for (k, result) in changed.into_iter().zip(results) {
            let phone = &mut group.phones[k];
            match result {
                Ok(version) => {
                    group.report.statuses_written += 1;
                    let status = phone.new.clone().into_owned();
                    phone.committed(status, version);
                }
                Err(err) => {
                    group.report.note_write_error(&err);
                    phone.stop(frame);
                }
            }
        }
    }

    /// Publishes the events of each phone whose final status the API server now holds from this
    /// tick: a write that failed is retried next tick, and its events with it, so that none is
    /// published twice.
    pub(super) async fn publish_events(
        &self,
        frame: &Frame<'_>,
        groups: Vec<Group<'_>>,
        extra: Vec<(usize, PhoneEvent)>,
    ) {
        let dropped: usize = groups.iter().map(|g| g.events_dropped).sum();
        let first_dropped = groups.iter().find_map(|g| g.first_dropped);
        let mut pending: Vec<(usize, PhoneEvent)> =
            groups.into_iter().flat_map(|g| g.events).collect();
        // NB: a few at most (one per phone until its annotation changes): outside the cap.
        pending.extend(extra);
        if let (Some(i), true) = (first_dropped, dropped > 0) {
            let cap = self.config.max_events_per_tick;
            if let Some(m) = &self.metrics {
                m.events_dropped.inc_by(dropped as u64);
            }
            let summary = PhoneEvent {
                reason: "EventsCapped",
                message: format!(
                    "{dropped} more events of this tick were not published (--max-events-per-tick {cap}); they are counted in cloudphone_events_dropped_total"
                ),
                warning: true,
            };
            warn!(dropped, cap, "events of this tick capped");
            pending.push((i, summary));
        }
        stream::iter(pending)
            .for_each_concurrent(
                self.config.writes_in_flight.max(1),
                |(i, event)| async move {
                    let phone = &frame.snapshot[i];
                    let publish = self.store.publish(phone, &event);
                    if tokio::time::timeout(EVENT_TIMEOUT, publish).await.is_err() {
                        warn!(phone = %PhoneKey::of(phone), reason = event.reason, "event not published within its time-out");
                    }
                },
            )
            .await;
    }

    /// Writes each (phone index, fence, status), the results in the order given; every write of
    /// the engine shares one cap on writes in flight.
    pub(super) async fn write_each(
        &self,
        frame: &Frame<'_>,
        writes: Vec<(usize, Option<String>, &CloudPhoneStatus)>,
    ) -> Vec<Result<Option<String>, WriteError>> {
        // NB: indices, not the borrowed items, go through the stream: a closure whose argument
        // holds a reference makes the tick future lose `Send`.
        stream::iter(0..writes.len())
            .map(|k| {
                let (i, fence, status) = &writes[k];
                self.write_one(&frame.snapshot[*i], fence.clone(), status)
            })
            .buffered(self.config.writes_in_flight.max(1))
            .collect()
            .await
    }

    pub(super) async fn write_one(
        &self,
        phone: &CloudPhone,
        fence: Option<String>,
        status: &CloudPhoneStatus,
    ) -> Result<Option<String>, WriteError> {
        // NB: the semaphore is never closed, so acquiring cannot fail.
        let _slot = self.write_slots.acquire().await;
        let result = self
            .store
            .write_status(phone, fence.as_deref(), status)
            .await;
        if let Some(m) = &self.metrics {
            let outcome = result.as_ref().map_or_else(WriteError::label, |_| "ok");
            m.status_writes
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
        match &result {
            Ok(version) => {
                let key = object_id(phone);
                let written = &mut self.recall().written;
                // A write on top of this term's last one keeps the versions that one was made
                // against: the store may still show any of them.
                let mut against = match written.get(key.as_ref()) {
                    Some(last) if last.version == fence => last.against.clone(),
                    _ => Vec::new(),
                };
                against.push(fence);
                if against.len() > MAX_CHAINED_WRITES {
                    against.remove(0);
                }
                written.insert(
                    key.into_owned(),
                    Written {
                        against,
                        version: version.clone(),
                    },
                );
            }
            Err(WriteError::Gone(key)) => {
                debug!(phone = %key, "phone deleted before its status was written")
            }
            Err(err @ WriteError::Conflict(_)) => {
                debug!(error = %err, "status write fenced off; the phone is planned afresh next tick")
            }
            Err(WriteError::Other { message, .. }) => self.write_failed(phone, message),
        }
        match &result {
            Ok(_) | Err(WriteError::Gone(_)) => self.write_through(phone),
            Err(_) => {}
        }
        result
    }

    /// Counts a refused write of `phone`: the first of a spell is logged, naming the phone and
    /// the error; the spell's Warning event is made due once it reaches [`FAILING_SPELL`].
    fn write_failed(&self, phone: &CloudPhone, message: &str) {
        let failing = &mut self.recall().failing_writes;
        let spell = failing.entry(object_id(phone).into_owned()).or_default();
        spell.count = spell.count.saturating_add(1);
        let key = PhoneKey::of(phone);
        match spell.count {
            1 => warn!(phone = %key, error = message, "status write failed; retried next tick"),
            FAILING_SPELL => {
                warn!(phone = %key, failures = spell.count, error = message, "status writes of this phone keep failing: its status stays as it was until one goes through (retried every tick)");
                spell.due = Some(message.to_owned());
            }
            n => debug!(phone = %key, failures = n, error = message, "status write failed again"),
        }
    }

    fn failing_writes_empty(&self) -> bool {
        self.recall().failing_writes.is_empty()
    }

    /// Ends `phone`'s spell of failed writes, if any: a write went through, or the phone is gone.
    pub(super) fn write_through(&self, phone: &CloudPhone) {
        let failing = &mut self.recall().failing_writes;
        if failing.is_empty() {
            return;
        }
        if let Some(spell) = failing.remove(object_id(phone).as_ref())
            && spell.count >= FAILING_SPELL
        {
            info!(phone = %PhoneKey::of(phone), failures = spell.count, "status writes go through again");
        }
    }

    /// The Warning event of each phone of `snapshot` whose spell of failed writes has just reached
    /// [`FAILING_SPELL`] (one per spell), and the number of phones whose last write failed; the
    /// phones no longer in the snapshot are forgotten.
    pub(super) fn failing_writes(
        &self,
        snapshot: &[std::sync::Arc<CloudPhone>],
    ) -> (Vec<(usize, PhoneEvent)>, usize) {
        let failing = &mut self.recall().failing_writes;
        if failing.is_empty() {
            return (Vec::new(), 0);
        }
        let mut events = Vec::new();
        let mut present = foldhash::HashSet::default();
        let mut spells = 0;
        for (i, phone) in snapshot.iter().enumerate() {
            let id = object_id(phone);
            let Some(spell) = failing.get_mut(id.as_ref()) else {
                continue;
            };
            present.insert(id.into_owned());
            if spell.count >= FAILING_SPELL {
                spells += 1;
            }
            let Some(error) = spell.due.take() else {
                continue;
            };
            let error: String = error.chars().take(MAX_EVENT_ERROR_CHARS).collect();
            events.push((
                i,
                PhoneEvent {
                    reason: "StatusWriteFailing",
                    message: format!(
                        "the operator's last {FAILING_SPELL} writes of this phone's status failed: the status stays as it was until a write goes through (retried every tick; this event is not repeated meanwhile); last error: {error}"
                    ),
                    warning: true,
                },
            ));
        }
        failing.retain(|id, _| present.contains(id));
        if spells > 0 {
            warn!(
                phones = spells,
                "status writes keep failing for some phones (each named once in an earlier line): their statuses are frozen; see cloudphone_status_write_failing_phones"
            );
        }
        (events, failing.len())
    }
}
