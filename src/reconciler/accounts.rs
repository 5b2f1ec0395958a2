//! The vendor accounts a tick calls under: the operator's own (`default`, for phones without
//! `spec.accountRef`) and each `CloudPhoneAccount`, each with its own client (credentials, 429
//! pause, call limits) and circuit breaker; and which account, if any, each phone may use.

use super::breaker::DEFAULT_ACCOUNT;
use crate::koophone::{Client, Project};
use crate::plan::{ACCOUNT_NOT_ALLOWED, ACCOUNT_NOT_FOUND, ACCOUNT_NOT_READY, AccountBlock};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Which namespaces' phones may use an account.
#[derive(Clone, Debug, Default)]
pub struct Tenants {
    /// Namespaces admitted by name.
    pub namespaces: BTreeSet<String>,
    /// Namespaces admitted by their labels.
    pub selector: Option<kube::core::Selector>,
}

impl Tenants {
    /// True when the namespace, with these labels (`None`: not known), is admitted.
    pub fn admits(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        use kube::core::SelectorExt;
        self.namespaces.contains(namespace)
            || self
                .selector
                .as_ref()
                .zip(labels)
                .is_some_and(|(s, l)| s.matches(l))
    }
}

/// Why an account's calls cannot be made: a bounded reason and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable {
    /// `CredentialsMissing`, `VendorUrlNotAllowed`, ...
    pub reason: &'static str,
    pub message: String,
}

/// One `CloudPhoneAccount`, as the operator can use it.
#[derive(Clone, Debug)]
pub struct Account {
    /// The object's name: the key of its breaker, metrics and logs.
    pub name: String,
    /// The object's `metadata.generation`, for its status.
    pub generation: Option<i64>,
    /// Its client (with the account's call limits), or why there is none.
    pub client: Result<Client, Unusable>,
    pub tenants: Tenants,
    /// The vendor users its phones may be readied for (`spec.allowedUserIds`); `None`: any.
    pub allowed_users: Option<std::collections::BTreeSet<String>>,
}

/// Every `CloudPhoneAccount` the operator knows, and the labels of every namespace (for the
/// accounts' selectors). Replaced whole on every change.
#[derive(Clone, Debug, Default)]
pub struct AccountSet {
    pub accounts: BTreeMap<String, Account>,
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

/// The accounts as the engine sees them: `None` until the account watches have synced (phones that
/// name an account wait meanwhile, rather than being told it does not exist).
pub type AccountsFeed = tokio::sync::watch::Receiver<Option<Arc<AccountSet>>>;

/// The accounts of one tick, by index: 0 is the operator's own.
pub(crate) struct TickAccounts<'a> {
    pub entries: Vec<TickAccount<'a>>,
    set: Option<&'a AccountSet>,
    by_name: HashMap<&'a str, usize>,
    /// The namespaces the operator's own account admits; `None`: every watched namespace.
    own: Option<&'a Tenants>,
    /// The account watches have not synced for longer than the engine waits: the phones that
    /// would wait for them are told why instead.
    feed_overdue: bool,
}

/// One account of a tick.
pub(crate) struct TickAccount<'a> {
    pub name: &'a str,
    /// The scope of its instance ids (see [`crate::plan::account_scope`]); `None` while its project
    /// is not known yet (its phones wait: no call, no write).
    pub scope: Option<String>,
    pub client: Result<&'a Client, &'a Unusable>,
    pub generation: Option<i64>,
    /// The vendor users its phones may be readied for; `None`: any.
    pub allowed_users: Option<&'a std::collections::BTreeSet<String>>,
}

/// The scope of an account's instance ids, as its credentials tell it now.
fn scope_of(name: &str, client: &Client) -> Option<String> {
    match client.project() {
        Project::Known(id) => Some(crate::plan::account_scope(name, Some(&id))),
        Project::Unknowable => Some(crate::plan::account_scope(name, None)),
        Project::Pending => None,
    }
}

/// Asks IAM for the project of every usable account whose project only IAM can tell (an IAM
/// user naming its project by name), all at once, each for at most `timeout`: before any phone of
/// theirs is bound, so that two routes to one project are known as one before any action.
pub(crate) async fn resolve_projects(
    default: &Client,
    set: Option<&AccountSet>,
    timeout: std::time::Duration,
) {
    let clients = std::iter::once(default).chain(
        set.iter()
            .flat_map(|s| s.accounts.values())
            .filter_map(|a| a.client.as_ref().ok()),
    );
    let pending = clients
        .filter(|c| c.project() == Project::Pending && c.auth_status().is_ok())
        .map(|c| tokio::time::timeout(timeout, c.resolve_project()));
    futures::future::join_all(pending).await;
}

