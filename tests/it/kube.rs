//! The Kubernetes I/O of the operator against a mocked API server (kube's tower-test pattern): the
//! exact status write, no request for an unchanged phone, 404 and 409 handled, events on
//! transitions only, the metrics and health endpoints.

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneSpec, CloudPhoneStatus, Lifecycle, Phase};
use cloudphone_operator::metrics::Metrics;
use cloudphone_operator::plan::PhoneKey;
use cloudphone_operator::reconciler::{
    Engine, EngineConfig, FIELD_MANAGER, KubeStore, PhoneStore, WatchConfig, WriteError,
};
use cloudphone_operator::sim::{SimConfig, Simulator, code};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::lease::{FakeLease, LEASES};
use support::scenario::{Scenario, secret_json};
use support::{Recorded, Reply, Requests, fake_client_streaming, status_error};

const PHONES: &str = "/apis/cloudphone.io/v1alpha1/cloudphones";

/// A phone of the fake cluster's namespace, as its API server answers with it.
fn phone_json(name: &str, instance: &str) -> Value {
    support::cloudphone(name, instance)
        .namespace("fleet-a")
        .json()
}

fn phone(name: &str, instance: &str) -> CloudPhone {
    support::cloudphone(name, instance)
        .namespace("fleet-a")
        .build()
}

fn reporter() -> Reporter {
    Reporter {
        controller: "cloudphone-operator".into(),
        instance: Some("pod-a".into()),
    }
}

/// An API server holding `phones`: lists them, keeps watches open, accepts status patches and
/// events.
fn cluster(phones: Vec<Value>) -> (kube::Client, Requests) {
    let crd = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    cluster_with_crd(phones, crd)
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// Like [`cluster`], with this CloudPhone CRD installed.
fn cluster_with_crd(phones: Vec<Value>, crd: Value) -> (kube::Client, Requests) {
    fake_cluster(phones, crd, false, Extra::default())
}

/// What a fake cluster serves besides CloudPhones and the CRD: lists by path (their watches stay
/// open and silent), and the events that a path's first watch streams instead.
#[derive(Default)]
struct Extra {
    lists: Vec<(&'static str, Value)>,
    streams: Vec<(&'static str, tokio::sync::mpsc::UnboundedReceiver<Value>)>,
    /// The Lease of namespace `ops`, shared with another fake cluster's replica.
    lease: Option<Arc<FakeLease>>,
}

const ACCOUNTS: &str = "/apis/cloudphone.io/v1alpha1/cloudphoneaccounts";
const SCHEDULES: &str = "/apis/cloudphone.io/v1alpha1/cloudphoneschedules";

/// Like [`cluster`], but its watches stay silent: the watch cache never sees a write.
fn cluster_with_a_stuck_watch(phones: Vec<Value>) -> (kube::Client, Requests) {
    let crd = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    fake_cluster(phones, crd, true, Extra::default())
}

fn fake_cluster(
    phones: Vec<Value>,
    crd: Value,
    stuck_watch: bool,
    mut extra: Extra,
) -> (kube::Client, Requests) {
    // Each object's resourceVersion, bumped by every status write, which is refused with 409 when
    // fenced by any other version, and sent to every open watch as a MODIFIED event: the API
    // server's semantics.
    let mut objects: Vec<Value> = phones;
    let mut version: u64 = 10;
    for o in &mut objects {
        o["metadata"]["resourceVersion"] = json!(version.to_string());
    }
    let mut watchers: Vec<tokio::sync::mpsc::UnboundedSender<Value>> = Vec::new();
    // NB: every cluster keeps the Lease of namespace `ops`: `run` records its intents there with
    // or without leader election.
    let lease = extra.lease.take().unwrap_or_default();
    fake_client_streaming(move |r: &Recorded| {
        let watching = r.query().contains("watch=true");
        let path = r.path();
        if path.starts_with(LEASES) {
            let (code, body) = lease.handle(r);
            return Reply::Answer(code, body);
        }
        if r.method == "GET"
            && watching
            && let Some(i) = extra.streams.iter().position(|(p, _)| *p == path)
        {
            return Reply::Stream(extra.streams.remove(i).1);
        }
        if r.method == "GET"
            && let Some((_, list)) = extra.lists.iter().find(|(p, _)| *p == path)
        {
            return if watching {
                Reply::Hang
            } else {
                Reply::Answer(200, list.clone())
            };
        }
        if r.method == "PATCH" && path.starts_with(ACCOUNTS) && path.ends_with("/status") {
            let mut object = r.body.clone();
            object["metadata"]["resourceVersion"] = json!("7");
            return Reply::Answer(200, object);
        }
        match (r.method.as_str(), r.path()) {
            ("GET", CRDS) if watching => Reply::Hang,
            ("GET", PHONES) if watching && stuck_watch => Reply::Hang,
            ("GET", PHONES) if watching => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                watchers.push(tx);
                Reply::Stream(rx)
            }
            ("GET", CRDS) => Reply::Answer(
                200,
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinitionList",
                       "metadata": {"resourceVersion": "5"}, "items": [crd]}),
            ),
            ("GET", PHONES) => Reply::Answer(
                200,
                json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneList",
                       "metadata": {"resourceVersion": version.to_string()}, "items": objects}),
            ),
            ("PATCH", path) if path.ends_with("/status") => {
                let name = path.split('/').nth_back(1).unwrap_or_default();
                let Some(object) = objects.iter_mut().find(|p| p["metadata"]["name"] == name)
                else {
                    let (code, body) = status_error(404, "NotFound");
                    return Reply::Answer(code, body);
                };
                let fence = &r.body["metadata"]["resourceVersion"];
                if !fence.is_null() && *fence != object["metadata"]["resourceVersion"] {
                    let (code, body) = status_error(409, "Conflict");
                    return Reply::Answer(code, body);
                }
                version += 1;
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                object["status"] = r.body["status"].clone();
                let event = json!({"type": "MODIFIED", "object": object.clone()});
                watchers.retain(|w| w.send(event.clone()).is_ok());
                Reply::Answer(200, object.clone())
            }
            ("POST", path) if path.starts_with("/apis/events.k8s.io/v1/namespaces/") => {
                Reply::Answer(201, r.body.clone())
            }
            _ => {
                let (code, body) = status_error(404, "NotFound");
                Reply::Answer(code, body)
            }
        }
    })
}

