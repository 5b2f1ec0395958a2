//! Batching a tick's vendor calls: chunks of at most 100 ids under a cap on calls in flight, and a
//! whole-call refusal split in halves until the ids at fault are isolated, unless the vendor
//! refuses the request itself, whatever its ids: then the account's breaker opens instead.

mod action;
mod query;

pub(crate) use action::ActionCall;
use query::Judgement;

use super::breaker::Breakers;
use crate::koophone::{AccountFault, Client, Error, MAX_IDS_PER_CALL};
use crate::plan::{Action, Failure};
use std::sync::atomic::AtomicU64;
use tokio::sync::Semaphore;

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
    /// The calls of each action (by [`Action::index`]).
    pub action_calls: [AtomicU64; Action::ALL.len()],
    /// The account's cap on status calls in flight, splits included.
    status_slots: Semaphore,
    /// The account's cap on action calls in flight, splits included.
    action_slots: Semaphore,
    /// Whether the vendor refuses this tick's requests whatever their ids, once a refusal was
    /// judged; behind an async lock, so that concurrent refusals wait for one judgement.
    judgement: tokio::sync::Mutex<Judgement>,
}

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

/// Whether two calls were refused the same way: the same HTTP status and vendor code.
fn refused_alike(a: &Error, b: &Error) -> bool {
    a.fault() == b.fault()
        && a.http_status() == b.http_status()
        && a.vendor_code() == b.vendor_code()
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
            action_calls: Default::default(),
            status_slots: Semaphore::new(in_flight.max(1)),
            action_slots: Semaphore::new(in_flight.max(1)),
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
mod test_support;
