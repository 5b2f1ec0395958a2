//! The simulated instances and the vendor's state machine, advanced lazily by the clock.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The vendor's status codes (koophone-api.md, newest table).
pub mod code {
    pub const IDLE: i64 = 0;
    pub const RESTORING: i64 = 1;
    pub const DATA_LOADED: i64 = 2;
    pub const STREAMING: i64 = 3;
    pub const BACKING_UP: i64 = 4;
    pub const BACKUP_FAILED: i64 = 5;
    pub const RESTORE_FAILED: i64 = 6;
    pub const DATA_LOADED_ALT: i64 = 7;
}

/// Parses a state as seeded from flags or files: a code, or its name.
pub fn parse_state(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    Ok(match text.to_ascii_lowercase().as_str() {
        "idle" => code::IDLE,
        "restoring" => code::RESTORING,
        "dataloaded" | "data_loaded" => code::DATA_LOADED,
        "streaming" => code::STREAMING,
        "backingup" | "backing_up" => code::BACKING_UP,
        "backupfailed" | "backup_failed" => code::BACKUP_FAILED,
        "restorefailed" | "restore_failed" => code::RESTORE_FAILED,
        _ => {
            return Err(format!(
                "state {text:?} is neither a status code nor one of Idle, Restoring, DataLoaded, \
                 Streaming, BackingUp, BackupFailed, RestoreFailed"
            ));
        }
    })
}

/// How the simulated vendor's asynchronous work behaves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Timings {
    /// How long an instance stays BackingUp (4).
    #[serde(with = "humantime_serde")]
    pub backup_duration: Duration,
    /// How long an instance stays Restoring (1).
    #[serde(with = "humantime_serde")]
    pub restore_duration: Duration,
    /// Probability in [0, 1] that a backup ends in BackupFailed (5) instead of Idle (0).
    pub backup_failure_rate: f64,
    /// How long an accepted backup waits in the vendor's queue, the instance still showing its
    /// old status, before it shows BackingUp (4). A backup call naming a queued instance is
    /// answered 2006, as during the backup itself.
    #[serde(with = "humantime_serde")]
    pub backup_queue_delay: Duration,
    /// Probability in [0, 1] that a restore ends in RestoreFailed (6) instead of DataLoaded (2).
    pub restore_failure_rate: f64,
    /// How long an accepted prepare waits in the vendor's queue, the instance still showing
    /// Idle (0), before it shows Restoring (1).
    #[serde(with = "humantime_serde")]
    pub prepare_queue_delay: Duration,
}

impl Timings {
    /// Refuses failure rates outside [0, 1], naming the field.
    pub fn validate(&self) -> Result<(), crate::sim::faults::BadRate> {
        for (field, rate) in [
            ("backup_failure_rate", self.backup_failure_rate),
            ("restore_failure_rate", self.restore_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(crate::sim::faults::BadRate { field, rate });
            }
        }
        Ok(())
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            backup_duration: Duration::from_secs(3),
            restore_duration: Duration::from_secs(3),
            backup_failure_rate: 0.0,
            backup_queue_delay: Duration::ZERO,
            restore_failure_rate: 0.0,
            prepare_queue_delay: Duration::ZERO,
        }
    }
}

/// What the simulator knows of one instance.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Instance {
    /// The current status code.
    pub status: i64,
    /// Backup calls that named this instance, accepted or not.
    pub backup_requests: u64,
    /// Backups that actually started (the instance moved to BackingUp, or into the queue).
    pub backups_started: u64,
    /// Backup calls that named this instance while a backup of it was queued or running: each is
    /// a second backup request, which the operator promises never to send.
    pub requests_while_busy: u64,
    /// Prepare calls that named this instance, accepted or not.
    pub prepare_requests: u64,
    /// Prepares that actually started (the instance entered the vendor's queue, or Restoring).
    pub prepares_started: u64,
    /// Prepare calls that named this instance while a prepare of it was queued or restoring: each
    /// is a second prepare, which the operator promises never to send.
    pub prepare_requests_while_busy: u64,
    /// When an accepted backup entered the vendor's queue, while it waits there.
    #[serde(skip)]
    queued_at: Option<Instant>,
    /// The place in the vendor's prepare queue of an accepted prepare and when it entered it,
    /// while it waits there (the instance showing Idle).
    #[serde(skip)]
    prepare_queued: Option<(u64, Instant)>,
    /// The user of the last prepare that started (queued or restoring).
    #[serde(skip)]
    prepared_for: Option<String>,
    /// The end of a user's streaming session (see [`Fleet::start_session`]): Streaming until then,
    /// then DataLoaded again.
    #[serde(skip)]
    session_until: Option<Instant>,
    #[serde(skip)]
    since: Instant,
}

