//! The vendor client against the simulator, over real HTTP.

use crate::support;

use cloudphone_operator::koophone::{
    Client, ClientConfig, Endpoint, Error, RetryPolicy, Token, VendorCode,
};
use cloudphone_operator::sim::{Faults, SimConfig, Simulator, code};
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-7f3e9a-SECRET-never-print";

use support::quick_retries;

fn client_with(sim: &Simulator, retry: RetryPolicy, timeout: Duration) -> Client {
    Client::new(
        ClientConfig {
            base_url: sim.url(),
            request_timeout: timeout,
            retry,
            ..ClientConfig::default()
        },
        Token::new(TOKEN),
    )
    .unwrap()
}

fn client(sim: &Simulator) -> Client {
    client_with(sim, quick_retries(3), Duration::from_secs(10))
}

async fn simulator(instances: Vec<(String, i64)>) -> Simulator {
    Simulator::start(
        SimConfig {
            instances,
            tokens: vec![TOKEN.into()],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("inst-{i:05}")).collect()
}

fn fleet(n: usize, status: i64) -> Vec<(String, i64)> {
    ids(n).into_iter().map(|id| (id, status)).collect()
}

fn query_calls(sim: &Simulator) -> u64 {
    sim.counters().calls("batch-query-status")
}

fn backup_calls(sim: &Simulator) -> u64 {
    sim.counters().calls("backup")
}

// NB: batching many ids into calls of at most 100 is the reconciler's (`reconciler/vendor.rs`,
// tested there); the client makes one call for one chunk.

#[tokio::test]
async fn invalid_ids_are_refused_before_anything_is_sent() {
    let _deadline = support::deadline("invalid_ids_are_refused_before_anything_is_sent");
    let sim = simulator(fleet(3, code::IDLE)).await;
    let c = client(&sim);
    for bad in [String::new(), "x".repeat(33), "é".repeat(33)] {
        let mut list = ids(3);
        list.push(bad.clone());
        let err = c.query_status_chunk(&list).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInstanceId { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("instance_ids"), "{msg}");
        let err = c.backup_chunk(&list).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInstanceId { .. }), "{err}");
    }
    let err = c.query_status_chunk(&ids(101)).await.unwrap_err();
    assert!(matches!(err, Error::TooManyIds { count: 101 }), "{err}");
    assert_eq!(query_calls(&sim) + backup_calls(&sim), 0);
}

#[tokio::test]
async fn a_long_id_is_cut_short_in_the_error() {
    let _deadline = support::deadline("a_long_id_is_cut_short_in_the_error");
    let sim = simulator(vec![]).await;
    let long = "y".repeat(5000);
    let err = client(&sim).query_status_chunk(&[long]).await.unwrap_err();
    assert!(err.to_string().len() < 300, "{err}");
}

#[tokio::test]
async fn missing_ids_are_reported_as_missing_not_as_errors() {
    let _deadline = support::deadline("missing_ids_are_reported_as_missing_not_as_errors");
    let sim = simulator(fleet(2, code::IDLE)).await;
    let mut faults = Faults::default();
    faults.unknown_ids.insert("inst-00001".into());
    sim.set_faults(faults).unwrap();
    let list = vec![
        "inst-00000".to_string(),
        "inst-00001".into(),
        "never-seen".into(),
    ];
    let report = client(&sim).query_status_chunk(&list).await.unwrap();
    assert_eq!(report.observed.get("inst-00000"), Some(&code::IDLE));
    let mut missing = report.missing.clone();
    missing.sort();
    assert_eq!(missing, ["inst-00001", "never-seen"]);
}

#[tokio::test]
async fn an_id_asked_twice_is_observed_once_not_missing() {
    let _deadline = support::deadline("an_id_asked_twice_is_observed_once_not_missing");
    let sim = simulator(fleet(2, code::IDLE)).await;
    let list = vec!["inst-00000".to_string(), "inst-00000".into()];
    let report = client(&sim).query_status_chunk(&list).await.unwrap();
    assert_eq!(report.observed.len(), 1);
    assert_eq!(report.observed.get("inst-00000"), Some(&code::IDLE));
    assert!(report.missing.is_empty(), "{:?}", report.missing);
}

