//! The CRD: the checked-in file matches the Rust types, and its schema refuses bad objects.

use cloudphone_operator::api::{CloudPhone, CloudPhoneAccount, CrdKind, crd_yaml};
use kube::CustomResourceExt;
use serde_json::{Value, json};

#[test]
fn checked_in_crds_match_the_rust_types() {
    for (kind, plural, checked_in) in [
        (
            CrdKind::CloudPhones,
            "cloudphones",
            include_str!("../../crds/cloudphone.io_cloudphones.yaml"),
        ),
        (
            CrdKind::CloudPhoneAccounts,
            "cloudphoneaccounts",
            include_str!("../../crds/cloudphone.io_cloudphoneaccounts.yaml"),
        ),
    ] {
        assert!(
            checked_in == crd_yaml(kind),
            "crds/cloudphone.io_{plural}.yaml is stale: regenerate it with \
             `cargo run -- crd {plural} > crds/cloudphone.io_{plural}.yaml`"
        );
    }
}

fn version() -> Value {
    let crd = serde_json::to_value(CloudPhone::crd()).unwrap();
    crd["spec"]["versions"][0].clone()
}

fn account_version() -> Value {
    let crd = serde_json::to_value(CloudPhoneAccount::crd()).unwrap();
    crd["spec"]["versions"][0].clone()
}

/// Both CRDs' object schemas.
fn schemas() -> [Value; 2] {
    [
        version()["schema"]["openAPIV3Schema"].clone(),
        account_version()["schema"]["openAPIV3Schema"].clone(),
    ]
}

/// The object schema, as a JSON-schema validator reads it.
fn validator() -> jsonschema::Validator {
    let schema = version()["schema"]["openAPIV3Schema"].clone();
    jsonschema::validator_for(&schema).expect("the openAPIV3Schema is a valid JSON schema")
}

fn phone(spec: Value) -> Value {
    json!({
        "apiVersion": "cloudphone.io/v1alpha1",
        "kind": "CloudPhone",
        "metadata": {"name": "p1", "namespace": "fleet-a"},
        "spec": spec,
    })
}

