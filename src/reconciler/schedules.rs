//! The CloudPhoneSchedules a tick reads: where they come from ([`ScheduleSource`]: the watch cache,
//! or memory), each read once per tick ([`TickSchedules`]), and what their statuses say after it.

use crate::api::{
    CloudPhone, CloudPhoneSchedule, CloudPhoneScheduleStatus, Lifecycle, Phase, WaveAnchor,
};
use crate::plan::{ScheduleLink, SchedulePhones, ScheduleState, ScheduleTick};
use futures::future::BoxFuture;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why one schedule's status write failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleWriteError {
    /// The schedule was deleted meanwhile: nothing to write.
    #[error("CloudPhoneSchedule {0} no longer exists")]
    Gone(String),
    /// Any other failure (the API server refused or could not be reached), retried next tick.
    #[error("CloudPhoneSchedule {key}: status write failed")]
    Failed {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where the engine reads the CloudPhoneSchedules and writes their statuses.
pub trait ScheduleSource: Send + Sync + 'static {
    /// Every schedule as last seen; `None` while the watch has not synced (its CRD missing after a
    /// `helm upgrade`, say): the phones that name one are then held as they are.
    fn snapshot(&self) -> Option<Vec<Arc<CloudPhoneSchedule>>>;

    /// Writes one schedule's `.status`, and nothing else of it.
    fn write_status<'a>(
        &'a self,
        schedule: &'a CloudPhoneSchedule,
        status: &'a CloudPhoneScheduleStatus,
    ) -> BoxFuture<'a, Result<(), ScheduleWriteError>>;
}

/// Schedules kept in memory: the tests', the demo's and the benchmarks'.
#[derive(Default)]
pub struct MemorySchedules {
    objects: Mutex<BTreeMap<(String, String), Arc<CloudPhoneSchedule>>>,
    unsynced: AtomicBool,
    failing: AtomicBool,
    writes: AtomicU64,
}

impl MemorySchedules {
    pub fn new(schedules: impl IntoIterator<Item = CloudPhoneSchedule>) -> MemorySchedules {
        let store = MemorySchedules::default();
        for s in schedules {
            store.insert(s);
        }
        store
    }

