//! `--scheduled N`: a fleet of `Scheduled` phones on one CloudPhoneSchedule whose UTC window opens a
//! few minutes after the run starts and closes a few minutes later, ticked in real time (the engine
//! reads the wall clock) against the simulator under an account pace (issue 22's benchmark).
//!
//! What it measures: vendor calls per second against the pace (the client's sends, timed off its
//! `vendor_call` span; the simulator's counters, polled every 25 ms by a thread of its own whose
//! CPU is taken out of the ticks', as a check), the wake wave
//! against `prewarmLead` and the park wave after the end, status writes per tick, and each tick's
//! process CPU. The series (seconds since start, phones loaded and parked as the simulator shows
//! them, phones switched as the operator shows them, calls in the last second) goes to
//! `target/scheduled-wave.csv`, the summary to `target/scheduled-wave.json`, every send to
//! `target/scheduled-wave-sends.csv`:
//! `scripts/plot-wave.py` draws the wave from them.
//!
//! Knobs (environment): BENCH_CPS (20), BENCH_LEAD ("2m"), BENCH_RESTORE_ESTIMATE_SECS (20),
//! BENCH_SIM_RESTORE (5s), BENCH_WINDOW_MINUTES (2), BENCH_TICK_SECS (5), BENCH_USERS (4).

use super::{Sim, id, support};
use cloudphone_operator::api::{
    CloudPhone, CloudPhoneSchedule, CloudPhoneScheduleSpec, CloudPhoneSpec, Lifecycle, Phase,
    ScheduleRef, ScheduleWindow, Weekday,
};
use cloudphone_operator::koophone::{Client, ClientConfig, Token};
use cloudphone_operator::plan::PlanConfig;
use cloudphone_operator::reconciler::{
    Engine, EngineConfig, MemorySchedules, MemoryStore, PhoneStore,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "fleet";
const SCHEDULE: &str = "office";
/// How long a backup takes in the simulator.
const SIM_BACKUP: &str = "2s";
/// Ticks run after the last phone is seen parked: the steady fleet outside its window.
const AFTER_TICKS: usize = 3;
/// How often the simulator's counters are read.
const POLL: Duration = Duration::from_millis(25);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's settings, from the environment.
struct Settings {
    cps: u32,
    lead: String,
    lead_secs: i64,
    restore_estimate: Duration,
    sim_restore: String,
    window_minutes: i64,
    tick: Duration,
    users: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let lead: String = env("BENCH_LEAD", "2m".to_owned());
        let lead_secs = match lead.split_at(lead.len().saturating_sub(1)) {
            (n, "m") => n.parse::<i64>().expect("BENCH_LEAD: 2m, 90s") * 60,
            (n, "s") => n.parse::<i64>().expect("BENCH_LEAD: 2m, 90s"),
            _ => panic!("BENCH_LEAD: 2m, 90s"),
        };
        Settings {
            cps: env("BENCH_CPS", 20),
            lead,
            lead_secs,
            restore_estimate: Duration::from_secs(env("BENCH_RESTORE_ESTIMATE_SECS", 20)),
            sim_restore: env("BENCH_SIM_RESTORE", "5s".to_owned()),
            window_minutes: env("BENCH_WINDOW_MINUTES", 2),
            tick: Duration::from_secs(env("BENCH_TICK_SECS", 5)),
            users: env("BENCH_USERS", 4).max(1),
        }
    }
}

