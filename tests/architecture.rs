//! The layering rules of the code, checked on its sources: the vendor client knows nothing of
//! Kubernetes, the simulator shares no code with the client (it is the client's oracle), the
//! planner does no I/O and reads no clock, and the engine needs nothing of the cluster wiring.

use std::path::Path;

/// Every `.rs` file under `dir`, with its text, comment lines left out.
fn sources(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.push((path.display().to_string(), code));
        }
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

fn refuse(dir: &str, forbidden: &[&str], why: &str) {
    for (file, code) in sources(dir) {
        for word in forbidden {
            assert!(!code.contains(word), "{file} uses {word}: {why}");
        }
    }
}

#[test]
fn the_vendor_client_knows_nothing_of_kubernetes() {
    refuse(
        "src/koophone",
        &[
            "k8s_openapi",
            "kube::",
            "crate::api",
            "crate::plan",
            "crate::reconciler",
            "crate::run",
        ],
        "the vendor layer is reusable without a cluster",
    );
}

#[test]
fn the_simulator_shares_no_code_with_the_client() {
    refuse(
        "src/sim",
        &["crate::koophone", "crate::reconciler", "crate::plan"],
        "the simulator is the client's independent oracle",
    );
}

#[test]
fn the_planner_does_no_io_and_reads_no_clock() {
    const IMPURE: [&str; 6] = [
        "tokio",
        "reqwest",
        "kube::",
        "Timestamp::now",
        "Instant::now",
        "SystemTime",
    ];
    refuse(
        "src/plan",
        &IMPURE,
        "the planner is pure: the tick passes `now` in",
    );
}

#[test]
fn the_engine_needs_nothing_of_the_cluster_wiring() {
    refuse(
        "src/reconciler",
        &["crate::run"],
        "the engine sits below `run`: what it needs of the Lease (the fence, the intents record) is a value or a trait passed in",
    );
}
