//! Several vendor accounts in one engine: each account's phones are called under its own
//! credentials and tenant, batched per account; a phone its account does not admit, or whose account
//! is missing or unusable, makes no call; one account's revoked credentials never slow another.

use crate::support;

use cloudphone_operator::api::{CloudPhone, Lifecycle, Phase};
use cloudphone_operator::koophone::{Auth, Client, ClientConfig, Credentials, Token};
use cloudphone_operator::plan::PhoneKey;
use cloudphone_operator::reconciler::{
    Account, AccountSet, Engine, MemoryStore, Tenants, Unusable,
};
use cloudphone_operator::sim::{Simulator, code};
use std::sync::Arc;
use std::time::Duration;
use support::{cloudphone, deadline, engine, quick_retries, simulator};
use tokio::sync::watch;

/// A token of `tenant`'s project, as a Secret holding `token` and `projectId` gives it.
fn tenant_auth(token: &str, tenant: &str) -> Arc<Auth> {
    Arc::new(Auth::new(Ok(Credentials::Token {
        token: Token::new(token),
        project_id: Some(tenant.to_owned()),
    })))
}

/// An account on `sim`, reached with `auth`, admitting `namespaces`.
fn account(name: &str, sim: &Simulator, auth: Arc<Auth>, namespaces: &[&str]) -> Account {
    Account {
        name: name.into(),
        generation: Some(1),
        client: Ok(Client::new(
            ClientConfig {
                base_url: sim.url(),
                retry: quick_retries(1),
                ..ClientConfig::default()
            },
            auth,
        )
        .unwrap()),
        tenants: Tenants {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            selector: None,
        },
        allowed_users: None,
    }
}

/// Account `a` of tenant A admitting namespace team-a, or `b` of tenant B admitting team-b, each
/// with its tenant's first token.
fn team(team: char, sim: &Simulator) -> Account {
    account(
        &team.to_string(),
        sim,
        tenant_auth(&format!("token-{team}"), &format!("tenant-{team}")),
        &[&format!("team-{team}")],
    )
}

fn feed(
    accounts: Vec<Account>,
) -> (
    watch::Sender<Option<Arc<AccountSet>>>,
    cloudphone_operator::reconciler::AccountsFeed,
) {
    let set = AccountSet {
        accounts: accounts.into_iter().map(|a| (a.name.clone(), a)).collect(),
        ..AccountSet::default()
    };
    watch::channel(Some(Arc::new(set)))
}