fn every_day() -> Vec<Weekday> {
    vec![
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
}

/// The schedule: every day in UTC from `start` to `end` (whole minutes), woken `lead` ahead.
fn schedule(start: Timestamp, end: Timestamp, lead: &str) -> CloudPhoneSchedule {
    let hhmm = |t: Timestamp| t.strftime("%H:%M").to_string();
    let mut s = CloudPhoneSchedule::new(
        SCHEDULE,
        CloudPhoneScheduleSpec {
            time_zone: "UTC".into(),
            windows: vec![ScheduleWindow {
                days: every_day(),
                start: hhmm(start),
                end: hhmm(end),
            }],
            exceptions: vec![],
            prewarm_lead: Some(lead.into()),
            suspend: false,
            dry_run: false,
        },
    );
    s.metadata.namespace = Some(NAMESPACE.into());
    s.metadata.generation = Some(1);
    s
}

/// `n` phones on the schedule, phone `i` for user `u{i % users}`.
fn fleet(n: usize, users: usize) -> Vec<CloudPhone> {
    (0..n)
        .map(|i| {
            let mut p = CloudPhone::new(
                &format!("phone-{i:06}"),
                CloudPhoneSpec {
                    instance_id: id(i),
                    lifecycle: Lifecycle::Scheduled,
                    interrupt_streaming: false,
                    suspend: false,
                    account_ref: None,
                    user_id: Some(format!("u{}", i % users)),
                    idle_timeout: None,
                    schedule_ref: Some(Box::new(ScheduleRef {
                        name: SCHEDULE.into(),
                    })),
                },
            );
            p.metadata.namespace = Some(NAMESPACE.into());
            p.metadata.uid = Some(format!("uid-{i}"));
            p.metadata.generation = Some(1);
            p
        })
        .collect()
}

/// The simulator's call counters at one moment (seconds since the start).
#[derive(Clone, Copy, Default)]
struct Calls {
    t: f64,
    status: u64,
    prepare: u64,
    backup: u64,
    progress: u64,
}

impl Calls {
    fn all(&self) -> u64 {
        self.status + self.prepare + self.backup + self.progress
    }
}

/// The simulator's instances by state at one moment.
#[derive(Clone, Copy)]
struct States {
    t: f64,
    loaded: usize,
    parked: usize,
}

#[derive(Default)]
struct Polled {
    calls: Vec<Calls>,
    states: Vec<States>,
    /// This thread's CPU so far, in seconds.
    cpu: f64,
}

/// A thread of its own reading the simulator: its counters every [`POLL`], its instances' states
/// every second. Its CPU is kept apart so that the ticks' CPU is the operator's.
struct Poller {
    stop: Arc<AtomicBool>,
    polled: Arc<Mutex<Polled>>,
    thread: Option<std::thread::JoinHandle<()>>,
    task: String,
}

impl Poller {
    fn start(url: String, t0: Instant) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let polled = Arc::new(Mutex::new(Polled::default()));
        let (task_tx, task_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, polled) = (stop.clone(), polled.clone());
            std::thread::spawn(move || {
                let task = std::fs::read_link("/proc/thread-self")
                    .map(|p| p.to_string_lossy().trim_start_matches("/proc/").to_owned())
                    .unwrap_or_default();
                task_tx.send(task.clone()).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(poll(url, t0, stop, polled, task));
            })
        };
        Poller {
            stop,
            polled,
            thread: Some(thread),
            task: task_rx.recv().unwrap(),
        }
    }

    /// The poller thread's CPU so far, in seconds.
    fn cpu(&self) -> f64 {
        support::cpu_secs(&self.task)
    }

    fn finish(mut self) -> Polled {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.polled.lock().unwrap())
    }
}

async fn poll(
    url: String,
    t0: Instant,
    stop: Arc<AtomicBool>,
    polled: Arc<Mutex<Polled>>,
    task: String,
) {
    let http = reqwest::Client::new();
    let mut next_states = 0.0;
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::SeqCst) {
        interval.tick().await;
        let Ok(answer) = http.get(format!("{url}/sim/counters")).send().await else {
            continue;
        };
        // NB: the time of the answer: the counters count a call as it arrives.
        let t = t0.elapsed().as_secs_f64();
        let Ok(c) = answer.json::<Value>().await else {
            continue;
        };
        let calls = |e: &str| c["endpoints"][e]["calls"].as_u64().unwrap_or(0);
        let sample = Calls {
            t,
            status: calls("batch-query-status"),
            prepare: calls("prepare"),
            backup: calls("backup"),
            progress: calls("prepare-progress"),
        };
        let states = if t >= next_states {
            next_states = t.floor() + 1.0;
            match http.get(format!("{url}/sim/instances")).send().await {
                Ok(a) => a.bytes().await.ok().map(|body| {
                    let (loaded, parked) = count_states(&body);
                    States { t, loaded, parked }
                }),
                Err(_) => None,
            }
        } else {
            None
        };
        let cpu = support::cpu_secs(&task);
        let mut p = polled.lock().unwrap();
        p.calls.push(sample);
        p.states.extend(states);
        p.cpu = cpu;
    }
}

