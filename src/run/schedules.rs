//! The CloudPhoneSchedules' watch cache (one reflector per watched namespace, or one cluster-wide)
//! and their status writes: the engine's [`ScheduleSource`] in a cluster.

use crate::api::{CloudPhoneSchedule, CloudPhoneScheduleStatus};
use crate::reconciler::{FIELD_MANAGER, ScheduleSource, ScheduleWriteError};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::sync::{Arc, Mutex};
use tracing::warn;

/// The schedules as their watches keep them.
pub(super) struct KubeSchedules {
    client: Client,
    readers: Vec<Store<CloudPhoneSchedule>>,
    /// The last error of a failing watch (its CRD missing, a Role missing), for `/readyz`.
    error: Arc<Mutex<Option<String>>>,
}

impl KubeSchedules {
    /// Starts the watches of the schedules in `namespaces` (all when empty) on `tasks`.
    pub(super) fn watch(
        tasks: &mut super::tasks::Tasks,
        client: &Client,
        namespaces: &[String],
    ) -> Arc<KubeSchedules> {
        let apis: Vec<Api<CloudPhoneSchedule>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let error = Arc::new(Mutex::new(None));
        let mut readers = Vec::with_capacity(apis.len());
        for api in apis {
            let (reader, writer) = reflector::store();
            readers.push(reader);
            let error = error.clone();
            tasks.spawn("CloudPhoneSchedule watch", async move {
                let mut events = std::pin::pin!(
                    watcher(api, watcher::Config::default())
                        .default_backoff()
                        .reflect(writer)
                );
                while let Some(event) = events.next().await {
                    let mut last = error.lock().unwrap_or_else(|p| p.into_inner());
                    match event {
                        Ok(_) => *last = None,
                        Err(e) => {
                            warn!(error = %e, "CloudPhoneSchedule watch failed (is its CRD installed, may the operator list and watch cloudphoneschedules?); Scheduled phones are held as they are; retrying with backoff");
                            *last = Some(e.to_string());
                        }
                    }
                }
            });
        }
        Arc::new(KubeSchedules {
            client: client.clone(),
            readers,
            error,
        })
    }

    /// Why the schedules are not known yet, if they are not: a note for `/readyz`.
    pub(super) fn note(&self) -> Option<String> {
        if self.synced() {
            return None;
        }
        let why = match &*self.error.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => format!("failing: {e}"),
            None => "listing".to_owned(),
        };
        Some(format!(
            "the CloudPhoneSchedule watch has not synced ({why}): Scheduled phones are held as they are (ScheduleNotFound); \
             check that the CloudPhoneSchedule CRD is installed (helm upgrade does not install new CRDs: kubectl apply --server-side -f crds/) \
             and that the operator may list and watch cloudphoneschedules"
        ))
    }

    fn synced(&self) -> bool {
        self.readers.iter().all(|r| {
            r.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        })
    }
}

impl ScheduleSource for KubeSchedules {
    fn snapshot(&self) -> Option<Vec<Arc<CloudPhoneSchedule>>> {
        self.synced()
            .then(|| self.readers.iter().flat_map(|r| r.state()).collect())
    }

    fn write_status<'a>(
        &'a self,
        schedule: &'a CloudPhoneSchedule,
        status: &'a CloudPhoneScheduleStatus,
    ) -> BoxFuture<'a, Result<(), ScheduleWriteError>> {
        Box::pin(async move {
            let namespace = schedule.metadata.namespace.as_deref().unwrap_or_default();
            let name = schedule.metadata.name.as_deref().unwrap_or_default();
            let api: Api<CloudPhoneSchedule> = Api::namespaced(self.client.clone(), namespace);
            // NB: server-side apply of the whole status: a field left out (a wave cleared) is
            // removed, which a merge patch would keep.
            let patch = serde_json::json!({
                "apiVersion": "cloudphone.io/v1alpha1",
                "kind": "CloudPhoneSchedule",
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            });
            api.patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 404 => {
                    ScheduleWriteError::Gone(format!("{namespace}/{name}"))
                }
                e => ScheduleWriteError::Failed {
                    key: format!("{namespace}/{name}"),
                    source: Box::new(e),
                },
            })
        })
    }
}
