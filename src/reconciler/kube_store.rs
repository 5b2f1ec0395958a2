//! The Kubernetes [`PhoneStore`]: kube-runtime's watch cache as the snapshot, server-side apply on
//! the `status` subresource for writes, kube's event recorder for events.
//!
//! It never writes `spec` or `metadata`: the only write is the status subresource under the field
//! manager [`FIELD_MANAGER`], so GitOps tools see no drift.

use super::engine::Trigger;
use super::store::{PhoneStore, WriteError, object_id};
use crate::api::{CloudPhone, CloudPhoneStatus, INVALID_ANNOTATION, READ_ANNOTATIONS};
use crate::plan::{PhoneEvent, PhoneKey};
use futures::{FutureExt, StreamExt, stream};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Client, Resource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, warn};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "cloudphone-operator";

/// A status write that takes longer than this is abandoned and retried next tick.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchConfig {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// A label selector narrowing the watch.
    pub selector: Option<String>,
    /// Quiet time after a create or spec change before the early tick.
    pub debounce: Duration,
}

/// CloudPhones as the watch cache holds them, written back through the API server.
pub struct KubeStore {
    client: Client,
    readers: Vec<Store<CloudPhone>>,
    recorder: Recorder,
}

/// The watches that fill a [`KubeStore`]; run them with [`Watches::run`].
pub struct Watches {
    watches: Vec<(Api<CloudPhone>, Writer<CloudPhone>)>,
    config: WatchConfig,
}

/// The APIs to watch: one per namespace, or one across all.
pub fn phone_apis(client: &Client, namespaces: &[String]) -> Vec<Api<CloudPhone>> {
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

impl KubeStore {
    /// A store over the watches of `config`; nothing is watched until [`Watches::run`].
    pub fn new(client: Client, config: WatchConfig, reporter: Reporter) -> (KubeStore, Watches) {
        let mut readers = Vec::new();
        let mut watches = Vec::new();
        for api in phone_apis(&client, &config.namespaces) {
            let (reader, writer) = reflector::store();
            readers.push(reader);
            watches.push((api, writer));
        }
        let recorder = Recorder::new(client.clone(), reporter);
        (
            KubeStore {
                client,
                readers,
                recorder,
            },
            Watches { watches, config },
        )
    }

    /// True once every watch has listed its objects (the reflector stores' own readiness).
    pub fn is_synced(&self) -> bool {
        self.readers.iter().all(|r| {
            r.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        })
    }

    /// Waits until every watch has listed its objects.
    pub async fn wait_until_synced(&self) {
        for reader in &self.readers {
            // NB: the error means the writer is gone, which only happens at shutdown.
            let _ = reader.wait_until_ready().await;
        }
    }
}

impl PhoneStore for KubeStore {
    fn snapshot(&self) -> Vec<Arc<CloudPhone>> {
        self.readers.iter().flat_map(|r| r.state()).collect()
    }

    async fn write_status(
        &self,
        phone: &CloudPhone,
        fence: Option<&str>,
        status: &CloudPhoneStatus,
    ) -> Result<Option<String>, WriteError> {
        let key = PhoneKey::of(phone);
        let api: Api<CloudPhone> = Api::namespaced(self.client.clone(), &key.namespace);
        // NB: the API server honours metadata.resourceVersion in an apply patch as a precondition
        // (409 on any other version), on the status subresource too: this is the write's fence.
        let mut patch = serde_json::json!({
            "apiVersion": CloudPhone::api_version(&()),
            "kind": CloudPhone::kind(&()),
            "status": status,
        });
        if let Some(version) = fence {
            patch["metadata"] = serde_json::json!({ "resourceVersion": version });
        }
        // NB: forced, because this operator is the one writer of status; without force a field
        // another manager once set would make every write conflict.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&patch);
        let write = api.patch_status(&key.name, &params, &patch);
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(written)) => Ok(written.metadata.resource_version),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => Err(WriteError::Gone(key)),
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => Err(WriteError::Conflict(key)),
            Ok(Err(e)) => Err(WriteError::Other {
                key,
                message: e.to_string(),
            }),
            Err(_) => Err(WriteError::Other {
                key,
                message: format!("no answer within {}s", WRITE_TIMEOUT.as_secs()),
            }),
        }
    }

    async fn publish(&self, phone: &CloudPhone, event: &PhoneEvent) {
        let ev = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.to_owned(),
            note: Some(event.message.clone()),
            action: event.reason.to_owned(),
            secondary: None,
        };
        // NB: no resourceVersion in the reference: it changes with every status write, and would
        // make each repeat of an event a new one instead of a series.
        let mut reference = phone.object_ref(&());
        reference.resource_version = None;
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            warn!(phone = %PhoneKey::of(phone), reason = event.reason, error = %e, "cannot publish event");
        }
    }
}

