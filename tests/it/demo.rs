//! The quick start settles the example fleet: the README's first command works.

use crate::support;

use cloudphone_operator::demo::{self, DemoArgs};
use std::time::Duration;

#[tokio::test]
async fn the_demo_settles_the_example_fleet() {
    let _deadline = support::deadline("the_demo_settles_the_example_fleet");
    let settled = demo::run(DemoArgs {
        cloudphones: None,
        fleet: None,
        tick_interval: Duration::from_millis(200),
        backup_duration: Duration::from_millis(500),
        timeout: Duration::from_secs(30),
    })
    .await
    .expect("the embedded examples load and the simulator starts");
    assert!(settled, "the example fleet did not settle");
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
