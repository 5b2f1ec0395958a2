//! A phone's effective lifecycle: the declared one, or what its `cloudphone.io/load-until`
//! annotation and its idleness make of it; why; and the next change of it the operator knows of.
//! One table decides ([`effective`]), whatever then acts on it.

use crate::api::{AnnotationValue, CloudPhoneStatus, EffectiveReason, Lifecycle, Phase};
use jiff::Timestamp;
use std::time::Duration;

/// What a phone's `cloudphone.io/load-until` annotation says at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadUntil {
    /// No annotation.
    Unset,
    /// The data is to stay loaded until then (past or future).
    Until(Timestamp),
    /// Not a time the operator takes (why): ignored.
    Invalid(&'static str),
}

impl LoadUntil {
    /// Reads the annotation's `value` at `now`: an RFC 3339 time at most `max_ahead` ahead.
    pub fn read(value: Option<AnnotationValue<'_>>, now: Timestamp, max_ahead: Duration) -> Self {
        let value = match value {
            None => return LoadUntil::Unset,
            Some(AnnotationValue::Invalid) => {
                return LoadUntil::Invalid("is longer than 64 characters");
            }
            Some(AnnotationValue::Valid(value)) => value,
        };
        let Ok(until) = value.trim().parse::<Timestamp>() else {
            return LoadUntil::Invalid("is not an RFC 3339 time (such as 2026-12-07T18:00:00Z)");
        };
        let latest = now.checked_add(max_ahead).unwrap_or(Timestamp::MAX);
        if until > latest {
            return LoadUntil::Invalid("is further ahead than --max-load-until allows");
        }
        LoadUntil::Until(until)
    }
}

/// A phone's effective lifecycle at a tick, why, and its next change known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    pub lifecycle: Lifecycle,
    pub reason: EffectiveReason,
    /// When, and to what, it changes next, if that is known.
    pub next: Option<(Timestamp, Lifecycle)>,
}

impl Effective {
    fn declared(lifecycle: Lifecycle) -> Effective {
        Effective {
            lifecycle,
            reason: EffectiveReason::Declared,
            next: None,
        }
    }
}

/// The precedence table, before the phone's idleness is weighed (see [`idle_wait`]):
///
/// | declared    | schedule (at the phone's turn)   | load-until       | effective | reason           | next                  |
/// |-------------|----------------------------------|------------------|-----------|------------------|-----------------------|
/// | `Observed`  |                                  | any              | Observed  | `Declared`       | none                  |
/// | `Loaded`    |                                  | any              | Loaded    | `Declared`       | none                  |
/// | `BackedUp`  |                                  | ahead of `now`   | Loaded    | `LoadUntil`      | BackedUp at its time  |
/// | `BackedUp`  |                                  | past, unset, bad | BackedUp  | `Declared`       | none                  |
/// | `Scheduled` | a `Loaded` exception             | any              | Loaded    | `Exception`      | the schedule's next   |
/// | `Scheduled` | a `BackedUp` exception           | ahead of `now`   | Loaded    | `LoadUntil`      | BackedUp at its time  |
/// | `Scheduled` | a `BackedUp` exception           | past, unset, bad | BackedUp  | `Exception`      | the schedule's next   |
/// | `Scheduled` | inside a window (its wake on)    | any              | Loaded    | `ScheduleWindow` | the schedule's next   |
/// | `Scheduled` | outside every window             | ahead of `now`   | Loaded    | `LoadUntil`      | BackedUp at its time  |
/// | `Scheduled` | outside every window             | past, unset, bad | BackedUp  | `OutsideWindow`  | the schedule's next   |
///
/// An Observed phone never acts, and a Loaded one is loaded anyway: the annotation changes only
/// what a phone would otherwise keep parked. A Scheduled phone's row is what its schedule says
/// once its turn in the wave has come (`scheduled::scheduled`); before it, and while its schedule
/// is missing, not valid, suspended or not synced, it is held as it was, with no call. A BackedUp
/// effective lifecycle then weighs idleness (`WaitingForIdle`) and `interruptStreaming` the same
/// way for every row. This function holds the rows without a schedule.
pub fn effective(declared: Lifecycle, load_until: LoadUntil, now: Timestamp) -> Effective {
    match (declared, load_until) {
        (Lifecycle::BackedUp, LoadUntil::Until(until)) if now < until => Effective {
            lifecycle: Lifecycle::Loaded,
            reason: EffectiveReason::LoadUntil,
            next: Some((until, Lifecycle::BackedUp)),
        },
        (declared, _) => Effective::declared(declared),
    }
}

/// Reads `spec.idleTimeout` (whole units: `90s`, `30m`, `1h30m`, `2d`; `0`); `None` when it is
/// not such a duration (the schema refuses it: only a phone stored before the rule has one).
pub fn idle_timeout(value: Option<&str>) -> Option<Duration> {
    value.map_or(Some(Duration::ZERO), whole_units)
}

