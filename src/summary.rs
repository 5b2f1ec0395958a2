//! `kubectl cloudphone summary`: the fleet at a glance, from the CloudPhones a user may list with
//! their own kubeconfig and RBAC: phones by namespace and phase, the oldest last backup, where the
//! `Loaded` phones' prepares stand, the phones kept at another lifecycle than they declare (and the
//! next change), and the phones that need a person.

use crate::api::{CloudPhone, Lifecycle};
use crate::plan::{
    PREPARE_FAILED, PREPARE_REFUSED, PREVIOUS_ACTION_PENDING, READY, STALLED_REASONS,
};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A phone a person must look at, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedsAPerson {
    pub phone: String,
    pub reason: String,
    pub message: String,
}

/// The fleet at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Phones by namespace, then by phase name.
    pub by_namespace: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// The `BackedUp` phone whose last completed backup is oldest (or that never had one, the
    /// oldest first), with that time (`None`: never).
    pub oldest_backup: Option<(String, Option<Timestamp>)>,
    /// Where the `Loaded` phones' prepares stand.
    pub prepares: Prepares,
    /// Phones whose Ready reason says a person must act (kstatus's `Stalled`).
    pub needs_a_person: Vec<NeedsAPerson>,
    /// Phones kept at another lifecycle than they declare, by (declared, effective, reason).
    pub kept_otherwise: BTreeMap<(&'static str, &'static str, &'static str), usize>,
    /// The soonest change of a phone's effective lifecycle: the phone, when, and to what.
    pub next_transition: Option<(String, Timestamp, Lifecycle)>,
}

/// The `Loaded` phones by where their prepare stands, from their Ready condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepares {
    /// Phones whose `spec.lifecycle` is `Loaded`.
    pub phones: usize,
    /// Ready: their data is on a physical instance.
    pub loaded: usize,
    /// A prepare requested and not shown under way yet, or waiting for a backup or an earlier
    /// action to end first.
    pub requested: usize,
    /// The vendor is restoring their data onto a physical instance.
    pub restoring: usize,
    /// The last prepare failed (a restoration exception, or the call itself): retried with backoff,
    /// each with its Ready reason and message.
    pub failing: Vec<NeedsAPerson>,
    /// Refused by the vendor until a person acts (also among the phones that need a person).
    pub refused: usize,
    /// The phone whose prepare completed last, and when.
    pub last_loaded: Option<(String, Timestamp)>,
}

impl Prepares {
    /// `Loaded` phones in none of the states above: no status yet, suspended, blocked...
    pub fn other(&self) -> usize {
        self.phones
            - self.loaded
            - self.requested
            - self.restoring
            - self.failing.len()
            - self.refused
    }
}

/// How far back a phone's data was last saved, ordered oldest first: never backed up, then the
/// earliest last backup, then the earliest created.
type BackupAge = (bool, Option<Timestamp>, Option<Timestamp>);

