//! Never a second backup or prepare, in any ordering: a model of two replicas over one API server.
//!
//! The API server answers a status write fenced by a stale resourceVersion with 409 and gives every
//! change a new version; each replica sees it through its own watch cache, which lags by a varying
//! amount and never goes back. Leadership moves back and forth at random points, and a leader may
//! freeze right after the API server accepted one of its writes (between a backup's intent and its
//! call, a long GC pause or a partitioned node), to thaw after someone else took over. The vendor
//! keeps each accepted backup queued for a while, still showing DataLoaded, before it shows
//! BackingUp; users restore backed-up phones at random.
//!
//! Over many seeds, no instance may get a backup call while a backup of it is queued or running
//! (the guarantee's stated limit: the vendor's queue is shorter than the grace period), and every
//! phone ends backed up (nothing lost).

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, Phase};
use cloudphone_operator::koophone::{Client, ClientConfig, Token};
use cloudphone_operator::plan::{PhoneEvent, PhoneKey, PlanConfig};
use cloudphone_operator::reconciler::{
    Engine, EngineConfig, MemoryIntentsRecord, PhoneStore, WriteError,
};
use cloudphone_operator::run::leader::LeaseFence;
use cloudphone_operator::sim::{SimConfig, Simulator, Timings, code};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

const PHONES: usize = 12;

/// The action under test: backups of BackedUp phones, or prepares of Loaded ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Backup,
    Prepare,
}

impl Act {
    /// The vendor's status the action starts from, and the one it ends in.
    fn codes(self) -> (i64, i64) {
        match self {
            Act::Backup => (code::DATA_LOADED, code::IDLE),
            Act::Prepare => (code::IDLE, code::DATA_LOADED),
        }
    }
    fn done(self) -> Phase {
        match self {
            Act::Backup => Phase::Idle,
            Act::Prepare => Phase::DataLoaded,
        }
    }
    /// Calls naming an instance while its action was queued or running: second calls.
    fn second_calls(self, instance: &cloudphone_operator::sim::Instance) -> u64 {
        match self {
            Act::Backup => instance.requests_while_busy,
            Act::Prepare => instance.prepare_requests_while_busy,
        }
    }
    fn calls(self, report: &cloudphone_operator::reconciler::TickReport) -> u64 {
        match self {
            Act::Backup => report.backup_calls,
            Act::Prepare => report.prepare_calls,
        }
    }
    fn requested(self, report: &cloudphone_operator::reconciler::TickReport) -> usize {
        match self {
            Act::Backup => report.backups_requested,
            Act::Prepare => report.prepares_requested,
        }
    }
}
const SEEDS: u64 = 12;
/// Renewals keep a leader fresh for this long (the renew deadline).
const RENEW_DEADLINE: Duration = Duration::from_millis(200);

/// The API server: every version of every object, in order, each with the time it was made.
#[derive(Default)]
struct Server {
    state: Mutex<ServerState>,
}

#[derive(Default)]
struct ServerState {
    last_version: u64,
    history: BTreeMap<PhoneKey, Vec<(Instant, Arc<CloudPhone>)>>,
}

impl Server {
    fn create(&self, mut phone: CloudPhone) {
        let mut state = self.state.lock().unwrap();
        state.last_version += 1;
        phone.metadata.resource_version = Some(state.last_version.to_string());
        state.history.insert(
            PhoneKey::of(&phone),
            vec![(Instant::now(), Arc::new(phone))],
        );
    }

    /// A status write, refused unless the object is still at `fence`.
    fn write(
        &self,
        key: &PhoneKey,
        fence: Option<&str>,
        status: &CloudPhoneStatus,
    ) -> Result<Option<String>, WriteError> {
        let mut state = self.state.lock().unwrap();
        state.last_version += 1;
        let version = state.last_version.to_string();
        let history = state.history.get_mut(key).expect("the model never deletes");
        let (_, current) = history.last().expect("an object has a version");
        // NB: like the API server, a write without a resourceVersion is unconditional.
        if fence.is_some_and(|f| Some(f) != current.metadata.resource_version.as_deref()) {
            return Err(WriteError::Conflict(key.clone()));
        }
        let mut next = (**current).clone();
        next.status = Some(status.clone());
        next.metadata.resource_version = Some(version.clone());
        history.push((Instant::now(), Arc::new(next)));
        Ok(Some(version))
    }

    fn latest(&self) -> Vec<Arc<CloudPhone>> {
        let state = self.state.lock().unwrap();
        state
            .history
            .values()
            .map(|h| h.last().unwrap().1.clone())
            .collect()
    }
}

