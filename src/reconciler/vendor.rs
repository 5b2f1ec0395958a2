//! Batching a tick's vendor calls: chunks of at most 100 ids under a cap on calls in flight, and a
//! whole-call refusal split in halves until the ids at fault are isolated.

use crate::api::Phase;
use crate::koophone::{Client, Error, MAX_IDS_PER_CALL, VendorCode};
use crate::plan::{BackupResult, Failure, Observation};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::debug;

/// The vendor calls of one tick, counted.
pub(crate) struct Batcher<'a> {
    client: &'a Client,
    in_flight: usize,
    pub status_calls: AtomicU64,
    pub backup_calls: AtomicU64,
}

fn failure(err: &Error) -> Failure {
    Failure {
        reason: err.label().to_owned(),
        message: err.summary(),
    }
}

impl<'a> Batcher<'a> {
    pub fn new(client: &'a Client, in_flight: usize) -> Batcher<'a> {
        Batcher {
            client,
            in_flight: in_flight.max(1),
            status_calls: AtomicU64::new(0),
            backup_calls: AtomicU64::new(0),
        }
    }

    /// The observation of every id: chunks of at most 100, several in flight.
    pub async fn query(&self, ids: &[String]) -> HashMap<String, Observation> {
        stream::iter(chunks(ids))
            .map(|chunk| self.query_chunk(chunk))
            .buffer_unordered(self.in_flight)
            .flat_map(stream::iter)
            .collect()
            .await
    }

    /// One status call; a bad request is split in halves, so one bad id costs the others about
    /// log2(100) extra calls, not their observations.
    fn query_chunk(&self, ids: Vec<String>) -> BoxFuture<'_, Vec<(String, Observation)>> {
        async move {
            self.status_calls.fetch_add(1, Ordering::Relaxed);
            match self.client.query_status_chunk(&ids).await {
                Ok(mut report) => ids
                    .into_iter()
                    .map(|id| {
                        let observation = match report.observed.remove(&id) {
                            Some(code) => Observation::Status(code),
                            None => Observation::Missing,
                        };
                        (id, observation)
                    })
                    .collect(),
                Err(err) if err.is_bad_request() && ids.len() > 1 => {
                    let (left, right) = halves(ids);
                    let (mut a, b) =
                        futures::join!(self.query_chunk(left), self.query_chunk(right));
                    a.extend(b);
                    a
                }
                Err(err) => {
                    let failure = failure(&err);
                    ids.into_iter()
                        .map(|id| (id, Observation::Failed(failure.clone())))
                        .collect()
                }
            }
        }
        .boxed()
    }

    /// One backup call per chunk of at most 100 ids. Each call first asks `gate` whether it may
    /// still leave (leadership fresh, intent recent); a refused gate withholds it.
    pub async fn backup(
        &self,
        ids: &[String],
        gate: &BackupGate<'_>,
    ) -> HashMap<String, BackupResult> {
        stream::iter(chunks(ids))
            .map(|chunk| self.backup_chunk(chunk, gate))
            .buffer_unordered(self.in_flight)
            .flat_map(stream::iter)
            .collect()
            .await
    }

