//! A CloudPhoneAccount's status after a tick: its Ready condition, and the events of its changes
//! (its calls refused or going out again, its credentials replaced). `run` writes and publishes them.

use super::{Failure, READY};
use crate::api::CloudPhoneAccountStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What one tick found of one CloudPhoneAccount: for its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountTick {
    pub name: String,
    /// The account object's generation the tick read.
    pub generation: Option<i64>,
    /// Phones that name the account and may use it.
    pub phones: usize,
    /// Why its calls cannot be made, if they cannot: unusable, or its circuit breaker open.
    pub problem: Option<Failure>,
    /// The version of its credentials (it changes when they are replaced); `None` without any.
    pub credentials: Option<u64>,
}

/// An event to publish on an account: only on a change, never once per tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountEvent {
    /// `CredentialsLoaded`, `CredentialsChanged`, or the reason of the account's problem.
    pub reason: String,
    pub message: String,
    /// A Warning event rather than a Normal one.
    pub warning: bool,
    /// What the operator was doing: `Call` (the account's vendor calls) or `Reload` (its
    /// credentials).
    pub action: &'static str,
}

/// The Ready condition of an account after a tick.
fn ready_condition(tick: &AccountTick, old: Option<&Condition>, now: &Time) -> Condition {
    let (status, reason, message) = match &tick.problem {
        None => ("True", "CredentialsLoaded".to_owned(), String::new()),
        Some(failure) => ("False", failure.reason.clone(), failure.message.clone()),
    };
    let transition = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: tick.generation,
        last_transition_time: transition,
    }
}

/// The status an account should show after `tick`, or `None` when it shows it already.
pub fn account_status(
    tick: &AccountTick,
    old: Option<&CloudPhoneAccountStatus>,
    now: &Time,
) -> Option<CloudPhoneAccountStatus> {
    let old_ready = old.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let status = CloudPhoneAccountStatus {
        observed_generation: tick.generation,
        phones: i32::try_from(tick.phones).unwrap_or(i32::MAX),
        conditions: vec![ready_condition(tick, old_ready, now)],
    };
    (old != Some(&status)).then_some(status)
}

/// An event to publish on an account after a tick: its Ready condition changed status (its
/// breaker opened or closed, its Secret went missing or came back), or its credentials were
/// replaced. `seen` is the credentials' version of the account's last tick.
pub fn account_event(
    tick: &AccountTick,
    old: Option<&CloudPhoneAccountStatus>,
    seen: Option<u64>,
) -> Option<AccountEvent> {
    let old_ready = old
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map(|c| c.status.as_str());
    match (&tick.problem, old_ready) {
        (Some(failure), None | Some("True")) => {
            return Some(AccountEvent {
                reason: failure.reason.clone(),
                message: failure.message.clone(),
                warning: true,
                action: "Call",
            });
        }
        (None, Some("False")) => {
            return Some(AccountEvent {
                reason: "CredentialsLoaded".into(),
                message: "the account's calls go out again".into(),
                warning: false,
                action: "Call",
            });
        }
        _ => {}
    }
    match (seen, tick.credentials) {
        (Some(before), Some(now)) if before != now => Some(AccountEvent {
            reason: "CredentialsChanged".into(),
            message: "the account's Secret changed: its next calls use the new credentials".into(),
            warning: false,
            action: "Reload",
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(problem: Option<(&str, &str)>, phones: usize) -> AccountTick {
        AccountTick {
            name: "team-a".into(),
            generation: Some(2),
            phones,
            credentials: Some(1),
            problem: problem.map(|(r, m)| Failure {
                reason: r.into(),
                message: m.into(),
            }),
        }
    }

    #[test]
    fn an_account_status_is_written_only_when_it_changes() {
        let t0 = Time(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(1_700_000_100).unwrap());
        let first = account_status(&tick(None, 3), None, &t0).unwrap();
        assert_eq!(first.phones, 3);
        assert_eq!(first.observed_generation, Some(2));
        assert_eq!(first.conditions[0].status, "True");
        assert_eq!(
            account_status(&tick(None, 3), Some(&first), &t1),
            None,
            "steady: no write"
        );
        let refused = account_status(
            &tick(
                Some(("CredentialsRejected", "the vendor refused the token")),
                3,
            ),
            Some(&first),
            &t1,
        )
        .unwrap();
        assert_eq!(refused.conditions[0].status, "False");
        assert_eq!(refused.conditions[0].reason, "CredentialsRejected");
        assert_eq!(refused.conditions[0].last_transition_time, t1);
        let more = account_status(&tick(None, 4), Some(&first), &t1).unwrap();
        assert_eq!(
            more.conditions[0].last_transition_time, t0,
            "the transition time moves only with the condition's status"
        );
    }

    #[test]
    fn events_mark_the_breaker_opening_and_closing_and_each_new_credential() {
        let now = Time(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let healthy = account_status(&tick(None, 1), None, &now).unwrap();
        let refused = tick(Some(("CredentialsRejected", "401")), 1);
        let broken = account_status(&refused, Some(&healthy), &now).unwrap();
        let reason = |e: Option<AccountEvent>| e.map(|e| e.reason);
        assert_eq!(
            reason(account_event(&tick(None, 1), Some(&healthy), Some(1))),
            None,
            "steady"
        );
        assert_eq!(
            reason(account_event(&refused, Some(&healthy), Some(1))).as_deref(),
            Some("CredentialsRejected")
        );
        assert_eq!(
            reason(account_event(&refused, Some(&broken), Some(1))),
            None,
            "once, not every tick"
        );
        let mut rotated = tick(None, 1);
        rotated.credentials = Some(2);
        assert_eq!(
            reason(account_event(&rotated, Some(&broken), Some(1))).as_deref(),
            Some("CredentialsLoaded")
        );
        assert_eq!(
            reason(account_event(&rotated, Some(&healthy), Some(1))).as_deref(),
            Some("CredentialsChanged")
        );
        assert_eq!(
            reason(account_event(&rotated, Some(&healthy), None)),
            None,
            "first sight"
        );
    }
}
