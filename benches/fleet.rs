//! Fleet benchmark: the real tick engine against the vendor simulator (a separate process, over
//! HTTP, 20 ms added to every answer) for fleets of 1,000, 10,000 and 50,000 phones, beside the
//! naive design (one status call and one backup call per phone, a reconcile per object).
//!
//!     cargo bench --bench fleet                 # every size, each in a fresh process
//!     cargo bench --bench fleet -- --one 10000  # one size
//!     cargo bench --bench fleet -- --mixed 10000  # half BackedUp, half Loaded, each switching once
//!     cargo bench --bench fleet -- --scheduled 10000  # Scheduled phones across a window (real time, ~7 min)
//!     BENCH_NAIVE=0 BENCH_STEADY_ROUNDS=100 cargo bench --bench fleet -- --one 10000  # a profiler's window
//!
//! CPU and peak memory are the operator's own: the simulator runs in its own process.

mod scheduled;
mod support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneSpec, Lifecycle, Phase};
use cloudphone_operator::koophone::{Client, ClientConfig, Token};
use cloudphone_operator::plan::PlanConfig;
use cloudphone_operator::reconciler::{Engine, EngineConfig, MemoryStore, PhoneStore};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [1_000, 10_000, 50_000];
/// The naive design is measured up to this size: beyond, it takes minutes per pass.
const NAIVE_MAX: usize = 10_000;
const LATENCY: &str = "20ms";
const BACKUP_DURATION: &str = "2s";
/// Calls in flight for the naive design, like a controller with 16 workers.
const NAIVE_WORKERS: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let n: usize = args[i + 1].parse().expect("--one takes a fleet size");
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        println!("{}", runtime.block_on(one(n)));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--mixed") {
        let n: usize = args[i + 1].parse().expect("--mixed takes a fleet size");
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        println!("{}", runtime.block_on(mixed(n)));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--scheduled") {
        let n: usize = args[i + 1].parse().expect("--scheduled takes a fleet size");
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let r = runtime.block_on(scheduled::run(n));
        scheduled::print(&r);
        println!("{r}");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    println!("fleet benchmark: simulator latency {LATENCY} a call, backups take {BACKUP_DURATION}");
    println!(
        "{:>7} | {:>11} {:>6} | {:>12} {:>6} {:>9} | {:>10} {:>8} {:>7} | {:>8} {:>10} | {:>9} {:>9} {:>7} {:>7}",
        "phones",
        "status/tick",
        "floor",
        "backup calls",
        "ticks",
        "converge",
        "steady",
        "cpu",
        "writes",
        "peak MiB",
        "KiB/phone",
        "naive cls",
        "naive t",
        "x calls",
        "x time"
    );
    for n in SIZES {
        let exe = std::env::current_exe().expect("the bench binary");
        let out = Command::new(exe)
            .args(["--one", &n.to_string()])
            .output()
            .expect("a size's run");
        assert!(
            out.status.success(),
            "size {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(
            out.stdout
                .split(|b| *b == b'\n')
                .find(|l| l.starts_with(b"{"))
                .unwrap_or(b"{}"),
        )
        .expect("a JSON result line");
        let naive_calls = r["naive_calls"].as_f64();
        let naive_secs = r["naive_secs"].as_f64();
        let fmt_opt = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
        println!(
            "{:>7} | {:>11} {:>6} | {:>12} {:>6} {:>8.2}s | {:>9.3}s {:>7.3}s {:>7} | {:>8.1} {:>10.2} | {:>9} {:>8}s {:>7} {:>7}",
            n,
            r["status_calls_per_tick"],
            n.div_ceil(100),
            r["backup_calls"],
            r["ticks_to_converge"],
            r["converge_secs"].as_f64().unwrap_or(0.0),
            r["steady_tick_secs"].as_f64().unwrap_or(0.0),
            r["steady_tick_cpu_secs"].as_f64().unwrap_or(0.0),
            r["steady_writes"],
            r["peak_rss_mib"].as_f64().unwrap_or(0.0),
            r["kib_per_phone"].as_f64().unwrap_or(0.0),
            fmt_opt(naive_calls, 0),
            fmt_opt(naive_secs, 1),
            fmt_opt(
                naive_calls.map(|c| c / r["operator_calls"].as_f64().unwrap_or(1.0)),
                0
            ),
            fmt_opt(
                naive_secs.map(|t| t / r["converge_secs"].as_f64().unwrap_or(1.0)),
                1
            ),
        );
    }
    println!();
    println!(
        "mixed fleet: half BackedUp (instances DataLoaded), half Loaded for 10 users (instances Idle), then every phone switched once"
    );
    println!(
        "{:>7} | {:>11} | {:>12} {:>13} {:>5} {:>8} | {:>12} {:>13} {:>5} {:>8} | {:>10} {:>8} {:>7}",
        "phones",
        "status/tick",
        "backup calls",
        "prepare calls",
        "ticks",
        "converge",
        "backup calls",
        "prepare calls",
        "ticks",
        "switch",
        "steady",
        "cpu",
        "writes"
    );
    for n in MIXED_SIZES {
        let r = in_own_process("--mixed", n);
        println!(
            "{:>7} | {:>11} | {:>12} {:>13} {:>5} {:>7.2}s | {:>12} {:>13} {:>5} {:>7.2}s | {:>9.3}s {:>7.3}s {:>7}",
            n,
            r["status_calls_per_tick"],
            r["first"]["backup_calls"],
            r["first"]["prepare_calls"],
            r["first"]["ticks"],
            r["first"]["secs"].as_f64().unwrap_or(0.0),
            r["switch"]["backup_calls"],
            r["switch"]["prepare_calls"],
            r["switch"]["ticks"],
            r["switch"]["secs"].as_f64().unwrap_or(0.0),
            r["steady_tick_secs"].as_f64().unwrap_or(0.0),
            r["steady_tick_cpu_secs"].as_f64().unwrap_or(0.0),
            r["steady_writes"],
        );
    }
    // BENCH_SCHEDULED=0 skips the scheduled fleet (it runs in real time, some 7 minutes).
    if std::env::var("BENCH_SCHEDULED").map_or(true, |v| v != "0") {
        println!();
        scheduled::print(&in_own_process("--scheduled", 10_000));
    }
}

