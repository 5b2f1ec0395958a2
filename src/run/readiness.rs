//! When the operator is ready (`/readyz`) and when its engine may tick: the watch cache synced,
//! the cluster's CRD compatible, and, for ticks, this replica leading.

use super::schema_check::{CrdProblem, Verdict};
use crate::http::{self, Readiness};
use crate::reconciler::{AccountsFeed, KubeStore};
use std::sync::Arc;
use tokio::sync::watch;

/// Readiness: the watch cache has synced and the cluster's CRD is the one this binary needs.
/// Vendor health (credentials, outages, an open breaker) is not readiness: it shows in conditions,
/// metrics and alerts, so that one account's outage never blocks a rollout or a node drain.
pub(super) struct OperatorReadiness {
    pub(super) store: Arc<KubeStore>,
    pub(super) crd: watch::Receiver<Verdict>,
    /// The CloudPhoneAccounts (`None` until their watches synced), and the last error of each of
    /// those watches that fails: a note, never unreadiness (the CRD may be missing after a
    /// `helm upgrade`).
    pub(super) accounts: AccountsFeed,
    pub(super) accounts_error: watch::Receiver<Option<String>>,
    /// The CloudPhoneSchedules' watch: not synced is a note, never unreadiness.
    pub(super) schedules: Arc<super::schedules::KubeSchedules>,
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

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.schedules.note().into_iter().collect();
        if self.accounts.borrow().is_some() {
            return notes;
        }
        let why = match &*self.accounts_error.borrow() {
            Some(e) => format!("failing: {e}"),
            None => "listing".to_owned(),
        };
        notes.push(format!(
            "the CloudPhoneAccount feed has not synced ({why}): phones with spec.accountRef wait (told AccountNotReady after two minutes); \
             check that the CloudPhoneAccount CRD is installed and that the operator may list and watch \
             cloudphoneaccounts and namespaces cluster-wide and secrets in its own namespace"
        ));
        notes
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
