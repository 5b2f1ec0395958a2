//! What the planner is given for each phone beside its object and this tick's observation: what the
//! engine remembers of it (the intents of the term among them), and what holds for the whole tick.

use super::*;
use jiff::Timestamp;
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::HashMap;

/// What the engine remembers of one phone across ticks: the planner's input beside the object and
/// this tick's observation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory<'m> {
    /// This term wrote the phone and the store does not show that write yet: nothing is planned
    /// (a plan from the older object would only be fenced off); it waits for the watch.
    pub lagging: bool,
    /// The intents this term saw, per instance: another object's intent for the phone's instance
    /// within its grace period is an ownership move (see [`Intents::previous`]). Looked up only for
    /// a phone that plans an action; `None`: none known.
    pub intents: Option<&'m Intents>,
    /// The vendor's ids of the phone's last accepted call, waiting for its next write.
    pub receipt: Option<&'m Receipt>,
    /// The last time this term could not observe the phone's instance (its status query failed,
    /// or the vendor did not list it): an idle wait counts from no earlier (kept in memory only:
    /// no write for it).
    pub unobserved: Option<Timestamp>,
}

/// What holds for every phone of a tick.
#[derive(Clone, Copy, Debug)]
pub struct Context<'c> {
    pub now: Timestamp,
    pub config: &'c PlanConfig,
    /// What this leadership term knows of earlier terms' outstanding intents.
    pub earlier: &'c EarlierTerms,
}

/// The vendor's ids for an accepted call, kept by the engine until the phone's next write carries
/// them (see [`Memory::receipt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The `x-request-id` of the call they answer.
    pub request_id: String,
    pub task_id: Option<String>,
    pub job_id: Option<String>,
}

/// How long past its grace period a prepare intent is remembered for the next owner of its
/// instance (see [`Intent::kept_until`]): a day, past any queue a vendor keeps; memory for the
/// prepares of one day.
pub const PREPARE_INTENT_MEMORY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The last action intent seen for an instance (see [`Intents`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The object that wrote it (`namespace/name`) and its uid.
    pub owner: String,
    pub uid: Option<String>,
    /// When its call was (to be) sent.
    pub requested_at: Timestamp,
    /// The action it announced: its grace period is the action's.
    pub action: Action,
    /// The user its call named (a prepare's), when known.
    pub user: Option<String>,
}

impl Intent {
    /// When its grace period ends.
    pub fn until(&self, config: &PlanConfig) -> Timestamp {
        self.requested_at
            .checked_add(self.action.grace(config))
            .unwrap_or(Timestamp::MAX)
    }

    /// Until when it is remembered: a prepare's [`PREPARE_INTENT_MEMORY`] past its grace period,
    /// so that a new owner of the instance, held until then, asks the vendor whether it still
    /// holds that prepare queued before it sends its own, however long an outage kept it from
    /// asking (see [`Intents::earlier_prepares`]); the new owner's own intent then replaces it. A
    /// backup's, its grace period (no question tells a queued backup).
    fn kept_until(&self, config: &PlanConfig) -> Timestamp {
        let until = self.until(config);
        match self.action {
            Action::Prepare => until
                .checked_add(PREPARE_INTENT_MEMORY)
                .unwrap_or(Timestamp::MAX),
            Action::Backup => until,
        }
    }
}

/// What a term knows of the intents that earlier terms may still have outstanding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EarlierTerms {
    /// None: nothing was recorded, or the recorded time has passed.
    Settled,
    /// Some may be outstanding until then.
    Until(Timestamp),
    /// Not known (the record could not be read; why): held as if ahead.
    Unknown(String),
}

/// The intents of one leadership term, per account scope and instance id: the last of each object
/// that made one.
#[derive(Debug, Default)]
pub struct Intents {
    /// Per account scope, per instance id: looked up with borrowed keys, for every planned phone.
    /// NB: per object, not only the last: a new owner re-arming its own wait must not hide the
    /// queued prepare of the object it took the instance from.
    by_scope: HashMap<String, HashMap<String, Vec<Intent>>>,
}

