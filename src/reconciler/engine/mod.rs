//! The tick: snapshot, deduplicate, query status in batches, plan, back up in batches, write only
//! the statuses that changed. One tick at a time, on an interval or triggered early.
//!
//! - `steps`: the tick's steps, each with its contract (the tick itself, below, lists them);
//! - `leading`: the leader-gated loop; `trigger`: the early ticks asked for;
//! - `term`: the memory across ticks (terms, the intents record, writes the cache lags);
//! - `act`: the vendor actions, one path for every action; `pending`: an account's planned actions
//!   gathered across its chunks into full calls; `writes`: status writes and events;
//! - `report`: account reports, fleet gauges and the tick's metrics; `schedules`: the
//!   CloudPhoneSchedules' statuses after a whole tick.

use super::accounts::{AccountsFeed, Binding, Tenants, TickAccounts, resolve_projects};
use super::batcher::{ActionCall, Batcher};
use super::breaker::{BreakerConfig, Breakers};
use super::fence::LeaseFence;
use super::intents_record::{IntentsRecord, MemoryIntentsRecord, RecordError};
use super::schedules::{Anchors, ScheduleSource, TickSchedules};
use super::store::{ObjectId, PhoneStore, WriteError, object_id};
use super::synced::{FailureMemory, SyncedAfter};
use super::tick::{Frame, Group, Outcome, Sent, TickReport, Written};
use crate::api::CloudPhone;
use crate::koophone::{Client, MAX_IDS_PER_CALL};
use crate::metrics::{AccountLabels, Metrics};
use crate::plan::{
    self, AccountTick, Disposition, Intents, PhoneKey, PhoneView, PlanConfig, Route,
};
use futures::FutureExt;
use futures::{StreamExt, stream};
use jiff::Timestamp;
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{Instrument, debug, info, warn};

mod act;
mod leading;
mod pending;
mod report;
mod schedules;
mod steps;
mod term;
mod trigger;
mod writes;

use pending::Pending;
use report::{fleet_gauges, phases_after};
use steps::{account_chunks, account_views, bind, link_schedules, log_tick};
use term::Recall;
use trigger::Asked;
pub use trigger::Trigger;

/// Tunables of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub plan: PlanConfig,
    /// Vendor calls of one kind in flight at once.
    pub vendor_calls_in_flight: usize,
    /// Status writes in flight at once.
    pub writes_in_flight: usize,
    /// When a configuration or credential error has stopped an account's calls, how often a
    /// probe call tries again.
    pub breaker: BreakerConfig,
    /// How long a status query failure must persist before a phone's `Synced` turns False.
    pub synced_after: SyncedAfter,
    /// Events published in one tick at most; the rest are counted and summarised in one event.
    pub max_events_per_tick: usize,
    /// A tick still running after this long is cut: what it finished stays, the rest goes first
    /// next tick.
    pub tick_deadline: Duration,
    /// The least time between the start of a tick and an early tick after it.
    pub min_tick_spacing: Duration,
    /// How long after the engine starts the phones that wait for the account watches to sync
    /// (those naming a CloudPhoneAccount) wait untouched; then they are told `AccountNotReady`.
    pub account_feed_patience: Duration,
    /// The interval of whole ticks: how many a schedule's wave spans, for its projected pace.
    pub tick_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            plan: PlanConfig::default(),
            // Eight 100-id calls at once: a 10,000-phone tick is 13 rounds of calls.
            vendor_calls_in_flight: 8,
            // Sixteen writes at once stay well inside the client-side rate limits of an API server.
            writes_in_flight: 16,
            breaker: BreakerConfig::default(),
            synced_after: SyncedAfter::default(),
            // A wave of 10,000 transitions would otherwise cost 10,000 API calls in one tick (and
            // kube's recorder scans its cache on each): 100 keep a tick short and say enough.
            max_events_per_tick: 100,
            // Three default intervals: a slow vendor may stretch a tick, never stall the loop.
            tick_deadline: Duration::from_secs(90),
            // A reconcile request in a loop costs one early tick (of its own phones) per 10 s.
            min_tick_spacing: Duration::from_secs(10),
            account_feed_patience: ACCOUNT_FEED_PATIENCE,
            tick_interval: Duration::from_secs(30),
        }
    }
}