/// One replica's view: a watch cache that shows each object as it was `lag` ago (never older than
/// what it showed before), and a process that can freeze right after a write is accepted.
struct Replica {
    server: Arc<Server>,
    lag: Mutex<Duration>,
    shown: Mutex<HashMap<PhoneKey, usize>>,
    freeze_next_write: AtomicBool,
    frozen: AtomicBool,
    thaw: Notify,
}

impl Replica {
    fn new(server: Arc<Server>) -> Replica {
        Replica {
            server,
            lag: Mutex::new(Duration::ZERO),
            shown: Mutex::default(),
            freeze_next_write: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            thaw: Notify::new(),
        }
    }

    fn thaw(&self) {
        if self.frozen.swap(false, Ordering::SeqCst) {
            self.thaw.notify_one();
        }
    }
}

impl PhoneStore for Replica {
    fn snapshot(&self) -> Vec<Arc<CloudPhone>> {
        let horizon = Instant::now()
            .checked_sub(*self.lag.lock().unwrap())
            .unwrap_or_else(Instant::now);
        let state = self.server.state.lock().unwrap();
        let mut shown = self.shown.lock().unwrap();
        state
            .history
            .iter()
            .map(|(key, history)| {
                let visible = history
                    .iter()
                    .rposition(|(at, _)| *at <= horizon)
                    .unwrap_or(0);
                let index = shown.entry(key.clone()).or_insert(0);
                *index = (*index).max(visible);
                history[*index].1.clone()
            })
            .collect()
    }

    async fn write_status(
        &self,
        phone: &CloudPhone,
        fence: Option<&str>,
        status: &CloudPhoneStatus,
    ) -> Result<Option<String>, WriteError> {
        let result = self.server.write(&PhoneKey::of(phone), fence, status);
        if result.is_ok() && self.freeze_next_write.swap(false, Ordering::SeqCst) {
            self.frozen.store(true, Ordering::SeqCst);
            self.thaw.notified().await;
        }
        result
    }

    async fn publish(&self, _phone: &CloudPhone, _event: &PhoneEvent) {}
}

struct World {
    sim: Simulator,
    server: Arc<Server>,
    replicas: [Arc<Replica>; 2],
    fences: [LeaseFence; 2],
    engines: [Arc<Engine<Replica>>; 2],
    leader: Arc<AtomicUsize>,
}

