//! The engine's memory across ticks, behind one lock: a new term drops what an earlier one wrote and
//! saw, reads until when earlier terms' intents may be outstanding and records its own before its
//! calls; within a term, the writes the cache does not show yet, the intents seen, the vendor's
//! receipts, the reconcile requests already reported invalid; what each phone's plan is given of
//! it; and what is forgotten of phones that are gone.

use super::writes::FailingWrites;
use super::*;
use plan::{Memory, Receipt, whole_seconds};

/// What the engine remembers across ticks. Behind one lock, never held across an await.
#[derive(Default)]
pub(super) struct Recall {
    /// This term's writes that the store may not show yet (a watch cache lags its writes), keyed
    /// by object (its uid); dropped once the store shows any other version than those the writes
    /// were made against.
    pub written: HashMap<ObjectId, Written>,
    /// The backup intents seen in this term, per instance: for ownership moves.
    pub intents: Intents,
    /// The vendor's task and job ids of accepted calls, until the phone's next write carries them.
    pub receipts: HashMap<ObjectId, Receipt>,
    /// The phones whose last status writes failed, in this term.
    pub failing_writes: HashMap<ObjectId, FailingWrites>,
    /// What this term read and wrote of the intents record.
    pub record: TermRecord,
    /// Recent failures of each instance's status query, for the hysteresis of `Synced` (kept
    /// across terms).
    pub failures: FailureMemory,
    /// The phones whose reconcile request is over its bound and was reported, until it changes.
    pub invalid_requests: foldhash::HashSet<ObjectId>,
    /// The phones whose load-until annotation is ignored and was reported: the value reported.
    pub invalid_load_until: HashMap<ObjectId, String>,
    /// The phones whose earlier prepares the vendor said it no longer holds (see
    /// [`NothingQueued`]): the next tick does not ask again (a tick cut by its deadline, or a call
    /// that could not leave, would otherwise ask every tick).
    pub nothing_queued: HashMap<ObjectId, NothingQueued>,
    /// The last time each phone waiting for idleness could not be observed (see
    /// [`plan::Memory::unobserved`]): kept while its idle wait runs.
    pub unobserved: HashMap<ObjectId, Timestamp>,
    /// Since when this term has watched the phones (its first planning): no idle wait counts from
    /// before, when nobody may have watched (a restart, another leader).
    pub watching_since: Option<Timestamp>,
}

/// The vendor's answer that it holds no earlier prepare of a phone's instance.
#[derive(Debug, Clone, Copy)]
pub(super) struct NothingQueued {
    /// The phone's own call the question was about (its record's `requestedAt`; `None`: it had
    /// none): a later call of its own makes the answer stale.
    pub about: Option<Timestamp>,
    /// When the vendor answered: good for a grace period.
    pub at: Timestamp,
}

/// What a term read and wrote of the intents record.
#[derive(Debug, Default)]
pub(super) struct TermRecord {
    /// Bumped by each new term: a read or write begun in an earlier term counts for nothing.
    epoch: u64,
    /// Until when earlier terms' intents may be outstanding, once read this term.
    earlier: Option<Option<Timestamp>>,
    /// Why the last read failed, while it has.
    unread: Option<String>,
    /// How far this term has extended the record, as confirmed.
    recorded: Option<Timestamp>,
}

/// How far past what a call needs the record is extended: calls of the next seconds (the other
/// chunks of a tick) need no write of their own. It is what a term after a busy spell holds longer.
pub(super) const RECORD_AHEAD: Duration = Duration::from_secs(5);

/// How long the read of the intents record may take before the tick goes on without it.
pub(super) const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn record_timeout() -> RecordError {
    RecordError::Store {
        source: "the intents record did not answer in time".into(),
    }
}

/// An intent's time is rounded up to the second.
pub(super) const WHOLE_SECOND: Duration = Duration::from_secs(1);

impl<S: PhoneStore> Engine<S> {
    /// Starts a new term when the fence reports one; returns the term this tick runs in.
    pub(super) fn check_term(&self) -> u64 {
        let Some(fence) = &self.fence else {
            return 0;
        };
        let term = fence.term();
        if self.term.swap(term, Ordering::AcqRel) != term {
            self.start_term();
        }
        term
    }

