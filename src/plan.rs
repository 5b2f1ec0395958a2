//! The pure planner: desired specs and observed statuses in, new statuses and backup actions out.
//!
//! No I/O, no clock reads, no randomness: the tick passes `now` in. Guarantees, tested below and by
//! property tests: no action for `Observed` or suspended phones; at most one action per instance;
//! planning again on the planned output with the same observation adds no action; the new status
//! equals the old one when nothing changed, so an unchanged phone causes no write.

use crate::api::{
    BackupStatus, CloudPhone, CloudPhoneSpec, CloudPhoneStatus, Lifecycle, Phase, check_instance_id,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// The `Ready` condition: the declared lifecycle is reached (or, for `Observed`, observed).
pub const READY: &str = "Ready";
/// The `Synced` condition: the last status query for this phone succeeded.
pub const SYNCED: &str = "Synced";

/// Tunables of the planner.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    /// After a backup call, no second call for the same phone until the vendor shows BackingUp or
    /// Idle, or this long has passed (the call was lost, or the vendor refused it).
    pub grace_period: Duration,
    /// The wait after a first failed backup before the next attempt; doubled for each further one.
    pub backoff_base: Duration,
    /// No wait between attempts exceeds this.
    pub backoff_max: Duration,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            // The vendor shows BackingUp within seconds of accepting a backup; two minutes covers a
            // slow vendor and a few missed ticks without leaving a lost call unnoticed for long.
            grace_period: Duration::from_secs(120),
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

impl PlanConfig {
    /// The wait after the given number of failed attempts.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
        self.backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max)
    }
}

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
}

/// Decides, for every phone, whether its instance is queried this tick. Suspended phones and invalid
/// specs own nothing; of several objects naming one instance the oldest (then the first by
/// namespace/name) owns it.
pub fn dispositions(phones: &[PhoneView]) -> Vec<Disposition> {
    let mut owners: HashMap<&str, usize> = HashMap::new();
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
        } else {
            out.push(Disposition::Query);
            let owner = owners.entry(id).or_insert(i);
            if *owner != i && older(&phones[i], &phones[*owner]) {
                *owner = i;
            }
        }
    }
    for (i, phone) in phones.iter().enumerate() {
        if out[i] != Disposition::Query {
            continue;
        }
        let owner = owners[phone.spec.instance_id.as_str()];
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
fn older(a: &PhoneView, b: &PhoneView) -> bool {
    (a.created.is_none(), a.created, &a.key) < (b.created.is_none(), b.created, &b.key)
}

/// The instance ids to query this tick: each owned id once, sorted.
pub fn instances_to_query(phones: &[PhoneView], dispositions: &[Disposition]) -> Vec<String> {
    queried_phones(phones, dispositions)
        .into_iter()
        .map(|i| phones[i].spec.instance_id.clone())
        .collect()
}

/// The phones whose instances are queried this tick (the owner of each id, so each id once), by
/// instance id.
pub fn queried_phones(phones: &[PhoneView], dispositions: &[Disposition]) -> Vec<usize> {
    // NB: sorted as (id, index) pairs: a comparison reads the ids directly, not through each view.
    let mut owners: Vec<(&str, usize)> = (0..phones.len())
        .filter(|&i| dispositions[i] == Disposition::Query)
        .map(|i| (phones[i].spec.instance_id.as_str(), i))
        .collect();
    owners.sort_unstable();
    // NB: [`dispositions`] gives each id one owner; this only guards against a caller's mix-up.
    owners.dedup_by_key(|(id, _)| *id);
    owners.into_iter().map(|(_, i)| i).collect()
}

/// What this tick's status query said of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The vendor listed the instance with this status code.
    Status(i64),
    /// The vendor's answer did not list the instance.
    Missing,
    /// The query for this instance failed.
    Failed(Failure),
}

/// A failed vendor call, as it is reported on a phone: a CamelCase reason (a bounded label such
/// as `Timeout` or `Internal`) and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

/// The plan for one phone.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned<'a> {
    /// The status to write: borrowed from the old one while nothing changed (a steady phone costs
    /// no copy), owned once something did. When `backup` is true it already records the backup
    /// call, to be written before the call is sent.
    pub status: Cow<'a, CloudPhoneStatus>,
    /// Request a backup of the phone's instance.
    pub backup: bool,
}