fn key(namespace: &str, name: &str) -> PhoneKey {
    PhoneKey {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn phase(store: &MemoryStore, namespace: &str, name: &str) -> Phase {
    store
        .get(&key(namespace, name))
        .and_then(|p| p.status.clone())
        .map(|s| s.phase)
        .unwrap_or_default()
}

fn ready(store: &MemoryStore, namespace: &str, name: &str) -> (String, String) {
    let phone = store.get(&key(namespace, name)).unwrap();
    phone
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

fn tenant_calls(sim: &Simulator, tenant: &str) -> u64 {
    sim.counters()
        .calls_by_tenant
        .get(tenant)
        .copied()
        .unwrap_or(0)
}

async fn converge(engine: &Engine<MemoryStore>, settled: impl Fn() -> bool) {
    for _ in 0..200 {
        engine.tick().await;
        if settled() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("did not converge");
}

/// Two tenants whose instance ids overlap (`kp1` in both) and differ (`kpa2`, `kpb2`), and the
/// operator's own tenant.
async fn two_tenants() -> Simulator {
    simulator(vec![
        ("kp0".into(), code::DATA_LOADED),
        ("tenant-a/kp1".into(), code::DATA_LOADED),
        ("tenant-a/kpa2".into(), code::DATA_LOADED),
        ("tenant-b/kp1".into(), code::IDLE),
        ("tenant-b/kpb2".into(), code::DATA_LOADED),
    ])
    .token("t")
    .tenant("tenant-a", "token-a")
    .tenant("tenant-b", "token-b")
    .backup_duration(std::time::Duration::from_millis(50))
    .start()
    .await
}

fn team_phones() -> Vec<CloudPhone> {
    vec![
        cloudphone("own", "kp0").namespace("ops").build(),
        cloudphone("a1", "kp1")
            .namespace("team-a")
            .account("a")
            .build(),
        cloudphone("a2", "kpa2")
            .namespace("team-a")
            .account("a")
            .build(),
        cloudphone("b1", "kp1")
            .namespace("team-b")
            .account("b")
            .build(),
        cloudphone("b2", "kpb2")
            .namespace("team-b")
            .account("b")
            .build(),
    ]
}

#[tokio::test]
async fn two_accounts_with_overlapping_ids_each_see_and_back_up_only_their_own_instances() {
    let _deadline =
        deadline("two_accounts_with_overlapping_ids_each_see_and_back_up_only_their_own_instances");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new(team_phones()));
    let (_tx, accounts) = feed(vec![team('a', &sim), team('b', &sim)]);
    let engine = engine(&sim, store.clone()).accounts(accounts).build();

    let first = engine.tick().await;
    assert_eq!(
        first.status_calls, 3,
        "one status call per account with phones: ceil(N_a/100) each"
    );
    let idle = |ns: &str, name: &str| phase(&store, ns, name) == Phase::Idle;
    converge(&engine, || {
        idle("ops", "own") && idle("team-a", "a1") && idle("team-a", "a2") && idle("team-b", "b2")
    })
    .await;
    // `kp1` is two instances: tenant A's was backed up, tenant B's was idle all along and was
    // never asked for a backup, and neither phone is a duplicate of the other.
    assert_eq!(phase(&store, "team-b", "b1"), Phase::Idle);
    for (ns, name) in [("team-a", "a1"), ("team-b", "b1")] {
        assert_eq!(ready(&store, ns, name).0, "True", "{ns}/{name}");
    }
    assert_eq!(sim.instance("tenant-a/kp1").unwrap().status, code::IDLE);
    assert_eq!(
        sim.counters().backups_started,
        4,
        "kp0, A's kp1, kpa2, kpb2"
    );
    assert!(
        sim.instance("kp1").is_none(),
        "no call reached the operator's own tenant for an account's phone"
    );
    assert!(tenant_calls(&sim, "tenant-a") > 0 && tenant_calls(&sim, "tenant-b") > 0);

    let report = engine.tick().await;
    let by_name: Vec<(&str, usize, bool)> = report
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), a.phones, a.problem.is_none()))
        .collect();
    assert_eq!(by_name, [("a", 2, true), ("b", 2, true)]);
}

