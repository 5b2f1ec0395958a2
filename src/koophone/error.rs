//! The vendor client's error taxonomy: what failed, for which call, and whether a retry can help.

use super::endpoint::Endpoint;
use super::vendor_code::{VendorCode, VendorError};
use uuid::Uuid;

/// Everything that can go wrong with a vendor call. Each variant names the call and its
/// `x-request-id`, so that one log line is enough to find the call on both sides.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An instance id the vendor would refuse; nothing was sent.
    #[error("instance_ids: {id:?} {reason}; nothing was sent to the vendor")]
    InvalidInstanceId { id: String, reason: &'static str },

    /// A user id the vendor would refuse; nothing was sent.
    #[error("user_id: {id:?} {reason}; nothing was sent to the vendor")]
    InvalidUserId { id: String, reason: &'static str },

    /// More ids than the vendor takes in one call; nothing was sent.
    #[error(
        "instance_ids: {count} ids in one call, the vendor takes at most 100; nothing was sent"
    )]
    TooManyIds { count: usize },

    /// The request never got a complete answer: connection refused, reset, or timed out.
    #[error("{endpoint} request {request_id}: {}: {source}", if *.timeout { "timed out" } else { "transport error" })]
    Transport {
        endpoint: Endpoint,
        request_id: Uuid,
        timeout: bool,
        /// True when the connection was never made, so the vendor cannot have seen the request.
        connect: bool,
        #[source]
        source: reqwest::Error,
    },

    /// A non-2xx answer, with the vendor's code and message when its body carried them.
    #[error("{endpoint} request {request_id}: HTTP {status}{}", match vendor { Some(v) => format!(", {v}"), None => String::new() })]
    Http {
        endpoint: Endpoint,
        request_id: Uuid,
        status: u16,
        vendor: Option<VendorError>,
        /// The `Retry-After` of a 429 or 503 answer, when present and readable.
        retry_after: Option<std::time::Duration>,
    },

    /// A 2xx answer whose `error_code` is not `"0"`: the vendor reports business errors this way.
    #[error("{endpoint} request {request_id}: vendor error {vendor} (HTTP {status})")]
    Vendor {
        endpoint: Endpoint,
        request_id: Uuid,
        status: u16,
        vendor: VendorError,
    },

    /// An answer whose body is not the documented shape.
    #[error(
        "{endpoint} request {request_id}: undecodable answer (HTTP {status}): {detail}; body starts {excerpt:?}"
    )]
    Decode {
        endpoint: Endpoint,
        request_id: Uuid,
        status: u16,
        detail: String,
        excerpt: String,
    },

    /// The call could not be authenticated; nothing was sent.
    #[error("{endpoint}: not sent: {source}")]
    Auth {
        endpoint: Endpoint,
        #[source]
        source: super::auth::AuthError,
    },

    /// The caller's last check before the call left (say, that it still leads) refused it; nothing
    /// was sent.
    #[error("{endpoint}: not sent: {reason}")]
    Withheld {
        endpoint: Endpoint,
        reason: &'static str,
    },

    /// The base URL does not parse as a URL.
    #[error("cannot build the vendor client: base URL {url:?}: {source}")]
    BaseUrl {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The base URL names no host.
    #[error("cannot build the vendor client: base URL {url:?} has no host")]
    BaseUrlWithoutHost { url: String },

    /// The HTTP client could not be built (a TLS setup the platform cannot provide).
    #[error("cannot build the vendor client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Whom a failed call is about: the taxonomy the batching acts on, decided by the vendor's code
/// first and by the HTTP status only when there is no code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Some ids of the call are wrong (`1000`, or an HTTP 400 without a configuration code): a
    /// smaller call without them can succeed.
    BadIds,
    /// The vendor refuses one instance of the call (`1001`, `1002`, `1012`, `2004`, `2005`, `2006`,
    /// `4001`): the others can succeed without it.
    Instance,
    /// The account cannot call at all: every call fails the same until someone fixes it.
    Account(AccountFault),
    /// The same call may pass later: time-outs, lost connections, 5xx, 429, `9999`, answers that
    /// are not the documented shape, codes this version does not know.
    Transient,
}

/// Why an account cannot call the vendor; its name is the reason reported on the phones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountFault {
    /// `0000`: the tenant does not exist.
    TenantNotFound,
    /// HTTP 401 or 403 after one re-authentication, or credentials that cannot be used.
    CredentialsRejected,
    /// `0002`, `0004`, `1004`, a vendor URL that answers 404: the operator's configuration (or
    /// the account's subscription) is wrong.
    ConfigurationError,
}

impl AccountFault {
    /// The reason on the phones' `Synced` condition.
    pub fn reason(self) -> &'static str {
        match self {
            AccountFault::TenantNotFound => "TenantNotFound",
            AccountFault::CredentialsRejected => "CredentialsRejected",
            AccountFault::ConfigurationError => "ConfigurationError",
        }
    }
}

