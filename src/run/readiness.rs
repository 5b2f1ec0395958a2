//! When the operator is ready (`/readyz`) and when its engine may tick: the watch cache synced,
//! the cluster's CRD compatible, and, for ticks, this replica leading.

use super::schema_check::{CrdProblem, Verdict};
use crate::http::{self, Readiness};
use crate::reconciler::KubeStore;
use std::sync::Arc;
use tokio::sync::watch;

/// Readiness: the watch cache has synced and the cluster's CRD is the one this binary needs.
/// Vendor health (credentials, outages, an open breaker) is not readiness: it shows in conditions,
/// metrics and alerts, so that one account's outage never blocks a rollout or a node drain.
pub(super) struct OperatorReadiness {
    pub(super) store: Arc<KubeStore>,
    pub(super) crd: watch::Receiver<Verdict>,
}

/// Why the operator is not ready.
#[derive(Debug, thiserror::Error)]
enum Unready {
    #[error("the CloudPhone watch cache has not synced yet")]
    CacheNotSynced,
    #[error(transparent)]
    Crd(#[from] CrdProblem),
}

impl Readiness for OperatorReadiness {
    fn check(&self) -> Result<(), http::NotReady> {
        if !self.store.is_synced() {
            return Err(Unready::CacheNotSynced.into());
        }
        self.crd
            .borrow()
            .clone()
            .map_err(|problem| Unready::Crd(problem).into())
    }
}

/// A watch that is true while `leader` is true and `crd` is compatible: when the engine may tick.
/// The gate's task is returned for the caller to run (supervised); it ends when either input's
/// sender is gone.
pub(super) fn tick_gate(
    mut leader: watch::Receiver<bool>,
    mut crd: watch::Receiver<Verdict>,
) -> (
    watch::Receiver<bool>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (gate, receiver) = watch::channel(false);
    let task = async move {
        loop {
            let open = *leader.borrow_and_update() && crd.borrow_and_update().is_ok();
            gate.send_if_modified(|v| std::mem::replace(v, open) != open);
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { break },
                changed = crd.changed() => if changed.is_err() { break },
            }
        }
    };
    (receiver, task)
}