#[tokio::test]
async fn one_accounts_revoked_credentials_stop_its_calls_and_never_touch_the_others() {
    let _deadline =
        deadline("one_accounts_revoked_credentials_stop_its_calls_and_never_touch_the_others");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new(team_phones()));
    let auth_a = Arc::new(Auth::token(Token::new("token-a")));
    let (_tx, accounts) = feed(vec![
        account("a", &sim, auth_a.clone(), &["team-a"]),
        team('b', &sim),
    ]);
    let engine = engine(&sim, store.clone()).accounts(accounts).build();
    engine.tick().await;
    let b_before = tenant_calls(&sim, "tenant-b");
    engine.tick().await;
    let b_per_tick = tenant_calls(&sim, "tenant-b") - b_before;
    assert_eq!(b_per_tick, 1);

    sim.revoke_token("token-a");
    let unauthorized = sim.counters().unauthorized;
    let report = engine.tick().await;
    let a = report.accounts.iter().find(|a| a.name == "a").unwrap();
    assert_eq!(
        a.problem.as_ref().map(|p| p.reason.as_str()),
        Some("CredentialsRejected"),
        "{a:?}"
    );
    let refused = sim.counters().unauthorized - unauthorized;
    assert!(refused >= 1, "the refused call itself");

    let b_before = tenant_calls(&sim, "tenant-b");
    let unauthorized = sim.counters().unauthorized;
    for _ in 0..3 {
        engine.tick().await;
    }
    assert_eq!(
        sim.counters().unauthorized,
        unauthorized,
        "account A's breaker is open: no call with its refused credentials"
    );
    assert_eq!(
        tenant_calls(&sim, "tenant-b") - b_before,
        3 * b_per_tick,
        "account B's calls are unchanged"
    );
    let synced_a1 = store
        .get(&key("team-a", "a1"))
        .unwrap()
        .status
        .clone()
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(synced_a1.reason, "CredentialsRejected");
    assert_eq!(ready(&store, "team-b", "b1").0, "True");

    // Account A's Secret rotated: new credentials close its breaker at once.
    sim.add_tenant_token("tenant-a", "token-a2");
    auth_a.set(Ok(Credentials::token(Token::new("token-a2"))));
    let a_before = tenant_calls(&sim, "tenant-a");
    engine.tick().await;
    assert_eq!(tenant_calls(&sim, "tenant-a") - a_before, 1);
    let report = engine.tick().await;
    assert!(
        report.accounts.iter().all(|a| a.problem.is_none()),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_phone_its_account_does_not_admit_or_that_names_no_account_makes_no_call() {
    let _deadline =
        deadline("a_phone_its_account_does_not_admit_or_that_names_no_account_makes_no_call");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new([
        cloudphone("intruder", "kp1")
            .namespace("team-b")
            .account("a")
            .build(),
        cloudphone("lost", "kpa2")
            .namespace("team-a")
            .account("gone")
            .build(),
        cloudphone("broken", "kpa2")
            .namespace("team-a")
            .account("unusable")
            .build(),
    ]));
    let mut unusable = account(
        "unusable",
        &sim,
        tenant_auth("token-a", "tenant-a"),
        &["team-a"],
    );
    unusable.client = Err(Unusable {
        reason: "CredentialsMissing",
        message: "Secret cloudphone-system/unusable does not exist".into(),
    });
    let (_tx, accounts) = feed(vec![team('a', &sim), unusable]);
    let engine = engine(&sim, store.clone()).accounts(accounts).build();
    for _ in 0..3 {
        let report = engine.tick().await;
        assert_eq!((report.status_calls, report.backup_calls), (0, 0));
    }
    assert_eq!(
        sim.counters()
            .endpoints
            .values()
            .map(|e| e.calls)
            .sum::<u64>(),
        0
    );
    assert_eq!(
        ready(&store, "team-b", "intruder"),
        ("False".into(), "AccountNotAllowed".into())
    );
    assert_eq!(
        ready(&store, "team-a", "lost"),
        ("False".into(), "AccountNotFound".into())
    );
    assert_eq!(
        ready(&store, "team-a", "broken"),
        ("False".into(), "AccountNotReady".into())
    );
    let writes = store.writes();
    engine.tick().await;
    assert_eq!(
        store.writes(),
        writes,
        "a blocked phone is written once, not every tick"
    );
    assert_eq!(
        sim.instance("tenant-a/kp1").unwrap().status,
        code::DATA_LOADED
    );
}

#[tokio::test]
async fn phones_naming_an_account_wait_until_the_accounts_are_known() {
    let _deadline = deadline("phones_naming_an_account_wait_until_the_accounts_are_known");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new([
        cloudphone("a1", "kp1")
            .namespace("team-a")
            .account("a")
            .build(),
        cloudphone("own", "kp0")
            .namespace("ops")
            .lifecycle(Lifecycle::Observed)
            .build(),
    ]));
    let (tx, accounts) = watch::channel(None);
    let engine = engine(&sim, store.clone()).accounts(accounts).build();
    engine.tick().await;
    assert!(
        store.get(&key("team-a", "a1")).unwrap().status.is_none(),
        "not told AccountNotFound while the accounts are still being read"
    );
    assert_eq!(phase(&store, "ops", "own"), Phase::DataLoaded);
    let (_, synced) = feed(vec![team('a', &sim)]);
    tx.send_replace(synced.borrow().clone());
    engine.tick().await;
    assert_eq!(phase(&store, "team-a", "a1"), Phase::DataLoaded);
}