    /// One backup call. A whole-call refusal caused by some of its instances is not blindly halved:
    /// the chunk's status is queried again first and every instance now backing up, idle, restoring
    /// or gone is dropped (a second call for it would be a second backup); the rest is re-sent, in
    /// halves only when the query dropped none.
    fn backup_chunk<'b>(
        &'b self,
        ids: Vec<String>,
        gate: &'b BackupGate<'b>,
    ) -> BoxFuture<'b, Vec<(String, BackupResult)>> {
        async move {
            if let Err(why) = gate() {
                debug!(ids = ids.len(), reason = why, "backup call withheld");
                return ids
                    .into_iter()
                    .map(|id| (id, BackupResult::Withheld))
                    .collect();
            }
            self.backup_calls.fetch_add(1, Ordering::Relaxed);
            let sent_at = Timestamp::now();
            debug!(ids = ids.len(), "backup call");
            let err = match self.client.backup_chunk(&ids).await {
                Ok(mut receipt) => {
                    let request_id = receipt.request_id.to_string();
                    return ids
                        .into_iter()
                        .map(|id| {
                            let result = BackupResult::Accepted {
                                request_id: request_id.clone(),
                                task_id: receipt.task_id.clone(),
                                job_id: receipt.jobs.remove(&id),
                                sent_at,
                            };
                            (id, result)
                        })
                        .collect();
                }
                Err(err) => err,
            };
            if !(err.is_per_instance_refusal() && ids.len() > 1) {
                let result = backup_failure(&err, ids.len() == 1);
                return ids.into_iter().map(|id| (id, result.clone())).collect();
            }
            let mut out = Vec::new();
            let mut still = Vec::new();
            for (id, observation) in self.query_chunk(ids.clone()).await {
                match settled_without_a_call(&observation) {
                    Some(result) => out.push((id, result)),
                    None => still.push(id),
                }
            }
            let resent = if still.is_empty() {
                Vec::new()
            } else if still.len() < ids.len() {
                self.backup_chunk(still, gate).await
            } else {
                let (left, right) = halves(still);
                let (mut a, b) = futures::join!(
                    self.backup_chunk(left, gate),
                    self.backup_chunk(right, gate)
                );
                a.extend(b);
                a
            };
            out.extend(resent);
            out
        }
        .boxed()
    }
}

/// Whether a backup call may leave now: `Err` names why not.
pub(crate) type BackupGate<'a> = dyn Fn() -> Result<(), &'static str> + Send + Sync + 'a;

/// What a fresh observation says of an instance whose backup call was refused whole: `None` when
/// it still needs a call; otherwise the result to record without one.
fn settled_without_a_call(observation: &Observation) -> Option<BackupResult> {
    match observation {
        Observation::Status(code) => match Phase::from_code(*code) {
            // NB: Idle too: the backup ended between the calls; the next status query records it.
            Phase::BackingUp | Phase::Idle => Some(BackupResult::AlreadyBackingUp),
            Phase::Restoring => Some(BackupResult::Restoring),
            Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed => None,
            // Not a state a backup starts from: a call would be refused again.
            Phase::RestoreFailed | Phase::Unknown | Phase::Pending | Phase::NotFound => {
                Some(BackupResult::Failed {
                    failure: Failure {
                        reason: "NotBackupable".into(),
                        message: format!(
                            "the vendor shows status {code}, from which no backup starts"
                        ),
                    },
                    ambiguous: false,
                })
            }
        },
        Observation::Missing => Some(BackupResult::NotFound),
        // Not known: no call for it this tick; the intent's grace period runs.
        Observation::Failed(_) => Some(BackupResult::Withheld),
    }
}

/// What a failed backup call means for each of its instances; `single` when the call named one.
fn backup_failure(err: &Error, single: bool) -> BackupResult {
    match err.vendor_code() {
        Some(VendorCode::BackingUp) => BackupResult::AlreadyBackingUp,
        Some(VendorCode::Restoring) => BackupResult::Restoring,
        Some(VendorCode::InstanceNotFound) => BackupResult::NotFound,
        Some(VendorCode::NoPermission | VendorCode::NotOwned | VendorCode::RegionMismatch)
            if single =>
        {
            BackupResult::Refused {
                failure: failure(err),
            }
        }
        _ => BackupResult::Failed {
            failure: failure(err),
            // A refusal (4xx) or a call never delivered cannot have started a backup; a time-out,
            // a 5xx or a lost answer may have.
            ambiguous: !(err.certainly_not_processed()
                || err.is_per_instance_refusal()
                || err.http_status().is_some_and(|s| (400..500).contains(&s))),
        },
    }
}

/// Owned chunks of at most 100 ids.
// NB: streaming over borrowed `ids.chunks()` makes the tick future lose `Send` (a closure over a
// higher-ranked lifetime), so that the tick could not be spawned.
fn chunks(ids: &[String]) -> Vec<Vec<String>> {
    ids.chunks(MAX_IDS_PER_CALL)
        .map(<[String]>::to_vec)
        .collect()
}

fn halves(mut ids: Vec<String>) -> (Vec<String>, Vec<String>) {
    let right = ids.split_off(ids.len() / 2);
    (ids, right)
}
