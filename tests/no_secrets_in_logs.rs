//! A full run with every log line captured at TRACE level (the operator's, reqwest's, hyper's):
//! no password, secret key, security token or issued token appears in any of them.

// NB: this binary uses only part of the shared support.
#[allow(dead_code)]
mod support;

use cloudphone_operator::api::CloudPhone;
use cloudphone_operator::koophone::{Auth, Client, ClientConfig, Credentials};
use cloudphone_operator::reconciler::{Engine, EngineConfig, MemoryStore};
use cloudphone_operator::sim::{Faults, IamUser, SimConfig, Simulator, code};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "Pw-3f9c1e-LEAKCHECK";
const SECRET_KEY: &str = "Sk-77ab12-LEAKCHECK";
const SECURITY_TOKEN: &str = "St-0c4d5e-LEAKCHECK";

fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn phones() -> Vec<CloudPhone> {
    (0..3)
        .map(|i| support::cloudphone(&format!("p{i}"), &format!("kp{i}")).build())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_any_log_line() {
    let _deadline = support::deadline("no_credential_reaches_any_log_line");
    let captured = support::Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let sim = Simulator::start(
        SimConfig {
            instances: (0..3)
                .map(|i| (format!("kp{i}"), code::DATA_LOADED))
                .collect(),
            iam_users: vec![IamUser {
                name: "ops".into(),
                password: PASSWORD.into(),
                domain: "acme".into(),
            }],
            access_keys: vec![("AK-1".into(), SECRET_KEY.into())],
            token_lifetime: Some(Duration::from_secs(1)),
            timings: cloudphone_operator::sim::Timings {
                backup_duration: Duration::from_millis(200),
                ..Default::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let iam = Credentials::from_secret_data(&secret(&[
        ("username", "ops"),
        ("password", PASSWORD),
        ("domain", "acme"),
        ("project", "cn-north-4"),
        ("iamEndpoint", &sim.url()),
    ]))
    .unwrap();
    let auth = Arc::new(Auth::new(Ok(iam)));
    let client = Client::new(
        ClientConfig {
            base_url: sim.url(),
            ..ClientConfig::default()
        },
        auth.clone(),
    )
    .unwrap();
    let store = Arc::new(MemoryStore::new(phones()));
    let engine = Engine::new(store, client, EngineConfig::default());
    // Ticks with IAM tokens: fetched, refreshed, one revoked early (401 and a retry).
    for round in 0..6 {
        if round == 2 {
            sim.revoke_tokens();
        }
        engine.tick().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A wrong password (IAM refuses), a refused Secret, then signed calls with faults.
    auth.set(Ok(Credentials::from_secret_data(&secret(&[
        ("username", "ops"),
        ("password", "wrong-LEAKCHECK-pw"),
        ("domain", "acme"),
        ("projectId", "p"),
        ("iamEndpoint", &sim.url()),
    ]))
    .unwrap()));
    engine.tick().await;
    auth.set(Credentials::from_secret_data(&secret(&[
        ("token", PASSWORD),
        ("secretKey", SECRET_KEY),
    ])));
    engine.tick().await;
    auth.set(Ok(Credentials::from_secret_data(&secret(&[
        ("accessKey", "AK-1"),
        ("secretKey", SECRET_KEY),
        ("projectId", "p"),
        ("securityToken", SECURITY_TOKEN),
    ]))
    .unwrap()));
    sim.set_faults(Faults {
        garbage_rate: 0.3,
        server_error_rate: 0.3,
        ..Faults::default()
    })
    .unwrap();
    for _ in 0..3 {
        engine.tick().await;
    }

    let issued = sim.issued_tokens();
    let logs = captured.text();
    assert!(
        logs.contains("IAM token fetched"),
        "the run was logged at all:\n{logs}"
    );
    assert!(logs.contains("vendor call"), "calls were logged");
    let mut secrets = vec![
        PASSWORD,
        SECRET_KEY,
        SECURITY_TOKEN,
        "wrong-LEAKCHECK-pw",
        "LEAKCHECK",
    ];
    secrets.extend(issued.iter().map(String::as_str));
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs");
    }
}
