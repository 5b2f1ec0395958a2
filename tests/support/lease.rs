//! A fake of one coordination Lease, `ops/cloudphone-operator`, kept as the API server would: its
//! resourceVersion checked on update. Leader election and the intents record run against it.

use super::{Recorded, status_error};
use cloudphone_operator::reconciler::INTENTS_UNTIL_ANNOTATION;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The Leases of namespace `ops`.
pub const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/cloudphone-operator";

/// The Lease, served by [`FakeLease::handle`]; a fake client or cluster routes Lease requests to it.
#[derive(Default)]
pub struct FakeLease {
    lease: Mutex<Option<Value>>,
    version: Mutex<u64>,
    /// Every request answered 500 while set.
    pub down: AtomicBool,
    /// The next this many updates conflict (409), as if another write had come in between.
    pub conflicts: AtomicUsize,
    /// Every accepted write: the holder it names and when it was made.
    writes: Mutex<Vec<(Option<String>, std::time::Instant)>>,
}

impl FakeLease {
    pub fn handle(&self, r: &Recorded) -> (u16, Value) {
        if self.down.load(Ordering::SeqCst) {
            return status_error(500, "InternalError");
        }
        let mut lease = self.lease.lock().unwrap();
        let mut version = self.version.lock().unwrap();
        match (r.method.as_str(), r.path()) {
            ("GET", PATH) => match lease.as_ref() {
                Some(l) => (200, l.clone()),
                None => status_error(404, "NotFound"),
            },
            ("POST", LEASES) => {
                if lease.is_some() {
                    return status_error(409, "AlreadyExists");
                }
                *version += 1;
                let mut created = r.body.clone();
                created["metadata"]["resourceVersion"] = json!(version.to_string());
                self.wrote(&created);
                *lease = Some(created.clone());
                (201, created)
            }
            ("PUT", PATH) => {
                if self
                    .conflicts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    *version += 1;
                    if let Some(l) = lease.as_mut() {
                        l["metadata"]["resourceVersion"] = json!(version.to_string());
                    }
                    return status_error(409, "Conflict");
                }
                let current = lease
                    .as_ref()
                    .and_then(|l| l["metadata"]["resourceVersion"].as_str().map(str::to_owned));
                if r.body["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned)
                    != current
                {
                    return status_error(409, "Conflict");
                }
                *version += 1;
                let mut updated = r.body.clone();
                updated["metadata"]["resourceVersion"] = json!(version.to_string());
                self.wrote(&updated);
                *lease = Some(updated.clone());
                (200, updated)
            }
            _ => status_error(404, "NotFound"),
        }
    }

    fn wrote(&self, lease: &Value) {
        let holder = lease["spec"]["holderIdentity"].as_str().map(str::to_owned);
        self.writes
            .lock()
            .unwrap()
            .push((holder, std::time::Instant::now()));
    }

    /// When `holder` last wrote it, and when another holder first wrote it after that.
    pub fn handed_over(&self, holder: &str) -> Option<(std::time::Instant, std::time::Instant)> {
        let writes = self.writes.lock().unwrap();
        let first_other = writes
            .iter()
            .position(|(h, _)| h.as_deref().is_some_and(|h| h != holder))?;
        let last_own = writes[..first_other]
            .iter()
            .rev()
            .find(|(h, _)| h.as_deref() == Some(holder))?;
        Some((last_own.1, writes[first_other].1))
    }

    /// Who holds it, if anyone.
    pub fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    /// Its intents-until annotation, if any.
    pub fn annotation(&self) -> Option<String> {
        self.lease.lock().unwrap().as_ref().and_then(|l| {
            l["metadata"]["annotations"][INTENTS_UNTIL_ANNOTATION]
                .as_str()
                .map(str::to_owned)
        })
    }

    /// `spec.<name>`, or null.
    pub fn field(&self, name: &str) -> Value {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .map_or(Value::Null, |l| l["spec"][name].clone())
    }
}
