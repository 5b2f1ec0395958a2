//! Ownership moves: a backup intent outlives the object that wrote it. When an instance passes to
//! another CloudPhone (its owner deleted or suspended, a duplicate promoted, the object re-created),
//! the new owner's status knows nothing of the previous owner's call, so the new owner sends no
//! backup for the instance until the grace period of the previous owner's last intent has passed.
//!
//! Intents are remembered per instance for one leadership term. Across a restart that memory is
//! gone: while this term is younger than the grace period, an owner younger than the grace period
//! (which may be a re-created object) waits it out too.

use super::{Conditions, PhoneView, Planned, READY, fmt_time};
use crate::api::CloudPhoneStatus;
use jiff::Timestamp;
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::HashMap;
use std::time::Duration;

/// The Ready reason of a phone that waits for another object's backup intent to expire.
pub const AWAITING_HANDOVER: &str = "AwaitingHandover";

/// The last backup intent seen for an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The object that wrote it (`namespace/name`) and its uid.
    pub owner: String,
    pub uid: Option<String>,
    /// When its call was (to be) sent.
    pub requested_at: Timestamp,
}

/// The intents of one leadership term, per account scope and instance id.
#[derive(Debug, Default)]
pub struct Intents {
    by_instance: HashMap<(String, String), Intent>,
}

fn grace_end(at: Timestamp, grace: Duration) -> Timestamp {
    at.checked_add(grace).unwrap_or(Timestamp::MAX)
}

impl Intents {
    /// Forgets every intent (a new leadership term).
    pub fn clear(&mut self) {
        self.by_instance.clear();
    }

    /// Records an intent, unless a later one of the instance is known.
    pub fn record(&mut self, account: &str, instance: &str, intent: Intent) {
        let key = (account.to_owned(), instance.to_owned());
        match self.by_instance.get(&key) {
            Some(known) if known.requested_at >= intent.requested_at => {}
            _ => {
                self.by_instance.insert(key, intent);
            }
        }
    }

    /// Records the intents still in flight in these phones' statuses, and forgets those whose
    /// grace period has ended.
    pub fn observe<'p, 'v: 'p>(
        &mut self,
        phones: impl IntoIterator<Item = &'p PhoneView<'v>>,
        now: Timestamp,
        grace: Duration,
    ) {
        for phone in phones {
            let Some(backup) = phone.status.and_then(|s| s.backup.as_ref()) else {
                continue;
            };
            let Some(at) = backup.requested_at.as_ref().filter(|_| backup.in_flight) else {
                continue;
            };
            let Ok(scope) = phone.account else {
                continue;
            };
            self.record(
                scope,
                &phone.spec.instance_id,
                Intent {
                    owner: phone.key.to_string(),
                    uid: phone.uid.map(str::to_owned),
                    requested_at: at.0,
                },
            );
        }
        self.by_instance
            .retain(|_, intent| now < grace_end(intent.requested_at, grace));
    }

    /// Another object's intent for the phone's instance whose grace period has not ended.
    pub fn previous(&self, phone: &PhoneView, now: Timestamp, grace: Duration) -> Option<&Intent> {
        let key = (
            phone.account.as_ref().ok()?.to_string(),
            phone.spec.instance_id.clone(),
        );
        self.by_instance.get(&key).filter(|intent| {
            intent.uid.as_deref() != phone.uid && now < grace_end(intent.requested_at, grace)
        })
    }

    /// True when no intent is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_instance.is_empty()
    }
}

/// Why a planned backup must wait for an ownership move to settle, if it must: another object's
/// intent in its grace period, or (while `term_young`) an owner younger than the grace period that
/// never requested a backup itself.
pub fn handover_wait(
    phone: &PhoneView,
    previous: Option<&Intent>,
    term_young: bool,
    now: Timestamp,
    grace: Duration,
) -> Option<String> {
    if let Some(intent) = previous {
        return Some(format!(
            "CloudPhone {} requested a backup of instance {} at {}; this one sends none before {}",
            intent.owner,
            phone.spec.instance_id,
            intent.requested_at,
            grace_end(intent.requested_at, grace)
        ));
    }
    let own_request = phone
        .status
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.requested_at.as_ref());
    let created = phone.created?;
    let until = grace_end(created, grace);
    (term_young && own_request.is_none() && now < until).then(|| {
        format!(
            "this CloudPhone is younger than the backup grace period and the operator started leading less than a grace period ago: a previous object for instance {} may have requested a backup; no call before {}",
            phone.spec.instance_id,
            fmt_time(Some(until))
        )
    })
}

