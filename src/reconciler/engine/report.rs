//! What a tick reports beyond its phones: each account's breaker and status report, the fleet
//! gauges, the tick's metrics and the time of the last tick that reached the vendor.

use super::*;

/// The fleet after a tick, for the leader's gauges: phones by namespace, phase and lifecycle, and
/// the age of the oldest un-backed-up data (a phone of a chunk the deadline cut counts as it was);
/// the longest time without `Ready=True` as the snapshot shows it.
pub(super) fn fleet_gauges(
    frame: &Frame<'_>,
    phases: &[crate::api::Phase],
    now: Timestamp,
) -> crate::metrics::Fleet {
    type Key<'k> = (
        crate::api::Phase,
        crate::api::Lifecycle,
        crate::api::Lifecycle,
        &'k str,
    );
    let mut counts: HashMap<Key<'_>, i64> = HashMap::new();
    // NB: neighbours in the snapshot mostly share a key: a run is counted here and hashed once.
    let mut run: Option<(Key<'_>, i64)> = None;
    let mut oldest = 0.0f64;
    let mut longest_not_ready = 0.0f64;
    for (phone, &phase) in frame.snapshot.iter().zip(phases) {
        if let Some(since) = phone.status.as_ref().and_then(not_ready_since) {
            longest_not_ready = longest_not_ready.max(now.duration_since(since).as_secs_f64());
        }
        let namespace = phone.metadata.namespace.as_deref().unwrap_or_default();
        // NB: what the phone is kept at now; a status from before effectiveLifecycle: declared.
        let kept = phone
            .status
            .as_ref()
            .and_then(|s| s.effective_lifecycle)
            .unwrap_or(phone.spec.lifecycle);
        let key = (phase, phone.spec.lifecycle, kept, namespace);
        match &mut run {
            Some((k, n)) if *k == key => *n += 1,
            _ => {
                if let Some((k, n)) = run.replace((key, 1)) {
                    *counts.entry(k).or_default() += n;
                }
            }
        }
        let unsafe_data = matches!(
            phase,
            crate::api::Phase::DataLoaded
                | crate::api::Phase::Streaming
                | crate::api::Phase::BackupFailed
        );
        // NB: the effective lifecycle: a phone rightly kept loaded (load-until, waiting for
        // idleness) is no backup overdue.
        if kept == crate::api::Lifecycle::BackedUp && unsafe_data {
            let since = phone
                .status
                .as_ref()
                .and_then(|s| s.last_backup_time.as_ref())
                .or(phone.metadata.creation_timestamp.as_ref());
            if let Some(since) = since {
                oldest = oldest.max(now.duration_since(since.0).as_secs_f64());
            }
        }
    }
    if let Some((k, n)) = run {
        *counts.entry(k).or_default() += n;
    }
    let phones = counts
        .into_iter()
        .map(|((phase, lifecycle, kept, namespace), n)| {
            (
                crate::metrics::PhoneLabels {
                    namespace: namespace.to_owned(),
                    phase: phase.as_str(),
                    lifecycle: lifecycle.as_str(),
                    effective_lifecycle: kept.as_str(),
                },
                n,
            )
        })
        .collect();
    crate::metrics::Fleet {
        phones,
        oldest_unbacked: oldest,
        longest_not_ready,
        wave_late: 0,
    }
}

/// Every phone's phase after a tick: what its groups observed, else what the snapshot showed (a
/// phone of a chunk the deadline cut counts as it was).
pub(super) fn phases_after(frame: &Frame<'_>, groups: &[Group<'_>]) -> Vec<crate::api::Phase> {
    let mut phases: Vec<crate::api::Phase> = frame
        .snapshot
        .iter()
        .map(|p| p.status.as_ref().map(|s| s.phase).unwrap_or_default())
        .collect();
    for &(i, phase) in groups.iter().flat_map(|g| &g.phases) {
        phases[i] = phase;
    }
    phases
}

