//! The action path of a tick, one for every vendor action: each intent written before its call, the
//! call gated by the lease's freshness, and what came of it recorded; the vendor's task and job ids
//! ride on the next write.

use super::term::NothingQueued;
use super::*;
use crate::api::{CloudPhone, CloudPhoneStatus};
use crate::plan::{self, Action, ActionResult, CallStamp, Intent, PhoneKey};
use jiff::Timestamp;
use std::borrow::Cow;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// The planned calls of `action` at `wanted` go back to the record they had, `Ready` saying `why`
/// no call left.
fn not_sent(action: Action, frame: &Frame<'_>, group: &mut Group<'_>, wanted: &[usize], why: &str) {
    for &k in wanted {
        let phone = &mut group.phones[k];
        let before = frame.status(phone.index).and_then(|s| action.record(s));
        phone.new = Cow::Owned(action.not_sent(
            &phone.new,
            before,
            frame.snapshot[phone.index].metadata.generation,
            why,
            Timestamp::now(),
        ));
    }
}

impl<S: PhoneStore> Engine<S> {
    /// Takes `action` for the phones of `group` at `wanted` (at most 100, one call's worth): makes
    /// sure the intents record covers the call (no intent and no call when it cannot), writes each
    /// intent, stamped with the time the call leaves and fenced by the version it was planned
    /// from, then makes the call for the intents written, and records the outcome. A crash after
    /// the intent cannot lead to a second call; a 409 sends nothing for that phone.
    pub(super) async fn act(
        &self,
        call: ActionCall<'_>,
        frame: &Frame<'_>,
        group: &mut Group<'_>,
        wanted: &[usize],
        asks: &[Vec<String>],
        batcher: &Batcher<'_>,
    ) {
        let action = call.action;
        let still = self
            .ask_before_resending(call, frame, group, wanted, asks, batcher)
            .await;
        let wanted: &[usize] = &still;
        if wanted.is_empty() {
            return;
        }
        // NB: the account's waits (a 429 pause, its call rate and cap, an IAM token) come before
        // the intents, not between them and the call: the call leaves within the intent age.
        let slot = batcher
            .reserve(action)
            .await
            .map_err(|e| format!("the account's credentials cannot be used: {}", e.summary()));
        let slot = match slot {
            Ok(slot) => slot,
            Err(why) => {
                debug!(account = batcher.account(), phones = wanted.len(), %why, "{}s not sent this tick", action.name());
                not_sent(action, frame, group, wanted, &why);
                return;
            }
        };
        // NB: the clock of the call's age first, then the wall clock: a call that passes the gate
        // leaves before `leaves` plus INTENT_MAX_AGE, which the intents record must cover.
        let sent_at = tokio::time::Instant::now();
        let leaves = Timestamp::now();
        // NB: no record, nor intents, for calls the gate would withhold anyway: a term that is
        // not fresh records nothing the next term would wait for.
        if let Err(why) = self.may_call(frame.term, sent_at) {
            not_sent(action, frame, group, wanted, why);
            return;
        }
        if let Err(why) = self
            .record_intents(leaves, action.grace(&self.config.plan))
            .await
        {
            not_sent(action, frame, group, wanted, &why);
            return;
        }
        // NB: the request id exists before the call, so that the intent records it.
        let request_id = Uuid::new_v4();
        let request = request_id.to_string();
        let intents: Vec<(usize, CloudPhoneStatus)> = wanted
            .iter()
            .map(|&k| {
                let phone = &group.phones[k];
                let mut intent = phone.new.clone().into_owned();
                action.stamp_intent(
                    &mut intent,
                    frame.snapshot[phone.index].metadata.generation,
                    CallStamp {
                        at: leaves,
                        request_id: &request,
                        scope: batcher.scope,
                        key: call.key,
                    },
                    &self.config.plan,
                );
                (k, intent)
            })
            .collect();
        let writes = intents
            .iter()
            .map(|(k, intent)| {
                let phone = &group.phones[*k];
                (phone.index, phone.fence(frame), intent)
            })
            .collect();
        let results = self.write_each(frame, writes).await;
        let mut confirmed = Vec::new();
        for ((k, intent), result) in intents.into_iter().zip(results) {
            match result {
                Ok(version) => confirmed.push((k, intent, version)),
                Err(err) => {
                    group.report.note_write_error(&err);
                    group.phones[k].stop(frame);
                }
            }
        }
        let ids: Vec<String> = confirmed
            .iter()
            .map(|(k, ..)| {
                frame.snapshot[group.phones[*k].index]
                    .spec
                    .instance_id
                    .clone()
            })
            .collect();
        let gate = || self.may_call(frame.term, sent_at);
        let mut results = if ids.is_empty() {
            HashMap::new()
        } else {
            batcher
                .call_reserved(call, ids, &gate, request_id, slot)
                .await
        };
        for (k, intent, version) in confirmed {
            let phone = frame.snapshot[group.phones[k].index].as_ref();
            let sent = Sent {
                result: results
                    .remove(&phone.spec.instance_id)
                    .unwrap_or(ActionResult::Withheld),
                intent,
                version,
            };
            self.record_sent(action, phone, batcher.scope, &sent, &mut group.report);
            self.keep_receipt(phone, &sent.result);
            let outcome = &mut group.phones[k];
            outcome.new = Cow::Owned(match sent.result {
                // A call that surely never left clears its intent in the write that follows.
                ActionResult::Withheld => action.not_sent(
                    &sent.intent,
                    phone.status.as_ref().and_then(|s| action.record(s)),
                    phone.metadata.generation,
                    &format!("the {} call was withheld before it left (this replica's leadership or the intent was no longer fresh, or the account's breaker opened)", action.name()),
                    Timestamp::now(),
                ),
                _ => action.record_result(
                    &sent.intent,
                    phone.metadata.generation,
                    &sent.result,
                    Timestamp::now(),
                    &self.config.plan,
                ),
            });
            outcome.committed(sent.intent, sent.version);
        }
    }

