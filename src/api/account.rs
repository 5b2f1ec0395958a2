//! `CloudPhoneAccount` (`cloudphone.io/v1alpha1`, cluster-scoped): one vendor account (endpoint and
//! credentials) and the namespaces whose phones may use it.

use super::crd::{annotated, conditions_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name a `CloudPhoneAccount` may not take: phones without `spec.accountRef` use the
/// operator's own credentials, which metrics and logs call the `default` account.
pub const DEFAULT_ACCOUNT_NAME: &str = "default";

/// A KooPhone account: where its API is, the Secret holding its credentials, and which namespaces'
/// phones may use it.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudphone.io",
    version = "v1alpha1",
    kind = "CloudPhoneAccount",
    plural = "cloudphoneaccounts",
    shortname = "cpa",
    status = "CloudPhoneAccountStatus",
    derive = "PartialEq",
    doc = "A KooPhone (CloudDevice) account: its API endpoint, the Secret holding its credentials, and the namespaces whose CloudPhones may use it.",
    validation = Rule::new("self.metadata.name != 'default'").message("the name default is reserved for the operator's own credentials (phones without spec.accountRef)"),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Phones","type":"integer","jsonPath":".status.phones"}"#,
    printcolumn = r#"{"name":"Vendor URL","type":"string","priority":1,"jsonPath":".spec.vendorUrl"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CloudPhoneAccountSpec {
    /// The vendor API's scheme and host (and port), e.g. https://koophone.myhuaweicloud.com.
    /// Default: the operator's --vendor-url. The host must be in the operator's
    /// --allowed-vendor-hosts, or the account's credentials are never sent anywhere.
    // NB: this text is also the CRD's field description, which `kubectl explain` shows raw: the
    // URL stays bare (`<...>` would change the CRD).
    #[allow(rustdoc::bare_urls)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s/?#@]+/?$"))]
    pub vendor_url: Option<String>,

    /// The Secret, in the operator's own namespace, holding the account's credentials in one of
    /// three forms: `token`; `username`, `password`, `domain`, `project` or `projectId`, `region`
    /// or `iamEndpoint`; or `accessKey`, `secretKey`, `projectId`. Tenants need no access to it.
    pub credentials_secret_ref: SecretRef,

    /// Namespaces whose labels match this selector may use the account. With `namespaces`, a
    /// namespace matching either may. Neither given: no namespace may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces, by name, that may use the account. With `namespaceSelector`, a namespace
    /// matching either may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub namespaces: Vec<String>,

    /// The vendor user ids (`spec.userId`) the account's `Loaded` phones may be readied for. Empty
    /// (default): any user; a tenant's phone may then ready another tenant's instance of the
    /// account for itself (data access). A phone naming another user is AccountNotAllowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 32), regex(pattern = r"^[A-Za-z0-9_-]+$")))]
    pub allowed_user_ids: Vec<String>,

    /// Bounds on this account's vendor calls, per operator deployment (the vendor's flow control
    /// counts calls per tenant). Unset: the operator's --vendor-concurrency, no rate bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<AccountLimits>,
}

/// A Secret in the operator's own namespace.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Bounds on one account's vendor calls.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimits {
    /// Vendor calls of this account in flight at once, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub calls_in_flight: Option<i32>,

    /// Vendor calls of this account started per second, at most (retries included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub calls_per_second: Option<i32>,
}

/// What the operator last found of the account.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudPhoneAccountStatus {
    /// The metadata.generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,

    /// CloudPhones that name this account and may use it.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub phones: i32,

    /// Ready: the credentials are usable and the last vendor call of the account was not refused
    /// for them (reasons CredentialsMissing, CredentialsRejected, TenantNotFound,
    /// VendorUrlNotAllowed, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// A reference from a CloudPhone to the CloudPhoneAccount whose credentials its calls use.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct AccountRef {
    /// The CloudPhoneAccount's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// The account CRD, as `crds/cloudphone.io_cloudphoneaccounts.yaml` holds it.
pub fn account_crd() -> CustomResourceDefinition {
    annotated(CloudPhoneAccount::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_account_needs_only_its_secret() {
        let spec: CloudPhoneAccountSpec =
            serde_json::from_str(r#"{"credentialsSecretRef":{"name":"team-a"}}"#).unwrap();
        assert_eq!(spec.credentials_secret_ref.name, "team-a");
        assert_eq!(spec.vendor_url, None);
        assert!(spec.namespaces.is_empty() && spec.namespace_selector.is_none());
    }
}
