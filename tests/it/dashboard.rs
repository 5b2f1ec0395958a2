//! The Grafana dashboard in the chart (and docs/) reads only metrics that a real run of the
//! operator exports: a renamed metric fails here, not on a user's empty panel.

use crate::support;

use cloudphone_operator::metrics::Metrics;
use cloudphone_operator::reconciler::MemoryStore;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const DASHBOARD: &str =
    include_str!("../../charts/cloudphone-operator/dashboards/cloudphone-operator.json");

/// The sample names of a Prometheus text exposition (`_bucket`, `_sum`, `_count` and `_total`
/// forms included).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

/// Every `cloudphone_*` name the dashboard's queries read.
fn queried_names() -> BTreeSet<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (start, _) in expr.match_indices("cloudphone_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_a_real_run_exports() {
    let _deadline = support::deadline("every_dashboard_query_names_a_metric_a_real_run_exports");
    // Five phones backed up, and three Loaded phones parked in object storage, prepared.
    let (mut phones, mut instances) = support::fleet(5);
    for i in 0..3 {
        phones.push(
            support::cloudphone(&format!("l{i:05}"), &format!("kl{i:05}"))
                .loaded("u1")
                .build(),
        );
        instances.push((format!("kl{i:05}"), cloudphone_operator::sim::code::IDLE));
    }
    let sim = support::simulator(instances)
        .backup_duration(Duration::from_millis(100))
        .restore_duration(Duration::from_millis(100))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(Metrics::new());
    let engine = cloudphone_operator::reconciler::Engine::new(
        store.clone(),
        support::sim_client(&sim).with_observer(metrics.clone()),
        Default::default(),
    )
    .with_metrics(metrics.clone());
    metrics.leader.set(1);
    for _ in 0..50 {
        engine.tick().await;
        let text = metrics.encode();
        if text.contains("cloudphone_backups_total{outcome=\"completed\"} 5")
            && text.contains("cloudphone_prepares_total{outcome=\"completed\"} 3")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exported = sample_names(&metrics.encode());
    let queried = queried_names();
    assert!(queried.len() >= 8, "{queried:?}");
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no run exports: {missing:?}\nexported: {exported:?}"
    );
}
