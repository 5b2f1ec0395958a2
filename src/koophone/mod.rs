//! The typed KooPhone (CloudDevice) vendor client: requests, answers, the error taxonomy, the token.
//!
//! Success means HTTP 2xx **and** `error_code == "0"`. Every call carries `X-Auth-Token` and a fresh
//! `x-request-id`, which also goes into its error and its log line. Lists are split into calls of at
//! most 100 ids; invalid ids are refused before anything is sent.

mod auth;
mod client;
mod credentials;
mod endpoint;
mod error;
mod retry;
pub mod sign;
mod token;
mod vendor_code;
mod wire;

pub use auth::{Auth, AuthError, CallAuth, Project};
pub use client::{
    BackupReceipt, CallObserver, Client, ClientConfig, DEFAULT_BASE_URL, Gate, MAX_ID_CHARS,
    MAX_IDS_PER_CALL, PrepareProgress, PrepareReceipt, Reservation, StatusReport, check_id,
};
pub use credentials::{Credentials, CredentialsError, ProjectScope};
pub use endpoint::Endpoint;
pub use error::{AccountFault, Error, Fault};
pub use retry::RetryPolicy;
pub use token::Token;
pub use vendor_code::{VendorCode, VendorError};