fn requests(log: &Requests, method: &str, path_part: &str) -> Vec<Recorded> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == method && r.path().contains(path_part))
        .cloned()
        .collect()
}

/// Waits until the watch cache shows the version of the last successful status write.
async fn caught_up(store: &KubeStore, log: &Requests) {
    let writes = requests(log, "PATCH", "/status").len();
    for _ in 0..500 {
        let versions: Vec<u64> = store
            .snapshot()
            .iter()
            .filter_map(|p| p.metadata.resource_version.as_deref()?.parse().ok())
            .collect();
        // NB: the fake numbers versions from 10 up, one a write.
        if versions.iter().max() >= Some(&(10 + writes as u64)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the watch cache never showed the last write");
}

async fn synced_store(
    client: kube::Client,
    trigger_engine: bool,
) -> (Arc<KubeStore>, tokio::task::JoinHandle<()>) {
    let (store, watches) = KubeStore::new(
        client,
        WatchConfig {
            debounce: Duration::from_millis(10),
            ..WatchConfig::default()
        },
        reporter(),
    );
    let _ = trigger_engine;
    assert!(
        !store.is_synced(),
        "nothing is listed before the watches run"
    );
    let task = tokio::spawn(watches.run(Default::default()));
    tokio::time::timeout(Duration::from_secs(5), store.wait_until_synced())
        .await
        .expect("the watch cache syncs from the list");
    assert!(store.is_synced());
    (Arc::new(store), task)
}

#[tokio::test]
async fn a_status_write_is_a_forced_server_side_apply_of_status_only() {
    let _deadline =
        support::deadline("a_status_write_is_a_forced_server_side_apply_of_status_only");
    let (client, log) = Scenario::EveryStatusApplyAccepted.serve();
    let (store, _watches) = KubeStore::new(client, WatchConfig::default(), reporter());
    let status = CloudPhoneStatus {
        observed_generation: Some(1),
        instance_status: Some(2),
        phase: Phase::DataLoaded,
        ..CloudPhoneStatus::default()
    };
    let version = store
        .write_status(&phone("p1", "kp1"), Some("10"), &status)
        .await
        .unwrap();
    assert_eq!(version.as_deref(), Some("11"), "the version the write made");
    let sent = log.lock().unwrap()[0].clone();
    assert_eq!(sent.method, "PATCH");
    assert_eq!(
        sent.path(),
        "/apis/cloudphone.io/v1alpha1/namespaces/fleet-a/cloudphones/p1/status"
    );
    let query: Vec<&str> = sent.query().split('&').collect();
    assert!(
        query.contains(&format!("fieldManager={FIELD_MANAGER}").as_str()),
        "{query:?}"
    );
    assert!(query.contains(&"force=true"), "{query:?}");
    assert_eq!(
        sent.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        sent.body,
        json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhone",
               "metadata": {"resourceVersion": "10"},
               "status": {"observedGeneration": 1, "instanceStatus": 2, "phase": "DataLoaded"}}),
        "only status is sent, fenced by the version it was planned from: never spec or other metadata"
    );
}

#[tokio::test]
async fn a_deleted_phone_and_a_conflict_are_told_apart() {
    let _deadline = support::deadline("a_deleted_phone_and_a_conflict_are_told_apart");
    for (code, reason) in [(404, "NotFound"), (409, "Conflict"), (500, "InternalError")] {
        let (client, _log) = Scenario::EveryRequestFails(code, reason).serve();
        let (store, _watches) = KubeStore::new(client, WatchConfig::default(), reporter());
        let err = store
            .write_status(
                &phone("p1", "kp1"),
                Some("10"),
                &CloudPhoneStatus::default(),
            )
            .await
            .unwrap_err();
        let key = PhoneKey {
            namespace: "fleet-a".into(),
            name: "p1".into(),
        };
        match code {
            404 => assert_eq!(err, WriteError::Gone(key)),
            409 => assert_eq!(err, WriteError::Conflict(key)),
            _ => assert!(matches!(err, WriteError::Other { .. }), "{err:?}"),
        }
    }
}

async fn engine_on(store: Arc<KubeStore>, sim: &Simulator) -> Engine<KubeStore> {
    let vendor = support::sim_client(sim);
    Engine::new(store, vendor, EngineConfig::default())
}