impl Planned<'_> {
    /// True when the planned status is the old one, untouched.
    pub fn unchanged(&self) -> bool {
        matches!(self.status, Cow::Borrowed(_))
    }
}

/// Plans one phone from its disposition and this tick's observation of its instance.
pub fn plan_phone<'a>(
    phone: &PhoneView<'a>,
    disposition: &Disposition,
    observation: Option<&Observation>,
    now: Timestamp,
    config: &PlanConfig,
) -> Planned<'a> {
    let now = whole_seconds(now);
    let mut status = match phone.status {
        Some(old) => Cow::Borrowed(old),
        None => Cow::Owned(CloudPhoneStatus::default()),
    };
    if status.observed_generation != phone.generation {
        status.to_mut().observed_generation = phone.generation;
    }
    let mut c = LazyConditions {
        status: &mut status,
        generation: phone.generation,
        now,
    };
    let id = &phone.spec.instance_id;
    match disposition {
        Disposition::Suspended => {
            let msg = "spec.suspend is true: the operator makes no vendor call for this phone";
            c.set(READY, "Unknown", "Suspended", msg);
            c.set(SYNCED, "Unknown", "Suspended", msg);
            return Planned {
                status,
                backup: false,
            };
        }
        Disposition::InvalidSpec { message } => {
            c.set(READY, "False", "InvalidSpec", message);
            c.set(SYNCED, "False", "InvalidSpec", message);
            return Planned {
                status,
                backup: false,
            };
        }
        Disposition::Duplicate { owner } => {
            let msg = format!(
                "instance {id} is managed by the older CloudPhone {owner}; this one makes no vendor \
                 call: delete it or point spec.instanceId at another instance"
            );
            c.set(READY, "False", "DuplicateInstance", &msg);
            c.set(SYNCED, "False", "DuplicateInstance", &msg);
            return Planned {
                status,
                backup: false,
            };
        }
        Disposition::Query => {}
    }
    match observation {
        None => {
            if !c.has(READY) {
                c.set(
                    READY,
                    "Unknown",
                    "Pending",
                    "waiting for the first status query",
                );
            }
            Planned {
                status,
                backup: false,
            }
        }
        Some(Observation::Failed(failure)) => {
            c.set(SYNCED, "False", &failure.reason, &failure.message);
            if !c.has(READY) {
                c.set(
                    READY,
                    "Unknown",
                    "Pending",
                    "waiting for a successful status query",
                );
            }
            Planned {
                status,
                backup: false,
            }
        }
        Some(Observation::Missing) => {
            if status.instance_status.is_some() || status.phase != Phase::NotFound {
                let s = status.to_mut();
                s.instance_status = None;
                s.phase = Phase::NotFound;
            }
            let mut c = LazyConditions {
                status: &mut status,
                generation: phone.generation,
                now,
            };
            c.set(SYNCED, "True", "Observed", "");
            c.set(
                READY,
                "False",
                "InstanceNotFound",
                &format!(
                    "the vendor does not list instance {id}: check spec.instanceId and that the \
                     credentials' project holds it"
                ),
            );
            Planned {
                status,
                backup: false,
            }
        }
        Some(Observation::Status(code)) => {
            let phase = Phase::from_code(*code);
            if status.instance_status != Some(*code) || status.phase != phase {
                let s = status.to_mut();
                s.instance_status = Some(*code);
                s.phase = phase;
            }
            if let Some(b) = status.backup.as_ref() {
                let settle = b.in_flight && matches!(phase, Phase::BackingUp | Phase::Idle);
                let reset = b.attempts != 0 && phase == Phase::Idle;
                if settle || reset {
                    let b = status.to_mut().backup.as_mut().expect("checked above");
                    if settle {
                        b.in_flight = false;
                    }
                    if reset {
                        b.attempts = 0;
                    }
                }
            }
            let (ready, backup) = match phone.spec.lifecycle {
                Lifecycle::Observed => (
                    Ready::new(
                        "True",
                        "Observed",
                        "the operator only observes this instance",
                    ),
                    false,
                ),
                Lifecycle::BackedUp => {
                    backed_up(phone.spec, phone.generation, &status, *code, now, config)
                }
            };
            if backup {
                let b = status
                    .to_mut()
                    .backup
                    .get_or_insert_with(BackupStatus::default);
                b.requested_at = Some(Time(now));
                b.request_id = None;
                b.task_id = None;
                b.job_id = None;
                b.attempts = b.attempts.saturating_add(1);
                b.in_flight = true;
            }
            let mut c = LazyConditions {
                status: &mut status,
                generation: phone.generation,
                now,
            };
            c.set(SYNCED, "True", "Observed", "");
            c.set(READY, ready.status, ready.reason, &ready.message);
            Planned { status, backup }
        }
    }
}

