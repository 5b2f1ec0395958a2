//! When and how long to wait before sending a failed vendor call again.

use std::time::Duration;

/// Exponential backoff with jitter, bounded in attempts and in delay.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retries.
    pub max_retries: u32,
    /// The delay before the first retry, doubled for each further one.
    pub base_delay: Duration,
    /// No computed delay exceeds this.
    pub max_delay: Duration,
    /// A vendor's `Retry-After` is honoured up to this bound, so that one answer cannot stall a tick.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            // Three retries at 200ms, 400ms, 800ms (before jitter) ride out a short outage or a
            // gateway restart while keeping a failing chunk's cost within about two seconds.
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry): "equal jitter", a random
    /// delay between half and all of the exponential step, or the vendor's `Retry-After` when that
    /// is longer.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let half = step / 2;
        let jittered = half + half.mul_f64(rand::random::<f64>());
        match retry_after {
            Some(wanted) => jittered.max(wanted.min(self.max_retry_after)),
            None => jittered,
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
    fn delays_grow_exponentially_within_jitter_bounds() {
        let policy = RetryPolicy::default();
        for retry in 0..6 {
            let step = (policy.base_delay * 2u32.pow(retry)).min(policy.max_delay);
            for _ in 0..50 {
                let d = policy.delay(retry, None);
                assert!(
                    d >= step / 2 && d <= step,
                    "retry {retry}: {d:?} outside {step:?}"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_bound() {
        let policy = RetryPolicy::default();
        assert!(policy.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600))),
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
