//! Ownership moves: a backup intent outlives the object that wrote it. When an instance passes to
//! another CloudPhone (its owner deleted or suspended, a duplicate promoted, the object re-created),
//! the new owner's status knows nothing of the previous owner's call, so the new owner sends no
//! backup for the instance until the grace period of the previous owner's last intent has passed.
//!
//! Intents are remembered per instance for one leadership term, rebuilt from the statuses that
//! still show them (each intent keeps the account scope it was made in). What a previous term knew
//! of owners that are gone is lost with it: while the time an earlier term recorded (until when its
//! intents may be outstanding) is ahead, a phone without an in-flight intent of its own waits.

use super::{Action, EarlierTerms, Intent, PhoneView, PlanConfig, fmt_time};
use jiff::Timestamp;

/// The Ready reason of a phone whose planned action waits for its own call of another action (a
/// lifecycle switched while that call is in flight) to be seen under way, or its grace period to end.
pub const PREVIOUS_ACTION_PENDING: &str = "PreviousActionPending";

/// The Ready reason of a phone that waits for another object's backup intent to expire.
pub const AWAITING_HANDOVER: &str = "AwaitingHandover";

/// Why a planned backup must wait for an ownership move to settle, if it must: another object's
/// intent in its grace period, or, while an earlier term's intents may be outstanding, an owner
/// without an in-flight intent of its own (it may have replaced an owner that the earlier term
/// saw and this one cannot).
pub(super) fn handover_wait(
    phone: &PhoneView,
    previous: Option<&Intent>,
    earlier: &EarlierTerms,
    now: Timestamp,
    config: &PlanConfig,
) -> Option<String> {
    if let Some(intent) = previous {
        return Some(format!(
            "CloudPhone {} requested a {} of instance {} at {}; this one sends none before {}",
            intent.owner,
            intent.action.name(),
            phone.spec.instance_id,
            intent.requested_at,
            intent.until(config)
        ));
    }
    // NB: an intent of its own counts only within its grace period: a stale one (left on a
    // duplicate or a suspended phone long ago) says nothing of who owned the instance lately.
    let own_intent = Action::ALL.into_iter().any(|action| {
        phone
            .status
            .and_then(|s| action.record(s))
            .filter(|b| b.in_flight)
            .and_then(|b| b.requested_at.as_ref())
            .is_some_and(|at| {
                now < at
                    .0
                    .checked_add(action.grace(config))
                    .unwrap_or(Timestamp::MAX)
            })
    });
    if own_intent {
        return None;
    }
    match earlier {
        EarlierTerms::Until(until) if now < *until => Some(format!(
            "the operator took over less than a grace period after an earlier term's last intent: that term may have requested a backup or prepare of instance {} for an object that is gone; no call before {}",
            phone.spec.instance_id,
            fmt_time(Some(*until))
        )),
        EarlierTerms::Unknown(why) => Some(format!(
            "until when an earlier term's intents may be outstanding is not known ({why}): no call for instance {} until it is",
            phone.spec.instance_id
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ActionStatus, CloudPhone, CloudPhoneStatus};
    use crate::plan::{
        Action, Context, DEFAULT_SCOPE, Disposition, Memory, Observation, PlanConfig, Route,
        plan_phone,
    };
    use crate::plan::{Intents, READY};
    use crate::test_phone::cloudphone;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    /// A grace period of 120 s for every action.
    fn config() -> PlanConfig {
        PlanConfig {
            grace_period: Duration::from_secs(120),
            prepare_grace_period: Duration::from_secs(120),
            ..PlanConfig::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).unwrap()
    }

    /// A BackedUp phone of instance `kp1`, created long ago.
    fn phone(name: &str, uid: &str, status: Option<CloudPhoneStatus>) -> CloudPhone {
        let phone = cloudphone(name, "kp1").uid(uid).created(-10_000);
        match status {
            Some(status) => phone.status(status),
            None => phone,
        }
        .build()
    }

    fn view(phone: &CloudPhone) -> PhoneView<'_> {
        PhoneView::of(phone, Route::Scope(DEFAULT_SCOPE))
    }

    fn intent_status(requested: i64) -> CloudPhoneStatus {
        CloudPhoneStatus {
            backup: Some(ActionStatus {
                requested_at: Some(Time(at(requested))),
                attempts: 1,
                in_flight: true,
                ..ActionStatus::default()
            }),
            ..CloudPhoneStatus::default()
        }
    }

    #[test]
    fn a_new_owner_waits_out_the_previous_owners_intent_even_after_it_is_deleted() {
        let old = phone("old", "u-old", Some(intent_status(0)));
        let mut intents = Intents::default();
        intents.observe(&[view(&old)], at(1), &config());
        // The old object is deleted: the next snapshots show only the new one.
        let new_phone = phone("new", "u-new", None);
        let new = view(&new_phone);
        intents.observe(std::slice::from_ref(&new), at(5), &config());
        let previous = intents.previous(&new, at(5), &config()).cloned();
        assert_eq!(
            previous.as_ref().map(|i| i.owner.as_str()),
            Some("fleet/old")
        );
        let why = handover_wait(
            &new,
            previous.as_ref(),
            &EarlierTerms::Settled,
            at(5),
            &config(),
        )
        .unwrap();
        assert!(why.contains("fleet/old"), "{why}");

        let config = PlanConfig::default();
        let cx = Context {
            now: at(5),
            config: &config,
            earlier: &EarlierTerms::Settled,
        };
        let plan = |memory: &Memory| {
            plan_phone(
                &new,
                &Disposition::Query,
                Some(&Observation::Status(2)),
                memory,
                &cx,
            )
            .unwrap()
        };
        assert_eq!(plan(&Memory::default()).action, Some(Action::Backup));
        let planned = plan(&Memory {
            intents: Some(&intents),
            ..Memory::default()
        });
        assert_eq!(planned.action, None);
        assert!(planned.status.backup.is_none());
        let ready = planned
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", AWAITING_HANDOVER)
        );

        // Past the grace period the intent is forgotten and the new owner acts.
        intents.observe(std::slice::from_ref(&new), at(121), &self::config());
        assert!(intents.previous(&new, at(121), &self::config()).is_none());
        assert!(intents.is_empty());
    }

    #[test]
    fn an_owners_own_intent_never_holds_it_and_accounts_are_apart() {
        let p = phone("p", "u-p", Some(intent_status(0)));
        let q = phone("q", "u-q", None);
        let phone = view(&p);
        let mut intents = Intents::default();
        intents.observe(std::slice::from_ref(&phone), at(1), &config());
        assert!(intents.previous(&phone, at(1), &config()).is_none());
        let mut other = view(&q);
        assert!(intents.previous(&other, at(1), &config()).is_some());
        other.account = Route::Scope("another-tenant");
        assert!(
            intents.previous(&other, at(1), &config()).is_none(),
            "the same id in another account's scope is another instance"
        );
    }

    #[test]
    fn an_intent_keeps_the_scope_it_was_made_in_whatever_the_phone_names_now() {
        let mut status = intent_status(0);
        status.backup.as_mut().unwrap().scope = Some("project:p1".into());
        let old_phone = phone("old", "u-old", Some(status));
        let new_phone = phone("new", "u-new", None);
        let mut old = view(&old_phone);
        // The old owner now names an account it may not use: it is blocked.
        old.account = Route::Blocked(crate::plan::AccountBlock {
            reason: crate::plan::ACCOUNT_NOT_ALLOWED,
            message: String::new(),
        });
        let mut intents = Intents::default();
        intents.observe(std::slice::from_ref(&old), at(1), &config());
        let mut new = view(&new_phone);
        new.account = Route::Scope("project:p1");
        assert!(
            intents.previous(&new, at(1), &config()).is_some(),
            "the blocked owner's intent still holds the instance in the scope it was made in"
        );
        new.account = Route::Scope("project:p2");
        assert!(intents.previous(&new, at(1), &config()).is_none());
    }

    #[test]
    fn while_an_earlier_terms_time_is_ahead_an_owner_without_an_intent_of_its_own_waits() {
        let p = phone("p", "u-p", None);
        let mut phone = view(&p);
        // Old or young alike: a duplicate promoted may be any age.
        phone.created = Some(at(-100_000));
        let earlier = EarlierTerms::Until(at(100));
        let why = handover_wait(&phone, None, &earlier, at(60), &config()).unwrap();
        assert!(why.contains("no call before"), "{why}");
        assert!(handover_wait(&phone, None, &earlier, at(100), &config()).is_none());
        assert!(
            handover_wait(&phone, None, &EarlierTerms::Settled, at(60), &config()).is_none(),
            "a fresh install, or a term after a quiet spell, holds nothing"
        );
        assert!(
            handover_wait(
                &phone,
                None,
                &EarlierTerms::Unknown("down".into()),
                at(60),
                &config()
            )
            .is_some(),
            "a record that could not be read holds"
        );
        let own = intent_status(30);
        phone.status = Some(&own);
        assert!(
            handover_wait(&phone, None, &earlier, at(60), &config()).is_none(),
            "an owner with an in-flight intent of its own is the one the earlier term served"
        );
        let mut settled = intent_status(30);
        settled.backup.as_mut().unwrap().in_flight = false;
        phone.status = Some(&settled);
        assert!(
            handover_wait(&phone, None, &earlier, at(60), &config()).is_some(),
            "a past request of its own is no in-flight intent"
        );
        // A stale intent (left on a duplicate or a suspended phone long ago) proves nothing.
        let stale = intent_status(-10_000);
        phone.status = Some(&stale);
        assert!(
            handover_wait(&phone, None, &earlier, at(60), &config()).is_some(),
            "an intent of its own past its grace period is no exemption"
        );
    }
}
