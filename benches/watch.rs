//! Watch-path benchmark: the real `run` wiring (watcher, reflector, status writes, events) in its
//! own process, against a canned Kubernetes API server (in this process) and the vendor simulator
//! (a third process), so that the operator's memory is measured through kube-runtime's watch cache
//! with objects shaped as a real API server returns them.
//!
//!     cargo bench --bench watch                  # 1,000, 10,000, 50,000 and 100,000 phones
//!     cargo bench --bench watch -- --one 10000   # one size, as a JSON line
//!
//! The canned API server answers LIST with pagination (`limit`, `continue`), WATCH as a stream of
//! events with a bookmark, status patches with their `resourceVersion` precondition (409 on a stale
//! one), and can end every watch with a 410 Gone, so that each size also measures a relist. Objects
//! are built on `tests/fixtures/cloudphones-real.json`: kubectl's last-applied annotation, its
//! managed fields, and, once the operator has written a status, the operator's managed fields too.

mod support;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const SIZES: [usize; 4] = [1_000, 10_000, 50_000, 100_000];
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/cloudphones-real.json"
);
const PHONES: &str = "/apis/cloudphone.io/v1alpha1/cloudphones";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let n: usize = args[i + 1].parse().expect("--one takes a fleet size");
        println!("{}", runtime.block_on(one(n)));
        return;
    }
    for n in SIZES {
        println!("{}", runtime.block_on(one(n)));
    }
}

/// The canned API server's objects and watchers.
#[derive(Default)]
struct Api {
    objects: BTreeMap<(String, String), Value>,
    version: u64,
    watchers: Vec<mpsc::UnboundedSender<Bytes>>,
    /// The operator's managed-fields entry, added to an object on its first status write.
    operator_fields: Value,
    lists: u64,
    patches: u64,
    conflicts: u64,
    events: u64,
}

type Shared = Arc<Mutex<Api>>;

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    text.push(b'\n');
    Bytes::from(text)
}

fn status_error(code: u16, reason: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "code": code, "message": reason});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

async fn phones(State(api): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let (tx, rx) = mpsc::unbounded_channel();
        let version = {
            let mut api = api.lock().unwrap();
            api.watchers.push(tx.clone());
            api.version
        };
        let bookmark = json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhone",
            "metadata": {"resourceVersion": version.to_string()}});
        let _ = tx.send(line("BOOKMARK", &bookmark));
        let stream = tokio_stream_from(rx).map(Ok::<Bytes, std::io::Error>);
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let mut api = api.lock().unwrap();
    api.lists += 1;
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let items: Vec<Value> = api
        .objects
        .values()
        .skip(start)
        .take(limit)
        .cloned()
        .collect();
    let next = start + items.len();
    let mut metadata = json!({"resourceVersion": api.version.to_string()});
    if next < api.objects.len() {
        metadata["continue"] = json!(next.to_string());
    }
    axum::Json(
        json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneList",
        "metadata": metadata, "items": items}),
    )
    .into_response()
}

/// An mpsc receiver as a stream, without another dependency.
fn tokio_stream_from(
    rx: mpsc::UnboundedReceiver<Bytes>,
) -> impl futures::Stream<Item = Bytes> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

async fn patch_status(
    State(api): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return status_error(400, "BadRequest");
    };
    let mut api = api.lock().unwrap();
    api.patches += 1;
    let version = api.version + 1;
    let operator_fields = api.operator_fields.clone();
    let Some(object) = api.objects.get_mut(&(namespace, name)) else {
        return status_error(404, "NotFound");
    };
    let fence = &body["metadata"]["resourceVersion"];
    if !fence.is_null() && *fence != object["metadata"]["resourceVersion"] {
        api.conflicts += 1;
        return status_error(409, "Conflict");
    }
    object["status"] = body["status"].clone();
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    let fields = object["metadata"]["managedFields"].as_array_mut().unwrap();
    if !fields.iter().any(|f| f["manager"] == "cloudphone-operator") {
        fields.insert(0, operator_fields);
    }
    let object = object.clone();
    api.version = version;
    let event = line("MODIFIED", &object);
    api.watchers.retain(|w| w.send(event.clone()).is_ok());
    axum::Json(object).into_response()
}

async fn crds(Query(q): Query<HashMap<String, String>>) -> Response {
    let crd = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let stream = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    axum::Json(
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinitionList",
        "metadata": {"resourceVersion": "1"}, "items": [crd]}),
    )
    .into_response()
}

async fn events(State(api): State<Shared>, body: Bytes) -> Response {
    api.lock().unwrap().events += 1;
    (StatusCode::CREATED, body).into_response()
}

