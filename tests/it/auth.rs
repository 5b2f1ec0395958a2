//! Credentials over real HTTP against the simulator: IAM tokens fetched, cached, refreshed ahead of
//! expiry and shared by concurrent callers; one refresh and one retry on a 401; rotation; refused
//! Secrets; AK/SK signing with the gateway's checks.

use crate::support;

use cloudphone_operator::koophone::sign::{self, SignableRequest};
use cloudphone_operator::koophone::{
    Auth, CallAuth, Client, ClientConfig, Credentials, Project, RetryPolicy, Token,
};
use cloudphone_operator::reconciler::{Engine, EngineConfig, MemoryStore};
use cloudphone_operator::sim::{IamUser, SimConfig, Simulator, code};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "pa55-W0rd-never-logged";

async fn simulator(config: SimConfig) -> Simulator {
    let config = SimConfig {
        instances: vec![
            ("kp1".into(), code::IDLE),
            ("kp2".into(), code::DATA_LOADED),
        ],
        ..config
    };
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn user() -> IamUser {
    IamUser {
        name: "ops".into(),
        password: PASSWORD.into(),
        domain: "acme".into(),
    }
}

fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn password_credentials(sim: &Simulator, password: &str) -> Credentials {
    Credentials::from_secret_data(&secret(&[
        ("username", "ops"),
        ("password", password),
        ("domain", "acme"),
        ("projectId", "p-1"),
        ("iamEndpoint", &sim.url()),
    ]))
    .unwrap()
}

fn client(sim: &Simulator, auth: Arc<Auth>) -> Client {
    Client::new(
        ClientConfig {
            base_url: sim.url(),
            retry: RetryPolicy {
                max_retries: 0,
                ..RetryPolicy::default()
            },
            ..ClientConfig::default()
        },
        auth,
    )
    .unwrap()
}

fn ids() -> Vec<String> {
    vec!["kp1".into()]
}

#[tokio::test]
async fn iam_tokens_are_cached_and_refreshed_ahead_of_expiry() {
    let _deadline = support::deadline("iam_tokens_are_cached_and_refreshed_ahead_of_expiry");
    let sim = simulator(SimConfig {
        iam_users: vec![user()],
        token_lifetime: Some(Duration::from_secs(2)),
        ..SimConfig::default()
    })
    .await;
    let auth = Arc::new(Auth::new(Ok(password_credentials(&sim, PASSWORD))));
    let c = client(&sim, auth);
    for _ in 0..5 {
        c.query_status_chunk(&ids()).await.unwrap();
    }
    assert_eq!(sim.counters().iam_calls, 1, "the token is cached");
    // 80% of a 2s lifetime: the token is refreshed before it expires, so no call is refused.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    c.query_status_chunk(&ids()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.query_status_chunk(&ids()).await.unwrap();
    let counters = sim.counters();
    assert_eq!(counters.iam_calls, 2, "refreshed once, ahead of expiry");
    assert_eq!(
        counters.unauthorized, 0,
        "no call was sent with an expired token"
    );
}

#[tokio::test]
async fn a_401_triggers_one_refresh_and_one_retry() {
    let _deadline = support::deadline("a_401_triggers_one_refresh_and_one_retry");
    let sim = simulator(SimConfig {
        iam_users: vec![user()],
        ..SimConfig::default()
    })
    .await;
    let auth = Arc::new(Auth::new(Ok(password_credentials(&sim, PASSWORD))));
    let c = client(&sim, auth);
    c.query_status_chunk(&ids()).await.unwrap();
    // The token dies early (a password change at the vendor revokes it).
    sim.revoke_tokens();
    c.query_status_chunk(&ids()).await.unwrap();
    let counters = sim.counters();
    assert_eq!((counters.iam_calls, counters.unauthorized), (2, 1));
    assert_eq!(counters.calls("batch-query-status"), 3);
}

#[tokio::test]
async fn a_token_that_stays_refused_is_not_retried_in_a_loop() {
    let _deadline = support::deadline("a_token_that_stays_refused_is_not_retried_in_a_loop");
    let sim = simulator(SimConfig {
        tokens: vec!["the-only-good-token".into()],
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim, Arc::new(Auth::token(Token::new("a-bad-token"))));
    let err = c.query_status_chunk(&ids()).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert_eq!(err.label(), "Unauthorized");
    assert_eq!(
        sim.counters().calls("batch-query-status"),
        2,
        "one call, one retry, no more"
    );
    let err = c.backup_chunk(&ids()).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert_eq!(sim.counters().calls("backup"), 2);
}

#[tokio::test]
async fn a_thundering_herd_shares_one_refresh() {
    let _deadline = support::deadline("a_thundering_herd_shares_one_refresh");
    let sim = simulator(SimConfig {
        iam_users: vec![user()],
        ..SimConfig::default()
    })
    .await;
    let auth = Arc::new(Auth::new(Ok(password_credentials(&sim, PASSWORD))));
    let c = client(&sim, auth);
    let calls = (0..50).map(|_| {
        let c = c.clone();
        async move { c.query_status_chunk(&ids()).await }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(sim.counters().iam_calls, 1);
}

#[tokio::test]
async fn iam_failures_back_off_instead_of_hammering() {
    let _deadline = support::deadline("iam_failures_back_off_instead_of_hammering");
    let sim = simulator(SimConfig {
        iam_users: vec![user()],
        ..SimConfig::default()
    })
    .await;
    let auth = Arc::new(Auth::new(Ok(password_credentials(&sim, "wrong-password"))));
    let c = client(&sim, auth);
    for _ in 0..5 {
        let err = c.query_status_chunk(&ids()).await.unwrap_err();
        assert_eq!(err.label(), "IamUnavailable");
        assert!(!err.to_string().contains("wrong-password"), "{err}");
    }
    let counters = sim.counters();
    assert_eq!(counters.iam_calls, 1, "later calls wait out the backoff");
    assert_eq!(
        counters.calls("batch-query-status"),
        0,
        "no vendor call without a token"
    );
}

#[tokio::test]
async fn rotated_credentials_are_used_from_the_next_call() {
    let _deadline = support::deadline("rotated_credentials_are_used_from_the_next_call");
    let sim = simulator(SimConfig {
        tokens: vec!["token-one".into()],
        iam_users: vec![user()],
        ..SimConfig::default()
    })
    .await;
    let auth = Arc::new(Auth::token(Token::new("token-one")));
    let c = client(&sim, auth.clone());
    c.query_status_chunk(&ids()).await.unwrap();
    sim.set_static_tokens(["token-two"]);
    auth.set(Ok(Credentials::token(Token::new("token-two"))));
    c.query_status_chunk(&ids()).await.unwrap();
    // From a token to a password, then the password rotated at the vendor and in the Secret.
    auth.set(Ok(password_credentials(&sim, PASSWORD)));
    c.query_status_chunk(&ids()).await.unwrap();
    sim.set_iam_password("ops", "n3w-pa55");
    sim.revoke_tokens();
    auth.set(Ok(password_credentials(&sim, "n3w-pa55")));
    c.query_status_chunk(&ids()).await.unwrap();
    assert_eq!(sim.counters().unauthorized, 0);
    assert_eq!(sim.counters().iam_calls, 2);
}

#[tokio::test]
async fn the_same_credentials_loaded_again_keep_the_iam_token_and_the_version() {
    let _deadline =
        support::deadline("the_same_credentials_loaded_again_keep_the_iam_token_and_the_version");
    let sim = simulator(SimConfig {
        iam_users: vec![user()],
        ..SimConfig::default()
    })
    .await;
    let auth = Arc::new(Auth::new(Ok(password_credentials(&sim, PASSWORD))));
    let c = client(&sim, auth.clone());
    c.query_status_chunk(&ids()).await.unwrap();
    let version = auth.version();
    // The Secret is re-applied with the same data (a new resourceVersion, nothing new).
    assert!(!auth.set_if_changed(Ok(password_credentials(&sim, PASSWORD))));
    c.query_status_chunk(&ids()).await.unwrap();
    assert_eq!(sim.counters().iam_calls, 1, "the IAM token is kept");
    assert_eq!(auth.version(), version, "and the credentials' version");
    // New data replaces them.
    sim.set_iam_password("ops", "n3w-pa55");
    assert!(auth.set_if_changed(Ok(password_credentials(&sim, "n3w-pa55"))));
    assert_ne!(auth.version(), version);
    c.query_status_chunk(&ids()).await.unwrap();
    assert_eq!(sim.counters().iam_calls, 2);
    // Every field counts, secrets included: another access key's secret is new credentials.
    assert!(auth.set_if_changed(Ok(access_key_credentials("sk-1"))));
    assert!(!auth.set_if_changed(Ok(access_key_credentials("sk-1"))));
    assert!(auth.set_if_changed(Ok(access_key_credentials("sk-2"))));
}

#[tokio::test]
async fn a_refused_secret_stops_every_vendor_call() {
    let _deadline = support::deadline("a_refused_secret_stops_every_vendor_call");
    let sim = simulator(SimConfig::default()).await;
    let refused = Credentials::from_secret_data(&secret(&[
        ("token", "t"),
        ("accessKey", "a"),
        ("secretKey", "s"),
        ("projectId", "p"),
    ]));
    let message = refused.clone().unwrap_err().to_string();
    assert!(message.contains("more than one form"), "{message}");
    let auth = Arc::new(Auth::new(refused));
    let c = client(&sim, auth.clone());
    assert!(
        c.auth_status()
            .unwrap_err()
            .to_string()
            .contains("more than one form")
    );
    let err = c.query_status_chunk(&ids()).await.unwrap_err();
    assert_eq!(err.label(), "CredentialsInvalid");
    let phone = support::cloudphone("p1", "kp2").build();
    let store = Arc::new(MemoryStore::new([phone]));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let engine =
        Engine::new(store.clone(), c, EngineConfig::default()).with_metrics(metrics.clone());
    let report = engine.tick().await;
    assert!(report.skipped.is_some());
    assert!(metrics.encode().contains("cloudphone_credentials_usable 0"));
    assert_eq!(store.writes(), 0);
    assert_eq!(
        sim.counters().calls("batch-query-status") + sim.counters().calls("backup"),
        0
    );
    // Fixed in the Secret: the next tick calls the vendor.
    auth.set(Ok(Credentials::token(Token::new("t"))));
    let report = engine.tick().await;
    assert_eq!((report.skipped, report.backups_requested), (None, 1));
}

fn access_key_credentials(sk: &str) -> Credentials {
    Credentials::from_secret_data(&secret(&[
        ("accessKey", "AK-1"),
        ("secretKey", sk),
        ("projectId", "p-1"),
    ]))
    .unwrap()
}

#[tokio::test]
async fn signed_calls_are_verified_by_the_gateway() {
    let _deadline = support::deadline("signed_calls_are_verified_by_the_gateway");
    let sim = simulator(SimConfig {
        access_keys: vec![("AK-1".into(), "SK-right".into())],
        ..SimConfig::default()
    })
    .await;
    let good = client(
        &sim,
        Arc::new(Auth::new(Ok(access_key_credentials("SK-right")))),
    );
    good.query_status_chunk(&ids()).await.unwrap();
    good.backup_chunk(&["kp2".into()]).await.unwrap();
    let bad = client(
        &sim,
        Arc::new(Auth::new(Ok(access_key_credentials("SK-wrong")))),
    );
    let err = bad.query_status_chunk(&ids()).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert!(!err.to_string().contains("SK-wrong"));
}

#[tokio::test]
async fn a_stale_signature_date_is_refused() {
    let _deadline = support::deadline("a_stale_signature_date_is_refused");
    let sim = simulator(SimConfig {
        access_keys: vec![("AK-1".into(), "SK-right".into())],
        ..SimConfig::default()
    })
    .await;
    let send = |minutes_ago: i64| {
        let url = sim.url();
        async move {
            let host = url.trim_start_matches("http://").to_owned();
            let date = jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_mins(minutes_ago))
                .unwrap();
            let body = br#"{"instance_ids":["kp1"]}"#;
            let mut headers = vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("host".to_owned(), host),
                ("x-request-id".to_owned(), "r-1".to_owned()),
                ("x-project-id".to_owned(), "p-1".to_owned()),
                ("x-sdk-date".to_owned(), sign::sdk_date(date)),
            ];
            let path = "/v1/instances/batch-query-status";
            let authorization = sign::authorization(
                "AK-1",
                "SK-right",
                &SignableRequest {
                    method: "POST",
                    path,
                    query: &[],
                    headers: &headers,
                    body,
                },
            );
            headers.push(("authorization".to_owned(), authorization));
            let mut request = reqwest::Client::new().post(format!("{url}{path}"));
            for (k, v) in &headers {
                request = request.header(k.as_str(), v.as_str());
            }
            request
                .body(body.to_vec())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send(1).await, 200);
    assert_eq!(send(20).await, 401);
    assert_eq!(send(-20).await, 401);
}

#[tokio::test]
async fn a_refreshed_iam_token_never_moves_the_credentials_project() {
    let _deadline = support::deadline("a_refreshed_iam_token_never_moves_the_credentials_project");
    // An IAM that names another project id in each token it issues.
    let issued = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/v3/auth/tokens",
        axum::routing::post({
            let issued = issued.clone();
            move || async move {
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let now = jiff::Timestamp::now();
                let body = serde_json::json!({"token": {
                    "issued_at": now.to_string(),
                    "expires_at": (now + jiff::SignedDuration::from_hours(24)).to_string(),
                    "project": {"id": format!("project-{n}"), "name": "cn-north-4"},
                }});
                (
                    axum::http::StatusCode::CREATED,
                    [("x-subject-token", format!("token-{n}"))],
                    axum::Json(body),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let auth = Auth::new(Ok(Credentials::Password {
        username: "ops".into(),
        password: "pw".to_owned().into(),
        domain: "d".into(),
        project: cloudphone_operator::koophone::ProjectScope::Name("cn-north-4".into()),
        iam_endpoint: url,
    }));
    assert_eq!(auth.project(), Project::Pending);
    assert_eq!(
        auth.resolve_project().await,
        Project::Known("project-1".into())
    );
    // The token is refused, a new one fetched: IAM now names another project.
    let CallAuth::Bearer(token) = auth.call_auth().await.unwrap() else {
        panic!("a bearer token")
    };
    auth.refused(&token);
    auth.call_auth().await.unwrap();
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        auth.project(),
        Project::Known("project-1".into()),
        "the scope of these credentials moved with a refresh"
    );
}
