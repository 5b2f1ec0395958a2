//! `kubectl cloudphone summary`: the fleet at a glance, from the CloudPhones a user may list with
//! their own kubeconfig and RBAC: phones by namespace and phase, the oldest last backup, and the
//! phones that need a person.

use crate::api::{CloudPhone, Lifecycle};
use crate::plan::{READY, STALLED_REASONS};
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
    /// Phones whose Ready reason says a person must act (kstatus's `Stalled`).
    pub needs_a_person: Vec<NeedsAPerson>,
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
        if phone.spec.lifecycle == Lifecycle::BackedUp {
            let last = status
                .and_then(|s| s.last_backup_time.as_ref())
                .map(|t| t.0);
            let created = phone.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let key = (last.is_some(), last, created);
            if oldest.as_ref().is_none_or(|(k, _)| key < *k) {
                oldest = Some((key, name.clone()));
            }
        }
        let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
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
}