/// Summarises `phones`.
pub fn summarize(phones: &[CloudPhone]) -> Summary {
    let mut summary = Summary::default();
    let mut oldest: Option<(BackupAge, String)> = None;
    for phone in phones {
        let name = format!(
            "{}/{}",
            phone.metadata.namespace.as_deref().unwrap_or_default(),
            phone.metadata.name.as_deref().unwrap_or_default()
        );
        let status = phone.status.as_ref();
        let phase = status.map(|s| s.phase).unwrap_or_default();
        *summary
            .by_namespace
            .entry(phone.metadata.namespace.clone().unwrap_or_default())
            .or_default()
            .entry(phase.as_str())
            .or_default() += 1;
        // NB: a Scheduled phone counts with the lifecycle its schedule keeps it at now.
        let declared = match (
            phone.spec.lifecycle,
            status.and_then(|s| s.effective_lifecycle),
        ) {
            (Lifecycle::Scheduled, Some(kept)) => kept,
            (declared, _) => declared,
        };
        if declared == Lifecycle::BackedUp {
            let last = status
                .and_then(|s| s.last_backup_time.as_ref())
                .map(|t| t.0);
            let created = phone.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let key = (last.is_some(), last, created);
            if oldest.as_ref().is_none_or(|(k, _)| key < *k) {
                oldest = Some((key, name.clone()));
            }
        }
        if let Some(at) = status
            .and_then(|s| s.last_loaded_time.as_ref())
            .map(|t| t.0)
            && summary
                .prepares
                .last_loaded
                .as_ref()
                .is_none_or(|(_, last)| at > *last)
        {
            summary.prepares.last_loaded = Some((name.clone(), at));
        }
        if let Some((kept, reason)) = status
            .and_then(|s| s.effective_lifecycle.zip(s.effective_reason))
            .filter(|(kept, _)| *kept != phone.spec.lifecycle)
        {
            *summary
                .kept_otherwise
                .entry((
                    phone.spec.lifecycle.as_str(),
                    kept.as_str(),
                    reason.as_str(),
                ))
                .or_default() += 1;
        }
        if let Some(next) = status.and_then(|s| s.next_transition.as_deref())
            && summary
                .next_transition
                .as_ref()
                .is_none_or(|(_, at, _)| next.at.0 < *at)
        {
            summary.next_transition = Some((name.clone(), next.at.0, next.lifecycle));
        }
        let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
        if declared == Lifecycle::Loaded {
            let prepares = &mut summary.prepares;
            prepares.phones += 1;
            match ready {
                Some(ready) if ready.status == "True" => prepares.loaded += 1,
                Some(ready) => match ready.reason.as_str() {
                    "PrepareRequested"
                    | "PrepareNotStarted"
                    | "BackingUp"
                    | PREVIOUS_ACTION_PENDING => prepares.requested += 1,
                    "Restoring" => prepares.restoring += 1,
                    PREPARE_FAILED | "PrepareCallFailed" => prepares.failing.push(NeedsAPerson {
                        phone: name.clone(),
                        reason: ready.reason.clone(),
                        message: ready.message.clone(),
                    }),
                    PREPARE_REFUSED => prepares.refused += 1,
                    _ => {}
                },
                None => {}
            }
        }
        if let Some(ready) = ready
            && ready.status != "True"
            && STALLED_REASONS.contains(&ready.reason.as_str())
        {
            summary.needs_a_person.push(NeedsAPerson {
                phone: name,
                reason: ready.reason.clone(),
                message: ready.message.clone(),
            });
        }
    }
    summary.oldest_backup = oldest.map(|((_, last, _), name)| (name, last));
    summary
}