/// Holds a planned backup: the phone keeps its old backup record and says why it waits.
pub fn hold(
    planned: &mut Planned<'_>,
    old: Option<&CloudPhoneStatus>,
    generation: Option<i64>,
    why: &str,
    now: Timestamp,
) {
    planned.backup = false;
    let status = planned.status.to_mut();
    status.backup = old.and_then(|s| s.backup.clone());
    Conditions {
        list: &mut status.conditions,
        generation,
        now: super::whole_seconds(now),
    }
    .set(READY, "False", AWAITING_HANDOVER, why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackupStatus, CloudPhoneSpec, Lifecycle};
    use crate::plan::{Disposition, KeyRef, Observation, PlanConfig, plan_phone};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const GRACE: Duration = Duration::from_secs(120);

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).unwrap()
    }

    fn spec() -> CloudPhoneSpec {
        CloudPhoneSpec {
            instance_id: "kp1".into(),
            lifecycle: Lifecycle::BackedUp,
            interrupt_streaming: false,
            suspend: false,
            account_ref: None,
        }
    }

    fn view<'a>(
        name: &'a str,
        uid: &'a str,
        spec: &'a CloudPhoneSpec,
        status: Option<&'a CloudPhoneStatus>,
    ) -> PhoneView<'a> {
        PhoneView {
            key: KeyRef {
                namespace: "fleet",
                name,
            },
            uid: Some(uid),
            created: Some(at(-10_000)),
            generation: Some(1),
            spec,
            status,
            reconcile_requested: None,
            account: Ok(crate::plan::DEFAULT_SCOPE),
        }
    }

    fn intent_status(requested: i64) -> CloudPhoneStatus {
        CloudPhoneStatus {
            backup: Some(BackupStatus {
                requested_at: Some(Time(at(requested))),
                attempts: 1,
                in_flight: true,
                ..BackupStatus::default()
            }),
            ..CloudPhoneStatus::default()
        }
    }

    #[test]
    fn a_new_owner_waits_out_the_previous_owners_intent_even_after_it_is_deleted() {
        let spec = spec();
        let old_status = intent_status(0);
        let mut intents = Intents::default();
        intents.observe(
            &[view("old", "u-old", &spec, Some(&old_status))],
            at(1),
            GRACE,
        );
        // The old object is deleted: the next snapshots show only the new one.
        let new = view("new", "u-new", &spec, None);
        intents.observe(std::slice::from_ref(&new), at(5), GRACE);
        let previous = intents.previous(&new, at(5), GRACE).cloned();
        assert_eq!(
            previous.as_ref().map(|i| i.owner.as_str()),
            Some("fleet/old")
        );
        let why = handover_wait(&new, previous.as_ref(), false, at(5), GRACE).unwrap();
        assert!(why.contains("fleet/old"), "{why}");

        let mut planned = plan_phone(
            &new,
            &Disposition::Query,
            Some(&Observation::Status(2)),
            at(5),
            &PlanConfig::default(),
        );
        assert!(planned.backup);
        hold(&mut planned, None, Some(1), &why, at(5));
        assert!(!planned.backup);
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
        intents.observe(std::slice::from_ref(&new), at(121), GRACE);
        assert!(intents.previous(&new, at(121), GRACE).is_none());
        assert!(intents.is_empty());
    }

    #[test]
    fn an_owners_own_intent_never_holds_it_and_accounts_are_apart() {
        let spec = spec();
        let status = intent_status(0);
        let phone = view("p", "u-p", &spec, Some(&status));
        let mut intents = Intents::default();
        intents.observe(std::slice::from_ref(&phone), at(1), GRACE);
        assert!(intents.previous(&phone, at(1), GRACE).is_none());
        let mut other = view("q", "u-q", &spec, None);
        assert!(intents.previous(&other, at(1), GRACE).is_some());
        other.account = Ok("another-tenant");
        assert!(
            intents.previous(&other, at(1), GRACE).is_none(),
            "the same id in another account's scope is another instance"
        );
    }

    #[test]
    fn after_a_restart_a_young_owner_waits_out_the_grace_period_of_its_creation() {
        let spec = spec();
        let mut young = view("p", "u-p", &spec, None);
        young.created = Some(at(0));
        assert!(handover_wait(&young, None, true, at(60), GRACE).is_some());
        assert!(handover_wait(&young, None, true, at(120), GRACE).is_none());
        assert!(
            handover_wait(&young, None, false, at(60), GRACE).is_none(),
            "once the term has watched for a grace period, its memory is complete"
        );
        let own = intent_status(30);
        young.status = Some(&own);
        assert!(
            handover_wait(&young, None, true, at(60), GRACE).is_none(),
            "an owner that requested a backup itself has nothing to wait for"
        );
    }
}
