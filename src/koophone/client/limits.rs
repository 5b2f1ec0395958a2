//! An account's bounds on its calls: the slots in flight, the spacing of their starts (backups
//! spaced wider), the pause of every call after a 429, and a backup call's slot taken ahead.

use super::Client;
use crate::koophone::auth::CallAuth;
use std::time::Duration;

/// A backup call's slot under the account's limits (its start under the rate bounds, its place in
/// flight) and its credentials, taken before the caller's last preparations (say, writing the
/// intents the call announces), so that no wait of the account comes between those and the call.
/// Dropped unused, it frees its place in flight.
pub struct Reservation<'a> {
    pub(super) call_auth: CallAuth,
    pub(super) _slot: Option<tokio::sync::SemaphorePermit<'a>>,
}

/// An account's bounds on its calls: slots in flight, and the spacing of their starts.
pub(super) struct Limits {
    in_flight: Option<tokio::sync::Semaphore>,
    /// The least time between two starts, and when the next may start.
    pub(super) spacing: Option<Spacing>,
    /// The spacing of backup calls alone: wider than the account's, so that backups never take
    /// more than [`BACKUP_SHARE`] of its calls and status queries keep the rest.
    pub(super) backup_spacing: Option<Spacing>,
}

/// The share of an account's `callsPerSecond` that backup calls may take: a floor of a quarter is
/// kept for status queries, which every phone needs each tick, backups or not.
const BACKUP_SHARE: (u32, u32) = (3, 4);

/// Starts at least `gap` apart.
pub(super) struct Spacing {
    gap: Duration,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Spacing {
    fn new(gap: Duration) -> Spacing {
        Spacing {
            gap,
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for the next start.
    pub(super) async fn start(&self) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(tokio::time::Instant::now());
            *next = start + self.gap;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

impl Limits {
    pub(super) fn new(in_flight: Option<usize>, per_second: Option<u32>) -> Limits {
        let gap = per_second.map(|n| Duration::from_secs(1) / n.max(1));
        Limits {
            in_flight: in_flight.map(|n| tokio::sync::Semaphore::new(n.max(1))),
            spacing: gap.map(Spacing::new),
            backup_spacing: gap.map(|gap| Spacing::new(gap * BACKUP_SHARE.1 / BACKUP_SHARE.0)),
        }
    }

    /// Waits for a start slot under the rate bound, then for a slot in flight; the permit, if
    /// any, is the slot, held for the attempt.
    pub(super) async fn admit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if let Some(spacing) = &self.spacing {
            spacing.start().await;
        }
        match &self.in_flight {
            // NB: the semaphore is never closed, so acquiring fails never.
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        }
    }
}

impl Client {
    /// The calls this client may start per second, when its rate is bounded (actions take at most
    /// [`Client::action_calls_per_second`] of them).
    pub fn calls_per_second(&self) -> Option<f64> {
        let gap = self.limits.spacing.as_ref()?.gap;
        (!gap.is_zero()).then(|| 1.0 / gap.as_secs_f64())
    }

    /// The calls of one action (a backup, a prepare) this client may start per second, when its
    /// rate is bounded: the wider spacing actions keep, so that status queries keep the rest.
    pub fn action_calls_per_second(&self) -> Option<f64> {
        let gap = self.limits.backup_spacing.as_ref()?.gap;
        (!gap.is_zero()).then(|| 1.0 / gap.as_secs_f64())
    }

    /// Holds every call of this client until `delay` from now (a 429: the vendor's flow control
    /// is per account, so one chunk's 429 pauses them all).
    pub(super) fn pause(&self, delay: Duration) {
        let until = tokio::time::Instant::now() + delay;
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    pub(super) async fn wait_for_flow_control(&self) {
        let until = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }
}
