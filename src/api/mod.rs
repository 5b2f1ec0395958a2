//! The `CloudPhone` and `CloudPhoneAccount` custom resources: the Rust types that are the single
//! source of `crds/`.
//!
//! Everything a user writes (`spec`) or reads (`status`) is declared here, with its schema validation,
//! so that `kubectl apply` refuses a bad object before the operator ever sees it.

mod account;
mod cloudphone;
mod phase;

pub use account::{
    AccountLimits, AccountRef, CloudPhoneAccount, CloudPhoneAccountSpec, CloudPhoneAccountStatus,
    DEFAULT_ACCOUNT_NAME, SecretRef, account_crd,
};
pub use cloudphone::{
    AnnotationValue, BackupStatus, CloudPhone, CloudPhoneSpec, CloudPhoneStatus, CrdKind,
    INSTANCE_ID_MAX_LEN, INVALID_ANNOTATION, Lifecycle, MAX_RECONCILE_REQUEST_LEN,
    MAX_VENDOR_ID_LEN, READ_ANNOTATIONS, RECONCILE_REQUESTED_AT, SCHEMA_REVISION,
    SCHEMA_REVISION_ANNOTATION, check_instance_id, crd, crd_yaml,
};
pub use phase::Phase;
