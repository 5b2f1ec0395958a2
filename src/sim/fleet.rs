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
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            backup_duration: Duration::from_secs(3),
            restore_duration: Duration::from_secs(3),
            backup_failure_rate: 0.0,
            backup_queue_delay: Duration::ZERO,
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
    /// When an accepted backup entered the vendor's queue, while it waits there.
    #[serde(skip)]
    queued_at: Option<Instant>,
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

/// All simulated instances, advanced by time on every access.
#[derive(Debug)]
pub struct Fleet {
    instances: HashMap<String, Instance>,
    timings: Timings,
    rng: StdRng,
}

impl Fleet {
    pub fn new(timings: Timings, seed: u64) -> Fleet {
        Fleet {
            instances: HashMap::new(),
            timings,
            rng: StdRng::seed_from_u64(seed),
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
            queued_at: None,
            since: now,
        });
        entry.status = status;
        entry.queued_at = None;
        entry.since = now;
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
}

/// Moves an instance through the timed transitions that are due at `now`.
fn advance(instance: &mut Instance, timings: &Timings, rng: &mut StdRng, now: Instant) {
    if let Some(queued_at) = instance.queued_at {
        let started = queued_at + timings.backup_queue_delay;
        if now < started {
            return;
        }
        instance.queued_at = None;
        instance.status = code::BACKING_UP;
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
            instance.status = code::DATA_LOADED;
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

    #[test]
    fn states_parse_by_name_or_code() {
        assert_eq!(parse_state("DataLoaded"), Ok(2));
        assert_eq!(parse_state("7"), Ok(7));
        assert_eq!(parse_state("backing_up"), Ok(4));
        assert!(parse_state("Sleeping").unwrap_err().contains("Sleeping"));
    }
}