#[tokio::test]
async fn phones_naming_an_account_are_told_why_once_the_account_watch_is_overdue() {
    let _deadline =
        deadline("phones_naming_an_account_are_told_why_once_the_account_watch_is_overdue");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new([cloudphone("a1", "kp1")
        .namespace("team-a")
        .account("a")
        .build()]));
    // The CloudPhoneAccount CRD is missing: the feed never syncs.
    let (tx, accounts) = watch::channel(None);
    let engine = engine(&sim, store.clone())
        .accounts(accounts)
        .config(|c| c.account_feed_patience = Duration::from_millis(300))
        .build();
    engine.tick().await;
    assert!(
        store.get(&key("team-a", "a1")).unwrap().status.is_none(),
        "within the patience the phone waits, untouched"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = engine.tick().await;
    assert_eq!(
        ready(&store, "team-a", "a1"),
        ("False".into(), "AccountNotReady".into())
    );
    let status = store
        .get(&key("team-a", "a1"))
        .unwrap()
        .status
        .clone()
        .unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("CloudPhoneAccount watch has not synced") && message.contains("CRD"),
        "{message}"
    );
    assert_eq!(
        (report.status_calls, report.backup_calls),
        (0, 0),
        "no vendor call"
    );
    // The watch syncs at last: the phone is served.
    let (_, synced) = feed(vec![team('a', &sim)]);
    tx.send_replace(synced.borrow().clone());
    engine.tick().await;
    assert_eq!(phase(&store, "team-a", "a1"), Phase::DataLoaded);
}

#[tokio::test]
async fn accounts_of_one_tenant_share_its_instances_so_one_id_is_one_owner() {
    let _deadline = deadline("accounts_of_one_tenant_share_its_instances_so_one_id_is_one_owner");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new([
        cloudphone("first", "kp1")
            .namespace("team-a")
            .account("a")
            .created(0)
            .build(),
        cloudphone("second", "kp1")
            .namespace("team-a")
            .account("a-too")
            .created(5)
            .build(),
    ]));
    let (_tx, accounts) = feed(vec![
        team('a', &sim),
        account(
            "a-too",
            &sim,
            tenant_auth("token-a", "tenant-a"),
            &["team-a"],
        ),
    ]);
    let engine = engine(&sim, store.clone()).accounts(accounts).build();
    let report = engine.tick().await;
    assert_eq!(report.status_calls, 1);
    assert_eq!(
        ready(&store, "team-a", "second"),
        ("False".into(), "DuplicateInstance".into())
    );
}

#[tokio::test]
async fn an_accounts_client_rebuilt_with_new_credentials_is_not_held_by_the_old_breaker() {
    let _deadline =
        deadline("an_accounts_client_rebuilt_with_new_credentials_is_not_held_by_the_old_breaker");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new(team_phones()));
    let (tx, accounts) = feed(vec![team('a', &sim)]);
    let engine = engine(&sim, store.clone()).accounts(accounts).build();
    sim.revoke_token("token-a");
    let report = engine.tick().await;
    assert!(report.accounts[0].problem.is_some(), "{report:?}");
    // The Secret was deleted and created again: the operator builds the account a new client.
    sim.add_tenant_token("tenant-a", "token-a2");
    let (_, rebuilt) = feed(vec![account(
        "a",
        &sim,
        tenant_auth("token-a2", "tenant-a"),
        &["team-a"],
    )]);
    tx.send_replace(rebuilt.borrow().clone());
    let before = tenant_calls(&sim, "tenant-a");
    let report = engine.tick().await;
    assert!(
        tenant_calls(&sim, "tenant-a") > before,
        "called at once: {report:?}"
    );
    assert!(report.accounts[0].problem.is_none(), "{report:?}");
}

/// Two BackedUp phones in namespace fleet for each instance id: `older` (a name prefix and the
/// account it names, `None` for the operator's own) and `newer`, created ten seconds later. Their
/// names end with the id's position.
fn one_phone_per_route(
    ids: &[String],
    older: (&str, Option<&str>),
    newer: (&str, Option<&str>),
) -> Vec<CloudPhone> {
    let phone = |(prefix, account): (&str, Option<&str>), created: i64, n: usize, id: &str| {
        let builder = cloudphone(&format!("{prefix}-{n:02}"), id)
            .namespace("fleet")
            .lifecycle(Lifecycle::BackedUp)
            .created(created);
        match account {
            Some(account) => builder.account(account).build(),
            None => builder.build(),
        }
    };
    ids.iter()
        .enumerate()
        .flat_map(|(n, id)| [phone(older, 0, n, id), phone(newer, 10, n, id)])
        .collect()
}

