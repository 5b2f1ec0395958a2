//! Is the cluster's CloudPhone CRD the one this binary needs? Helm never upgrades `crds/`, and an
//! API server holding an older schema prunes the status fields it does not know, silently, among
//! them those that guard against a second backup. So the operator reads the CRD's
//! `cloudphone.io/schema-revision` at start and on every change of the CRD, and refuses to tick
//! while it is older than [`SCHEMA_REVISION`] (or missing), or once the CRD could not be read for
//! [`KEEP_VERDICT_WHILE_FAILING`].

use crate::api::{SCHEMA_REVISION, SCHEMA_REVISION_ANNOTATION};
use futures::{Stream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

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

/// How long a failing CRD watch keeps the last verdict it read (compatible or not) before the gate
/// closes on "cannot read the CRD". An API server's hiccup (a restart, a timed-out watch) then
/// costs no tick: cutting one would start a new leadership term and drop what the engine remembers
/// of the handovers in flight. A CRD changed meanwhile is read when the watch comes back.
pub const KEEP_VERDICT_WHILE_FAILING: Duration = Duration::from_secs(120);

/// Watches the CloudPhone CRD and publishes [`compare`]'s verdict on `verdict` (which starts as
/// "not checked yet"), until the process ends.
pub async fn watch(client: kube::Client, verdict: watch::Sender<Verdict>) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={CRD_NAME}"));
    let events = watcher(api, config).default_backoff().boxed();
    follow(events, verdict, KEEP_VERDICT_WHILE_FAILING).await;
}

