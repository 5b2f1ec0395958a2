//! What both CRDs share: the schema revision they carry, and the schema of a conditions list.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The annotation of the CRD that carries its [`SCHEMA_REVISION`].
pub const SCHEMA_REVISION_ANNOTATION: &str = "cloudphone.io/schema-revision";

/// The revision of the CloudPhone schema, raised whenever a field the operator relies on is added:
/// an API server holding an older CRD prunes unknown status fields silently, among them those that
/// guard against a second backup, so the operator refuses to run on an older revision.
///
/// `status.backup.scope` did not raise it: an older schema prunes it, and an intent is then
/// scoped by the phone's binding of the moment, as before; what keeps an intent whose owner's
/// binding changed is the term's hold (the Lease's `cloudphone.io/intents-until`) across terms and
/// the term's own memory within one, neither of which needs the field.
///
/// 2: `spec.accountRef` (an older schema would drop it, and the phone's calls would go out under the
/// operator's own credentials instead of its account's); `status.lastBackupTime` and
/// `status.lastHandledReconcileAt` (dropped, a completed backup would be forgotten).
///
/// 3: `spec.lifecycle: Loaded` and `spec.userId` (an older schema refuses the one and drops the
/// other); `status.prepare` (dropped, a prepare's intent would be lost, and a second prepare sent)
/// and `status.lastLoadedTime`. Since: `status.prepare.userId` (dropped, the vendor would be asked
/// about the user the spec names now, not the one the queued call named) and `unansweredChecks`.
///
/// 4: `spec.idleTimeout` (dropped, a phone in use would be backed up at once) and `status.idleSince`
/// (dropped, the idle wait would start again every tick: never parked); `status.effectiveLifecycle`,
/// `effectiveReason`, `nextTransition`.
///
/// 5: `spec.lifecycle: Scheduled` and `spec.scheduleRef` (an older schema refuses the one and drops
/// the other: the phone would be read as having no schedule); the effective reasons
/// `ScheduleWindow`, `OutsideWindow`, `Exception`; the `CloudPhoneSchedule` CRD.
pub const SCHEMA_REVISION: u32 = 5;

/// A CRD with the [`SCHEMA_REVISION_ANNOTATION`]: both CRDs carry the revision of the bundle.
pub(super) fn annotated(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            SCHEMA_REVISION_ANNOTATION.to_owned(),
            SCHEMA_REVISION.to_string(),
        );
    crd
}

/// Conditions are a list keyed by `type`, so that server-side apply merges them per type.
pub(super) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}