/// The validation errors for an object, each with the path of the field at fault.
fn errors(object: &Value) -> Vec<String> {
    validator()
        .iter_errors(object)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn schema_accepts_a_well_formed_phone() {
    for spec in [
        json!({"instanceId": "a44uhlf7"}),
        json!({"instanceId": "A_b-9", "lifecycle": "BackedUp", "interruptStreaming": true, "suspend": false}),
        json!({"instanceId": "x".repeat(32), "lifecycle": "Observed"}),
    ] {
        assert_eq!(errors(&phone(spec.clone())), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn schema_refuses_bad_instance_ids_naming_the_field() {
    for bad in [
        json!(""),
        json!("x".repeat(33)),
        json!("a b"),
        json!("a/b"),
        json!(7),
    ] {
        let errs = errors(&phone(json!({"instanceId": bad})));
        assert!(!errs.is_empty(), "{bad} was accepted");
        assert!(
            errs.iter().all(|e| e.contains("/spec/instanceId")),
            "{errs:?}"
        );
    }
}

#[test]
fn schema_refuses_a_missing_instance_id() {
    let errs = errors(&phone(json!({"lifecycle": "BackedUp"})));
    assert!(errs.iter().any(|e| e.contains("instanceId")), "{errs:?}");
}

#[test]
fn schema_refuses_an_unknown_lifecycle() {
    let errs = errors(&phone(json!({"instanceId": "a1", "lifecycle": "Deleted"})));
    assert!(
        errs.iter().any(|e| e.contains("/spec/lifecycle")),
        "{errs:?}"
    );
}

#[test]
fn schema_refuses_non_boolean_flags() {
    let errs = errors(&phone(json!({"instanceId": "a1", "suspend": "yes"})));
    assert!(errs.iter().any(|e| e.contains("/spec/suspend")), "{errs:?}");
}

#[test]
fn instance_id_is_immutable_by_a_cel_rule() {
    let id =
        &version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["instanceId"];
    assert_eq!(id["x-kubernetes-validations"][0]["rule"], "self == oldSelf");
}

#[test]
fn defaults_are_in_the_schema() {
    let spec = &version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["lifecycle"]["default"], "Observed");
    assert_eq!(spec["interruptStreaming"]["default"], false);
    assert_eq!(spec["suspend"]["default"], false);
}

#[test]
fn names_columns_and_status_subresource_follow_the_design() {
    let crd = serde_json::to_value(CloudPhone::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "cloudphones.cloudphone.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["cph"]));
    let v = version();
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], json!({}));
    let columns: Vec<String> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect();
    assert_eq!(
        columns,
        [
            "INSTANCE",
            "LIFECYCLE",
            "EFFECTIVE",
            "PHASE",
            "CODE",
            "READY",
            "LAST BACKUP",
            "LAST LOADED",
            "NEXT",
            "AGE"
        ]
    );
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    let conditions =
        &version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                if sub.get("description").is_none()
                    && !matches!(name.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    missing.push(here.clone());
                }
                walk(&here, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for schema in schemas() {
        walk("", &schema, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn every_format_is_one_the_api_server_knows() {
    // kube-openapi's formats; an unknown one (say uint32) draws a warning on every apply.
    const KNOWN: [&str; 6] = ["int32", "int64", "float", "double", "date-time", "date"];
    fn walk(schema: &Value, found: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::String(f)) = map.get("format") {
                    found.push(f.clone());
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for schema in schemas() {
        walk(&schema, &mut found);
    }
    assert!(!found.is_empty());
    for format in found {
        assert!(
            KNOWN.contains(&format.as_str()),
            "format {format:?} is unknown to the API server"
        );
    }
}

#[test]
fn a_loaded_phone_names_its_user_and_the_user_id_follows_the_vendors_alphabet() {
    let spec = &version()["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        errors(&phone(
            json!({"instanceId": "a1", "lifecycle": "Loaded", "userId": "u-123_A"})
        )),
        Vec::<String>::new()
    );
    for bad in ["", "u 1", &"u".repeat(33)] {
        let found = errors(&phone(
            json!({"instanceId": "a1", "lifecycle": "Loaded", "userId": bad}),
        ));
        assert!(
            found.iter().any(|e| e.contains("/spec/userId")),
            "{bad:?}: {found:?}"
        );
    }
    // NB: CEL is the API server's to evaluate (none runs here): the rule is checked as written.
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"!(self.lifecycle in ['Loaded', 'Scheduled']) || has(self.userId)"),
        "{rules:?}"
    );
    assert!(
        rules.contains(&"(self.lifecycle == 'Scheduled') == has(self.scheduleRef)"),
        "{rules:?}"
    );
    assert_eq!(
        spec["properties"]["lifecycle"]["enum"],
        json!(["Observed", "BackedUp", "Loaded", "Scheduled"])
    );
}

#[test]
fn the_account_ref_is_optional_and_immutable_once_set_by_cel_rules() {
    let spec = &version()["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        errors(&phone(
            json!({"instanceId": "a1", "accountRef": {"name": "team-a"}})
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        spec["properties"]["accountRef"]["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    assert_eq!(
        spec["x-kubernetes-validations"][0]["rule"],
        "!has(oldSelf.accountRef) || has(self.accountRef)",
        "removing the reference is a change too"
    );
    let bad = errors(&phone(
        json!({"instanceId": "a1", "accountRef": {"name": "Team A"}}),
    ));
    assert!(
        bad.iter().any(|e| e.contains("/spec/accountRef/name")),
        "{bad:?}"
    );
}

fn account(spec: Value) -> Value {
    json!({
        "apiVersion": "cloudphone.io/v1alpha1",
        "kind": "CloudPhoneAccount",
        "metadata": {"name": "team-a"},
        "spec": spec,
    })
}

fn account_errors(object: &Value) -> Vec<String> {
    let schema = account_version()["schema"]["openAPIV3Schema"].clone();
    jsonschema::validator_for(&schema)
        .unwrap()
        .iter_errors(object)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_account_schema_accepts_every_documented_field() {
    let spec = json!({
        "vendorUrl": "https://koophone.myhuaweicloud.com",
        "credentialsSecretRef": {"name": "team-a-koophone"},
        "namespaceSelector": {"matchLabels": {"team": "a"}},
        "namespaces": ["team-a", "team-a-staging"],
        "limits": {"callsInFlight": 4, "callsPerSecond": 20},
    });
    assert_eq!(account_errors(&account(spec)), Vec::<String>::new());
}

#[test]
fn the_account_schema_refuses_bad_fields_naming_them() {
    for (spec, field) in [
        (json!({}), ""),
        (
            json!({"credentialsSecretRef": {"name": "UPPER"}}),
            "/spec/credentialsSecretRef/name",
        ),
        (
            json!({"credentialsSecretRef": {"name": "s"}, "vendorUrl": "https://koophone.myhuaweicloud.com@evil.example"}),
            "/spec/vendorUrl",
        ),
        (
            json!({"credentialsSecretRef": {"name": "s"}, "vendorUrl": "ftp://host"}),
            "/spec/vendorUrl",
        ),
        (
            json!({"credentialsSecretRef": {"name": "s"}, "namespaces": ["Team_A"]}),
            "/spec/namespaces/0",
        ),
        (
            json!({"credentialsSecretRef": {"name": "s"}, "limits": {"callsInFlight": 0}}),
            "/spec/limits/callsInFlight",
        ),
        (
            json!({"credentialsSecretRef": {"name": "s"}, "limits": {"callsPerSecond": 100000}}),
            "/spec/limits/callsPerSecond",
        ),
    ] {
        let errors = account_errors(&account(spec.clone()));
        assert!(
            errors.iter().any(|e| e.ends_with(&format!(" at {field}"))
                || (field.is_empty() && !errors.is_empty())),
            "{spec}: {errors:?}"
        );
    }
}

#[test]
fn the_account_crd_follows_the_design() {
    let crd = serde_json::to_value(CloudPhoneAccount::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "cloudphoneaccounts.cloudphone.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["cpa"]));
    let v = account_version();
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], json!({}));
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Reason", "Phones", "Vendor URL", "Age"]);
    assert_eq!(
        v["schema"]["openAPIV3Schema"]["x-kubernetes-validations"][0]["rule"],
        "self.metadata.name != 'default'",
        "the name of the operator's own account is reserved"
    );
    let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    for field in ["phones", "observedGeneration"] {
        assert!(status[field].is_object(), "status.{field}");
    }
}

proptest::proptest! {
    /// The CloudPhone schema's id rule and the vendor client's own (from the vendor's documentation)
    /// are written apart, the vendor layer knowing nothing of Kubernetes: every id the schema admits
    /// must be one the client will send.
    #[test]
    fn every_instance_id_the_schema_admits_the_vendor_client_sends(id in "\\PC{0,40}|[A-Za-z0-9_-]{0,40}") {
        if cloudphone_operator::api::check_instance_id(&id).is_ok() {
            proptest::prop_assert!(cloudphone_operator::koophone::check_id(&id).is_ok(), "{id:?}");
        }
    }
}

#[test]
fn the_id_length_limits_agree() {
    assert_eq!(
        cloudphone_operator::api::INSTANCE_ID_MAX_LEN,
        cloudphone_operator::koophone::MAX_ID_CHARS
    );
}