/// Reads a duration of whole units (`90s`, `30m`, `1h30m`, `2d`; `0`).
pub fn whole_units(value: &str) -> Option<Duration> {
    if value == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut digits = 0u64;
    let mut seen_digit = false;
    for c in value.chars() {
        if let Some(d) = c.to_digit(10) {
            digits = digits.checked_mul(10)?.checked_add(u64::from(d))?;
            seen_digit = true;
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        if !seen_digit {
            return None;
        }
        total = total.checked_add(Duration::from_secs(digits.checked_mul(unit)?))?;
        digits = 0;
        seen_digit = false;
    }
    (!seen_digit && !value.is_empty()).then_some(total)
}

/// Where a BackedUp phone's idle wait stands at an observation of `phase` (`timeout` > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleWait {
    /// `status.idleSince` from this observation: when the data was first seen loaded and unused in
    /// the current stretch; `None` while it is in use or not loaded.
    pub since: Option<Timestamp>,
    /// The data is loaded and in use (streaming or restoring): no backup, the wait starts again.
    pub in_use: bool,
    /// The data is loaded and idle, but not yet for `timeout` since `since` and the last time the
    /// engine could not observe it: no backup before then.
    pub until: Option<Timestamp>,
    /// When the wait would end had nothing gone unobserved (`since` + `timeout`): what the status
    /// shows, so that a postponement costs no write.
    pub due: Option<Timestamp>,
}

/// The idle wait of a BackedUp phone whose status is `status` (before this observation), observed
/// `phase` at `now`; `unobserved` the last time the engine could not observe it (a missing or
/// failed observation never counts as idle: it postpones the backup, without a write). A fresh
/// prepare (a load completed after `idleSince`) starts the wait again.
pub fn idle_wait(
    status: &CloudPhoneStatus,
    phase: Phase,
    timeout: Duration,
    unobserved: Option<Timestamp>,
    now: Timestamp,
) -> IdleWait {
    match phase {
        Phase::DataLoaded => {
            let loaded = status.last_loaded_time.as_ref().map(|t| t.0);
            let since = status
                .idle_since
                .as_deref()
                .map(|t| t.0)
                .filter(|since| loaded.is_none_or(|loaded| loaded <= *since) && *since <= now)
                .unwrap_or(now);
            let from = unobserved.map_or(since, |unobserved| unobserved.max(since));
            let at = from.checked_add(timeout).unwrap_or(Timestamp::MAX);
            IdleWait {
                since: Some(since),
                in_use: false,
                until: (now < at).then_some(at),
                due: Some(since.checked_add(timeout).unwrap_or(Timestamp::MAX)),
            }
        }
        Phase::Streaming | Phase::Restoring => IdleWait {
            since: None,
            in_use: true,
            until: None,
            due: None,
        },
        _ => IdleWait {
            since: None,
            in_use: false,
            until: None,
            due: None,
        },
    }
}

/// A change of what a phone is kept at that the operator makes happen, with a bounded reason for
/// metrics: a park (a backup requested for a phone that was kept loaded: `idle`, its idle wait
/// over; `load_until_expired`; `window_end`, its schedule's window over; `exception`, an exception
/// of its schedule) or a wake (a prepare requested: `load_until`; `schedule`, its schedule's
/// window; `exception`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    Park(&'static str),
    Wake(&'static str),
}