async fn world(seed: u64, act: Act) -> World {
    let instance = |i: usize| format!("s{seed}-kp{i:02}");
    let instances = (0..PHONES).map(|i| (instance(i), act.codes().0)).collect();
    let sim = Simulator::start(
        SimConfig {
            instances,
            timings: Timings {
                backup_queue_delay: Duration::from_millis(300),
                backup_duration: Duration::from_millis(500),
                prepare_queue_delay: Duration::from_millis(300),
                restore_duration: Duration::from_millis(500),
                ..Timings::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let server = Arc::new(Server::default());
    for i in 0..PHONES {
        let phone = support::cloudphone(&format!("p{i:02}"), &instance(i)).created(i as i64);
        server.create(match act {
            Act::Backup => phone.build(),
            Act::Prepare => phone.loaded("u1").build(),
        });
    }
    let replicas = [
        Arc::new(Replica::new(server.clone())),
        Arc::new(Replica::new(server.clone())),
    ];
    let fences = [
        LeaseFence::new(RENEW_DEADLINE),
        LeaseFence::new(RENEW_DEADLINE),
    ];
    // The Lease's intents record, shared by both replicas as the Lease is.
    let lease = MemoryIntentsRecord::default();
    let engine = |i: usize| {
        let client = Client::new(
            ClientConfig {
                base_url: sim.url(),
                request_timeout: Duration::from_secs(2),
                retry: support::quick_retries(2),
                ..ClientConfig::default()
            },
            Token::new("t"),
        )
        .unwrap();
        Arc::new(
            Engine::new(
                replicas[i].clone(),
                client,
                EngineConfig {
                    plan: PlanConfig {
                        // NB: requestedAt is stored in whole seconds, so a grace period is
                        // effectively up to a second shorter: 2s leaves the 300ms queue well inside.
                        grace_period: Duration::from_secs(2),
                        backoff_base: Duration::from_millis(300),
                        backoff_max: Duration::from_secs(1),
                        prepare_grace_period: Duration::from_secs(2),
                        ..PlanConfig::default()
                    },
                    ..EngineConfig::default()
                },
            )
            .with_fence(fences[i].clone())
            .with_intents_record(Arc::new(lease.clone())),
        )
    };
    let engines = [engine(0), engine(1)];
    World {
        sim,
        server,
        replicas,
        fences,
        engines,
        leader: Arc::new(AtomicUsize::new(0)),
    }
}

/// Runs one seed's random schedule, then lets the fleet settle; returns the instances that got a
/// second backup call, and those not backed up at the end.
async fn run_seed(seed: u64, act: Act) -> (Vec<String>, Vec<String>) {
    let w = world(seed, act).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let done = Arc::new(AtomicBool::new(false));
    w.fences[0].renewed(Instant::now());

    // Each replica ticks while it believes it leads; a frozen one is stuck inside its tick.
    let mut tasks = Vec::new();
    for me in 0..2 {
        let engine = w.engines[me].clone();
        let leader = w.leader.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                if leader.load(Ordering::SeqCst) == me {
                    use tracing::Instrument;
                    engine
                        .tick()
                        .instrument(tracing::info_span!("replica", seed, me))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // The elector: the leader renews unless frozen.
    {
        let fences = w.fences.clone();
        let replicas = w.replicas.clone();
        let leader = w.leader.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let me = leader.load(Ordering::SeqCst);
                if !replicas[me].frozen.load(Ordering::SeqCst) {
                    fences[me].renewed(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }

    let chaos_until = Instant::now() + Duration::from_secs(6);
    let mut thaw_at: [Option<Instant>; 2] = [None, None];
    while Instant::now() < chaos_until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..150))).await;
        for (i, at) in thaw_at.iter_mut().enumerate() {
            if at.is_some_and(|t| Instant::now() >= t) {
                *at = None;
                w.replicas[i].thaw();
            }
        }
        for replica in &w.replicas {
            *replica.lag.lock().unwrap() = Duration::from_millis(rng.random_range(0..600));
        }
        let current = w.leader.load(Ordering::SeqCst);
        let other = 1 - current;
        let action = rng.random_range(0..10);
        tracing::info!(
            seed,
            current,
            action,
            frozen0 = w.replicas[0].frozen.load(Ordering::SeqCst),
            frozen1 = w.replicas[1].frozen.load(Ordering::SeqCst),
            "chaos"
        );
        match action {
            // Leadership moves: the old leader's freshness has run out (it stepped down), or it
            // is frozen and its Lease expired; the new one takes the Lease.
            0 | 1 if !w.replicas[other].frozen.load(Ordering::SeqCst) => {
                if w.replicas[current].frozen.load(Ordering::SeqCst) {
                    // A frozen leader's Lease expires only after its renew deadline has passed.
                    tokio::time::sleep(RENEW_DEADLINE).await;
                } else {
                    w.fences[current].ended();
                }
                w.fences[other].renewed(Instant::now());
                w.leader.store(other, Ordering::SeqCst);
            }
            // The leader freezes right after its next accepted write, for a while.
            2 | 3 if thaw_at[current].is_none() => {
                w.replicas[current]
                    .freeze_next_write
                    .store(true, Ordering::SeqCst);
                thaw_at[current] =
                    Some(Instant::now() + Duration::from_millis(rng.random_range(300..4000)));
            }
            // Users undo some finished actions (restore backed-up phones, park loaded ones).
            4..=6 => {
                let (start, end) = act.codes();
                let done: Vec<String> = w
                    .sim
                    .instances()
                    .into_iter()
                    .filter(|(_, inst)| inst.status == end)
                    .map(|(id, _)| id)
                    .collect();
                for id in done {
                    if rng.random_bool(0.3) {
                        w.sim.seed([(id.as_str(), start)]);
                    }
                }
            }
            _ => {}
        }
    }

    // Calm: everything thaws, one leader that is not frozen, no lag; the fleet must settle.
    for replica in &w.replicas {
        replica.freeze_next_write.store(false, Ordering::SeqCst);
        replica.thaw();
        *replica.lag.lock().unwrap() = Duration::ZERO;
    }
    let settle_until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < settle_until {
        let vendor_idle = w
            .sim
            .instances()
            .iter()
            .all(|(_, inst)| inst.status == act.codes().1);
        let recorded_idle = w
            .server
            .latest()
            .iter()
            .all(|p| p.status.as_ref().is_some_and(|s| s.phase == act.done()));
        if vendor_idle && recorded_idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    let instances = w.sim.instances();
    let doubled = instances
        .iter()
        .filter(|(_, inst)| act.second_calls(inst) > 0)
        .map(|(id, inst)| format!("{id} ({} second calls)", act.second_calls(inst)))
        .collect();
    let lost = instances
        .iter()
        .filter(|(_, inst)| inst.status != act.codes().1)
        .map(|(id, inst)| format!("{id} (status {})", inst.status))
        .collect();
    (doubled, lost)
}

/// Every seed of the chaos model for `act`: the second calls and the instances left undone.
async fn chaos(act: Act) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runs: Vec<_> = (0..SEEDS)
        .map(|seed| tokio::spawn(run_seed(seed, act)))
        .collect();
    let mut failures = Vec::new();
    for (seed, run) in runs.into_iter().enumerate() {
        let (doubled, lost) = run.await.unwrap();
        if !doubled.is_empty() {
            failures.push(format!("seed {seed}: second {act:?} calls for {doubled:?}"));
        }
        if !lost.is_empty() {
            failures.push(format!("seed {seed}: not done at the end: {lost:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_instance_gets_a_second_backup_call_whatever_the_leadership_and_cache_ordering() {
    let _deadline = support::deadline(
        "no_instance_gets_a_second_backup_call_whatever_the_leadership_and_cache_ordering",
    );
    chaos(Act::Backup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_instance_gets_a_second_prepare_call_whatever_the_leadership_and_cache_ordering() {
    let _deadline = support::deadline(
        "no_instance_gets_a_second_prepare_call_whatever_the_leadership_and_cache_ordering",
    );
    chaos(Act::Prepare).await;
}

/// Replica 0 leads and freezes right after its backup intent is accepted, before its call; replica
/// 1 takes over, waits out the intent's grace period and backs the phones up itself; then replica 0
/// thaws, leading again at once (`regains`) or not. Returns replica 0's backup calls after the thaw
/// and the instances that got a second call.
async fn frozen_between_intent_and_call(regains: bool, act: Act) -> (u64, Vec<String>) {
    let w = world(100 + u64::from(regains), act).await;
    let (a, b) = (&w.engines[0], &w.engines[1]);
    w.fences[0].renewed(Instant::now());
    w.replicas[0]
        .freeze_next_write
        .store(true, Ordering::SeqCst);
    let frozen_tick = tokio::spawn({
        let a = a.clone();
        async move { a.tick().await }
    });
    while !w.replicas[0].frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Replica 0's Lease expires; replica 1 takes it and acts until the vendor shows the backups.
    tokio::time::sleep(RENEW_DEADLINE).await;
    w.leader.store(1, Ordering::SeqCst);
    // NB: replica 0's record holds replica 1's new term until its last intent's grace period
    // plus the intent age and the record's lead have passed (about 13 s here).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        w.fences[1].renewed(Instant::now());
        let report = b.tick().await;
        if act.requested(&report) > 0 {
            break;
        }
        assert!(Instant::now() < until, "replica 1 never backed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if regains {
        w.fences[1].ended();
        w.fences[0].renewed(Instant::now());
    }
    w.replicas[0].thaw();
    let report = frozen_tick.await.unwrap();
    let doubled = w
        .sim
        .instances()
        .into_iter()
        .filter(|(_, inst)| act.second_calls(inst) > 0)
        .map(|(id, _)| id)
        .collect();
    (act.calls(&report), doubled)
}

#[tokio::test]
async fn a_leader_frozen_between_intent_and_call_sends_nothing_when_it_thaws() {
    let _deadline =
        support::deadline("a_leader_frozen_between_intent_and_call_sends_nothing_when_it_thaws");
    let (calls, doubled) = frozen_between_intent_and_call(false, Act::Backup).await;
    assert_eq!(calls, 0, "a replica whose Lease lapsed sent its call");
    assert!(doubled.is_empty(), "second backup calls for {doubled:?}");
}

#[tokio::test]
async fn a_leader_frozen_between_intent_and_call_sends_nothing_even_if_it_leads_again() {
    let _deadline = support::deadline(
        "a_leader_frozen_between_intent_and_call_sends_nothing_even_if_it_leads_again",
    );
    let (calls, doubled) = frozen_between_intent_and_call(true, Act::Backup).await;
    assert_eq!(calls, 0, "a call from an earlier leadership term was sent");
    assert!(doubled.is_empty(), "second backup calls for {doubled:?}");
}

#[tokio::test]
async fn a_leader_frozen_between_a_prepares_intent_and_its_call_sends_nothing_when_it_thaws() {
    let _deadline = support::deadline(
        "a_leader_frozen_between_a_prepares_intent_and_its_call_sends_nothing_when_it_thaws",
    );
    for regains in [false, true] {
        let (calls, doubled) = frozen_between_intent_and_call(regains, Act::Prepare).await;
        assert_eq!(
            calls, 0,
            "a thawed replica sent its prepare (leads again: {regains})"
        );
        assert!(doubled.is_empty(), "second prepare calls for {doubled:?}");
    }
}