struct Ready {
    status: &'static str,
    reason: &'static str,
    /// Most messages are fixed texts: no allocation for them on every phone of every tick.
    message: Cow<'static, str>,
}

impl Ready {
    fn new(
        status: &'static str,
        reason: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Ready {
        Ready {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The `BackedUp` lifecycle: the Ready condition, and whether to call backup now.
fn backed_up(
    spec: &CloudPhoneSpec,
    generation: Option<i64>,
    status: &CloudPhoneStatus,
    code: i64,
    now: Timestamp,
    config: &PlanConfig,
) -> (Ready, bool) {
    let backup = status.backup.as_ref();
    let requested_at = backup.and_then(|b| b.requested_at.as_ref()).map(|t| t.0);
    let attempts = backup.map_or(0, |b| b.attempts);
    let wait_until = |d: Duration| requested_at.map(|t| t.checked_add(d).unwrap_or(Timestamp::MAX));
    let grace_end = wait_until(config.grace_period);
    let unconfirmed = backup.is_some_and(|b| b.in_flight);
    let in_flight = unconfirmed && grace_end.is_some_and(|end| now < end);
    let waiting_for_vendor = || requested(requested_at, config);
    let request = || (requested(Some(now), config), true);
    let phase = Phase::from_code(code);
    // A permanent refusal holds until the spec changes: asking again cannot help.
    if matches!(
        phase,
        Phase::DataLoaded | Phase::Streaming | Phase::BackupFailed
    ) && let Some(refused) = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.reason == BACKUP_REFUSED)
        && refused.observed_generation == generation
    {
        return (
            Ready::new("False", BACKUP_REFUSED, refused.message.clone()),
            false,
        );
    }
    match phase {
        Phase::Idle => (
            Ready::new(
                "True",
                "BackedUp",
                "instance data is in object storage; no physical instance is held",
            ),
            false,
        ),
        Phase::BackingUp => (
            Ready::new(
                "False",
                "BackingUp",
                "the vendor is backing up the instance",
            ),
            false,
        ),
        Phase::Restoring => (
            Ready::new(
                "False",
                "Restoring",
                "the vendor is restoring the instance; a backup follows when it is done",
            ),
            false,
        ),
        Phase::Streaming if !spec.interrupt_streaming => (
            Ready::new(
                "False",
                "Streaming",
                "a user is streaming: the backup waits until the session ends (set spec.interruptStreaming: true to back up anyway)",
            ),
            false,
        ),
        Phase::DataLoaded | Phase::Streaming => {
            // The vendor never showed the last call's backup start within the grace period: ask
            // again, but with the backoff of the attempts so far, not every grace period forever.
            let retry_at = grace_end.map(|end| {
                end.checked_add(config.backoff(attempts))
                    .unwrap_or(Timestamp::MAX)
            });
            if in_flight {
                (waiting_for_vendor(), false)
            } else if unconfirmed && retry_at.is_some_and(|at| now < at) {
                (
                    Ready::new(
                        "False",
                        "BackupNotStarted",
                        format!(
                            "the vendor did not show the backup requested at {} as started within the grace period; next attempt at {}",
                            fmt_time(requested_at),
                            fmt_time(retry_at)
                        ),
                    ),
                    false,
                )
            } else {
                request()
            }
        }
        Phase::BackupFailed => {
            let retry_at = wait_until(config.backoff(attempts));
            if in_flight {
                (waiting_for_vendor(), false)
            } else if attempts > 0 && retry_at.is_some_and(|at| now < at) {
                (
                    Ready::new(
                        "False",
                        "BackupFailed",
                        format!(
                            "the vendor reports a backup exception after attempt {attempts}; next attempt at {}",
                            fmt_time(retry_at)
                        ),
                    ),
                    false,
                )
            } else {
                request()
            }
        }
        Phase::RestoreFailed => (
            Ready::new(
                "False",
                "RestoreFailed",
                "the vendor reports a restoration exception; the operator does not act: check the instance in the KooPhone console",
            ),
            false,
        ),
        Phase::Unknown | Phase::Pending | Phase::NotFound => (
            Ready::new(
                "False",
                "UnknownStatus",
                format!(
                    "vendor status code {code} is not known to this operator version; no action is taken"
                ),
            ),
            false,
        ),
    }
}

/// The Ready condition from a backup call until the vendor shows it under way. The same text before
/// and after the call, so that planning again on a planned status changes nothing.
fn requested(requested_at: Option<Timestamp>, config: &PlanConfig) -> Ready {
    let grace_end =
        requested_at.map(|t| t.checked_add(config.grace_period).unwrap_or(Timestamp::MAX));
    Ready::new(
        "False",
        "BackupRequested",
        format!(
            "backup requested at {}, waiting for the vendor to show BackingUp (asks again after {} if it does not)",
            fmt_time(requested_at),
            fmt_time(grace_end)
        ),
    )
}

/// Re-stamps a planned backup intent with the time its call leaves (`at`, just before the intent
/// is written), so that `requestedAt` and the grace period count from the call, not from the start
/// of a tick that may have spent minutes querying; and with the `x-request-id` the call will carry,
/// so that on the happy path the intent is the backup's one status write.
pub fn stamp_intent(
    status: &mut CloudPhoneStatus,
    generation: Option<i64>,
    at: Timestamp,
    request_id: &str,
    config: &PlanConfig,
) {
    let at = next_whole_second(at);
    let Some(backup) = status.backup.as_mut() else {
        return;
    };
    backup.requested_at = Some(Time(at));
    backup.request_id = Some(request_id.to_owned());
    backup.task_id = None;
    backup.job_id = None;
    let ready = requested(Some(at), config);
    Conditions {
        list: &mut status.conditions,
        generation,
        now: at,
    }
    .set(READY, ready.status, ready.reason, &ready.message);
}

/// The Ready reason of a permanent refusal by the vendor, held until `metadata.generation` changes.
pub const BACKUP_REFUSED: &str = "BackupRefused";

/// What came of the backup call for one phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupResult {
    /// The vendor accepted the call.
    Accepted {
        request_id: String,
        task_id: Option<String>,
        job_id: Option<String>,
        /// When the call left: `requestedAt` becomes this, so that the grace period counts from
        /// the call even when it left seconds after its intent was written.
        sent_at: Timestamp,
    },
    /// The vendor answered 2006: a backup is already under way.
    AlreadyBackingUp,
    /// The vendor answered 2005: the instance is being restored.
    Restoring,
    /// The vendor answered 4001: no such instance.
    NotFound,
    /// The call failed; `ambiguous` when the vendor may have acted on it (time-out, 5xx).
    Failed { failure: Failure, ambiguous: bool },
    /// The vendor refused the instance for good (no permission, not the tenant's, another
    /// region): no further call until the spec changes.
    Refused { failure: Failure },
    /// No call was sent because the status recording it could not be written first.
    NotSent,
    /// The intent was written but the call was withheld (leadership not fresh, or the intent too
    /// old): the intent stays, without the request id of a call that never left, and its grace
    /// period runs as for a lost call.
    Withheld,
}

/// Records the outcome of a backup call in the status the plan wrote ahead of it.
pub fn record_backup_result(
    status: &CloudPhoneStatus,
    generation: Option<i64>,
    result: &BackupResult,
    now: Timestamp,
    config: &PlanConfig,
) -> CloudPhoneStatus {
    let now = whole_seconds(now);
    let mut status = status.clone();
    let backup = status.backup.get_or_insert_with(BackupStatus::default);
    let requested_at = backup.requested_at.as_ref().map(|t| t.0);
    let grace_end = requested_at.and_then(|t| t.checked_add(config.grace_period).ok());
    // The intent carries the request id of the call it announces: a call that certainly started
    // no backup leaves none behind (and no BackupRequested event).
    let started_nothing = match result {
        BackupResult::Accepted { .. } => false,
        BackupResult::Failed { ambiguous, .. } => !ambiguous,
        _ => true,
    };
    if started_nothing {
        backup.request_id = None;
    }
    let ready = match result {
        BackupResult::Accepted {
            request_id,
            sent_at,
            ..
        } => {
            // NB: the vendor's task and job ids are not recorded here: on the happy path the
            // intent is the one write of a backup, and they ride on the next write (see the engine).
            backup.request_id = Some(request_id.clone());
            // The grace period counts from when the call left, to the second: a call that left a
            // second or more after its intent moves it.
            let left = whole_seconds(*sent_at);
            let requested_at = requested_at.map_or(left, |at| at.max(left));
            backup.requested_at = Some(Time(requested_at));
            requested(Some(requested_at), config)
        }
        BackupResult::AlreadyBackingUp => Ready::new(
            "False",
            "BackingUp",
            "the vendor reports a backup of the instance already under way",
        ),
        BackupResult::Restoring => {
            backup.in_flight = false;
            Ready::new(
                "False",
                "Restoring",
                "the vendor is restoring the instance; a backup follows when it is done",
            )
        }
        BackupResult::NotFound => {
            backup.in_flight = false;
            Ready::new(
                "False",
                "InstanceNotFound",
                "the vendor answered the backup call that the instance does not exist: check spec.instanceId",
            )
        }
        BackupResult::Failed { failure, ambiguous } => {
            let next = if *ambiguous {
                "the vendor may have started it: waiting for it to show BackingUp"
            } else {
                "the vendor did not act on it"
            };
            Ready::new(
                "False",
                "BackupCallFailed",
                format!(
                    "backup call failed ({}): {}; {next}; the next call is not before {}",
                    failure.reason,
                    failure.message,
                    fmt_time(grace_end)
                ),
            )
        }
        BackupResult::Refused { failure } => {
            backup.in_flight = false;
            Ready::new(
                "False",
                BACKUP_REFUSED,
                format!(
                    "the vendor refuses to back up the instance ({}): {}; no further call until the spec changes",
                    failure.reason, failure.message
                ),
            )
        }
        BackupResult::NotSent | BackupResult::Withheld => return status,
    };
    Conditions {
        list: &mut status.conditions,
        generation,
        now,
    }
    .set(READY, ready.status, ready.reason, &ready.message);
    status
}

/// Plans every phone of a tick. `observe` gives the tick's observation of an instance id.
pub fn plan<'a>(
    phones: &[PhoneView<'a>],
    dispositions: &[Disposition],
    observe: impl Fn(&str) -> Option<Observation>,
    now: Timestamp,
    config: &PlanConfig,
) -> Vec<Planned<'a>> {
    phones
        .iter()
        .zip(dispositions)
        .map(|(phone, disposition)| {
            let observation = match disposition {
                Disposition::Query => observe(&phone.spec.instance_id),
                _ => None,
            };
            plan_phone(phone, disposition, observation.as_ref(), now, config)
        })
        .collect()
}

/// A Kubernetes event to publish on a phone: only on a transition, never once per tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneEvent {
    /// `BackupRequested`, `BackedUp`, `BackupFailed`, `InstanceNotFound` or `DuplicateInstance`.
    pub reason: &'static str,
    pub message: String,
    /// A Warning event rather than a Normal one.
    pub warning: bool,
}

