//! `CloudPhone` (`cloudphone.io/v1alpha1`): spec, status and the generated CRD.

use super::Phase;
use super::account::AccountRef;
use super::crd::{annotated, conditions_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The vendor's limit on the length of an instance id.
pub const INSTANCE_ID_MAX_LEN: usize = 32;

/// One KooPhone cloud-phone instance and the lifecycle declared for it.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudphone.io",
    version = "v1alpha1",
    kind = "CloudPhone",
    plural = "cloudphones",
    shortname = "cph",
    namespaced,
    status = "CloudPhoneStatus",
    derive = "PartialEq",
    doc = "A KooPhone (CloudDevice) cloud-phone instance and the lifecycle declared for it.",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceId"}"#,
    printcolumn = r#"{"name":"Lifecycle","type":"string","jsonPath":".spec.lifecycle"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.effectiveLifecycle"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Code","type":"integer","jsonPath":".status.instanceStatus"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Backup","type":"date","jsonPath":".status.lastBackupTime"}"#,
    printcolumn = r#"{"name":"Last Loaded","type":"date","jsonPath":".status.lastLoadedTime"}"#,
    printcolumn = r#"{"name":"Next","type":"date","jsonPath":".status.nextTransition.at"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("!has(oldSelf.accountRef) || has(self.accountRef)").message("spec.accountRef cannot be removed once set"))]
#[x_kube(validation = Rule::new("!(self.lifecycle in ['Loaded', 'Scheduled']) || has(self.userId)").message("spec.userId is required when spec.lifecycle is Loaded or Scheduled: the user the vendor readies the instance for"))]
#[x_kube(validation = Rule::new("(self.lifecycle == 'Scheduled') == has(self.scheduleRef)").message("spec.scheduleRef is required when spec.lifecycle is Scheduled, and only then"))]
#[serde(rename_all = "camelCase")]
pub struct CloudPhoneSpec {
    /// The vendor's instance id: 1-32 characters of [A-Za-z0-9_-]. Immutable once set: to manage
    /// another instance, create another CloudPhone.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceId is immutable"))]
    pub instance_id: String,

    /// The lifecycle the operator keeps this instance at. Observed (default): only read its
    /// status. BackedUp: keep its data in object storage with no physical instance held. Loaded:
    /// keep its data on a physical instance, ready to stream for spec.userId (the vendor's prepare
    /// brings it back from object storage). Scheduled: Loaded inside the windows of the
    /// CloudPhoneSchedule spec.scheduleRef names, BackedUp (with spec.idleTimeout) outside.
    #[serde(default)]
    pub lifecycle: Lifecycle,

    /// The CloudPhoneSchedule, in the phone's namespace, that a Scheduled phone follows; required
    /// for Scheduled, and only then.
    // NB: boxed: most phones name none, and every phone of a fleet carries the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_ref: Option<Box<ScheduleRef>>,

    /// The vendor user the instance is readied for when its lifecycle is Loaded (the user_id of the
    /// vendor's prepare call): 1-32 characters of [A-Za-z0-9_-]; required for Loaded. A change of
    /// userId on a phone already loaded does not prepare it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub user_id: Option<String>,

    /// Allow a backup while a user is streaming (it ends the user's session). Default false: a
    /// streaming phone is left alone and reported as waiting.
    #[serde(default)]
    pub interrupt_streaming: bool,

    /// For a BackedUp phone: back it up only once the vendor has shown its data loaded with no one
    /// streaming for this long, continuously (a duration of whole units: 90s, 30m, 1h30m, 2d).
    /// Unset or 0 (default): at once. A Streaming or Restoring observation, a fresh prepare, or
    /// a missing or failed observation starts the wait again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^(0|([0-9]{1,7}(s|m|h|d))+)$"))]
    pub idle_timeout: Option<String>,

    /// Stop every vendor call for this phone (status queries included). Default false.
    #[serde(default)]
    pub suspend: bool,

    /// The CloudPhoneAccount whose endpoint and credentials this phone's vendor calls use; the
    /// account must admit the phone's namespace. Unset: the operator's own credentials. Immutable
    /// once set: an instance id means another instance under another account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.accountRef is immutable once set"))]
    pub account_ref: Option<AccountRef>,
}

/// A reference from a CloudPhone to its CloudPhoneSchedule, in the same namespace.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRef {
    /// The CloudPhoneSchedule's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// The lifecycle declared for a phone.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
)]
pub enum Lifecycle {
    /// Only observe the instance: never call a mutating vendor API.
    #[default]
    Observed,
    /// Keep the instance backed up: its data in object storage, no physical instance held.
    BackedUp,
    /// Keep the instance's data on a physical instance, ready to stream for `spec.userId`.
    Loaded,
    /// `Loaded` inside the windows of `spec.scheduleRef`'s schedule, `BackedUp` outside.
    Scheduled,
}

impl Lifecycle {
    /// The name as written in `spec.lifecycle`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the operator last observed and did for this phone.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudPhoneStatus {
    /// The metadata.generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,

