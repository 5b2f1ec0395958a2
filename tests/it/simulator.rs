//! The simulator answers like the vendor (koophone-api.md), checked with raw HTTP requests.

use crate::support;

use cloudphone_operator::sim::{SimConfig, Simulator, Timings, code};
use serde_json::{Value, json};
use std::time::Duration;

async fn start(instances: Vec<(&str, i64)>, timings: Timings) -> Simulator {
    Simulator::start(
        SimConfig {
            instances: instances
                .into_iter()
                .map(|(i, s)| (i.to_owned(), s))
                .collect(),
            timings,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

async fn post(sim: &Simulator, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .header("X-Auth-Token", "t")
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_documented_example_request_gets_the_documented_shape() {
    let _deadline = support::deadline("the_documented_example_request_gets_the_documented_shape");
    let sim = start(vec![("a44uhlf7", 0), ("efjy72gs", 3)], Timings::default()).await;
    let (status, body) = post(
        &sim,
        "/v1/instances/batch-query-status",
        json!({"instance_ids": ["a44uhlf7", "efjy72gs"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"status_results": [
            {"instance_id": "a44uhlf7", "status": 0},
            {"instance_id": "efjy72gs", "status": 3},
        ]}, "error_code": "0", "error_msg": "ok"})
    );
}

#[tokio::test]
async fn bad_requests_get_the_vendors_400_bodies() {
    let _deadline = support::deadline("bad_requests_get_the_vendors_400_bodies");
    let sim = start(vec![("a1", 2)], Timings::default()).await;
    let many: Vec<String> = (0..101).map(|i| format!("i{i}")).collect();
    for body in [
        json!({"instance_ids": many}),
        json!({"instance_ids": ["x".repeat(33)]}),
        json!({"instance_ids": []}),
        json!({"instance_ids": "a1"}),
        json!({"instance_ids": [1, 2]}),
        json!({"ids": ["a1"]}),
    ] {
        for path in ["/v1/instances/batch-query-status", "/v1/instances/backup"] {
            let (status, answer) = post(&sim, path, body.clone()).await;
            assert_eq!(status, 400, "{path} {body}");
            assert_eq!(answer["error_code"], "KOOPHONE.API.1000", "{path} {body}");
            assert!(
                answer["error_msg"]
                    .as_str()
                    .unwrap()
                    .contains("instance_ids")
            );
        }
    }
    assert_eq!(
        sim.instance("a1").unwrap().status,
        2,
        "no refused call changed anything"
    );
}

#[tokio::test]
async fn a_backup_runs_the_state_machine_to_idle() {
    let _deadline = support::deadline("a_backup_runs_the_state_machine_to_idle");
    let timings = Timings {
        backup_duration: Duration::from_millis(200),
        ..Timings::default()
    };
    let sim = start(vec![("a1", code::DATA_LOADED)], timings).await;
    let (status, body) = post(
        &sim,
        "/v1/instances/backup",
        json!({"instance_ids": ["a1"]}),
    )
    .await;
    assert_eq!((status, body["error_code"].clone()), (200, json!("0")));
    assert_eq!(body["data"]["cmd_jobs"][0]["instance_id"], "a1");
    let (_, again) = post(
        &sim,
        "/v1/instances/backup",
        json!({"instance_ids": ["a1"]}),
    )
    .await;
    assert_eq!(again["error_code"], "KOOPHONE.API.2006");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(sim.instance("a1").unwrap().status, code::IDLE);
    let a1 = sim.instance("a1").unwrap();
    assert_eq!((a1.backup_requests, a1.backups_started), (2, 1));
}

#[tokio::test]
async fn the_admin_api_seeds_instances_and_reports_counters() {
    let _deadline = support::deadline("the_admin_api_seeds_instances_and_reports_counters");
    let sim = start(vec![], Timings::default()).await;
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/sim/instances", sim.url()))
        .json(&json!([{"instance_id": "n1", "status": "Streaming"}, {"instance_id": "n2", "status": 7}]))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let bad = http
        .put(format!("{}/sim/instances", sim.url()))
        .json(&json!([{"instance_id": "n3", "status": "Asleep"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("n3"));
    let (_, body) = post(
        &sim,
        "/v1/instances/batch-query-status",
        json!({"instance_ids": ["n1", "n2"]}),
    )
    .await;
    assert_eq!(body["data"]["status_results"][0]["status"], 3);
    let counters: Value = http
        .get(format!("{}/sim/counters", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["endpoints"]["batch-query-status"]["calls"], 1);
    assert_eq!(counters["endpoints"]["batch-query-status"]["ids"], 2);
    let faults = http
        .put(format!("{}/sim/faults", sim.url()))
        .json(&json!({"server_error_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 400);
    assert!(faults.text().await.unwrap().contains("server_error_rate"));
}

/// A status query with this token: (HTTP status, the ids listed).
async fn listed_with(sim: &Simulator, token: &str, ids: &[&str]) -> (u16, Vec<String>) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/instances/batch-query-status", sim.url()))
        .header("X-Auth-Token", token)
        .header("x-request-id", uuid::Uuid::new_v4().to_string())
        .json(&json!({"instance_ids": ids}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    let listed = body["data"]["status_results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{}={}", r["instance_id"].as_str().unwrap(), r["status"]))
        .collect();
    (status, listed)
}

#[tokio::test]
async fn each_tenants_token_sees_only_its_own_instances() {
    let _deadline = support::deadline("each_tenants_token_sees_only_its_own_instances");
    let sim = support::simulator(vec![
        ("kp1".into(), code::IDLE),
        ("tenant-a/kp1".into(), code::DATA_LOADED),
        ("tenant-a/kpa".into(), code::DATA_LOADED),
        ("tenant-b/kpb".into(), code::BACKING_UP),
    ])
    .token("t")
    .tenant("tenant-a", "token-a")
    .tenant("tenant-b", "token-b")
    .start()
    .await;
    let ids = ["kp1", "kpa", "kpb"];
    assert_eq!(
        listed_with(&sim, "t", &ids).await,
        (200, vec!["kp1=0".to_owned()])
    );
    assert_eq!(
        listed_with(&sim, "token-a", &ids).await,
        (200, vec!["kp1=2".to_owned(), "kpa=2".to_owned()]),
        "tenant A's kp1 is its own instance, and B's kpb is not listed"
    );
    assert_eq!(
        listed_with(&sim, "token-b", &ids).await,
        (200, vec!["kpb=4".to_owned()])
    );
    sim.revoke_token("token-a");
    assert_eq!(listed_with(&sim, "token-a", &ids).await.0, 401);
    let calls = sim.counters().calls_by_tenant;
    assert_eq!(
        (calls["default"], calls["tenant-a"], calls["tenant-b"]),
        (1, 1, 1),
        "authenticated calls per tenant"
    );
}

// ---- prepare (koophone-api.md, "Prepare instances"): the other half of backup ----

/// An instance as the admin API lists it (`GET /sim/instances?id=`), counters included.
async fn admin_instance(sim: &Simulator, id: &str) -> Value {
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/sim/instances?id={id}", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed[id].clone()
}

async fn admin_counters(sim: &Simulator) -> Value {
    reqwest::Client::new()
        .get(format!("{}/sim/counters", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn prepare(sim: &Simulator, ids: &[&str]) -> (u16, Value) {
    post(
        sim,
        "/v1/instances/prepare",
        json!({"user_id": "u-123", "instance_ids": ids}),
    )
    .await
}

/// `data.status` of prepare-progress for one instance, and the whole answer.
async fn progress(sim: &Simulator, id: &str) -> (Value, Value) {
    let (status, body) = post(
        sim,
        "/v1/instances/prepare-progress",
        json!({"user_id": "u-123", "instance_id": id}),
    )
    .await;
    assert_eq!((status, &body["error_code"]), (200, &json!("0")), "{body}");
    (body["data"]["status"].clone(), body)
}

async fn statuses(sim: &Simulator, ids: &[&str]) -> Vec<Value> {
    let (_, body) = post(
        sim,
        "/v1/instances/batch-query-status",
        json!({"instance_ids": ids}),
    )
    .await;
    body["data"]["status_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect()
}

fn prepare_timings(queue: u64, restore: u64) -> Timings {
    Timings {
        prepare_queue_delay: Duration::from_millis(queue),
        restore_duration: Duration::from_millis(restore),
        ..Timings::default()
    }
}

#[tokio::test]
async fn a_prepare_of_idle_instances_queues_them_then_restores_and_loads_them() {
    let _deadline =
        support::deadline("a_prepare_of_idle_instances_queues_them_then_restores_and_loads_them");
    let sim = start(
        vec![("a1", code::IDLE), ("a2", code::IDLE), ("a3", code::IDLE)],
        prepare_timings(600, 600),
    )
    .await;
    let ids = ["a1", "a2", "a3"];
    let (status, body) = prepare(&sim, &ids).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"error_code": "0", "error_msg": "ok", "data": {"status_list": [
            {"instance_id": "a1", "status": 1},
            {"instance_id": "a2", "status": 1},
            {"instance_id": "a3", "status": 1},
        ]}})
    );
    // Queued: the instances keep showing Idle, prepare-progress says queued.
    assert_eq!(statuses(&sim, &ids).await, vec![json!(0); 3]);
    let (queued, answer) = progress(&sim, "a3").await;
    assert_eq!(queued, 1, "{answer}");
    assert!(
        answer["data"]["waitingCount"]
            .as_u64()
            .is_some_and(|n| n <= 2),
        "at most a1 and a2 wait ahead of a3: {answer}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(statuses(&sim, &ids).await, vec![json!(1); 3], "Restoring");
    assert_eq!(progress(&sim, "a1").await.0, 2, "restoring");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(statuses(&sim, &ids).await, vec![json!(2); 3], "DataLoaded");
    assert_eq!(progress(&sim, "a1").await.0, 0, "normal");
    for id in ids {
        let instance = admin_instance(&sim, id).await;
        assert_eq!(
            (
                &instance["prepare_requests"],
                &instance["prepares_started"],
                &instance["prepare_requests_while_busy"]
            ),
            (&json!(1), &json!(1), &json!(0)),
            "{id}: {instance}"
        );
    }
    let counters = admin_counters(&sim).await;
    assert_eq!(counters["endpoints"]["prepare"]["calls"], 1, "{counters}");
    assert_eq!(counters["endpoints"]["prepare"]["ids"], 3, "{counters}");
    assert_eq!(
        counters["endpoints"]["prepare-progress"]["calls"], 3,
        "{counters}"
    );
    assert_eq!(counters["prepares_started"], 3, "{counters}");
    assert_eq!(sim.counters().calls("prepare"), 1);
    assert_eq!(sim.counters().calls("prepare-progress"), 3);
}

#[tokio::test]
async fn a_second_prepare_while_queued_or_restoring_is_counted_and_starts_nothing() {
    let _deadline = support::deadline(
        "a_second_prepare_while_queued_or_restoring_is_counted_and_starts_nothing",
    );
    let sim = start(vec![("a1", code::IDLE)], prepare_timings(500, 5000)).await;
    assert_eq!(prepare(&sim, &["a1"]).await.0, 200);
    let (status, again) = prepare(&sim, &["a1"]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["status_list"][0]["status"], 1, "{again}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(statuses(&sim, &["a1"]).await, vec![json!(1)], "Restoring");
    let (_, third) = prepare(&sim, &["a1"]).await;
    assert_eq!(third["data"]["status_list"][0]["status"], 1, "{third}");
    let instance = admin_instance(&sim, "a1").await;
    assert_eq!(
        (
            &instance["prepare_requests"],
            &instance["prepares_started"],
            &instance["prepare_requests_while_busy"]
        ),
        (&json!(3), &json!(1), &json!(2)),
        "{instance}"
    );
    let a1 = sim.instance("a1").unwrap();
    assert_eq!(
        (
            a1.prepare_requests,
            a1.prepares_started,
            a1.prepare_requests_while_busy
        ),
        (3, 1, 2)
    );
}

#[tokio::test]
async fn a_prepare_naming_an_unknown_instance_is_refused_whole_with_4001() {
    let _deadline =
        support::deadline("a_prepare_naming_an_unknown_instance_is_refused_whole_with_4001");
    let sim = start(vec![("a1", code::IDLE)], Timings::default()).await;
    let (status, body) = prepare(&sim, &["a1", "ghost"]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "KOOPHONE.API.4001", "{body}");
    assert!(
        body["error_msg"].as_str().unwrap().contains("ghost"),
        "{body}"
    );
    let instance = admin_instance(&sim, "a1").await;
    assert_eq!(instance["status"], 0, "nothing started: {instance}");
    assert_eq!(instance["prepares_started"], 0, "{instance}");
    assert_eq!(instance["prepare_requests"], 1, "{instance}");
    let (status, body) = post(
        &sim,
        "/v1/instances/prepare-progress",
        json!({"user_id": "u-123", "instance_id": "ghost"}),
    )
    .await;
    assert_eq!(
        (status, &body["error_code"]),
        (400, &json!("KOOPHONE.API.4001")),
        "{body}"
    );
}

#[tokio::test]
async fn bad_prepare_requests_get_the_vendors_400_bodies() {
    let _deadline = support::deadline("bad_prepare_requests_get_the_vendors_400_bodies");
    let sim = start(vec![("a1", code::IDLE)], Timings::default()).await;
    let many: Vec<String> = (0..101).map(|i| format!("i{i}")).collect();
    let long = "x".repeat(33);
    for (body, names) in [
        (
            json!({"user_id": "u", "instance_ids": many}),
            "instance_ids",
        ),
        (
            json!({"user_id": "u", "instance_ids": [long]}),
            "instance_ids",
        ),
        (json!({"user_id": "u", "instance_ids": []}), "instance_ids"),
        (
            json!({"user_id": "u", "instance_ids": "a1"}),
            "instance_ids",
        ),
        (json!({"user_id": "u"}), "instance_ids"),
        (json!({"instance_ids": ["a1"]}), "user_id"),
        (json!({"user_id": "", "instance_ids": ["a1"]}), "user_id"),
        (json!({"user_id": long, "instance_ids": ["a1"]}), "user_id"),
        (json!({"user_id": 7, "instance_ids": ["a1"]}), "user_id"),
    ] {
        let (status, answer) = post(&sim, "/v1/instances/prepare", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error_code"], "KOOPHONE.API.1000", "{body}");
        assert!(
            answer["error_msg"].as_str().unwrap().contains(names),
            "{body}: {answer}"
        );
    }
    for (body, names) in [
        (json!({"user_id": "u"}), "instance_id"),
        (
            json!({"user_id": "u", "instance_id": ["a1"]}),
            "instance_id",
        ),
        (json!({"user_id": "u", "instance_id": long}), "instance_id"),
        (json!({"instance_id": "a1"}), "user_id"),
    ] {
        let (status, answer) = post(&sim, "/v1/instances/prepare-progress", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error_code"], "KOOPHONE.API.1000", "{body}");
        assert!(
            answer["error_msg"].as_str().unwrap().contains(names),
            "{body}: {answer}"
        );
    }
    let no_request_id = reqwest::Client::new()
        .post(format!("{}/v1/instances/prepare", sim.url()))
        .header("X-Auth-Token", "t")
        .json(&json!({"user_id": "u", "instance_ids": ["a1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_request_id.status(), 400);
    let answer: Value = no_request_id.json().await.unwrap();
    assert_eq!(answer["error_code"], "KOOPHONE.API.0002");
    let instance = admin_instance(&sim, "a1").await;
    assert_eq!(
        (&instance["status"], &instance["prepares_started"]),
        (&json!(0), &json!(0)),
        "no refused call started anything: {instance}"
    );
    assert_eq!(
        admin_counters(&sim).await["endpoints"]["prepare"]["outcomes"]["refused"],
        10
    );
}

#[tokio::test]
async fn a_prepare_answers_each_instances_state_and_starts_only_what_needs_a_restore() {
    let _deadline = support::deadline(
        "a_prepare_answers_each_instances_state_and_starts_only_what_needs_a_restore",
    );
    let sim = start(
        vec![
            ("loaded", code::DATA_LOADED),
            ("loaded7", code::DATA_LOADED_ALT),
            ("streaming", code::STREAMING),
            ("backing", code::BACKING_UP),
            ("failed", code::RESTORE_FAILED),
        ],
        Timings {
            backup_duration: Duration::from_secs(60),
            restore_duration: Duration::from_secs(60),
            ..Timings::default()
        },
    )
    .await;
    let ids = ["loaded", "loaded7", "streaming", "backing", "failed"];
    let (status, body) = prepare(&sim, &ids).await;
    assert_eq!(status, 200, "{body}");
    let answered: Vec<Value> = body["data"]["status_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        answered,
        vec![json!(0), json!(0), json!(0), json!(3), json!(1)],
        "{body}"
    );
    assert_eq!(
        statuses(&sim, &ids).await,
        vec![json!(2), json!(7), json!(3), json!(4), json!(1)],
        "only the failed restore is retried; the backup is not followed by a restore"
    );
    assert_eq!(progress(&sim, "backing").await.0, 3);
    assert_eq!(progress(&sim, "streaming").await.0, 0);
    for id in ["loaded", "loaded7", "streaming", "backing"] {
        assert_eq!(
            admin_instance(&sim, id).await["prepares_started"],
            0,
            "{id}"
        );
    }
    assert_eq!(admin_instance(&sim, "failed").await["prepares_started"], 1);
}

#[tokio::test]
async fn a_certain_restore_failure_rate_ends_in_restore_failed() {
    let _deadline = support::deadline("a_certain_restore_failure_rate_ends_in_restore_failed");
    let sim = start(
        vec![("a1", code::IDLE)],
        Timings {
            restore_failure_rate: 1.0,
            ..prepare_timings(0, 300)
        },
    )
    .await;
    assert_eq!(prepare(&sim, &["a1"]).await.0, 200);
    assert_eq!(statuses(&sim, &["a1"]).await, vec![json!(1)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        statuses(&sim, &["a1"]).await,
        vec![json!(code::RESTORE_FAILED)]
    );
    assert_eq!(progress(&sim, "a1").await.0, -1, "failed");
}

#[tokio::test]
async fn a_backup_of_an_instance_being_prepared_is_refused_2005() {
    let _deadline = support::deadline("a_backup_of_an_instance_being_prepared_is_refused_2005");
    let sim = start(
        vec![("queued", code::IDLE), ("restoring", code::IDLE)],
        prepare_timings(60_000, 60_000),
    )
    .await;
    assert_eq!(prepare(&sim, &["queued"]).await.0, 200);
    let (status, body) = post(
        &sim,
        "/v1/instances/backup",
        json!({"instance_ids": ["queued"]}),
    )
    .await;
    assert_eq!(
        (status, &body["error_code"]),
        (400, &json!("KOOPHONE.API.2005")),
        "{body}"
    );
    sim.seed([("restoring", code::RESTORING)]);
    let (_, body) = post(
        &sim,
        "/v1/instances/backup",
        json!({"instance_ids": ["restoring"]}),
    )
    .await;
    assert_eq!(body["error_code"], "KOOPHONE.API.2005", "{body}");
    assert_eq!(admin_instance(&sim, "queued").await["status"], 0);
}

#[tokio::test]
async fn the_timings_endpoint_takes_the_prepare_queue_delay_and_restore_failure_rate() {
    let _deadline = support::deadline(
        "the_timings_endpoint_takes_the_prepare_queue_delay_and_restore_failure_rate",
    );
    let sim = start(vec![("a1", code::IDLE)], Timings::default()).await;
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/sim/timings", sim.url()))
        .json(&json!({"prepare_queue_delay": "60s", "restore_failure_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let timings: Value = http
        .get(format!("{}/sim/timings", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(timings["prepare_queue_delay"], "1m", "{timings}");
    assert_eq!(timings["restore_failure_rate"], 1.0, "{timings}");
    assert_eq!(prepare(&sim, &["a1"]).await.0, 200);
    assert_eq!(progress(&sim, "a1").await.0, 1, "queued for a minute");
    let bad = http
        .put(format!("{}/sim/timings", sim.url()))
        .json(&json!({"restore_failure_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("restore_failure_rate"));
}

#[tokio::test]
async fn the_admin_api_starts_a_users_session_on_a_loaded_instance_only() {
    let _deadline =
        support::deadline("the_admin_api_starts_a_users_session_on_a_loaded_instance_only");
    let sim = start(
        vec![("s1", code::DATA_LOADED), ("s2", code::IDLE)],
        Timings::default(),
    )
    .await;
    let http = reqwest::Client::new();
    let session = |id: &str| {
        http.post(format!("{}/sim/sessions", sim.url()))
            .json(&json!({"instance_id": id, "seconds": 1}))
            .send()
    };
    assert_eq!(session("s1").await.unwrap().status(), 204);
    assert_eq!(sim.instance("s1").unwrap().status, code::STREAMING);
    let parked = session("s2").await.unwrap();
    assert_eq!(parked.status(), 409);
    assert!(parked.text().await.unwrap().contains("s2"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        sim.instance("s1").unwrap().status,
        code::DATA_LOADED,
        "the session ended"
    );
}
