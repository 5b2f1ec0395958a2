//! The operator's Prometheus metrics (prometheus-client), every label bounded.

use crate::koophone::{CallObserver, Endpoint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `batch-query-status` or `backup`.
    pub endpoint: &'static str,
    /// `ok`, or the failure's label (`Timeout`, `ServerError`, `RateLimited`, a vendor code's name).
    pub code: &'static str,
    /// The vendor account: `default`, or a CloudPhoneAccount's name (one value per account).
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhoneLabels {
    pub namespace: String,
    pub phase: &'static str,
    /// The declared lifecycle (`spec.lifecycle`).
    pub lifecycle: &'static str,
    /// What the operator keeps the phone at now (`status.effectiveLifecycle`): a BackedUp phone
    /// kept loaded by load-until or while in use counts as `Loaded` here.
    pub effective_lifecycle: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupOutcomeLabels {
    /// A backup call's outcome (`accepted`, `failed`, `refused`, ...), or `completed` when the
    /// vendor was seen to finish one.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A bounded reason: `idle` or `load_until_expired` for a park, `load_until` for a wake.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `Gone`, `Conflict` or `Other`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    /// The vendor account (`default` for the operator's one set of credentials).
    pub account: String,
}

/// Every metric the operator exports, registered under the `cloudphone_` prefix.
pub struct Metrics {
    registry: Registry,
    pub tick_duration: Histogram,
    pub vendor_calls: Family<CallLabels, Counter>,
    pub vendor_latency: Family<EndpointLabels, Histogram>,
    pub phones: Family<PhoneLabels, Gauge>,
    pub oldest_unbacked: Gauge<f64, AtomicU64>,
    pub longest_not_ready: Gauge<f64, AtomicU64>,
    /// Scheduled phones late for their window (`wave_late_phones`).
    pub wave_late: Gauge,
    pub backup_duration: Histogram,
    pub backups: Family<BackupOutcomeLabels, Counter>,
    pub backups_requested: Counter,
    pub prepare_duration: Histogram,
    pub prepares: Family<BackupOutcomeLabels, Counter>,
    /// Phones the operator parked after keeping them loaded (`cloudphone_parks_total{reason}`).
    pub parks: Family<ReasonLabels, Counter>,
    /// Phones the operator woke (`cloudphone_wakes_total{reason}`).
    pub wakes: Family<ReasonLabels, Counter>,
    pub status_writes: Family<OutcomeLabels, Counter>,
    pub status_write_failing_phones: Gauge,
    pub last_successful_tick: Gauge<f64, AtomicU64>,
    pub leader: Gauge,
    pub credentials_usable: Gauge,
    pub breaker_open: Family<AccountLabels, Gauge>,
    pub events_dropped: Counter,
    pub heap_bytes: Gauge,
    pub heap_peak_bytes: Gauge,
    /// What `credentials_usable` follows between ticks; see [`Metrics::follow_credentials`].
    credentials_probe: std::sync::Mutex<Option<CredentialsProbe>>,
    /// The label sets of `phones` now shown, to remove those a new fleet lacks.
    phone_series: std::sync::Mutex<std::collections::HashSet<PhoneLabels>>,
    /// Physical-instance time held, per namespace (`cloudphone_instance_seconds_total`).
    pub instance_seconds: Family<NamespaceLabels, Counter<f64, AtomicU64>>,
    /// When the last fleet was set: the interval the next one's held instances count for.
    last_fleet: std::sync::Mutex<Option<std::time::Instant>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

type CredentialsProbe = Box<dyn Fn() -> bool + Send + Sync>;

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// The time from each action's request to its completion seen
    /// (`cloudphone_backup_duration_seconds`, `cloudphone_prepare_duration_seconds`).
    pub fn action_duration(&self, action: crate::plan::Action) -> &Histogram {
        match action {
            crate::plan::Action::Backup => &self.backup_duration,
            crate::plan::Action::Prepare => &self.prepare_duration,
        }
    }

    /// The outcomes of each action's calls per phone (`cloudphone_backups_total{outcome}`,
    /// `cloudphone_prepares_total{outcome}`).
    pub fn action_outcomes(
        &self,
        action: crate::plan::Action,
    ) -> &Family<BackupOutcomeLabels, Counter> {
        match action {
            crate::plan::Action::Backup => &self.backups,
            crate::plan::Action::Prepare => &self.prepares,
        }
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cloudphone");
        // 5ms to about 80s: a tick of a handful of phones up to one stalled on time-outs.
        let tick_duration = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        let vendor_calls = Family::<CallLabels, Counter>::default();
        let vendor_latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            // 5ms to about 40s.
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let phones = Family::<PhoneLabels, Gauge>::default();
        let oldest_unbacked = Gauge::<f64, AtomicU64>::default();
        let longest_not_ready = Gauge::<f64, AtomicU64>::default();
        let wave_late = Gauge::default();
        registry.register(
            "wave_late_phones",
            "Scheduled phones late for their window: the window (or a Loaded exception) has started, their turn in the wake has come, and they are not loaded (phase neither DataLoaded nor Streaming) although their prepare was asked for at least --restore-estimate ago, or could not be asked; phones waiting for their turn, suspended phones and dry-run schedules are not counted; 0 when none",
            wave_late.clone(),
        );
        // 10s to about 11h: a quick backup up to one queued at the vendor for hours.
        let backup_duration = Histogram::new(exponential_buckets(10.0, 2.0, 13));
        let backups = Family::<BackupOutcomeLabels, Counter>::default();
        registry.register(
            "oldest_unbacked_seconds",
            "Age of the oldest un-backed-up data among phones kept BackedUp (status.effectiveLifecycle; phase DataLoaded, Streaming or BackupFailed: a phone kept loaded by load-until or waiting for idleness is not counted): time since its last completed backup, or since the CloudPhone was created; 0 when none",
            oldest_unbacked.clone(),
        );
        registry.register(
            "longest_not_ready_seconds",
            "How long the phone that has gone longest without Ready=True has been so (since its Ready condition's lastTransitionTime, as the watch cache showed it at the tick's start); suspended phones are not counted; 0 when every phone is Ready",
            longest_not_ready.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Time from a backup request to the operator seeing the backup complete",
            backup_duration.clone(),
        );
        registry.register(
            "backups",
            "Backup calls by outcome, and backups seen complete (outcome=completed)",
            backups.clone(),
        );
        let backups_requested = Counter::default();
        // 10s to about 11h, as backups: a restore queued at the vendor may wait long.
        let prepare_duration = Histogram::new(exponential_buckets(10.0, 2.0, 13));
        let prepares = Family::<BackupOutcomeLabels, Counter>::default();
        registry.register(
            "prepare_duration_seconds",
            "Time from a prepare request to the operator seeing the data on a physical instance",
            prepare_duration.clone(),
        );
        registry.register(
            "prepares",
            "Prepare calls by outcome, and prepares seen complete (outcome=completed)",
            prepares.clone(),
        );
        // NB: at 0 from the start: rate() needs two samples, and a series that appears with its
        // first increment hides it from the alerts that divide these.
        for outcome in ["accepted", "failed", "refused", "completed"] {
            for family in [&backups, &prepares] {
                drop(family.get_or_create(&BackupOutcomeLabels { outcome }));
            }
        }
        let instance_seconds = Family::<NamespaceLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "instance_seconds",
            "Physical-instance time held, per namespace: the phones the last tick saw DataLoaded, Streaming or Restoring, times the time since the tick before (what a fleet costs; the leader's only)",
            instance_seconds.clone(),
        );
        let parks = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "parks",
            "Backups requested for phones the operator had kept loaded, by reason: idle (unused for spec.idleTimeout), load_until_expired (the cloudphone.io/load-until time passed), window_end (their CloudPhoneSchedule's window ended) or exception (a BackedUp exception of their schedule)",
            parks.clone(),
        );
        let wakes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "wakes",
            "Prepares requested for phones the operator keeps loaded, by reason: load_until (the cloudphone.io/load-until annotation of a BackedUp phone), schedule (a window of a Scheduled phone's CloudPhoneSchedule) or exception (a Loaded exception of its schedule)",
            wakes.clone(),
        );
        // NB: every reason plan::moved gives, at 0 from the start: increase() misses a first count.
        for reason in ["idle", "load_until_expired", "window_end", "exception"] {
            drop(parks.get_or_create(&ReasonLabels { reason }));
        }
        for reason in ["load_until", "schedule", "exception"] {
            drop(wakes.get_or_create(&ReasonLabels { reason }));
        }
        let status_writes = Family::<OutcomeLabels, Counter>::default();
        let status_write_failing_phones = Gauge::default();
        registry.register(
            "status_write_failing_phones",
            "Phones whose last status write was refused (a deleted phone or a write fenced off by a newer version not counted): their status stays as it was until a write goes through, retried every tick; each is named in the log and by a StatusWriteFailing Warning event once its writes fail three times in a row; exported by the leader (0 on a standby)",
            status_write_failing_phones.clone(),
        );
        let last_successful_tick = Gauge::<f64, AtomicU64>::default();
        let leader = Gauge::default();
        let credentials_usable = Gauge::default();
        let breaker_open = Family::<AccountLabels, Gauge>::default();
        let events_dropped = Counter::default();
        let heap_bytes = Gauge::default();
        let heap_peak_bytes = Gauge::default();
        registry.register(
            "heap_bytes",
            "Bytes of the operator's heap in use now (resident memory also holds what the allocator keeps after frees)",
            heap_bytes.clone(),
        );
        registry.register(
            "heap_peak_bytes",
            "The most bytes of heap the operator has had in use at once",
            heap_peak_bytes.clone(),
        );
        registry.register(
            "events_dropped",
            "Events not published because a tick reached --max-events-per-tick (each tick summarises them in one event)",
            events_dropped.clone(),
        );
        registry.register(
            "vendor_breaker_open",
            "1 while a configuration or credential error has paused the vendor calls of an account (one probe call at a time), else 0; exported by the leader only, for the accounts that exist",
            breaker_open.clone(),
        );
        registry.register(
            "tick_duration_seconds",
            "Wall time of one reconcile tick over the whole fleet",
            tick_duration.clone(),
        );
        registry.register(
            "vendor_calls",
            "Vendor HTTP calls (every attempt, retries included), by endpoint, code (ok, or the failure's label: Timeout, RateLimited, a vendor code's name, ...) and account",
            vendor_calls.clone(),
        );
        registry.register(
            "vendor_call_duration_seconds",
            "Latency of vendor HTTP calls, by endpoint",
            vendor_latency.clone(),
        );
        registry.register(
            "phones",
            "CloudPhones by namespace, phase and lifecycle, as of the last tick (exported by the leader only)",
            phones.clone(),
        );
        registry.register(
            "backups_requested",
            "Phones whose backup the vendor accepted",
            backups_requested.clone(),
        );
        registry.register(
            "status_writes",
            "CloudPhone status writes, by outcome",
            status_writes.clone(),
        );
        registry.register(
            "last_successful_tick_timestamp_seconds",
            "Unix time at which the last tick that reached the vendor ended",
            last_successful_tick.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and ticks, else 0",
            leader.clone(),
        );
        registry.register(
            "credentials_usable",
            "1 when this replica's vendor credentials (the operator's own, not a CloudPhoneAccount's) are loaded and well-formed, 0 when they are missing or malformed (no vendor call is made); set on every replica, leader or standby; a refusal by the vendor shows in vendor_breaker_open{account=\"default\"}",
            credentials_usable.clone(),
        );
        Metrics {
            registry,
            tick_duration,
            vendor_calls,
            vendor_latency,
            phones,
            oldest_unbacked,
            longest_not_ready,
            wave_late,
            backup_duration,
            backups,
            backups_requested,
            prepare_duration,
            prepares,
            parks,
            wakes,
            status_writes,
            status_write_failing_phones,
            last_successful_tick,
            leader,
            credentials_usable,
            breaker_open,
            events_dropped,
            heap_bytes,
            heap_peak_bytes,
            credentials_probe: std::sync::Mutex::new(None),
            phone_series: std::sync::Mutex::default(),
            instance_seconds,
            last_fleet: std::sync::Mutex::default(),
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        if let Some(usable) = &*self
            .credentials_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            self.credentials_usable.set(i64::from(usable()));
        }
        let (live, peak) = crate::heap::bytes();
        self.heap_bytes.set(live as i64);
        self.heap_peak_bytes.set(peak as i64);
        let mut out = String::new();
        // NB: encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Replaces the fleet gauges.
    ///
    /// NB: the series that stay are set in place and only those that are gone removed, never the
    /// family cleared and refilled: a scrape in between would see no phones, and an alert pending
    /// on them (`CloudPhonesNeedAPerson`, `for: 1h`) would start over.
    pub fn set_fleet(&self, fleet: Fleet) {
        let mut counts: std::collections::HashMap<PhoneLabels, i64> =
            std::collections::HashMap::with_capacity(fleet.phones.len());
        for (labels, n) in fleet.phones {
            *counts.entry(labels).or_default() += n;
        }
        let mut shown = self.phone_series.lock().unwrap_or_else(|p| p.into_inner());
        shown.retain(|labels| {
            let stays = counts.contains_key(labels);
            if !stays {
                self.phones.remove(labels);
            }
            stays
        });
        let now = std::time::Instant::now();
        let elapsed = self
            .last_fleet
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(now)
            .map_or(0.0, |last| now.duration_since(last).as_secs_f64());
        let mut held: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (labels, n) in &counts {
            if matches!(labels.phase, "DataLoaded" | "Streaming" | "Restoring") {
                *held.entry(labels.namespace.as_str()).or_default() += n;
            }
        }
        if elapsed > 0.0 {
            for (namespace, n) in held {
                self.instance_seconds
                    .get_or_create(&NamespaceLabels {
                        namespace: namespace.to_owned(),
                    })
                    .inc_by(n as f64 * elapsed);
            }
        }
        for (labels, n) in counts {
            self.phones.get_or_create(&labels).set(n);
            shown.insert(labels);
        }
        self.oldest_unbacked.set(fleet.oldest_unbacked);
        self.longest_not_ready.set(fleet.longest_not_ready);
        self.wave_late.set(fleet.wave_late);
    }

    /// Drops the fleet and account gauges: a standby replica exports no phone and no breaker
    /// series and no failing writes, so that queries and alerts need no de-duplication across replicas, and a replica
    /// that lost the Lease does not keep showing the breakers of its last term.
    pub fn clear_fleet(&self) {
        let mut shown = self.phone_series.lock().unwrap_or_else(|p| p.into_inner());
        shown.clear();
        self.phones.clear();
        self.oldest_unbacked.set(0.0);
        self.longest_not_ready.set(0.0);
        self.wave_late.set(0);
        self.status_write_failing_phones.set(0);
        self.breaker_open.clear();
        // NB: a replica that leads again counts from its next fleet, not across its standby time.
        *self.last_fleet.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Sets `credentials_usable` from `usable` at every encoding, on every replica: the
    /// credentials are loaded on each (the watched Secret), whether it leads or not, so a
    /// standby's gauge says what it would call with if it took over, rather than a 0 it never
    /// checked.
    pub fn follow_credentials(&self, usable: impl Fn() -> bool + Send + Sync + 'static) {
        *self
            .credentials_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(usable));
    }
}