impl Intents {
    /// Forgets every intent (a new leadership term).
    pub fn clear(&mut self) {
        self.by_scope.clear();
    }

    /// Records an intent, unless a later one of the same object is known.
    pub fn record(&mut self, account: &str, instance: &str, intent: Intent) {
        let scope = match self.by_scope.get_mut(account) {
            Some(scope) => scope,
            None => self.by_scope.entry(account.to_owned()).or_default(),
        };
        let known = match scope.get_mut(instance) {
            Some(known) => known,
            // NB: room for one: most instances have one owner, and a Vec's first push makes room
            // for four (some 400 bytes an instance, for every phone of a converging fleet).
            None => scope
                .entry(instance.to_owned())
                .or_insert_with(|| Vec::with_capacity(1)),
        };
        match known
            .iter_mut()
            .find(|k| k.uid == intent.uid && k.owner == intent.owner)
        {
            Some(k) if k.requested_at >= intent.requested_at => {}
            Some(k) => *k = intent,
            None => known.push(intent),
        }
    }

    /// Records the intents still in flight in these phones' statuses, and forgets those whose
    /// grace period has ended.
    pub fn observe<'p, 'v: 'p>(
        &mut self,
        phones: impl IntoIterator<Item = &'p PhoneView<'v>>,
        now: Timestamp,
        config: &PlanConfig,
    ) {
        let records = |phone: &'p PhoneView<'v>| {
            Action::ALL.into_iter().filter_map(move |action| {
                phone
                    .status
                    .and_then(|s| action.record(s))
                    .map(|r| (action, r))
            })
        };
        for (phone, (action, record)) in phones
            .into_iter()
            .flat_map(|phone| records(phone).map(move |record| (phone, record)))
        {
            let Some(at) = record.requested_at.as_ref().filter(|_| record.in_flight) else {
                continue;
            };
            // NB: the scope the intent was made in, whatever the phone's binding is now (blocked,
            // or another account); the binding only for an intent written before it was kept.
            let Some(scope) = record.scope.as_deref().or(phone.account.scope()) else {
                continue;
            };
            self.record(
                scope,
                &phone.spec.instance_id,
                Intent {
                    owner: phone.key.to_string(),
                    uid: phone.uid.map(str::to_owned),
                    requested_at: at.0,
                    action,
                    user: record.user_id.as_deref().map(str::to_owned),
                },
            );
        }
        for scope in self.by_scope.values_mut() {
            for known in scope.values_mut() {
                known.retain(|intent| now < intent.kept_until(config));
            }
            scope.retain(|_, known| !known.is_empty());
        }
        self.by_scope.retain(|_, scope| !scope.is_empty());
    }

    /// The intents of other objects than the phone for its instance, in its account's scope.
    fn others<'i>(&'i self, phone: &'i PhoneView<'_>) -> impl Iterator<Item = &'i Intent> + 'i {
        phone
            .account
            .scope()
            .and_then(|scope| self.by_scope.get(scope))
            .and_then(|scope| scope.get(&phone.spec.instance_id))
            .into_iter()
            .flatten()
            .filter(|intent| intent.uid.as_deref() != phone.uid)
    }

    /// Another object's intent for the phone's instance whose grace period has not ended (the
    /// latest, when several have).
    pub fn previous<'i>(
        &'i self,
        phone: &'i PhoneView<'_>,
        now: Timestamp,
        config: &PlanConfig,
    ) -> Option<&'i Intent> {
        self.others(phone)
            .filter(|intent| now < intent.until(config))
            .max_by_key(|intent| intent.requested_at)
    }

    /// Other objects' prepare intents for the phone's instance, still remembered (past their grace
    /// period a new owner was held until): the vendor may hold such a prepare queued, the instance
    /// showing Idle all along.
    pub fn earlier_prepares<'i>(
        &'i self,
        phone: &'i PhoneView<'_>,
        now: Timestamp,
        config: &'i PlanConfig,
    ) -> impl Iterator<Item = &'i Intent> + 'i {
        self.others(phone).filter(move |intent| {
            intent.action == Action::Prepare && now < intent.kept_until(config)
        })
    }

    /// True when no intent is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_scope.is_empty()
    }
}