/// The tick engine over a [`PhoneStore`] and the vendor client.
pub struct Engine<S> {
    store: Arc<S>,
    client: Client,
    config: EngineConfig,
    trigger: Trigger,
    /// What the engine remembers across ticks.
    memory: Mutex<Recall>,
    /// The circuit breaker of each vendor account.
    breakers: Breakers,
    /// The freshness of this replica's leadership; `None` when it always leads.
    fence: Option<LeaseFence>,
    /// The leadership term the record of writes belongs to.
    term: AtomicU64,
    /// Ticks started, for the tick span.
    ticks: AtomicU64,
    /// Where terms record until when their intents may be outstanding (the Lease under `run`).
    intents_record: Arc<dyn IntentsRecord>,
    /// One extension of the record at a time: the chunks of a tick back up concurrently.
    record_writes: tokio::sync::Mutex<()>,
    /// Where the next tick's chunk order starts, in instance ids (taken modulo their number).
    rotation: AtomicUsize,
    /// The cap on status writes in flight, shared by every group of a tick.
    write_slots: Semaphore,
    metrics: Option<Arc<Metrics>>,
    /// The CloudPhoneAccounts; `None`: none exist (phones naming one are told so).
    accounts: Option<AccountsFeed>,
    /// The CloudPhoneSchedules; `None`: none exist (phones naming one are told so).
    schedules: Option<Arc<dyn ScheduleSource>>,
    /// The anchor of each schedule's wave as this process computed it (see [`TickSchedules::read`]).
    anchors: Mutex<Anchors>,
    /// The namespaces whose phones without `spec.accountRef` may use the operator's own
    /// credentials; `None`: every watched namespace.
    own_tenants: Option<Tenants>,
    /// The vendor users the own account's phones may be readied for; `None`: any.
    own_allowed_users: Option<std::collections::BTreeSet<String>>,
    /// Whether the warning about an own account open to every namespace was logged.
    warned_open_own_account: std::sync::atomic::AtomicBool,
    /// What the last tick found of each CloudPhoneAccount, for their statuses.
    account_reports: watch::Sender<Arc<Vec<AccountTick>>>,
    /// When the last tick that reached the vendor ended.
    last_success: Mutex<Option<Instant>>,
    /// The accounts whose breaker series the metrics show, to remove those that are gone.
    breaker_series: Mutex<foldhash::HashSet<String>>,
    /// When the engine started: the account watches' patience counts from it.
    started: tokio::time::Instant,
}

impl<S: PhoneStore> Engine<S> {
    pub fn new(store: Arc<S>, client: Client, config: EngineConfig) -> Engine<S> {
        let breakers = Breakers::new(config.breaker.clone());
        let write_slots = Semaphore::new(config.writes_in_flight.max(1));
        Engine {
            store,
            client,
            config,
            trigger: Trigger::default(),
            memory: Mutex::default(),
            breakers,
            fence: None,
            term: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            intents_record: Arc::new(MemoryIntentsRecord::default()),
            record_writes: tokio::sync::Mutex::new(()),
            rotation: AtomicUsize::new(0),
            write_slots,
            metrics: None,
            accounts: None,
            schedules: None,
            anchors: Mutex::default(),
            own_tenants: None,
            own_allowed_users: None,
            warned_open_own_account: std::sync::atomic::AtomicBool::new(false),
            account_reports: watch::Sender::new(Arc::default()),
            last_success: Mutex::new(None),
            breaker_series: Mutex::default(),
            started: tokio::time::Instant::now(),
        }
    }

