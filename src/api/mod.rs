//! The `CloudPhone`, `CloudPhoneAccount` and `CloudPhoneSchedule` custom resources: the Rust types that are the single
//! source of `crds/`.
//!
//! Everything a user writes (`spec`) or reads (`status`) is declared here, with its schema validation,
//! so that `kubectl apply` refuses a bad object before the operator ever sees it.

mod account;
mod cloudphone;
mod crd;
mod phase;
mod schedule;

pub use account::{
    AccountLimits, AccountRef, CloudPhoneAccount, CloudPhoneAccountSpec, CloudPhoneAccountStatus,
    DEFAULT_ACCOUNT_NAME, SecretRef, account_crd,
};
pub use cloudphone::{
    ActionStatus, AnnotationValue, CloudPhone, CloudPhoneSpec, CloudPhoneStatus, EffectiveReason,
    INSTANCE_ID_MAX_LEN, INVALID_ANNOTATION, LOAD_UNTIL, Lifecycle, MAX_LOAD_UNTIL_LEN,
    MAX_RECONCILE_REQUEST_LEN, MAX_VENDOR_ID_LEN, READ_ANNOTATIONS, RECONCILE_REQUESTED_AT,
    ScheduleRef, Transition, check_instance_id, crd,
};
pub use crd::{SCHEMA_REVISION, SCHEMA_REVISION_ANNOTATION};
pub use phase::Phase;
pub use schedule::{
    CloudPhoneSchedule, CloudPhoneScheduleSpec, CloudPhoneScheduleStatus, ExceptionLifecycle,
    MAX_EXCEPTIONS, MAX_WINDOWS, ScheduleCounts, ScheduleException, ScheduleWindow, WaveAnchor,
    Weekday, schedule_crd,
};

/// The CRDs this binary defines, by the plural of their kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    CloudPhones,
    CloudPhoneAccounts,
    CloudPhoneSchedules,
}

/// A CRD as the YAML document checked in under `crds/`.
pub fn crd_yaml(kind: CrdKind) -> String {
    let crd = match kind {
        CrdKind::CloudPhones => crd(),
        CrdKind::CloudPhoneAccounts => account_crd(),
        CrdKind::CloudPhoneSchedules => schedule_crd(),
    };
    // NB: serialising a k8s-openapi CRD cannot fail; the expect guards a broken dependency upgrade.
    yaml_serde::to_string(&crd).expect("the CRD serialises to YAML")
}