#[tokio::test]
async fn the_engine_on_the_watch_cache_writes_only_what_changed_and_events_only_on_transitions() {
    let _deadline = support::deadline(
        "the_engine_on_the_watch_cache_writes_only_what_changed_and_events_only_on_transitions",
    );
    let sim = Simulator::start(
        SimConfig {
            instances: vec![
                ("kp1".into(), code::DATA_LOADED),
                ("kp2".into(), code::IDLE),
            ],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (client, log) = cluster(vec![phone_json("p1", "kp1"), phone_json("p2", "kp2")]);
    let (store, _watches) = synced_store(client, false).await;
    assert_eq!(store.snapshot().len(), 2);
    let engine = engine_on(store.clone(), &sim).await;

    let first = engine.tick().await;
    assert_eq!(first.backups_requested, 1);
    let patches = requests(&log, "PATCH", "/status");
    // p1: one write, the intent before the backup call, carrying the call's request id (the vendor
    // accepted it: nothing more to write); p2: its first observation.
    assert_eq!(patches.len(), 2, "{patches:#?}");
    let p1: Vec<&Recorded> = patches
        .iter()
        .filter(|r| r.path().ends_with("/p1/status"))
        .collect();
    assert_eq!(p1.len(), 1);
    assert_eq!(p1[0].body["status"]["backup"]["inFlight"], true);
    assert!(p1[0].body["status"]["backup"]["requestId"].is_string());
    assert!(
        p1[0].body["status"]["backup"].get("taskId").is_none(),
        "the vendor's ids are not known before the call"
    );
    let events = requests(&log, "POST", "/events");
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e.body["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "BackupRequested").count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "BackedUp").count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(events[0].body["regarding"]["kind"], "CloudPhone");
    assert!(
        events[0].body["regarding"].get("resourceVersion").is_none(),
        "a resourceVersion in the reference makes every repeat a new event: {}",
        events[0].body["regarding"]
    );

    // The vendor now shows p1 BackingUp: one write, no event, no backup call.
    caught_up(&store, &log).await;
    let second = engine.tick().await;
    assert_eq!(
        (second.statuses_written, second.backup_calls),
        (1, 0),
        "{second:?}"
    );
    let last = requests(&log, "PATCH", "/status").pop().unwrap();
    assert_eq!(last.body["status"]["phase"], "BackingUp");
    assert!(
        last.body["status"]["backup"]["taskId"].is_string(),
        "the vendor's task id rides on the next write: {}",
        last.body["status"]
    );
    assert_eq!(requests(&log, "POST", "/events").len(), events.len());
    // Nothing changed at the vendor: the engine must not write again, publish again, or back up
    // again.
    for _ in 0..2 {
        caught_up(&store, &log).await;
        let steady = engine.tick().await;
        assert_eq!(
            (steady.statuses_written, steady.backup_calls),
            (0, 0),
            "{steady:?}"
        );
    }
    assert_eq!(requests(&log, "PATCH", "/status").len(), 3);
    assert_eq!(requests(&log, "POST", "/events").len(), events.len());
    // Spec and metadata are never written.
    assert!(requests(&log, "PUT", PHONES).is_empty());
    assert!(log.lock().unwrap().iter().all(|r| r.method == "GET"
        || r.path().ends_with("/status")
        || r.path().contains("/events")));
}

#[tokio::test]
async fn a_phone_whose_cached_object_lags_the_last_write_waits_for_the_watch() {
    let _deadline =
        support::deadline("a_phone_whose_cached_object_lags_the_last_write_waits_for_the_watch");
    let sim = Simulator::start(
        SimConfig {
            instances: vec![("kp1".into(), code::DATA_LOADED)],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (client, log) = cluster_with_a_stuck_watch(vec![phone_json("p1", "kp1")]);
    let (store, _watches) = synced_store(client, false).await;
    let engine = engine_on(store.clone(), &sim).await;
    let first = engine.tick().await;
    assert_eq!((first.backups_requested, first.statuses_written), (1, 1));
    // The vendor now shows the backup running, but the cache still shows the object from before
    // the intent: planned from it, every write would be fenced off (409) and the vendor's ids
    // lost; the phone waits instead, with no write and no vendor call of its own.
    sim.seed([("kp1", code::BACKING_UP)]);
    for _ in 0..3 {
        let held = engine.tick().await;
        assert_eq!(
            (held.statuses_written, held.backup_calls, held.write_errors),
            (0, 0, 0),
            "{held:?}"
        );
    }
    assert_eq!(requests(&log, "PATCH", "/status").len(), 1);
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    let _deadline = support::deadline("metrics_and_health_endpoints_answer");
    use cloudphone_operator::http::{Readiness, router};
    struct Flag(std::sync::atomic::AtomicBool);
    impl Readiness for Flag {
        fn check(&self) -> Result<(), cloudphone_operator::http::NotReady> {
            if self.0.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err("the CloudPhone watch cache has not synced yet".into())
            }
        }
    }
    use cloudphone_operator::koophone::{CallObserver, Endpoint};
    let metrics = Arc::new(Metrics::new());
    metrics.backups_requested.inc_by(7);
    metrics.observe(Endpoint::QueryStatus, "ok", Duration::from_millis(30));
    metrics
        .status_writes
        .get_or_create(&cloudphone_operator::metrics::OutcomeLabels { outcome: "ok" })
        .inc();
    metrics.leader.set(1);
    metrics.set_fleet(cloudphone_operator::metrics::Fleet {
        phones: vec![(
            cloudphone_operator::metrics::PhoneLabels {
                namespace: "fleet-a".into(),
                phase: Phase::Idle.as_str(),
                lifecycle: "BackedUp",
                effective_lifecycle: "BackedUp",
            },
            5,
        )],
        oldest_unbacked: 42.0,
        longest_not_ready: 7.0,
        wave_late: 0,
    });
    let ready = Arc::new(Flag(false.into()));
    let app = router(metrics, ready.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{addr}{path}")).send();

    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let not_ready = get("/readyz").await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.text().await.unwrap().contains("watch cache"));
    ready.0.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);

    let text = get("/metrics").await.unwrap().text().await.unwrap();
    let samples = parse_exposition(&text);
    let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(value("cloudphone_backups_requested_total"), Some(7.0));
    assert_eq!(value("cloudphone_leader"), Some(1.0));
    assert_eq!(
        value(
            "cloudphone_phones{namespace=\"fleet-a\",phase=\"Idle\",lifecycle=\"BackedUp\",effective_lifecycle=\"BackedUp\"}"
        ),
        Some(5.0)
    );
    assert_eq!(value("cloudphone_oldest_unbacked_seconds"), Some(42.0));
    assert_eq!(value("cloudphone_longest_not_ready_seconds"), Some(7.0));
    assert_eq!(
        value(
            "cloudphone_vendor_calls_total{endpoint=\"batch-query-status\",code=\"ok\",account=\"default\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value("cloudphone_vendor_call_duration_seconds_count{endpoint=\"batch-query-status\"}"),
        Some(1.0)
    );
    for family in [
        "cloudphone_tick_duration_seconds",
        "cloudphone_vendor_calls",
        "cloudphone_vendor_call_duration_seconds",
        "cloudphone_status_writes",
        "cloudphone_last_successful_tick_timestamp_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no {family} in\n{text}"
        );
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

/// Parses the samples of a Prometheus/OpenMetrics text exposition: `name{labels} value` lines.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {l:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// Serves one watch event after the initial list of p1, and tells whether an early tick fired.
async fn fires_on(event: Value) -> bool {
    use cloudphone_operator::reconciler::Trigger;
    let (client, _log) = Scenario::PhonesThenOneWatchEvent {
        phones: vec![phone_json("p1", "kp1")],
        event,
    }
    .serve();
    let (store, watches) = KubeStore::new(
        client,
        WatchConfig {
            debounce: Duration::from_millis(10),
            ..WatchConfig::default()
        },
        reporter(),
    );
    let trigger = Trigger::default();
    tokio::spawn(watches.run(trigger.clone()));
    store.wait_until_synced().await;
    // Wait until the cache shows the event, then give the debounce ample time.
    for _ in 0..200 {
        let seen = store
            .snapshot()
            .iter()
            .any(|p| p.metadata.resource_version.as_deref() == Some("11"));
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_millis(500), trigger.fired())
        .await
        .is_ok()
}

fn event(kind: &str, name: &str, generation: i64, status: Option<Value>) -> Value {
    let mut object = phone_json(name, "kp1");
    object["metadata"]["resourceVersion"] = json!("11");
    object["metadata"]["generation"] = json!(generation);
    if let Some(status) = status {
        object["status"] = status;
    }
    json!({"type": kind, "object": object})
}

#[tokio::test]
async fn a_create_triggers_an_early_tick() {
    let _deadline = support::deadline("a_create_triggers_an_early_tick");
    assert!(fires_on(event("ADDED", "p2", 1, None)).await);
}

#[tokio::test]
async fn a_reconcile_request_triggers_an_early_tick() {
    let _deadline = support::deadline("a_reconcile_request_triggers_an_early_tick");
    let mut requested = event("MODIFIED", "p1", 1, None);
    requested["object"]["metadata"]["annotations"] =
        json!({"cloudphone.io/reconcile-requested-at": "2026-11-25T10:00:00Z"});
    assert!(fires_on(requested).await);
}

#[tokio::test]
async fn a_load_until_set_by_a_session_service_triggers_an_early_tick() {
    let _deadline =
        support::deadline("a_load_until_set_by_a_session_service_triggers_an_early_tick");
    let mut requested = event("MODIFIED", "p1", 1, None);
    requested["object"]["metadata"]["annotations"] =
        json!({"cloudphone.io/load-until": "2026-11-25T18:00:00Z"});
    assert!(fires_on(requested).await);
}

#[tokio::test]
async fn a_spec_change_triggers_an_early_tick() {
    let _deadline = support::deadline("a_spec_change_triggers_an_early_tick");
    assert!(fires_on(event("MODIFIED", "p1", 2, None)).await);
}

#[tokio::test]
async fn a_status_only_update_does_not_trigger_a_tick() {
    let _deadline = support::deadline("a_status_only_update_does_not_trigger_a_tick");
    assert!(!fires_on(event("MODIFIED", "p1", 1, Some(json!({"phase": "Idle"})))).await);
}

#[test]
fn lifecycle_round_trips_through_json() {
    let p = phone("p1", "kp1");
    assert_eq!(
        p.spec,
        CloudPhoneSpec {
            instance_id: "kp1".into(),
            lifecycle: Lifecycle::BackedUp,
            interrupt_streaming: false,
            suspend: false,
            account_ref: None,
            user_id: None,
            idle_timeout: None,
            schedule_ref: None,
        }
    );
}

#[tokio::test]
async fn the_credentials_secret_is_loaded_and_its_rotation_followed() {
    let _deadline = support::deadline("the_credentials_secret_is_loaded_and_its_rotation_followed");
    use cloudphone_operator::koophone::{Auth, CredentialsError};
    use cloudphone_operator::run::credentials;
    let (client, log) = Scenario::SecretRotatedFromTokenToAccessKey.serve();
    let auth = Arc::new(Auth::new(Err(CredentialsError::SecretMissing(
        "ops/koophone (not read yet)".into(),
    ))));
    tokio::spawn(credentials::watch(
        client,
        "ops".into(),
        "koophone".into(),
        auth.clone(),
    ));
    for _ in 0..400 {
        if auth.replacements() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        auth.replacements(),
        2,
        "loaded once, then once more on the rotation; the re-list of an unchanged version is not reloaded"
    );
    assert_eq!(auth.status(), Ok("access key"));
    let list = log.lock().unwrap()[0].clone();
    assert!(
        list.query()
            .contains("fieldSelector=metadata.name%3Dkoophone"),
        "{}",
        list.uri
    );
}

#[tokio::test]
async fn a_credentials_secret_at_a_new_version_with_the_same_data_is_not_reloaded() {
    let _deadline = support::deadline(
        "a_credentials_secret_at_a_new_version_with_the_same_data_is_not_reloaded",
    );
    use cloudphone_operator::koophone::{Auth, CredentialsError};
    use cloudphone_operator::run::credentials;
    let (client, log) = Scenario::SecretReappliedThenRotated.serve();
    let auth = Arc::new(Auth::new(Err(CredentialsError::SecretMissing(
        "ops/koophone (not read yet)".into(),
    ))));
    tokio::spawn(credentials::watch(
        client,
        "ops".into(),
        "koophone".into(),
        auth.clone(),
    ));
    // NB: a third watch request follows the second's event: both events were handled.
    let watches = || {
        requests(&log, "GET", "/secrets")
            .iter()
            .filter(|r| r.query().contains("watch=true"))
            .count()
    };
    for _ in 0..400 {
        if watches() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(watches() >= 3, "the watch never saw both events");
    assert_eq!(
        auth.replacements(),
        2,
        "loaded, then reloaded for the rotation only: the same data at a new version keeps the IAM token and the breaker"
    );
}

#[tokio::test]
async fn a_missing_credentials_secret_is_reported() {
    let _deadline = support::deadline("a_missing_credentials_secret_is_reported");
    use cloudphone_operator::koophone::{Auth, Token};
    use cloudphone_operator::run::credentials;
    let (client, _log) = Scenario::NoSecret.serve();
    let auth = Arc::new(Auth::token(Token::new("placeholder")));
    tokio::spawn(credentials::watch(
        client,
        "ops".into(),
        "koophone".into(),
        auth.clone(),
    ));
    for _ in 0..200 {
        if auth.status().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let why = auth.status().unwrap_err().to_string();
    assert!(
        why.contains("ops/koophone") && why.contains("does not exist"),
        "{why}"
    );
}

/// `run` on a mocked cluster with the simulator, no leader election and a quick tick; send on the
/// returned channel to shut it down.
fn spawn_run(
    client: kube::Client,
    tick_interval: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), cloudphone_operator::run::RunError>>,
) {
    spawn_run_with(
        client,
        &["--simulate", &format!("--tick-interval={tick_interval}")],
    )
}

/// The flags of `run` on a mocked cluster: `flags`, and unless they say otherwise no leader
/// election, metrics on a free port and the Lease in namespace `ops`.
fn run_args(flags: &[&str]) -> cloudphone_operator::run::RunArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: cloudphone_operator::run::RunArgs,
    }
    let mut argv = vec!["run"];
    for default in [
        "--leader-election=false",
        "--metrics-addr=127.0.0.1:0",
        "--lease-namespace=ops",
    ] {
        let flag = default.split('=').next().unwrap();
        if !flags.iter().any(|f| f.starts_with(flag)) {
            argv.push(default);
        }
    }
    argv.extend_from_slice(flags);
    Cli::try_parse_from(argv).unwrap().run
}

/// A port free now on 127.0.0.1, for a listener the test must reach.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `run` on a mocked cluster with these flags, no leader election and its metrics on a free port.
fn spawn_run_with(
    client: kube::Client,
    flags: &[&str],
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), cloudphone_operator::run::RunError>>,
) {
    let args = run_args(flags);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(cloudphone_operator::run::run_with_client(
        args,
        client,
        async {
            let _ = stopped.await;
        },
    ));
    (stop, running)
}

/// Stops a [`spawn_run`] and checks that it exits cleanly within its shutdown bound.
async fn stop_run(
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<(), cloudphone_operator::run::RunError>>,
) {
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run stops within its shutdown bound")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn run_serves_a_cluster_end_to_end_and_exits_cleanly_on_shutdown() {
    let _deadline =
        support::deadline("run_serves_a_cluster_end_to_end_and_exits_cleanly_on_shutdown");
    let (client, log) = cluster(vec![phone_json("p1", "kp1"), phone_json("p2", "kp2")]);
    let (stop, running) = spawn_run(client, "200ms");
    // Both phones are backed up in the simulated vendor, and their status says so.
    let mut backed_up = false;
    for _ in 0..200 {
        let patches = requests(&log, "PATCH", "/status");
        backed_up = ["p1", "p2"].iter().all(|name| {
            patches.iter().any(|r| {
                r.path().ends_with(&format!("/{name}/status"))
                    && r.body["status"]["backup"]["requestId"].is_string()
            })
        });
        if backed_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(backed_up, "{:#?}", requests(&log, "PATCH", "/status"));
    stop_run(stop, running).await;
    // Without leader election all the same, the intents were recorded in the Lease (created with
    // no holder) before the first intent was written.
    let log_now = log.lock().unwrap().clone();
    let recorded = log_now
        .iter()
        .position(|r| {
            r.method == "POST"
                && r.path() == LEASES
                && r.body["metadata"]["annotations"]["cloudphone.io/intents-until"].is_string()
        })
        .expect("the intents record was written");
    assert!(log_now[recorded].body["spec"]["holderIdentity"].is_null());
    let first_intent = log_now
        .iter()
        .position(|r| r.method == "PATCH" && r.body["status"]["backup"]["requestedAt"].is_string())
        .unwrap();
    assert!(recorded < first_intent, "the record comes first");
    // It listed once for the preflight, then watched; it wrote nothing but status, events and the
    // Lease.
    let first = log.lock().unwrap()[0].clone();
    assert!(
        first.method == "GET" && first.path() == PHONES && first.query().contains("limit=1"),
        "{first:?}"
    );
    assert!(
        log.lock().unwrap().iter().all(|r| r.method == "GET"
            || r.path().ends_with("/status")
            || r.path().contains("/events")
            || r.path().starts_with(LEASES)),
        "only status, events and the Lease are written"
    );
}

#[tokio::test]
async fn an_older_crd_stops_the_ticks() {
    let _deadline = support::deadline("an_older_crd_stops_the_ticks");
    let mut old = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    old["metadata"]["annotations"] = json!({});
    let (client, log) = cluster_with_crd(vec![phone_json("p1", "kp1")], old);
    let (stop, running) = spawn_run(client, "100ms");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !requests(&log, "GET", CRDS).is_empty(),
        "the CRD was never read"
    );
    assert!(
        requests(&log, "PATCH", "/status").is_empty(),
        "a tick ran on a CRD older than the binary: {:#?}",
        requests(&log, "PATCH", "/status")
    );
    stop_run(stop, running).await;
}

#[test]
fn the_watch_cache_keeps_only_what_the_engine_reads() {
    // Objects exactly as a real API server returned them: kubectl's last-applied annotation, two
    // managers' managed fields, a full status.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cloudphones-real.json"
    );
    let text = std::fs::read_to_string(path).expect("tests/fixtures/cloudphones-real.json");
    let list: Value = serde_json::from_str(&text).unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for item in items {
        let original: CloudPhone = serde_json::from_value(item.clone()).unwrap();
        let mut phone = original.clone();
        phone
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("cloudphone.io/reconcile-requested-at".into(), "now".into());
        phone
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("team".into(), "a".into());
        phone.metadata.finalizers = Some(vec!["example.com/keep".into()]);
        phone.metadata.owner_references = Some(vec![Default::default()]);
        let mut hostile = phone.clone();
        cloudphone_operator::reconciler::slim(&mut phone);
        assert_eq!(phone.metadata.labels, None, "the engine reads no label");
        assert_eq!(phone.metadata.finalizers, None);
        assert_eq!(phone.metadata.owner_references, None);
        // A value over its bound is replaced by a marker: never used, never held in full.
        hostile
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "cloudphone.io/reconcile-requested-at".into(),
                "x".repeat(100_000),
            );
        cloudphone_operator::reconciler::slim(&mut hostile);
        assert!(hostile.reconcile_request_invalid());
        assert_eq!(hostile.reconcile_requested(), None);
        assert!(serde_json::to_vec(&hostile).unwrap().len() < 10_000);
        assert!(
            phone
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
        );
        let annotations = phone.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["cloudphone.io/reconcile-requested-at"],
            "only the operator's own annotations stay"
        );
        assert_eq!(
            phone.status, original.status,
            "the next apply needs every status field"
        );
        assert_eq!(phone.spec, original.spec);
        assert_eq!(phone.metadata.uid, original.metadata.uid);
        assert_eq!(
            phone.metadata.resource_version,
            original.metadata.resource_version
        );
        let before = serde_json::to_vec(&original).unwrap().len();
        let after = serde_json::to_vec(&phone).unwrap().len();
        assert!(
            after * 2 < before,
            "{after} bytes kept of {before}: the cache should hold less than half"
        );
    }
}