    /// Records tick, phase and write metrics into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Engine<S> {
        self.metrics = Some(metrics);
        self
    }

    /// Calls the phones that name a CloudPhoneAccount under that account, as `accounts` shows them.
    pub fn with_accounts(mut self, accounts: AccountsFeed) -> Engine<S> {
        self.accounts = Some(accounts);
        self
    }

    /// Follows the CloudPhoneSchedules of `schedules` for the `Scheduled` phones, and writes their
    /// statuses after each whole tick.
    pub fn with_schedules(mut self, schedules: Arc<dyn ScheduleSource>) -> Engine<S> {
        self.schedules = Some(schedules);
        self
    }

    /// Only these vendor users may be named by the `Loaded` phones of the operator's own account
    /// (`--own-account-allowed-user-ids`); a phone naming another is `AccountNotAllowed`.
    pub fn with_own_allowed_users(
        mut self,
        users: std::collections::BTreeSet<String>,
    ) -> Engine<S> {
        self.own_allowed_users = Some(users);
        self
    }

    /// Serves phones without `spec.accountRef` with the operator's own credentials only in the
    /// namespaces `tenants` admits (the others are `AccountNotAllowed`).
    pub fn with_own_tenants(mut self, tenants: Tenants) -> Engine<S> {
        self.own_tenants = Some(tenants);
        self
    }

    /// What each tick found of each CloudPhoneAccount, as it ends.
    pub fn account_reports(&self) -> watch::Receiver<Arc<Vec<AccountTick>>> {
        self.account_reports.subscribe()
    }

    /// Checks `fence` before every backup call, and starts a new record of writes with each
    /// leadership term it reports.
    pub fn with_fence(mut self, fence: LeaseFence) -> Engine<S> {
        self.fence = Some(fence);
        self
    }

    /// Keeps this engine's terms' intents record in `record` (read at the start of each term,
    /// extended before backup calls); without it the record lives in this engine's memory, and a
    /// new engine is a fresh install.
    pub fn with_intents_record(mut self, record: Arc<dyn IntentsRecord>) -> Engine<S> {
        self.intents_record = record;
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

    /// What the engine remembers across ticks (the lock is never held across an await).
    fn recall(&self) -> std::sync::MutexGuard<'_, Recall> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One tick over every phone of the store: observe, plan, back up, write, publish, report.
    ///
    /// The status query goes out in chunks of at most 100 ids, several at once, and each chunk's
    /// phones are planned, backed up and written as soon as its answer arrives, so that a tick cut
    /// by its deadline keeps what it finished. The chunk order rotates from tick to tick, so that
    /// a deadline never starves the same phones.
    pub async fn tick(&self) -> TickReport {
        self.tick_of(None).await
    }

    /// A tick of the phones whose uids are in `only` (an early tick asked for by their changes),
    /// or of every phone. A partial tick queries only its phones' ids, in their own accounts;
    /// ownership is still decided over every phone.
    async fn tick_of(&self, only: Option<foldhash::HashSet<ObjectId>>) -> TickReport {
        // One span a tick: every line of it, the vendor calls' included, carries its number.
        let n = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        // NB: `partial` (the phones of an early tick) only on a partial tick.
        let span = tracing::info_span!("tick", n, partial = tracing::field::Empty);
        if let Some(only) = &only {
            span.record("partial", only.len());
        }
        self.tick_inner(only.as_ref()).instrument(span).await
    }

    /// The tick, step by step.
    async fn tick_inner(&self, only: Option<&foldhash::HashSet<ObjectId>>) -> TickReport {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.tick_deadline;
        let term = self.check_term();
        self.read_earlier_terms().await;
        let snapshot = self.store.snapshot();
        let credentials = self.client.auth_status();
        if let Some(skipped) = self.skip_without_credentials(&snapshot, &credentials, started) {
            return skipped;
        }
        let set = self.account_set().await;
        let accounts = self.tick_accounts(set.as_deref());
        let bindings = bind(&accounts, &snapshot);
        let batchers = self.batchers(&accounts);
        let frame = self.frame(&snapshot, term);
        let schedules = TickSchedules::read(
            self.schedules.as_deref(),
            Timestamp::now(),
            self.config.plan.restore_estimate,
            &mut self.anchors.lock().unwrap_or_else(|p| p.into_inner()),
        );
        let mut views = account_views(&snapshot, &bindings, &accounts);
        link_schedules(&mut views, &snapshot, &schedules);
        let plan::Dispositions {
            each: dispositions,
            queried,
        } = plan::dispositions(&views);
        let asked = |i: usize| only.is_none_or(|o| o.contains(object_id(&snapshot[i]).as_ref()));
        let (queried, offset) = self.query_order(&views, queried, only.is_some(), &asked);
        let quiet: Vec<usize> = (0..views.len())
            .filter(|&i| dispositions[i] != Disposition::Query && asked(i))
            .collect();
        let chunks = account_chunks(&queried, &bindings, accounts.entries.len());
        let chunk_count = chunks.len();
        // NB: past half the tick's deadline, what waits leaves with each chunk: a tick cut before an
        // account's last chunk still makes the calls its planned phones wait for.
        let flush_after = tokio::time::Instant::now() + self.config.tick_deadline / 2;
        let pending = Pending::new(&chunks, accounts.entries.len(), flush_after);
        let mut groups = Vec::with_capacity(chunk_count + 1);
        let mut finished = 0;
        let work = async {
            if let Some(group) = self
                .settle_quiet(&frame, &views, &dispositions, &quiet)
                .await
            {
                groups.push(group);
            }
            let mut done = stream::iter(chunks)
                .map(|(ix, chunk)| {
                    let batcher = batchers[ix]
                        .as_ref()
                        .expect("phones bind only to accounts with a client");
                    // Every line of the chunk, its vendor calls' included, names the account.
                    let span = tracing::info_span!("account", account = batcher.account());
                    self.run_chunk(
                        &frame,
                        &views,
                        &dispositions,
                        (ix, chunk),
                        batcher,
                        &pending,
                    )
                    .instrument(span)
                })
                .buffer_unordered(self.config.vendor_calls_in_flight.max(1));
            while let Some(chunk_groups) = done.next().await {
                groups.extend(chunk_groups);
                finished += 1;
            }
        };
        let cut = tokio::time::timeout_at(deadline, work).await.is_err();
        self.report_breakers(&accounts);
        let mut report = self.tally(&snapshot, &groups, &batchers);
        self.advance_rotation(offset, cut, only.is_some(), finished);
        if cut {
            report.chunks_cut = chunk_count.saturating_sub(finished);
            warn!(
                deadline_s = self.config.tick_deadline.as_secs_f64(),
                chunks = chunk_count,
                finished,
                "tick deadline reached: the unfinished chunks are cut, and the next tick starts with them"
            );
        }
        let phases = phases_after(&frame, &groups);
        let mut fleet = fleet_gauges(&frame, &phases, Timestamp::now());
        if only.is_none() {
            fleet.wave_late = self
                .write_schedules(&schedules, &snapshot, &phases, (&accounts, &bindings))
                .await;
        }
        let durations: Vec<(plan::Action, f64)> = groups
            .iter()
            .flat_map(|g| g.durations.iter().copied())
            .collect();
        let moves: Vec<plan::Move> = groups
            .iter()
            .flat_map(|g| g.moves.iter().copied())
            .collect();
        let mut extra = self.invalid_requests(&snapshot);
        extra.extend(self.invalid_load_untils(&snapshot));
        let (failing_events, failing_writes) = self.failing_writes(&snapshot);
        extra.extend(failing_events);
        self.publish_events(&frame, groups, extra).await;
        report.accounts = self.account_ticks(&accounts, &bindings);
        self.publish_account_reports(&report);
        if let Err(why) = &credentials {
            report.skipped = Some(format!(
                "the phones without spec.accountRef: no vendor call without usable credentials: {why}"
            ));
        }
        report.duration = started.elapsed();
        self.forget_gone(&snapshot);
        // NB: only a whole tick tells that the vendor is reached: a tenant's early ticks of a few
        // phones must not keep the staleness alert quiet.
        if only.is_none() && (queried.is_empty() || report.query_errors < queried.len()) {
            self.record_success();
        }
        self.record_metrics(&report, fleet, (&durations, &moves), failing_writes);
        log_tick(&report);
        report
    }

    /// One status chunk of account `ix` (the phones at `chunk`, owners of their ids): its query,
    /// then its phones planned and written; those that want an action join the account's pending
    /// calls, and the calls now full (or the account's last) are made, each a group of its own.
    async fn run_chunk<'v>(
        &self,
        frame: &Frame<'_>,
        views: &[PhoneView<'v>],
        dispositions: &[Disposition],
        (ix, chunk): (usize, Vec<usize>),
        batcher: &Batcher<'_>,
        pending: &Pending<'v>,
    ) -> Vec<Group<'v>> {
        let ids: Vec<String> = chunk
            .iter()
            .map(|&i| views[i].spec.instance_id.clone())
            .collect();
        let queried = ids.len();
        let mut observations = batcher.query(ids).await;
        self.note_unobserved(frame, views, &chunk, &observations);
        let query_errors = observations
            .values()
            .filter(|o| matches!(o, plan::Observation::Failed(_)))
            .count();
        self.recall()
            .failures
            .debounce(batcher.scope, &mut observations, self.config.synced_after);
        let observe = |i: usize| observations.get(&views[i].spec.instance_id);
        let mut planned = self.plan_each(frame, views, dispositions, chunk, observe);
        // NB: the few that want an action are moved out; the rest stay where they are.
        let wanted: Vec<_> = planned
            .extract_if(.., |(_, p)| p.action.is_some())
            .collect();
        let due = pending.add(ix, views, wanted);
        let mut group = self.settle(frame, planned).await;
        group.report.queried = queried;
        group.report.query_errors = query_errors;
        let mut groups = vec![group];
        for (call, batch) in due {
            groups.push(self.settle_call(frame, call, batch, batcher).await);
        }
        groups
    }

    /// Writes every changed status of the planned phones (none wants an action).
    async fn settle<'v>(
        &self,
        frame: &Frame<'_>,
        planned: Vec<(usize, plan::Planned<'v>)>,
    ) -> Group<'v> {
        debug_assert!(planned.iter().all(|(_, p)| p.action.is_none()));
        let mut group = Group {
            phones: planned
                .into_iter()
                .map(|(i, p)| Outcome::new(i, p.status))
                .collect(),
            ..Group::default()
        };
        self.write_changed(frame, &mut group).await;
        group.seal(frame);
        group
    }

    /// One call of `call` for the planned phones of `batch` (at most 100 of one account), then the
    /// writes of their statuses.
    async fn settle_call<'v>(
        &self,
        frame: &Frame<'_>,
        call: ActionCall<'_>,
        batch: pending::Batch<'v>,
        batcher: &Batcher<'_>,
    ) -> Group<'v> {
        let mut asks = Vec::with_capacity(batch.len());
        let mut group = Group {
            phones: batch
                .into_iter()
                .map(|(i, p)| {
                    asks.push(p.ask_progress);
                    Outcome::new(i, p.status)
                })
                .collect(),
            ..Group::default()
        };
        let every: Vec<usize> = (0..group.phones.len()).collect();
        self.act(call, frame, &mut group, &every, &asks, batcher)
            .await;
        self.write_changed(frame, &mut group).await;
        group.seal(frame);
        group
    }
}

/// How long the account watches may take to sync before the phones waiting for them are told why.
/// A healthy sync lists the accounts, Secrets and namespaces in seconds, and a watch that fails
/// retries with a backoff of up to a minute: two minutes are past a slow API server's start, yet a
/// missing CRD (a `helm upgrade` skips `crds/`) or a missing Role is told on the phones within a few
/// ticks, rather than leaving them silent for good.
pub const ACCOUNT_FEED_PATIENCE: Duration = Duration::from_secs(120);

/// How long a tick waits for IAM to tell an account's project: its phones wait meanwhile.
const PROJECT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after its intent was sent a backup call may still leave. A few seconds: long enough
/// for a chunk's intent writes and a call slot, short enough that a replica frozen in between
/// finds its call stale when it thaws (the renew deadline stops it sooner when it leads).
pub const INTENT_MAX_AGE: Duration = Duration::from_secs(5);