    /// The phones of `wanted` to call. Before a prepare whose plan says the vendor may still hold
    /// an earlier one of the instance (`asks`: the users to ask about; see
    /// [`plan::Planned::ask_progress`]), the vendor is asked (`prepare-progress`, one call an
    /// instance and user), unless it said it holds none since the phone's last call of its own.
    /// Queued or under way, or no answer: no call; the phone's grace period starts again, written
    /// at once (a tick cut by its deadline keeps the answers it got), and the intents record is
    /// extended to cover it as it would a call's (a later term then holds a new owner of the
    /// instance as long). Nothing held: remembered (the next tick does not ask again), and the
    /// instance's status is queried again first (it may have started restoring since this tick's
    /// query, which the answer `2` cannot tell from offline); only a phone still showing what a
    /// prepare starts from is called. While a call could not leave anyway (leadership not
    /// fresh), nothing is asked.
    async fn ask_before_resending(
        &self,
        call: ActionCall<'_>,
        frame: &Frame<'_>,
        group: &mut Group<'_>,
        wanted: &[usize],
        asks: &[Vec<String>],
        batcher: &Batcher<'_>,
    ) -> Vec<usize> {
        let mut to_call = Vec::with_capacity(wanted.len());
        let mut to_recheck = Vec::new();
        for &k in wanted {
            let users = asks.get(k).map_or(&[][..], Vec::as_slice);
            if users.is_empty() {
                to_call.push(k);
                continue;
            }
            let index = group.phones[k].index;
            let phone = &frame.snapshot[index];
            let before = frame.status(index).and_then(|s| call.action.record(s));
            let about = before.and_then(|r| r.requested_at.as_ref()).map(|t| t.0);
            let key = object_id(phone);
            let grace = call.action.grace(&self.config.plan);
            let answered_before = self
                .recall()
                .nothing_queued
                .get(key.as_ref())
                .is_some_and(|n| {
                    n.about == about
                        && n.at
                            .checked_add(grace)
                            .is_ok_and(|end| Timestamp::now() < end)
                });
            if answered_before {
                to_recheck.push(k);
                continue;
            }
            if let Err(why) = self.may_call(frame.term, tokio::time::Instant::now()) {
                not_sent(call.action, frame, group, &[k], why);
                continue;
            }
            let mut held = None;
            for user in users {
                match batcher
                    .prepare_progress(user, &phone.spec.instance_id)
                    .await
                {
                    Ok(progress) if !progress.under_way() => {}
                    Ok(progress) => {
                        held = Some((
                            format!(
                                "the vendor still holds a prepare (prepare-progress {}{}): no second call; asked again after the grace period",
                                progress.status,
                                progress.waiting.map_or_else(String::new, |n| format!(
                                    ", {n} ahead in its queue"
                                ))
                            ),
                            true,
                        ));
                        break;
                    }
                    Err(e) => {
                        held = Some((
                            format!(
                                "the vendor could not tell whether it still holds a prepare ({e}): no second call; asked again after the grace period"
                            ),
                            false,
                        ));
                        break;
                    }
                }
            }
            let Some((why, answered)) = held else {
                self.recall().nothing_queued.insert(
                    key.into_owned(),
                    NothingQueued {
                        about,
                        at: Timestamp::now(),
                    },
                );
                to_recheck.push(k);
                continue;
            };
            debug!(phone = %PhoneKey::of(phone), requested_at = %fmt_requested(before), reason = %why, "prepare not sent again");
            // NB: a write of the Lease only when this one's grace period ends past what it holds.
            if let Err(why) = self.record_intents(Timestamp::now(), grace).await {
                debug!(%why, "the intents record was not extended for a prepare still queued");
            }
            let outcome = &mut group.phones[k];
            outcome.new = Cow::Owned(call.action.still_under_way(
                &outcome.new,
                before,
                phone.metadata.generation,
                call.key,
                answered,
                Timestamp::now(),
                &self.config.plan,
            ));
            self.write_these(frame, group, vec![k]).await;
        }
        if !to_recheck.is_empty() {
            to_call.extend(
                self.recheck(call.action, frame, group, to_recheck, batcher)
                    .await,
            );
        }
        to_call
    }

