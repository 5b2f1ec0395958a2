//! The tick: snapshot, deduplicate, query status in batches, plan, back up in batches, write only
//! the statuses that changed. One tick at a time, on an interval or triggered early.

use super::store::{PhoneStore, WriteError};
use super::vendor::Batcher;
use crate::api::{CloudPhone, CloudPhoneStatus};
use crate::koophone::Client;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::plan::{self, BackupResult, Disposition, PhoneKey, PhoneView, PlanConfig};
use futures::FutureExt;
use futures::{StreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// Tunables of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub plan: PlanConfig,
    /// Vendor calls of one kind in flight at once.
    pub vendor_calls_in_flight: usize,
    /// Status writes in flight at once.
    pub writes_in_flight: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            plan: PlanConfig::default(),
            // Eight 100-id calls at once: a 10,000-phone tick is 13 rounds of calls.
            vendor_calls_in_flight: 8,
            // Sixteen writes at once stay well inside the client-side rate limits of an API server.
            writes_in_flight: 16,
        }
    }
}

/// What one tick did, for its log line, the metrics and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Phones in the snapshot.
    pub phones: usize,
    /// Distinct instance ids queried.
    pub queried: usize,
    /// Status calls sent (splits included, retries inside the client not).
    pub status_calls: u64,
    /// Backup calls sent.
    pub backup_calls: u64,
    /// Phones whose backup the vendor accepted.
    pub backups_requested: usize,
    /// Status writes that succeeded.
    pub statuses_written: usize,
    /// Phones whose status query failed.
    pub query_errors: usize,
    /// Phones whose backup call failed (not counting the vendor's "already backing up").
    pub backup_errors: usize,
    /// Status writes that failed (deleted objects not counted).
    pub write_errors: usize,
    /// Wall time of the tick.
    pub duration: Duration,
    /// Why the tick made no vendor call at all (unusable credentials), if so.
    pub skipped: Option<String>,
}

/// A handle that asks the engine for an early tick. A request during a tick causes exactly one
/// more tick; several requests before a tick starts cause one.
#[derive(Clone, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    pub fn fire(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next fire (or at once for a fire not yet consumed). The engine consumes
    /// fires itself: use this only on a trigger that no engine runs on.
    pub async fn fired(&self) {
        self.0.notified().await;
    }
}

/// The tick engine over a [`PhoneStore`] and the vendor client.
pub struct Engine<S> {
    store: Arc<S>,
    client: Client,
    config: EngineConfig,
    trigger: Trigger,
    /// Statuses this engine wrote that the store may not show yet (a watch cache lags its
    /// writes), keyed by object and uid; dropped once the store shows them.
    written: Mutex<HashMap<WrittenKey, Arc<CloudPhoneStatus>>>,
    metrics: Option<Arc<Metrics>>,
    /// When the last tick that reached the vendor ended.
    last_success: Mutex<Option<Instant>>,
}

