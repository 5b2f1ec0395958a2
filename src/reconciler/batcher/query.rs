//! The status query path of a [`Batcher`]: chunks asked under the cap, a refused call split in
//! halves, and a refusal judged systematic (the breaker opens) or some ids' (split on).

use super::{Batcher, account_failure, chunks, failure, halves, refused_alike};
use crate::koophone::{AccountFault, Error, Fault, VendorCode};
use crate::plan::{Failure, Observation};
use crate::reconciler::breaker::Admission;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::Ordering;
use tracing::warn;

/// What the tick knows of the account's refusals.
#[derive(Debug, Default)]
pub(super) struct Judgement {
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

fn all_failed(ids: Vec<String>, failure: &Failure) -> Vec<(String, Observation)> {
    ids.into_iter()
        .map(|id| (id, Observation::Failed(failure.clone())))
        .collect()
}

impl Batcher<'_> {
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
    pub(super) fn query_chunk(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::DEFAULT_ACCOUNT;
    use crate::reconciler::batcher::test_support::{faulty_fleet, fleet, ids};
    use crate::reconciler::breaker::Breakers;
    use crate::sim::code;

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
}
