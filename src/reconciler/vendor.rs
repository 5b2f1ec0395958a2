//! Batching a tick's vendor calls: chunks of at most 100 ids under a cap on calls in flight, and a
//! whole-call refusal split in halves until the ids at fault are isolated.

use crate::koophone::{Client, Error, MAX_IDS_PER_CALL, VendorCode};
use crate::plan::{BackupResult, Failure, Observation};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// One backup call per chunk of at most 100 ids; a whole-call refusal caused by some of its
    /// instances is split in halves, so the others are backed up in the same tick.
    pub async fn backup(&self, ids: &[String]) -> HashMap<String, BackupResult> {
        stream::iter(chunks(ids))
            .map(|chunk| self.backup_chunk(chunk))
            .buffer_unordered(self.in_flight)
            .flat_map(stream::iter)
            .collect()
            .await
    }

    fn backup_chunk(&self, ids: Vec<String>) -> BoxFuture<'_, Vec<(String, BackupResult)>> {
        async move {
            self.backup_calls.fetch_add(1, Ordering::Relaxed);
            match self.client.backup_chunk(&ids).await {
                Ok(mut receipt) => {
                    let request_id = receipt.request_id.to_string();
                    ids.into_iter()
                        .map(|id| {
                            let result = BackupResult::Accepted {
                                request_id: request_id.clone(),
                                task_id: receipt.task_id.clone(),
                                job_id: receipt.jobs.remove(&id),
                            };
                            (id, result)
                        })
                        .collect()
                }
                Err(err) if err.is_per_instance_refusal() && ids.len() > 1 => {
                    let (left, right) = halves(ids);
                    let (mut a, b) =
                        futures::join!(self.backup_chunk(left), self.backup_chunk(right));
                    a.extend(b);
                    a
                }
                Err(err) => {
                    let result = backup_failure(&err);
                    ids.into_iter().map(|id| (id, result.clone())).collect()
                }
            }
        }
        .boxed()
    }
}

/// What a failed backup call means for each of its instances.
fn backup_failure(err: &Error) -> BackupResult {
    match err.vendor_code() {
        Some(VendorCode::BackingUp) => BackupResult::AlreadyBackingUp,
        Some(VendorCode::Restoring) => BackupResult::Restoring,
        Some(VendorCode::InstanceNotFound) => BackupResult::NotFound,
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
