//! The circuit breaker of a vendor account: a configuration or credential error (or a refusal the
//! vendor makes whatever the ids) stops the calls of the whole account, save one probe per backoff
//! step, until a probe passes or the credentials change; and the few ids the account's calls got
//! normal answers for lately, which tell such a refusal from one of bogus ids. Without it every
//! phone's call would fail the same way every tick, forever: a storm that gets the account banned
//! by the vendor's flow control.

use crate::plan::Failure;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The account of the operator's own credentials (phones without `spec.accountRef`); the others
/// are keyed by their CloudPhoneAccount's name, which may not be this one.
pub const DEFAULT_ACCOUNT: &str = crate::api::DEFAULT_ACCOUNT_NAME;

/// Timings of the breakers.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// The wait before the first probe; doubled after each failed probe.
    pub first_probe_after: Duration,
    /// No wait between probes exceeds this.
    pub max_probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            // A fixed configuration (a subscribed service, a corrected project) is picked up within
            // seconds; a lasting one costs one call per 10 minutes at most.
            first_probe_after: Duration::from_secs(10),
            max_probe_interval: Duration::from_secs(600),
        }
    }
}

/// What a caller may do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Open, and a probe is due: make exactly one call; its outcome closes or re-opens the breaker.
    Probe,
    /// Open: no call; every phone of the account reports this failure.
    Refuse(Failure),
}

#[derive(Debug)]
struct Open {
    failure: Failure,
    /// Failed probes since it opened.
    probes_failed: u32,
    /// No call before this, and then one probe.
    next_probe: Instant,
    /// The credentials' version when it opened: new credentials close it.
    credentials: u64,
}

/// Ids of an account the vendor answered normally lately, at most this many: the canaries that
/// tell a refusal of the request itself from one of its ids.
const KNOWN_GOOD: usize = 4;