    /// The vendor's status code, exactly as last observed (absent when never observed or not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_status: Option<i64>,

    /// The readable name of instanceStatus, or Pending (not observed yet) or NotFound (the vendor
    /// did not list the instance).
    #[serde(default)]
    pub phase: Phase,

    /// The last backup the operator requested for this phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<ActionStatus>,

    /// The last prepare (bringing the data back onto a physical instance) the operator requested
    /// for this phone.
    // NB: boxed: most phones never hold one, and every phone of a fleet carries the field (a
    // record inline is some 150 bytes a phone, in the store and each copy of a status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<Box<ActionStatus>>,

    /// When the operator last observed a backup of this phone complete (the vendor showing Idle
    /// after BackingUp, or after a backup request): when its data was last known safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<Time>,

    /// When the operator last observed a prepare of this phone complete (the vendor showing its
    /// data on a physical instance after Restoring, or after a prepare request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_loaded_time: Option<Time>,

    /// The last value of the annotation cloudphone.io/reconcile-requested-at that the operator
    /// handled: echoed only after a vendor observation made in a tick that started after the
    /// annotation was set, so that a script can wait for a fresh observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub last_handled_reconcile_at: Option<String>,

    /// When the operator first saw the phone's data loaded with no one streaming, in the current
    /// stretch: spec.idleTimeout counts from then. Absent while the phone is in use or not loaded.
    // NB: boxed: most phones have none, and every status of a fleet carries the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<Box<Time>>,

    /// The lifecycle the operator keeps the phone at now: the declared one, or what the
    /// cloudphone.io/load-until annotation or spec.idleTimeout make of it (effectiveReason says
    /// which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_lifecycle: Option<Lifecycle>,

    /// Why the effective lifecycle is what it is: Declared (spec.lifecycle), LoadUntil (the
    /// cloudphone.io/load-until annotation keeps the data loaded until its time), WaitingForIdle
    /// (a BackedUp phone kept loaded until it has been idle for spec.idleTimeout), ScheduleWindow,
    /// OutsideWindow or Exception (what a Scheduled phone's schedule says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_reason: Option<EffectiveReason>,

    /// The next change of the effective lifecycle the operator knows of: when, and to what.
    // NB: boxed: most phones have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<Box<Transition>>,

    /// Standard conditions: Ready (the declared lifecycle is reached) and Synced (the last status
    /// query for this phone succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Why a phone's effective lifecycle is what it is (`status.effectiveReason`).
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
)]
pub enum EffectiveReason {
    /// spec.lifecycle, as declared.
    Declared,
    /// The cloudphone.io/load-until annotation keeps the data loaded until its time.
    LoadUntil,
    /// A BackedUp phone whose data is loaded waits until it has been idle for spec.idleTimeout.
    WaitingForIdle,
    /// A Scheduled phone inside a window of its schedule (its wake included): Loaded.
    ScheduleWindow,
    /// A Scheduled phone outside every window of its schedule: BackedUp.
    OutsideWindow,
    /// A Scheduled phone inside an exception of its schedule (named in the Ready message).
    Exception,
}

impl EffectiveReason {
    /// The name as written in `status.effectiveReason`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A change of a phone's effective lifecycle the operator knows is coming.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// When.
    pub at: Time,
    /// The effective lifecycle from then on.
    pub lifecycle: Lifecycle,
}

/// The operator's record of the calls of one vendor action (a backup, a prepare) it made for one
/// phone.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    /// When the last call for this phone was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<Time>,

    /// The x-request-id of the last call, to find it in the vendor's and the operator's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub request_id: Option<String>,

    /// Calls sent in the current cycle (reset when the action is seen done).
    // NB: i32, not u32: the API server knows the int32 format, not uint32.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub attempts: i32,

    /// True from a call until the vendor shows it under way or done (a backup: BackingUp or Idle; a
    /// prepare: Restoring or the data loaded); while true, and for at most the grace period after
    /// requestedAt, no second call is sent.
    #[serde(default)]
    pub in_flight: bool,

    /// The vendor's task id for the last call, when its answer carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub task_id: Option<String>,

    /// The vendor's job id for this instance in the last call, when its answer carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub job_id: Option<String>,

    /// The account scope the last call was made in (`project:<id>` or `account:<name>`), so that
    /// its intent holds that instance whatever account the phone names now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 272))]
    pub scope: Option<String>,

    /// The vendor's answer for this instance to the last call, when it gave one (a prepare: 0
    /// ready, 1 waiting to be restored, 2 waiting for assignment, 3 backing up, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_status: Option<i32>,

    /// The vendor user the last call named (a prepare's spec.userId as the call left): the one
    /// asked about when the vendor must say whether it still holds that call, whatever the spec
    /// names now.
    // NB: a boxed str: a backup's record never has one, and every status carries a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub user_id: Option<Box<str>>,

    /// Questions in a row the vendor could not answer about whether it still holds the last call
    /// (a prepare's prepare-progress, asked before any second call): from 3 on, the phone says so
    /// (Ready reason PrepareFailed), and still sends no second call until the vendor answers.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub unanswered_checks: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Why an instance id is refused; the same rule as the CRD schema and the vendor's limit.