/// A simulator whose project `p1` holds `n` DataLoaded instances, reached by the access key
/// `ak1` and the token `tok-p1`; backups run long enough that a second call would find one busy.
async fn project_p1(n: usize) -> Simulator {
    let mut config = cloudphone_operator::sim::SimConfig {
        instances: (0..n)
            .map(|i| (format!("p1/kp{i:02}"), code::DATA_LOADED))
            .collect(),
        tenants: vec![cloudphone_operator::sim::SimTenant {
            name: "p1".into(),
            tokens: vec!["tok-p1".into()],
            access_keys: vec![("ak1".into(), "sk1".into())],
        }],
        ..Default::default()
    };
    config.timings.backup_duration = std::time::Duration::from_secs(30);
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_routes_to_one_project_back_up_each_instance_once() {
    let _deadline = deadline("two_routes_to_one_project_back_up_each_instance_once");
    let sim = project_p1(40).await;
    // Route 1: the operator's own access key of project p1. Route 2: a CloudPhoneAccount holding
    // a token of the same project, its vendor URL spelled with a trailing slash.
    let own = Arc::new(Auth::new(Ok(Credentials::AccessKey {
        access_key: "ak1".into(),
        secret_key: "sk1".to_owned().into(),
        project_id: "p1".into(),
        security_token: None,
    })));
    let mut route = account(
        "platform-too",
        &sim,
        tenant_auth("tok-p1", "p1"),
        &["fleet"],
    );
    route.client = Ok(Client::new(
        ClientConfig {
            base_url: format!("{}/", sim.url()),
            retry: quick_retries(1),
            ..ClientConfig::default()
        },
        tenant_auth("tok-p1", "p1"),
    )
    .unwrap());
    let ids: Vec<String> = (0..40).map(|i| format!("kp{i:02}")).collect();
    let store = Arc::new(MemoryStore::new(one_phone_per_route(
        &ids,
        ("own", None),
        ("route", Some("platform-too")),
    )));
    let (_tx, accounts) = feed(vec![route]);
    let engine = engine(&sim, store.clone())
        .auth(own)
        .accounts(accounts)
        .build();
    for _ in 0..3 {
        engine.tick().await;
    }
    for (id, instance) in sim.instances() {
        assert_eq!(instance.backup_requests, 1, "{id}: {instance:?}");
    }
    assert_eq!(sim.counters().backups_started, 40);
    for i in 0..40 {
        assert_eq!(
            ready(&store, "fleet", &format!("route-{i:02}")),
            ("False".into(), "DuplicateInstance".into())
        );
        assert_eq!(
            phase(&store, "fleet", &format!("own-{i:02}")),
            Phase::BackingUp
        );
    }
}

#[tokio::test]
async fn an_iam_user_naming_its_project_by_name_is_known_as_that_project_before_any_backup() {
    let _deadline = deadline(
        "an_iam_user_naming_its_project_by_name_is_known_as_that_project_before_any_backup",
    );
    let mut config = cloudphone_operator::sim::SimConfig {
        instances: (0..5)
            .map(|i| (format!("kp{i}"), code::DATA_LOADED))
            .collect(),
        tokens: vec!["t".into()],
        iam_users: vec![cloudphone_operator::sim::IamUser {
            name: "ops".into(),
            password: "pw".into(),
            domain: "d".into(),
        }],
        ..Default::default()
    };
    config.timings.backup_duration = std::time::Duration::from_secs(30);
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The operator's own token names the project's id; the account's IAM user names it by name.
    let project = cloudphone_operator::sim::project_id_of("d", "cn-north-4");
    let own = Arc::new(Auth::new(Ok(Credentials::Token {
        token: Token::new("t"),
        project_id: Some(project),
    })));
    let iam = Arc::new(Auth::new(Ok(Credentials::Password {
        username: "ops".into(),
        password: "pw".to_owned().into(),
        domain: "d".into(),
        project: cloudphone_operator::koophone::ProjectScope::Name("cn-north-4".into()),
        iam_endpoint: sim.url(),
    })));
    // The account's phones are the older ones here: they own the instances.
    let ids: Vec<String> = (0..5).map(|i| format!("kp{i}")).collect();
    let store = Arc::new(MemoryStore::new(one_phone_per_route(
        &ids,
        ("iam", Some("iam")),
        ("own", None),
    )));
    let (_tx, accounts) = feed(vec![account("iam", &sim, iam, &["fleet"])]);
    let engine = engine(&sim, store.clone())
        .auth(own)
        .accounts(accounts)
        .build();
    for _ in 0..3 {
        engine.tick().await;
    }
    for (id, instance) in sim.instances() {
        assert_eq!(instance.backup_requests, 1, "{id}: {instance:?}");
    }
    for i in 0..5 {
        assert_eq!(
            ready(&store, "fleet", &format!("own-{i:02}")),
            ("False".into(), "DuplicateInstance".into())
        );
    }
}

#[tokio::test]
async fn a_phone_outside_the_own_accounts_namespaces_makes_no_call_and_learns_nothing() {
    let _deadline =
        deadline("a_phone_outside_the_own_accounts_namespaces_makes_no_call_and_learns_nothing");
    let sim = simulator(vec![
        ("streaming".into(), code::STREAMING),
        ("platform".into(), code::DATA_LOADED),
    ])
    .token("t")
    .start()
    .await;
    let store = Arc::new(MemoryStore::new([
        cloudphone("intruder", "streaming")
            .namespace("team-b")
            .lifecycle(Lifecycle::BackedUp)
            .interrupt_streaming()
            .build(),
        cloudphone("mine", "platform")
            .namespace("platform")
            .lifecycle(Lifecycle::BackedUp)
            .build(),
    ]));
    let (_tx, accounts) = feed(vec![team('b', &sim)]);
    let engine = engine(&sim, store.clone())
        .accounts(accounts)
        .own_tenants(Tenants {
            namespaces: ["platform".to_owned()].into(),
            selector: None,
        })
        .build();
    for _ in 0..3 {
        engine.tick().await;
    }
    assert_eq!(
        sim.instance("streaming").unwrap().status,
        code::STREAMING,
        "the platform's streaming user was cut off"
    );
    assert_eq!(sim.instance("streaming").unwrap().backup_requests, 0);
    assert_eq!(sim.instance("platform").unwrap().backups_started, 1);
    let intruder = store.get(&key("team-b", "intruder")).unwrap();
    let status = intruder.status.as_ref().unwrap();
    assert_eq!(status.instance_status, None, "{status:?}");
    assert_eq!(status.phase, Phase::Pending);
    assert_eq!(
        ready(&store, "team-b", "intruder"),
        ("False".into(), "AccountNotAllowed".into())
    );
}

#[tokio::test]
async fn a_deleted_accounts_breaker_series_disappears() {
    let _deadline = deadline("a_deleted_accounts_breaker_series_disappears");
    let sim = two_tenants().await;
    let store = Arc::new(MemoryStore::new(team_phones()));
    let metrics = Arc::new(cloudphone_operator::metrics::Metrics::new());
    let (accounts_tx, accounts) = feed(vec![
        account(
            "a",
            &sim,
            Arc::new(Auth::token(Token::new("token-a"))),
            &["team-a"],
        ),
        team('b', &sim),
    ]);
    let engine = engine(&sim, store.clone())
        .accounts(accounts)
        .build()
        .with_metrics(metrics.clone());
    sim.revoke_token("token-a");
    engine.tick().await;
    engine.tick().await;
    let text = metrics.encode();
    assert!(
        text.contains("cloudphone_vendor_breaker_open{account=\"a\"} 1"),
        "account a's breaker is open:\n{text}"
    );
    assert!(
        text.contains("cloudphone_vendor_breaker_open{account=\"b\"} 0"),
        "{text}"
    );

    // Account a is deleted: its series goes with it, the others stay.
    accounts_tx.send_replace(Some(Arc::new(AccountSet {
        accounts: [("b".to_owned(), team('b', &sim))].into_iter().collect(),
        ..AccountSet::default()
    })));
    engine.tick().await;
    let text = metrics.encode();
    assert!(
        !text.contains("cloudphone_vendor_breaker_open{account=\"a\"}"),
        "a deleted account exports no breaker series:\n{text}"
    );
    assert!(
        text.contains("cloudphone_vendor_breaker_open{account=\"b\"} 0")
            && text.contains("cloudphone_vendor_breaker_open{account=\"default\"} 0"),
        "{text}"
    );
}
