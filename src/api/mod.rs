//! The `CloudPhone` custom resource: the Rust types that are the single source of `crds/`.
//!
//! Everything a user writes (`spec`) or reads (`status`) is declared here, with its schema validation,
//! so that `kubectl apply` refuses a bad object before the operator ever sees it.

mod cloudphone;
mod phase;

pub use cloudphone::{
    BackupStatus, CloudPhone, CloudPhoneSpec, CloudPhoneStatus, INSTANCE_ID_MAX_LEN, Lifecycle,
    SCHEMA_REVISION, SCHEMA_REVISION_ANNOTATION, check_instance_id, crd, crd_yaml,
};
pub use phase::Phase;
