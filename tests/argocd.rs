//! The Argo CD health check (docs/argocd-health.lua), run in Lua against statuses that the
//! operator's own planner produces, and kept identical to the copy in docs/argocd.md.

mod support;

use cloudphone_operator::api::{CloudPhone, CloudPhoneStatus, Lifecycle};
use cloudphone_operator::plan::{
    BackupResult, Disposition, Observation, PhoneKey, PhoneView, PlanConfig, plan_phone,
    record_backup_result,
};
use jiff::Timestamp;
use mlua::{Lua, LuaSerdeExt};

const SCRIPT: &str = include_str!("../docs/argocd-health.lua");

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
    plan_phone(
        &PhoneView::of(phone),
        &disposition,
        observation.as_ref(),
        Timestamp::from_second(1_790_000_000).unwrap(),
        &PlanConfig::default(),
    )
    .status
    .into_owned()
}

fn health(phone: &CloudPhone) -> (String, String) {
    let lua = Lua::new();
    let obj = lua.to_value(&serde_json::to_value(phone).unwrap()).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let hs: mlua::Table = lua.load(SCRIPT).eval().unwrap();
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
    let failed = record_backup_result(
        &intent,
        Some(1),
        &BackupResult::Failed {
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
    let docs = include_str!("../docs/argocd.md");
    let indented: String = SCRIPT
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
        "docs/argocd.md's argocd-cm snippet differs from docs/argocd-health.lua"
    );
}