impl Error {
    /// Whom this failure is about.
    pub fn fault(&self) -> Fault {
        let account = |f| Fault::Account(f);
        if let Some(code) = self.vendor_code() {
            match code {
                VendorCode::TenantNotFound => return account(AccountFault::TenantNotFound),
                VendorCode::RequestIdMissing
                | VendorCode::ProjectNotFound
                | VendorCode::NotSubscribed => return account(AccountFault::ConfigurationError),
                VendorCode::InvalidParameter => return Fault::BadIds,
                VendorCode::NoPermission
                | VendorCode::RegionMismatch
                | VendorCode::NotOwned
                | VendorCode::Frozen
                | VendorCode::Restoring
                | VendorCode::BackingUp
                | VendorCode::InstanceNotFound => return Fault::Instance,
                VendorCode::Internal | VendorCode::Other(_) => {}
            }
        }
        match self {
            Error::Http {
                status: 401 | 403, ..
            } => account(AccountFault::CredentialsRejected),
            Error::Http { status: 404, .. } => account(AccountFault::ConfigurationError),
            Error::Http { status: 400, .. } => Fault::BadIds,
            Error::Auth {
                source: super::auth::AuthError::Credentials(_),
                ..
            } => account(AccountFault::CredentialsRejected),
            Error::BaseUrl { .. } | Error::BaseUrlWithoutHost { .. } | Error::HttpClient(_) => {
                account(AccountFault::ConfigurationError)
            }
            Error::InvalidInstanceId { .. }
            | Error::InvalidUserId { .. }
            | Error::TooManyIds { .. } => Fault::BadIds,
            _ => Fault::Transient,
        }
    }

    /// The `x-request-id` of the failed call, when a call was made.
    pub fn request_id(&self) -> Option<Uuid> {
        match self {
            Error::Transport { request_id, .. }
            | Error::Http { request_id, .. }
            | Error::Vendor { request_id, .. }
            | Error::Decode { request_id, .. } => Some(*request_id),
            Error::InvalidInstanceId { .. }
            | Error::InvalidUserId { .. }
            | Error::TooManyIds { .. }
            | Error::Auth { .. }
            | Error::Withheld { .. }
            | Error::BaseUrl { .. }
            | Error::BaseUrlWithoutHost { .. }
            | Error::HttpClient(_) => None,
        }
    }

