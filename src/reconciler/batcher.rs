//! Batching a tick's vendor calls: chunks of at most 100 ids under a cap on calls in flight, and a
//! whole-call refusal split in halves until the ids at fault are isolated, unless the vendor
//! refuses the request itself, whatever its ids: then the account's breaker opens instead.

use super::breaker::{Admission, Breakers};
use crate::api::Phase;
use crate::koophone::{AccountFault, Client, Error, Fault, Gate, MAX_IDS_PER_CALL, VendorCode};
use crate::plan::{BackupResult, Failure, Observation};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use uuid::Uuid;

/// The vendor calls of one tick for one account, counted, behind the account's circuit breaker.
pub(crate) struct Batcher<'a> {
    client: &'a Client,
    in_flight: usize,
    breakers: &'a Breakers,
    account: &'a str,
    /// The account's scope (see [`crate::plan::PhoneView::account`]), for the records of intents.
    pub scope: &'a str,
    /// The credentials' version at the start of the tick: a breaker opened under older ones closes.
    credentials: u64,
    pub status_calls: AtomicU64,
    pub backup_calls: AtomicU64,
    /// The account's cap on status calls in flight, splits included.
    status_slots: Semaphore,
    /// The account's cap on backup calls in flight, splits included.
    backup_slots: Semaphore,
    /// Whether the vendor refuses this tick's requests whatever their ids, once a refusal was
    /// judged; behind an async lock, so that concurrent refusals wait for one judgement.
    judgement: tokio::sync::Mutex<Judgement>,
}

/// What the tick knows of the account's refusals.
#[derive(Debug, Default)]
struct Judgement {
    verdict: Option<Verdict>,
    /// Judgements that could not tell (their calls lost): after [`MAX_INCONCLUSIVE`], no more
    /// calls to judge this tick.
    inconclusive: u32,
}

/// Judgements a tick tries that cannot tell, at most: each costs a call or a few.
const MAX_INCONCLUSIVE: u32 = 2;

/// What a whole-call refusal of some ids (`1000`, a 400 without a configuration code) means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The vendor refuses the request itself (its shape, its path): every call is refused so.
    Systematic,
    /// The vendor answers other requests of the account: the refused call's ids are at fault.
    IdsAtFault,
}

/// With no id of the account answered lately, this many ids of a refused chunk are asked alone
/// before the refusal is judged systematic: each one a bogus id with the chance that any is (the
/// tick's order spreads them), so one team's bogus ids among others' good ones pass for a
/// systematic refusal almost never (a sixth of the ids bogus: once in 46,000 first starts). It
/// costs as many calls only when the vendor does refuse everything; else about one.
const SAMPLES: usize = 6;

/// Ids of a backup chunk refused whole that are asked alone before the rest is split: each is a
/// call its phone needs anyway. All refused as the chunk was: the refusal is the vendor's for every
/// call (a storm to split further); one answered otherwise: the refusal is some ids', split on.
const BACKUP_SAMPLES: usize = 3;

fn failure(err: &Error) -> Failure {
    Failure {
        reason: err.label().to_owned(),
        message: err.summary(),
    }
}

/// The failure reported on every phone of an account whose breaker a call opened.
fn account_failure(fault: AccountFault, err: &Error) -> Failure {
    Failure {
        reason: fault.reason().to_owned(),
        message: format!(
            "{}; the vendor calls of this account are paused, save one probe call at a time with a growing interval, until one passes or the credentials change",
            err.summary()
        ),
    }
}

/// The failure reported on every phone of an account whose every call the vendor refuses as if
/// its ids were wrong.
fn systematic_failure(err: &Error) -> Failure {
    Failure {
        reason: AccountFault::ConfigurationError.reason().to_owned(),
        message: format!(
            "{}, whichever instance ids it names: the vendor refuses the request itself (its shape or its path), not its ids; the vendor calls of this account are paused, save one probe call at a time with a growing interval, until one passes or the credentials change",
            err.summary()
        ),
    }
}

/// Whether two calls were refused the same way: the same HTTP status and vendor code.
fn refused_alike(a: &Error, b: &Error) -> bool {
    a.fault() == b.fault()
        && a.http_status() == b.http_status()
        && a.vendor_code() == b.vendor_code()
}

fn all_failed(ids: Vec<String>, failure: &Failure) -> Vec<(String, Observation)> {
    ids.into_iter()
        .map(|id| (id, Observation::Failed(failure.clone())))
        .collect()
}