#[tokio::test]
async fn a_refused_list_at_start_names_the_scope_and_the_fix_and_keeps_the_api_error() {
    let _deadline = support::deadline(
        "a_refused_list_at_start_names_the_scope_and_the_fix_and_keeps_the_api_error",
    );
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: cloudphone_operator::run::RunArgs,
    }
    let args = Cli::try_parse_from(["run", "--simulate", "--namespace=fleet-a"])
        .unwrap()
        .run;
    let (client, _log) = Scenario::EveryRequestFails(403, "Forbidden").serve();
    let err = cloudphone_operator::run::preflight(&client, &args)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("namespaces fleet-a"), "{text}");
    assert!(text.contains("RBAC"), "{text}");
    let cause = std::error::Error::source(&err).expect("the API error is kept as the cause");
    assert!(cause.to_string().contains("Forbidden"), "{cause}");
}

/// A Secret of the operator's namespace (`default` under the mocked client) holding a token.
fn account_secret(name: &str, version: &str, token: &str) -> Value {
    let mut secret = secret_json(version, &[("token", token)]);
    secret["metadata"]["name"] = json!(name);
    secret["metadata"]["namespace"] = json!("default");
    secret
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "3"}, "items": items})
}

/// The last status each object was patched with, by path.
fn last_status(log: &Requests, name_path: &str) -> Option<Value> {
    requests(log, "PATCH", name_path)
        .into_iter()
        .rfind(|r| r.path().ends_with(&format!("{name_path}/status")))
        .map(|r| r.body["status"].clone())
}

