//! When and how long to wait before sending a failed vendor call again.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Exponential backoff with jitter (`backon`'s), bounded in attempts and in delay.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retries.
    pub max_retries: u32,
    /// The shortest wait before the first retry, doubled for each further one; jitter adds up to
    /// as much again (100ms gives waits of 100-200ms, 200-400ms, 400-800ms).
    pub base_delay: Duration,
    /// The doubling stops here (jitter adds up to as much again).
    pub max_delay: Duration,
    /// A vendor's `Retry-After` is honoured up to this bound, so that one answer cannot stall a tick.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            // Three retries after 100-200ms, 200-400ms and 400-800ms ride out a short outage or a
            // gateway restart while keeping a failing chunk's cost within about two seconds.
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The waits before each retry of one call, `max_retries` of them.
    pub fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
            .with_jitter()
            .build()
    }

    /// A wait stretched to the vendor's `Retry-After` when that is longer, up to
    /// `max_retry_after`, so that one answer cannot stall a tick.
    pub fn honour(&self, wait: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wanted) => wait.max(wanted.min(self.max_retry_after)),
            None => wait,
        }
    }
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_within_jitter_bounds_and_stop_after_max_retries() {
        let policy = RetryPolicy {
            max_retries: 8,
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let waits: Vec<Duration> = policy.backoff().collect();
            assert_eq!(waits.len(), 8);
            for (retry, wait) in waits.into_iter().enumerate() {
                let step = (policy.base_delay * 2u32.pow(retry as u32)).min(policy.max_delay);
                assert!(
                    wait >= step && wait <= step * 2,
                    "retry {retry}: {wait:?} outside {step:?}..{:?}",
                    step * 2
                );
            }
        }
        assert_eq!(RetryPolicy::default().backoff().count(), 3);
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_bound() {
        let policy = RetryPolicy::default();
        let wait = Duration::from_millis(150);
        assert_eq!(policy.honour(wait, None), wait);
        assert_eq!(
            policy.honour(wait, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.honour(wait, Some(Duration::from_secs(3600))),
            policy.max_retry_after
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