/// Publishes the verdict of each state of the CRD that `events` shows. A watch error publishes
/// "unreadable" at once when no verdict was read yet; otherwise the last verdict read stands until
/// the watch has failed for `keep` without a success in between.
pub async fn follow(
    mut events: impl Stream<Item = Result<watcher::Event<CustomResourceDefinition>, watcher::Error>>
    + Unpin,
    verdict: watch::Sender<Verdict>,
    keep: Duration,
) {
    let mut listing: Option<CustomResourceDefinition> = None;
    let mut current: Option<CustomResourceDefinition> = None;
    let mut synced = false;
    // While the watch fails: since when, and its last error.
    let mut failing: Option<(Instant, Arc<watcher::Error>)> = None;
    loop {
        let kept_until = failing
            .as_ref()
            .filter(|_| read_a_verdict(&verdict.borrow()))
            .map(|(since, _)| *since + keep);
        let event = match kept_until {
            Some(until) => tokio::select! {
                event = events.next() => event,
                () = tokio::time::sleep_until(until) => {
                    if let Some((_, e)) = &failing {
                        publish(&verdict, Err(CrdProblem::Unreadable { source: e.clone() }));
                    }
                    continue;
                }
            },
            None => events.next().await,
        };
        let Some(event) = event else { break };
        match event {
            Ok(event) => {
                if failing.take().is_some() {
                    info!("the CloudPhone CRD watch works again");
                }
                match event {
                    watcher::Event::Init => listing = None,
                    watcher::Event::InitApply(crd) => listing = Some(crd),
                    watcher::Event::InitDone => {
                        current = listing.take();
                        synced = true;
                    }
                    watcher::Event::Apply(crd) => current = Some(crd),
                    watcher::Event::Delete(_) => current = None,
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                let since = failing
                    .as_ref()
                    .map_or_else(Instant::now, |(since, _)| *since);
                failing = Some((since, e.clone()));
                if read_a_verdict(&verdict.borrow()) && since.elapsed() < keep {
                    warn!(error = %e, keep_s = keep.as_secs(), "cannot watch the CloudPhone CRD; its last verdict stands meanwhile; retrying with backoff");
                } else {
                    publish(&verdict, Err(CrdProblem::Unreadable { source: e }));
                }
                continue;
            }
        }
        if synced {
            publish(&verdict, compare(current.as_ref()));
        }
    }
}

/// True when `verdict` was read from the CRD (compatible, or a positive "missing" or "older"),
/// rather than "not checked yet" or "unreadable".
fn read_a_verdict(verdict: &Verdict) -> bool {
    !matches!(
        verdict,
        Err(CrdProblem::NotChecked | CrdProblem::Unreadable { .. })
    )
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

    fn crd_event(crd: CustomResourceDefinition) -> watcher::Event<CustomResourceDefinition> {
        watcher::Event::Apply(crd)
    }

    /// `follow` over a stream the test feeds, and the verdicts it publishes.
    fn follow_fed(
        keep: Duration,
    ) -> (
        futures::channel::mpsc::UnboundedSender<
            Result<watcher::Event<CustomResourceDefinition>, watcher::Error>,
        >,
        watch::Receiver<Verdict>,
    ) {
        let (events, fed) = futures::channel::mpsc::unbounded();
        let (verdict, verdicts) = watch::channel(Err(CrdProblem::NotChecked));
        tokio::spawn(follow(fed, verdict, keep));
        (events, verdicts)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn listed(
        events: &futures::channel::mpsc::UnboundedSender<
            Result<watcher::Event<CustomResourceDefinition>, watcher::Error>,
        >,
        crd: CustomResourceDefinition,
    ) {
        events.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        events
            .unbounded_send(Ok(watcher::Event::InitApply(crd)))
            .unwrap();
        events.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
    }

    fn failed() -> Result<watcher::Event<CustomResourceDefinition>, watcher::Error> {
        Err(watcher::Error::NoResourceVersion)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_watch_keeps_the_last_verdict_for_a_bounded_time() {
        let keep = Duration::from_secs(120);
        let (events, verdicts) = follow_fed(keep);
        events.unbounded_send(failed()).unwrap();
        settle().await;
        assert!(
            matches!(*verdicts.borrow(), Err(CrdProblem::Unreadable { .. })),
            "no verdict read yet: unreadable at once"
        );
        listed(&events, crate::api::crd());
        settle().await;
        assert_eq!(*verdicts.borrow(), Ok(()));

        // The watch fails: the gate stays open for `keep`, then closes.
        events.unbounded_send(failed()).unwrap();
        settle().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        events.unbounded_send(failed()).unwrap();
        settle().await;
        tokio::time::sleep(Duration::from_secs(59)).await;
        settle().await;
        assert_eq!(*verdicts.borrow(), Ok(()), "kept while failing < {keep:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert!(
            matches!(*verdicts.borrow(), Err(CrdProblem::Unreadable { .. })),
            "closed once failing > {keep:?}, with no further event: {:?}",
            *verdicts.borrow()
        );

        // It comes back: its verdict again; a success in between restarts the bound.
        listed(&events, crate::api::crd());
        settle().await;
        assert_eq!(*verdicts.borrow(), Ok(()));
        events.unbounded_send(failed()).unwrap();
        settle().await;
        tokio::time::sleep(Duration::from_secs(100)).await;
        events
            .unbounded_send(Ok(crd_event(crate::api::crd())))
            .unwrap();
        settle().await;
        events.unbounded_send(failed()).unwrap();
        settle().await;
        tokio::time::sleep(Duration::from_secs(100)).await;
        settle().await;
        assert_eq!(*verdicts.borrow(), Ok(()), "the bound restarted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_or_older_crd_closes_the_gate_at_once_and_an_error_keeps_it_closed() {
        let (events, verdicts) = follow_fed(Duration::from_secs(120));
        listed(&events, crate::api::crd());
        settle().await;
        assert_eq!(*verdicts.borrow(), Ok(()));
        events
            .unbounded_send(Ok(crd_event(with_revision(Some("0")))))
            .unwrap();
        settle().await;
        assert_eq!(*verdicts.borrow(), Err(CrdProblem::TooOld { revision: 0 }));
        events.unbounded_send(failed()).unwrap();
        settle().await;
        assert_eq!(
            *verdicts.borrow(),
            Err(CrdProblem::TooOld { revision: 0 }),
            "a failing watch keeps a closed gate closed"
        );
        events
            .unbounded_send(Ok(watcher::Event::Delete(crate::api::crd())))
            .unwrap();
        settle().await;
        assert_eq!(*verdicts.borrow(), Err(CrdProblem::NotInstalled));
    }
}