impl<'a> Batcher<'a> {
    pub fn new(
        client: &'a Client,
        in_flight: usize,
        breakers: &'a Breakers,
        account: &'a str,
    ) -> Batcher<'a> {
        Batcher {
            client,
            in_flight: in_flight.max(1),
            breakers,
            account,
            scope: crate::plan::DEFAULT_SCOPE,
            credentials: client.credentials_version(),
            status_calls: AtomicU64::new(0),
            backup_calls: AtomicU64::new(0),
            status_slots: Semaphore::new(in_flight.max(1)),
            backup_slots: Semaphore::new(in_flight.max(1)),
            judgement: tokio::sync::Mutex::default(),
        }
    }

    /// The batcher of an account whose instance ids live in `scope`.
    pub fn in_scope(mut self, scope: &'a str) -> Batcher<'a> {
        self.scope = scope;
        self
    }

    /// The account's name, as logs and metrics label it.
    pub fn account(&self) -> &'a str {
        self.account
    }

    /// The observation of every id: chunks of at most 100, several in flight. While the account's
    /// breaker is open, no call is made, or only its one probe.
    pub async fn query(&self, ids: Vec<String>) -> HashMap<String, Observation> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut chunks = chunks(ids);
        if chunks.is_empty() {
            return out;
        }
        match self.breakers.admit(self.account, self.credentials) {
            Admission::Call => {}
            Admission::Refuse(failure) => {
                return chunks
                    .into_iter()
                    .flat_map(|c| all_failed(c, &failure))
                    .collect();
            }
            Admission::Probe => {
                let probe = chunks.remove(0);
                out.extend(self.query_chunk(probe, true).await);
                if let Some(failure) = self.breakers.refusal(self.account) {
                    out.extend(chunks.into_iter().flat_map(|c| all_failed(c, &failure)));
                    return out;
                }
            }
        }
        let mut answers = stream::iter(chunks)
            .map(|chunk| self.query_chunk(chunk, false))
            .buffer_unordered(self.in_flight);
        while let Some(answer) = answers.next().await {
            out.extend(answer);
        }
        out
    }

    /// One status call, under the account's cap on calls in flight; an answer closes the breaker,
    /// and its first listed id is remembered as one the vendor answers normally.
    async fn status_call(&self, ids: &[String]) -> Result<crate::koophone::StatusReport, Error> {
        // NB: the semaphore is never closed: acquiring fails never.
        let _slot = self.status_slots.acquire().await.ok();
        self.status_calls.fetch_add(1, Ordering::Relaxed);
        let report = self.client.query_status_chunk(ids).await?;
        self.breakers.close(self.account);
        if let Some(id) = ids.iter().find(|id| report.observed.contains_key(*id)) {
            self.breakers.answered(self.account, id);
        }
        Ok(report)
    }

    /// One status call (a `probe` is sent while the breaker is open) and what it says of each id.
    fn query_chunk(
        &self,
        ids: Vec<String>,
        probe: bool,
    ) -> BoxFuture<'_, Vec<(String, Observation)>> {
        async move {
            if !probe && let Some(failure) = self.breakers.refusal(self.account) {
                return all_failed(ids, &failure);
            }
            let answer = self.status_call(&ids).await;
            self.settle(ids, answer, probe).await
        }
        .boxed()
    }

    /// What a status call's answer says of each of its ids. A call refused because of some of
    /// its ids (`1000`, a 400 without a configuration code, or a per-instance business error such
    /// as `1012` under HTTP 200) is split in halves, so one bad id costs the others about
    /// log2(100) extra calls, not their observations; a configuration or credential error opens
    /// the account's breaker instead, and is never split, and so does a refusal the vendor makes
    /// whatever the ids (see [`Batcher::judge`]).
    fn settle(
        &self,
        ids: Vec<String>,
        answer: Result<crate::koophone::StatusReport, Error>,
        probe: bool,
    ) -> BoxFuture<'_, Vec<(String, Observation)>> {
        async move {
            let err = match answer {
                Ok(report) => return observations(ids, report),
                Err(err) => err,
            };
            match err.fault() {
                Fault::Account(fault) => {
                    let failure = account_failure(fault, &err);
                    self.breakers
                        .trip(self.account, failure.clone(), self.credentials, probe);
                    all_failed(ids, &failure)
                }
                Fault::BadIds if ids.len() > 1 => {
                    let verdict = self.judgement.lock().await.verdict;
                    match verdict {
                        Some(Verdict::Systematic) => self.systematic(ids, &err, probe),
                        Some(Verdict::IdsAtFault) => self.split(ids).await,
                        None => self.split_judging(ids, err, probe).await,
                    }
                }
                Fault::Instance => {
                    // The vendor answered about the ids: the account itself works.
                    self.breakers.close(self.account);
                    if ids.len() > 1 {
                        self.split(ids).await
                    } else if err.vendor_code() == Some(&VendorCode::InstanceNotFound) {
                        ids.into_iter()
                            .map(|id| (id, Observation::Missing))
                            .collect()
                    } else {
                        all_failed(ids, &failure(&err))
                    }
                }
                Fault::BadIds | Fault::Transient => all_failed(ids, &failure(&err)),
            }
        }
        .boxed()
    }

    /// The vendor refuses the request whatever its ids: the breaker opens (or, for a `probe`,
    /// stays open a step longer), and `ids` fail with the account's failure.
    fn systematic(&self, ids: Vec<String>, err: &Error, probe: bool) -> Vec<(String, Observation)> {
        let failure = systematic_failure(err);
        self.breakers
            .trip(self.account, failure.clone(), self.credentials, probe);
        all_failed(ids, &failure)
    }

    /// Both halves of `ids`, each asked on its own (under the cap, as every call).
    async fn split(&self, ids: Vec<String>) -> Vec<(String, Observation)> {
        let (left, right) = halves(ids);
        let (mut a, b) = futures::join!(
            self.query_chunk(left, false),
            self.query_chunk(right, false)
        );
        a.extend(b);
        a
    }

    /// [`Batcher::split`] of a call refused with `err` while the tick does not know yet whether
    /// the vendor refuses every request so: when both halves are refused the same way, the
    /// refusal is judged before any further split.
    async fn split_judging(
        &self,
        ids: Vec<String>,
        err: Error,
        probe: bool,
    ) -> Vec<(String, Observation)> {
        if !probe && let Some(failure) = self.breakers.refusal(self.account) {
            return all_failed(ids, &failure);
        }
        let (left, right) = halves(ids);
        let (a, b) = futures::join!(self.status_call(&left), self.status_call(&right));
        if let (Err(x), Err(y)) = (&a, &b)
            && refused_alike(x, &err)
            && refused_alike(y, &err)
        {
            let both: Vec<&String> = left.iter().chain(&right).collect();
            if self.judge(&both, &err).await == Some(Verdict::Systematic) {
                let mut ids = left;
                ids.extend(right);
                return self.systematic(ids, &err, probe);
            }
        }
        let (mut a, b) = futures::join!(self.settle(left, a, false), self.settle(right, b, false));
        a.extend(b);
        a
    }

    /// Whether the vendor refuses this tick's requests whatever their ids, as it refused both
    /// halves of `ids` with `err`: it does when an id it answered normally lately, asked alone, is
    /// refused the same way; or, while the account has no such id, when a few of `ids`, asked
    /// alone, are all refused the same way. `None`: not known (a call asking was itself lost, or
    /// too few ids to tell a bogus id from a refused request).
    ///
    /// NB: two refused halves alone prove nothing: the tick's order spreads one tenant's bogus
    /// ids over every chunk, so both halves of each would be refused, and a shared account would
    /// stop for every tenant.
    async fn judge(&self, ids: &[&String], err: &Error) -> Option<Verdict> {
        let mut judgement = self.judgement.lock().await;
        if judgement.verdict.is_some() || judgement.inconclusive >= MAX_INCONCLUSIVE {
            return judgement.verdict;
        }
        let judged = match self.breakers.known_good(self.account) {
            Some(canary) => match self.status_call(std::slice::from_ref(&canary)).await {
                Ok(_) => Some(Verdict::IdsAtFault),
                Err(alone) if refused_alike(&alone, err) => Some(Verdict::Systematic),
                Err(alone) => {
                    if alone.fault() != Fault::Transient {
                        // Gone, or no longer ours: no canary any more.
                        self.breakers.forget_good(self.account, &canary);
                    }
                    self.judged_alone(&alone)
                }
            },
            None if ids.len() <= SAMPLES => return None,
            None => self.sample(ids, err).await,
        };
        if judged == Some(Verdict::Systematic) {
            warn!(
                account = self.account,
                refusal = %err.summary(),
                "the vendor refuses the request whatever its ids: the account's circuit breaker opens"
            );
        }
        judgement.verdict = judged;
        if judged.is_none() {
            judgement.inconclusive += 1;
        }
        judged
    }

    /// A few of `ids` asked alone, one after another until one is answered.
    async fn sample(&self, ids: &[&String], err: &Error) -> Option<Verdict> {
        let picked: Vec<String> = {
            let mut rng = rand::rng();
            rand::seq::index::sample(&mut rng, ids.len(), SAMPLES)
                .into_iter()
                .map(|i| ids[i].to_owned())
                .collect()
        };
        for id in picked {
            match self.status_call(std::slice::from_ref(&id)).await {
                Ok(_) => return Some(Verdict::IdsAtFault),
                Err(alone) if refused_alike(&alone, err) => {}
                Err(alone) => return self.judged_alone(&alone),
            }
        }
        Some(Verdict::Systematic)
    }

    /// What one id asked alone says when refused otherwise than the call judged: a refusal about
    /// that instance (`4001`, `1012`, ...) shows the vendor takes the request; an account's fault
    /// opens the breaker; anything else tells nothing.
    fn judged_alone(&self, alone: &Error) -> Option<Verdict> {
        match alone.fault() {
            Fault::Instance => Some(Verdict::IdsAtFault),
            Fault::Account(fault) => {
                let failure = account_failure(fault, alone);
                self.breakers
                    .trip(self.account, failure, self.credentials, false);
                None
            }
            Fault::BadIds | Fault::Transient => None,
        }
    }

    /// Takes the slots of one backup call (the batcher's cap on backup calls in flight, and the
    /// account's: see [`Client::reserve_backup`]) before its intents are written, so that the
    /// call leaves right after them, well inside the intent age.
    pub async fn reserve_backup(&self) -> Result<BackupSlot<'_>, Error> {
        // NB: the semaphore is never closed: acquiring fails never.
        let cap = self.backup_slots.acquire().await.ok();
        let reservation = self.client.reserve_backup().await?;
        Ok(BackupSlot {
            _cap: cap,
            reservation,
        })
    }

    /// One backup call for at most 100 ids, in `slot`, carrying `request_id` (the intents
    /// recorded it; a re-sent call gets its own). Its every attempt asks `gate` last, right before
    /// it leaves, whether it may still (leadership fresh, intent recent); a refused gate withholds it.
    pub async fn backup_reserved(
        &self,
        ids: Vec<String>,
        gate: &Gate<'_>,
        request_id: Uuid,
        slot: BackupSlot<'_>,
    ) -> HashMap<String, BackupResult> {
        debug_assert!(ids.len() <= MAX_IDS_PER_CALL);
        self.backup_chunk(ids, gate, Some(request_id), Some(slot))
            .await
            .into_iter()
            .collect()
    }

    /// One backup call. A whole-call refusal caused by some of its instances is not blindly halved:
    /// the chunk's status is queried again first and every instance now backing up, idle, restoring
    /// or gone is dropped (a second call for it would be a second backup); the rest is re-sent, in
    /// halves only when the query dropped none, and then only once a few ids asked alone showed
    /// that the vendor does not refuse every call the same way (a gateway refusing the path, a
    /// request shape it no longer takes: halving that down to single ids would be a storm).
    fn backup_chunk<'b>(
        &'b self,
        ids: Vec<String>,
        gate: &'b Gate<'b>,
        request_id: Option<Uuid>,
        reserved: Option<BackupSlot<'b>>,
    ) -> BoxFuture<'b, Vec<(String, BackupResult)>> {
        async move {
            let err = match self.send_backup(&ids, gate, request_id, reserved).await {
                Ok(results) => return results,
                Err(err) => err,
            };
            if !(err.is_per_instance_refusal() && ids.len() > 1) {
                let result = backup_failure(&err, ids.len() == 1);
                return ids.into_iter().map(|id| (id, result.clone())).collect();
            }
            let mut out = Vec::new();
            let mut still = Vec::new();
            for (id, observation) in self.query_chunk(ids.clone(), false).await {
                match settled_without_a_call(&observation) {
                    Some(result) => out.push((id, result)),
                    None => still.push(id),
                }
            }
            let resent = if still.is_empty() {
                Vec::new()
            } else if still.len() < ids.len() {
                self.backup_chunk(still, gate, None, None).await
            } else {
                self.resend_refused(still, gate, &err).await
            };
            // NB: the refused call did leave: an id whose re-send did not (gate, breaker) keeps its
            // intent, and its grace period runs, as for any call whose answer is a refusal.
            out.extend(resent.into_iter().map(|(id, result)| match result {
                BackupResult::Withheld => (
                    id,
                    BackupResult::Failed {
                        failure: failure(&err),
                        ambiguous: false,
                    },
                ),
                other => (id, other),
            }));
            out
        }
        .boxed()
    }

    /// Re-sends a chunk refused whole whose every id still needs a call: up to [`BACKUP_SAMPLES`]
    /// ids alone first; if each is refused as the chunk was, the vendor refuses every call so (a
    /// systematic refusal): the rest get the failure without a call, retried with the backoff of
    /// the attempts. Otherwise the rest is re-sent in halves, to isolate the ids at fault.
    async fn resend_refused<'b>(
        &'b self,
        mut ids: Vec<String>,
        gate: &'b Gate<'b>,
        refusal: &Error,
    ) -> Vec<(String, BackupResult)> {
        let mut out = Vec::new();
        let mut alike = Vec::new();
        while alike.len() < BACKUP_SAMPLES && ids.len() > 1 {
            let id = ids.remove(0);
            match self
                .send_backup(std::slice::from_ref(&id), gate, None, None)
                .await
            {
                Ok(results) => {
                    out.extend(results);
                    break;
                }
                Err(e) if refused_alike(&e, refusal) => alike.push((id, e)),
                Err(e) => {
                    out.push((id, backup_failure(&e, true)));
                    break;
                }
            }
        }
        if alike.len() == BACKUP_SAMPLES {
            warn!(
                account = self.account,
                error = %refusal,
                "the vendor refuses every backup call the same way, whatever its ids: no further split"
            );
            let systematic = BackupResult::Failed {
                failure: Failure {
                    reason: "ConfigurationError".into(),
                    message: format!(
                        "{}; the vendor refuses every backup call so, whatever its ids: check the account's configuration (its project, the service, the gateway)",
                        refusal.summary()
                    ),
                },
                ambiguous: false,
            };
            out.extend(
                alike
                    .into_iter()
                    .map(|(id, _)| id)
                    .chain(ids)
                    .map(|id| (id, systematic.clone())),
            );
            return out;
        }
        out.extend(
            alike
                .into_iter()
                .map(|(id, e)| (id, backup_failure(&e, true))),
        );
        if ids.len() == 1 {
            out.extend(self.backup_chunk(ids, gate, None, None).await);
        } else if !ids.is_empty() {
            let (left, right) = halves(ids);
            let (a, b) = futures::join!(
                self.backup_chunk(left, gate, None, None),
                self.backup_chunk(right, gate, None, None)
            );
            out.extend(a);
            out.extend(b);
        }
        out
    }

    /// Sends one backup call (in `reserved`, or in slots of its own): the result of each id when
    /// the vendor accepted it or it was withheld before it left; the error otherwise (an account
    /// fault trips the breaker).
    async fn send_backup(
        &self,
        ids: &[String],
        gate: &Gate<'_>,
        request_id: Option<Uuid>,
        reserved: Option<BackupSlot<'_>>,
    ) -> Result<Vec<(String, BackupResult)>, Error> {
        let withheld = || {
            ids.iter()
                .map(|id| (id.clone(), BackupResult::Withheld))
                .collect()
        };
        if self.breakers.refusal(self.account).is_some() {
            return Ok(withheld());
        }
        // NB: the client asks the gate after every wait of each attempt (the account's
        // limits, a Retry-After, a token fetch): nothing waits between the gate and the call.
        // Credentials replaced during the tick may reach another project than the one whose
        // scope decided this instance's owner: no call under them before the next tick.
        let gate = || {
            if self.client.credentials_version() != self.credentials {
                return Err("the account's credentials changed during the tick");
            }
            gate()
        };
        let gate: &Gate<'_> = &gate;
        let request_id = request_id.unwrap_or_else(Uuid::new_v4);
        let answer = match reserved {
            Some(BackupSlot { _cap, reservation }) => {
                self.client
                    .backup_chunk_reserved(ids, request_id, gate, reservation)
                    .await
            }
            None => {
                // NB: the semaphore is never closed: acquiring fails never.
                let _slot = self.backup_slots.acquire().await.ok();
                self.client.backup_chunk_gated(ids, request_id, gate).await
            }
        };
        if !matches!(answer, Err(Error::Withheld { .. })) {
            self.backup_calls.fetch_add(1, Ordering::Relaxed);
        }
        match answer {
            Ok(mut receipt) => {
                debug!(ids = ids.len(), "backup call accepted");
                let request_id = receipt.request_id.to_string();
                Ok(ids
                    .iter()
                    .map(|id| {
                        let result = BackupResult::Accepted {
                            request_id: request_id.clone(),
                            task_id: receipt.task_id.clone(),
                            job_id: receipt.jobs.remove(id),
                            sent_at: receipt.sent_at,
                        };
                        (id.clone(), result)
                    })
                    .collect())
            }
            Err(Error::Withheld { reason, .. }) => {
                debug!(ids = ids.len(), reason, "backup call withheld");
                Ok(withheld())
            }
            Err(err) => {
                if let Fault::Account(fault) = err.fault() {
                    self.breakers.trip(
                        self.account,
                        account_failure(fault, &err),
                        self.credentials,
                        false,
                    );
                }
                Err(err)
            }
        }
    }
}