impl Watches {
    /// Runs every watch, feeding the store, until the process ends. A create, a change of
    /// `metadata.generation` or a new reconcile request asks `trigger` for an early tick of that
    /// phone after the debounce; status-only updates and re-lists do not.
    ///
    /// NB: kept by hand rather than with kube-runtime's `predicates::generation`: that filter
    /// sees the objects of a list as new, so every start and every relist would fire an early tick
    /// (a whole fleet's status calls again); here the lists only rebuild the map.
    pub async fn run(self, trigger: Trigger) {
        let dirty = Arc::new(Notify::new());
        let debounce = self.config.debounce;
        let selector = self.config.selector.clone();
        let watch_count = self.watches.len();
        let streams = self
            .watches
            .into_iter()
            .enumerate()
            .map(|(w, (api, writer))| {
                let mut config = watcher::Config::default();
                if let Some(selector) = &selector {
                    config = config.labels(selector);
                }
                watcher(api, config)
                    .default_backoff()
                    .modify(slim)
                    .reflect(writer)
                    .map(move |event| (event, w))
                    .boxed()
            });
        let events = {
            let dirty = dirty.clone();
            let trigger = trigger.clone();
            async move {
                // NB: one map a watch, rebuilt by each of its lists: an object deleted while a
                // watch was down leaves no entry behind.
                let mut generations: Vec<HashMap<String, Wanted>> =
                    vec![HashMap::new(); watch_count];
                let mut listing: Vec<HashMap<String, Wanted>> = vec![HashMap::new(); watch_count];
                let mut merged = stream::select_all(streams);
                while let Some((event, w)) = merged.next().await {
                    match event {
                        Ok(watcher::Event::Init) => listing[w] = HashMap::new(),
                        Ok(watcher::Event::InitApply(phone)) => {
                            listing[w].insert(object_id(&phone).into_owned(), Wanted::of(&phone));
                        }
                        Ok(watcher::Event::InitDone) => {
                            generations[w] = std::mem::take(&mut listing[w]);
                        }
                        Ok(watcher::Event::Apply(phone)) => {
                            let wanted = Wanted::of(&phone);
                            // NB: the engine's own identity of a phone: the early tick finds it by this key.
                            let uid = object_id(&phone).into_owned();
                            if generations[w].get(&uid) != Some(&wanted) {
                                debug!(phone = %PhoneKey::of(&phone), "created, spec changed or reconcile requested: early tick of this phone");
                                trigger.request(&uid);
                                generations[w].insert(uid, wanted);
                                dirty.notify_one();
                            }
                        }
                        Ok(watcher::Event::Delete(phone)) => {
                            generations[w].remove(object_id(&phone).as_ref());
                        }
                        Err(e) => {
                            warn!(error = %e, "CloudPhone watch failed; retrying with backoff")
                        }
                    }
                }
            }
        };
        let debouncer = async move {
            loop {
                dirty.notified().await;
                tokio::time::sleep(debounce).await;
                trigger.wake();
            }
        };
        tokio::join!(events, debouncer);
    }
}

/// Keeps in the watch cache only what the engine reads: no managed fields, labels (the selector is
/// applied by the API server), finalizers or owner references, and no annotation but those of
/// [`READ_ANNOTATIONS`] (kubectl's `last-applied-configuration` alone is as large as the rest of a
/// phone); a value over its bound is replaced by [`INVALID_ANNOTATION`], so that a hostile value
/// costs no memory and is never used. Spec, status (every field the next server-side apply
/// carries) and the identity of the object stay.
pub fn slim(phone: &mut CloudPhone) {
    // NB: None, not an emptied Vec: `clear()` would keep the entries' buffer allocated.
    phone.metadata.managed_fields = None;
    phone.metadata.labels = None;
    phone.metadata.finalizers = None;
    phone.metadata.owner_references = None;
    if let Some(annotations) = phone.metadata.annotations.as_mut() {
        annotations.retain(|key, value| {
            let Some((_, bound)) = READ_ANNOTATIONS.iter().find(|(name, _)| name == key) else {
                return false;
            };
            if value.len() > *bound {
                *value = INVALID_ANNOTATION.to_owned();
            }
            true
        });
        if annotations.is_empty() {
            phone.metadata.annotations = None;
        }
    }
}

/// What a user asks of a phone: its spec's generation, its reconcile request and its load-until
/// time. A change of any (a create, a spec change, a new `cloudphone.io/reconcile-requested-at`, a
/// session service setting `cloudphone.io/load-until`) asks for an early tick; a status write
/// changes none.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wanted {
    generation: Option<i64>,
    reconcile_requested: Option<String>,
    load_until: Option<String>,
}

impl Wanted {
    fn of(phone: &CloudPhone) -> Wanted {
        Wanted {
            generation: phone.metadata.generation,
            reconcile_requested: phone.reconcile_requested().map(str::to_owned),
            load_until: match phone.load_until() {
                Some(crate::api::AnnotationValue::Valid(value)) => Some(value.to_owned()),
                Some(crate::api::AnnotationValue::Invalid) => Some(String::new()),
                None => None,
            },
        }
    }
}