/// Instances loaded (DataLoaded or Streaming: 2, 3) and parked (Idle: 0) in the simulator's
/// `/sim/instances` answer, by a scan of its `"status":` fields (cheaper than a parse).
fn count_states(body: &[u8]) -> (usize, usize) {
    const KEY: &[u8] = b"\"status\":";
    let (mut loaded, mut parked) = (0, 0);
    let mut i = 0;
    while let Some(at) = body[i..].windows(KEY.len()).position(|w| w == KEY) {
        let start = i + at + KEY.len();
        let end = body[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(body.len(), |e| start + e);
        match &body[start..end] {
            b"2" | b"3" => loaded += 1,
            b"0" => parked += 1,
            _ => {}
        }
        i = end;
    }
    (loaded, parked)
}

/// The client's sends, in seconds since the start, by endpoint (0 status, 1 prepare, 2 backup, 3
/// progress): read off the client's `vendor_call` span, which each attempt opens once the account's
/// spacing let it go, just before it is sent.
#[derive(Clone, Default)]
struct Sends(Arc<Mutex<Vec<(f64, u8)>>>);

struct SendLayer {
    t0: Instant,
    sends: Sends,
}

struct EndpointField(Option<u8>);

impl tracing::field::Visit for EndpointField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "endpoint" {
            self.0 = Some(match format!("{value:?}").as_str() {
                "batch-query-status" => 0,
                "prepare" => 1,
                "backup" => 2,
                _ => 3,
            });
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SendLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut endpoint = EndpointField(None);
        attrs.record(&mut endpoint);
        if let Some(e) = endpoint.0 {
            let t = self.t0.elapsed().as_secs_f64();
            self.sends.0.lock().unwrap().push((t, e));
        }
    }
}

impl Sends {
    /// Records the client's sends from now on (this process's global subscriber).
    fn install(t0: Instant) -> Sends {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        let sends = Sends::default();
        let layer = SendLayer {
            t0,
            sends: sends.clone(),
        }
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.name() == "vendor_call"
        }));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other subscriber");
        sends
    }

    fn times(&self, wanted: impl Fn(u8) -> bool) -> Vec<f64> {
        let mut t: Vec<f64> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| wanted(*e))
            .map(|(t, _)| *t)
            .collect();
        t.sort_by(f64::total_cmp);
        t
    }
}

/// The most sends in any 1 s window `[a, a + 1)`.
fn max_in_a_second(times: &[f64]) -> usize {
    let mut j = 0;
    let mut most = 0;
    for i in 0..times.len() {
        j = j.max(i);
        while j < times.len() && times[j] - times[i] < 1.0 {
            j += 1;
        }
        most = most.max(j - i);
    }
    most
}

/// The sends `i` whose second `[t_i, t_i + 1)` holds more than `limit` sends.
fn over_limit(times: &[f64], limit: usize) -> usize {
    let mut j = 0;
    let mut over = 0;
    for i in 0..times.len() {
        j = j.max(i);
        while j < times.len() && times[j] - times[i] < 1.0 {
            j += 1;
        }
        over += usize::from(j - i > limit);
    }
    over
}

/// The least time between two sends, in milliseconds.
fn min_gap_ms(times: &[f64]) -> Option<f64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .min_by(f64::total_cmp)
}

/// One tick as the benchmark saw it.
struct TickRow {
    /// Seconds since the start, at the tick's start.
    at: f64,
    wall: f64,
    /// The process's CPU over the tick, less the poller thread's.
    cpu: f64,
    writes: usize,
    schedule_writes: u64,
    status_calls: u64,
    prepare_calls: u64,
    backup_calls: u64,
    /// After the tick, as the operator's statuses show: phones kept Loaded, phones seen
    /// DataLoaded, phones seen Idle and kept BackedUp.
    switched: usize,
    seen_loaded: usize,
    seen_parked: usize,
    prewarm_at_risk: bool,
}