/// What a status answer says of each of the ids it was asked about.
fn observations(
    ids: Vec<String>,
    mut report: crate::koophone::StatusReport,
) -> Vec<(String, Observation)> {
    ids.into_iter()
        .map(|id| {
            let observation = match report.observed.remove(&id) {
                Some(code) => Observation::Status(code),
                None => Observation::Missing,
            };
            (id, observation)
        })
        .collect()
}

/// The slots of one backup call, taken before its intents are written.
pub(crate) struct BackupSlot<'a> {
    _cap: Option<tokio::sync::SemaphorePermit<'a>>,
    reservation: crate::koophone::Reservation<'a>,
}

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
        // Not known: no call for it this tick. NB: not Withheld: the refused call did leave, so
        // its intent stays and its grace period runs.
        Observation::Failed(query) => Some(BackupResult::Failed {
            failure: Failure {
                reason: query.reason.clone(),
                message: format!(
                    "the backup call was refused whole, and the status query that followed failed ({}): {}",
                    query.reason, query.message
                ),
            },
            ambiguous: false,
        }),
    }
}

/// What a failed backup call means for each of its instances; `single` when the call named one.
fn backup_failure(err: &Error, single: bool) -> BackupResult {
    match err.vendor_code() {
        Some(VendorCode::BackingUp) => BackupResult::AlreadyBackingUp,
        Some(VendorCode::Restoring) => BackupResult::Restoring,
        Some(VendorCode::InstanceNotFound) => BackupResult::NotFound,
        // NB: a 1001 may be IAM permissions still propagating: the plan retries it once.
        Some(VendorCode::NoPermission) if single => BackupResult::NotPermitted {
            failure: failure(err),
        },
        Some(VendorCode::NotOwned | VendorCode::RegionMismatch) if single => {
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
// NB: the ids are moved, not cloned: a tick's chunk of at most 100 becomes its one call as is.
fn chunks(mut ids: Vec<String>) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(ids.len().div_ceil(MAX_IDS_PER_CALL));
    while ids.len() > MAX_IDS_PER_CALL {
        let rest = ids.split_off(MAX_IDS_PER_CALL);
        out.push(std::mem::replace(&mut ids, rest));
    }
    if !ids.is_empty() {
        out.push(ids);
    }
    out
}

fn halves(mut ids: Vec<String>) -> (Vec<String>, Vec<String>) {
    let right = ids.split_off(ids.len() / 2);
    (ids, right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::koophone::{ClientConfig, Token};
    use crate::reconciler::DEFAULT_ACCOUNT;
    use crate::sim::{SimConfig, Simulator, code};

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("inst-{i:05}")).collect()
    }

    async fn fleet(n: usize, status: i64) -> (Simulator, Client) {
        faulty_fleet(n, status, crate::sim::Faults::default()).await
    }

    async fn faulty_fleet(
        n: usize,
        status: i64,
        faults: crate::sim::Faults,
    ) -> (Simulator, Client) {
        let sim = Simulator::start(
            SimConfig {
                instances: ids(n).into_iter().map(|id| (id, status)).collect(),
                faults,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let client = Client::new(
            ClientConfig {
                base_url: sim.url(),
                ..ClientConfig::default()
            },
            Token::new("t"),
        )
        .unwrap();
        (sim, client)
    }

    #[test]
    fn a_no_permission_may_pass_while_not_owned_and_another_region_are_refusals() {
        use crate::koophone::{Endpoint, VendorError};
        let answered = |code: &str| Error::Vendor {
            endpoint: Endpoint::Backup,
            request_id: uuid::Uuid::nil(),
            status: 200,
            vendor: VendorError {
                code: VendorCode::parse(code),
                message: "refused".into(),
            },
        };
        assert!(matches!(
            backup_failure(&answered("1001"), true),
            BackupResult::NotPermitted { .. }
        ));
        for code in ["1012", "1002"] {
            assert!(
                matches!(
                    backup_failure(&answered(code), true),
                    BackupResult::Refused { .. }
                ),
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn two_hundred_fifty_ids_make_exactly_three_status_calls() {
        let _deadline =
            crate::test_deadline::deadline("two_hundred_fifty_ids_make_exactly_three_status_calls");
        let (sim, client) = fleet(250, code::DATA_LOADED).await;
        let breakers = Breakers::default();
        let batcher = Batcher::new(&client, 8, &breakers, DEFAULT_ACCOUNT);
        let observed = batcher.query(ids(250)).await;
        assert_eq!(observed.len(), 250);
        assert!(
            observed
                .values()
                .all(|o| *o == Observation::Status(code::DATA_LOADED))
        );
        assert_eq!(batcher.status_calls.load(Ordering::Relaxed), 3);
        let counters = sim.counters();
        let q = &counters.endpoints["batch-query-status"];
        assert_eq!((q.calls, q.ids, q.max_ids_per_call), (3, 250, 100));
    }

    #[tokio::test]
    async fn a_gateway_refusing_every_call_400_opens_the_breaker_in_a_few_calls_a_chunk() {
        let _deadline = crate::test_deadline::deadline(
            "a_gateway_refusing_every_call_400_opens_the_breaker_in_a_few_calls_a_chunk",
        );
        // HTTP 400 with a gateway's code, no configuration code: as if some ids were wrong.
        let faults = crate::sim::Faults {
            answer_all: Some(crate::sim::CannedError {
                status: 400,
                code: "APIGW.0101".into(),
            }),
            ..Default::default()
        };
        let (sim, client) = faulty_fleet(1000, code::DATA_LOADED, faults).await;
        let breakers = Breakers::default();
        let batcher = Batcher::new(&client, 8, &breakers, DEFAULT_ACCOUNT);
        let observed = batcher.query(ids(1000)).await;
        let calls = sim.counters().calls("batch-query-status");
        // The 8 chunks in flight, their halves, and the ids asked alone: no id answered before.
        assert!(
            calls <= 8 * 3 + SAMPLES as u64,
            "{calls} status calls for 10 chunks"
        );
        let failure = breakers
            .refusal(DEFAULT_ACCOUNT)
            .expect("the breaker opened");
        assert_eq!(failure.reason, "ConfigurationError");
        assert!(
            observed
                .values()
                .all(|o| matches!(o, Observation::Failed(f) if f.reason == "ConfigurationError")),
            "{observed:?}"
        );
    }

    #[tokio::test]
    async fn a_reserved_backup_waits_for_its_accounts_limits_before_and_leaves_at_once_after() {
        let _deadline = crate::test_deadline::deadline(
            "a_reserved_backup_waits_for_its_accounts_limits_before_and_leaves_at_once_after",
        );
        let (sim, _) = fleet(1, code::DATA_LOADED).await;
        let client = Client::new(
            ClientConfig {
                base_url: sim.url(),
                calls_per_second: Some(2),
                ..ClientConfig::default()
            },
            Token::new("t"),
        )
        .unwrap();
        let breakers = Breakers::default();
        let batcher = Batcher::new(&client, 8, &breakers, DEFAULT_ACCOUNT);
        // A status call takes the account's slot: the backup's comes 500 ms later.
        batcher.query(ids(1)).await;
        let asked = tokio::time::Instant::now();
        let slot = batcher.reserve_backup().await.unwrap();
        let reserved = tokio::time::Instant::now();
        assert!(
            reserved - asked >= std::time::Duration::from_millis(300),
            "the reservation did not wait for the account's call rate"
        );
        let checked_at = std::sync::Mutex::new(None);
        let gate = || {
            *checked_at.lock().unwrap() = Some(tokio::time::Instant::now());
            Err("the lease went stale")
        };
        let results = batcher
            .backup_reserved(ids(1), &gate, Uuid::new_v4(), slot)
            .await;
        assert!(results.values().all(|r| *r == BackupResult::Withheld));
        let waited = checked_at.lock().unwrap().unwrap() - reserved;
        assert!(
            waited < std::time::Duration::from_millis(400),
            "the reserved call waited for another slot ({waited:?}) before its gate"
        );
        assert_eq!(sim.counters().calls("backup"), 0);
    }

    #[tokio::test]
    async fn a_backup_retried_after_a_429_is_gated_after_its_retry_after() {
        let _deadline = crate::test_deadline::deadline(
            "a_backup_retried_after_a_429_is_gated_after_its_retry_after",
        );
        // Every call is answered 429 with Retry-After: 1 (not processed: the client retries).
        let faults = crate::sim::Faults {
            rate_limit_rate: 1.0,
            ..Default::default()
        };
        let (sim, client) = faulty_fleet(1, code::DATA_LOADED, faults).await;
        let breakers = Breakers::default();
        let batcher = Batcher::new(&client, 8, &breakers, DEFAULT_ACCOUNT);
        // The lease goes stale while the retry waits out the vendor's Retry-After.
        let asked = std::sync::Mutex::new(Vec::new());
        let gate = || {
            let mut asked = asked.lock().unwrap();
            asked.push(tokio::time::Instant::now());
            if asked.len() == 1 {
                Ok(())
            } else {
                Err("the lease went stale during the Retry-After")
            }
        };
        let slot = batcher.reserve_backup().await.unwrap();
        let results = batcher
            .backup_reserved(ids(1), &gate, Uuid::new_v4(), slot)
            .await;
        assert!(
            results.values().all(|r| *r == BackupResult::Withheld),
            "{results:?}"
        );
        assert_eq!(
            sim.counters().calls("backup"),
            1,
            "the retry left without asking the gate after its wait"
        );
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 2);
        let waited = asked[1] - asked[0];
        assert!(
            waited >= std::time::Duration::from_millis(900),
            "the gate was asked before the Retry-After ended ({waited:?} after the first ask)"
        );
    }

    #[tokio::test]
    async fn no_backup_leaves_under_credentials_replaced_during_the_tick() {
        let _deadline = crate::test_deadline::deadline(
            "no_backup_leaves_under_credentials_replaced_during_the_tick",
        );
        let (sim, _) = fleet(1, code::DATA_LOADED).await;
        let auth = std::sync::Arc::new(crate::koophone::Auth::token(Token::new("t")));
        let client = Client::new(
            ClientConfig {
                base_url: sim.url(),
                ..ClientConfig::default()
            },
            auth.clone(),
        )
        .unwrap();
        let breakers = Breakers::default();
        let batcher = Batcher::new(&client, 8, &breakers, DEFAULT_ACCOUNT);
        // Rotated to another project's credentials after the tick bound its phones by scope.
        auth.set(Ok(crate::koophone::Credentials::Token {
            token: Token::new("t"),
            project_id: Some("another-project".into()),
        }));
        let slot = batcher.reserve_backup().await.unwrap();
        let results = batcher
            .backup_reserved(ids(1), &|| Ok(()), Uuid::new_v4(), slot)
            .await;
        assert!(
            results.values().all(|r| *r == BackupResult::Withheld),
            "{results:?}"
        );
        assert_eq!(sim.counters().calls("backup"), 0);
    }

    #[test]
    fn an_id_of_a_refused_call_whose_requery_failed_keeps_its_intent() {
        // The refused call did leave: the id is not 'withheld' (which clears the intent).
        let unknown = Observation::Failed(Failure {
            reason: "Timeout".into(),
            message: "no answer".into(),
        });
        match settled_without_a_call(&unknown) {
            Some(BackupResult::Failed {
                ambiguous: false,
                failure,
            }) => assert!(failure.message.contains("refused whole"), "{failure:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_backup_of_100_ids_makes_one_call_and_starts_every_backup() {
        let _deadline = crate::test_deadline::deadline(
            "a_backup_of_100_ids_makes_one_call_and_starts_every_backup",
        );
        let (sim, client) = fleet(100, code::DATA_LOADED).await;
        let breakers = Breakers::default();
        let batcher = Batcher::new(&client, 8, &breakers, DEFAULT_ACCOUNT);
        let slot = batcher.reserve_backup().await.unwrap();
        let results = batcher
            .backup_reserved(ids(100), &|| Ok(()), Uuid::new_v4(), slot)
            .await;
        assert_eq!(results.len(), 100);
        assert!(
            results.values().all(|r| matches!(
                r,
                BackupResult::Accepted {
                    task_id: Some(_),
                    job_id: Some(_),
                    ..
                }
            )),
            "{results:?}"
        );
        assert_eq!(batcher.backup_calls.load(Ordering::Relaxed), 1);
        assert_eq!(sim.counters().calls("backup"), 1);
        assert_eq!(sim.counters().backups_started, 100);
    }
}