#[tokio::test]
async fn unknown_status_codes_are_kept_as_integers() {
    let _deadline = support::deadline("unknown_status_codes_are_kept_as_integers");
    let sim = simulator(vec![("odd".into(), 42), ("neg".into(), -3)]).await;
    let report = client(&sim)
        .query_status_chunk(&["odd".into(), "neg".into()])
        .await
        .unwrap();
    assert_eq!(report.observed["odd"], 42);
    assert_eq!(report.observed["neg"], -3);
}

#[tokio::test]
async fn the_older_answer_shapes_are_accepted() {
    let _deadline = support::deadline("the_older_answer_shapes_are_accepted");
    let sim = simulator(fleet(2, code::DATA_LOADED)).await;
    sim.set_faults(Faults {
        legacy_answers: true,
        ..Faults::default()
    })
    .unwrap();
    let c = client(&sim);
    let report = c.query_status_chunk(&ids(2)).await.unwrap();
    assert_eq!(report.observed.len(), 2);
    let receipt = c.backup_chunk(&ids(2)).await.unwrap();
    assert_eq!(receipt.task_id, None);
    assert!(receipt.jobs.is_empty());
}

#[tokio::test]
async fn a_400_is_not_retried_and_carries_the_vendor_code() {
    let _deadline = support::deadline("a_400_is_not_retried_and_carries_the_vendor_code");
    let sim = simulator(vec![
        ("r1".into(), code::RESTORING),
        ("b1".into(), code::BACKING_UP),
    ])
    .await;
    let c = client(&sim);
    let err = c.backup_chunk(&["r1".into()]).await.unwrap_err();
    match &err {
        Error::Http {
            status: 400,
            vendor: Some(v),
            ..
        } => assert_eq!(v.code, VendorCode::Restoring),
        other => panic!("expected HTTP 400 with 2005, got {other}"),
    }
    assert!(err.request_id().is_some());
    assert!(
        err.to_string()
            .contains(&err.request_id().unwrap().to_string())
    );
    let err = c.backup_chunk(&["b1".into()]).await.unwrap_err();
    assert_eq!(err.vendor_code(), Some(&VendorCode::BackingUp));
    assert_eq!(backup_calls(&sim), 2, "a refused backup is never retried");
}

#[tokio::test]
async fn a_bad_parameter_is_a_bad_request_to_split() {
    let _deadline = support::deadline("a_bad_parameter_is_a_bad_request_to_split");
    let sim = simulator(vec![("idle".into(), code::IDLE)]).await;
    let err = client(&sim)
        .backup_chunk(&["idle".into()])
        .await
        .unwrap_err();
    assert!(err.is_bad_request(), "{err}");
    assert_eq!(err.vendor_code(), Some(&VendorCode::InvalidParameter));
}