fn ready_reason(status: &Value) -> (String, String) {
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (
        ready["status"].as_str().unwrap_or_default().to_owned(),
        ready["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn run_calls_each_phone_under_its_account_writes_account_statuses_and_follows_rotation() {
    let _deadline = support::deadline(
        "run_calls_each_phone_under_its_account_writes_account_statuses_and_follows_rotation",
    );
    let sim = support::simulator(vec![
        ("kp0".into(), code::DATA_LOADED),
        ("kp1".into(), code::DATA_LOADED),
        ("tenant-a/kp1".into(), code::DATA_LOADED),
    ])
    .token("t")
    .tenant("tenant-a", "token-a")
    .backup_duration(Duration::from_millis(100))
    .start()
    .await;
    let phones = vec![
        support::cloudphone("own", "kp0").namespace("ops").json(),
        support::cloudphone("p1", "kp1")
            .namespace("team-a")
            .account("a")
            .json(),
        support::cloudphone("p2", "kp2")
            .namespace("team-b")
            .account("a")
            .json(),
        support::cloudphone("p3", "kp3")
            .namespace("team-a")
            .account("evil")
            .json(),
    ];
    let accounts = list(
        "CloudPhoneAccountList",
        vec![
            json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneAccount",
                   "metadata": {"name": "a", "generation": 1, "resourceVersion": "5"},
                   "spec": {"credentialsSecretRef": {"name": "koophone-a"},
                            "namespaceSelector": {"matchLabels": {"team": "a"}}}}),
            json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneAccount",
                   "metadata": {"name": "evil", "generation": 1, "resourceVersion": "6"},
                   "spec": {"credentialsSecretRef": {"name": "koophone-a"}, "namespaces": ["team-a"],
                            "vendorUrl": "https://collector.evil.example"}}),
        ],
    );
    let namespaces = list(
        "NamespaceList",
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}),
        ],
    );
    let (rotate, rotations) = tokio::sync::mpsc::unbounded_channel();
    let extra = Extra {
        lists: vec![
            (ACCOUNTS, accounts),
            ("/api/v1/namespaces", namespaces),
            (
                "/api/v1/namespaces/default/secrets",
                list(
                    "SecretList",
                    vec![account_secret("koophone-a", "1", "token-a")],
                ),
            ),
        ],
        streams: vec![("/api/v1/namespaces/default/secrets", rotations)],
        lease: None,
    };
    let crd = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    let (client, log) = fake_cluster(phones, crd, false, extra);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let (stop, running) = spawn_run_with(
        client,
        &[
            &format!("--vendor-url={}", sim.url()),
            &format!("--token-file={}", token.display()),
            "--tick-interval=100ms",
        ],
    );

    let account_ready = |name: &str| {
        last_status(&log, &format!("{ACCOUNTS}/{name}"))
            .map(|s| (ready_reason(&s), s["phones"].clone()))
    };
    let mut settled = false;
    for _ in 0..400 {
        settled = sim.instance("tenant-a/kp1").unwrap().status == code::IDLE
            && account_ready("a") == Some((("True".into(), "CredentialsLoaded".into()), json!(1)))
            && account_ready("evil").is_some_and(|(r, _)| r.1 == "VendorUrlNotAllowed");
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        settled,
        "a: {:?}, evil: {:?}, tenant-a/kp1: {:?}",
        account_ready("a"),
        account_ready("evil"),
        sim.instance("tenant-a/kp1")
    );
    assert_eq!(
        sim.instance("kp1").unwrap().status,
        code::DATA_LOADED,
        "the operator's own tenant's kp1 is another instance: never backed up for p1"
    );
    let phone_reason = |ns: &str, name: &str| {
        last_status(&log, &format!("/namespaces/{ns}/cloudphones/{name}"))
            .map(|s| ready_reason(&s).1)
    };
    assert_eq!(
        phone_reason("team-b", "p2").as_deref(),
        Some("AccountNotAllowed")
    );
    assert_eq!(
        phone_reason("team-a", "p3").as_deref(),
        Some("AccountNotReady")
    );
    let evil = account_ready("evil").unwrap().0;
    assert_eq!(evil, ("False".into(), "VendorUrlNotAllowed".into()));
    let account_events: Vec<(String, String)> = requests(
        &log,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
    )
    .iter()
    .map(|r| {
        (
            r.body["regarding"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            r.body["reason"].as_str().unwrap_or_default().to_owned(),
        )
    })
    .collect();
    assert_eq!(
        account_events,
        [("evil".to_owned(), "VendorUrlNotAllowed".to_owned())],
        "one event, on the account that cannot be used, in namespace default"
    );

    // The account's Secret rotates (the old token revoked at the vendor): its next calls carry
    // the new token, and nothing else changes.
    sim.add_tenant_token("tenant-a", "token-a2");
    sim.revoke_token("token-a");
    rotate
        .send(json!({"type": "MODIFIED", "object": account_secret("koophone-a", "2", "token-a2")}))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (calls, refused) = (
        sim.counters()
            .calls_by_tenant
            .get("tenant-a")
            .copied()
            .unwrap_or(0),
        sim.counters().unauthorized,
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        sim.counters().calls_by_tenant["tenant-a"] > calls,
        "account a's calls go on with the rotated token"
    );
    assert_eq!(sim.counters().unauthorized, refused, "and none is refused");
    stop_run(stop, running).await;
}