/// Why the vendor refuses a backup of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupRefusal {
    /// 4001: unknown instance.
    NotFound,
    /// 2006: already backing up.
    BackingUp,
    /// 2005: being restored.
    Restoring,
    /// 1000: not in a state a backup can start from (Idle, RestoreFailed, unknown codes).
    WrongState,
}

/// What a prepare call says of one instance: the vendor's per-instance `status` of its answer.
pub mod prepared {
    /// Its data is on a physical instance already: nothing to do.
    pub const READY: i64 = 0;
    /// Waiting to be restored: the prepare was accepted (or an earlier one is under way).
    pub const WAITING_FOR_RESTORE: i64 = 1;
    /// Being backed up: the prepare is not accepted; ask again once the backup has ended.
    pub const BACKING_UP: i64 = 3;
}

/// Why the vendor refuses a whole prepare call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepareRefusal {
    /// 4001: unknown instance.
    NotFound,
    /// 1000: a status code the simulator does not know what to do with.
    WrongState,
}

/// What prepare-progress says of one instance (`data.status`, `waitingCount`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// 0 normal, 1 queued, 2 restoring or offline, 3 backing up, -1 failed.
    pub status: i64,
    /// Prepares queued ahead of this one (0 when not queued).
    pub waiting: u64,
}

/// All simulated instances, advanced by time on every access.
#[derive(Debug)]
pub struct Fleet {
    instances: HashMap<String, Instance>,
    timings: Timings,
    rng: StdRng,
    /// The next place in the prepare queue.
    next_prepare: u64,
}

impl Fleet {
    pub fn new(timings: Timings, seed: u64) -> Fleet {
        Fleet {
            instances: HashMap::new(),
            timings,
            rng: StdRng::seed_from_u64(seed),
            next_prepare: 0,
        }
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    pub fn set_timings(&mut self, timings: Timings) {
        self.timings = timings;
    }

    /// Creates or overwrites an instance in the given state, keeping its counters.
    pub fn set(&mut self, id: &str, status: i64, now: Instant) {
        let entry = self.instances.entry(id.to_owned()).or_insert(Instance {
            status,
            backup_requests: 0,
            backups_started: 0,
            requests_while_busy: 0,
            prepare_requests: 0,
            prepares_started: 0,
            prepare_requests_while_busy: 0,
            queued_at: None,
            prepare_queued: None,
            prepared_for: None,
            session_until: None,
            since: now,
        });
        entry.status = status;
        entry.queued_at = None;
        entry.prepare_queued = None;
        entry.session_until = None;
        entry.since = now;
    }

    /// A user streams from instance `id` for `duration` from `now`: Streaming until then, then
    /// DataLoaded again. Only an instance whose data is loaded (or that is streaming already) can be
    /// streamed from: false for any other, and nothing changes.
    pub fn start_session(&mut self, id: &str, duration: std::time::Duration, now: Instant) -> bool {
        if self.get(id, now).is_none() {
            return false;
        }
        let Some(instance) = self.instances.get_mut(id) else {
            return false;
        };
        if !matches!(
            instance.status,
            code::DATA_LOADED | code::DATA_LOADED_ALT | code::STREAMING
        ) || instance.queued_at.is_some()
        {
            return false;
        }
        instance.status = code::STREAMING;
        instance.since = now;
        // NB: a length past what an Instant holds streams until a backup ends it.
        instance.session_until = now.checked_add(duration);
        true
    }

    /// The instance after advancing it to `now`, or `None` when unknown.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&Instance> {
        let timings = self.timings.clone();
        let instance = self.instances.get_mut(id)?;
        advance(instance, &timings, &mut self.rng, now);
        Some(instance)
    }

