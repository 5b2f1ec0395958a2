//! Why `run` stops or cannot start: one error type for the whole wiring, whose messages name the
//! flag or resource at fault and never a credential.

use super::credentials;
use super::tasks::TaskEnded;
use crate::koophone;
use crate::reconciler::INTENT_MAX_AGE;
use crate::sim;
use std::net::SocketAddr;
use std::time::Duration;

/// Why `run` cannot start. Messages name the flag or resource at fault and never a credential.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "no vendor credentials: give --credentials-secret, --token-file or --token-env (or --simulate to try without an account)"
    )]
    NoCredentials,
    #[error("give only one of --credentials-secret, --token-file and --token-env")]
    ConflictingCredentials,
    #[error(transparent)]
    SecretRef(#[from] credentials::BadSecretRef),
    #[error(transparent)]
    StaticToken(#[from] credentials::StaticTokenError),
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster service account): {0}")]
    Kube(#[source] kube::Error),
    #[error("cannot list CloudPhones in {scope}: {hint}")]
    Preflight {
        scope: String,
        hint: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Vendor(#[from] koophone::Error),
    #[error(transparent)]
    Simulator(#[from] sim::StartError),
    #[error("--metrics-addr {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: exiting so that Kubernetes restarts the operator")]
    TaskEnded(#[source] TaskEnded),
    #[error("--tick-interval must be longer than zero")]
    ZeroInterval,
    #[error("--tick-deadline must be longer than zero")]
    ZeroDeadline,
    #[error(
        "--min-tick-spacing {spacing:?} is longer than --tick-interval {interval:?}: early ticks would come later than the interval's own"
    )]
    SpacingOverInterval {
        spacing: Duration,
        interval: Duration,
    },
    #[error(
        "--backup-grace-period {0:?} is too short: it must be at least {MIN_GRACE_PERIOD:?} (a backup call may leave up to {INTENT_MAX_AGE:?} after its intent, and the vendor needs time to show it)"
    )]
    GracePeriodTooShort(Duration),
    #[error(
        "--prepare-grace-period {0:?} is too short: it must be at least {MIN_GRACE_PERIOD:?} (a prepare call may leave up to {INTENT_MAX_AGE:?} after its intent, and the vendor needs time to show it)"
    )]
    PrepareGracePeriodTooShort(Duration),
}

/// The shortest `--backup-grace-period`: the call may leave [`INTENT_MAX_AGE`] after its intent,
/// and the vendor takes seconds to show a backup as started.
pub const MIN_GRACE_PERIOD: Duration = Duration::from_secs(15);
