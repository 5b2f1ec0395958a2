//! Where the tick loop reads phones and writes their status: a trait, so that the same engine runs
//! on the Kubernetes watch cache and on an in-memory store.

use crate::api::{CloudPhone, CloudPhoneStatus};
use crate::plan::{PhoneEvent, PhoneKey};
use std::future::Future;
use std::sync::Arc;

/// Why one status write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
pub enum WriteError {
    /// The object was deleted meanwhile: nothing to write.
    #[error("CloudPhone {0} no longer exists")]
    Gone(PhoneKey),
    /// The object changed since the version the write was fenced with (HTTP 409): the plan was
    /// made from a stale view, so nothing more is done for the phone this tick.
    #[error("CloudPhone {0}: the object changed since the version this status was planned from")]
    Conflict(PhoneKey),
    /// Any other failure, retried on the next tick.
    #[error("CloudPhone {key}: status write failed: {message}")]
    Other { key: PhoneKey, message: String },
}

impl WriteError {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        self.into()
    }
}

/// The phones and their status, as the engine sees them.
pub trait PhoneStore: Send + Sync + 'static {
    /// Every phone, as last seen. This is a cache and may be stale: a status just written may not
    /// show yet (the engine waits for it: a phone whose cached object predates its own write is not
    /// planned).
    fn snapshot(&self) -> Vec<Arc<CloudPhone>>;

    /// Writes one phone's `.status`, and nothing else of the object, fenced: the write succeeds only
    /// while the object is still at `fence`, the `metadata.resourceVersion` the status was planned
    /// from, and fails with [`WriteError::Conflict`] otherwise. Returns the version the write made.
    ///
    /// NB: resourceVersions are opaque: compare them for equality only.
    fn write_status(
        &self,
        phone: &CloudPhone,
        fence: Option<&str>,
        status: &CloudPhoneStatus,
    ) -> impl Future<Output = Result<Option<String>, WriteError>> + Send;

    /// Publishes an event on a phone. Best effort: a failure is logged, never retried.
    fn publish(&self, phone: &CloudPhone, event: &PhoneEvent) -> impl Future<Output = ()> + Send;
}

/// Which object a phone is, for what the engine remembers of it and for the early ticks the watch
/// asks for: its uid, which no re-created object of the same name shares; `namespace/name` for an
/// object without one (kept in memory).
pub(crate) type ObjectId = String;

/// A phone's [`ObjectId`], borrowed from the object when it has a uid: looking one up allocates
/// nothing.
pub(crate) fn object_id(phone: &CloudPhone) -> std::borrow::Cow<'_, str> {
    match phone.metadata.uid.as_deref() {
        Some(uid) => std::borrow::Cow::Borrowed(uid),
        None => std::borrow::Cow::Owned(PhoneKey::of(phone).to_string()),
    }
}