/// The fleet after a tick, as the leader's gauges show it.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Phones by namespace, phase and lifecycle.
    pub phones: Vec<(PhoneLabels, i64)>,
    /// Seconds since the oldest un-backed-up data was last safe (`oldest_unbacked_seconds`).
    pub oldest_unbacked: f64,
    /// Seconds the phone longest without `Ready=True` has been so (`longest_not_ready_seconds`).
    pub longest_not_ready: f64,
    /// Scheduled phones late for their window (`wave_late_phones`).
    pub wave_late: i64,
}

impl CallObserver for Metrics {
    fn observe(&self, endpoint: Endpoint, outcome: &'static str, elapsed: Duration) {
        self.observe_call(crate::api::DEFAULT_ACCOUNT_NAME, endpoint, outcome, elapsed);
    }
}

/// The calls of one CloudPhoneAccount's client, counted under its name.
pub struct AccountCalls {
    pub metrics: std::sync::Arc<Metrics>,
    pub account: String,
}

impl CallObserver for AccountCalls {
    fn observe(&self, endpoint: Endpoint, outcome: &'static str, elapsed: Duration) {
        self.metrics
            .observe_call(&self.account, endpoint, outcome, elapsed);
    }
}

impl Metrics {
    fn observe_call(
        &self,
        account: &str,
        endpoint: Endpoint,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.vendor_calls
            .get_or_create(&CallLabels {
                endpoint: endpoint.as_str(),
                code: outcome,
                account: account.to_owned(),
            })
            .inc();
        self.vendor_latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn fleet(namespace: &str) -> Fleet {
        Fleet {
            phones: vec![(
                PhoneLabels {
                    namespace: namespace.to_owned(),
                    phase: "Idle",
                    lifecycle: "BackedUp",
                    effective_lifecycle: "BackedUp",
                },
                3,
            )],
            ..Fleet::default()
        }
    }

    #[test]
    fn instance_time_held_is_the_loaded_phones_times_the_interval() {
        let metrics = Metrics::new();
        let fleet = |phase: &'static str, n| Fleet {
            phones: vec![(
                PhoneLabels {
                    namespace: "a".into(),
                    phase,
                    lifecycle: "BackedUp",
                    effective_lifecycle: "Loaded",
                },
                n,
            )],
            ..Fleet::default()
        };
        metrics.set_fleet(fleet("DataLoaded", 4));
        std::thread::sleep(Duration::from_millis(50));
        metrics.set_fleet(fleet("Streaming", 4));
        std::thread::sleep(Duration::from_millis(50));
        metrics.set_fleet(fleet("Idle", 4));
        let text = metrics.encode();
        let held: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("cloudphone_instance_seconds_total{namespace=\"a\"} "))
            .expect("the series")
            .parse()
            .unwrap();
        // The phones a tick sees holding an instance count for the interval before it: 4
        // streaming for at least 50 ms; the first tick counts no interval, the parked ones nothing.
        assert!((0.2..2.0).contains(&held), "{held}");
    }

    #[test]
    fn the_action_outcomes_the_alerts_divide_exist_at_zero_before_the_first_call() {
        // NB: rate() needs two samples of a series: one that appears with its first increment
        // hides that increment, and an alert on a fleet's first failed prepares stays silent.
        let text = Metrics::new().encode();
        for family in ["cloudphone_backups_total", "cloudphone_prepares_total"] {
            for outcome in ["accepted", "failed", "refused", "completed"] {
                let series = format!("{family}{{outcome=\"{outcome}\"}} 0");
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
    }

    #[test]
    fn a_scrape_during_a_fleet_update_always_sees_the_phones_that_stay() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_fleet(fleet("a"));
        let done = Arc::new(AtomicBool::new(false));
        let scraping = Arc::new(AtomicBool::new(false));
        let scraper = {
            let (metrics, done, scraping) = (metrics.clone(), done.clone(), scraping.clone());
            std::thread::spawn(move || {
                scraping.store(true, Ordering::Relaxed);
                let mut scrapes = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let text = metrics.encode();
                    assert!(
                        text.contains("cloudphone_phones{namespace=\"a\""),
                        "a scrape saw no series of a fleet that did not change:\n{text}"
                    );
                    scrapes += 1;
                }
                scrapes
            })
        };
        // NB: the scraper thread must be running for the window to be hit.
        while !scraping.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        for _ in 0..200_000 {
            metrics.set_fleet(fleet("a"));
        }
        done.store(true, Ordering::Relaxed);
        let scrapes = scraper.join().expect("every scrape saw the series");
        assert!(scrapes > 0);

        // A namespace whose phones are gone loses its series.
        metrics.set_fleet(fleet("b"));
        let text = metrics.encode();
        assert!(!text.contains("namespace=\"a\""), "{text}");
        assert!(text.contains("namespace=\"b\""), "{text}");
        metrics.clear_fleet();
        assert!(!metrics.encode().contains("cloudphone_phones{"));
    }
}
