//! Is the cluster's CloudPhone CRD the one this binary needs? Helm never upgrades `crds/`, and an
//! API server holding an older schema prunes the status fields it does not know, silently, among
//! them those that guard against a second backup. So the operator reads the CRD's
//! `cloudphone.io/schema-revision` at start and on every change of the CRD, and refuses to tick
//! while it is older than [`SCHEMA_REVISION`].

use crate::api::{SCHEMA_REVISION, SCHEMA_REVISION_ANNOTATION};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info};

/// The name of the CloudPhone CRD.
pub const CRD_NAME: &str = "cloudphones.cloudphone.io";

/// The commands that install the CRD this binary needs, for error messages and docs.
pub const UPGRADE_HINT: &str = "kubectl apply --server-side -f crds/ (from this release), or \
     helm show crds <chart> | kubectl apply --server-side --force-conflicts -f -";

/// Why the cluster's CloudPhone CRD does not let ticks run; each says how to fix it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrdProblem {
    #[error("the CloudPhone CRD's schema revision has not been checked yet")]
    NotChecked,
    #[error("the CloudPhone CRD ({CRD_NAME}) is not installed: {UPGRADE_HINT}")]
    NotInstalled,
    #[error(
        "the CloudPhone CRD's annotation {SCHEMA_REVISION_ANNOTATION} is {text:?}, not an integer: reinstall it: {UPGRADE_HINT}"
    )]
    BadAnnotation { text: String },
    #[error(
        "the cluster's CloudPhone CRD has schema revision {revision}, this operator needs {SCHEMA_REVISION}: \
         the API server would silently drop status fields that guard against a second backup, so no tick runs \
         until the CRD is upgraded: {UPGRADE_HINT}"
    )]
    TooOld { revision: u32 },
    #[error(
        "cannot read the CloudPhone CRD to check its schema revision ({source}): grant get, list and watch on \
         customresourcedefinitions {CRD_NAME} (the chart's ClusterRole does)"
    )]
    Unreadable {
        #[source]
        source: Arc<kube::runtime::watcher::Error>,
    },
}

impl PartialEq for CrdProblem {
    fn eq(&self, other: &CrdProblem) -> bool {
        // NB: by what it says: a watch error carries no equality of its own.
        self.to_string() == other.to_string()
    }
}

/// Whether ticks may run as far as the CRD goes.
pub type Verdict = Result<(), CrdProblem>;

/// Whether the CRD the cluster holds (`None`: none) is compatible with this binary; `Err` says why
/// not and how to fix it.
pub fn compare(crd: Option<&CustomResourceDefinition>) -> Verdict {
    let Some(crd) = crd else {
        return Err(CrdProblem::NotInstalled);
    };
    let annotation = crd
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEMA_REVISION_ANNOTATION));
    let revision = match annotation {
        None => 0,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .map_err(|_| CrdProblem::BadAnnotation { text: text.clone() })?,
    };
    if revision < SCHEMA_REVISION {
        return Err(CrdProblem::TooOld { revision });
    }
    Ok(())
}

/// Watches the CloudPhone CRD and publishes [`compare`]'s verdict on `verdict` (which starts as
/// "not checked yet"), until the process ends.
pub async fn watch(client: kube::Client, verdict: watch::Sender<Verdict>) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={CRD_NAME}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listing: Option<CustomResourceDefinition> = None;
    let mut current: Option<CustomResourceDefinition> = None;
    let mut synced = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = None,
            Ok(watcher::Event::InitApply(crd)) => listing = Some(crd),
            Ok(watcher::Event::InitDone) => {
                current = listing.take();
                synced = true;
            }
            Ok(watcher::Event::Apply(crd)) => current = Some(crd),
            Ok(watcher::Event::Delete(_)) => current = None,
            Err(e) => {
                let why = CrdProblem::Unreadable {
                    source: Arc::new(e),
                };
                publish(&verdict, Err(why));
                continue;
            }
        }
        if synced {
            publish(&verdict, compare(current.as_ref()));
        }
    }
}

fn publish(verdict: &watch::Sender<Verdict>, new: Verdict) {
    if *verdict.borrow() == new {
        return;
    }
    match &new {
        Ok(()) => info!(
            revision = SCHEMA_REVISION,
            "the CloudPhone CRD is compatible: ticks may run"
        ),
        Err(why) => error!(reason = %why, "ticks stopped: the CloudPhone CRD is not compatible"),
    }
    let _previous = verdict.send_replace(new);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_revision(revision: Option<&str>) -> CustomResourceDefinition {
        let mut crd = crate::api::crd();
        let annotations = crd
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.remove(SCHEMA_REVISION_ANNOTATION);
        if let Some(r) = revision {
            annotations.insert(SCHEMA_REVISION_ANNOTATION.to_owned(), r.to_owned());
        }
        crd
    }

    #[test]
    fn the_generated_crd_is_compatible_and_newer_ones_too() {
        assert_eq!(compare(Some(&crate::api::crd())), Ok(()));
        let newer = (SCHEMA_REVISION + 1).to_string();
        assert_eq!(compare(Some(&with_revision(Some(&newer)))), Ok(()));
    }

    #[test]
    fn an_older_or_unannotated_crd_is_refused_with_the_upgrade_command() {
        for crd in [with_revision(None), with_revision(Some("0"))] {
            let why = compare(Some(&crd)).unwrap_err();
            assert_eq!(why, CrdProblem::TooOld { revision: 0 });
            let why = why.to_string();
            assert!(why.contains("schema revision 0"), "{why}");
            assert!(
                why.contains("kubectl apply --server-side -f crds/"),
                "{why}"
            );
        }
        let why = compare(Some(&with_revision(Some("two")))).unwrap_err();
        assert!(matches!(why, CrdProblem::BadAnnotation { .. }), "{why}");
        assert!(why.to_string().contains("\"two\""), "{why}");
        let why = compare(None).unwrap_err();
        assert!(why.to_string().contains("not installed"), "{why}");
    }
}