#[tokio::test]
async fn a_supervised_task_that_ends_stops_run_with_an_error_naming_it() {
    let _deadline =
        support::deadline("a_supervised_task_that_ends_stops_run_with_an_error_naming_it");
    let (client, log) = cluster(vec![phone_json("p1", "kp1")]);
    let port = free_port();
    let metrics_addr = format!("--metrics-addr=127.0.0.1:{port}");
    let args = run_args(&["--simulate", "--tick-interval=100ms", &metrics_addr]);
    let mut tasks = cloudphone_operator::run::tasks::Tasks::new();
    let (end, ended) = tokio::sync::oneshot::channel::<()>();
    tasks.spawn("test watch", async {
        let _ = ended.await;
    });
    let running = tokio::spawn(cloudphone_operator::run::run_supervising(
        args,
        client,
        std::future::pending(),
        tasks,
    ));
    // The operator runs: it ticks and serves.
    let mut ticked = false;
    for _ in 0..200 {
        ticked = !requests(&log, "PATCH", "/status").is_empty();
        if ticked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ticked, "run never ticked");
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    assert!(reqwest::get(&metrics_url).await.is_ok());

    // One of its tasks ends, as a watch whose stream ended would: run stops and says which.
    end.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run stops once a supervised task ends")
        .unwrap();
    let err = result.expect_err("a task that ended is an error: the process exits non-zero");
    assert!(
        matches!(err, cloudphone_operator::run::RunError::TaskEnded(_)),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("the test watch task ended") && message.contains("restarts"),
        "{message}"
    );
    // It stopped everything on its way out: the listener is closed.
    assert!(
        reqwest::get(&metrics_url).await.is_err(),
        "the HTTP listener still answers after run returned"
    );
}

