//! `kubectl cloudphone summary`: read through a (mocked) API server page by page, from objects as a
//! real API server returns them plus phones that need a person.

use crate::support;

use cloudphone_operator::api::CloudPhoneStatus;
use cloudphone_operator::plan::{
    ACCOUNT_NOT_ALLOWED, AccountBlock, Context, DEFAULT_SCOPE, Disposition, EarlierTerms, Memory,
    Observation, PhoneView, PlanConfig, Route, plan_phone,
};
use serde_json::Value;
use support::scenario::Scenario;

/// The real API server's objects (`tests/fixtures`).
fn real_objects() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cloudphones-real.json"
    ))
    .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// A phone of team-b whose account does not admit its namespace, with the status the planner
/// gives it.
fn not_allowed() -> Value {
    let phone = support::cloudphone("intruder", "kp9")
        .namespace("team-b")
        .account("team-a")
        .build();
    let block = AccountBlock {
        reason: ACCOUNT_NOT_ALLOWED,
        message: "CloudPhoneAccount \"team-a\" does not admit namespace \"team-b\"".into(),
    };
    let config = PlanConfig::default();
    let cx = Context {
        now: jiff::Timestamp::now(),
        config: &config,
        earlier: &EarlierTerms::Settled,
    };
    let status: CloudPhoneStatus = plan_phone(
        &PhoneView::of(&phone, Route::Blocked(block.clone())),
        &Disposition::AccountBlocked(block),
        None,
        &Memory::default(),
        &cx,
    )
    .expect("planned")
    .status
    .into_owned();
    let mut object = serde_json::to_value(phone).unwrap();
    object["status"] = serde_json::to_value(status).unwrap();
    object
}

#[tokio::test]
async fn the_summary_reads_every_page_and_names_the_phones_that_need_a_person() {
    let _deadline =
        support::deadline("the_summary_reads_every_page_and_names_the_phones_that_need_a_person");
    let mut items = real_objects();
    items.push(not_allowed());
    let (first, second) = items.split_at(2);
    let (first, second) = (first.to_vec(), second.to_vec());
    let (client, log) = Scenario::PhonesInPages(vec![first, second]).serve();
    let summary = cloudphone_operator::summary::fetch(client, None)
        .await
        .unwrap();
    assert_eq!(log.lock().unwrap().len(), 2, "two pages");
    assert!(
        log.lock().unwrap()[0].path().ends_with("/cloudphones"),
        "cluster-wide by default"
    );
    assert_eq!(summary.by_namespace["fleet-a"]["Idle"], 3);
    assert_eq!(summary.by_namespace["fleet-a"]["DataLoaded"], 1);
    assert_eq!(summary.by_namespace["team-b"]["Pending"], 1);
    assert_eq!(summary.needs_a_person.len(), 1);
    assert_eq!(summary.needs_a_person[0].phone, "team-b/intruder");
    assert_eq!(summary.needs_a_person[0].reason, "AccountNotAllowed");
    // No real object records a completed backup yet: the oldest such phone never had one.
    assert!(
        matches!(&summary.oldest_backup, Some((_, None))),
        "{:?}",
        summary.oldest_backup
    );
    let text = summary.render(jiff::Timestamp::now());
    assert!(text.contains("fleet-a"), "{text}");
    assert!(text.contains("1 phones need a person:"), "{text}");
    assert!(
        text.contains("team-b/intruder") && text.contains("AccountNotAllowed"),
        "{text}"
    );
}

/// A Loaded phone of fleet-l as the planner leaves it after observing `codes` in turn (ten
/// seconds apart, from `start` seconds after 1_790_000_000), as the API server returns it.
fn loaded(name: &str, start: i64, codes: &[i64]) -> Value {
    let mut phone = support::cloudphone(name, &format!("k{name}"))
        .namespace("fleet-l")
        .loaded("u1")
        .build();
    let config = PlanConfig::default();
    for (i, code) in codes.iter().enumerate() {
        let cx = Context {
            now: jiff::Timestamp::from_second(1_790_000_000 + start + 10 * i as i64).unwrap(),
            config: &config,
            earlier: &EarlierTerms::Settled,
        };
        let status: CloudPhoneStatus = plan_phone(
            &PhoneView::of(&phone, Route::Scope(DEFAULT_SCOPE)),
            &Disposition::Query,
            Some(&Observation::Status(*code)),
            &Memory::default(),
            &cx,
        )
        .expect("planned")
        .status
        .into_owned();
        phone.status = Some(status);
    }
    serde_json::to_value(phone).unwrap()
}

#[tokio::test]
async fn the_summary_says_where_the_loaded_phones_prepares_stand() {
    let _deadline = support::deadline("the_summary_says_where_the_loaded_phones_prepares_stand");
    let items = [
        loaded("streaming", 600, &[0, 1, 3]),
        loaded("ready", 0, &[0, 1, 2]),
        loaded("requested", 0, &[0]),
        loaded("restoring", 0, &[0, 1]),
        loaded("exception", 0, &[0, 1, 6]),
    ];
    let (first, second) = items.split_at(3);
    let (client, _log) = Scenario::PhonesInPages(vec![first.to_vec(), second.to_vec()]).serve();
    let summary = cloudphone_operator::summary::fetch(client, None)
        .await
        .unwrap();
    let prepares = &summary.prepares;
    assert_eq!(
        (
            prepares.phones,
            prepares.loaded,
            prepares.requested,
            prepares.restoring
        ),
        (5, 2, 1, 1),
        "{prepares:?}"
    );
    assert_eq!(prepares.failing.len(), 1, "{prepares:?}");
    assert_eq!(prepares.failing[0].phone, "fleet-l/exception");
    assert_eq!(prepares.failing[0].reason, "PrepareFailed");
    let latest = jiff::Timestamp::from_second(1_790_000_620).unwrap();
    assert_eq!(
        prepares.last_loaded,
        Some(("fleet-l/streaming".to_string(), latest))
    );
    let text = summary.render(latest + jiff::SignedDuration::from_secs(3600));
    assert!(
        text.contains(
            "loaded phones: 5: 2 loaded, 1 prepare requested, 1 restoring, 1 failing, 0 refused, 0 other"
        ),
        "{text}"
    );
    assert!(
        text.contains("last loaded: fleet-l/streaming, at 2026-") && text.contains("(1h ago)"),
        "{text}"
    );
    assert!(
        text.contains("1 prepares failing (retried with backoff):")
            && text.contains("fleet-l/exception"),
        "{text}"
    );
    assert!(text.contains("no phone needs a person"), "{text}");
}

#[tokio::test]
async fn a_namespace_reads_only_that_namespace() {
    let _deadline = support::deadline("a_namespace_reads_only_that_namespace");
    let (client, log) = Scenario::PhonesInPages(vec![vec![]]).serve();
    let summary = cloudphone_operator::summary::fetch(client, Some("fleet-a"))
        .await
        .unwrap();
    assert_eq!(
        log.lock().unwrap()[0].path(),
        "/apis/cloudphone.io/v1alpha1/namespaces/fleet-a/cloudphones"
    );
    assert!(
        summary
            .render(jiff::Timestamp::now())
            .contains("(no CloudPhones)")
    );
}