/// The park or wake a phone's change from `old` to `new` status makes, if any.
pub fn moved(old: Option<&CloudPhoneStatus>, new: &CloudPhoneStatus) -> Option<Move> {
    let new_call = |record: Option<&crate::api::ActionStatus>,
                    old: Option<&crate::api::ActionStatus>| {
        let id = record.and_then(|r| r.request_id.as_ref());
        id.is_some() && id != old.and_then(|r| r.request_id.as_ref())
    };
    if new_call(new.backup.as_ref(), old.and_then(|s| s.backup.as_ref())) {
        return match (old.and_then(|s| s.effective_reason), new.effective_reason) {
            (Some(EffectiveReason::WaitingForIdle), _) => Some(Move::Park("idle")),
            (Some(EffectiveReason::LoadUntil), _) => Some(Move::Park("load_until_expired")),
            (_, Some(EffectiveReason::OutsideWindow)) => Some(Move::Park("window_end")),
            (_, Some(EffectiveReason::Exception)) => Some(Move::Park("exception")),
            _ => None,
        };
    }
    if new_call(
        new.prepare.as_deref(),
        old.and_then(|s| s.prepare.as_deref()),
    ) {
        return match new.effective_reason {
            Some(EffectiveReason::LoadUntil) => Some(Move::Wake("load_until")),
            Some(EffectiveReason::ScheduleWindow) => Some(Move::Wake("schedule")),
            Some(EffectiveReason::Exception) => Some(Move::Wake("exception")),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_load_until_annotation_is_a_time_at_most_the_bound_ahead() {
        let read = |v: &str| LoadUntil::read(Some(AnnotationValue::Valid(v)), at(0), DAY);
        assert_eq!(read(&at(3600).to_string()), LoadUntil::Until(at(3600)));
        assert_eq!(
            read("2026-09-21T16:13:20+02:00"),
            LoadUntil::Until("2026-09-21T14:13:20Z".parse().unwrap()),
            "an offset"
        );
        assert_eq!(
            read(&at(-60).to_string()),
            LoadUntil::Until(at(-60)),
            "past"
        );
        assert!(matches!(read("tomorrow"), LoadUntil::Invalid(_)));
        assert!(matches!(read(""), LoadUntil::Invalid(_)));
        assert!(matches!(
            read(&at(86_401).to_string()),
            LoadUntil::Invalid(why) if why.contains("--max-load-until")
        ));
        assert_eq!(LoadUntil::read(None, at(0), DAY), LoadUntil::Unset);
        assert!(matches!(
            LoadUntil::read(Some(AnnotationValue::Invalid), at(0), DAY),
            LoadUntil::Invalid(_)
        ));
    }

    #[test]
    fn one_table_decides_the_effective_lifecycle() {
        use Lifecycle::*;
        let ahead = LoadUntil::Until(at(60));
        let past = LoadUntil::Until(at(-1));
        let bad = LoadUntil::Invalid("x");
        let declared = |l| Effective::declared(l);
        for load_until in [LoadUntil::Unset, ahead, past, bad] {
            assert_eq!(effective(Observed, load_until, at(0)), declared(Observed));
            assert_eq!(effective(Loaded, load_until, at(0)), declared(Loaded));
        }
        assert_eq!(
            effective(BackedUp, ahead, at(0)),
            Effective {
                lifecycle: Loaded,
                reason: EffectiveReason::LoadUntil,
                next: Some((at(60), BackedUp)),
            }
        );
        assert_eq!(
            effective(BackedUp, ahead, at(60)),
            declared(BackedUp),
            "expired at its time"
        );
        for load_until in [LoadUntil::Unset, past, bad] {
            assert_eq!(effective(BackedUp, load_until, at(0)), declared(BackedUp));
        }
    }

    #[test]
    fn an_idle_timeout_is_whole_units() {
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(idle_timeout(None), secs(0));
        assert_eq!(idle_timeout(Some("0")), secs(0));
        assert_eq!(idle_timeout(Some("90s")), secs(90));
        assert_eq!(idle_timeout(Some("30m")), secs(1800));
        assert_eq!(idle_timeout(Some("1h30m")), secs(5400));
        assert_eq!(idle_timeout(Some("2d")), secs(172_800));
        for bad in ["", "m", "30", "1.5h", "30 m", "-1h", "1w"] {
            assert_eq!(idle_timeout(Some(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn the_idle_wait_runs_while_the_data_is_loaded_and_unused_continuously() {
        let timeout = Duration::from_secs(600);
        let fresh = CloudPhoneStatus::default();
        // First seen loaded and unused: the wait starts now.
        let w = idle_wait(&fresh, Phase::DataLoaded, timeout, None, at(0));
        assert_eq!((w.since, w.until), (Some(at(0)), Some(at(600))));
        let waiting = CloudPhoneStatus {
            idle_since: Some(Box::new(Time(at(0)))),
            ..CloudPhoneStatus::default()
        };
        let w = idle_wait(&waiting, Phase::DataLoaded, timeout, None, at(599));
        assert_eq!((w.since, w.until), (Some(at(0)), Some(at(600))));
        let w = idle_wait(&waiting, Phase::DataLoaded, timeout, None, at(600));
        assert_eq!((w.since, w.until), (Some(at(0)), None), "idle long enough");
        // A failed observation at 300 postpones it, without moving idleSince.
        let w = idle_wait(&waiting, Phase::DataLoaded, timeout, Some(at(300)), at(600));
        assert_eq!((w.since, w.until), (Some(at(0)), Some(at(900))));
        // In use: the wait is gone.
        for phase in [Phase::Streaming, Phase::Restoring] {
            let w = idle_wait(&waiting, phase, timeout, None, at(700));
            assert!(
                w.in_use && w.since.is_none() && w.until.is_none(),
                "{phase:?}"
            );
        }
        // A prepare completed after idleSince starts it again.
        let reloaded = CloudPhoneStatus {
            last_loaded_time: Some(Time(at(500))),
            ..waiting.clone()
        };
        let w = idle_wait(&reloaded, Phase::DataLoaded, timeout, None, at(700));
        assert_eq!((w.since, w.until), (Some(at(700)), Some(at(1300))));
        // Not loaded: no wait.
        let w = idle_wait(&waiting, Phase::Idle, timeout, None, at(700));
        assert_eq!(
            w,
            IdleWait {
                since: None,
                in_use: false,
                until: None,
                due: None,
            }
        );
    }
}
