//! The quick start: the simulator in-process, seeded with the fleet of `examples/`, and the real tick
//! engine on the example `CloudPhone` manifests held in memory, shown converging tick by tick, with
//! a `CloudPhoneSchedule` whose window's wake begins a few seconds into the demo.

use crate::api::{
    CloudPhone, CloudPhoneSchedule, CloudPhoneScheduleSpec, EffectiveReason, Lifecycle, Phase,
    ScheduleWindow, Weekday,
};
use crate::flags::{parse_duration, parse_interval};
use crate::koophone::{Client, ClientConfig, Token};
use crate::plan::{PlanConfig, READY, is_settled};
use crate::reconciler::{
    Engine, EngineConfig, MemorySchedules, MemoryStore, PhoneStore, TickReport,
};
use crate::sim::{self, SimConfig, Simulator, Timings};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The example manifests, embedded so that the demo runs from any directory.
const EXAMPLE_CLOUDPHONES: &str = include_str!("../examples/cloudphones.yaml");
/// The example simulator fleet, embedded likewise.
const EXAMPLE_FLEET: &str = include_str!("../examples/simulator-fleet.yaml");

/// The user's session the demo starts: on this instance, for this long (a shift phone of the
/// examples, BackedUp with an idle timeout).
const DEMO_SESSION: (&str, Duration) = ("kp0801", Duration::from_secs(5));

/// The demo's schedule: its namespace and name, as the Scheduled phones of examples/ name it.
const DEMO_SCHEDULE: (&str, &str) = ("fleet-b", "demo-office");
/// How long after the demo starts its schedule's wake begins, and how long the wake is spread over.
const DEMO_WAKE: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(4));