/// The most calls in any 1 s window, from counter samples: a count over a real window of at most
/// 1 s (a lower bound of the most) and one over the samples around it (an upper bound).
fn max_per_second(samples: &[Calls], count: impl Fn(&Calls) -> u64) -> (u64, u64) {
    let (mut lo, mut hi) = (0, 0);
    let mut j = 0;
    for i in 0..samples.len() {
        j = j.max(i);
        while j + 1 < samples.len() && samples[j + 1].t - samples[i].t <= 1.0 {
            j += 1;
        }
        lo = lo.max(count(&samples[j]) - count(&samples[i]));
        let after = &samples[(j + 1).min(samples.len() - 1)];
        let before = &samples[i.saturating_sub(1)];
        hi = hi.max(count(after) - count(before));
    }
    (lo, hi)
}

/// The last sample at or before `t` (the first one if none is).
fn at<T: Copy>(samples: &[T], time: impl Fn(&T) -> f64, t: f64) -> T {
    let i = samples.partition_point(|s| time(s) <= t);
    samples[i.saturating_sub(1)]
}

/// When a counter first moved and when it reached its last value, in seconds since the start.
fn first_last(samples: &[Calls], count: impl Fn(&Calls) -> u64, from: f64) -> Option<(f64, f64)> {
    let base = count(&at(samples, |s| s.t, from));
    let last = count(samples.last()?);
    if last == base {
        return None;
    }
    let first = samples.iter().find(|s| s.t >= from && count(s) > base)?.t;
    let done = samples.iter().find(|s| count(s) == last)?.t;
    Some((first, done))
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = xs.fold((0.0, 0), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn max(xs: impl Iterator<Item = f64>) -> Option<f64> {
    xs.fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
}

pub async fn run(n: usize) -> Value {
    let s = Settings::from_env();
    let sim = Sim::start_with(&s.sim_restore, SIM_BACKUP).await;
    sim.seed_with(n, |_| 0).await;
    let client = Client::new(
        ClientConfig {
            base_url: sim.url.clone(),
            calls_per_second: Some(s.cps),
            ..ClientConfig::default()
        },
        Token::new("bench"),
    )
    .unwrap();

    // The window: its start the first whole minute at least a lead and 15 s away (the wave's edge,
    // a lead before it, comes after the operator's first ticks), its end minutes later.
    let t0 = Instant::now();
    let t0_wall = Timestamp::now();
    let sends = Sends::install(t0);
    let earliest = t0_wall.as_second() + s.lead_secs + 15;
    let start = Timestamp::from_second((earliest + 59) / 60 * 60).unwrap();
    let end = start + SignedDuration::from_mins(s.window_minutes);
    let edge = start - SignedDuration::from_secs(s.lead_secs);
    let since_t0 = |t: Timestamp| t.duration_since(t0_wall).as_secs_f64();
    let (edge_s, start_s, end_s) = (since_t0(edge), since_t0(start), since_t0(end));
    let spread = s.lead_secs as f64 - s.restore_estimate.as_secs_f64();

    let schedules = Arc::new(MemorySchedules::new([schedule(start, end, &s.lead)]));
    let store = Arc::new(MemoryStore::new(fleet(n, s.users)));
    let engine = Engine::new(
        store.clone(),
        client,
        EngineConfig {
            plan: PlanConfig {
                restore_estimate: s.restore_estimate,
                ..PlanConfig::default()
            },
            tick_interval: s.tick,
            ..EngineConfig::default()
        },
    )
    .with_schedules(schedules.clone());
    eprintln!(
        "scheduled: {n} phones, window {}-{} UTC, edge in {edge_s:.0} s, start in {start_s:.0} s, end in {end_s:.0} s",
        start.strftime("%H:%M"),
        end.strftime("%H:%M")
    );

    let poller = Poller::start(sim.url.clone(), t0);
    let mut ticks: Vec<TickRow> = Vec::new();
    // NB: a park is spread over the lead, but at least the planner's MIN_SPREAD.
    let park_spread = (s.lead_secs as f64).max(cloudphone_operator::plan::MIN_SPREAD.as_secs_f64());
    let give_up = end_s + park_spread + 120.0;
    let mut after = None;
    let mut timed_out = false;
    loop {
        let tick_start = Instant::now();
        let at = t0.elapsed().as_secs_f64();
        let (cpu0, poller0, sw0) = (support::cpu_secs("self"), poller.cpu(), schedules.writes());
        let report = engine.tick().await;
        let wall = tick_start.elapsed().as_secs_f64();
        let cpu = (support::cpu_secs("self") - cpu0) - (poller.cpu() - poller0);
        let snapshot = store.snapshot();
        let status = |p: &CloudPhone| p.status.clone().unwrap_or_default();
        let statuses: Vec<_> = snapshot.iter().map(|p| status(p)).collect();
        let prewarm_at_risk = schedules
            .get(NAMESPACE, SCHEDULE)
            .and_then(|sc| sc.status.clone())
            .is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "PrewarmAtRisk" && c.status == "True")
            });
        let row = TickRow {
            at,
            wall,
            cpu,
            writes: report.statuses_written,
            schedule_writes: schedules.writes() - sw0,
            status_calls: report.status_calls,
            prepare_calls: report.prepare_calls,
            backup_calls: report.backup_calls,
            switched: statuses
                .iter()
                .filter(|s| s.effective_lifecycle == Some(Lifecycle::Loaded))
                .count(),
            seen_loaded: statuses
                .iter()
                .filter(|s| s.phase == Phase::DataLoaded)
                .count(),
            seen_parked: statuses
                .iter()
                .filter(|s| {
                    s.phase == Phase::Idle && s.effective_lifecycle == Some(Lifecycle::BackedUp)
                })
                .count(),
            prewarm_at_risk,
        };
        eprintln!(
            "  t={at:6.1}s wall {wall:5.2}s cpu {cpu:5.3}s writes {:5} sched {} status {:3} prepare {:3} backup {:3} | switched {:5} loaded {:5} parked {:5}{}",
            row.writes,
            row.schedule_writes,
            row.status_calls,
            row.prepare_calls,
            row.backup_calls,
            row.switched,
            row.seen_loaded,
            row.seen_parked,
            if prewarm_at_risk {
                " PrewarmAtRisk"
            } else {
                ""
            }
        );
        let parked_after_end = at > end_s && row.seen_parked == n;
        ticks.push(row);
        if parked_after_end {
            let left = after.get_or_insert(AFTER_TICKS + 1);
            *left -= 1;
            if *left == 0 {
                break;
            }
        }
        if at > give_up {
            timed_out = true;
            break;
        }
        tokio::time::sleep_until((tick_start + s.tick).into()).await;
    }
    let total_secs = t0.elapsed().as_secs_f64();
    let polled = poller.finish();
    let instances: Value = sim
        .http
        .get(format!("{}/sim/instances", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    summarise(
        n,
        &s,
        (edge_s, start_s, end_s, spread, total_secs, timed_out),
        &ticks,
        &polled,
        &sends,
        &instances,
    )
}

/// The figures of a run, and its series written under target/.
fn summarise(
    n: usize,
    s: &Settings,
    (edge_s, start_s, end_s, spread, total_secs, timed_out): (f64, f64, f64, f64, f64, bool),
    ticks: &[TickRow],
    polled: &Polled,
    sends: &Sends,
    instances: &Value,
) -> Value {
    let calls = &sent(sends);
    let states = &polled.states;
    let limit = s.cps as f64;

    // Calls per second against the pace: the client's sends, and as a check, the arrivals the
    // simulator counted (sampled every 25 ms: the most in a 1 s window lies between the two).
    let max_1s = |wanted: fn(u8) -> bool| max_in_a_second(&sends.times(wanted));
    let arrivals = |f: fn(&Calls) -> u64| {
        let (lo, hi) = max_per_second(&polled.calls, f);
        json!([lo, hi])
    };
    let last = calls.last().copied().unwrap_or_default();
    let first_call = calls.iter().find(|c| c.all() > 0).map_or(0.0, |c| c.t);
    let mean_between = |from: f64, to: f64| {
        let (a, b) = (at(calls, |c| c.t, from), at(calls, |c| c.t, to));
        (b.all() - a.all()) as f64 / (b.t - a.t).max(1e-9)
    };

    // The waves: first to last prepare (after the edge) and backup (after the end).
    let wake = first_last(calls, |c| c.prepare, edge_s - 1.0);
    let park = first_last(calls, |c| c.backup, end_s - 1.0);
    let all_loaded = states.iter().find(|st| st.loaded == n).map(|st| st.t);
    let all_parked = states
        .iter()
        .find(|st| st.t > end_s && st.parked == n)
        .map(|st| st.t);
    let loaded_at_start = states
        .iter()
        .rfind(|st| st.t <= start_s)
        .map_or(0, |st| st.loaded);
    let seen_at_start = ticks
        .iter()
        .rfind(|t| t.at + t.wall <= start_s)
        .map_or(0, |t| t.seen_loaded);

    // Ticks by where they fall: before the edge, the wake (edge to the operator seeing every phone
    // loaded), between the waves (then to the end), the park, and after it.
    let seen_all_loaded = ticks
        .iter()
        .find(|t| t.seen_loaded == n)
        .map(|t| t.at + t.wall);
    let segment = |t: &TickRow| -> &'static str {
        if t.at < edge_s {
            "before"
        } else if seen_all_loaded.is_none_or(|s| t.at < s) && t.at < end_s {
            "wake"
        } else if t.at < end_s {
            "between"
        } else if t.seen_parked < n || ticks.iter().any(|u| u.at > t.at && u.seen_parked < n) {
            "park"
        } else {
            "after"
        }
    };
    let segments: Vec<Value> = ["before", "wake", "between", "park", "after"]
        .iter()
        .map(|name| {
            let rows: Vec<&TickRow> = ticks.iter().filter(|t| segment(t) == *name).collect();
            json!({
                "segment": name,
                "ticks": rows.len(),
                "writes": rows.iter().map(|t| t.writes).collect::<Vec<_>>(),
                "schedule_writes": rows.iter().map(|t| t.schedule_writes).sum::<u64>(),
                "cpu_mean": mean(rows.iter().map(|t| t.cpu)),
                "cpu_max": max(rows.iter().map(|t| t.cpu)),
                "wall_mean": mean(rows.iter().map(|t| t.wall)),
                "wall_max": max(rows.iter().map(|t| t.wall)),
                "prepare_calls": rows.iter().map(|t| t.prepare_calls).sum::<u64>(),
                "backup_calls": rows.iter().map(|t| t.backup_calls).sum::<u64>(),
                "status_calls_max": rows.iter().map(|t| t.status_calls).max(),
            })
        })
        .collect();

    let sum = |field: &str| -> u64 {
        instances.as_object().map_or(0, |o| {
            o.values().map(|i| i[field].as_u64().unwrap_or(0)).sum()
        })
    };

    let result = json!({
        "phones": n,
        "users": s.users,
        "calls_per_second_limit": s.cps,
        "prewarm_lead_secs": s.lead_secs,
        "restore_estimate_secs": s.restore_estimate.as_secs(),
        "sim_restore": s.sim_restore,
        "sim_backup": SIM_BACKUP,
        "tick_secs": s.tick.as_secs(),
        "edge_s": edge_s,
        "start_s": start_s,
        "end_s": end_s,
        "wake_spread_secs": spread,
        "run_secs": total_secs,
        "timed_out": timed_out,
        "calls": {
            "status": last.status,
            "prepare": last.prepare,
            "backup": last.backup,
            "progress": last.progress,
            "max_1s_all": max_1s(|_| true),
            "max_1s_status": max_1s(|e| e == 0),
            "max_1s_prepare": max_1s(|e| e == 1),
            "max_1s_backup": max_1s(|e| e == 2),
            "max_1s_actions": max_1s(|e| e == 1 || e == 2),
            "sends_opening_a_second_over_the_pace": over_limit(&sends.times(|_| true), s.cps as usize),
            "min_gap_ms": min_gap_ms(&sends.times(|_| true)),
            "min_gap_ms_actions": min_gap_ms(&sends.times(|e| e == 1 || e == 2)),
            "arrivals_max_1s_all": arrivals(Calls::all),
            "arrivals_max_1s_actions": arrivals(|c| c.prepare + c.backup),
            "mean_run": mean_between(first_call, last.t),
            "mean_wake": wake.map(|(a, b)| mean_between(a, b)),
            "mean_park": park.map(|(a, b)| mean_between(a, b)),
            "over_limit_seconds": per_second(calls, total_secs).iter().filter(|c| c.all() as f64 > limit).count(),
        },
        "wake": {
            "first_prepare_after_edge": wake.map(|w| w.0 - edge_s),
            "last_prepare_after_edge": wake.map(|w| w.1 - edge_s),
            "duration": wake.map(|w| w.1 - w.0),
            "last_prepare_before_start": wake.map(|w| start_s - w.1),
            "loaded_at_start": loaded_at_start,
            "operator_saw_loaded_at_start": seen_at_start,
            "all_loaded_after_start": all_loaded.map(|t| t - start_s),
            "operator_saw_all_loaded_after_start": seen_all_loaded.map(|t| t - start_s),
        },
        "park": {
            "first_backup_after_end": park.map(|p| p.0 - end_s),
            "last_backup_after_end": park.map(|p| p.1 - end_s),
            "duration": park.map(|p| p.1 - p.0),
            "all_parked_after_end": all_parked.map(|t| t - end_s),
        },
        "prewarm_at_risk_ticks": ticks.iter().filter(|t| t.prewarm_at_risk).count(),
        "ticks": ticks.len(),
        "segments": segments,
        "instances": {
            "prepares_started": sum("prepares_started"),
            "backups_started": sum("backups_started"),
            "prepare_requests_while_busy": sum("prepare_requests_while_busy"),
            "requests_while_busy": sum("requests_while_busy"),
        },
    });
    write_series(total_secs, ticks, polled, calls, &result);
    let mut raw = String::from("seconds,endpoint\n");
    let mut all = sends.0.lock().unwrap().clone();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, e) in all {
        let name = [
            "batch-query-status",
            "prepare",
            "backup",
            "prepare-progress",
        ][usize::from(e.min(3))];
        raw.push_str(&format!("{t:.4},{name}\n"));
    }
    std::fs::write(format!("{}-sends.csv", out_path()), raw).expect("the sends written");
    result
}