/// The breakers of every account.
#[derive(Debug, Default)]
pub struct Breakers {
    config: BreakerConfig,
    open: Mutex<HashMap<String, Open>>,
    /// Per account, the ids answered normally most recently, newest first.
    known_good: Mutex<HashMap<String, Vec<String>>>,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Breakers {
        Breakers {
            config,
            open: Mutex::default(),
            known_good: Mutex::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.known_good.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vendor answered `id` of the account normally (it listed its status).
    pub fn answered(&self, account: &str, id: &str) {
        let mut known = self.known();
        let ids = match known.get_mut(account) {
            Some(ids) => ids,
            None => known.entry(account.to_owned()).or_default(),
        };
        if ids.first().is_some_and(|first| first == id) {
            return;
        }
        ids.retain(|known| known != id);
        ids.insert(0, id.to_owned());
        ids.truncate(KNOWN_GOOD);
    }

    /// An id of the account the vendor answered normally lately, the newest; `None` when none did.
    pub fn known_good(&self, account: &str) -> Option<String> {
        self.known().get(account)?.first().cloned()
    }

    /// `id` of the account no longer answers normally: it is no canary.
    pub fn forget_good(&self, account: &str, id: &str) {
        if let Some(ids) = self.known().get_mut(account) {
            ids.retain(|known| known != id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the account may call now; `credentials` is the version of its credentials (a
    /// change closes the breaker). A `Probe` answer moves the next probe one step on, so that
    /// concurrent callers get `Refuse` meanwhile.
    pub fn admit(&self, account: &str, credentials: u64) -> Admission {
        let mut open = self.lock();
        let Some(state) = open.get_mut(account) else {
            return Admission::Call;
        };
        if state.credentials != credentials {
            open.remove(account);
            return Admission::Call;
        }
        let now = Instant::now();
        if now < state.next_probe {
            return Admission::Refuse(state.failure.clone());
        }
        state.next_probe = now + self.step(state.probes_failed);
        Admission::Probe
    }

    /// The account's failure while its breaker is open.
    pub fn refusal(&self, account: &str) -> Option<Failure> {
        self.lock().get(account).map(|s| s.failure.clone())
    }

    /// A call of the account failed with a configuration or credential error: open the breaker,
    /// or, when it is open and the call was the `probe` it admitted, wait one step longer before
    /// the next probe.
    ///
    /// NB: a call that was already in flight when the breaker opened is no probe: counting each as
    /// a failed one would push one outage's first probe from 10 s to the 10-minute cap.
    pub fn trip(&self, account: &str, failure: Failure, credentials: u64, probe: bool) {
        let mut open = self.lock();
        let now = Instant::now();
        match open.get_mut(account) {
            Some(state) if state.credentials == credentials => {
                if probe {
                    state.probes_failed = state.probes_failed.saturating_add(1);
                    state.next_probe = now + self.step(state.probes_failed);
                    state.failure = failure;
                }
            }
            _ => {
                open.insert(
                    account.to_owned(),
                    Open {
                        failure,
                        probes_failed: 0,
                        next_probe: now + self.step(0),
                        credentials,
                    },
                );
            }
        }
    }

    /// A call of the account succeeded: close its breaker.
    pub fn close(&self, account: &str) {
        self.lock().remove(account);
    }

    fn step(&self, probes_failed: u32) -> Duration {
        self.config
            .first_probe_after
            .saturating_mul(1u32 << probes_failed.min(20))
            .min(self.config.max_probe_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            reason: "TenantNotFound".into(),
            message: "the tenant does not exist".into(),
        }
    }

    fn breakers() -> Breakers {
        Breakers::new(BreakerConfig {
            first_probe_after: Duration::from_millis(40),
            max_probe_interval: Duration::from_millis(100),
        })
    }

    #[tokio::test]
    async fn an_open_breaker_refuses_then_lets_one_probe_through_per_step() {
        let _deadline = crate::test_deadline::deadline(
            "an_open_breaker_refuses_then_lets_one_probe_through_per_step",
        );
        let b = breakers();
        assert_eq!(b.admit("a", 1), Admission::Call);
        b.trip("a", failure(), 1, false);
        assert_eq!(b.admit("a", 1), Admission::Refuse(failure()));
        assert_eq!(b.admit("other", 1), Admission::Call, "keyed by account");
        tokio::time::sleep(Duration::from_millis(45)).await;
        assert_eq!(b.admit("a", 1), Admission::Probe);
        assert_eq!(
            b.admit("a", 1),
            Admission::Refuse(failure()),
            "one probe per step, not one per caller"
        );
        b.trip("a", failure(), 1, true);
        tokio::time::sleep(Duration::from_millis(45)).await;
        assert!(
            matches!(b.admit("a", 1), Admission::Refuse(_)),
            "a failed probe doubles the wait"
        );
        tokio::time::sleep(Duration::from_millis(45)).await;
        assert_eq!(b.admit("a", 1), Admission::Probe);
        b.close("a");
        assert_eq!(b.admit("a", 1), Admission::Call);
    }

    /// When each probe leaves, polling every second for `until`.
    async fn probes(b: &Breakers, until: Duration, mut failed: impl FnMut(&Breakers)) -> Vec<u64> {
        let start = Instant::now();
        let mut at = Vec::new();
        while start.elapsed() < until {
            if b.admit("a", 1) == Admission::Probe {
                at.push(start.elapsed().as_secs());
                failed(b);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_probe_comes_on_time_however_many_calls_in_flight_failed_after_it_opened() {
        let b = Breakers::new(BreakerConfig::default());
        b.trip("a", failure(), 1, false);
        // The seven other calls in flight when the breaker opened fail the same way a moment later.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..7 {
            b.trip("a", failure(), 1, false);
        }
        let at = probes(&b, Duration::from_secs(80), |b| {
            b.trip("a", failure(), 1, true)
        })
        .await;
        // The production steps: 10 s, then 20, then 40 (each failed probe doubles the wait).
        assert!(!at.is_empty(), "no probe within 80 s");
        assert!((9..=12).contains(&at[0]), "first probe at {at:?} s");
        assert_eq!(at.len(), 3, "probes at {at:?} s");
        assert!((28..=32).contains(&at[1]), "second probe at {at:?} s");
        assert!((68..=72).contains(&at[2]), "third probe at {at:?} s");
    }

    #[test]
    fn a_few_ids_answered_lately_are_remembered_per_account_newest_first() {
        let b = breakers();
        assert_eq!(b.known_good("a"), None);
        for id in ["i1", "i2", "i3", "i4", "i5", "i3"] {
            b.answered("a", id);
        }
        assert_eq!(b.known_good("a").as_deref(), Some("i3"));
        assert_eq!(b.known_good("b"), None, "keyed by account");
        b.forget_good("a", "i3");
        assert_eq!(b.known_good("a").as_deref(), Some("i5"));
        for id in ["i5", "i4", "i2"] {
            b.forget_good("a", id);
        }
        assert_eq!(b.known_good("a"), None, "at most {KNOWN_GOOD} kept");
    }

    #[test]
    fn new_credentials_close_the_breaker() {
        let b = breakers();
        b.trip("a", failure(), 1, false);
        assert!(matches!(b.admit("a", 1), Admission::Refuse(_)));
        assert_eq!(b.admit("a", 2), Admission::Call);
        assert_eq!(b.refusal("a"), None, "and stays closed");
    }

    #[test]
    fn the_wait_between_probes_is_bounded() {
        let b = breakers();
        assert_eq!(b.step(0), Duration::from_millis(40));
        assert_eq!(b.step(1), Duration::from_millis(80));
        assert_eq!(b.step(2), Duration::from_millis(100));
        assert_eq!(b.step(40), Duration::from_millis(100));
    }
}
