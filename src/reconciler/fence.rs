//! The freshness of this replica's leadership, as the engine checks it before each backup call:
//! fed by the leader election under `run`, read here, so that the engine needs nothing of `run`.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How fresh this replica's leadership is, on the monotonic clock: what a vendor call checks just
/// before it leaves, because a Lease does not fence the vendor by itself (a leader frozen between
/// its intent write and its call would otherwise send the call when it thaws, whoever leads then).
///
/// Fresh means the last successful renewal began less than the renew deadline ago. Each gain of
/// leadership starts a new term, so that the engine can drop what it remembered from the last one.
#[derive(Clone, Debug)]
pub struct LeaseFence {
    renew_deadline: Duration,
    state: Arc<Mutex<FenceState>>,
}

#[derive(Debug, Default)]
struct FenceState {
    /// When the last successful take or renewal began; `None` while not leading.
    renewed_at: Option<Instant>,
    /// Incremented on each gain of leadership.
    term: u64,
}

impl LeaseFence {
    /// A fence whose leadership is fresh for `renew_deadline` after each renewal.
    pub fn new(renew_deadline: Duration) -> LeaseFence {
        LeaseFence {
            renew_deadline,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leadership was taken or renewed by an attempt that began at `at`. Unless leadership was
    /// fresh until then, this starts a new term: a replica whose freshness lapsed (it stepped
    /// down, or froze past its renew deadline) may have been replaced meanwhile.
    pub fn renewed(&self, at: Instant) {
        let mut state = self.lock();
        let fresh = state
            .renewed_at
            .is_some_and(|last| last.elapsed() < self.renew_deadline);
        if !fresh {
            state.term += 1;
        }
        state.renewed_at = Some(at);
    }

    /// Leadership is lost (or handed back).
    pub fn ended(&self) {
        self.lock().renewed_at = None;
    }

    /// True while the last renewal is younger than the renew deadline.
    pub fn is_fresh(&self) -> bool {
        self.lock()
            .renewed_at
            .is_some_and(|at| at.elapsed() < self.renew_deadline)
    }

    /// The current term: changes each time leadership is gained.
    pub fn term(&self) -> u64 {
        self.lock().term
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fence_is_fresh_until_the_renew_deadline_and_a_lapse_starts_a_new_term() {
        let _deadline = crate::test_deadline::deadline(
            "a_fence_is_fresh_until_the_renew_deadline_and_a_lapse_starts_a_new_term",
        );
        let fence = LeaseFence::new(Duration::from_millis(60));
        assert!(!fence.is_fresh(), "not fresh before leading");
        fence.renewed(Instant::now());
        let first = fence.term();
        assert!(fence.is_fresh());
        tokio::time::sleep(Duration::from_millis(30)).await;
        fence.renewed(Instant::now());
        assert_eq!(fence.term(), first, "a renewal in time keeps the term");
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert!(!fence.is_fresh(), "stale past the renew deadline");
        fence.renewed(Instant::now());
        assert!(fence.is_fresh());
        assert_eq!(
            fence.term(),
            first + 1,
            "a renewal after a lapse is a new term"
        );
        fence.ended();
        assert!(!fence.is_fresh());
        fence.renewed(Instant::now());
        assert_eq!(fence.term(), first + 2);
    }
}