/// The client's sends as counters: one sample right after each send, from zero.
fn sent(sends: &Sends) -> Vec<Calls> {
    let mut all = sends.0.lock().unwrap().clone();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut c = Calls::default();
    let mut out = vec![c];
    for (t, e) in all {
        c.t = t;
        match e {
            0 => c.status += 1,
            1 => c.prepare += 1,
            2 => c.backup += 1,
            _ => c.progress += 1,
        }
        out.push(c);
    }
    out
}

/// Calls in each whole second (s-1, s] since the start, from the samples.
fn per_second(calls: &[Calls], total_secs: f64) -> Vec<Calls> {
    (1..=total_secs.floor() as usize)
        .map(|sec| {
            let t = sec as f64;
            let (a, b) = (at(calls, |c| c.t, t - 1.0), at(calls, |c| c.t, t));
            Calls {
                t,
                status: b.status - a.status,
                prepare: b.prepare - a.prepare,
                backup: b.backup - a.backup,
                progress: b.progress - a.progress,
            }
        })
        .collect()
}

fn out_path() -> String {
    std::env::var("BENCH_WAVE_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/scheduled-wave").to_owned()
    })
}

/// `target/scheduled-wave.csv` (a row a second) and `target/scheduled-wave.json` (the summary), or
/// where BENCH_WAVE_OUT (a path without extension) says.
fn write_series(
    total_secs: f64,
    ticks: &[TickRow],
    polled: &Polled,
    calls: &[Calls],
    result: &Value,
) {
    let out = out_path();
    let mut csv = String::from(
        "seconds,loaded,parked,switched,calls,status_calls,prepare_calls,backup_calls,progress_calls\n",
    );
    for c in per_second(calls, total_secs) {
        let st = polled
            .states
            .iter()
            .rfind(|st| st.t <= c.t)
            .copied()
            .unwrap_or(States {
                t: 0.0,
                loaded: 0,
                parked: 0,
            });
        let switched = ticks
            .iter()
            .rfind(|r| r.at + r.wall <= c.t)
            .map_or(0, |r| r.switched);
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            c.t,
            st.loaded,
            st.parked,
            switched,
            c.all(),
            c.status,
            c.prepare,
            c.backup,
            c.progress
        ));
    }
    std::fs::write(format!("{out}.csv"), csv).expect("the series written");
    std::fs::write(
        format!("{out}.json"),
        serde_json::to_string_pretty(result).unwrap(),
    )
    .expect("the summary written");
    eprintln!("series: {out}.csv, summary: {out}.json");
}