/// Since when a status's `Ready` has not been `True`; `None` while it is, or while the phone is
/// suspended (nothing is wrong), or before it has a Ready condition: the phones kstatus calls
/// Reconciling or Stalled.
pub(super) fn not_ready_since(status: &crate::api::CloudPhoneStatus) -> Option<Timestamp> {
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::plan::READY)?;
    crate::plan::kstatus_condition(&ready.status, &ready.reason)
        .map(|_| ready.last_transition_time.0)
}

impl<S: PhoneStore> Engine<S> {
    /// One line a tick, and the metric, for each account whose calls are paused by its breaker;
    /// the series of an account that is gone (its CloudPhoneAccount deleted) is removed.
    pub(super) fn report_breakers(&self, accounts: &TickAccounts<'_>) {
        if let Some(m) = &self.metrics {
            let mut reported = self
                .breaker_series
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // NB: removed one by one, never cleared and refilled: a scrape in between would see
            // no series, and an alert pending on it would start its `for:` again.
            reported.retain(|name| {
                let present = accounts.entries.iter().any(|a| a.name == name);
                if !present {
                    m.breaker_open.remove(&AccountLabels {
                        account: name.clone(),
                    });
                }
                present
            });
            reported.extend(accounts.entries.iter().map(|a| a.name.to_owned()));
        }
        for account in &accounts.entries {
            let open = self.breakers.refusal(account.name);
            if let Some(m) = &self.metrics {
                m.breaker_open
                    .get_or_create(&AccountLabels {
                        account: account.name.to_owned(),
                    })
                    .set(i64::from(open.is_some()));
            }
            if let Some(failure) = open {
                warn!(account = account.name, reason = %failure.reason, message = %failure.message, "vendor calls paused: the account's circuit breaker is open");
            }
        }
    }

    /// What the tick found of each CloudPhoneAccount (the operator's own account has no object).
    pub(super) fn account_ticks(
        &self,
        accounts: &TickAccounts<'_>,
        bindings: &[Binding],
    ) -> Vec<AccountTick> {
        let mut phones = vec![0usize; accounts.entries.len()];
        for binding in bindings {
            if let Binding::Account(ix) = binding {
                phones[*ix] += 1;
            }
        }
        accounts
            .entries
            .iter()
            .zip(phones)
            .skip(1)
            .map(|(account, phones)| AccountTick {
                name: account.name.to_owned(),
                generation: account.generation,
                phones,
                problem: match account.client {
                    Err(why) => Some(plan::Failure {
                        reason: why.reason.to_owned(),
                        message: why.message.clone(),
                    }),
                    Ok(_) => self.breakers.refusal(account.name),
                },
                credentials: account.client.ok().map(Client::credentials_version),
            })
            .collect()
    }

    pub(super) fn record_success(&self) {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if let Some(m) = &self.metrics {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            m.last_successful_tick.set(unix);
        }
    }

    /// The tick's metrics: its duration, backups, and the fleet's gauges.
    pub(super) fn record_metrics(
        &self,
        report: &TickReport,
        fleet: crate::metrics::Fleet,
        (durations, moves): (&[(crate::plan::Action, f64)], &[crate::plan::Move]),
        failing_writes: usize,
    ) {
        let Some(m) = &self.metrics else {
            return;
        };
        m.tick_duration.observe(report.duration.as_secs_f64());
        m.backups_requested.inc_by(report.backups_requested as u64);
        for (action, seconds) in durations {
            m.action_duration(*action).observe(*seconds);
            m.action_outcomes(*action)
                .get_or_create(&crate::metrics::BackupOutcomeLabels {
                    outcome: "completed",
                })
                .inc();
        }
        for moved in moves {
            let (family, reason) = match *moved {
                crate::plan::Move::Park(reason) => (&m.parks, reason),
                crate::plan::Move::Wake(reason) => (&m.wakes, reason),
            };
            family
                .get_or_create(&crate::metrics::ReasonLabels { reason })
                .inc();
        }
        m.set_fleet(fleet);
        m.status_write_failing_phones.set(failing_writes as i64);
    }
}
