//! The action call path of a [`Batcher`], one for every vendor action: one call reserved before
//! its intents are written, and a whole-call refusal re-queried, sampled and re-sent so that no
//! instance gets a second action.

use super::{Batcher, account_failure, failure, halves, refused_alike};
use crate::koophone::{Endpoint, Error, Fault, Gate, MAX_IDS_PER_CALL, VendorCode};
use crate::plan::{Action, ActionResult, Failure};
use futures::FutureExt;
use futures::future::BoxFuture;
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::HashMap;
use std::sync::atomic::Ordering;
use tracing::{debug, warn};
use uuid::Uuid;

/// Ids of an action's chunk refused whole that are asked alone before the rest is split: each is a
/// call its phone needs anyway. All refused as the chunk was: the refusal is the vendor's for every
/// call (a storm to split further); one answered otherwise: the refusal is some ids', split on.
const BACKUP_SAMPLES: usize = 3;

impl Batcher<'_> {
    /// Takes the slots of one call of `action` (the batcher's cap on action calls in flight, and
    /// the account's: see [`Client::reserve`](crate::koophone::Client::reserve)) before its
    /// intents are written, so that the call leaves right after them, well inside the intent age.
    pub async fn reserve(&self, action: Action) -> Result<ActionSlot<'_>, Error> {
        // NB: the semaphore is never closed: acquiring fails never.
        let cap = self.action_slots.acquire().await.ok();
        let reservation = self.client.reserve(endpoint(action)).await?;
        Ok(ActionSlot {
            _cap: cap,
            reservation,
        })
    }

    /// Where one instance's prepare for `user` stands, as the vendor's `prepare-progress` says:
    /// asked only before a prepare is sent again after its grace period (one call an instance). An
    /// error when it cannot tell (the account's breaker open, the call failed).
    pub async fn prepare_progress(
        &self,
        user: &str,
        id: &str,
    ) -> Result<crate::koophone::PrepareProgress, String> {
        if let Some(failure) = self.breakers.refusal(self.account) {
            return Err(failure.message);
        }
        // NB: the semaphore is never closed: acquiring fails never.
        let _slot = self.action_slots.acquire().await.ok();
        self.client
            .prepare_progress(user, id)
            .await
            .map_err(|e| e.summary())
    }

    /// One call of `action` for at most 100 ids, in `slot`, carrying `request_id` (the intents
    /// recorded it; a re-sent call gets its own). Its every attempt asks `gate` last, right before
    /// it leaves, whether it may still (leadership fresh, intent recent); a refused gate withholds it.
    pub async fn call_reserved(
        &self,
        call: ActionCall<'_>,
        ids: Vec<String>,
        gate: &Gate<'_>,
        request_id: Uuid,
        slot: ActionSlot<'_>,
    ) -> HashMap<String, ActionResult> {
        debug_assert!(ids.len() <= MAX_IDS_PER_CALL);
        self.chunk(call, ids, gate, Some(request_id), Some(slot))
            .await
            .into_iter()
            .collect()
    }

    /// One call of `action`. A whole-call refusal caused by some of its instances is not blindly halved:
    /// the chunk's status is queried again first and every instance now backing up, idle, restoring
    /// or gone is dropped (a second call for it would be a second backup); the rest is re-sent, in
    /// halves only when the query dropped none, and then only once a few ids asked alone showed
    /// that the vendor does not refuse every call the same way (a gateway refusing the path, a
    /// request shape it no longer takes: halving that down to single ids would be a storm).
    fn chunk<'b>(
        &'b self,
        call: ActionCall<'b>,
        ids: Vec<String>,
        gate: &'b Gate<'b>,
        request_id: Option<Uuid>,
        reserved: Option<ActionSlot<'b>>,
    ) -> BoxFuture<'b, Vec<(String, ActionResult)>> {
        async move {
            let err = match self.send(call, &ids, gate, request_id, reserved).await {
                Ok(results) => return results,
                Err(err) => err,
            };
            if !(err.is_per_instance_refusal() && ids.len() > 1) {
                let result = call_failure(call, &err, ids.len() == 1);
                return ids.into_iter().map(|id| (id, result.clone())).collect();
            }
            let mut out = Vec::new();
            let mut still = Vec::new();
            for (id, observation) in self.query_chunk(ids.clone(), false).await {
                match call.action.settled_without_a_call(&observation) {
                    Some(result) => out.push((id, result)),
                    None => still.push(id),
                }
            }
            let resent = if still.is_empty() {
                Vec::new()
            } else if still.len() < ids.len() {
                self.chunk(call, still, gate, None, None).await
            } else {
                self.resend_refused(call, still, gate, &err).await
            };
            // NB: the refused call did leave: an id whose re-send did not (gate, breaker) keeps its
            // intent, and its grace period runs, as for any call whose answer is a refusal.
            out.extend(resent.into_iter().map(|(id, result)| match result {
                ActionResult::Withheld => (
                    id,
                    ActionResult::Failed {
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
        call: ActionCall<'b>,
        mut ids: Vec<String>,
        gate: &'b Gate<'b>,
        refusal: &Error,
    ) -> Vec<(String, ActionResult)> {
        let mut out = Vec::new();
        let mut alike = Vec::new();
        while alike.len() < BACKUP_SAMPLES && ids.len() > 1 {
            let id = ids.remove(0);
            match self
                .send(call, std::slice::from_ref(&id), gate, None, None)
                .await
            {
                Ok(results) => {
                    out.extend(results);
                    break;
                }
                Err(e) if refused_alike(&e, refusal) => alike.push((id, e)),
                Err(e) => {
                    out.push((id, call_failure(call, &e, true)));
                    break;
                }
            }
        }
        if alike.len() == BACKUP_SAMPLES {
            warn!(
                account = self.account,
                error = %refusal,
                "the vendor refuses every {} call the same way, whatever its ids: no further split",
                call.action.name()
            );
            let systematic = systematic_refusal(call, refusal);
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
                .map(|(id, e)| (id, call_failure(call, &e, true))),
        );
        if ids.len() == 1 {
            out.extend(self.chunk(call, ids, gate, None, None).await);
        } else if !ids.is_empty() {
            let (left, right) = halves(ids);
            let (a, b) = futures::join!(
                self.chunk(call, left, gate, None, None),
                self.chunk(call, right, gate, None, None)
            );
            out.extend(a);
            out.extend(b);
        }
        out
    }

    /// Sends one call of `action` (in `reserved`, or in slots of its own): the result of each id when
    /// the vendor accepted it or it was withheld before it left; the error otherwise (an account
    /// fault trips the breaker).
    async fn send(
        &self,
        call: ActionCall<'_>,
        ids: &[String],
        gate: &Gate<'_>,
        request_id: Option<Uuid>,
        reserved: Option<ActionSlot<'_>>,
    ) -> Result<Vec<(String, ActionResult)>, Error> {
        let withheld = || {
            ids.iter()
                .map(|id| (id.clone(), ActionResult::Withheld))
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
        let (_cap, reservation) = match reserved {
            Some(ActionSlot { _cap, reservation }) => (_cap, Some(reservation)),
            // NB: the semaphore is never closed: acquiring fails never.
            None => (self.action_slots.acquire().await.ok(), None),
        };
        let answer = match (call.action, call.key) {
            (Action::Backup, _) => self
                .client
                .backup_chunk_gated(ids, request_id, gate, reservation)
                .await
                .map(|mut receipt| {
                    let request_id = receipt.request_id.to_string();
                    accepted(ids, |id| ActionResult::Accepted {
                        request_id: request_id.clone(),
                        task_id: receipt.task_id.clone(),
                        job_id: receipt.jobs.remove(id),
                        sent_at: receipt.sent_at,
                        vendor_status: None,
                    })
                }),
            (Action::Prepare, Some(user)) => self
                .client
                .prepare_chunk_gated(user, ids, request_id, gate, reservation)
                .await
                .map(|receipt| {
                    let request_id = receipt.request_id.to_string();
                    accepted(ids, |id| ActionResult::Accepted {
                        request_id: request_id.clone(),
                        task_id: None,
                        job_id: None,
                        sent_at: receipt.sent_at,
                        vendor_status: receipt.statuses.get(id).copied(),
                    })
                }),
            // NB: the planner plans a prepare only for a phone naming its user.
            (Action::Prepare, None) => Err(Error::InvalidUserId {
                id: String::new(),
                reason: "is missing",
            }),
        };
        if !matches!(
            answer,
            Err(Error::Withheld { .. } | Error::InvalidUserId { .. })
        ) {
            self.action_calls[call.action.index()].fetch_add(1, Ordering::Relaxed);
        }
        match answer {
            Ok(results) => {
                debug!(ids = ids.len(), "{} call accepted", call.action.name());
                Ok(results)
            }
            Err(Error::Withheld { reason, .. }) => {
                debug!(
                    ids = ids.len(),
                    reason,
                    "{} call withheld",
                    call.action.name()
                );
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

/// One call's kind: the action, and the key its phones share (see [`Action::call_key`]: a
/// prepare's user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActionCall<'k> {
    pub action: Action,
    pub key: Option<&'k str>,
}

/// Every id of an accepted call, with its result.
fn accepted(
    ids: &[String],
    mut result: impl FnMut(&str) -> ActionResult,
) -> Vec<(String, ActionResult)> {
    ids.iter().map(|id| (id.clone(), result(id))).collect()
}

/// The vendor's call of each action.
fn endpoint(action: Action) -> Endpoint {
    match action {
        Action::Backup => Endpoint::Backup,
        Action::Prepare => Endpoint::Prepare,
    }
}

/// What a failed call means for each of its instances; `single` when it named one.
fn call_failure(call: ActionCall<'_>, err: &Error, single: bool) -> ActionResult {
    match call.action {
        Action::Backup => backup_failure(err, single),
        Action::Prepare => prepare_failure(err, single, call.key.unwrap_or_default()),
    }
}

/// The result of every id of a call refused so whatever its ids (a few ids asked alone were
/// refused alike): a backup's is the account's configuration, retried with the backoff; a
/// prepare's is its user's, refused for good (`PrepareRefused`), which never opens the breaker.
fn systematic_refusal(call: ActionCall<'_>, refusal: &Error) -> ActionResult {
    match call.action {
        Action::Backup => ActionResult::Failed {
            failure: Failure {
                reason: "ConfigurationError".into(),
                message: format!(
                    "{}; the vendor refuses every backup call so, whatever its ids: check the account's configuration (its project, the service, the gateway)",
                    refusal.summary()
                ),
            },
            ambiguous: false,
        },
        Action::Prepare => ActionResult::Refused {
            failure: Failure {
                reason: failure(refusal).reason,
                message: format!(
                    "{}; the vendor refuses every prepare for user {} so, whatever its instances: check spec.userId",
                    refusal.summary(),
                    call.key.unwrap_or_default()
                ),
            },
        },
    }
}

/// What a failed prepare call for `user` means for each of its instances; `single` when it named
/// one. A refusal names the user, the likelier culprit of a refused prepare.
fn prepare_failure(err: &Error, single: bool, user: &str) -> ActionResult {
    let named = || Failure {
        reason: err.label().to_owned(),
        message: format!("{} (spec.userId {user})", err.summary()),
    };
    match err.vendor_code() {
        Some(VendorCode::InstanceNotFound) if single => ActionResult::NotFound,
        Some(
            VendorCode::NoPermission
            | VendorCode::NotOwned
            | VendorCode::RegionMismatch
            | VendorCode::InvalidParameter,
        ) if single => ActionResult::Refused { failure: named() },
        _ => ActionResult::Failed {
            failure: failure(err),
            // A refusal (4xx) or a call never delivered cannot have started a prepare; a time-out,
            // a 5xx or a lost answer may have.
            ambiguous: !(err.certainly_not_processed()
                || err.is_per_instance_refusal()
                || err.http_status().is_some_and(|s| (400..500).contains(&s))),
        },
    }
}

/// The slots of one action call, taken before its intents are written.
pub(crate) struct ActionSlot<'a> {
    _cap: Option<tokio::sync::SemaphorePermit<'a>>,
    reservation: crate::koophone::Reservation<'a>,
}

/// What a failed backup call means for each of its instances; `single` when the call named one.
fn backup_failure(err: &Error, single: bool) -> ActionResult {
    match err.vendor_code() {
        Some(VendorCode::BackingUp) => ActionResult::AlreadyBackingUp,
        Some(VendorCode::Restoring) => ActionResult::Restoring,
        Some(VendorCode::InstanceNotFound) => ActionResult::NotFound,
        // NB: a 1001 may be IAM permissions still propagating: the plan retries it once.
        Some(VendorCode::NoPermission) if single => ActionResult::NotPermitted {
            failure: failure(err),
        },
        Some(VendorCode::NotOwned | VendorCode::RegionMismatch) if single => {
            ActionResult::Refused {
                failure: failure(err),
            }
        }
        _ => ActionResult::Failed {
            failure: failure(err),
            // A refusal (4xx) or a call never delivered cannot have started a backup; a time-out,
            // a 5xx or a lost answer may have.
            ambiguous: !(err.certainly_not_processed()
                || err.is_per_instance_refusal()
                || err.http_status().is_some_and(|s| (400..500).contains(&s))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::koophone::{Client, ClientConfig, Token};

    const BACKUP: ActionCall<'static> = ActionCall {
        action: Action::Backup,
        key: None,
    };
    use crate::reconciler::DEFAULT_ACCOUNT;
    use crate::reconciler::batcher::test_support::{faulty_fleet, fleet, ids};
    use crate::reconciler::breaker::Breakers;
    use crate::sim::code;

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
            ActionResult::NotPermitted { .. }
        ));
        for code in ["1012", "1002"] {
            assert!(
                matches!(
                    backup_failure(&answered(code), true),
                    ActionResult::Refused { .. }
                ),
                "{code}"
            );
        }
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
        let slot = batcher.reserve(Action::Backup).await.unwrap();
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
            .call_reserved(BACKUP, ids(1), &gate, Uuid::new_v4(), slot)
            .await;
        assert!(results.values().all(|r| *r == ActionResult::Withheld));
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
        let slot = batcher.reserve(Action::Backup).await.unwrap();
        let results = batcher
            .call_reserved(BACKUP, ids(1), &gate, Uuid::new_v4(), slot)
            .await;
        assert!(
            results.values().all(|r| *r == ActionResult::Withheld),
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
        let slot = batcher.reserve(Action::Backup).await.unwrap();
        let results = batcher
            .call_reserved(BACKUP, ids(1), &|| Ok(()), Uuid::new_v4(), slot)
            .await;
        assert!(
            results.values().all(|r| *r == ActionResult::Withheld),
            "{results:?}"
        );
        assert_eq!(sim.counters().calls("backup"), 0);
    }

    #[test]
    fn an_id_of_a_refused_call_whose_requery_failed_keeps_its_intent() {
        // The refused call did leave: the id is not 'withheld' (which clears the intent).
        let unknown = crate::plan::Observation::Failed(Failure {
            reason: "Timeout".into(),
            message: "no answer".into(),
        });
        match Action::Backup.settled_without_a_call(&unknown) {
            Some(ActionResult::Failed {
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
        let slot = batcher.reserve(Action::Backup).await.unwrap();
        let results = batcher
            .call_reserved(BACKUP, ids(100), &|| Ok(()), Uuid::new_v4(), slot)
            .await;
        assert_eq!(results.len(), 100);
        assert!(
            results.values().all(|r| matches!(
                r,
                ActionResult::Accepted {
                    task_id: Some(_),
                    job_id: Some(_),
                    ..
                }
            )),
            "{results:?}"
        );
        assert_eq!(
            batcher.action_calls[Action::Backup.index()].load(Ordering::Relaxed),
            1
        );
        assert_eq!(sim.counters().calls("backup"), 1);
        assert_eq!(sim.counters().backups_started, 100);
    }
}