/// What a phone that waits for account watches that have not synced is told once they are overdue.
pub(crate) const FEED_NOT_SYNCED: &str = "the operator's CloudPhoneAccount watch has not synced: the accounts (and the namespaces' labels their selectors read) are not known, so this phone makes no vendor call until it does; check that the CloudPhoneAccount CRD is installed (kubectl get crd cloudphoneaccounts.cloudphone.io: helm upgrade does not update the chart's crds/) and that the operator may list and watch cloudphoneaccounts and namespaces cluster-wide and secrets in its own namespace (the chart's RBAC); the operator's /readyz names the watch's error";

/// Where a phone's calls go this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The account at this index.
    Account(usize),
    /// None: the phone says why.
    Blocked(AccountBlock),
    /// Not planned this tick: its account is not known yet (watches syncing).
    Wait,
}

impl<'a> TickAccounts<'a> {
    /// The accounts of a tick: the operator's own (`default`, admitting the namespaces of `own`,
    /// or every one when `None`) and those of `set` (`None`: not known yet).
    pub fn new(
        default: &'a Client,
        own: Option<&'a Tenants>,
        set: Option<&'a AccountSet>,
    ) -> TickAccounts<'a> {
        let mut entries = vec![TickAccount {
            name: DEFAULT_ACCOUNT,
            scope: scope_of(DEFAULT_ACCOUNT, default),
            client: Ok(default),
            generation: None,
            allowed_users: None,
        }];
        let mut by_name = HashMap::new();
        for account in set.iter().flat_map(|s| s.accounts.values()) {
            by_name.insert(account.name.as_str(), entries.len());
            entries.push(TickAccount {
                name: &account.name,
                scope: match &account.client {
                    Ok(client) => scope_of(&account.name, client),
                    Err(_) => None,
                },
                client: account.client.as_ref(),
                generation: account.generation,
                allowed_users: account.allowed_users.as_ref(),
            });
        }
        TickAccounts {
            entries,
            set,
            by_name,
            own,
            feed_overdue: false,
        }
    }

    /// Tells the phones that wait for the account watches (`set` is `None`) why, rather than
    /// letting them wait: the watches have not synced for longer than they should take.
    pub fn feed_overdue(mut self, overdue: bool) -> Self {
        self.feed_overdue = overdue;
        self
    }

    /// A phone whose binding needs the account watches, which have not synced: it waits, untouched,
    /// or, once they are overdue, is told so (no vendor call either way).
    fn unsynced(&self) -> Binding {
        if !self.feed_overdue {
            return Binding::Wait;
        }
        Binding::Blocked(AccountBlock {
            reason: ACCOUNT_NOT_READY,
            message: FEED_NOT_SYNCED.to_owned(),
        })
    }

    /// The vendor users the phones of the operator's own account may be readied for (`None`: any).
    pub fn own_allowed_users(
        mut self,
        users: Option<&'a std::collections::BTreeSet<String>>,
    ) -> TickAccounts<'a> {
        self.entries[0].allowed_users = users;
        self
    }

    /// Which account a phone in `namespace` naming `account` (`None`: the operator's own) uses,
    /// readied for `user` when its lifecycle names one: [`TickAccounts::admit`], the account's
    /// allowed users, then a wait while the account's project is not known.
    pub fn bind(&self, namespace: &str, account: Option<&str>, user: Option<&str>) -> Binding {
        match self.admit(namespace, account) {
            Binding::Account(ix) => match (self.entries[ix].allowed_users, user) {
                (Some(allowed), Some(user)) if !allowed.contains(user) => {
                    Binding::Blocked(AccountBlock {
                        reason: ACCOUNT_NOT_ALLOWED,
                        message: if ix == 0 {
                            format!(
                                "spec.userId: the operator's own account does not allow user {user:?} (--own-account-allowed-user-ids, chart vendor.allowedUserIds); this phone makes no vendor call"
                            )
                        } else {
                            format!(
                                "spec.userId: CloudPhoneAccount {:?} does not allow user {user:?} (its spec.allowedUserIds); this phone makes no vendor call",
                                self.entries[ix].name
                            )
                        },
                    })
                }
                _ if self.entries[ix].scope.is_none() => Binding::Wait,
                _ => Binding::Account(ix),
            },
            binding => binding,
        }
    }

    /// Whether the phone may use the account it names (or the operator's own).
    fn admit(&self, namespace: &str, account: Option<&str>) -> Binding {
        let Some(name) = account else {
            return self.admit_own(namespace);
        };
        let Some(set) = self.set else {
            return self.unsynced();
        };
        let Some(&index) = self.by_name.get(name) else {
            return Binding::Blocked(AccountBlock {
                reason: ACCOUNT_NOT_FOUND,
                message: format!(
                    "spec.accountRef.name: no CloudPhoneAccount {name:?} exists; this phone makes no vendor call until it does"
                ),
            });
        };
        let account = &set.accounts[name];
        if !account
            .tenants
            .admits(namespace, set.namespace_labels.get(namespace))
        {
            return Binding::Blocked(AccountBlock {
                reason: ACCOUNT_NOT_ALLOWED,
                message: format!(
                    "spec.accountRef.name: CloudPhoneAccount {name:?} does not admit namespace {namespace:?} (its spec.namespaces and spec.namespaceSelector); this phone makes no vendor call"
                ),
            });
        }
        if let Err(why) = &account.client {
            return Binding::Blocked(AccountBlock {
                reason: ACCOUNT_NOT_READY,
                message: format!(
                    "CloudPhoneAccount {name:?} is not ready ({}: {}); this phone makes no vendor call until it is",
                    why.reason, why.message
                ),
            });
        }
        Binding::Account(index)
    }

    /// Whether a phone without `spec.accountRef` may use the operator's own credentials.
    fn admit_own(&self, namespace: &str) -> Binding {
        let Some(own) = self.own else {
            return Binding::Account(0);
        };
        if own.namespaces.contains(namespace) {
            return Binding::Account(0);
        }
        let labels = match self.set {
            // NB: a namespace created since the namespace watch last spoke has no labels here
            // yet: under a selector its verdict is not known, so its phones wait for them.
            Some(set) => match set.namespace_labels.get(namespace) {
                None if own.selector.is_some() => return Binding::Wait,
                labels => labels,
            },
            // NB: the labels come with the account watches: until they synced, a selector's
            // verdict is not known, and a phone told "not allowed" now could be admitted in a second.
            None if own.selector.is_some() => return self.unsynced(),
            None => None,
        };
        if own.admits(namespace, labels) {
            return Binding::Account(0);
        }
        Binding::Blocked(AccountBlock {
            reason: ACCOUNT_NOT_ALLOWED,
            message: format!(
                "the operator's own credentials do not admit namespace {namespace:?} (--own-account-namespaces, --own-account-namespace-selector): set spec.accountRef.name to a CloudPhoneAccount that admits it; this phone makes no vendor call"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tenants: Tenants, client: Result<Client, Unusable>) -> AccountSet {
        let mut s = AccountSet::default();
        s.accounts.insert(
            "team-a".into(),
            Account {
                name: "team-a".into(),
                generation: Some(1),
                client,
                tenants,
                allowed_users: None,
            },
        );
        s.namespace_labels.insert(
            "labelled".into(),
            BTreeMap::from([("team".to_owned(), "a".to_owned())]),
        );
        s.namespace_labels.insert("other".into(), BTreeMap::new());
        s
    }

    fn client() -> Client {
        Client::new(
            crate::koophone::ClientConfig::default(),
            crate::koophone::Token::new("t"),
        )
        .unwrap()
    }

    fn reason(b: Binding) -> &'static str {
        match b {
            Binding::Blocked(block) => block.reason,
            Binding::Account(_) => "Account",
            Binding::Wait => "Wait",
        }
    }

    #[test]
    fn a_phone_binds_to_its_account_only_where_the_account_admits_it() {
        let default = client();
        let tenants = Tenants {
            namespaces: BTreeSet::from(["listed".to_owned()]),
            selector: Some(kube::core::Selector::from_iter([("team", "a")])),
        };
        let s = set(tenants, Ok(client()));
        let t = TickAccounts::new(&default, None, Some(&s));
        assert_eq!(t.bind("anywhere", None, None), Binding::Account(0));
        assert_eq!(t.bind("listed", Some("team-a"), None), Binding::Account(1));
        assert_eq!(
            t.bind("labelled", Some("team-a"), None),
            Binding::Account(1)
        );
        assert_eq!(
            reason(t.bind("other", Some("team-a"), None)),
            ACCOUNT_NOT_ALLOWED
        );
        assert_eq!(
            reason(t.bind("unknown-ns", Some("team-a"), None)),
            ACCOUNT_NOT_ALLOWED,
            "a namespace whose labels are not known is not admitted by a selector"
        );
        assert_eq!(
            reason(t.bind("listed", Some("team-b"), None)),
            ACCOUNT_NOT_FOUND
        );
    }

    #[test]
    fn the_operators_own_account_listing_its_users_readies_an_instance_for_those_only() {
        let default = client();
        let users = BTreeSet::from(["alice".to_owned()]);
        let t = TickAccounts::new(&default, None, None).own_allowed_users(Some(&users));
        assert_eq!(t.bind("any", None, Some("alice")), Binding::Account(0));
        assert_eq!(t.bind("any", None, None), Binding::Account(0), "BackedUp");
        match t.bind("any", None, Some("mallory")) {
            Binding::Blocked(block) => {
                assert_eq!(block.reason, ACCOUNT_NOT_ALLOWED);
                assert!(
                    block.message.contains("--own-account-allowed-user-ids")
                        && block.message.contains("mallory"),
                    "{}",
                    block.message
                );
            }
            other => panic!("{other:?}"),
        }
        let open = TickAccounts::new(&default, None, None).own_allowed_users(None);
        assert_eq!(open.bind("any", None, Some("mallory")), Binding::Account(0));
    }

    #[test]
    fn an_account_listing_its_users_readies_an_instance_for_those_only() {
        let default = client();
        let tenants = Tenants {
            namespaces: BTreeSet::from(["listed".to_owned()]),
            selector: None,
        };
        let mut s = set(tenants, Ok(client()));
        s.accounts.get_mut("team-a").unwrap().allowed_users =
            Some(BTreeSet::from(["alice".to_owned()]));
        let t = TickAccounts::new(&default, None, Some(&s));
        assert_eq!(
            t.bind("listed", Some("team-a"), Some("alice")),
            Binding::Account(1)
        );
        match t.bind("listed", Some("team-a"), Some("mallory")) {
            Binding::Blocked(block) => {
                assert_eq!(block.reason, ACCOUNT_NOT_ALLOWED);
                assert!(
                    block.message.contains("spec.userId") && block.message.contains("mallory"),
                    "{}",
                    block.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.bind("listed", Some("team-a"), None),
            Binding::Account(1),
            "a phone that readies nobody is not held to the list"
        );
        assert_eq!(
            t.bind("anywhere", None, Some("mallory")),
            Binding::Account(0),
            "the operator's own account lists no users"
        );
    }

    #[test]
    fn an_account_admits_nobody_by_default_and_an_unusable_one_blocks_its_phones() {
        let default = client();
        let s = set(Tenants::default(), Ok(client()));
        let t = TickAccounts::new(&default, None, Some(&s));
        assert_eq!(
            reason(t.bind("labelled", Some("team-a"), None)),
            ACCOUNT_NOT_ALLOWED
        );

        let listed = Tenants {
            namespaces: BTreeSet::from(["listed".to_owned()]),
            selector: None,
        };
        let s = set(
            listed,
            Err(Unusable {
                reason: "CredentialsMissing",
                message: "the Secret is missing".into(),
            }),
        );
        let t = TickAccounts::new(&default, None, Some(&s));
        match t.bind("listed", Some("team-a"), None) {
            Binding::Blocked(block) => {
                assert_eq!(block.reason, ACCOUNT_NOT_READY);
                assert!(
                    block.message.contains("CredentialsMissing"),
                    "{}",
                    block.message
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn before_the_accounts_are_known_phones_naming_one_wait() {
        let default = client();
        let t = TickAccounts::new(&default, None, None);
        assert_eq!(t.bind("ns", Some("team-a"), None), Binding::Wait);
        assert_eq!(t.bind("ns", None, None), Binding::Account(0));
    }

    #[test]
    fn once_the_account_watches_are_overdue_the_phones_that_wait_for_them_are_told_why() {
        let default = client();
        let own = tenants(&["platform"], Some(("team", "a")));
        let t = TickAccounts::new(&default, Some(&own), None).feed_overdue(true);
        for (namespace, account) in [("ns", Some("team-a")), ("labelled", None)] {
            match t.bind(namespace, account, None) {
                Binding::Blocked(block) => {
                    assert_eq!(block.reason, ACCOUNT_NOT_READY);
                    assert!(
                        block
                            .message
                            .contains("CloudPhoneAccount watch has not synced")
                            && block.message.contains("CRD"),
                        "{}",
                        block.message
                    );
                }
                other => panic!("{namespace}: {other:?}"),
            }
        }
        assert_eq!(t.bind("platform", None, None), Binding::Account(0));
        let s = set(Tenants::default(), Ok(client()));
        let synced = TickAccounts::new(&default, None, Some(&s)).feed_overdue(true);
        assert_eq!(
            reason(synced.bind("ns", Some("team-b"), None)),
            ACCOUNT_NOT_FOUND,
            "a synced feed binds as before"
        );
    }

    fn tenants(namespaces: &[&str], selector: Option<(&'static str, &'static str)>) -> Tenants {
        Tenants {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            selector: selector.map(|s| kube::core::Selector::from_iter([s])),
        }
    }

    #[test]
    fn the_operators_own_account_serves_only_the_namespaces_it_admits() {
        let default = client();
        let s = set(Tenants::default(), Ok(client()));
        let everyone = TickAccounts::new(&default, None, Some(&s));
        assert_eq!(
            everyone.bind("other", None, None),
            Binding::Account(0),
            "unset: every namespace"
        );

        let own = tenants(&["platform"], Some(("team", "a")));
        let t = TickAccounts::new(&default, Some(&own), Some(&s));
        assert_eq!(t.bind("platform", None, None), Binding::Account(0));
        assert_eq!(t.bind("labelled", None, None), Binding::Account(0));
        match t.bind("other", None, None) {
            Binding::Blocked(block) => {
                assert_eq!(block.reason, ACCOUNT_NOT_ALLOWED);
                assert!(
                    block.message.contains("\"other\"")
                        && block.message.contains("--own-account-namespaces"),
                    "{}",
                    block.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.bind("unknown-ns", None, None),
            Binding::Wait,
            "a namespace whose labels have not arrived (created since) waits for them"
        );
        assert_eq!(
            reason(t.bind("other", None, None)),
            ACCOUNT_NOT_ALLOWED,
            "a namespace whose labels do not match is not admitted"
        );

        let unsynced = TickAccounts::new(&default, Some(&own), None);
        assert_eq!(
            unsynced.bind("labelled", None, None),
            Binding::Wait,
            "under a selector, phones wait until the namespaces' labels are known"
        );
        assert_eq!(unsynced.bind("platform", None, None), Binding::Account(0));
        let listed = tenants(&["platform"], None);
        let unsynced = TickAccounts::new(&default, Some(&listed), None);
        assert_eq!(
            reason(unsynced.bind("other", None, None)),
            ACCOUNT_NOT_ALLOWED,
            "a list alone needs no labels"
        );
    }

    fn client_with(credentials: crate::koophone::Credentials) -> Client {
        Client::new(
            crate::koophone::ClientConfig::default(),
            crate::koophone::Auth::new(Ok(credentials)),
        )
        .unwrap()
    }

    #[test]
    fn an_accounts_scope_is_its_project_whatever_the_route_and_unknown_projects_wait() {
        use crate::koophone::{Credentials, ProjectScope, Token};
        let token = |project: Option<&str>| Credentials::Token {
            token: Token::new("t"),
            project_id: project.map(str::to_owned),
        };
        let ak = Credentials::AccessKey {
            access_key: "ak".into(),
            secret_key: "sk".to_owned().into(),
            project_id: "p1".into(),
            security_token: None,
        };
        let iam = |project: ProjectScope| Credentials::Password {
            username: "u".into(),
            password: "pw".to_owned().into(),
            domain: "d".into(),
            project,
            iam_endpoint: "https://iam.example".into(),
        };
        let default = client_with(ak);
        let mut s = AccountSet::default();
        for (name, credentials) in [
            ("token-p1", token(Some("p1"))),
            ("bare", token(None)),
            ("iam-id", iam(ProjectScope::Id("p1".into()))),
            ("iam-name", iam(ProjectScope::Name("cn-north-4".into()))),
        ] {
            s.accounts.insert(
                name.into(),
                Account {
                    name: name.into(),
                    generation: Some(1),
                    client: Ok(client_with(credentials)),
                    tenants: tenants(&["ns"], None),
                    allowed_users: None,
                },
            );
        }
        let t = TickAccounts::new(&default, None, Some(&s));
        let scope = |name: Option<&str>| match t.bind("ns", name, None) {
            Binding::Account(ix) => t.entries[ix].scope.clone(),
            other => panic!("{other:?}"),
        };
        let p1 = Some("project:p1".to_owned());
        assert_eq!(scope(None), p1, "the operator's own access key");
        assert_eq!(scope(Some("token-p1")), p1, "a token beside its projectId");
        assert_eq!(
            scope(Some("iam-id")),
            p1,
            "an IAM user naming its project by id"
        );
        assert_eq!(
            scope(Some("bare")),
            Some("account:bare".to_owned()),
            "a bare token: only the account"
        );
        assert_eq!(
            t.bind("ns", Some("iam-name"), None),
            Binding::Wait,
            "a project named by name is not known before IAM tells its id: no call, no write"
        );
    }
}
