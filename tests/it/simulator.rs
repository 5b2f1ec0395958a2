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