    /// The phones at `these` whose instance a fresh status query still shows in a phase `action`
    /// starts from; the others get what that status says recorded instead of a call (restoring,
    /// loaded, gone), or, when the query fails, their plan undone (asked again next tick).
    async fn recheck(
        &self,
        action: Action,
        frame: &Frame<'_>,
        group: &mut Group<'_>,
        these: Vec<usize>,
        batcher: &Batcher<'_>,
    ) -> Vec<usize> {
        let ids = these
            .iter()
            .map(|&k| {
                frame.snapshot[group.phones[k].index]
                    .spec
                    .instance_id
                    .clone()
            })
            .collect();
        let observed = batcher.query(ids).await;
        let mut to_call = Vec::with_capacity(these.len());
        for k in these {
            let index = group.phones[k].index;
            let phone = &frame.snapshot[index];
            let observation = observed.get(&phone.spec.instance_id);
            let outcome = &mut group.phones[k];
            let now = Timestamp::now();
            outcome.new = Cow::Owned(match observation {
                Some(observation @ plan::Observation::Status(_)) => {
                    match action.settled_without_a_call(observation) {
                        None => {
                            to_call.push(k);
                            continue;
                        }
                        Some(result) => action.record_result(
                            &outcome.new,
                            phone.metadata.generation,
                            &result,
                            now,
                            &self.config.plan,
                        ),
                    }
                }
                _ => action.not_sent(
                    &outcome.new,
                    frame.status(index).and_then(|s| action.record(s)),
                    phone.metadata.generation,
                    "the instance's status could not be queried again after the vendor's prepare-progress answer",
                    now,
                ),
            });
        }
        to_call
    }

