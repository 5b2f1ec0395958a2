//! The Argo CD health check (docs/argocd-health.lua), run in Lua against statuses that the
//! operator's own planner produces, and kept identical to the copy in docs/argocd.md.

use crate::support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, Lifecycle};
use cloudphone_operator::plan::{
    Action, ActionResult, Context, DEFAULT_SCOPE, Disposition, EarlierTerms, Memory, Observation,
    PhoneKey, PhoneView, PlanConfig, Route, plan_phone,
};
use jiff::Timestamp;
use mlua::{Lua, LuaSerdeExt};

const SCRIPT: &str = include_str!("../../docs/argocd-health.lua");
const ACCOUNT_SCRIPT: &str = include_str!("../../docs/argocd-health-account.lua");

fn phone(lifecycle: Lifecycle) -> CloudPhone {
    support::cloudphone("p1", "kp1")
        .namespace("fleet-a")
        .lifecycle(lifecycle)
        .build()
}

/// The status the planner gives `phone` for this disposition and observation.
fn planned(
    phone: &CloudPhone,
    disposition: Disposition,
    observation: Option<Observation>,
) -> CloudPhoneStatus {
    let config = PlanConfig::default();
    let cx = Context {
        now: Timestamp::from_second(1_790_000_000).unwrap(),
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    plan_phone(
        &PhoneView::of(phone, Route::Scope(DEFAULT_SCOPE)),
        &disposition,
        observation.as_ref(),
        &Memory::default(),
        &cx,
    )
    .expect("planned")
    .status
    .into_owned()
}

fn health(phone: &CloudPhone) -> (String, String) {
    run(SCRIPT, serde_json::to_value(phone).unwrap())
}

/// Runs a health script on `obj`: (status, message).
fn run(script: &str, obj: serde_json::Value) -> (String, String) {
    let lua = Lua::new();
    let obj = lua.to_value(&obj).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let hs: mlua::Table = lua.load(script).eval().unwrap();
    (
        hs.get("status").unwrap(),
        hs.get::<Option<String>>("message")
            .unwrap()
            .unwrap_or_default(),
    )
}

fn with_status(mut phone: CloudPhone, status: CloudPhoneStatus) -> CloudPhone {
    phone.status = Some(status);
    phone
}

#[test]
fn health_follows_the_operators_status() {
    let backed_up = phone(Lifecycle::BackedUp);
    let observe = |code| Some(Observation::Status(code));
    let cases: Vec<(&str, CloudPhone, &str)> = vec![
        ("no status yet", backed_up.clone(), "Progressing"),
        (
            "idle",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(0)),
            ),
            "Healthy",
        ),
        (
            "observed",
            with_status(
                phone(Lifecycle::Observed),
                planned(&phone(Lifecycle::Observed), Disposition::Query, observe(3)),
            ),
            "Healthy",
        ),
        (
            "backup requested",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(2)),
            ),
            "Progressing",
        ),
        (
            "backing up",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(4)),
            ),
            "Progressing",
        ),
        (
            "restoring",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(1)),
            ),
            "Progressing",
        ),
        (
            "streaming, waiting",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(3)),
            ),
            "Progressing",
        ),
        (
            "backup failed",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(5)),
            ),
            "Degraded",
        ),
        (
            "restore failed",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(6)),
            ),
            "Degraded",
        ),
        (
            "unknown code",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, observe(42)),
            ),
            "Degraded",
        ),
        (
            "not found",
            with_status(
                backed_up.clone(),
                planned(&backed_up, Disposition::Query, Some(Observation::Missing)),
            ),
            "Degraded",
        ),
        (
            "duplicate",
            with_status(
                backed_up.clone(),
                planned(
                    &backed_up,
                    Disposition::Duplicate {
                        owner: PhoneKey {
                            namespace: "fleet-a".into(),
                            name: "p0".into(),
                        },
                    },
                    None,
                ),
            ),
            "Degraded",
        ),
        (
            "invalid spec",
            with_status(
                backed_up.clone(),
                planned(
                    &backed_up,
                    Disposition::InvalidSpec {
                        message: "spec.instanceId is bad".into(),
                    },
                    None,
                ),
            ),
            "Degraded",
        ),
    ];
    for (name, phone, want) in cases {
        let (status, message) = health(&phone);
        assert_eq!(status, want, "{name}: {message}");
    }
}

#[test]
fn every_stalled_phone_is_degraded_and_a_reconciling_one_is_not_healthy() {
    use cloudphone_operator::plan::{AccountBlock, STALLED_REASONS};
    let p = phone(Lifecycle::BackedUp);
    for reason in STALLED_REASONS {
        let status = planned(
            &p,
            Disposition::AccountBlocked(AccountBlock {
                reason,
                message: "a person must act".into(),
            }),
            None,
        );
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True"),
            "{reason}"
        );
        assert_eq!(
            health(&with_status(p.clone(), status)).0,
            "Degraded",
            "{reason}"
        );
    }
    let requested = planned(&p, Disposition::Query, Some(Observation::Status(2)));
    assert!(
        requested
            .conditions
            .iter()
            .any(|c| c.type_ == "Reconciling")
    );
    assert_eq!(health(&with_status(p, requested)).0, "Progressing");
}

#[test]
fn a_phone_whose_account_cannot_serve_it_is_degraded() {
    use cloudphone_operator::plan::{
        ACCOUNT_NOT_ALLOWED, ACCOUNT_NOT_FOUND, ACCOUNT_NOT_READY, AccountBlock,
    };
    let p = phone(Lifecycle::BackedUp);
    for reason in [ACCOUNT_NOT_FOUND, ACCOUNT_NOT_ALLOWED, ACCOUNT_NOT_READY] {
        let status = planned(
            &p,
            Disposition::AccountBlocked(AccountBlock {
                reason,
                message: "no vendor call".into(),
            }),
            None,
        );
        let (health, message) = health(&with_status(p.clone(), status));
        assert_eq!(health, "Degraded", "{reason}");
        assert!(message.starts_with(reason), "{message}");
    }
}