pub fn check_instance_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    // NB: the byte length first: it bounds the character count, and counting is the slow part.
    if id.len() > INSTANCE_ID_MAX_LEN && id.chars().count() > INSTANCE_ID_MAX_LEN {
        return Err("is longer than 32 characters");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("has a character outside [A-Za-z0-9_-]");
    }
    Ok(())
}

/// The annotation on a CloudPhone that asks for a fresh observation: any new value causes an early
/// tick and, once the phone was observed in a tick that started after it, is echoed in
/// `status.lastHandledReconcileAt`. It also lifts a `BackupRefused` hold.
pub const RECONCILE_REQUESTED_AT: &str = "cloudphone.io/reconcile-requested-at";

/// The longest vendor task or job id the status holds (`status.backup.taskId`, `jobId`).
pub const MAX_VENDOR_ID_LEN: usize = 128;

/// The longest [`RECONCILE_REQUESTED_AT`] value the operator echoes: the length the status field
/// `lastHandledReconcileAt` allows.
pub const MAX_RECONCILE_REQUEST_LEN: usize = 256;

/// Every annotation the operator reads from a CloudPhone, with the longest value it accepts: the
/// watch cache keeps these only, and a value over its bound is never used (nor cut: a cut value
/// would look valid).
pub const READ_ANNOTATIONS: &[(&str, usize)] = &[
    (RECONCILE_REQUESTED_AT, MAX_RECONCILE_REQUEST_LEN),
    (LOAD_UNTIL, MAX_LOAD_UNTIL_LEN),
];

/// The annotation that keeps a phone's data loaded until a time (RFC 3339): its effective
/// lifecycle is Loaded until then (at most `--max-load-until` ahead). A session service sets it
/// before it hands a device token out; a change of it asks for an early tick.
pub const LOAD_UNTIL: &str = "cloudphone.io/load-until";

/// The longest [`LOAD_UNTIL`] value read: an RFC 3339 time with nanoseconds and an offset fits.
pub const MAX_LOAD_UNTIL_LEN: usize = 64;

/// What stands in a watch cache for an annotation value over its bound.
pub const INVALID_ANNOTATION: &str = "\u{0}invalid: longer than its bound";

/// A read annotation's value, checked against its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationValue<'a> {
    Valid(&'a str),
    /// Over its bound (or replaced by [`INVALID_ANNOTATION`] in a slimmed object).
    Invalid,
}

impl CloudPhone {
    /// The value of its [`RECONCILE_REQUESTED_AT`] annotation, if any and within its bound.
    pub fn reconcile_requested(&self) -> Option<&str> {
        match self.annotation(RECONCILE_REQUESTED_AT)? {
            AnnotationValue::Valid(value) => Some(value),
            AnnotationValue::Invalid => None,
        }
    }

    /// The value of its [`LOAD_UNTIL`] annotation, as written (`Invalid` over its bound).
    pub fn load_until(&self) -> Option<AnnotationValue<'_>> {
        self.annotation(LOAD_UNTIL)
    }

    /// True when its [`RECONCILE_REQUESTED_AT`] annotation is over its bound.
    pub fn reconcile_request_invalid(&self) -> bool {
        self.annotation(RECONCILE_REQUESTED_AT) == Some(AnnotationValue::Invalid)
    }

    /// A read annotation's value (see [`READ_ANNOTATIONS`]), checked against its bound.
    pub fn annotation(&self, name: &str) -> Option<AnnotationValue<'_>> {
        let value = self.metadata.annotations.as_ref()?.get(name)?;
        let bound = READ_ANNOTATIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, bound)| *bound);
        if value == INVALID_ANNOTATION || value.len() > bound {
            Some(AnnotationValue::Invalid)
        } else {
            Some(AnnotationValue::Valid(value))
        }
    }
}

/// The CRD, annotated with its schema revision: what `crds/` holds and the operator checks.
pub fn crd() -> CustomResourceDefinition {
    annotated(CloudPhone::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_rule_accepts_and_refuses() {
        assert!(check_instance_id("a44uhlf7").is_ok());
        assert!(check_instance_id("A_b-9").is_ok());
        assert!(check_instance_id(&"x".repeat(32)).is_ok());
        assert_eq!(check_instance_id(""), Err("is empty"));
        assert_eq!(
            check_instance_id(&"x".repeat(33)),
            Err("is longer than 32 characters")
        );
        assert!(check_instance_id("a b").is_err());
        assert!(check_instance_id("ä").is_err());
    }

    #[test]
    fn spec_defaults_apply_when_fields_are_absent() {
        let spec: CloudPhoneSpec = serde_json::from_str(r#"{"instanceId":"a1"}"#).unwrap();
        assert_eq!(spec.lifecycle, Lifecycle::Observed);
        assert!(!spec.interrupt_streaming);
        assert!(!spec.suspend);
    }
}