/// The events of a phone's change from `old` to `new` status.
pub fn events(
    spec: &CloudPhoneSpec,
    old: Option<&CloudPhoneStatus>,
    new: &CloudPhoneStatus,
) -> Vec<PhoneEvent> {
    let id = &spec.instance_id;
    let old_phase = old.map(|s| s.phase);
    let entered = |phase: Phase| new.phase == phase && old_phase != Some(phase);
    let ready_reason = |s: &CloudPhoneStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| c.reason.clone())
    };
    let mut out = Vec::new();
    let new_request = new.backup.as_ref().and_then(|b| b.request_id.as_ref());
    let old_request = old
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.request_id.as_ref());
    if let Some(request) = new_request
        && new_request != old_request
    {
        out.push(PhoneEvent {
            reason: "BackupRequested",
            message: format!("backup of instance {id} requested (x-request-id {request})"),
            warning: false,
        });
    }
    if spec.lifecycle == Lifecycle::BackedUp && entered(Phase::Idle) {
        out.push(PhoneEvent {
            reason: "BackedUp",
            message: format!("instance {id} is backed up: its data is in object storage"),
            warning: false,
        });
    }
    if entered(Phase::BackupFailed) {
        out.push(PhoneEvent {
            reason: "BackupFailed",
            message: format!("the vendor reports a backup exception for instance {id}"),
            warning: true,
        });
    }
    if entered(Phase::NotFound) {
        out.push(PhoneEvent {
            reason: "InstanceNotFound",
            message: format!("the vendor does not list instance {id}"),
            warning: true,
        });
    }
    let duplicate = Some("DuplicateInstance".to_owned());
    if ready_reason(new) == duplicate && old.and_then(ready_reason) != duplicate {
        let message = new
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map_or_else(String::new, |c| c.message.clone());
        out.push(PhoneEvent {
            reason: "DuplicateInstance",
            message,
            warning: true,
        });
    }
    out
}