/// The sizes of the mixed fleet's runs.
const MIXED_SIZES: [usize; 2] = [1_000, 10_000];

/// Runs this bench binary with `flag n` in a fresh process; its JSON result line.
fn in_own_process(flag: &str, n: usize) -> Value {
    let exe = std::env::current_exe().expect("the bench binary");
    let out = Command::new(exe)
        .args([flag, &n.to_string()])
        .output()
        .expect("a size's run");
    assert!(
        out.status.success(),
        "{flag} {n} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .find(|l| l.starts_with(b"{"))
            .unwrap_or(b"{}"),
    )
    .expect("a JSON result line")
}

/// A simulator in its own process.
struct Sim {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    async fn start() -> Sim {
        Sim::start_with(BACKUP_DURATION, BACKUP_DURATION).await
    }

    /// A simulator whose restores take `restore` and backups `backup`.
    async fn start_with(restore: &str, backup: &str) -> Sim {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_cloudphone-operator"))
            .args([
                "simulate",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--latency",
                LATENCY,
            ])
            .args(["--backup-duration", backup])
            .args(["--restore-duration", restore])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator starts");
        let sim = Sim {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if sim
                .http
                .get(format!("{}/sim/counters", sim.url))
                .send()
                .await
                .is_ok()
            {
                return sim;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the simulator did not start");
    }

    async fn seed(&self, n: usize) {
        self.seed_with(n, |_| 2).await
    }

    /// Seeds `n` instances, instance `i` in status `status(i)`, and resets the counters.
    async fn seed_with(&self, n: usize, status: impl Fn(usize) -> i64) {
        let entries: Vec<Value> = (0..n)
            .map(|i| json!({"instance_id": id(i), "status": status(i)}))
            .collect();
        self.http
            .put(format!("{}/sim/instances", self.url))
            .json(&entries)
            .send()
            .await
            .unwrap();
        self.http
            .post(format!("{}/sim/counters/reset", self.url))
            .send()
            .await
            .unwrap();
    }

    async fn calls(&self) -> (u64, u64) {
        let c: Value = self
            .http
            .get(format!("{}/sim/counters", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let calls = |e: &str| c["endpoints"][e]["calls"].as_u64().unwrap_or(0);
        (calls("batch-query-status"), calls("backup"))
    }

    async fn prepare_calls(&self) -> u64 {
        let c: Value = self
            .http
            .get(format!("{}/sim/counters", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        c["endpoints"]["prepare"]["calls"].as_u64().unwrap_or(0)
    }
}

fn id(i: usize) -> String {
    format!("kp{i:06}")
}

fn phones(n: usize) -> Vec<CloudPhone> {
    (0..n)
        .map(|i| {
            let mut p = CloudPhone::new(
                &format!("phone-{i:06}"),
                CloudPhoneSpec {
                    instance_id: id(i),
                    lifecycle: Lifecycle::BackedUp,
                    interrupt_streaming: false,
                    suspend: false,
                    account_ref: None,
                    user_id: None,
                    idle_timeout: None,
                    schedule_ref: None,
                },
            );
            p.metadata.namespace = Some(format!("fleet-{}", i % 10));
            p.metadata.uid = Some(format!("uid-{i}"));
            p.metadata.generation = Some(1);
            p
        })
        .collect()
}

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> f64 {
    support::memory_kib("self", "VmHWM:")
}

/// One steady tick, polled through [`Counted`] so that a profiler can count it alone:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Counted*poll*'` counts the
/// instructions of the tick's own thread (planning, comparing, decoding), not the HTTP workers'.
fn steady_tick(
    engine: &Engine<MemoryStore>,
) -> Counted<impl Future<Output = cloudphone_operator::reconciler::TickReport> + '_> {
    Counted(Box::pin(engine.tick()))
}

struct Counted<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}

async fn one(n: usize) -> Value {
    let baseline_kib = peak_rss_kib();
    let sim = Sim::start().await;
    sim.seed(n).await;
    let client = Client::new(
        ClientConfig {
            base_url: sim.url.clone(),
            ..ClientConfig::default()
        },
        Token::new("bench"),
    )
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones(n)));
    let engine = Engine::new(
        store.clone(),
        client.clone(),
        EngineConfig {
            plan: PlanConfig::default(),
            ..EngineConfig::default()
        },
    );

    // Converge a fleet that is all DataLoaded.
    let started = Instant::now();
    let mut ticks = 0;
    let mut status_calls_per_tick = Vec::new();
    loop {
        ticks += 1;
        let report = engine.tick().await;
        status_calls_per_tick.push(report.status_calls);
        let idle = store
            .snapshot()
            .iter()
            .all(|p| p.status.as_ref().is_some_and(|s| s.phase == Phase::Idle));
        if idle {
            break;
        }
        assert!(ticks < 200, "no convergence");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converge_secs = started.elapsed().as_secs_f64();
    let (status_calls, backup_calls) = sim.calls().await;

    // Steady state: nothing changes, so nothing is written. BENCH_STEADY_ROUNDS ticks (5), more
    // for a profiler's window.
    let rounds: u32 = std::env::var("BENCH_STEADY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cpu_before = support::cpu_secs("self");
    let wall = Instant::now();
    let mut steady_writes = 0;
    for _ in 0..rounds {
        steady_writes += steady_tick(&engine).await.statuses_written;
    }
    let steady_tick_secs = wall.elapsed().as_secs_f64() / rounds as f64;
    let steady_tick_cpu_secs = (support::cpu_secs("self") - cpu_before) / rounds as f64;
    let peak = peak_rss_kib();

    // BENCH_NAIVE=0 skips the naive design (its pass takes most of a run).
    let naive_wanted = std::env::var("BENCH_NAIVE").map_or(true, |v| v != "0");
    let (naive_calls, naive_secs) = if n <= NAIVE_MAX && naive_wanted {
        sim.seed(n).await;
        let (calls, secs) = naive(&client, n).await;
        (Some(calls), Some(secs))
    } else {
        (None, None)
    };
    json!({
        "phones": n,
        "status_calls_per_tick": status_calls_per_tick.iter().max(),
        "backup_calls": backup_calls,
        "ticks_to_converge": ticks,
        "converge_secs": converge_secs,
        "operator_calls": status_calls + backup_calls,
        "steady_tick_secs": steady_tick_secs,
        "steady_tick_cpu_secs": steady_tick_cpu_secs,
        "steady_writes": steady_writes,
        "peak_rss_mib": peak / 1024.0,
        "kib_per_phone": (peak - baseline_kib) / n as f64,
        "naive_calls": naive_calls,
        "naive_secs": naive_secs,
    })
}

/// The naive design: a reconcile per object, each with its own status call and, when the phone
/// needs it, its own backup call; passes repeat until every phone is Idle.
async fn naive(client: &Client, n: usize) -> (f64, f64) {
    let started = Instant::now();
    let mut calls = 0u64;
    let mut pending: Vec<String> = (0..n).map(id).collect();
    let mut requested = std::collections::HashSet::new();
    while !pending.is_empty() {
        let results: Vec<(String, Option<i64>, u64)> = stream::iter(pending.clone())
            .map(|id| {
                let requested = requested.contains(&id);
                async move {
                    let mut calls = 1;
                    let status = client
                        .query_status_chunk(std::slice::from_ref(&id))
                        .await
                        .ok()
                        .and_then(|r| r.observed.get(&id).copied());
                    if status == Some(2) && !requested {
                        calls += 1;
                        let _ = client.backup_chunk(std::slice::from_ref(&id)).await;
                    }
                    (id, status, calls)
                }
            })
            .buffer_unordered(NAIVE_WORKERS)
            .collect()
            .await;
        pending.clear();
        for (id, status, c) in results {
            calls += c;
            if status != Some(0) {
                if status == Some(2) {
                    requested.insert(id.clone());
                }
                pending.push(id);
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    (calls as f64, started.elapsed().as_secs_f64())
}

/// Ticks until every phone is Ready; the ticks, the seconds and the most status calls of a tick.
async fn converge(engine: &Engine<MemoryStore>, store: &MemoryStore) -> (u32, f64, u64) {
    let started = Instant::now();
    let mut ticks = 0;
    let mut status_calls = 0;
    loop {
        ticks += 1;
        let report = engine.tick().await;
        status_calls = status_calls.max(report.status_calls);
        let ready = store.snapshot().iter().all(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True")
        });
        if ready {
            return (ticks, started.elapsed().as_secs_f64(), status_calls);
        }
        assert!(ticks < 300, "no convergence");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A mixed fleet: even phones BackedUp (their instances DataLoaded), odd ones Loaded for one of 10
/// users (their instances Idle); converged, then every phone switched to the other lifecycle and
/// converged again; then steady ticks.
async fn mixed(n: usize) -> Value {
    let sim = Sim::start().await;
    sim.seed_with(n, |i| if i % 2 == 0 { 2 } else { 0 }).await;
    let client = Client::new(
        ClientConfig {
            base_url: sim.url.clone(),
            ..ClientConfig::default()
        },
        Token::new("bench"),
    )
    .unwrap();
    let fleet: Vec<CloudPhone> = phones(n)
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            if i % 2 == 1 {
                p.spec.lifecycle = Lifecycle::Loaded;
                p.spec.user_id = Some(format!("u{}", i % 10));
            }
            p
        })
        .collect();
    let store = Arc::new(MemoryStore::new(fleet));
    let engine = Engine::new(store.clone(), client, EngineConfig::default());
    let (ticks, secs, status_per_tick) = converge(&engine, &store).await;
    let (_, backups) = sim.calls().await;
    let prepares = sim.prepare_calls().await;
    let first =
        json!({"ticks": ticks, "secs": secs, "backup_calls": backups, "prepare_calls": prepares});
    for p in store.snapshot() {
        let mut p = (*p).clone();
        let (lifecycle, user) = match p.spec.lifecycle {
            Lifecycle::BackedUp => (
                Lifecycle::Loaded,
                Some(format!(
                    "u{}",
                    p.spec.instance_id[2..].parse::<usize>().unwrap_or(0) % 10
                )),
            ),
            _ => (Lifecycle::BackedUp, None),
        };
        p.spec.lifecycle = lifecycle;
        p.spec.user_id = user;
        p.metadata.generation = p.metadata.generation.map(|g| g + 1);
        store.insert(p);
    }
    let (ticks, secs, switch_status) = converge(&engine, &store).await;
    let (_, all_backups) = sim.calls().await;
    let all_prepares = sim.prepare_calls().await;
    let switch = json!({
        "ticks": ticks,
        "secs": secs,
        "backup_calls": all_backups - backups,
        "prepare_calls": all_prepares - prepares,
    });
    let rounds = 5;
    let cpu_before = support::cpu_secs("self");
    let wall = Instant::now();
    let mut steady_writes = 0;
    for _ in 0..rounds {
        steady_writes += steady_tick(&engine).await.statuses_written;
    }
    json!({
        "phones": n,
        "status_calls_per_tick": status_per_tick.max(switch_status),
        "first": first,
        "switch": switch,
        "steady_tick_secs": wall.elapsed().as_secs_f64() / rounds as f64,
        "steady_tick_cpu_secs": (support::cpu_secs("self") - cpu_before) / rounds as f64,
        "steady_writes": steady_writes,
    })
}