/// Ends every watch with a 410 Gone, as an API server does when a watch falls behind compaction:
/// the reflector relists, holding the old cache and the new list at once.
fn expire_watches(api: &Shared) {
    let mut api = api.lock().unwrap();
    let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": "Expired", "code": 410, "message": "too old resource version"});
    for w in api.watchers.drain(..) {
        let _ = w.send(line("ERROR", &gone));
    }
}

/// `n` CloudPhones shaped as the fixture's (kubectl-applied, no status yet), in ten namespaces.
fn objects(n: usize) -> (BTreeMap<(String, String), Value>, Value) {
    let text = std::fs::read_to_string(FIXTURE).expect("tests/fixtures/cloudphones-real.json");
    let list: Value = serde_json::from_str(&text).unwrap();
    let template = list["items"][0].clone();
    let fields = template["metadata"]["managedFields"].as_array().unwrap();
    let operator_fields = fields
        .iter()
        .find(|f| f["manager"] == "cloudphone-operator")
        .cloned()
        .unwrap();
    let kubectl_fields = fields
        .iter()
        .find(|f| f["manager"] != "cloudphone-operator")
        .cloned()
        .unwrap();
    let mut out = BTreeMap::new();
    for i in 0..n {
        let (namespace, name, instance) =
            (format!("fleet-{}", i % 10), format!("phone-{i:06}"), id(i));
        let mut o = template.clone();
        o.as_object_mut().unwrap().remove("status");
        let m = &mut o["metadata"];
        m["name"] = json!(name);
        m["namespace"] = json!(namespace);
        m["uid"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
        m["resourceVersion"] = json!("1");
        m["creationTimestamp"] = json!("2026-11-01T00:00:00Z");
        m["managedFields"] = json!([kubectl_fields.clone()]);
        // NB: labels as a team's manifests carry them; the operator reads none.
        m["labels"] =
            json!({"app.kubernetes.io/part-of": "phone-fleet", "team": format!("team-{}", i % 10)});
        m["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!(format!(
            "{{\"apiVersion\":\"cloudphone.io/v1alpha1\",\"kind\":\"CloudPhone\",\"metadata\":{{\"annotations\":{{}},\"name\":\"{name}\",\"namespace\":\"{namespace}\"}},\"spec\":{{\"instanceId\":\"{instance}\",\"lifecycle\":\"BackedUp\"}}}}\n"
        ));
        o["spec"]["instanceId"] = json!(instance);
        out.insert((namespace, name), o);
    }
    (out, operator_fields)
}

fn id(i: usize) -> String {
    format!("kp{i:06}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn status_kib(&self, field: &str) -> f64 {
        support::memory_kib(&self.0.id().to_string(), field)
    }

    fn cpu_secs(&self) -> f64 {
        support::cpu_secs(&self.0.id().to_string())
    }
}

