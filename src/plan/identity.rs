//! Which object is which: keys, the view of a phone the planner reads, and each phone's
//! disposition before any vendor call (suspended, invalid, a duplicate of an older owner, or queried).

use crate::api::{CloudPhone, CloudPhoneSpec, CloudPhoneStatus, check_instance_id};
use jiff::Timestamp;
use std::fmt;
use std::hash::BuildHasher;

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

/// The scope of the operator's own credentials (phones without `spec.accountRef`) while their
/// project is not known: [`account_scope`] of `default` without a project.
pub const DEFAULT_SCOPE: &str = "account:default";

/// The scope in which an account's instance ids are unique: its vendor project, whatever route
/// (endpoint spelling, CloudPhoneAccount, the operator's own credentials) reaches it; only where
/// the project cannot be known (a bare token) the account itself.
///
/// NB: two routes to one project must give one scope, or each would act on the same instance.
pub fn account_scope(account: &str, project: Option<&str>) -> String {
    match project {
        Some(id) => format!("project:{id}"),
        None => format!("account:{account}"),
    }
}

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
    /// Its `cloudphone.io/load-until` annotation, as the tick's snapshot shows it.
    pub load_until: Option<crate::api::AnnotationValue<'a>>,
    /// Where its vendor calls go this tick, as the engine bound it.
    pub account: Route<'a>,
    /// Its schedule at this tick, for a `Scheduled` phone (see [`PhoneView::with_schedule`]);
    /// until the engine sets it, not known (the phone is held).
    pub schedule: super::ScheduleLink<'a>,
}

/// Where a phone's vendor calls go this tick: the account it is bound to, why none can be used, or
/// not known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// The scope of the account its calls use (one vendor project: instance ids are unique within
    /// a scope, not across).
    Scope(&'a str),
    /// Its account cannot be used: the phone makes no call and says why.
    Blocked(AccountBlock),
    /// Its account's vendor project is not known yet (credentials unusable, IAM not asked yet):
    /// the phone waits, with no call and no write, and owns no instance meanwhile.
    Unknown,
}

impl<'a> Route<'a> {
    /// The scope of the account, when the phone is bound to one.
    pub fn scope(&self) -> Option<&'a str> {
        match self {
            Route::Scope(scope) => Some(scope),
            _ => None,
        }
    }
}