    /// A new leadership term: the record of this engine's own writes and the intents it saw are
    /// dropped, as a record from an earlier term may be older than what another leader wrote since.
    pub(super) fn start_term(&self) {
        let mut recall = self.recall();
        recall.written.clear();
        recall.intents.clear();
        recall.failing_writes.clear();
        recall.watching_since = None;
        recall.record = TermRecord {
            epoch: recall.record.epoch + 1,
            ..TermRecord::default()
        };
    }

    /// Reads, once a term, until when earlier terms' intents may be outstanding (again each tick
    /// while the read fails).
    pub(super) async fn read_earlier_terms(&self) {
        let epoch = {
            let record = &self.recall().record;
            if record.earlier.is_some() {
                return;
            }
            record.epoch
        };
        // NB: bounded: a hanging API server must not stall the ticks (its phones are held).
        let read = tokio::time::timeout(RECORD_TIMEOUT, self.intents_record.read())
            .await
            .unwrap_or_else(|_| Err(record_timeout()));
        let now = Timestamp::now();
        let mut recall = self.recall();
        let record = &mut recall.record;
        if record.epoch != epoch {
            return;
        }
        match read {
            Ok(until) => {
                if let Some(until) = until.filter(|u| now < *u) {
                    info!(until = %until, "an earlier term's intents may be outstanding: phones without an in-flight intent of their own wait until then");
                }
                record.earlier = Some(until);
                record.unread = None;
            }
            // NB: every earlier intent was made before now: none is outstanding past this bound.
            Err(err @ RecordError::Invalid { .. }) => {
                let bound = now
                    .checked_add(self.config.plan.longest_grace() + INTENT_MAX_AGE + WHOLE_SECOND)
                    .unwrap_or(Timestamp::MAX);
                warn!(error = %err, until = %bound, "the intents record is unreadable: phones without an in-flight intent of their own wait a grace period");
                record.earlier = Some(Some(bound));
                record.unread = None;
            }
            Err(err) => {
                warn!(error = %err, "the intents record could not be read: phones without an in-flight intent of their own wait, and no backup call is sent");
                record.unread = Some(err.to_string());
            }
        }
    }

    /// What this term knows of earlier terms' outstanding intents, at `now`.
    pub(super) fn earlier_terms(&self, now: Timestamp) -> plan::EarlierTerms {
        let record = &self.recall().record;
        match (&record.earlier, &record.unread) {
            (Some(Some(until)), _) if now < *until => plan::EarlierTerms::Until(*until),
            (Some(_), _) => plan::EarlierTerms::Settled,
            (None, why) => plan::EarlierTerms::Unknown(
                why.clone()
                    .unwrap_or_else(|| "the record was not read yet".to_owned()),
            ),
        }
    }

    /// Makes sure the record says this term's intents may be outstanding until those of a call
    /// whose intent is written at `leaves` are over (its `grace` period from when it may leave at
    /// the latest), writing it (a little ahead) if it does not. An error: no call, saying why.
    pub(super) async fn record_intents(
        &self,
        leaves: Timestamp,
        grace: Duration,
    ) -> Result<(), String> {
        let needed = leaves
            .checked_add(grace + INTENT_MAX_AGE + WHOLE_SECOND)
            .unwrap_or(Timestamp::MAX);
        let _one_at_a_time = self.record_writes.lock().await;
        let epoch = {
            let record = &self.recall().record;
            if record.earlier.is_none() {
                return Err(
                    "until when an earlier term's intents may be outstanding is not known yet (the Lease could not be read)"
                        .to_owned(),
                );
            }
            if record.recorded.is_some_and(|r| r >= needed) {
                return Ok(());
            }
            record.epoch
        };
        let until = needed.checked_add(RECORD_AHEAD).unwrap_or(Timestamp::MAX);
        // NB: a call whose record took longer than the intent age would be withheld anyway.
        let extended = tokio::time::timeout(INTENT_MAX_AGE, self.intents_record.extend(until))
            .await
            .unwrap_or_else(|_| Err(record_timeout()));
        if let Err(err) = extended {
            warn!(error = %err, "vendor actions withheld: the intents record could not be extended");
            return Err(format!(
                "the operator could not record its intents in its Lease ({err})"
            ));
        }
        let mut recall = self.recall();
        let record = &mut recall.record;
        if record.epoch != epoch {
            return Err("leadership changed hands while the intents were recorded".to_owned());
        }
        record.recorded = record.recorded.max(Some(until));
        debug!(until = %until, "intents record extended");
        Ok(())
    }