    /// Logs and counts what came of one phone's call of `action`, and remembers its intent for
    /// ownership moves.
    pub(super) fn record_sent(
        &self,
        action: Action,
        phone: &CloudPhone,
        scope: &str,
        sent: &Sent,
        report: &mut TickReport,
    ) {
        report.statuses_written += 1;
        if let Some(m) = &self.metrics {
            m.action_outcomes(action)
                .get_or_create(&crate::metrics::BackupOutcomeLabels {
                    outcome: sent.result.outcome(),
                })
                .inc();
        }
        report.count(action, &sent.result);
        if let Some(at) = action
            .record(&sent.intent)
            .and_then(|b| b.requested_at.as_ref())
        {
            self.recall().intents.record(
                scope,
                &phone.spec.instance_id,
                Intent {
                    owner: PhoneKey::of(phone).to_string(),
                    uid: phone.metadata.uid.clone(),
                    requested_at: at.0,
                    action,
                    user: action
                        .record(&sent.intent)
                        .and_then(|r| r.user_id.as_deref().map(str::to_owned)),
                },
            );
        }
        match &sent.result {
            ActionResult::Accepted { request_id, .. } => {
                info!(phone = %PhoneKey::of(phone), instance = %phone.spec.instance_id, request_id, "{} requested", action.name());
            }
            ActionResult::AlreadyBackingUp | ActionResult::Restoring | ActionResult::Withheld => {
                debug!(phone = %PhoneKey::of(phone), result = ?sent.result, "{} not sent or not started", action.name());
            }
            other => {
                warn!(phone = %PhoneKey::of(phone), instance = %phone.spec.instance_id, result = ?other, "{} call failed", action.name());
            }
        }
    }

    /// Keeps the vendor's task and job ids of an accepted call until the phone's next write.
    pub(super) fn keep_receipt(&self, phone: &CloudPhone, result: &ActionResult) {
        let ActionResult::Accepted {
            request_id,
            task_id,
            job_id,
            ..
        } = result
        else {
            return;
        };
        // NB: an id over its status field's bound would make every write of the phone fail (422):
        // such an id is not kept (the status query shows the backup's progress all the same).
        let bounded = |id: &Option<String>, field: &str| match id {
            Some(id) if id.len() > crate::api::MAX_VENDOR_ID_LEN => {
                warn!(phone = %PhoneKey::of(phone), field, chars = id.len(), "the vendor's id is longer than the status field allows: not recorded");
                None
            }
            other => other.clone(),
        };
        let (task_id, job_id) = (bounded(task_id, "taskId"), bounded(job_id, "jobId"));
        if task_id.is_none() && job_id.is_none() {
            return;
        }
        self.recall().receipts.insert(
            object_id(phone).into_owned(),
            plan::Receipt {
                request_id: request_id.clone(),
                task_id,
                job_id,
            },
        );
    }

    /// Whether a backup call whose intents were sent at `intents_sent`, in leadership term `term`,
    /// may leave now: only while leadership is fresh, still in that term, and within
    /// [`INTENT_MAX_AGE`] of the intent, so that a replica frozen between its intent and its call
    /// drops the call when it thaws, even if it leads again by then.
    pub(super) fn may_call(
        &self,
        term: u64,
        intents_sent: tokio::time::Instant,
    ) -> Result<(), &'static str> {
        if let Some(fence) = &self.fence {
            if !fence.is_fresh() {
                return Err(
                    "leadership is not fresh: the last Lease renewal is older than the renew deadline",
                );
            }
            if fence.term() != term {
                return Err("leadership changed hands since the intent was written");
            }
        }
        if intents_sent.elapsed() >= INTENT_MAX_AGE {
            return Err("the intent is older than the call may be");
        }
        Ok(())
    }
}

/// When the call a record announces was requested, for a message.
fn fmt_requested(record: Option<&crate::api::ActionStatus>) -> String {
    record
        .and_then(|r| r.requested_at.as_ref())
        .map_or_else(|| "an unknown time".to_owned(), |t| t.0.to_string())
}