#[test]
fn an_accounts_health_follows_the_status_the_operator_writes() {
    use cloudphone_operator::plan::{AccountTick, account_status};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let now = Time(Timestamp::from_second(1_790_000_000).unwrap());
    let account = |status: Option<serde_json::Value>, generation: i64| {
        let mut object = serde_json::json!({
            "apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneAccount",
            "metadata": {"name": "team-a", "generation": generation},
            "spec": {"credentialsSecretRef": {"name": "s"}},
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        object
    };
    let tick = |problem: Option<&str>| AccountTick {
        name: "team-a".into(),
        generation: Some(1),
        phones: 12,
        credentials: Some(1),
        problem: problem.map(|reason| cloudphone_operator::plan::Failure {
            reason: reason.into(),
            message: "the vendor refused the credentials".into(),
        }),
    };
    let written =
        |problem| serde_json::to_value(account_status(&tick(problem), None, &now)).unwrap();
    assert_eq!(run(ACCOUNT_SCRIPT, account(None, 1)).0, "Progressing");
    assert_eq!(
        run(ACCOUNT_SCRIPT, account(Some(written(None)), 1)),
        ("Healthy".into(), "12 phones".into())
    );
    let (health, message) = run(
        ACCOUNT_SCRIPT,
        account(Some(written(Some("CredentialsRejected"))), 1),
    );
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("CredentialsRejected"), "{message}");
    assert_eq!(
        run(ACCOUNT_SCRIPT, account(Some(written(None)), 2)).0,
        "Progressing",
        "a spec the operator has not observed yet"
    );
}

#[test]
fn a_suspended_phone_is_suspended_whatever_its_status() {
    let mut p = phone(Lifecycle::BackedUp);
    let status = planned(&p, Disposition::Query, Some(Observation::Status(0)));
    p.spec.suspend = true;
    assert_eq!(health(&with_status(p, status)).0, "Suspended");
}

#[test]
fn a_spec_change_not_yet_observed_is_progressing() {
    let mut p = phone(Lifecycle::BackedUp);
    let status = planned(&p, Disposition::Query, Some(Observation::Status(0)));
    p.metadata.generation = Some(2);
    let (health, message) = health(&with_status(p, status));
    assert_eq!(health, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
}

#[test]
fn a_backup_call_that_failed_is_progressing_not_degraded() {
    let p = phone(Lifecycle::BackedUp);
    let intent = planned(&p, Disposition::Query, Some(Observation::Status(2)));
    let failed = Action::Backup.record_result(
        &intent,
        Some(1),
        &ActionResult::Failed {
            failure: cloudphone_operator::plan::Failure {
                reason: "Timeout".into(),
                message: "timed out".into(),
            },
            ambiguous: true,
        },
        Timestamp::from_second(1_790_000_000).unwrap(),
        &PlanConfig::default(),
    );
    assert_eq!(health(&with_status(p, failed)).0, "Progressing");
}

#[test]
fn the_docs_carry_the_same_script() {
    let docs = include_str!("../../docs/argocd.md");
    for (script, file) in [
        (SCRIPT, "docs/argocd-health.lua"),
        (ACCOUNT_SCRIPT, "docs/argocd-health-account.lua"),
    ] {
        let indented: String = script
            .lines()
            .map(|l| {
                if l.trim().is_empty() {
                    "\n".to_owned()
                } else {
                    format!("    {l}\n")
                }
            })
            .collect();
        assert!(
            docs.contains(&indented),
            "docs/argocd.md's argocd-cm snippet differs from {file}"
        );
    }
}

#[test]
fn a_loaded_phones_health_follows_its_prepare() {
    let loaded = support::cloudphone("p1", "kp1")
        .namespace("fleet-a")
        .loaded("u1")
        .build();
    let observe = |code| Some(Observation::Status(code));
    let health_at = |code: i64| {
        health(&with_status(
            loaded.clone(),
            planned(&loaded, Disposition::Query, observe(code)),
        ))
        .0
    };
    assert_eq!(health_at(0), "Progressing", "prepare requested");
    assert_eq!(health_at(1), "Progressing", "restoring");
    assert_eq!(health_at(2), "Healthy", "loaded");
    assert_eq!(health_at(3), "Healthy", "a user streaming");
    // A restoration exception after a first attempt: the retry waits its backoff, PrepareFailed.
    let requested = planned(&loaded, Disposition::Query, observe(0));
    let restoring = planned(
        &with_status(loaded.clone(), requested),
        Disposition::Query,
        observe(1),
    );
    let failed = planned(
        &with_status(loaded.clone(), restoring),
        Disposition::Query,
        observe(6),
    );
    let ready = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .reason
        .clone();
    assert_eq!(ready, "PrepareFailed");
    assert_eq!(health(&with_status(loaded.clone(), failed)).0, "Degraded");
}

#[test]
fn a_phone_waiting_for_idleness_is_healthy_and_one_kept_loaded_too() {
    let waiting = support::cloudphone("p1", "kp1")
        .backed_up()
        .idle_timeout("30m")
        .build();
    for code in [2, 3] {
        let status = planned(
            &waiting,
            Disposition::Query,
            Some(Observation::Status(code)),
        );
        let (health, message) = health(&with_status(waiting.clone(), status));
        assert_eq!(health, "Healthy", "status {code}: {message}");
        assert!(message.contains("idleTimeout"), "{message}");
    }
}
