//! The vendor accounts a tick calls under: the operator's own (`default`, for phones without
//! `spec.accountRef`) and each `CloudPhoneAccount`, each with its own client (credentials, 429
//! pause, call limits) and circuit breaker; and which account, if any, each phone may use.

use super::breaker::DEFAULT_ACCOUNT;
use crate::koophone::Client;
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
    /// The vendor tenant it reaches (endpoint and project; the account's name when the project is
    /// not known): instance ids are unique within a scope, so two accounts of one scope share them.
    pub scope: String,
    /// The object's `metadata.generation`, for its status.
    pub generation: Option<i64>,
    /// Its client (with the account's call limits), or why there is none.
    pub client: Result<Client, Unusable>,
    pub tenants: Tenants,
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
}

/// One account of a tick.
pub(crate) struct TickAccount<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub client: Result<&'a Client, &'a Unusable>,
    pub generation: Option<i64>,
}

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
    pub fn new(default: &'a Client, set: Option<&'a AccountSet>) -> TickAccounts<'a> {
        let mut entries = vec![TickAccount {
            name: DEFAULT_ACCOUNT,
            scope: crate::plan::DEFAULT_SCOPE,
            client: Ok(default),
            generation: None,
        }];
        let mut by_name = HashMap::new();
        for account in set.iter().flat_map(|s| s.accounts.values()) {
            by_name.insert(account.name.as_str(), entries.len());
            entries.push(TickAccount {
                name: &account.name,
                scope: &account.scope,
                client: account.client.as_ref(),
                generation: account.generation,
            });
        }
        TickAccounts {
            entries,
            set,
            by_name,
        }
    }

    /// Which account a phone in `namespace` naming `account` (`None`: the operator's own) uses.
    pub fn bind(&self, namespace: &str, account: Option<&str>) -> Binding {
        let Some(name) = account else {
            return Binding::Account(0);
        };
        let Some(set) = self.set else {
            return Binding::Wait;
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
                scope: "team-a".into(),
                generation: Some(1),
                client,
                tenants,
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
        let t = TickAccounts::new(&default, Some(&s));
        assert_eq!(t.bind("anywhere", None), Binding::Account(0));
        assert_eq!(t.bind("listed", Some("team-a")), Binding::Account(1));
        assert_eq!(t.bind("labelled", Some("team-a")), Binding::Account(1));
        assert_eq!(reason(t.bind("other", Some("team-a"))), ACCOUNT_NOT_ALLOWED);
        assert_eq!(
            reason(t.bind("unknown-ns", Some("team-a"))),
            ACCOUNT_NOT_ALLOWED,
            "a namespace whose labels are not known is not admitted by a selector"
        );
        assert_eq!(reason(t.bind("listed", Some("team-b"))), ACCOUNT_NOT_FOUND);
    }

    #[test]
    fn an_account_admits_nobody_by_default_and_an_unusable_one_blocks_its_phones() {
        let default = client();
        let s = set(Tenants::default(), Ok(client()));
        let t = TickAccounts::new(&default, Some(&s));
        assert_eq!(
            reason(t.bind("labelled", Some("team-a"))),
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
        let t = TickAccounts::new(&default, Some(&s));
        match t.bind("listed", Some("team-a")) {
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
        let t = TickAccounts::new(&default, None);
        assert_eq!(t.bind("ns", Some("team-a")), Binding::Wait);
        assert_eq!(t.bind("ns", None), Binding::Account(0));
    }
}
