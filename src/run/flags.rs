//! What the flags come to before anything starts: the values refused, the settings derived from
//! them, and the static token they name.

use super::args::RunArgs;
use super::credentials;
use super::error::{MIN_GRACE_PERIOD, RunError};
use crate::koophone::Token;
use std::time::Duration;

/// Refuses flag values that the operator cannot run safely with.
pub(super) fn validate(args: &RunArgs) -> Result<(), RunError> {
    if args.tick_interval.is_zero() {
        return Err(RunError::ZeroInterval);
    }
    if args.tick_deadline.is_some_and(|d| d.is_zero()) {
        return Err(RunError::ZeroDeadline);
    }
    if let Some(spacing) = args.min_tick_spacing
        && spacing > args.tick_interval
    {
        return Err(RunError::SpacingOverInterval {
            spacing,
            interval: args.tick_interval,
        });
    }
    if args.backup_grace_period < MIN_GRACE_PERIOD {
        return Err(RunError::GracePeriodTooShort(args.backup_grace_period));
    }
    if args.prepare_grace_period < MIN_GRACE_PERIOD {
        return Err(RunError::PrepareGracePeriodTooShort(
            args.prepare_grace_period,
        ));
    }
    Ok(())
}

/// The default least time between a tick and an early tick: a reconcile request in a loop costs
/// at most one early tick (of its own phones) per 10 s.
const DEFAULT_MIN_TICK_SPACING: Duration = Duration::from_secs(10);

/// `--min-tick-spacing`, else the default or the tick interval when that is shorter.
pub(super) fn min_tick_spacing(args: &RunArgs) -> Duration {
    args.min_tick_spacing
        .unwrap_or(DEFAULT_MIN_TICK_SPACING.min(args.tick_interval))
}

/// The namespaces the operator's own credentials serve; `None`: every watched namespace.
pub(super) fn own_tenants(args: &RunArgs) -> Option<crate::reconciler::Tenants> {
    if args.own_account_namespaces.is_empty() && args.own_account_namespace_selector.is_none() {
        return None;
    }
    Some(crate::reconciler::Tenants {
        namespaces: args.own_account_namespaces.iter().cloned().collect(),
        selector: args.own_account_namespace_selector.clone(),
    })
}

/// Reads the static token named by the flags; its value never reaches an error or a log line.
pub fn read_token(args: &RunArgs) -> Result<Token, RunError> {
    credentials::static_token(args.token_file.as_deref(), args.token_env.as_deref())?
        .ok_or(RunError::NoCredentials)
}