    /// Plans each phone at `phones` (`observe` gives this tick's observation of phone `i`), with
    /// what this engine remembers of it; the phones that wait are left out, and the receipts spent
    /// are forgotten.
    pub(super) fn plan_each<'v, 'o>(
        &self,
        frame: &Frame<'_>,
        views: &[PhoneView<'v>],
        dispositions: &[Disposition],
        phones: impl IntoIterator<Item = usize>,
        observe: impl Fn(usize) -> Option<&'o plan::Observation>,
    ) -> Vec<(usize, plan::Planned<'v>)> {
        let now = Timestamp::now();
        let earlier = self.earlier_terms(now);
        let cx = plan::Context {
            now,
            config: &self.config.plan,
            earlier: &earlier,
        };
        let mut recall = self.recall();
        let watching_since = *recall.watching_since.get_or_insert(whole_seconds(now));
        // NB: with its capacity: a plan is a few hundred bytes, and a growing Vec copies them all.
        let phones = phones.into_iter();
        let mut planned = Vec::with_capacity(phones.size_hint().0);
        for i in phones {
            let key = object_id(&frame.snapshot[i]);
            let memory = Memory {
                lagging: frame.lagging[i],
                intents: Some(&recall.intents),
                receipt: recall.receipts.get(key.as_ref()),
                unobserved: recall
                    .unobserved
                    .get(key.as_ref())
                    .map_or(watching_since, |t| watching_since.max(*t))
                    .into(),
            };
            let Some(p) = plan::plan_phone(&views[i], &dispositions[i], observe(i), &memory, &cx)
            else {
                continue;
            };
            // NB: only while an idle wait runs: a stretch that starts later starts after it.
            if p.status.idle_since.is_none() && !recall.unobserved.is_empty() {
                recall.unobserved.remove(key.as_ref());
            }
            if p.receipt_spent {
                recall.receipts.remove(key.as_ref());
            }
            if let Some((action, why)) = &p.held {
                debug!(phone = %views[i].key, reason = %why, "{} held for an ownership move", action.name());
            }
            planned.push((i, p));
        }
        planned
    }

    /// Remembers when the phones at `chunk` waiting for idleness could not be observed (their
    /// status query failed, before the failure is debounced, or the vendor did not list them): a
    /// wait counts from no earlier (see [`plan::Memory::unobserved`]).
    pub(super) fn note_unobserved(
        &self,
        frame: &Frame<'_>,
        views: &[PhoneView<'_>],
        chunk: &[usize],
        observations: &HashMap<String, plan::Observation>,
    ) {
        let now = whole_seconds(Timestamp::now());
        for &i in chunk {
            let waiting = frame.status(i).is_some_and(|s| s.idle_since.is_some());
            let unobserved = matches!(
                observations.get(&views[i].spec.instance_id),
                None | Some(plan::Observation::Failed(_) | plan::Observation::Missing)
            );
            if waiting && unobserved {
                self.recall()
                    .unobserved
                    .insert(object_id(&frame.snapshot[i]).into_owned(), now);
            }
        }
    }

    /// Which phones of the snapshot still show a version this term's writes were made against
    /// (the cache lags them); a record the store has moved past is dropped.
    pub(super) fn lagging(&self, snapshot: &[Arc<CloudPhone>]) -> Vec<bool> {
        let written = &mut self.recall().written;
        if written.is_empty() {
            return vec![false; snapshot.len()];
        }
        snapshot
            .iter()
            .map(|phone| {
                let key = object_id(phone);
                match written.get(key.as_ref()) {
                    Some(w) if w.against.contains(&phone.metadata.resource_version) => true,
                    Some(_) => {
                        written.remove(key.as_ref());
                        false
                    }
                    None => false,
                }
            })
            .collect()
    }

    /// A Warning event, once per phone (until its value changes or the process restarts), for each
    /// phone whose `cloudphone.io/reconcile-requested-at` is over its bound: the request is not
    /// echoed, and the phone is served as before.
    pub(super) fn invalid_requests(
        &self,
        snapshot: &[Arc<CloudPhone>],
    ) -> Vec<(usize, plan::PhoneEvent)> {
        let reported = &mut self.recall().invalid_requests;
        let mut now_invalid = foldhash::HashSet::default();
        let mut events = Vec::new();
        for (i, phone) in snapshot.iter().enumerate() {
            if !phone.reconcile_request_invalid() {
                continue;
            }
            let id = object_id(phone).into_owned();
            if !reported.contains(&id) {
                warn!(phone = %PhoneKey::of(phone), "the cloudphone.io/reconcile-requested-at annotation is longer than {} characters: it is ignored", crate::api::MAX_RECONCILE_REQUEST_LEN);
                events.push((
                    i,
                    plan::PhoneEvent {
                        reason: "ReconcileRequestInvalid",
                        message: format!(
                            "the annotation {} is longer than {} characters: it is ignored (not echoed in status.lastHandledReconcileAt); the phone is served as before",
                            crate::api::RECONCILE_REQUESTED_AT,
                            crate::api::MAX_RECONCILE_REQUEST_LEN
                        ),
                        warning: true,
                    },
                ));
            }
            now_invalid.insert(id);
        }
        *reported = now_invalid;
        events
    }

    /// A Warning event, once per value, for each phone whose `cloudphone.io/load-until` the
    /// operator ignores (not an RFC 3339 time, over its bound, or further ahead than
    /// `--max-load-until`): the phone is served as if it had none.
    pub(super) fn invalid_load_untils(
        &self,
        snapshot: &[Arc<CloudPhone>],
    ) -> Vec<(usize, plan::PhoneEvent)> {
        let now = Timestamp::now();
        let max = self.config.plan.max_load_until;
        let reported = &mut self.recall().invalid_load_until;
        let mut now_invalid = HashMap::default();
        let mut events = Vec::new();
        for (i, phone) in snapshot.iter().enumerate() {
            let Some(value) = phone.load_until() else {
                continue;
            };
            let plan::LoadUntil::Invalid(why) = plan::LoadUntil::read(Some(value), now, max) else {
                continue;
            };
            let shown = match value {
                crate::api::AnnotationValue::Valid(v) => v.chars().take(64).collect(),
                crate::api::AnnotationValue::Invalid => String::new(),
            };
            let id = object_id(phone).into_owned();
            if reported.get(&id) != Some(&shown) {
                warn!(phone = %PhoneKey::of(phone), value = %shown, "the cloudphone.io/load-until annotation {why}: it is ignored");
                events.push((
                    i,
                    plan::PhoneEvent {
                        reason: "LoadUntilInvalid",
                        message: format!(
                            "the annotation {} {shown:?} {why} (--max-load-until {}): it is ignored, and the phone is kept at spec.lifecycle",
                            crate::api::LOAD_UNTIL,
                            humantime::format_duration(max)
                        ),
                        warning: true,
                    },
                ));
            }
            now_invalid.insert(id, shown);
        }
        *reported = now_invalid;
        events
    }

    /// Drops what the engine remembers of phones no longer in the store.
    pub(super) fn forget_gone(&self, snapshot: &[Arc<CloudPhone>]) {
        let recall = &mut *self.recall();
        if recall.written.is_empty()
            && recall.receipts.is_empty()
            && recall.unobserved.is_empty()
            && recall.nothing_queued.is_empty()
        {
            return;
        }
        let present: foldhash::HashSet<_> = snapshot.iter().map(|p| object_id(p)).collect();
        recall
            .written
            .retain(|key, _| present.contains(key.as_str()));
        recall
            .receipts
            .retain(|key, _| present.contains(key.as_str()));
        recall
            .unobserved
            .retain(|key, _| present.contains(key.as_str()));
        recall
            .nothing_queued
            .retain(|key, _| present.contains(key.as_str()));
    }
}