    /// The vendor's error code, when the answer carried one.
    pub fn vendor_code(&self) -> Option<&VendorCode> {
        match self {
            Error::Vendor { vendor, .. } => Some(&vendor.code),
            Error::Http {
                vendor: Some(vendor),
                ..
            } => Some(&vendor.code),
            _ => None,
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. }
            | Error::Vendor { status, .. }
            | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the vendor refused some ids of the request (`1000`, or HTTP 400 without a
    /// configuration code): retrying the same call cannot help, but a smaller call without the bad
    /// ids can.
    pub fn is_bad_request(&self) -> bool {
        self.fault() == Fault::BadIds
    }

    /// True when the vendor certainly did not act on the request, so that sending it again cannot
    /// double an action: the connection was never made, or the vendor refused it for flow control.
    pub fn certainly_not_processed(&self) -> bool {
        match self {
            Error::Transport { connect, .. } => *connect,
            Error::Auth { .. } | Error::Withheld { .. } => true,
            Error::Http { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// True when the same call may succeed if sent again later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Decode { .. } => true,
            Error::Http { status, vendor, .. } => {
                *status == 429
                    || *status >= 500
                    || vendor.as_ref().is_some_and(|v| v.code.is_transient())
            }
            Error::Vendor { vendor, .. } => vendor.code.is_transient(),
            Error::Auth { source, .. } => !matches!(source, super::auth::AuthError::Credentials(_)),
            Error::InvalidInstanceId { .. }
            | Error::InvalidUserId { .. }
            | Error::TooManyIds { .. }
            | Error::Withheld { .. }
            | Error::BaseUrl { .. }
            | Error::BaseUrlWithoutHost { .. }
            | Error::HttpClient(_) => false,
        }
    }

    /// What went wrong, without the request id or any value that changes from call to call, for a
    /// condition message: the same failure gives the same text, so a status is not rewritten for it.
    pub fn summary(&self) -> String {
        let text = match self {
            Error::Transport {
                endpoint,
                timeout: true,
                ..
            } => format!("{endpoint} call timed out"),
            Error::Transport {
                endpoint,
                connect: true,
                ..
            } => {
                format!("{endpoint} call could not connect to the vendor")
            }
            Error::Transport { endpoint, .. } => format!("{endpoint} call lost its connection"),
            Error::Http {
                endpoint,
                status,
                vendor: Some(v),
                ..
            } => {
                format!("{endpoint} call answered HTTP {status}, {v}")
            }
            Error::Http {
                endpoint,
                status,
                vendor: None,
                ..
            } => {
                format!("{endpoint} call answered HTTP {status}")
            }
            Error::Vendor {
                endpoint, vendor, ..
            } => format!("{endpoint} call answered {vendor}"),
            Error::Decode {
                endpoint, status, ..
            } => {
                format!(
                    "{endpoint} call answered HTTP {status} with a body that is not the documented shape"
                )
            }
            other => other.to_string(),
        };
        excerpt_long(&text)
    }

    /// True when the vendor refused the whole call because of one of its instances (a bad
    /// parameter, or an instance that is busy, missing or not ours): a smaller call without it
    /// can succeed.
    pub fn is_per_instance_refusal(&self) -> bool {
        matches!(self.fault(), Fault::BadIds | Fault::Instance)
    }

    /// A short, bounded label for metrics and conditions: the vendor code's name, or the kind of
    /// failure. Never contains free text.
    pub fn label(&self) -> &'static str {
        match self {
            Error::InvalidInstanceId { .. } => "InvalidInstanceId",
            Error::InvalidUserId { .. } => "InvalidUserId",
            Error::TooManyIds { .. } => "TooManyIds",
            Error::Auth { source, .. } => source.label(),
            Error::Withheld { .. } => "Withheld",
            Error::Http { status: 401, .. } => "Unauthorized",
            Error::Transport { timeout: true, .. } => "Timeout",
            Error::Transport { .. } => "TransportError",
            Error::Http { status: 429, .. } => "RateLimited",
            Error::Http {
                vendor: Some(vendor),
                ..
            }
            | Error::Vendor { vendor, .. }
                if !matches!(vendor.code, VendorCode::Other(_)) =>
            {
                vendor.code.name()
            }
            Error::Http { status, .. } if *status >= 500 => "ServerError",
            Error::Http { .. } => "HttpError",
            Error::Vendor { .. } => "VendorError",
            Error::Decode { .. } => "UndecodableAnswer",
            Error::BaseUrl { .. } | Error::BaseUrlWithoutHost { .. } | Error::HttpClient(_) => {
                "ClientBuild"
            }
        }
    }
}

/// At most this many characters of an offending value or body go into an error message.
pub(crate) const EXCERPT_CHARS: usize = 64;

/// The first [`EXCERPT_CHARS`] characters of `text`, with an ellipsis when it was cut.
pub(crate) fn excerpt(text: &str) -> String {
    cut(text, EXCERPT_CHARS)
}

/// At most 240 characters of a message for a condition.
fn excerpt_long(text: &str) -> String {
    cut(text, 240)
}

fn cut(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Option<&str>) -> Error {
        Error::Http {
            endpoint: Endpoint::QueryStatus,
            request_id: Uuid::nil(),
            status,
            vendor: code.map(|c| VendorError {
                code: VendorCode::parse(c),
                message: String::new(),
            }),
            retry_after: None,
        }
    }

    fn business(code: &str) -> Error {
        Error::Vendor {
            endpoint: Endpoint::QueryStatus,
            request_id: Uuid::nil(),
            status: 200,
            vendor: VendorError {
                code: VendorCode::parse(code),
                message: String::new(),
            },
        }
    }

    #[test]
    fn faults_are_decided_by_the_code_before_the_http_status() {
        use AccountFault::*;
        let cases = [
            (
                http(400, Some("KOOPHONE.API.0000")),
                Fault::Account(TenantNotFound),
            ),
            (
                http(400, Some("KOOPHONE.API.0004")),
                Fault::Account(ConfigurationError),
            ),
            (
                http(400, Some("KOOPHONE.API.1004")),
                Fault::Account(ConfigurationError),
            ),
            (
                business("KOOPHONE.API.0002"),
                Fault::Account(ConfigurationError),
            ),
            (http(401, None), Fault::Account(CredentialsRejected)),
            (
                http(403, Some("APIGW.0301")),
                Fault::Account(CredentialsRejected),
            ),
            (http(404, None), Fault::Account(ConfigurationError)),
            (http(400, Some("KOOPHONE.API.1000")), Fault::BadIds),
            (http(400, None), Fault::BadIds),
            (http(400, Some("APIGW.0101")), Fault::BadIds),
            (business("KOOPHONE.API.1000"), Fault::BadIds),
            (business("KOOPHONE.API.1012"), Fault::Instance),
            (business("KOOPHONE.API.4001"), Fault::Instance),
            (http(400, Some("KOOPHONE.API.2006")), Fault::Instance),
            (business("KOOPHONE.API.9999"), Fault::Transient),
            (http(500, None), Fault::Transient),
            (http(429, None), Fault::Transient),
            (business("KOOPHONE.API.7777"), Fault::Transient),
        ];
        for (err, want) in cases {
            assert_eq!(err.fault(), want, "{err}");
        }
        assert!(!http(400, Some("KOOPHONE.API.0000")).is_bad_request());
    }

    #[test]
    fn excerpt_cuts_long_text() {
        assert_eq!(excerpt("short"), "short");
        let long = "x".repeat(200);
        assert_eq!(excerpt(&long).len(), EXCERPT_CHARS + 3);
    }
}