#[tokio::test]
async fn business_errors_with_http_200_are_failures() {
    let _deadline = support::deadline("business_errors_with_http_200_are_failures");
    let sim = Simulator::start(
        SimConfig {
            instances: vec![("b1".into(), code::BACKING_UP)],
            business_errors_as_200: true,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let err = client(&sim).backup_chunk(&["b1".into()]).await.unwrap_err();
    match err {
        Error::Vendor {
            status: 200,
            vendor,
            endpoint: Endpoint::Backup,
            ..
        } => {
            assert_eq!(vendor.code, VendorCode::BackingUp)
        }
        other => panic!("expected a vendor error with HTTP 200, got {other}"),
    }
}

#[tokio::test]
async fn injected_9999_with_http_200_is_retried_for_status_queries() {
    let _deadline = support::deadline("injected_9999_with_http_200_is_retried_for_status_queries");
    let sim = simulator(fleet(1, code::IDLE)).await;
    sim.set_faults(Faults {
        business_error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let err = client(&sim).query_status_chunk(&ids(1)).await.unwrap_err();
    assert_eq!(err.vendor_code(), Some(&VendorCode::Internal));
    assert_eq!(err.http_status(), Some(200));
    assert_eq!(query_calls(&sim), 4, "one call and three retries");
}

#[tokio::test]
async fn status_queries_are_retried_on_500_then_succeed() {
    let _deadline = support::deadline("status_queries_are_retried_on_500_then_succeed");
    let sim = simulator(fleet(1, code::IDLE)).await;
    sim.set_faults(Faults {
        fail_next_calls: 2,
        ..Faults::default()
    })
    .unwrap();
    let report = client(&sim).query_status_chunk(&ids(1)).await.unwrap();
    assert_eq!(report.observed["inst-00000"], code::IDLE);
    assert_eq!(query_calls(&sim), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let _deadline = support::deadline("retries_are_bounded");
    let sim = simulator(fleet(1, code::IDLE)).await;
    sim.set_faults(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let err = client_with(&sim, quick_retries(2), Duration::from_secs(10))
        .query_status_chunk(&ids(1))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(err.label(), "Internal");
    assert_eq!(query_calls(&sim), 3);
}

#[tokio::test]
async fn a_backup_answered_500_is_not_sent_again() {
    let _deadline = support::deadline("a_backup_answered_500_is_not_sent_again");
    // The vendor has no idempotency token: after a 500 the backup may or may not have started.
    let sim = simulator(fleet(1, code::DATA_LOADED)).await;
    sim.set_faults(Faults {
        fail_next_calls: 1,
        ..Faults::default()
    })
    .unwrap();
    let err = client(&sim).backup_chunk(&ids(1)).await.unwrap_err();
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(backup_calls(&sim), 1);
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_for_both_calls() {
    let _deadline = support::deadline("a_429_is_retried_after_retry_after_for_both_calls");
    let sim = simulator(fleet(1, code::DATA_LOADED)).await;
    sim.set_faults(Faults {
        rate_limit_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let retry = RetryPolicy {
        max_retry_after: Duration::from_millis(300),
        ..quick_retries(1)
    };
    let c = client_with(&sim, retry, Duration::from_secs(10));
    let started = Instant::now();
    let err = c.query_status_chunk(&ids(1)).await.unwrap_err();
    // The simulator asks for one second; the policy caps it at 300ms, and the wait is at least that.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.http_status(), Some(429));
    assert_eq!(err.label(), "RateLimited");
    assert_eq!(query_calls(&sim), 2);
    let err = c.backup_chunk(&ids(1)).await.unwrap_err();
    assert_eq!(err.http_status(), Some(429));
    assert_eq!(
        backup_calls(&sim),
        2,
        "a 429 was not processed, so a backup may be sent again"
    );
}

#[tokio::test]
async fn a_429_pauses_every_call_of_the_account_not_only_its_own_chunk() {
    let _deadline =
        support::deadline("a_429_pauses_every_call_of_the_account_not_only_its_own_chunk");
    let sim = simulator(fleet(300, code::IDLE)).await;
    sim.set_faults(Faults {
        rate_limit_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let retry = RetryPolicy {
        max_retry_after: Duration::from_millis(300),
        ..quick_retries(0)
    };
    let c = client_with(&sim, retry, Duration::from_secs(10));
    // Three chunks one after the other, no retries: the second and third wait for the pause the
    // first 429 asked for (one second, capped at 300ms) before they leave.
    let started = Instant::now();
    let first = c.query_status_chunk(&ids(100)).await;
    assert!(first.is_err());
    let _ = c.query_status_chunk(&ids(100)).await;
    let second_done = started.elapsed();
    let _ = c.backup_chunk(&ids(100)).await;
    assert!(
        second_done >= Duration::from_millis(300),
        "the next call left {second_done:?} after a 429 asking for a pause"
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(query_calls(&sim), 2);
    assert_eq!(backup_calls(&sim), 1);
}

#[tokio::test]
async fn an_undecodable_answer_is_a_decode_error_with_an_excerpt() {
    let _deadline = support::deadline("an_undecodable_answer_is_a_decode_error_with_an_excerpt");
    let sim = simulator(fleet(1, code::IDLE)).await;
    sim.set_faults(Faults {
        garbage_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let err = client_with(&sim, quick_retries(0), Duration::from_secs(10))
        .query_status_chunk(&ids(1))
        .await
        .unwrap_err();
    match &err {
        Error::Decode {
            excerpt,
            status: 200,
            ..
        } => assert!(excerpt.contains("502 Bad Gateway")),
        other => panic!("expected a decode error, got {other}"),
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_and_a_timed_out_backup_is_not_resent() {
    let _deadline =
        support::deadline("a_slow_answer_times_out_and_a_timed_out_backup_is_not_resent");
    let sim = simulator(fleet(1, code::DATA_LOADED)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(500),
        ..Faults::default()
    })
    .unwrap();
    let c = client_with(&sim, quick_retries(2), Duration::from_millis(100));
    let err = c.backup_chunk(&ids(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { timeout: true, .. }),
        "{err}"
    );
    assert_eq!(err.label(), "Timeout");
    assert_eq!(backup_calls(&sim), 1);
    let err = c.query_status_chunk(&ids(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { timeout: true, .. }),
        "{err}"
    );
    assert_eq!(
        query_calls(&sim),
        3,
        "a status query is retried after a time-out"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let _deadline = support::deadline("a_refused_connection_is_a_transport_error");
    let sim = simulator(vec![]).await;
    let url = sim.url();
    sim.shutdown().await;
    let c = Client::new(
        ClientConfig {
            base_url: url,
            retry: quick_retries(1),
            ..ClientConfig::default()
        },
        Token::new(TOKEN),
    )
    .unwrap();
    let err = c.query_status_chunk(&ids(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { connect: true, .. }),
        "{err}"
    );
    assert!(err.certainly_not_processed());
}

#[tokio::test]
async fn every_call_sends_the_token_and_a_fresh_request_id() {
    let _deadline = support::deadline("every_call_sends_the_token_and_a_fresh_request_id");
    let sim = simulator(fleet(1, code::IDLE)).await;
    let c = client(&sim);
    let a = c.query_status_chunk(&ids(1)).await.unwrap();
    let b = c.query_status_chunk(&ids(1)).await.unwrap();
    assert_ne!(a.request_id, b.request_id);
    assert_eq!(a.request_id.get_version_num(), 4);
    // The simulator refuses a call without either header, so the answers above prove both were sent.
    let raw = reqwest::Client::new();
    let url = format!("{}/v1/instances/batch-query-status", sim.url());
    let body = serde_json::json!({"instance_ids": ["inst-00000"]});
    let no_token = raw
        .post(&url)
        .header("x-request-id", "r1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let no_request_id = raw
        .post(&url)
        .header("X-Auth-Token", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_request_id.status(), 400);
    let answer: serde_json::Value = no_request_id.json().await.unwrap();
    assert_eq!(answer["error_code"], "KOOPHONE.API.0002");
}

#[tokio::test]
async fn a_wrong_token_is_an_http_401_error() {
    let _deadline = support::deadline("a_wrong_token_is_an_http_401_error");
    let sim = simulator(fleet(1, code::IDLE)).await;
    let c = Client::new(
        ClientConfig {
            base_url: sim.url(),
            retry: quick_retries(0),
            ..ClientConfig::default()
        },
        Token::new("wrong-token"),
    )
    .unwrap();
    let err = c.query_status_chunk(&ids(1)).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn the_token_never_appears_in_debug_output_or_errors() {
    let _deadline = support::deadline("the_token_never_appears_in_debug_output_or_errors");
    let sim = simulator(vec![("r1".into(), code::RESTORING)]).await;
    let c = client(&sim);
    let mut texts = vec![format!("{c:?}"), format!("{c:#?}")];
    let mut errors = vec![c.backup_chunk(&["r1".into()]).await.unwrap_err()];
    sim.set_faults(Faults {
        garbage_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    errors.push(c.query_status_chunk(&["r1".into()]).await.unwrap_err());
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    })
    .unwrap();
    errors.push(
        client_with(&sim, quick_retries(0), Duration::from_millis(50))
            .query_status_chunk(&["r1".into()])
            .await
            .unwrap_err(),
    );
    for err in &errors {
        texts.push(format!("{err}"));
        texts.push(format!("{err:?}"));
        texts.push(format!("{err:#?}"));
    }
    for text in texts {
        assert!(
            !text.contains(TOKEN) && !text.contains("SECRET"),
            "token leaked: {text}"
        );
    }
}

/// Compiles only when the client's futures can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn the_clients_futures_are_send(client: &Client, ids: &[String]) {
    fn send<T: Send>(_: T) {}
    send(client.query_status_chunk(ids));
    send(client.backup_chunk(ids));
}

#[test]
fn a_base_url_the_client_cannot_use_is_a_typed_error_naming_it() {
    let build = |url: &str| {
        Client::new(
            ClientConfig {
                base_url: url.into(),
                ..ClientConfig::default()
            },
            Token::new(TOKEN),
        )
    };
    let err = build("not a url").err().unwrap();
    assert!(matches!(err, Error::BaseUrl { .. }), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the parse error is kept as the cause"
    );
    assert!(err.to_string().contains("\"not a url\""), "{err}");
    let err = build("unix:/run/socket").err().unwrap();
    assert!(matches!(err, Error::BaseUrlWithoutHost { .. }), "{err:?}");
}

/// Four status calls started at once, under the account's limits.
async fn four_calls_at_once(
    sim: &Simulator,
    in_flight: Option<usize>,
    per_second: Option<u32>,
) -> Duration {
    let client = Client::new(
        ClientConfig {
            base_url: sim.url(),
            calls_in_flight: in_flight,
            calls_per_second: per_second,
            ..ClientConfig::default()
        },
        Token::new(TOKEN),
    )
    .unwrap();
    let ids = vec!["kp1".to_owned()];
    let started = Instant::now();
    let calls = (0..4).map(|_| client.query_status_chunk(&ids));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    started.elapsed()
}

// NB: lower bounds only: a loaded machine can make the calls slower, never faster.
#[tokio::test]
async fn an_accounts_limits_bound_its_calls_in_flight_and_per_second() {
    let _deadline =
        support::deadline("an_accounts_limits_bound_its_calls_in_flight_and_per_second");
    let sim = simulator(vec![("kp1".into(), code::IDLE)]).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    })
    .unwrap();
    let one_at_a_time = four_calls_at_once(&sim, Some(1), None).await;
    assert!(
        one_at_a_time >= Duration::from_millis(400),
        "one call in flight: four 100 ms calls in a row, took {one_at_a_time:?}"
    );
    sim.set_faults(Faults::default()).unwrap();
    let spaced = four_calls_at_once(&sim, None, Some(10)).await;
    assert!(
        spaced >= Duration::from_millis(300),
        "10 calls a second: the fourth starts 300 ms after the first, took {spaced:?}"
    );
    assert_eq!(sim.counters().calls("batch-query-status"), 8);
}

#[tokio::test]
async fn backups_take_at_most_three_quarters_of_an_accounts_call_rate() {
    let _deadline =
        support::deadline("backups_take_at_most_three_quarters_of_an_accounts_call_rate");
    let sim = simulator(vec![("kp1".into(), code::IDLE)]).await;
    let client = Client::new(
        ClientConfig {
            base_url: sim.url(),
            calls_per_second: Some(10),
            ..ClientConfig::default()
        },
        Token::new("t"),
    )
    .unwrap();
    // Ten backup slots at 10 calls a second would take 900 ms; at the backups' share (7.5 a
    // second) they take 1.2 s, and a status query meanwhile still gets a slot of its own.
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        drop(
            client
                .reserve(cloudphone_operator::koophone::Endpoint::Backup)
                .await
                .unwrap(),
        );
    }
    let backups = started.elapsed();
    assert!(
        backups >= Duration::from_millis(1100),
        "ten backup slots at 10 calls a second took {backups:?}: backups took more than their share"
    );
}

/// A prepare call through [`Client::prepare_chunk_gated`], with no gate and no reservation.
async fn prepare(
    c: &Client,
    user: &str,
    ids: &[String],
) -> Result<cloudphone_operator::koophone::PrepareReceipt, Error> {
    c.prepare_chunk_gated(user, ids, uuid::Uuid::new_v4(), &|| Ok(()), None)
        .await
}

#[tokio::test]
async fn a_prepare_names_its_user_and_records_each_instances_answer() {
    let _deadline = support::deadline("a_prepare_names_its_user_and_records_each_instances_answer");
    // The vendor holds a prepare queued for a while, the instance still showing Idle.
    let sim = Simulator::start(
        SimConfig {
            instances: vec![
                ("idle".into(), code::IDLE),
                ("other".into(), code::IDLE),
                ("loaded".into(), code::DATA_LOADED),
            ],
            tokens: vec![TOKEN.into()],
            timings: cloudphone_operator::sim::Timings {
                prepare_queue_delay: Duration::from_secs(30),
                ..Default::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let c = client(&sim);
    let receipt = prepare(&c, "u-123", &["idle".into(), "loaded".into()])
        .await
        .unwrap();
    assert_eq!(
        receipt.statuses.get("idle"),
        Some(&1),
        "waiting to be restored"
    );
    assert_eq!(
        receipt.statuses.get("loaded"),
        Some(&0),
        "already on an instance"
    );
    assert_eq!(sim.counters().calls("prepare"), 1);
    assert_eq!(sim.instance("idle").unwrap().prepares_started, 1);
    let progress = c.prepare_progress("u-123", "idle").await.unwrap();
    assert!(progress.under_way(), "queued: {progress:?}");
    // An instance that is not queued, seen Idle, is offline: no prepare is under way.
    let offline = c.prepare_progress("u-123", "other").await.unwrap();
    assert!(!offline.under_way(), "{offline:?}");
    assert_eq!(sim.counters().calls("prepare-progress"), 2);
}

#[tokio::test]
async fn a_prepare_with_a_bad_user_id_is_refused_before_anything_is_sent() {
    let _deadline =
        support::deadline("a_prepare_with_a_bad_user_id_is_refused_before_anything_is_sent");
    let sim = simulator(vec![("idle".into(), code::IDLE)]).await;
    let c = client(&sim);
    for user in ["", &"u".repeat(33)] {
        let err = prepare(&c, user, &["idle".into()]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUserId { .. }), "{err}");
        let err = c.prepare_progress(user, "idle").await.unwrap_err();
        assert!(matches!(err, Error::InvalidUserId { .. }), "{err}");
    }
    assert_eq!(sim.counters().calls("prepare"), 0);
    assert_eq!(sim.counters().calls("prepare-progress"), 0);
}

#[tokio::test]
async fn a_prepare_answered_500_is_not_sent_again_and_a_progress_query_is() {
    let _deadline =
        support::deadline("a_prepare_answered_500_is_not_sent_again_and_a_progress_query_is");
    // The vendor has no idempotency token: after a 500 the prepare may or may not have started.
    let sim = simulator(vec![("idle".into(), code::IDLE)]).await;
    sim.set_faults(Faults {
        fail_next_calls: 1,
        ..Faults::default()
    })
    .unwrap();
    let c = client(&sim);
    let err = prepare(&c, "u-1", &["idle".into()]).await.unwrap_err();
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(sim.counters().calls("prepare"), 1);
    sim.set_faults(Faults {
        fail_next_calls: 1,
        ..Faults::default()
    })
    .unwrap();
    // A read: retried.
    c.prepare_progress("u-1", "idle").await.unwrap();
    assert_eq!(sim.counters().calls("prepare-progress"), 2);
}

#[tokio::test]
async fn a_prepare_naming_an_unknown_instance_is_refused_whole() {
    let _deadline = support::deadline("a_prepare_naming_an_unknown_instance_is_refused_whole");
    let sim = simulator(vec![("idle".into(), code::IDLE)]).await;
    let err = prepare(&client(&sim), "u-1", &["idle".into(), "nope".into()])
        .await
        .unwrap_err();
    assert_eq!(
        err.vendor_code(),
        Some(&VendorCode::InstanceNotFound),
        "{err}"
    );
    assert_eq!(sim.instance("idle").unwrap().prepares_started, 0);
}
