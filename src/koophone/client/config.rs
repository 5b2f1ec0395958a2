//! How the client reaches the vendor: its base URL, its time-outs, its retries and the account's
//! bounds on calls.

use crate::koophone::retry::RetryPolicy;
use std::time::Duration;

/// The vendor's one global host (koophone-api.md, "Endpoint").
pub const DEFAULT_BASE_URL: &str = "https://koophone.myhuaweicloud.com";

/// How the client reaches the vendor.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Scheme, host and optional port; the paths `/v1/instances/...` are appended.
    pub base_url: String,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on one whole request, answer included.
    pub request_timeout: Duration,
    /// Retries of failed calls.
    pub retry: RetryPolicy,
    /// Calls (attempts) of this client in flight at once, at most; `None`: no bound of its own.
    pub calls_in_flight: Option<usize>,
    /// Calls (attempts) of this client started per second, at most; `None`: no bound.
    pub calls_per_second: Option<u32>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(5),
            // The vendor answers a 100-id call in well under a second; 30s leaves room for a slow
            // gateway without letting one hung call hold a tick for minutes.
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            calls_in_flight: None,
            calls_per_second: None,
        }
    }
}
