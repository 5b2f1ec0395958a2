//! The quick start settles the example fleet: the README's first command works, and shows a
//! schedule's window waking its phones during the demo.

use crate::support;

use cloudphone_operator::api::{EffectiveReason, Lifecycle, Phase};
use cloudphone_operator::demo::{self, DemoArgs};
use jiff::Timestamp;
use std::time::Duration;

#[tokio::test]
async fn the_demo_settles_the_example_fleet_and_its_schedule_wakes_the_office_phones() {
    let _deadline = support::deadline(
        "the_demo_settles_the_example_fleet_and_its_schedule_wakes_the_office_phones",
    );
    let started = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let outcome = demo::run_demo(DemoArgs {
        cloudphones: None,
        fleet: None,
        tick_interval: Duration::from_millis(200),
        backup_duration: Duration::from_millis(500),
        timeout: Duration::from_secs(30),
    })
    .await
    .expect("the embedded examples load and the simulator starts");
    assert!(outcome.settled, "the example fleet did not settle");
    // The schedule's wake began during the demo, not before it: the phones were woken by it.
    let schedule = outcome.schedule.expect("the demo's schedule");
    let status = schedule.status.as_ref().expect("its status is written");
    let wave = status.wave.as_ref().expect("its wave's anchor");
    assert!(wave.edge.0 > started, "the wake began at {:?}", wave.edge.0);
    assert_eq!(wave.from, wave.edge, "acted on at its edge");
    assert_eq!(status.counts.loaded, 3);
    for name in ["office-01", "office-02", "office-03"] {
        let phone = outcome
            .phones
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .expect("an office phone of examples/cloudphones.yaml");
        let s = phone.status.as_ref().unwrap();
        assert_eq!(
            (s.effective_lifecycle, s.effective_reason, s.phase),
            (
                Some(Lifecycle::Loaded),
                Some(EffectiveReason::ScheduleWindow),
                Phase::DataLoaded
            ),
            "{name}"
        );
        let woken = format!("fleet-b/{name}");
        assert!(
            outcome
                .events
                .iter()
                .any(|(phone, reason)| *phone == woken && *reason == "Woken"),
            "{name}: no Woken event in {:?}",
            outcome.events
        );
    }
    // The shift phones are still parked for idleness, the one in use only after its session.
    for name in ["fleet-b/shift-01", "fleet-b/shift-02"] {
        assert!(
            outcome
                .events
                .iter()
                .any(|(phone, reason)| phone == name && *reason == "Parked"),
            "{name} not parked"
        );
    }
}

#[test]
fn a_bad_manifest_is_refused_naming_the_document() {
    let text = "apiVersion: cloudphone.io/v1alpha1\nkind: CloudPhone\nmetadata: {name: a}\nspec: {instanceId: a1}\n---\nkind: CloudPhone\nmetadata: {name: b}\nspec: {lifecycle: Sometimes}\n";
    let err = demo::parse_manifests("fleet.yaml", text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fleet.yaml") && err.contains("document 1"),
        "{err}"
    );
}