/// Resolves once `leader` says false (or its sender is gone).
async fn lost(leader: &mut watch::Receiver<bool>) {
    loop {
        if !*leader.borrow_and_update() {
            return;
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

/// A phone's status at the start of a tick: as the store shows it, or as this engine last wrote it
/// when the store does not show that yet. Borrowed, so that a tick copies no unchanged status.
enum Effective<'a> {
    Stored(Option<&'a CloudPhoneStatus>),
    Written(Arc<CloudPhoneStatus>),
}

impl Effective<'_> {
    fn get(&self) -> Option<&CloudPhoneStatus> {
        match self {
            Effective::Stored(status) => *status,
            Effective::Written(status) => Some(status),
        }
    }
}

/// A phone and its uid: the uid distinguishes an object from a deleted one of the same name.
type WrittenKey = (PhoneKey, Option<String>);

fn written_key(phone: &CloudPhone) -> WrittenKey {
    (PhoneKey::of(phone), phone.metadata.uid.clone())
}

impl<S: PhoneStore> Engine<S> {
    pub fn new(store: Arc<S>, client: Client, config: EngineConfig) -> Engine<S> {
        Engine {
            store,
            client,
            config,
            trigger: Trigger::default(),
            written: Mutex::new(HashMap::new()),
            metrics: None,
            last_success: Mutex::new(None),
        }
    }

    /// Records tick, phase and write metrics into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Engine<S> {
        self.metrics = Some(metrics);
        self
    }

    /// When the last tick that reached the vendor ended (every phone's query failing is a failed
    /// tick; a tick with no phone to query succeeds).
    pub fn last_success(&self) -> Option<Instant> {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle that requests an early tick.
    pub fn trigger(&self) -> Trigger {
        self.trigger.clone()
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Ticks every `interval` and on each trigger, until `shutdown` resolves. A tick in flight when
    /// `shutdown` resolves is given `shutdown_grace` to finish, then cut.
    pub async fn run(
        &self,
        interval: Duration,
        shutdown_grace: Duration,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let (_always, leader) = watch::channel(true);
        self.run_as_leader(interval, leader, shutdown_grace, shutdown)
            .await;
    }

    /// Like [`Engine::run`], but ticks only while `leader` is true. Gaining leadership ticks at once;
    /// losing it cuts the tick in flight, so that no vendor call starts after the loss.
    ///
    /// NB: cutting a tick is safe at any point: a backup's intent is written before its call, and a
    /// call already sent is found out from the next status query.
    pub async fn run_as_leader(
        &self,
        interval: Duration,
        mut leader: watch::Receiver<bool>,
        shutdown_grace: Duration,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let shutdown = shutdown.boxed().shared();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'outer: loop {
            // Wait for leadership.
            while !*leader.borrow_and_update() {
                tokio::select! {
                    _ = shutdown.clone() => break 'outer,
                    changed = leader.changed() => if changed.is_err() { break 'outer },
                }
            }
            info!(
                "leading: ticking every {}",
                humantime::format_duration(interval)
            );
            ticker.reset_immediately();
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.clone() => break 'outer,
                    changed = leader.changed() => {
                        if changed.is_err() || !*leader.borrow_and_update() {
                            break;
                        }
                        continue;
                    }
                    _ = self.trigger.0.notified() => ticker.reset(),
                    _ = ticker.tick() => {}
                }
                let tick = self.tick();
                tokio::pin!(tick);
                tokio::select! {
                    _ = &mut tick => {}
                    _ = lost(&mut leader) => {
                        warn!("leadership lost during a tick: the tick was cut");
                        break;
                    }
                    _ = shutdown.clone() => {
                        match tokio::time::timeout(shutdown_grace, &mut tick).await {
                            Ok(_) => info!("shutting down: the tick in flight finished"),
                            Err(_) => warn!("shutting down: the tick in flight was cut after {}", humantime::format_duration(shutdown_grace)),
                        }
                        break 'outer;
                    }
                }
            }
            info!("not leading: ticks stop");
        }
    }

    /// One tick over every phone of the store.
    pub async fn tick(&self) -> TickReport {
        let started = Instant::now();
        let now = Timestamp::now();
        let snapshot = self.store.snapshot();
        let credentials = self.client.auth_status();
        if let Some(m) = &self.metrics {
            m.credentials_usable.set(i64::from(credentials.is_ok()));
        }
        if let Err(why) = credentials {
            warn!(phones = snapshot.len(), reason = %why, "tick skipped: no vendor call without usable credentials");
            return TickReport {
                phones: snapshot.len(),
                duration: started.elapsed(),
                skipped: Some(why),
                ..TickReport::default()
            };
        }
        let statuses = self.effective_statuses(&snapshot);
        let views: Vec<PhoneView> = snapshot
            .iter()
            .zip(&statuses)
            .map(|(phone, status)| PhoneView {
                status: status.get(),
                ..PhoneView::of(phone)
            })
            .collect();
        let dispositions = plan::dispositions(&views);
        let ids = plan::instances_to_query(&views, &dispositions);

        let batcher = Batcher::new(&self.client, self.config.vendor_calls_in_flight);
        let observations = batcher.query(&ids).await;
        let query_errors = views
            .iter()
            .zip(&dispositions)
            .filter(|(v, d)| {
                **d == Disposition::Query
                    && matches!(
                        observations.get(&v.spec.instance_id),
                        Some(plan::Observation::Failed(_))
                    )
            })
            .count();
        let planned = plan::plan(
            &views,
            &dispositions,
            |id| observations.get(id).cloned(),
            now,
            &self.config.plan,
        );

        let mut report = TickReport {
            phones: snapshot.len(),
            queried: ids.len(),
            query_errors,
            ..TickReport::default()
        };
        let wants_backup: Vec<bool> = planned.iter().map(|p| p.backup).collect();
        let mut final_statuses: Vec<CloudPhoneStatus> =
            planned.into_iter().map(|p| p.status).collect();
        drop(views);
        self.back_up(
            &snapshot,
            &statuses,
            &wants_backup,
            &mut final_statuses,
            &batcher,
            now,
            &mut report,
        )
        .await;

        let changed: Vec<usize> = (0..snapshot.len())
            .filter(|&i| statuses[i].get() != Some(&final_statuses[i]))
            .collect();
        let (written, errors) = self.write(&snapshot, &final_statuses, &changed).await;
        report.statuses_written += written;
        report.write_errors += errors;
        self.publish_events(&snapshot, &statuses, &final_statuses, &changed)
            .await;
        report.status_calls = batcher.status_calls.load(Ordering::Relaxed);
        report.backup_calls = batcher.backup_calls.load(Ordering::Relaxed);
        report.duration = started.elapsed();
        self.forget_gone(&snapshot);
        let query_phones = dispositions
            .iter()
            .filter(|d| **d == Disposition::Query)
            .count();
        if query_phones == 0 || report.query_errors < query_phones {
            *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            if let Some(m) = &self.metrics {
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                m.last_successful_tick.set(unix);
            }
        }
        if let Some(m) = &self.metrics {
            m.tick_duration.observe(report.duration.as_secs_f64());
            m.backups_requested.inc_by(report.backups_requested as u64);
            let mut phases: HashMap<crate::api::Phase, i64> = HashMap::new();
            for status in &final_statuses {
                *phases.entry(status.phase).or_default() += 1;
            }
            m.set_phases(phases);
        }
        info!(
            phones = report.phones,
            queried = report.queried,
            status_calls = report.status_calls,
            backup_calls = report.backup_calls,
            backups_requested = report.backups_requested,
            statuses_written = report.statuses_written,
            errors = report.query_errors + report.backup_errors + report.write_errors,
            duration_ms = report.duration.as_millis() as u64,
            "tick"
        );
        report
    }

    /// Each phone's status as this engine last wrote it, or as the store shows it when the store
    /// has caught up (or the engine never wrote it).
    fn effective_statuses<'a>(&self, snapshot: &'a [Arc<CloudPhone>]) -> Vec<Effective<'a>> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        snapshot
            .iter()
            .map(|phone| {
                if written.is_empty() {
                    return Effective::Stored(phone.status.as_ref());
                }
                let key = written_key(phone);
                match written.get(&key) {
                    Some(status) if phone.status.as_ref() == Some(&**status) => {
                        written.remove(&key);
                        Effective::Stored(phone.status.as_ref())
                    }
                    Some(status) => Effective::Written(status.clone()),
                    None => Effective::Stored(phone.status.as_ref()),
                }
            })
            .collect()
    }

    fn forget_gone(&self, snapshot: &[Arc<CloudPhone>]) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.is_empty() {
            return;
        }
        let present: std::collections::HashSet<_> =
            snapshot.iter().map(|p| written_key(p)).collect();
        written.retain(|key, _| present.contains(key));
    }

    /// Writes the planned status of each phone to back up first, so that a crash after the call
    /// cannot lead to a second one; then calls backup for those written, and records the outcome.
    #[allow(clippy::too_many_arguments)]
    async fn back_up(
        &self,
        snapshot: &[Arc<CloudPhone>],
        old: &[Effective<'_>],
        wants_backup: &[bool],
        final_statuses: &mut [CloudPhoneStatus],
        batcher: &Batcher<'_>,
        now: Timestamp,
        report: &mut TickReport,
    ) {
        let wanted: Vec<usize> = (0..wants_backup.len())
            .filter(|&i| wants_backup[i])
            .collect();
        if wanted.is_empty() {
            return;
        }
        let (written, errors) = self.write(snapshot, final_statuses, &wanted).await;
        report.statuses_written += written;
        report.write_errors += errors;
        let mut recorded = Vec::new();
        for &i in &wanted {
            if self.is_written(&snapshot[i], &final_statuses[i]) {
                recorded.push(i);
            } else {
                // The call is not sent: the phone keeps its old status and is planned again next tick.
                final_statuses[i] = old[i].get().cloned().unwrap_or_default();
            }
        }
        let ids: Vec<String> = recorded
            .iter()
            .map(|&i| snapshot[i].spec.instance_id.clone())
            .collect();
        let results = batcher.backup(&ids).await;
        for &i in &recorded {
            let phone = &snapshot[i];
            let result = results
                .get(&phone.spec.instance_id)
                .cloned()
                .unwrap_or(BackupResult::NotSent);
            match &result {
                BackupResult::Accepted { request_id, .. } => {
                    report.backups_requested += 1;
                    info!(phone = %PhoneKey::of(phone), instance = %phone.spec.instance_id, request_id, "backup requested");
                }
                BackupResult::AlreadyBackingUp | BackupResult::Restoring => {
                    debug!(phone = %PhoneKey::of(phone), ?result, "backup not started: the vendor is busy with the instance");
                }
                other => {
                    report.backup_errors += 1;
                    warn!(phone = %PhoneKey::of(phone), instance = %phone.spec.instance_id, result = ?other, "backup call failed");
                }
            }
            final_statuses[i] = plan::record_backup_result(
                &final_statuses[i],
                phone.metadata.generation,
                &result,
                now,
                &self.config.plan,
            );
        }
    }

    /// Publishes the events of each changed phone whose new status is written: a write that failed
    /// is retried next tick, and its events with it, so that none is published twice.
    async fn publish_events(
        &self,
        snapshot: &[Arc<CloudPhone>],
        old: &[Effective<'_>],
        new: &[CloudPhoneStatus],
        changed: &[usize],
    ) {
        let mut pending = Vec::new();
        for &i in changed {
            if !self.is_written(&snapshot[i], &new[i]) {
                continue;
            }
            for event in plan::events(&snapshot[i].spec, old[i].get(), &new[i]) {
                pending.push((i, event));
            }
        }
        stream::iter(pending)
            .for_each_concurrent(
                self.config.writes_in_flight.max(1),
                |(i, event)| async move {
                    self.store.publish(&snapshot[i], &event).await;
                },
            )
            .await;
    }

    async fn write_one(
        &self,
        phone: &CloudPhone,
        status: &CloudPhoneStatus,
        index: usize,
    ) -> (usize, Result<(), WriteError>) {
        (index, self.store.write_status(phone, status).await)
    }

    /// True when this engine wrote exactly `status` for `phone` and the store may not show it yet.
    fn is_written(&self, phone: &CloudPhone, status: &CloudPhoneStatus) -> bool {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&written_key(phone))
            .is_some_and(|written| **written == *status)
    }

    /// Writes the statuses of the phones at `indices` (skipping those already written this way),
    /// under the cap on writes in flight. Returns (written, failed); a deleted phone is neither.
    async fn write(
        &self,
        snapshot: &[Arc<CloudPhone>],
        statuses: &[CloudPhoneStatus],
        indices: &[usize],
    ) -> (usize, usize) {
        let todo: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| !self.is_written(&snapshot[i], &statuses[i]))
            .collect();
        let results: Vec<(usize, Result<(), WriteError>)> = stream::iter(todo)
            .map(|i| self.write_one(&snapshot[i], &statuses[i], i))
            .buffer_unordered(self.config.writes_in_flight.max(1))
            .collect()
            .await;
        let mut written = 0;
        let mut failed = 0;
        let mut cache = self.written.lock().unwrap_or_else(|p| p.into_inner());
        for (i, result) in results {
            if let Some(m) = &self.metrics {
                let outcome = result.as_ref().map_or_else(WriteError::label, |_| "ok");
                m.status_writes
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc();
            }
            match result {
                Ok(()) => {
                    written += 1;
                    cache.insert(written_key(&snapshot[i]), Arc::new(statuses[i].clone()));
                }
                Err(WriteError::Gone(key)) => {
                    debug!(phone = %key, "phone deleted before its status was written")
                }
                Err(err) => {
                    failed += 1;
                    warn!(error = %err, "status write failed; retried next tick");
                }
            }
        }
        (written, failed)
    }
}