    /// Adds or replaces a schedule (its generation raised when its spec changed).
    pub fn insert(&self, mut schedule: CloudPhoneSchedule) {
        let key = key_of(&schedule);
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let old_generation = objects
            .get(&key)
            .map(|old| (old.metadata.generation, old.spec == schedule.spec));
        schedule.metadata.generation = match old_generation {
            Some((generation, true)) => generation,
            Some((generation, false)) => Some(generation.unwrap_or(0) + 1),
            None => schedule.metadata.generation.or(Some(1)),
        };
        objects.insert(key, Arc::new(schedule));
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects.remove(&(namespace.to_owned(), name.to_owned()));
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<CloudPhoneSchedule>> {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Makes the store say it has not synced (a missing CRD), or synced again.
    pub fn set_synced(&self, synced: bool) {
        self.unsynced.store(!synced, Ordering::SeqCst);
    }

    /// Makes every status write fail (an API server refusing them), or succeed again.
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Status writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl ScheduleSource for MemorySchedules {
    fn snapshot(&self) -> Option<Vec<Arc<CloudPhoneSchedule>>> {
        if self.unsynced.load(Ordering::SeqCst) {
            return None;
        }
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        Some(objects.values().cloned().collect())
    }

    fn write_status<'a>(
        &'a self,
        schedule: &'a CloudPhoneSchedule,
        status: &'a CloudPhoneScheduleStatus,
    ) -> BoxFuture<'a, Result<(), ScheduleWriteError>> {
        Box::pin(async move {
            let key = key_of(schedule);
            if self.failing.load(Ordering::SeqCst) {
                return Err(ScheduleWriteError::Failed {
                    key: format!("{}/{}", key.0, key.1),
                    source: "injected status write failure".into(),
                });
            }
            let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
            let Some(current) = objects.get(&key) else {
                return Err(ScheduleWriteError::Gone(format!("{}/{}", key.0, key.1)));
            };
            let mut updated = (**current).clone();
            updated.status = Some(status.clone());
            objects.insert(key, Arc::new(updated));
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

fn key_of(schedule: &CloudPhoneSchedule) -> ScheduleKey {
    (
        schedule.metadata.namespace.clone().unwrap_or_default(),
        schedule.metadata.name.clone().unwrap_or_default(),
    )
}

/// A schedule's namespace and name.
type ScheduleKey = (String, String);

/// What the engine remembers of each schedule's wave, by uid: the generation it was computed for,
/// and its anchor.
pub(crate) type Anchors = foldhash::HashMap<String, (Option<i64>, WaveAnchor)>;

/// The tick's schedules by namespace, then name: looked up with borrowed names.
type ByNamespace = BTreeMap<String, BTreeMap<String, (Arc<CloudPhoneSchedule>, ScheduleTick)>>;

/// The schedules of one tick, each read once (its verdict and wave computed once per tick, not per
/// phone).
pub(crate) struct TickSchedules {
    /// `None`: the watch has not synced.
    by_key: Option<ByNamespace>,
}

impl TickSchedules {
    /// Reads `source`'s schedules at `now` (a restore taken to last `restore`); without a source,
    /// there are none. `anchors` is what this process remembers of each schedule's wave (by uid,
    /// for its generation): resumed first, so that a status write that fails or lags does not
    /// start the wave again every tick; updated with this tick's.
    pub(crate) fn read(
        source: Option<&dyn ScheduleSource>,
        now: Timestamp,
        restore: std::time::Duration,
        anchors: &mut Anchors,
    ) -> TickSchedules {
        let snapshot = match source {
            None => Some(Vec::new()),
            Some(source) => source.snapshot(),
        };
        let Some(schedules) = snapshot else {
            return TickSchedules { by_key: None };
        };
        let mut by_namespace = ByNamespace::new();
        let mut seen = foldhash::HashSet::default();
        for s in schedules {
            let id = s
                .metadata
                .uid
                .clone()
                .unwrap_or_else(|| format!("{}/{}", key_of(&s).0, key_of(&s).1));
            let remembered = anchors
                .get(&id)
                .filter(|(generation, _)| *generation == s.metadata.generation)
                .map(|(_, anchor)| anchor);
            let tick = ScheduleTick::read(&s, now, restore, remembered);
            match &tick.state {
                ScheduleState::Active(active) => {
                    anchors.insert(id.clone(), (s.metadata.generation, active.wave.clone()));
                }
                _ => {
                    anchors.remove(&id);
                }
            }
            seen.insert(id);
            let (namespace, name) = key_of(&s);
            by_namespace
                .entry(namespace)
                .or_default()
                .insert(name, (s, tick));
        }
        anchors.retain(|id, _| seen.contains(id));
        TickSchedules {
            by_key: Some(by_namespace),
        }
    }

    /// A phone's schedule at this tick.
    pub(crate) fn link(&self, phone: &CloudPhone) -> ScheduleLink<'_> {
        let Some(by_key) = &self.by_key else {
            return ScheduleLink::NotSynced;
        };
        let Some(name) = phone.spec.schedule_ref.as_ref().map(|r| r.name.as_str()) else {
            return ScheduleLink::Missing;
        };
        let namespace = phone.metadata.namespace.as_deref().unwrap_or_default();
        match by_key.get(namespace).and_then(|names| names.get(name)) {
            Some((_, tick)) => ScheduleLink::Found(tick),
            None => ScheduleLink::Missing,
        }
    }

    /// The schedules, with what the tick found of each one's phones: `phases` is every phone's
    /// phase after the tick, `pace` the calls per second of each phone's account (when
    /// bounded), `status_calls` the status queries each tick makes of each phone's account.
    pub(crate) fn phones<'t>(
        &'t self,
        snapshot: &[Arc<CloudPhone>],
        phases: &[Phase],
        pace: impl Fn(usize) -> Option<(crate::plan::Pace, usize)>,
        interval: std::time::Duration,
        now: Timestamp,
    ) -> Vec<(&'t CloudPhoneSchedule, &'t ScheduleTick, SchedulePhones)> {
        let Some(by_key) = &self.by_key else {
            return Vec::new();
        };
        // NB: per schedule, its phones so far and its phones per user (one call per 100 of each).
        type Found<'k> = (SchedulePhones, BTreeMap<&'k str, usize>);
        let mut found: BTreeMap<(&str, &str), Found<'_>> = BTreeMap::new();
        for (i, phone) in snapshot.iter().enumerate() {
            if phone.spec.lifecycle != Lifecycle::Scheduled {
                continue;
            }
            let Some(name) = phone.spec.schedule_ref.as_ref().map(|r| r.name.as_str()) else {
                continue;
            };
            let namespace = phone.metadata.namespace.as_deref().unwrap_or_default();
            let Some((namespace, names)) = by_key.get_key_value(namespace) else {
                continue;
            };
            let Some((name, (_, tick))) = names.get_key_value(name) else {
                continue;
            };
            let (phones, users) = found
                .entry((namespace.as_str(), name.as_str()))
                .or_default();
            phones.count(phases[i]);
            if crate::plan::is_late(
                tick,
                phone.status.as_ref(),
                phases[i],
                phone.spec.suspend,
                now,
            ) {
                phones.late += 1;
            }
            *users
                .entry(phone.spec.user_id.as_deref().unwrap_or_default())
                .or_default() += 1;
            if let Some((cps, status_calls)) = pace(i) {
                // NB: the slowest account of the schedule's phones, and the status queries its
                // ticks make while the wave runs: they share the account's pace with the wake.
                phones.pace = Some(phones.pace.map_or(cps, |p| crate::plan::Pace {
                    calls: p.calls.min(cps.calls),
                    actions: p.actions.min(cps.actions),
                }));
                let per_second = status_calls as f64 / interval.as_secs_f64().max(1.0);
                phones.status_per_second = phones.status_per_second.max(per_second);
            }
        }
        by_key
            .iter()
            .flat_map(|(namespace, names)| {
                names
                    .iter()
                    .map(move |(name, entry)| ((namespace.as_str(), name.as_str()), entry))
            })
            .map(|(key, (schedule, tick))| {
                let (mut phones, users) = found.remove(&key).unwrap_or_default();
                phones.wake_calls += users
                    .values()
                    .map(|n| n.div_ceil(crate::koophone::MAX_IDS_PER_CALL))
                    .sum::<usize>();
                (&**schedule, tick, phones)
            })
            .collect()
    }
}