/// One value of the operator's /metrics, or 0.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let Ok(response) = http.get(url).send().await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Phones in phase Idle, summed over namespaces and lifecycles.
async fn idle_phones(http: &reqwest::Client, url: &str) -> f64 {
    let Ok(response) = http.get(url).send().await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cloudphone_phones{") && l.contains("phase=\"Idle\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn one(n: usize) -> Value {
    let (objects, operator_fields) = objects(n);
    let api: Shared = Arc::new(Mutex::new(Api {
        objects,
        version: 1,
        operator_fields,
        ..Api::default()
    }));
    let app = Router::new()
        .route(PHONES, get(phones))
        .route(
            "/apis/cloudphone.io/v1alpha1/namespaces/{namespace}/cloudphones/{name}/status",
            patch(patch_status),
        )
        .route(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            get(crds),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events",
            post(events),
        )
        .fallback(|| async { status_error(404, "NotFound") })
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: http://127.0.0.1:{api_port}\n\
             users:\n- name: bench\n  user:\n    token: bench\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n    namespace: default\n\
             current-context: bench\n"
        ),
    )
    .unwrap();

    let exe = env!("CARGO_BIN_EXE_cloudphone-operator");
    let sim_port = free_port();
    let _sim = Proc(
        Command::new(exe)
            .args(["simulate", "--listen", &format!("127.0.0.1:{sim_port}")])
            .args([
                "--auto-create",
                "DataLoaded",
                "--latency",
                "20ms",
                "--backup-duration",
                "2s",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator starts"),
    );
    let metrics_port = free_port();
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let started = Instant::now();
    // NB: BENCH_OPERATOR_WRAPPER runs the operator under a profiler (e.g. `heaptrack -o /tmp/ht`);
    // /proc figures are then the wrapper's.
    let wrapper: Vec<String> = std::env::var("BENCH_OPERATOR_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let operator = Proc(
        command
            // NB: a deadline far above the interval: at 50,000 phones the first ticks take longer
            // than three 2s intervals, and the bench measures convergence, not the deadline.
            .args([
                "run",
                "--leader-election=false",
                "--tick-interval",
                "2s",
                "--tick-deadline",
                "120s",
            ])
            .args(["--vendor-url", &format!("http://127.0.0.1:{sim_port}")])
            .args(["--token-env", "BENCH_VENDOR_TOKEN"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("BENCH_VENDOR_TOKEN", "t")
            .envs(
                std::env::var("BENCH_OPERATOR_MALLOC")
                    .ok()
                    .map(|v| ("MALLOC_ARENA_MAX", v)),
            )
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the operator starts"),
    );
    let http = reqwest::Client::new();

    // Converge: every phone Idle.
    let mut first_tick = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let count = metric(&http, &metrics, "cloudphone_tick_duration_seconds_count").await;
        if first_tick.is_none() && count >= 1.0 {
            first_tick =
                Some(metric(&http, &metrics, "cloudphone_tick_duration_seconds_sum").await);
        }
        let idle = idle_phones(&http, &metrics).await;
        if idle as usize == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no convergence in 10 minutes"
        );
    }
    let converged = started.elapsed().as_secs_f64();
    let writes = metric(
        &http,
        &metrics,
        "cloudphone_status_writes_total{outcome=\"ok\"}",
    )
    .await;
    let events = api.lock().unwrap().events as f64;
    let peak_converge_kib = operator.status_kib("VmHWM:");
    let heap_peak_converge = metric(&http, &metrics, "cloudphone_heap_peak_bytes").await;

    // Steady: a few ticks with nothing to do.
    let ticks_before = metric(&http, &metrics, "cloudphone_tick_duration_seconds_count").await;
    let sum_before = metric(&http, &metrics, "cloudphone_tick_duration_seconds_sum").await;
    let cpu_before = operator.cpu_secs();
    // NB: ten ticks or so: CPU time is read in 10 ms steps. The live heap is sampled throughout:
    // its least is the fleet at rest between ticks, its most a steady tick's working set.
    let (mut heap_rest, mut heap_tick) = (f64::MAX, 0.0f64);
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(20) {
        // NB: every 250 ms: each scrape costs the operator a little CPU, counted in the tick's.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let live = metric(&http, &metrics, "cloudphone_heap_bytes").await;
        if live > 0.0 {
            heap_rest = heap_rest.min(live);
            heap_tick = heap_tick.max(live);
        }
    }
    let ticks =
        metric(&http, &metrics, "cloudphone_tick_duration_seconds_count").await - ticks_before;
    let tick_wall = (metric(&http, &metrics, "cloudphone_tick_duration_seconds_sum").await
        - sum_before)
        / ticks.max(1.0);
    let tick_cpu = (operator.cpu_secs() - cpu_before) / ticks.max(1.0);
    let steady_writes = metric(
        &http,
        &metrics,
        "cloudphone_status_writes_total{outcome=\"ok\"}",
    )
    .await
        - writes;
    let steady_kib = operator.status_kib("VmRSS:");

    // Relist: every watch ends with 410 Gone; the reflector lists the whole fleet again.
    let lists_before = api.lock().unwrap().lists;
    let relist_started = Instant::now();
    expire_watches(&api);
    let pages = n.div_ceil(500) as u64;
    while api.lock().unwrap().lists < lists_before + pages {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            relist_started.elapsed() < Duration::from_secs(120),
            "no relist"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let relist_secs = relist_started.elapsed().as_secs_f64() - 3.0;
    let peak_kib = operator.status_kib("VmHWM:");
    let after_relist_kib = operator.status_kib("VmRSS:");
    let conflicts = api.lock().unwrap().conflicts;
    let heap_peak = metric(&http, &metrics, "cloudphone_heap_peak_bytes").await;
    drop(operator);

    let per_phone = |kib: f64| kib * 1024.0 / n as f64 / 1024.0;
    json!({
        "phones": n,
        "converge_secs": converged,
        "first_tick_secs": first_tick.unwrap_or(0.0),
        "writes_per_phone": writes / n as f64,
        "events_per_phone": events / n as f64,
        "peak_rss_mib_converge": peak_converge_kib / 1024.0,
        "steady_rss_mib": steady_kib / 1024.0,
        "steady_kib_per_phone": per_phone(steady_kib),
        "peak_rss_mib": peak_kib / 1024.0,
        "peak_kib_per_phone": per_phone(peak_kib),
        "after_relist_rss_mib": after_relist_kib / 1024.0,
        "heap_steady_mib": heap_rest / 1048576.0,
        "heap_steady_tick_mib": heap_tick / 1048576.0,
        "heap_peak_mib_converge": heap_peak_converge / 1048576.0,
        "heap_peak_mib": heap_peak / 1048576.0,
        "relist_secs": relist_secs,
        "steady_tick_wall_secs": tick_wall,
        "steady_tick_cpu_secs": tick_cpu,
        "steady_writes": steady_writes,
        "conflicts": conflicts,
    })
}
