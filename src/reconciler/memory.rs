//! An in-memory [`PhoneStore`], for the quick start and the tests, with injectable write failures.
//!
//! Like the API server, it gives every change of an object a new `metadata.resourceVersion`,
//! refuses a status write fenced with any other version than the current one, and refuses (422) a
//! status whose strings exceed the schema's `maxLength`.

use super::store::{PhoneStore, WriteError};
use crate::api::{CloudPhone, CloudPhoneStatus};
use crate::plan::{PhoneEvent, PhoneKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which failure to inject into the next writes of one phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedWriteFailure {
    Gone,
    Conflict,
    /// Any other refusal ([`WriteError::Other`]), as an admission webhook's or a 500 would be.
    Refused,
}

/// Phones held in memory, keyed by namespace/name.
#[derive(Default)]
pub struct MemoryStore {
    phones: Mutex<BTreeMap<PhoneKey, Arc<CloudPhone>>>,
    failures: Mutex<HashMap<PhoneKey, (InjectedWriteFailure, u32)>>,
    writes: AtomicU64,
    /// The last resourceVersion given out.
    versions: AtomicU64,
    events: Mutex<Vec<(PhoneKey, PhoneEvent)>>,
}

impl MemoryStore {
    /// A store holding these phones.
    pub fn new(phones: impl IntoIterator<Item = CloudPhone>) -> MemoryStore {
        let store = MemoryStore::default();
        for phone in phones {
            store.insert(phone);
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PhoneKey, Arc<CloudPhone>>> {
        self.phones.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_version(&self) -> String {
        (self.versions.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    /// Adds or replaces a phone, giving it a new resourceVersion.
    pub fn insert(&self, mut phone: CloudPhone) {
        phone.metadata.resource_version = Some(self.next_version());
        self.lock().insert(PhoneKey::of(&phone), Arc::new(phone));
    }

    /// Deletes a phone.
    pub fn remove(&self, key: &PhoneKey) -> Option<Arc<CloudPhone>> {
        self.lock().remove(key)
    }

    /// One phone, as stored now.
    pub fn get(&self, key: &PhoneKey) -> Option<Arc<CloudPhone>> {
        self.lock().get(key).cloned()
    }

    /// Successful status writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Every event published so far, in order.
    pub fn events(&self) -> Vec<(PhoneKey, PhoneEvent)> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes the next `times` writes of one phone fail.
    pub fn fail_writes(&self, key: PhoneKey, failure: InjectedWriteFailure, times: u32) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (failure, times));
    }

    fn injected(&self, key: &PhoneKey) -> Option<InjectedWriteFailure> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (failure, left) = failures.get_mut(key)?;
        let failure = *failure;
        *left -= 1;
        if *left == 0 {
            failures.remove(key);
        }
        Some(failure)
    }
}

/// The first status field over the `maxLength` of the CRD's schema, which the API server refuses
/// with 422: the store refuses it the same way.
fn over_its_bound(status: &CloudPhoneStatus) -> Option<&'static str> {
    let too_long =
        |value: Option<&String>, max: usize| value.is_some_and(|v| v.chars().count() > max);
    let backup = status.backup.as_ref();
    if too_long(
        status.last_handled_reconcile_at.as_ref(),
        crate::api::MAX_RECONCILE_REQUEST_LEN,
    ) {
        Some("lastHandledReconcileAt")
    } else if too_long(
        backup.and_then(|b| b.task_id.as_ref()),
        crate::api::MAX_VENDOR_ID_LEN,
    ) {
        Some("backup.taskId")
    } else if too_long(
        backup.and_then(|b| b.job_id.as_ref()),
        crate::api::MAX_VENDOR_ID_LEN,
    ) {
        Some("backup.jobId")
    } else {
        None
    }
}

impl PhoneStore for MemoryStore {
    fn snapshot(&self) -> Vec<Arc<CloudPhone>> {
        self.lock().values().cloned().collect()
    }

    async fn write_status(
        &self,
        phone: &CloudPhone,
        fence: Option<&str>,
        status: &CloudPhoneStatus,
    ) -> Result<Option<String>, WriteError> {
        let key = PhoneKey::of(phone);
        match self.injected(&key) {
            Some(InjectedWriteFailure::Gone) => return Err(WriteError::Gone(key)),
            Some(InjectedWriteFailure::Conflict) => return Err(WriteError::Conflict(key)),
            Some(InjectedWriteFailure::Refused) => {
                return Err(WriteError::Other {
                    key,
                    message: "HTTP 500: injected refusal".to_owned(),
                });
            }
            None => {}
        }
        if let Some(field) = over_its_bound(status) {
            return Err(WriteError::Other {
                key,
                message: format!("HTTP 422: status.{field}: Too long"),
            });
        }
        let mut phones = self.lock();
        let Some(stored) = phones.get_mut(&key) else {
            return Err(WriteError::Gone(key));
        };
        if fence.is_some_and(|v| stored.metadata.resource_version.as_deref() != Some(v)) {
            return Err(WriteError::Conflict(key));
        }
        let mut updated = (**stored).clone();
        updated.status = Some(status.clone());
        let version = self.next_version();
        updated.metadata.resource_version = Some(version.clone());
        *stored = Arc::new(updated);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(Some(version))
    }

    async fn publish(&self, phone: &CloudPhone, event: &PhoneEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((PhoneKey::of(phone), event.clone()));
    }
}