/// The summary for a person, from the JSON line.
pub fn print(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("-".to_owned(), |v| format!("{v:.1}"));
    let c = &r["calls"];
    println!(
        "scheduled fleet: {} phones, {} users; pace {} calls/s (actions {:.2}/s); prewarmLead {} s, restore estimate {} s (wake spread {} s); tick {} s",
        r["phones"],
        r["users"],
        r["calls_per_second_limit"],
        r["calls_per_second_limit"].as_f64().unwrap_or(0.0) * 0.75,
        r["prewarm_lead_secs"],
        r["restore_estimate_secs"],
        f(&r["wake_spread_secs"]),
        r["tick_secs"]
    );
    println!(
        "calls: status {} prepare {} backup {} progress {}; most sent in any 1 s: all {} status {} actions {} (arrivals at the simulator: {}); mean {} /s over the run, {} in the wake, {} in the park; whole seconds over the pace: {}; sends opening a 1 s window over the pace: {} (least gap between sends {} ms)",
        c["status"],
        c["prepare"],
        c["backup"],
        c["progress"],
        c["max_1s_all"],
        c["max_1s_status"],
        c["max_1s_actions"],
        c["arrivals_max_1s_all"],
        f(&c["mean_run"]),
        f(&c["mean_wake"]),
        f(&c["mean_park"]),
        c["over_limit_seconds"],
        c["sends_opening_a_second_over_the_pace"],
        f(&c["min_gap_ms"])
    );
    let w = &r["wake"];
    println!(
        "wake: prepares from edge+{} s to edge+{} s ({} s; the last {} s before the start); loaded at the start {} (operator saw {}); all loaded at start{:+} s",
        f(&w["first_prepare_after_edge"]),
        f(&w["last_prepare_after_edge"]),
        f(&w["duration"]),
        f(&w["last_prepare_before_start"]),
        w["loaded_at_start"],
        w["operator_saw_loaded_at_start"],
        w["all_loaded_after_start"].as_f64().unwrap_or(f64::NAN)
    );
    let p = &r["park"];
    println!(
        "park: backups from end+{} s to end+{} s ({} s); all parked at end+{} s",
        f(&p["first_backup_after_end"]),
        f(&p["last_backup_after_end"]),
        f(&p["duration"]),
        f(&p["all_parked_after_end"])
    );
    for seg in r["segments"].as_array().into_iter().flatten() {
        println!(
            "  {:>8}: {:>3} ticks, writes {}, schedule writes {}, CPU mean {} max {} s, wall mean {} s",
            seg["segment"].as_str().unwrap_or(""),
            seg["ticks"],
            seg["writes"],
            seg["schedule_writes"],
            seg["cpu_mean"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.3}")),
            seg["cpu_max"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.3}")),
            seg["wall_mean"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.2}")),
        );
    }
}
