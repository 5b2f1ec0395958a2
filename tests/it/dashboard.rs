//! The Grafana dashboard in the chart (and docs/) reads only metrics that a real run of the
//! operator exports: a renamed metric fails here, not on a user's empty panel. And
//! docs/reference/metrics.md documents every metric and every bounded reason the operator exports.

use crate::support;

use cloudphone_operator::metrics::Metrics;
use cloudphone_operator::reconciler::{MemorySchedules, MemoryStore};
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
    // Three Scheduled phones, parked by their schedule, whose window opens this minute with no
    // lead, and a restore taken to last no time: each is late from its prepare until its data is
    // loaded.
    for i in 0..3 {
        let mut phone = support::cloudphone(&format!("s{i:05}"), &format!("ks{i:05}"))
            .scheduled("office", "u1")
            .build();
        phone.status = Some(cloudphone_operator::api::CloudPhoneStatus {
            effective_lifecycle: Some(cloudphone_operator::api::Lifecycle::BackedUp),
            effective_reason: Some(cloudphone_operator::api::EffectiveReason::OutsideWindow),
            ..Default::default()
        });
        phones.push(phone);
        instances.push((format!("ks{i:05}"), cloudphone_operator::sim::code::IDLE));
    }
    let schedules = Arc::new(MemorySchedules::new([support::utc_schedule(
        "office", 0, 60, "0",
    )]));
    let sim = support::simulator(instances)
        .backup_duration(Duration::from_millis(100))
        // NB: long enough that a Scheduled phone is seen restoring past its (zero) estimate.
        .restore_duration(Duration::from_millis(2500))
        .start()
        .await;
    let store = Arc::new(MemoryStore::new(phones));
    let metrics = Arc::new(Metrics::new());
    let mut config = cloudphone_operator::reconciler::EngineConfig::default();
    config.plan.restore_estimate = Duration::ZERO;
    let engine = cloudphone_operator::reconciler::Engine::new(
        store.clone(),
        support::sim_client(&sim).with_observer(metrics.clone()),
        config,
    )
    .with_metrics(metrics.clone())
    .with_schedules(schedules);
    metrics.leader.set(1);
    let mut most_late = 0.0f64;
    for _ in 0..100 {
        engine.tick().await;
        let text = metrics.encode();
        most_late = most_late.max(sample(&text, "cloudphone_wave_late_phones").unwrap_or(0.0));
        if text.contains("cloudphone_backups_total{outcome=\"completed\"} 5")
            && text.contains("cloudphone_prepares_total{outcome=\"completed\"} 6")
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
    // The panel "Scheduled phones late for their window" shows the phones of this run's late wave.
    assert!(queried.contains("cloudphone_wave_late_phones"));
    assert!(
        (1.0..=3.0).contains(&most_late),
        "cloudphone_wave_late_phones peaked at {most_late}"
    );
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

const METRICS_DOC: &str = include_str!("../../docs/reference/metrics.md");

/// The row of docs/reference/metrics.md's table that documents `name`.
fn documented(name: &str) -> Option<&'static str> {
    let quoted = format!("`{name}`");
    METRICS_DOC
        .lines()
        .find(|l| l.starts_with("| ") && l.split('|').nth(1).is_some_and(|c| c.contains(&quoted)))
}

#[test]
fn every_metric_and_reason_a_fresh_operator_exports_is_documented() {
    let text = Metrics::new().encode();
    let undocumented: Vec<String> = sample_names(&text)
        .into_iter()
        .map(|name| {
            ["_bucket", "_sum", "_count", "_created"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .map_or(name.clone(), str::to_owned)
        })
        .filter(|name| documented(name).is_none())
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/reference/metrics.md has no row for {undocumented:?}"
    );
    // The parks' and wakes' reasons: exported at 0 from the start, each one documented in its row,
    // and every documented one exported.
    for family in ["cloudphone_parks_total", "cloudphone_wakes_total"] {
        let exported: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix(family)?
                    .strip_prefix("{reason=\"")?
                    .split('"')
                    .next()
            })
            .collect();
        let row = documented(family).expect("documented");
        let meaning = row.split('|').nth(4).unwrap();
        let listed: BTreeSet<&str> = meaning
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert_eq!(
            exported, listed,
            "{family}: the reasons exported at 0 (left) and those its row documents (right)"
        );
    }
}