/// The samples of one replica's `/metrics`, by series (`name{labels}`).
async fn scrape(port: u16) -> Option<Vec<(String, f64)>> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?;
    Some(parse_exposition(&response.text().await.ok()?))
}

/// A series' name and its labels but `pod`, as written in tests/chart/alerts.test.yaml.
fn series_key(series: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let labels = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().trim_matches('"').to_owned())
        })
        .filter(|(k, _)| k != "pod")
        .collect();
    (name.to_owned(), labels)
}

#[tokio::test]
async fn two_replicas_a_leader_and_a_standby_export_what_the_alerts_expect() {
    let _deadline =
        support::deadline("two_replicas_a_leader_and_a_standby_export_what_the_alerts_expect");
    let lease = Arc::new(FakeLease::default());
    let crd = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    // p3: a Loaded phone whose prepare (requested by an earlier leader) op-a sees completed (the
    // simulator's instances are loaded), so that op-a counts prepares too.
    let preparing = {
        let requested = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
        support::cloudphone("p3", "kp3")
            .namespace("fleet-a")
            .loaded("u1")
            .status(CloudPhoneStatus {
                prepare: Some(Box::new(cloudphone_operator::api::ActionStatus {
                    requested_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        requested,
                    )),
                    in_flight: true,
                    attempts: 1,
                    ..Default::default()
                })),
                ..Default::default()
            })
            .json()
    };
    let replica = |identity: &'static str, port: u16| {
        let phones = vec![
            phone_json("p1", "kp1"),
            phone_json("p2", "kp2"),
            preparing.clone(),
        ];
        let extra = Extra {
            lease: Some(lease.clone()),
            ..Extra::default()
        };
        let (client, log) = fake_cluster(phones, crd.clone(), false, extra);
        let args = run_args(&[
            "--simulate",
            "--tick-interval=100ms",
            "--leader-election=true",
            "--lease-namespace=ops",
            &format!("--identity={identity}"),
            &format!("--metrics-addr=127.0.0.1:{port}"),
        ]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(cloudphone_operator::run::run_with_client(
            args,
            client,
            async {
                let _ = stopped.await;
            },
        ));
        (stop, running, log)
    };
    let (port_a, port_b) = (free_port(), free_port());
    let (stop_a, running_a, log_a) = replica("op-a", port_a);
    // op-a leads and backs both phones up before op-b starts.
    let mut leading = false;
    for _ in 0..400 {
        let patches = requests(&log_a, "PATCH", "/status");
        leading = lease.holder().as_deref() == Some("op-a")
            && ["p1", "p2"].iter().all(|name| {
                patches.iter().any(|r| {
                    r.path().ends_with(&format!("/{name}/status"))
                        && r.body["status"]["backup"]["requestId"].is_string()
                })
            });
        if leading {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        leading,
        "op-a never led and backed up: {:?}",
        lease.holder()
    );
    // NB: the intent is written before the call: wait for the call's outcome to be counted too.
    let mut counted = false;
    for _ in 0..400 {
        counted = scrape(port_a).await.is_some_and(|samples| {
            [
                "cloudphone_backups_total{outcome=\"accepted\"}",
                "cloudphone_prepares_total{outcome=\"completed\"}",
            ]
            .iter()
            .all(|series| samples.iter().any(|(s, _)| s == series))
        });
        if counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(counted, "op-a never counted its backups and p3's prepare");
    let (stop_b, running_b, log_b) = replica("op-b", port_b);
    let mut b = None;
    for _ in 0..400 {
        b = scrape(port_b).await;
        // It has tried the Lease (and found it held).
        if b.is_some() && !requests(&log_b, "GET", LEASES).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = scrape(port_a).await.expect("op-a serves /metrics");
    let b = scrape(port_b).await.or(b).expect("op-b serves /metrics");
    assert_eq!(lease.holder().as_deref(), Some("op-a"));
    assert!(
        requests(&log_b, "PATCH", "/status").is_empty(),
        "the standby wrote a status"
    );
    let value = |samples: &[(String, f64)], series: &str| {
        samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
    };
    assert_eq!(value(&a, "cloudphone_leader"), Some(1.0));
    assert_eq!(value(&b, "cloudphone_leader"), Some(0.0));
    // Both replicas' credentials are loaded: neither says otherwise, so the critical alert
    // `min(cloudphone_credentials_usable) == 0` stays quiet on a healthy two-replica install.
    assert_eq!(value(&a, "cloudphone_credentials_usable"), Some(1.0));
    assert_eq!(
        value(&b, "cloudphone_credentials_usable"),
        Some(1.0),
        "the standby's credentials are loaded too"
    );
    assert_eq!(
        value(&a, "cloudphone_vendor_breaker_open{account=\"default\"}"),
        Some(0.0)
    );

    // The alert rules' test feeds the series these replicas really export: the standby's (op-b)
    // exactly, series and values; the leader's (op-a) by shape (name and label names).
    let rule = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/cloudphone-operator/templates/prometheusrule.yaml"
    ))
    .unwrap();
    let alerted: std::collections::BTreeSet<&str> = rule
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("cloudphone_"))
        .collect();
    let test: yaml_serde::Value = yaml_serde::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/chart/alerts.test.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let exported = |samples: &[(String, f64)]| {
        samples
            .iter()
            .map(|(series, v)| (series_key(series), *v))
            .filter(|((name, _), _)| alerted.contains(name.as_str()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (exported(&a), exported(&b));
    for (g, group) in test["tests"].as_sequence().unwrap().iter().enumerate() {
        let mut fed_b = std::collections::BTreeMap::new();
        let mut shapes_a = std::collections::BTreeSet::new();
        for input in group["input_series"].as_sequence().unwrap() {
            let series = input["series"].as_str().unwrap();
            let key = series_key(series);
            if series.contains("pod=\"op-b\"") {
                let first: f64 = input["values"]
                    .as_str()
                    .unwrap()
                    .split(['x', '+', ' '])
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                fed_b.insert(key, first);
            } else if series.contains("pod=\"op-a\"") {
                shapes_a.insert((key.0, key.1.into_keys().collect::<Vec<_>>()));
            }
        }
        assert_eq!(
            fed_b, b,
            "test group {g}: the standby op-b's series as the test feeds them (left) and as a standby exports them (right)"
        );
        let leader_shapes: std::collections::BTreeSet<_> = a
            .keys()
            .map(|(name, labels)| (name.clone(), labels.keys().cloned().collect::<Vec<_>>()))
            .collect();
        for shape in &shapes_a {
            assert!(
                leader_shapes.contains(shape),
                "test group {g}: the leader exports no series shaped {shape:?}: {leader_shapes:?}"
            );
        }
    }
    stop_run(stop_b, running_b).await;
    stop_run(stop_a, running_a).await;
}

/// `/readyz` of the replica serving on `port`: its status and body, once it answers.
async fn readyz(port: u16) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test]
async fn readyz_names_an_account_feed_that_never_synced_and_stays_ready() {
    let _deadline =
        support::deadline("readyz_names_an_account_feed_that_never_synced_and_stays_ready");
    // The CloudPhoneAccount CRD is missing (as after a `helm upgrade` that skipped crds/): the
    // API server answers 404 to its list.
    let (client, _log) = cluster(vec![phone_json("p1", "kp1")]);
    let port = free_port();
    let metrics_addr = format!("--metrics-addr=127.0.0.1:{port}");
    let (stop, running) = spawn_run_with(
        client,
        &["--simulate", "--tick-interval=100ms", &metrics_addr],
    );
    let mut seen = None;
    for _ in 0..400 {
        seen = readyz(port).await;
        if seen
            .as_ref()
            .is_some_and(|(s, body)| *s == 200 && body.contains("cloudphoneaccounts: "))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, body) = seen.expect("/readyz answers");
    assert_eq!(status, 200, "the feed is a note, not readiness: {body}");
    assert!(
        body.starts_with("ok\n")
            && body.contains("note: the CloudPhoneAccount feed has not synced")
            && body.contains("spec.accountRef wait")
            && body.contains("failing: cloudphoneaccounts: failed to perform initial object list")
            && body.contains("404")
            && body.contains("note: the CloudPhoneSchedule watch has not synced")
            && body.contains("Scheduled phones are held"),
        "{body}"
    );
    stop_run(stop, running).await;

    // The accounts, schedules, namespaces and Secrets list: the notes go.
    let extra = Extra {
        lists: vec![
            (ACCOUNTS, list("CloudPhoneAccountList", vec![])),
            (SCHEDULES, list("CloudPhoneScheduleList", vec![])),
            ("/api/v1/namespaces", list("NamespaceList", vec![])),
            (
                "/api/v1/namespaces/default/secrets",
                list("SecretList", vec![]),
            ),
        ],
        ..Extra::default()
    };
    let crd = serde_json::to_value(cloudphone_operator::api::crd()).unwrap();
    let (client, _log) = fake_cluster(vec![phone_json("p1", "kp1")], crd, false, extra);
    let port = free_port();
    let metrics_addr = format!("--metrics-addr=127.0.0.1:{port}");
    let (stop, running) = spawn_run_with(
        client,
        &["--simulate", "--tick-interval=100ms", &metrics_addr],
    );
    let mut seen = None;
    for _ in 0..400 {
        seen = readyz(port).await;
        if seen
            .as_ref()
            .is_some_and(|(s, body)| *s == 200 && body == "ok\n")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, Some((200, "ok\n".to_owned())));
    stop_run(stop, running).await;
}