impl<'a> PhoneView<'a> {
    /// The planner's view of `phone`, whose calls go by `account`.
    pub fn of(phone: &'a CloudPhone, account: Route<'a>) -> PhoneView<'a> {
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
            load_until: phone.load_until(),
            account,
            schedule: super::ScheduleLink::NotSynced,
        }
    }

    /// The view with the phone's schedule at this tick.
    pub fn with_schedule(mut self, schedule: super::ScheduleLink<'a>) -> PhoneView<'a> {
        self.schedule = schedule;
        self
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

/// Every phone's disposition, and the phones whose instances are queried this tick.
#[derive(Clone, Debug)]
pub struct Dispositions {
    /// Phone `i`'s disposition is `each[i]`.
    pub each: Vec<Disposition>,
    /// The owner of each instance (one id in one account scope), so each instance once, in an
    /// order that is the same from tick to tick.
    pub queried: Vec<usize>,
}

impl std::ops::Deref for Dispositions {
    type Target = [Disposition];

    fn deref(&self) -> &[Disposition] {
        &self.each
    }
}

/// Decides, for every phone, whether its instance is queried this tick. Suspended phones, invalid
/// specs and phones whose account cannot be used own nothing; of several objects naming one
/// instance (one id in one account scope) the oldest (then the first by namespace/name) owns it.
pub fn dispositions(phones: &[PhoneView]) -> Dispositions {
    let mut each = Vec::with_capacity(phones.len());
    // NB: owners found by sorting, not through a map: the sort also gives the order of the
    // queries. Sorted by a fixed hash of (scope, id) first, so that most comparisons read no
    // string: the order is the same from tick to tick and between processes.
    let hasher = foldhash::fast::FixedState::default();
    let mut candidates: Vec<(u64, &str, &str, usize)> = Vec::with_capacity(phones.len());
    for (i, phone) in phones.iter().enumerate() {
        let id = phone.spec.instance_id.as_str();
        if phone.spec.suspend {
            each.push(Disposition::Suspended);
        } else if let Err(reason) = check_instance_id(id) {
            let shown: String = id.chars().take(40).collect();
            each.push(Disposition::InvalidSpec {
                message: format!(
                    "spec.instanceId {shown:?} {reason}; it must be 1-32 characters of [A-Za-z0-9_-]"
                ),
            });
        } else if let Some(message) = user_id_problem(phone.spec) {
            each.push(Disposition::InvalidSpec { message });
        } else if (phone.spec.lifecycle == crate::api::Lifecycle::Scheduled)
            != phone.spec.schedule_ref.is_some()
        {
            each.push(Disposition::InvalidSpec {
                message:
                    "spec.scheduleRef is required when spec.lifecycle is Scheduled, and only then"
                        .to_owned(),
            });
        } else if super::idle_timeout(phone.spec.idle_timeout.as_deref()).is_none() {
            let shown: String = phone
                .spec
                .idle_timeout
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(40)
                .collect();
            each.push(Disposition::InvalidSpec {
                message: format!(
                    "spec.idleTimeout {shown:?} is not a duration of whole units (90s, 30m, 1h30m, 2d, or 0)"
                ),
            });
        } else {
            match &phone.account {
                Route::Blocked(block) => each.push(Disposition::AccountBlocked(block.clone())),
                // NB: never planned (it waits): blocked only so that it owns no instance.
                Route::Unknown => each.push(Disposition::AccountBlocked(AccountBlock {
                    reason: ACCOUNT_NOT_READY,
                    message: "the vendor project of its account is not known yet".to_owned(),
                })),
                Route::Scope(scope) => {
                    each.push(Disposition::Query);
                    candidates.push((hasher.hash_one((*scope, id)), *scope, id, i));
                }
            }
        }
    }
    candidates.sort_unstable();
    let mut queried = Vec::with_capacity(candidates.len());
    for same in candidates.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
        let owner = same
            .iter()
            .map(|&(.., i)| i)
            .reduce(|owner, i| {
                if older(&phones[i], &phones[owner]) {
                    i
                } else {
                    owner
                }
            })
            .expect("chunk_by gives no empty group");
        queried.push(owner);
        for &(.., i) in same {
            if i != owner {
                each[i] = Disposition::Duplicate {
                    owner: phones[owner].key.to_key(),
                };
            }
        }
    }
    Dispositions { each, queried }
}

/// Why a phone's `spec.userId` cannot be used by its lifecycle, if it cannot (the schema's rules,
/// for a spec that slipped past them): a `Loaded` phone names no user, or one the vendor refuses.
fn user_id_problem(spec: &crate::api::CloudPhoneSpec) -> Option<String> {
    if !matches!(
        spec.lifecycle,
        crate::api::Lifecycle::Loaded | crate::api::Lifecycle::Scheduled
    ) {
        return None;
    }
    let Some(user) = spec.user_id.as_deref() else {
        return Some(format!(
            "spec.userId is required when spec.lifecycle is {}: the user the vendor readies the instance for",
            spec.lifecycle.as_str()
        ));
    };
    let reason = check_instance_id(user).err()?;
    let shown: String = user.chars().take(40).collect();
    Some(format!(
        "spec.userId {shown:?} {reason}; it must be 1-32 characters of [A-Za-z0-9_-]"
    ))
}

/// True when `a` was created before `b`; an unknown creation time counts as newest, and ties go to
/// the first by namespace/name, so that ownership never flips between ticks.
pub(super) fn older(a: &PhoneView, b: &PhoneView) -> bool {
    (a.created.is_none(), a.created, &a.key) < (b.created.is_none(), b.created, &b.key)
}
