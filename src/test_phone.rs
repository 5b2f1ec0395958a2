//! The one test CloudPhone builder, unit and integration tests alike: this file is the crate's
//! `test_phone` module under `cfg(test)` and is included by `tests/support` with `#[path]`.
//!
//! NB: it names the crate's types through `super::api`, which is the crate's `api` at the lib's root
//! and `tests/support`'s re-export of it there; each crate uses part of it.
#![allow(dead_code)]

use super::api::{AccountRef, CloudPhone, CloudPhoneSpec, CloudPhoneStatus, Lifecycle};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The fixed instant test phones are created at, `created(0)`, in seconds since the epoch.
pub const CREATED_AT: i64 = 1_700_000_000;

/// A test CloudPhone, built with chainable setters: by default `BackedUp`, in namespace `fleet`,
/// as the API server would hold it (uid `uid-<name>`, generation 1, resourceVersion 10, created at
/// [`CREATED_AT`]), with no status yet.
#[derive(Clone, Debug)]
pub struct PhoneBuilder(CloudPhone);

/// A phone named `name` for instance `instance`; see [`PhoneBuilder`].
pub fn cloudphone(name: &str, instance: &str) -> PhoneBuilder {
    let mut p = CloudPhone::new(
        name,
        CloudPhoneSpec {
            instance_id: instance.into(),
            lifecycle: Lifecycle::BackedUp,
            interrupt_streaming: false,
            suspend: false,
            account_ref: None,
            user_id: None,
            idle_timeout: None,
            schedule_ref: None,
        },
    );
    p.metadata.namespace = Some("fleet".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.generation = Some(1);
    p.metadata.resource_version = Some("10".into());
    PhoneBuilder(p).created(0)
}

impl PhoneBuilder {
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.into());
        self
    }
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.0.spec.lifecycle = lifecycle;
        self
    }
    pub fn backed_up(self) -> Self {
        self.lifecycle(Lifecycle::BackedUp)
    }
    /// Only observed: the operator never acts on it.
    pub fn observed(self) -> Self {
        self.lifecycle(Lifecycle::Observed)
    }
    pub fn interrupt_streaming(mut self) -> Self {
        self.0.spec.interrupt_streaming = true;
        self
    }
    /// Declares the `Loaded` lifecycle for the vendor user `user`.
    pub fn loaded(mut self, user: &str) -> Self {
        self.0.spec.lifecycle = Lifecycle::Loaded;
        self.0.spec.user_id = Some(user.into());
        self
    }
    /// Declares the `Scheduled` lifecycle on the schedule `schedule`, for the vendor user `user`.
    pub fn scheduled(mut self, schedule: &str, user: &str) -> Self {
        self.0.spec.lifecycle = Lifecycle::Scheduled;
        self.0.spec.user_id = Some(user.into());
        self.0.spec.schedule_ref = Some(Box::new(super::api::ScheduleRef {
            name: schedule.into(),
        }));
        self
    }
    pub fn idle_timeout(mut self, timeout: &str) -> Self {
        self.0.spec.idle_timeout = Some(timeout.into());
        self
    }
    pub fn load_until(mut self, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(super::api::LOAD_UNTIL.into(), value.into());
        self
    }
    pub fn suspended(mut self) -> Self {
        self.0.spec.suspend = true;
        self
    }
    /// Created `seconds` after [`CREATED_AT`] (so that the older owns a shared instance id).
    pub fn created(mut self, seconds: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(
            jiff::Timestamp::from_second(CREATED_AT + seconds).unwrap(),
        ));
        self
    }
    /// Names the CloudPhoneAccount `account` in `spec.accountRef`.
    pub fn account(mut self, account: &str) -> Self {
        self.0.spec.account_ref = Some(AccountRef {
            name: account.into(),
        });
        self
    }
    pub fn status(mut self, status: CloudPhoneStatus) -> Self {
        self.0.status = Some(status);
        self
    }
    pub fn generation(mut self, generation: i64) -> Self {
        self.0.metadata.generation = Some(generation);
        self
    }
    /// Tells this object from a re-created one of the same name.
    pub fn uid(mut self, uid: &str) -> Self {
        self.0.metadata.uid = Some(uid.into());
        self
    }
    pub fn resource_version(mut self, version: &str) -> Self {
        self.0.metadata.resource_version = Some(version.into());
        self
    }
    /// Its `cloudphone.io/reconcile-requested-at` annotation.
    pub fn reconcile_requested(mut self, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(super::api::RECONCILE_REQUESTED_AT.into(), value.into());
        self
    }
    pub fn build(self) -> CloudPhone {
        self.0
    }
    /// As JSON, the way an API server answers with it.
    pub fn json(self) -> serde_json::Value {
        serde_json::to_value(self.0).unwrap()
    }
}