/// Ready reasons that say the phone cannot reach its lifecycle without a person acting.
const BLOCKED_REASONS: [&str; 8] = [
    BACKUP_REFUSED,
    "Streaming",
    "RestoreFailed",
    "InstanceNotFound",
    "DuplicateInstance",
    "InvalidSpec",
    "UnknownStatus",
    "Suspended",
];

/// True when a phone has reached what it declares (`Ready=True`), or is reported as unable to with
/// a reason that no waiting will change; false while the operator or the vendor is still at work.
pub fn is_settled(status: &CloudPhoneStatus) -> bool {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .is_some_and(|c| c.status == "True" || BLOCKED_REASONS.contains(&c.reason.as_str()))
}

/// Kubernetes stores times to the second: planning in whole seconds keeps a status read back from
/// the API server equal to the one written, so that it is not written again.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `t` rounded up to a whole second: a `requestedAt` rounded down would end its grace period up to
/// a second early.
fn next_whole_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        return t;
    }
    Timestamp::from_second(t.as_second().saturating_add(1)).unwrap_or(t)
}

fn fmt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
}

/// The conditions of one status, set with the Kubernetes conventions.
struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl Conditions<'_> {
    /// Sets a condition; `lastTransitionTime` changes only when its status changes.
    fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let now = Time(self.now);
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                    c.status = status.to_owned();
                }
                if c.reason != reason {
                    c.reason = reason.to_owned();
                }
                if c.message != message {
                    c.message = message.to_owned();
                }
                c.observed_generation = self.generation;
            }
            None => {
                self.list.push(Condition {
                    type_: type_.to_owned(),
                    status: status.to_owned(),
                    reason: reason.to_owned(),
                    message: message.to_owned(),
                    observed_generation: self.generation,
                    last_transition_time: now,
                });
                // Ready first, then Synced, whatever order they were first set in.
                self.list.sort_by_key(|c| match c.type_.as_str() {
                    READY => 0,
                    SYNCED => 1,
                    _ => 2,
                });
            }
        }
    }
}

/// [`Conditions`] on a status borrowed until a condition actually changes: setting a condition
/// to what it already says copies nothing.
struct LazyConditions<'s, 'a> {
    status: &'s mut Cow<'a, CloudPhoneStatus>,
    generation: Option<i64>,
    now: Timestamp,
}

impl LazyConditions<'_, '_> {
    fn has(&self, type_: &str) -> bool {
        self.status.conditions.iter().any(|c| c.type_ == type_)
    }

    fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let same = self.status.conditions.iter().any(|c| {
            c.type_ == type_
                && c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == self.generation
        });
        if !same {
            Conditions {
                list: &mut self.status.to_mut().conditions,
                generation: self.generation,
                now: self.now,
            }
            .set(type_, status, reason, message);
        }
    }
}

mod handover;

pub use handover::{AWAITING_HANDOVER, Intent, Intents, handover_wait, hold};

#[cfg(test)]
mod tests;
