//! Log lines carry their context as spans: every line of a tick names the tick, every line of a
//! vendor call names its endpoint and request id, without each line repeating them.

// NB: this binary uses only part of the shared support.
#[allow(dead_code)]
mod support;

use cloudphone_operator::reconciler::{Engine, EngineConfig, MemoryStore};
use cloudphone_operator::sim::{SimConfig, Simulator, code};
use std::sync::Arc;

#[tokio::test]
async fn vendor_call_lines_name_their_tick_endpoint_and_request_id() {
    let _deadline = support::deadline("vendor_call_lines_name_their_tick_endpoint_and_request_id");
    let captured = support::Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let sim = Simulator::start(
        SimConfig {
            instances: vec![("kp1".into(), code::IDLE)],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let phone = support::cloudphone("p1", "kp1").build();
    let store = Arc::new(MemoryStore::new(vec![phone]));
    let client = support::sim_client(&sim);
    let engine = Engine::new(store, client, EngineConfig::default());
    engine.tick().await;
    engine.tick().await;

    let text = captured.text();
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("vendor call succeeded"))
        .collect();
    assert_eq!(calls.len(), 2, "{text}");
    for (n, line) in calls.iter().enumerate() {
        assert!(line.contains(&format!("tick{{n={}}}", n + 1)), "{line}");
        assert!(
            line.contains("vendor_call{endpoint=batch-query-status request_id="),
            "{line}"
        );
    }
}