    /// Every instance, advanced to `now`.
    pub fn all(&mut self, now: Instant) -> Vec<(String, Instance)> {
        let ids: Vec<String> = self.instances.keys().cloned().collect();
        let mut out: Vec<(String, Instance)> = ids
            .into_iter()
            .filter_map(|id| self.get(&id, now).cloned().map(|i| (id, i)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The vendor's backup call: all or nothing. Counts a request for every known named instance;
    /// refuses the whole call, naming the first offender, when any instance cannot start a backup.
    pub fn backup(&mut self, ids: &[String], now: Instant) -> Result<(), (String, BackupRefusal)> {
        let mut refusal = None;
        for id in ids {
            let Some(instance) = self.get(id, now).cloned() else {
                refusal.get_or_insert((id.clone(), BackupRefusal::NotFound));
                continue;
            };
            let why = match instance.status {
                _ if instance.queued_at.is_some() => Some(BackupRefusal::BackingUp),
                _ if instance.prepare_queued.is_some() => Some(BackupRefusal::Restoring),
                code::DATA_LOADED
                | code::DATA_LOADED_ALT
                | code::STREAMING
                | code::BACKUP_FAILED => None,
                code::BACKING_UP => Some(BackupRefusal::BackingUp),
                code::RESTORING => Some(BackupRefusal::Restoring),
                _ => Some(BackupRefusal::WrongState),
            };
            if let Some(why) = why {
                refusal.get_or_insert((id.clone(), why));
            }
        }
        for id in ids {
            if let Some(instance) = self.instances.get_mut(id) {
                instance.backup_requests += 1;
                if instance.queued_at.is_some() || instance.status == code::BACKING_UP {
                    instance.requests_while_busy += 1;
                }
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        for id in ids {
            if let Some(instance) = self.instances.get_mut(id)
                && instance.status != code::BACKING_UP
            {
                // NB: a backup ends a user's session (the operator asked for it while streaming).
                instance.session_until = None;
                if self.timings.backup_queue_delay.is_zero() {
                    instance.status = code::BACKING_UP;
                    instance.since = now;
                } else {
                    instance.queued_at = Some(now);
                }
                instance.backups_started += 1;
            }
        }
        Ok(())
    }

    /// The vendor's prepare call: answers each instance's status (`prepared::*`), in the order
    /// named, and queues a restore for those whose data is in object storage (Idle, or a failed
    /// restore), with the number of restores it started. Counts a request for every known named
    /// instance; refuses the whole call, naming the first offender, when an instance is unknown.
    pub fn prepare(
        &mut self,
        user: &str,
        ids: &[String],
        now: Instant,
    ) -> Result<(Vec<i64>, u64), (String, PrepareRefusal)> {
        let mut refusal = None;
        for id in ids {
            match self.get(id, now).map(|i| i.status) {
                None => {
                    refusal.get_or_insert((id.clone(), PrepareRefusal::NotFound));
                }
                Some(
                    code::IDLE
                    | code::RESTORING
                    | code::DATA_LOADED
                    | code::DATA_LOADED_ALT
                    | code::STREAMING
                    | code::BACKING_UP
                    | code::BACKUP_FAILED
                    | code::RESTORE_FAILED,
                ) => {}
                Some(_) => {
                    refusal.get_or_insert((id.clone(), PrepareRefusal::WrongState));
                }
            }
        }
        for id in ids {
            if let Some(instance) = self.instances.get_mut(id) {
                instance.prepare_requests += 1;
                if instance.prepare_queued.is_some() || instance.status == code::RESTORING {
                    instance.prepare_requests_while_busy += 1;
                }
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let mut answers = Vec::with_capacity(ids.len());
        let mut started = 0;
        for id in ids {
            let Some(instance) = self.instances.get_mut(id) else {
                continue;
            };
            let answer = if instance.queued_at.is_some() || instance.status == code::BACKING_UP {
                // NB: a backup accepted but still queued counts as backing up: the vendor knows
                // its own queue, even if the status query still shows the old status.
                prepared::BACKING_UP
            } else if instance.prepare_queued.is_some() || instance.status == code::RESTORING {
                prepared::WAITING_FOR_RESTORE
            } else if matches!(instance.status, code::IDLE | code::RESTORE_FAILED) {
                if self.timings.prepare_queue_delay.is_zero() {
                    instance.status = code::RESTORING;
                    instance.since = now;
                } else {
                    instance.prepare_queued = Some((self.next_prepare, now));
                    self.next_prepare += 1;
                }
                instance.prepares_started += 1;
                instance.prepared_for = Some(user.to_owned());
                started += 1;
                prepared::WAITING_FOR_RESTORE
            } else {
                // DataLoaded (2, 7), Streaming (3), BackupFailed (5): the data never left the
                // physical instance.
                prepared::READY
            };
            answers.push(answer);
        }
        Ok((answers, started))
    }

    /// The vendor's prepare-progress of one instance for `user`, or `None` when unknown. A prepare
    /// queued for another user is not this user's: the instance shows offline (2) to it.
    pub fn progress(&mut self, id: &str, user: &str, now: Instant) -> Option<Progress> {
        self.get(id, now)?;
        // Advance every instance first, so that prepares that left the queue are not counted.
        for other in self.instances.values_mut() {
            advance(other, &self.timings, &mut self.rng, now);
        }
        let instance = self.instances.get(id)?;
        let (status, waiting) = match instance.prepare_queued {
            Some(_) if instance.prepared_for.as_deref() != Some(user) => (2, 0),
            Some((place, _)) => {
                let ahead = self
                    .instances
                    .values()
                    .filter(|other| other.prepare_queued.is_some_and(|(p, _)| p < place))
                    .count();
                (1, ahead as u64)
            }
            None if instance.queued_at.is_some() => (3, 0),
            None => match instance.status {
                code::DATA_LOADED
                | code::DATA_LOADED_ALT
                | code::STREAMING
                | code::BACKUP_FAILED => (0, 0),
                code::BACKING_UP => (3, 0),
                code::RESTORE_FAILED => (-1, 0),
                // Restoring, or Idle (its data is in object storage: the phone is offline), or a
                // code the simulator does not know.
                _ => (2, 0),
            },
        };
        Some(Progress { status, waiting })
    }
}

/// Moves an instance through the timed transitions that are due at `now`.
fn advance(instance: &mut Instance, timings: &Timings, rng: &mut StdRng, now: Instant) {
    if let Some(end) = instance.session_until.filter(|end| now >= *end) {
        instance.session_until = None;
        if instance.status == code::STREAMING {
            instance.status = code::DATA_LOADED;
            instance.since = end;
        }
    }
    if let Some(queued_at) = instance.queued_at {
        let started = queued_at + timings.backup_queue_delay;
        if now < started {
            return;
        }
        instance.queued_at = None;
        instance.status = code::BACKING_UP;
        instance.since = started;
    }
    if let Some((_, queued_at)) = instance.prepare_queued {
        let started = queued_at + timings.prepare_queue_delay;
        if now < started {
            return;
        }
        instance.prepare_queued = None;
        instance.status = code::RESTORING;
        instance.since = started;
    }
    let elapsed = now.saturating_duration_since(instance.since);
    match instance.status {
        code::BACKING_UP if elapsed >= timings.backup_duration => {
            let failed = rng.random_bool(timings.backup_failure_rate.clamp(0.0, 1.0));
            instance.status = if failed {
                code::BACKUP_FAILED
            } else {
                code::IDLE
            };
            instance.since += timings.backup_duration;
        }
        code::RESTORING if elapsed >= timings.restore_duration => {
            // NB: no draw at rate 0, so that restores do not shift the seeded draws of backups.
            let failed = timings.restore_failure_rate > 0.0
                && rng.random_bool(timings.restore_failure_rate.clamp(0.0, 1.0));
            instance.status = if failed {
                code::RESTORE_FAILED
            } else {
                code::DATA_LOADED
            };
            instance.since += timings.restore_duration;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(failure_rate: f64) -> Fleet {
        Fleet::new(
            Timings {
                backup_duration: Duration::from_secs(10),
                restore_duration: Duration::from_secs(5),
                backup_failure_rate: failure_rate,
                ..Timings::default()
            },
            7,
        )
    }

    #[test]
    fn backup_moves_data_loaded_through_backing_up_to_idle() {
        let t0 = Instant::now();
        let mut f = fleet(0.0);
        f.set("a", code::DATA_LOADED, t0);
        f.backup(&["a".into()], t0).unwrap();
        assert_eq!(
            f.get("a", t0 + Duration::from_secs(9)).unwrap().status,
            code::BACKING_UP
        );
        let a = f.get("a", t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(
            (a.status, a.backups_started, a.backup_requests),
            (code::IDLE, 1, 1)
        );
    }

    #[test]
    fn a_queued_backup_shows_its_old_status_then_backs_up_and_a_second_call_is_counted() {
        let t0 = Instant::now();
        let mut f = Fleet::new(
            Timings {
                backup_duration: Duration::from_secs(10),
                backup_queue_delay: Duration::from_secs(4),
                ..Timings::default()
            },
            7,
        );
        f.set("a", code::DATA_LOADED, t0);
        f.backup(&["a".into()], t0).unwrap();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(f.get("a", at(3)).unwrap().status, code::DATA_LOADED);
        assert_eq!(
            f.backup(&["a".into()], at(3)),
            Err(("a".into(), BackupRefusal::BackingUp))
        );
        assert_eq!(f.get("a", at(4)).unwrap().status, code::BACKING_UP);
        let a = f.get("a", at(14)).unwrap();
        assert_eq!(
            (
                a.status,
                a.backups_started,
                a.backup_requests,
                a.requests_while_busy
            ),
            (code::IDLE, 1, 2, 1)
        );
    }

    #[test]
    fn a_certain_failure_rate_ends_in_backup_failed() {
        let t0 = Instant::now();
        let mut f = fleet(1.0);
        f.set("a", code::DATA_LOADED_ALT, t0);
        f.backup(&["a".into()], t0).unwrap();
        assert_eq!(
            f.get("a", t0 + Duration::from_secs(11)).unwrap().status,
            code::BACKUP_FAILED
        );
    }

    #[test]
    fn restoring_ends_in_data_loaded() {
        let t0 = Instant::now();
        let mut f = fleet(0.0);
        f.set("a", code::RESTORING, t0);
        assert_eq!(
            f.get("a", t0 + Duration::from_secs(5)).unwrap().status,
            code::DATA_LOADED
        );
    }

    #[test]
    fn backup_is_refused_whole_with_the_first_offender() {
        let t0 = Instant::now();
        let mut f = fleet(0.0);
        f.set("ok", code::DATA_LOADED, t0);
        f.set("busy", code::BACKING_UP, t0);
        f.set("restoring", code::RESTORING, t0);
        let ids = ["ok".to_string(), "busy".into(), "restoring".into()];
        assert_eq!(
            f.backup(&ids, t0),
            Err(("busy".into(), BackupRefusal::BackingUp))
        );
        assert_eq!(f.get("ok", t0).unwrap().status, code::DATA_LOADED);
        assert_eq!(f.get("ok", t0).unwrap().backup_requests, 1);
        assert_eq!(
            f.backup(&["restoring".into()], t0),
            Err(("restoring".into(), BackupRefusal::Restoring))
        );
        assert_eq!(
            f.backup(&["ghost".into()], t0),
            Err(("ghost".into(), BackupRefusal::NotFound))
        );
    }

    fn prepare_fleet(queue: u64, restore: u64, failure_rate: f64) -> Fleet {
        Fleet::new(
            Timings {
                prepare_queue_delay: Duration::from_secs(queue),
                restore_duration: Duration::from_secs(restore),
                restore_failure_rate: failure_rate,
                ..Timings::default()
            },
            7,
        )
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn queued_prepares_show_idle_wait_in_order_then_restore_and_load() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut f = prepare_fleet(4, 5, 0.0);
        for id in ["a", "b", "c"] {
            f.set(id, code::IDLE, t0);
        }
        assert_eq!(
            f.prepare("u1", &ids(&["a", "b"]), t0),
            Ok((vec![prepared::WAITING_FOR_RESTORE; 2], 2))
        );
        assert_eq!(f.prepare("u1", &ids(&["c"]), at(1)), Ok((vec![1], 1)));
        assert_eq!(f.get("c", at(3)).unwrap().status, code::IDLE);
        let waiting = |f: &mut Fleet, id, s| f.progress(id, "u1", at(s)).unwrap();
        assert_eq!(
            waiting(&mut f, "a", 3),
            Progress {
                status: 1,
                waiting: 0
            }
        );
        assert_eq!(
            waiting(&mut f, "b", 3),
            Progress {
                status: 1,
                waiting: 1
            }
        );
        assert_eq!(
            waiting(&mut f, "c", 3),
            Progress {
                status: 1,
                waiting: 2
            }
        );
        // a and b left the queue at 4 s: c is first.
        assert_eq!(
            waiting(&mut f, "c", 4),
            Progress {
                status: 1,
                waiting: 0
            }
        );
        assert_eq!(
            waiting(&mut f, "a", 4),
            Progress {
                status: 2,
                waiting: 0
            }
        );
        assert_eq!(f.get("a", at(8)).unwrap().status, code::RESTORING);
        assert_eq!(f.get("a", at(9)).unwrap().status, code::DATA_LOADED);
        assert_eq!(
            waiting(&mut f, "c", 9),
            Progress {
                status: 2,
                waiting: 0
            }
        );
        assert_eq!(
            waiting(&mut f, "c", 10),
            Progress {
                status: 0,
                waiting: 0
            }
        );
        assert_eq!(f.get("c", at(10)).unwrap().prepares_started, 1);
    }

    #[test]
    fn a_second_prepare_while_queued_or_restoring_is_busy_and_starts_nothing() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut f = prepare_fleet(4, 5, 0.0);
        f.set("a", code::IDLE, t0);
        f.prepare("u1", &ids(&["a"]), t0).unwrap();
        assert_eq!(f.prepare("u1", &ids(&["a"]), at(2)), Ok((vec![1], 0)));
        assert_eq!(f.prepare("u1", &ids(&["a"]), at(6)), Ok((vec![1], 0)));
        assert_eq!(f.get("a", at(8)).unwrap().status, code::RESTORING);
        let a = f.get("a", at(9)).unwrap().clone();
        assert_eq!(
            (
                a.status,
                a.prepare_requests,
                a.prepares_started,
                a.prepare_requests_while_busy
            ),
            (code::DATA_LOADED, 3, 1, 2),
            "the second and third calls did not restart the queue or the restore"
        );
        assert_eq!(a.backup_requests, 0);
    }

    #[test]
    fn a_backup_of_a_queued_prepare_is_refused_as_being_restored() {
        let t0 = Instant::now();
        let mut f = prepare_fleet(4, 5, 0.0);
        f.set("a", code::IDLE, t0);
        f.prepare("u1", &ids(&["a"]), t0).unwrap();
        assert_eq!(
            f.backup(&ids(&["a"]), t0),
            Err(("a".into(), BackupRefusal::Restoring))
        );
        assert_eq!(f.get("a", t0).unwrap().requests_while_busy, 0);
    }

    #[test]
    fn prepare_answers_by_state_and_is_refused_whole_for_unknown_or_strange_instances() {
        let t0 = Instant::now();
        let mut f = Fleet::new(
            Timings {
                backup_queue_delay: Duration::from_secs(4),
                ..Timings::default()
            },
            7,
        );
        for (id, status) in [
            ("loaded", code::DATA_LOADED),
            ("loaded7", code::DATA_LOADED_ALT),
            ("streaming", code::STREAMING),
            ("backing", code::BACKING_UP),
            ("backup-queued", code::DATA_LOADED),
            ("backup-failed", code::BACKUP_FAILED),
            ("restore-failed", code::RESTORE_FAILED),
            ("strange", 42),
        ] {
            f.set(id, status, t0);
        }
        f.backup(&ids(&["backup-queued"]), t0).unwrap();
        let named = ids(&[
            "loaded",
            "loaded7",
            "streaming",
            "backing",
            "backup-queued",
            "backup-failed",
            "restore-failed",
        ]);
        assert_eq!(
            f.prepare("u1", &named, t0),
            Ok((vec![0, 0, 0, 3, 3, 0, 1], 1)),
            "only the failed restore is retried"
        );
        assert_eq!(f.get("restore-failed", t0).unwrap().status, code::RESTORING);
        assert_eq!(f.progress("backup-queued", "u1", t0).unwrap().status, 3);
        assert_eq!(
            f.prepare("u1", &ids(&["loaded", "ghost", "strange"]), t0),
            Err(("ghost".into(), PrepareRefusal::NotFound))
        );
        assert_eq!(
            f.prepare("u1", &ids(&["strange"]), t0),
            Err(("strange".into(), PrepareRefusal::WrongState))
        );
        assert_eq!(f.get("loaded", t0).unwrap().prepare_requests, 2);
        assert_eq!(f.progress("ghost", "u1", t0), None);
    }

    #[test]
    fn a_session_of_any_length_the_admin_api_accepts_never_panics_under_the_lock() {
        // Review of issue 22: `POST /sim/sessions` takes any u64 of seconds; the fleet runs under
        // the simulator's lock, which no code may panic while holding.
        let t0 = Instant::now();
        let mut f = fleet(0.0);
        f.set("a", code::DATA_LOADED, t0);
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f.start_session("a", Duration::from_secs(u64::MAX), t0)
        }));
        assert!(started.is_ok(), "start_session panicked");
    }

    #[test]
    fn a_session_streams_for_its_time_then_the_data_is_loaded_again() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut f = fleet(0.0);
        f.set("a", code::DATA_LOADED, t0);
        f.set("b", code::IDLE, t0);
        assert!(f.start_session("a", Duration::from_secs(5), t0));
        assert_eq!(f.get("a", at(4)).unwrap().status, code::STREAMING);
        assert_eq!(f.get("a", at(5)).unwrap().status, code::DATA_LOADED);
        assert!(
            !f.start_session("b", Duration::from_secs(5), t0),
            "parked: nothing to stream"
        );
        assert_eq!(f.get("b", at(1)).unwrap().status, code::IDLE);
        assert!(!f.start_session("ghost", Duration::from_secs(5), t0));
    }

    #[test]
    fn progress_says_offline_for_an_idle_instance_and_failed_for_a_failed_restore() {
        let t0 = Instant::now();
        let mut f = prepare_fleet(0, 5, 1.0);
        f.set("a", code::IDLE, t0);
        assert_eq!(
            f.progress("a", "u1", t0).unwrap().status,
            2,
            "offline, not normal"
        );
        f.prepare("u1", &ids(&["a"]), t0).unwrap();
        assert_eq!(f.get("a", t0).unwrap().status, code::RESTORING, "no queue");
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(f.get("a", t1).unwrap().status, code::RESTORE_FAILED);
        assert_eq!(f.progress("a", "u1", t1).unwrap().status, -1);
    }

    #[test]
    fn timings_refuse_a_restore_failure_rate_that_is_not_a_probability() {
        let timings = Timings {
            restore_failure_rate: 1.5,
            ..Timings::default()
        };
        assert_eq!(
            timings.validate().unwrap_err().field,
            "restore_failure_rate"
        );
        assert!(Timings::default().validate().is_ok());
    }

    #[test]
    fn states_parse_by_name_or_code() {
        assert_eq!(parse_state("DataLoaded"), Ok(2));
        assert_eq!(parse_state("7"), Ok(7));
        assert_eq!(parse_state("backing_up"), Ok(4));
        assert!(parse_state("Sleeping").unwrap_err().contains("Sleeping"));
    }
}