/// Flags of `cloudphone-operator demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// CloudPhone manifests (multi-document YAML); default: the embedded examples/cloudphones.yaml.
    #[arg(long, env = "CLOUDPHONE_DEMO_CLOUDPHONES")]
    pub cloudphones: Option<PathBuf>,
    /// The simulator's fleet; default: the embedded examples/simulator-fleet.yaml.
    #[arg(long, env = "CLOUDPHONE_DEMO_FLEET")]
    pub fleet: Option<PathBuf>,
    /// Time between ticks.
    #[arg(long, env = "CLOUDPHONE_DEMO_TICK_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    pub tick_interval: Duration,
    /// How long the simulated vendor takes to back up an instance.
    #[arg(long, env = "CLOUDPHONE_DEMO_BACKUP_DURATION", default_value = "3s", value_parser = parse_duration)]
    pub backup_duration: Duration,
    /// Give up (and exit 1) when the fleet has not settled after this long.
    #[arg(long, env = "CLOUDPHONE_DEMO_TIMEOUT", default_value = "50s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A demo input that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{source_name}: document {index}: {reason}")]
    Manifest {
        source_name: String,
        index: usize,
        reason: String,
    },
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error(transparent)]
    Seed(#[from] sim::SeedError),
    #[error(transparent)]
    Start(#[from] sim::StartError),
    #[error(transparent)]
    Client(#[from] crate::koophone::Error),
}

/// Reads multi-document YAML of `CloudPhone` objects, naming the document that does not parse.
pub fn parse_manifests(source_name: &str, text: &str) -> Result<Vec<CloudPhone>, DemoError> {
    use serde::Deserialize;
    let mut phones = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = yaml_serde::Value::deserialize(document).map_err(|e| DemoError::Manifest {
            source_name: source_name.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let phone: CloudPhone = yaml_serde::from_value(value).map_err(|e| DemoError::Manifest {
            source_name: source_name.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        phones.push(phone);
    }
    Ok(phones)
}

fn read_or_embedded(path: &Option<PathBuf>, embedded: &str) -> Result<(String, String), DemoError> {
    match path {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|e| DemoError::Read(path.display().to_string(), e)),
        None => Ok(("(embedded examples)".to_owned(), embedded.to_owned())),
    }
}

/// Gives manifests what the API server would: a uid, a generation, and a creation time (in
/// document order, so that the first of two objects naming one instance is the older).
fn as_if_created(mut phones: Vec<CloudPhone>) -> Vec<CloudPhone> {
    let base = Timestamp::now().as_second() - 3600;
    for (i, phone) in phones.iter_mut().enumerate() {
        let meta = &mut phone.metadata;
        meta.uid
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        meta.generation.get_or_insert(1);
        meta.namespace.get_or_insert_with(|| "default".to_owned());
        if meta.creation_timestamp.is_none() {
            let t = Timestamp::from_second(base + i as i64).unwrap_or_else(|_| Timestamp::now());
            meta.creation_timestamp = Some(Time(t));
        }
    }
    phones
}

/// The demo's schedule, made at `now`: a daily UTC window that starts (is ready by) at the first
/// whole minute more than `DEMO_WAKE` away, with a `prewarmLead` that puts its wake `DEMO_WAKE.0`
/// after `now`; and the restore estimate that spreads the wake over `DEMO_WAKE.1` (a window's start
/// has minute resolution: a real restore estimate would spread the wake over up to a minute).
pub fn demo_schedule(now: Timestamp) -> (CloudPhoneSchedule, Duration) {
    let (after, spread) = DEMO_WAKE;
    let wake = now.as_second() + after.as_secs() as i64 + 1;
    let start = (wake + spread.as_secs() as i64 + 1).div_euclid(60) * 60 + 60;
    let lead = Duration::from_secs((start - wake).unsigned_abs());
    let hhmm = |second: i64| {
        Timestamp::from_second(second)
            .unwrap_or(now)
            .strftime("%H:%M")
            .to_string()
    };
    let mut schedule = CloudPhoneSchedule::new(
        DEMO_SCHEDULE.1,
        CloudPhoneScheduleSpec {
            time_zone: "UTC".into(),
            windows: vec![ScheduleWindow {
                days: vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ],
                start: hhmm(start),
                end: hhmm(start + 600),
            }],
            exceptions: vec![],
            prewarm_lead: Some(format!("{}s", lead.as_secs())),
            suspend: false,
            dry_run: false,
        },
    );
    schedule.metadata.namespace = Some(DEMO_SCHEDULE.0.to_owned());
    schedule.metadata.generation = Some(1);
    (schedule, lead.saturating_sub(spread))
}

/// What a demo run ended with.
pub struct DemoOutcome {
    /// Every phone reached what it declares (or was reported unable to), and the demo schedule's
    /// phones their window.
    pub settled: bool,
    /// The phones as the last tick left them.
    pub phones: Vec<Arc<CloudPhone>>,
    /// The phones' events: `(namespace/name, reason)`.
    pub events: Vec<(String, &'static str)>,
    /// The demo's schedule, with the status the engine wrote.
    pub schedule: Option<Arc<CloudPhoneSchedule>>,
}

/// Runs the demo; `Ok(true)` when every phone reached what it declares or was reported unable to.
pub async fn run(args: DemoArgs) -> Result<bool, DemoError> {
    Ok(run_demo(args).await?.settled)
}

/// True for a phone of the demo's schedule.
fn on_demo_schedule(phone: &CloudPhone) -> bool {
    phone.spec.lifecycle == Lifecycle::Scheduled
        && phone.metadata.namespace.as_deref() == Some(DEMO_SCHEDULE.0)
        && phone
            .spec
            .schedule_ref
            .as_ref()
            .is_some_and(|r| r.name == DEMO_SCHEDULE.1)
}

/// Runs the demo and says what it ended with.
pub async fn run_demo(args: DemoArgs) -> Result<DemoOutcome, DemoError> {
    let (name, text) = read_or_embedded(&args.cloudphones, EXAMPLE_CLOUDPHONES)?;
    let phones = as_if_created(parse_manifests(&name, &text)?);
    let fleet = match &args.fleet {
        Some(path) => sim::read_seed_file(path)?,
        None => sim::parse_seed_text("(embedded examples)", EXAMPLE_FLEET)?,
    };
    let simulator = Simulator::start(
        SimConfig {
            instances: fleet,
            timings: Timings {
                backup_duration: args.backup_duration,
                restore_duration: args.backup_duration,
                ..Timings::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("a literal socket address"),
    )
    .await?;
    if simulator.start_session(DEMO_SESSION.0, DEMO_SESSION.1) {
        println!(
            "demo: a user streams from {} for {} (its phone waits for idleness before it is parked)",
            DEMO_SESSION.0,
            humantime::format_duration(DEMO_SESSION.1)
        );
    }
    let client = Client::new(
        ClientConfig {
            base_url: simulator.url(),
            ..ClientConfig::default()
        },
        Token::new("demo-token"),
    )?;
    let store = Arc::new(MemoryStore::new(phones));
    let (schedule, restore_estimate) = demo_schedule(Timestamp::now());
    let schedules = Arc::new(MemorySchedules::new([schedule.clone()]));
    let engine = Engine::new(
        store.clone(),
        client,
        EngineConfig {
            plan: PlanConfig {
                grace_period: Duration::from_secs(10),
                backoff_base: Duration::from_secs(2),
                backoff_max: Duration::from_secs(20),
                prepare_grace_period: Duration::from_secs(20),
                restore_estimate,
                ..PlanConfig::default()
            },
            tick_interval: args.tick_interval,
            ..EngineConfig::default()
        },
    )
    .with_schedules(schedules.clone());
    let window = &schedule.spec.windows[0];
    let scheduled = store
        .snapshot()
        .iter()
        .filter(|p| on_demo_schedule(p))
        .count();
    println!(
        "demo: CloudPhoneSchedule {}/{} (UTC, every day {}-{}, prewarmLead {}) wakes its {scheduled} Scheduled phones from {}, spread over {} (restore estimate {}), ready by {}",
        DEMO_SCHEDULE.0,
        DEMO_SCHEDULE.1,
        window.start,
        window.end,
        schedule.spec.prewarm_lead.as_deref().unwrap_or_default(),
        (Timestamp::now() + DEMO_WAKE.0).strftime("%H:%M:%S"),
        humantime::format_duration(DEMO_WAKE.1),
        humantime::format_duration(restore_estimate),
        window.start,
    );
    println!(
        "demo: {} CloudPhones against the vendor simulator at {} (backups take {}); ticking every {}",
        store.snapshot().len(),
        simulator.url(),
        humantime::format_duration(args.backup_duration),
        humantime::format_duration(args.tick_interval)
    );
    let started = Instant::now();
    let mut tick = 0;
    let settled = loop {
        tick += 1;
        let report = engine.tick().await;
        let snapshot = store.snapshot();
        println!("{}", tick_line(tick, &report, &snapshot));
        // NB: a phone waiting for idleness is where it should be for now, but the demo shows it
        // parked; and it shows the schedule's phones woken.
        if snapshot.iter().all(|p| {
            p.status.as_ref().is_some_and(|s| {
                is_settled(s)
                    && s.effective_reason != Some(EffectiveReason::WaitingForIdle)
                    && (!on_demo_schedule(p)
                        || s.effective_reason == Some(EffectiveReason::ScheduleWindow))
            })
        }) {
            break true;
        }
        if started.elapsed() >= args.timeout {
            break false;
        }
        tokio::time::sleep(args.tick_interval).await;
    };
    let snapshot = store.snapshot();
    print_summary(&snapshot);
    let events: Vec<(String, &'static str)> = store
        .events()
        .into_iter()
        .map(|(key, event)| (format!("{}/{}", key.namespace, key.name), event.reason))
        .collect();
    let moved: Vec<String> = events
        .iter()
        .filter(|(_, reason)| matches!(*reason, "Woken" | "Parked"))
        .map(|(phone, reason)| format!("{reason} {phone}"))
        .collect();
    println!("events: {}", moved.join(", "));
    let schedule = schedules.get(DEMO_SCHEDULE.0, DEMO_SCHEDULE.1);
    if let Some(status) = schedule.as_ref().and_then(|s| s.status.as_ref()) {
        let condition = |type_: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map_or("-", |c| c.status.as_str())
        };
        println!(
            "CloudPhoneSchedule {}/{}: Valid {}, PrewarmAtRisk {}, {}, next {}, loaded {}, parked {}, preparing {}",
            DEMO_SCHEDULE.0,
            DEMO_SCHEDULE.1,
            condition(crate::plan::VALID),
            condition(crate::plan::PREWARM_AT_RISK),
            status.current_window.as_deref().unwrap_or("-"),
            status.next_transition.as_ref().map_or_else(
                || "-".to_owned(),
                |t| format!("{} at {}", t.lifecycle.as_str(), t.at.0)
            ),
            status.counts.loaded,
            status.counts.parked,
            status.counts.preparing,
        );
    }
    let counters = simulator.counters();
    println!(
        "vendor calls: {} status queries, {} backup calls, {} prepare calls; {} backups started, {} prepares started; {} status writes",
        counters.calls("batch-query-status"),
        counters.calls("backup"),
        counters.calls("prepare"),
        counters.backups_started,
        counters.prepares_started,
        store.writes()
    );
    if settled {
        println!(
            "settled after {tick} ticks ({:.1}s): every phone reached its declared lifecycle or says why it cannot",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "not settled after {}: the phones above still in progress did not finish",
            humantime::format_duration(args.timeout)
        );
    }
    simulator.shutdown().await;
    Ok(DemoOutcome {
        settled,
        phones: snapshot,
        events,
        schedule,
    })
}

/// `tick  3 | Idle 12, BackingUp 8, ... | 1 status call, 1 backup call, 1 prepare call, 14 writes`
fn tick_line(tick: usize, report: &TickReport, snapshot: &[Arc<CloudPhone>]) -> String {
    let mut by_phase: BTreeMap<usize, (Phase, usize)> = BTreeMap::new();
    for phone in snapshot {
        let phase = phone.status.as_ref().map(|s| s.phase).unwrap_or_default();
        let order = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
        by_phase.entry(order).or_insert((phase, 0)).1 += 1;
    }
    let phases: Vec<String> = by_phase.values().map(|(p, n)| format!("{p} {n}")).collect();
    let scheduled: Vec<&Arc<CloudPhone>> =
        snapshot.iter().filter(|p| on_demo_schedule(p)).collect();
    let woken = scheduled
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.effective_lifecycle == Some(Lifecycle::Loaded))
        })
        .count();
    format!(
        "tick {tick:>2} | {} | scheduled: {woken} of {} woken | {} status calls, {} backup calls, {} backups requested, {} prepare calls, {} prepares requested, {} statuses written",
        phases.join(", "),
        scheduled.len(),
        report.status_calls,
        report.backup_calls,
        report.backups_requested,
        report.prepare_calls,
        report.prepares_requested,
        report.statuses_written
    )
}

fn print_summary(snapshot: &[Arc<CloudPhone>]) {
    println!();
    println!(
        "{:<30} {:<12} {:<10} {:<10} {:<13} {:<7} {:<17} MESSAGE",
        "NAME", "INSTANCE", "LIFECYCLE", "EFFECTIVE", "PHASE", "READY", "REASON"
    );
    for phone in snapshot {
        let status = phone.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == READY);
        let message: String = ready
            .map_or("", |c| c.message.as_str())
            .chars()
            .take(90)
            .collect();
        println!(
            "{:<30} {:<12} {:<10} {:<10} {:<13} {:<7} {:<17} {}",
            format!(
                "{}/{}",
                phone.metadata.namespace.as_deref().unwrap_or(""),
                phone.metadata.name.as_deref().unwrap_or("")
            ),
            phone.spec.instance_id.chars().take(12).collect::<String>(),
            phone.spec.lifecycle.as_str(),
            status.effective_lifecycle.map_or("-", |l| l.as_str()),
            status.phase.as_str(),
            ready.map_or("-", |c| c.status.as_str()),
            ready.map_or("-", |c| c.reason.as_str()),
            message
        );
    }
    println!();
}
