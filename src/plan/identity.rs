//! Which object is which: keys, the view of a phone the planner reads, and each phone's
//! disposition before any vendor call (suspended, invalid, a duplicate of an older owner, or queried).

use crate::api::{CloudPhone, CloudPhoneSpec, CloudPhoneStatus, check_instance_id};
use jiff::Timestamp;
use std::collections::HashMap;
use std::fmt;

/// Which object a phone is: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneKey {
    pub namespace: String,
    pub name: String,
}

impl PhoneKey {
    pub fn of(phone: &CloudPhone) -> PhoneKey {
        PhoneKey {
            namespace: phone.metadata.namespace.clone().unwrap_or_default(),
            name: phone.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for PhoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PhoneKey {
    /// The key borrowed, as a [`PhoneView`] holds it.
    pub fn borrowed(&self) -> KeyRef<'_> {
        KeyRef {
            namespace: &self.namespace,
            name: &self.name,
        }
    }
}

/// A [`PhoneKey`] borrowed from the object: planning a tick allocates no key per phone. Orders as
/// `PhoneKey` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl KeyRef<'_> {
    pub fn to_key(self) -> PhoneKey {
        PhoneKey {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }
}

impl fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The scope of the operator's own credentials (phones without `spec.accountRef`).
pub const DEFAULT_SCOPE: &str = "default";

/// A phone's `spec.accountRef` names no CloudPhoneAccount.
pub const ACCOUNT_NOT_FOUND: &str = "AccountNotFound";
/// The phone's account does not admit its namespace.
pub const ACCOUNT_NOT_ALLOWED: &str = "AccountNotAllowed";
/// The phone's account is not usable: credentials missing or refused, endpoint not allowed.
pub const ACCOUNT_NOT_READY: &str = "AccountNotReady";

/// Why a phone's account cannot be used this tick: the phone makes no vendor call, and its
/// conditions say why (`AccountNotFound`, `AccountNotAllowed`, `AccountNotReady`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountBlock {
    pub reason: &'static str,
    pub message: String,
}

/// A phone as the planner sees it.
#[derive(Clone, Debug)]
pub struct PhoneView<'a> {
    pub key: KeyRef<'a>,
    /// The object's uid: tells a re-created object from the deleted one of the same name.
    pub uid: Option<&'a str>,
    pub created: Option<Timestamp>,
    pub generation: Option<i64>,
    pub spec: &'a CloudPhoneSpec,
    pub status: Option<&'a CloudPhoneStatus>,
    /// The value of its `cloudphone.io/reconcile-requested-at` annotation, as the tick's snapshot
    /// shows it.
    pub reconcile_requested: Option<&'a str>,
    /// The scope of the account its calls use (one vendor endpoint and project: instance ids are
    /// unique within a scope, not across), or why its account cannot be used.
    pub account: Result<&'a str, AccountBlock>,
}

impl<'a> PhoneView<'a> {
    pub fn of(phone: &'a CloudPhone) -> PhoneView<'a> {
        PhoneView {
            key: KeyRef {
                namespace: phone.metadata.namespace.as_deref().unwrap_or_default(),
                name: phone.metadata.name.as_deref().unwrap_or_default(),
            },
            uid: phone.metadata.uid.as_deref(),
            created: phone.metadata.creation_timestamp.as_ref().map(|t| t.0),
            generation: phone.metadata.generation,
            spec: &phone.spec,
            status: phone.status.as_ref(),
            reconcile_requested: phone.reconcile_requested(),
            account: Ok(DEFAULT_SCOPE),
        }
    }
}

/// What this tick does with a phone before any vendor call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Query its instance's status (it owns the instance id).
    Query,
    /// `spec.suspend` is true: no vendor call.
    Suspended,
    /// An older object names the same instance and owns it.
    Duplicate { owner: PhoneKey },
    /// The spec slipped past the schema; `message` names the field.
    InvalidSpec { message: String },
    /// Its account cannot be used: missing, not admitting its namespace, or not ready.
    AccountBlocked(AccountBlock),
}

/// Decides, for every phone, whether its instance is queried this tick. Suspended phones, invalid
/// specs and phones whose account cannot be used own nothing; of several objects naming one
/// instance (one id in one account scope) the oldest (then the first by namespace/name) owns it.
pub fn dispositions(phones: &[PhoneView]) -> Vec<Disposition> {
    let mut owners: HashMap<(&str, &str), usize> = HashMap::new();
    let mut out = Vec::with_capacity(phones.len());
    for (i, phone) in phones.iter().enumerate() {
        let id = phone.spec.instance_id.as_str();
        if phone.spec.suspend {
            out.push(Disposition::Suspended);
        } else if let Err(reason) = check_instance_id(id) {
            let shown: String = id.chars().take(40).collect();
            out.push(Disposition::InvalidSpec {
                message: format!(
                    "spec.instanceId {shown:?} {reason}; it must be 1-32 characters of [A-Za-z0-9_-]"
                ),
            });
        } else if let Err(block) = &phone.account {
            out.push(Disposition::AccountBlocked(block.clone()));
        } else if let Ok(scope) = phone.account {
            out.push(Disposition::Query);
            let owner = owners.entry((scope, id)).or_insert(i);
            if *owner != i && older(&phones[i], &phones[*owner]) {
                *owner = i;
            }
        }
    }
    for (i, phone) in phones.iter().enumerate() {
        if out[i] != Disposition::Query {
            continue;
        }
        let Ok(scope) = phone.account else {
            continue;
        };
        let owner = owners[&(scope, phone.spec.instance_id.as_str())];
        if owner != i {
            out[i] = Disposition::Duplicate {
                owner: phones[owner].key.to_key(),
            };
        }
    }
    out
}

/// True when `a` was created before `b`; an unknown creation time counts as newest, and ties go to
/// the first by namespace/name, so that ownership never flips between ticks.
pub(super) fn older(a: &PhoneView, b: &PhoneView) -> bool {
    (a.created.is_none(), a.created, &a.key) < (b.created.is_none(), b.created, &b.key)
}

/// The phones whose instances are queried this tick (the owner of each id in each scope, so each
/// instance once), by scope and instance id.
pub fn queried_phones(phones: &[PhoneView], dispositions: &[Disposition]) -> Vec<usize> {
    // NB: sorted as (scope, id, index): a comparison reads the ids directly, not through each view.
    let mut owners: Vec<(&str, &str, usize)> = (0..phones.len())
        .filter(|&i| dispositions[i] == Disposition::Query)
        .filter_map(|i| {
            let scope = phones[i].account.as_ref().ok()?;
            Some((*scope, phones[i].spec.instance_id.as_str(), i))
        })
        .collect();
    owners.sort_unstable();
    // NB: [`dispositions`] gives each instance one owner; this only guards against a mix-up.
    owners.dedup_by_key(|(scope, id, _)| (*scope, *id));
    owners.into_iter().map(|(_, _, i)| i).collect()
}