impl Summary {
    /// The summary as text tables, ages from `now`.
    pub fn render(&self, now: Timestamp) -> String {
        let mut out = String::new();
        let phases: Vec<&str> = {
            let mut seen: Vec<&str> = self
                .by_namespace
                .values()
                .flat_map(|m| m.keys().copied())
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let _ = write!(out, "{:<24}", "NAMESPACE");
        for phase in &phases {
            let _ = write!(out, " {phase:>13}");
        }
        let _ = writeln!(out, " {:>7}", "TOTAL");
        for (namespace, counts) in &self.by_namespace {
            let _ = write!(out, "{namespace:<24}");
            for phase in &phases {
                let _ = write!(out, " {:>13}", counts.get(phase).copied().unwrap_or(0));
            }
            let _ = writeln!(out, " {:>7}", counts.values().sum::<usize>());
        }
        if self.by_namespace.is_empty() {
            let _ = writeln!(out, "(no CloudPhones)");
        }
        let _ = writeln!(out);
        match &self.oldest_backup {
            Some((phone, Some(at))) => {
                let age = now.duration_since(*at).as_secs().max(0);
                let _ = writeln!(
                    out,
                    "oldest last backup: {phone}, at {at} ({} ago)",
                    humantime::format_duration(std::time::Duration::from_secs(age as u64))
                );
            }
            Some((phone, None)) => {
                let _ = writeln!(out, "oldest last backup: {phone} has never been backed up");
            }
            None => {
                let _ = writeln!(out, "oldest last backup: no BackedUp phone");
            }
        }
        let _ = writeln!(out);
        let prepares = &self.prepares;
        if prepares.phones == 0 {
            let _ = writeln!(out, "loaded phones: none");
        } else {
            let _ = writeln!(
                out,
                "loaded phones: {}: {} loaded, {} prepare requested, {} restoring, {} failing, {} refused, {} other",
                prepares.phones,
                prepares.loaded,
                prepares.requested,
                prepares.restoring,
                prepares.failing.len(),
                prepares.refused,
                prepares.other()
            );
        }
        match &prepares.last_loaded {
            Some((phone, at)) => {
                let age = now.duration_since(*at).as_secs().max(0);
                let _ = writeln!(
                    out,
                    "last loaded: {phone}, at {at} ({} ago)",
                    humantime::format_duration(std::time::Duration::from_secs(age as u64))
                );
            }
            None if prepares.phones > 0 => {
                let _ = writeln!(out, "last loaded: no prepare has completed");
            }
            None => {}
        }
        if !prepares.failing.is_empty() {
            let _ = writeln!(
                out,
                "{} prepares failing (retried with backoff):",
                prepares.failing.len()
            );
            for p in &prepares.failing {
                let _ = writeln!(out, "  {:<40} {:<20} {}", p.phone, p.reason, p.message);
            }
        }
        let _ = writeln!(out);
        if self.kept_otherwise.is_empty() {
            let _ = writeln!(out, "every phone is kept at the lifecycle it declares");
        } else {
            let _ = writeln!(out, "kept at another lifecycle than declared:");
            for ((declared, kept, reason), n) in &self.kept_otherwise {
                let _ = writeln!(out, "  {n:>6} {declared} kept {kept} ({reason})");
            }
        }
        if let Some((phone, at, lifecycle)) = &self.next_transition {
            let _ = writeln!(
                out,
                "next transition: {phone} to {} at {at} ({})",
                lifecycle.as_str(),
                match at.duration_since(now).as_secs() {
                    s if s >= 0 => format!(
                        "in {}",
                        humantime::format_duration(std::time::Duration::from_secs(s as u64))
                    ),
                    _ => "due".to_owned(),
                }
            );
        }
        let _ = writeln!(out);
        if self.needs_a_person.is_empty() {
            let _ = writeln!(out, "no phone needs a person");
        } else {
            let _ = writeln!(out, "{} phones need a person:", self.needs_a_person.len());
            for p in &self.needs_a_person {
                let _ = writeln!(out, "  {:<40} {:<20} {}", p.phone, p.reason, p.message);
            }
        }
        out
    }
}

/// Lists the CloudPhones of `namespace` (all when `None`) through `client` and summarises them.
pub async fn fetch(client: kube::Client, namespace: Option<&str>) -> Result<Summary, kube::Error> {
    let api: kube::Api<CloudPhone> = match namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let mut phones = Vec::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        phones.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(summarize(&phones))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CloudPhoneStatus;
    use crate::plan::{Action, ActionResult, Failure};
    use crate::test_phone::cloudphone;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn phone(name: &str, lifecycle: Lifecycle, last_backup: Option<i64>) -> CloudPhone {
        cloudphone(name, name)
            .lifecycle(lifecycle)
            .status(CloudPhoneStatus {
                last_backup_time: last_backup
                    .map(|s| Time(Timestamp::from_second(1_790_000_000 + s).unwrap())),
                ..CloudPhoneStatus::default()
            })
            .build()
    }

    #[test]
    fn the_oldest_last_backup_is_the_earliest_and_never_is_older_still() {
        let fleet = [
            phone("recent", Lifecycle::BackedUp, Some(500)),
            phone("old", Lifecycle::BackedUp, Some(100)),
            phone("watched", Lifecycle::Observed, Some(0)),
        ];
        let s = summarize(&fleet);
        let at = Timestamp::from_second(1_790_000_100).unwrap();
        assert_eq!(s.oldest_backup, Some(("fleet/old".into(), Some(at))));
        let text = s.render(Timestamp::from_second(1_790_003_700).unwrap());
        assert!(
            text.contains("fleet/old") && text.contains("1h ago"),
            "{text}"
        );
        let mut with_never = fleet.to_vec();
        with_never.push(phone("never", Lifecycle::BackedUp, None));
        assert_eq!(
            summarize(&with_never).oldest_backup,
            Some(("fleet/never".into(), None))
        );
    }

    #[test]
    fn a_scheduled_phone_counts_with_what_its_schedule_keeps_it_at() {
        use crate::api::EffectiveReason;
        let parked = cloudphone("parked", "kp1")
            .scheduled("office", "u1")
            .status(CloudPhoneStatus {
                last_backup_time: None,
                effective_lifecycle: Some(Lifecycle::BackedUp),
                effective_reason: Some(EffectiveReason::OutsideWindow),
                ..CloudPhoneStatus::default()
            })
            .build();
        let woken = cloudphone("woken", "kp2")
            .scheduled("office", "u1")
            .status(CloudPhoneStatus {
                effective_lifecycle: Some(Lifecycle::Loaded),
                effective_reason: Some(EffectiveReason::ScheduleWindow),
                ..CloudPhoneStatus::default()
            })
            .build();
        let s = summarize(&[parked, woken]);
        assert_eq!(s.oldest_backup, Some(("fleet/parked".into(), None)));
        assert_eq!(s.prepares.phones, 1, "the woken one counts as loaded");
        assert_eq!(
            s.kept_otherwise
                .get(&("Scheduled", "Loaded", "ScheduleWindow")),
            Some(&1)
        );
    }

    #[test]
    fn phones_kept_at_another_lifecycle_and_the_next_transition_are_shown() {
        use crate::api::{EffectiveReason, Transition};
        let kept = |name: &str, at: i64| {
            cloudphone(name, "kp1")
                .backed_up()
                .status(CloudPhoneStatus {
                    effective_lifecycle: Some(Lifecycle::Loaded),
                    effective_reason: Some(EffectiveReason::WaitingForIdle),
                    next_transition: Some(Box::new(Transition {
                        at: Time(Timestamp::from_second(1_790_000_000 + at).unwrap()),
                        lifecycle: Lifecycle::BackedUp,
                    })),
                    ..CloudPhoneStatus::default()
                })
                .build()
        };
        let fleet = [
            kept("later", 900),
            kept("sooner", 600),
            phone("plain", Lifecycle::BackedUp, Some(0)),
        ];
        let s = summarize(&fleet);
        assert_eq!(
            s.kept_otherwise
                .get(&("BackedUp", "Loaded", "WaitingForIdle")),
            Some(&2)
        );
        let text = s.render(Timestamp::from_second(1_790_000_000).unwrap());
        assert!(
            text.contains("2 BackedUp kept Loaded (WaitingForIdle)"),
            "{text}"
        );
        assert!(
            text.contains("next transition: fleet/sooner to BackedUp") && text.contains("in 10m"),
            "{text}"
        );
    }

    /// `phone` with the status the planner gives it after observing `codes` in turn, ten seconds
    /// apart from `start` (seconds after 1_790_000_000), then the prepare call's `result` if any.
    fn planned(
        phone: CloudPhone,
        start: i64,
        codes: &[i64],
        result: Option<ActionResult>,
    ) -> CloudPhone {
        use crate::plan::{
            Context, DEFAULT_SCOPE, Disposition, EarlierTerms, Memory, Observation, PhoneView,
            PlanConfig, Route, plan_phone,
        };
        let config = PlanConfig::default();
        let mut phone = phone;
        let mut now = Timestamp::from_second(1_790_000_000 + start).unwrap();
        for code in codes {
            let cx = Context {
                now,
                config: &config,
                earlier: &EarlierTerms::Settled,
            };
            let status = plan_phone(
                &PhoneView::of(&phone, Route::Scope(DEFAULT_SCOPE)),
                &Disposition::Query,
                Some(&Observation::Status(*code)),
                &Memory::default(),
                &cx,
            )
            .expect("planned")
            .status
            .into_owned();
            phone.status = Some(status);
            now += jiff::SignedDuration::from_secs(10);
        }
        if let Some(result) = result {
            let status = Action::Prepare.record_result(
                phone.status.as_ref().unwrap(),
                phone.metadata.generation,
                &result,
                now,
                &config,
            );
            phone.status = Some(status);
        }
        phone
    }

    #[test]
    fn loaded_phones_are_counted_by_where_their_prepare_stands() {
        let loaded = |name: &str| cloudphone(name, name).loaded("u1").build();
        let failure = || Failure {
            reason: "Refused".into(),
            message: "not the tenant's instance".into(),
        };
        let fleet = [
            planned(loaded("later"), 600, &[0, 1, 3], None),
            planned(loaded("earlier"), 0, &[0, 1, 2], None),
            planned(loaded("requested"), 0, &[0], None),
            planned(loaded("waiting"), 0, &[4], None),
            planned(loaded("restoring"), 0, &[0, 1], None),
            planned(loaded("exception"), 0, &[0, 1, 6], None),
            planned(
                loaded("refused"),
                0,
                &[0],
                Some(ActionResult::Refused { failure: failure() }),
            ),
            loaded("new"),
            phone("backed-up", Lifecycle::BackedUp, Some(900)),
        ];
        let s = summarize(&fleet);
        let later = Timestamp::from_second(1_790_000_600 + 20).unwrap();
        let failing: Vec<(&str, &str)> = s
            .prepares
            .failing
            .iter()
            .map(|p| (p.phone.as_str(), p.reason.as_str()))
            .collect();
        assert_eq!(failing, [("fleet/exception", PREPARE_FAILED)], "{s:#?}");
        assert_eq!(
            Prepares {
                failing: Vec::new(),
                ..s.prepares.clone()
            },
            Prepares {
                phones: 8,
                loaded: 2,
                requested: 2,
                restoring: 1,
                failing: Vec::new(),
                refused: 1,
                last_loaded: Some(("fleet/later".into(), later)),
            }
        );
        assert_eq!(s.prepares.other(), 1, "no status yet");
        assert_eq!(s.needs_a_person.len(), 1);
        assert_eq!(s.needs_a_person[0].reason, PREPARE_REFUSED);
        let text = s.render(later + jiff::SignedDuration::from_secs(300));
        assert!(
            text.contains(
                "loaded phones: 8: 2 loaded, 2 prepare requested, 1 restoring, 1 failing, 1 refused, 1 other"
            ),
            "{text}"
        );
        assert!(
            text.contains("last loaded: fleet/later, at") && text.contains("(5m ago)"),
            "{text}"
        );
        assert!(
            text.contains("1 prepares failing (retried with backoff):")
                && text.contains("fleet/exception")
                && text.contains("restoration exception"),
            "{text}"
        );
    }

    #[test]
    fn a_fleet_without_loaded_phones_says_so_and_names_no_last_load() {
        let s = summarize(&[phone("old", Lifecycle::BackedUp, Some(100))]);
        assert_eq!(s.prepares, Prepares::default());
        let text = s.render(Timestamp::from_second(1_790_003_700).unwrap());
        assert!(text.contains("loaded phones: none"), "{text}");
        assert!(!text.contains("last loaded"), "{text}");
        assert!(!text.contains("prepares failing"), "{text}");
        let waiting = summarize(&[cloudphone("new", "new").loaded("u1").build()]);
        assert!(
            waiting
                .render(Timestamp::from_second(1_790_003_700).unwrap())
                .contains("last loaded: no prepare has completed")
        );
    }
}
