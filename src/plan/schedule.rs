//! A schedule's weekly windows and dated exceptions in its time zone: whether a phone on it is kept
//! loaded at an instant, why, and when that changes next. Pure: the zone's rules come with the
//! schedule (from the database compiled into the binary, so that the result does not depend on the
//! image), the instant from the caller. [`read`] makes one of a `CloudPhoneSchedule`'s spec.

use crate::api::Lifecycle;
use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use std::time::Duration;

/// The longest `prewarmLead`: a wake starts at most a day before its window.
pub const MAX_PREWARM_LEAD: Duration = Duration::from_secs(86_400);

/// A weekly window: on `days` (index 0 is Monday), from `start` to `end` local time; an `end`
/// before `start` ends the next day (the window belongs to the day it starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub days: [bool; 7],
    pub start: Time,
    pub end: Time,
}

/// Dates or times, local, in which the phones of a schedule are kept at `lifecycle` whatever the
/// windows say; `until` exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub name: String,
    pub from: DateTime,
    pub until: DateTime,
    pub lifecycle: Lifecycle,
}

/// A schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub tz: TimeZone,
    pub windows: Vec<Window>,
    pub exceptions: Vec<Exception>,
    /// A window's `start` means "ready by": its phones are woken this long before.
    pub prewarm_lead: Duration,
}

/// Why a schedule keeps its phones at what it does at an instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Inside a window (its wake included): loaded, ready by `start`, until `end`.
    Window { start: Timestamp, end: Timestamp },
    /// Outside every window.
    Outside,
    /// Inside the exception at this index.
    Exception(usize),
}

/// What a schedule keeps its phones at an instant, and its next change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub lifecycle: Lifecycle,
    pub why: Why,
    /// When, and to what, it changes next (within the next week), if it does.
    pub next: Option<(Timestamp, Lifecycle)>,
    /// When the lifecycle it keeps began (within the last two days), if it changed then: the edge a
    /// wave carries out.
    pub since: Option<Timestamp>,
}

/// The instant a local date-time names in `tz`. A time skipped by a gap (a spring-forward hour) is
/// the first valid instant after it, the transition itself; a time that occurs twice (a fold) is the
/// first of the two, so that an edge there fires once.
pub fn resolve(tz: &TimeZone, dt: DateTime) -> Timestamp {
    let at = |offset: jiff::tz::Offset| offset.to_timestamp(dt).unwrap_or(Timestamp::MAX);
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => at(offset),
        AmbiguousOffset::Fold { before, .. } => at(before),
        AmbiguousOffset::Gap { after, .. } => {
            // NB: read with the offset after the gap, the time is an instant before the
            // transition: the transition is the next one from there.
            let before_transition = at(after);
            tz.following(before_transition)
                .next()
                .map_or(before_transition, |t| t.timestamp())
        }
    }
}

impl Schedule {
    /// What the schedule keeps its phones at `now`, and when that changes next.
    pub fn verdict(&self, now: Timestamp) -> Verdict {
        let intervals = self.loaded_intervals(now);
        let exceptions = self.exception_intervals();
        let (lifecycle, why) = at(now, &intervals, &exceptions);
        let mut edges: Vec<Timestamp> = intervals
            .iter()
            .flat_map(|i| [i.from, i.end])
            .chain(exceptions.iter().flat_map(|span| [span.from, span.until]))
            .filter(|edge| *edge > now)
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let next = edges.iter().find_map(|&edge| {
            let (then, _) = at(edge, &intervals, &exceptions);
            (then != lifecycle).then_some((edge, then))
        });
        let mut past: Vec<Timestamp> = intervals
            .iter()
            .flat_map(|i| [i.from, i.end])
            .chain(exceptions.iter().flat_map(|span| [span.from, span.until]))
            .filter(|edge| *edge <= now)
            .collect();
        past.sort_unstable_by(|a, b| b.cmp(a));
        past.dedup();
        let since = past.into_iter().find(|&edge| {
            let before = edge
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .unwrap_or(edge);
            at(before, &intervals, &exceptions).0 != lifecycle
        });
        Verdict {
            lifecycle,
            why,
            next,
            since,
        }
    }

    /// The windows' loaded intervals around `now` (from a wake a lead before each start, to its
    /// end), from two days before to eight after: every window that can hold `now` or end within a
    /// week of it.
    fn loaded_intervals(&self, now: Timestamp) -> Vec<Interval> {
        let today = now.to_zoned(self.tz.clone()).date();
        let lead = self.prewarm_lead.min(MAX_PREWARM_LEAD);
        let lead = jiff::SignedDuration::try_from(lead).unwrap_or(jiff::SignedDuration::ZERO);
        let mut out = Vec::new();
        for offset in -2i64..=8 {
            let Some(day) = add_days(today, offset) else {
                continue;
            };
            let weekday = day.weekday().to_monday_zero_offset() as usize;
            for window in self.windows.iter().filter(|w| w.days[weekday]) {
                let start = resolve(&self.tz, day.to_datetime(window.start));
                let end_day = if window.end <= window.start {
                    add_days(day, 1).unwrap_or(day)
                } else {
                    day
                };
                let end = resolve(&self.tz, end_day.to_datetime(window.end));
                if end <= start {
                    continue;
                }
                out.push(Interval {
                    from: start.checked_sub(lead).unwrap_or(start),
                    start,
                    end,
                });
            }
        }
        out.sort_unstable_by_key(|i| (i.from, i.end));
        out
    }

    /// Each exception's instants, with its index and lifecycle.
    fn exception_intervals(&self) -> Vec<Span> {
        self.exceptions
            .iter()
            .enumerate()
            .map(|(i, e)| Span {
                from: resolve(&self.tz, e.from),
                until: resolve(&self.tz, e.until),
                index: i,
                lifecycle: e.lifecycle,
            })
            .filter(|span| span.from < span.until)
            .collect()
    }

    /// The names of two exceptions whose times overlap, if any: a schedule with such is not valid.
    pub fn overlapping_exceptions(&self) -> Option<(&str, &str)> {
        let mut spans = self.exception_intervals();
        spans.sort_unstable_by_key(|span| (span.from, span.until));
        spans.windows(2).find_map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            (b.from < a.until).then(|| {
                (
                    self.exceptions[a.index].name.as_str(),
                    self.exceptions[b.index].name.as_str(),
                )
            })
        })
    }
}

/// A window's loaded interval: from its wake (`from`, a lead before `start`) to its `end`.
#[derive(Clone, Copy, Debug)]
struct Interval {
    from: Timestamp,
    start: Timestamp,
    end: Timestamp,
}

/// An exception's instants: from, until (exclusive), its index and lifecycle.
#[derive(Clone, Copy, Debug)]
struct Span {
    from: Timestamp,
    until: Timestamp,
    index: usize,
    lifecycle: Lifecycle,
}

/// What the intervals and exceptions say at `t`: an exception first, then a window.
fn at(t: Timestamp, intervals: &[Interval], exceptions: &[Span]) -> (Lifecycle, Why) {
    if let Some(span) = exceptions.iter().find(|s| s.from <= t && t < s.until) {
        return (span.lifecycle, Why::Exception(span.index));
    }
    match intervals.iter().find(|i| i.from <= t && t < i.end) {
        Some(i) => (
            Lifecycle::Loaded,
            Why::Window {
                start: i.start,
                end: i.end,
            },
        ),
        None => (Lifecycle::BackedUp, Why::Outside),
    }
}

/// When a phone of a schedule is woken for a window that starts (is ready by) `start`: spread over
/// the `lead` before it by a stable hash of the phone's `uid`, so that a fleet's prepares do not leave
/// at once, and never later than `restore` before the start (the time a restore takes), so that each
/// is ready on time. The same phone gets the same instant in every process and version.
pub fn wake_at(start: Timestamp, lead: Duration, restore: Duration, uid: &str) -> Timestamp {
    let lead = lead.min(MAX_PREWARM_LEAD);
    let earliest = start
        .checked_sub(jiff::SignedDuration::try_from(lead).unwrap_or_default())
        .unwrap_or(start);
    spread_at(earliest, lead.saturating_sub(restore), uid)
}

/// The instant of the phone with `uid` in a wave spread over `spread` from `from`: a stable hash of
/// the uid, the same in every process and version.
pub fn spread_at(from: Timestamp, spread: Duration, uid: &str) -> Timestamp {
    if spread.is_zero() {
        return from;
    }
    // NB: FNV-1a, written out: std's hashers promise no stability across releases.
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let millis = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX).max(1);
    let offset = Duration::from_millis(hash % millis);
    from.checked_add(jiff::SignedDuration::try_from(offset).unwrap_or_default())
        .unwrap_or(from)
}

/// The default `prewarmLead`: 30 minutes.
pub const DEFAULT_PREWARM_LEAD: Duration = Duration::from_secs(1800);

/// The schedule a `CloudPhoneSchedule`'s spec describes, or why it is not valid (an unknown time
/// zone, a time or date that does not parse, overlapping exceptions): the text names the field.
pub fn read(spec: &crate::api::CloudPhoneScheduleSpec) -> Result<Schedule, String> {
    let tz = jiff::tz::TimeZoneDatabase::bundled()
        .get(&spec.time_zone)
        .map_err(|_| {
            format!(
                "spec.timeZone {:?} is not a time zone of the IANA database compiled into the operator",
                spec.time_zone.chars().take(64).collect::<String>()
            )
        })?;
    let clock = |field: String, value: &str| {
        value
            .parse::<Time>()
            .map_err(|_| format!("{field} {value:?} is not a local time HH:MM"))
    };
    let mut windows = Vec::with_capacity(spec.windows.len());
    for (i, w) in spec.windows.iter().enumerate() {
        let start = clock(format!("spec.windows[{i}].start"), &w.start)?;
        let end = clock(format!("spec.windows[{i}].end"), &w.end)?;
        if start == end {
            return Err(format!(
                "spec.windows[{i}]: end equals start (an end before the start wraps midnight)"
            ));
        }
        let mut days = [false; 7];
        for day in &w.days {
            days[day.index()] = true;
        }
        windows.push(Window { days, start, end });
    }
    let local = |field: String, value: &str| -> Result<DateTime, String> {
        value
            .parse::<DateTime>()
            .or_else(|_| value.parse::<Date>().map(|d| d.to_datetime(Time::midnight())))
            .map_err(|_| format!("{field} {value:?} is not a local date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)"))
    };
    let mut exceptions = Vec::with_capacity(spec.exceptions.len());
    for (i, e) in spec.exceptions.iter().enumerate() {
        let from = local(format!("spec.exceptions[{i}].from"), &e.from)?;
        let until = local(format!("spec.exceptions[{i}].until"), &e.until)?;
        if from >= until {
            return Err(format!(
                "spec.exceptions[{i}] ({}): from is not before until",
                e.name
            ));
        }
        exceptions.push(Exception {
            name: e.name.clone(),
            from,
            until,
            lifecycle: e.lifecycle.into(),
        });
    }
    let prewarm_lead = match spec.prewarm_lead.as_deref() {
        None => DEFAULT_PREWARM_LEAD,
        Some(value) => super::effective::whole_units(value)
            .filter(|lead| *lead <= MAX_PREWARM_LEAD)
            .ok_or_else(|| {
                format!("spec.prewarmLead {value:?} is not a duration of whole units of at most 1d (30m, 1h)")
            })?,
    };
    let schedule = Schedule {
        tz,
        windows,
        exceptions,
        prewarm_lead,
    };
    if let Some((a, b)) = schedule.overlapping_exceptions() {
        return Err(format!("spec.exceptions {a} and {b} overlap"));
    }
    Ok(schedule)
}

fn add_days(day: Date, n: i64) -> Option<Date> {
    day.checked_add(jiff::Span::new().days(n)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    /// Berlin: daylight saving starts 2026-03-29 at 02:00 (to 03:00) and ends 2026-10-25 at 03:00
    /// (back to 02:00).
    fn berlin() -> TimeZone {
        jiff::tz::TimeZoneDatabase::bundled()
            .get("Europe/Berlin")
            .expect("the bundled database knows Berlin")
    }

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every_day(start: Time, end: Time) -> Window {
        Window {
            days: [true; 7],
            start,
            end,
        }
    }

    fn schedule(windows: Vec<Window>, exceptions: Vec<Exception>, lead_min: u64) -> Schedule {
        Schedule {
            tz: berlin(),
            windows,
            exceptions,
            prewarm_lead: Duration::from_secs(lead_min * 60),
        }
    }

    #[test]
    fn a_time_skipped_by_a_gap_fires_at_the_first_valid_instant_and_a_repeated_one_once() {
        let tz = berlin();
        // 02:30 does not exist on 2026-03-29: the first valid instant is the transition, 03:00 CEST.
        assert_eq!(
            resolve(&tz, date(2026, 3, 29).at(2, 30, 0, 0)),
            utc("2026-03-29T01:00:00Z")
        );
        // 02:30 happens twice on 2026-10-25: the first, in CEST.
        assert_eq!(
            resolve(&tz, date(2026, 10, 25).at(2, 30, 0, 0)),
            utc("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            resolve(&tz, date(2026, 7, 1).at(8, 0, 0, 0)),
            utc("2026-07-01T06:00:00Z")
        );
    }

    #[test]
    fn a_window_is_loaded_from_its_prewarm_until_its_end_and_says_when_it_changes() {
        let s = schedule(
            vec![every_day(time(8, 0, 0, 0), time(20, 0, 0, 0))],
            vec![],
            30,
        );
        // 2026-07-01 (CEST, +2): wake at 07:30 local (05:30Z), ready by 08:00, parked at 20:00.
        let before = s.verdict(utc("2026-07-01T05:29:00Z"));
        assert_eq!(before.lifecycle, Lifecycle::BackedUp);
        assert_eq!(before.why, Why::Outside);
        assert_eq!(
            before.next,
            Some((utc("2026-07-01T05:30:00Z"), Lifecycle::Loaded))
        );
        let waking = s.verdict(utc("2026-07-01T05:30:00Z"));
        assert_eq!(
            waking.why,
            Why::Window {
                start: utc("2026-07-01T06:00:00Z"),
                end: utc("2026-07-01T18:00:00Z")
            }
        );
        assert_eq!(
            waking.next,
            Some((utc("2026-07-01T18:00:00Z"), Lifecycle::BackedUp))
        );
        assert_eq!(
            s.verdict(utc("2026-07-01T18:00:00Z")).lifecycle,
            Lifecycle::BackedUp
        );
    }

    #[test]
    fn a_window_ending_before_it_starts_wraps_midnight_and_belongs_to_its_first_day() {
        let mut friday_night = every_day(time(22, 0, 0, 0), time(6, 0, 0, 0));
        friday_night.days = [false, false, false, false, true, false, false];
        let s = schedule(vec![friday_night], vec![], 0);
        // Friday 2026-07-03 22:00 CEST to Saturday 06:00.
        assert_eq!(
            s.verdict(utc("2026-07-03T19:59:00Z")).lifecycle,
            Lifecycle::BackedUp
        );
        assert_eq!(
            s.verdict(utc("2026-07-03T20:00:00Z")).lifecycle,
            Lifecycle::Loaded
        );
        assert_eq!(
            s.verdict(utc("2026-07-04T03:59:00Z")).lifecycle,
            Lifecycle::Loaded
        );
        assert_eq!(
            s.verdict(utc("2026-07-04T04:00:00Z")).lifecycle,
            Lifecycle::BackedUp
        );
        // Saturday night is no window of its own.
        assert_eq!(
            s.verdict(utc("2026-07-04T21:00:00Z")).lifecycle,
            Lifecycle::BackedUp
        );
    }

    #[test]
    fn edges_in_a_gap_or_a_fold_fire_once_at_a_predictable_instant() {
        // A window from 02:30 to 04:00 every day, woken 30 minutes ahead.
        let s = schedule(
            vec![every_day(time(2, 30, 0, 0), time(4, 0, 0, 0))],
            vec![],
            30,
        );
        // Spring forward: 02:30 is skipped, the start is 03:00 CEST (01:00Z), the first valid
        // instant; the wake is 30 minutes before it (01:30 CET).
        let spring = s.verdict(utc("2026-03-29T00:29:00Z"));
        assert_eq!(spring.lifecycle, Lifecycle::BackedUp);
        assert_eq!(
            spring.next,
            Some((utc("2026-03-29T00:30:00Z"), Lifecycle::Loaded))
        );
        assert_eq!(
            s.verdict(utc("2026-03-29T00:30:00Z")).next,
            Some((utc("2026-03-29T02:00:00Z"), Lifecycle::BackedUp)),
            "ends at 04:00 CEST"
        );
        // Fall back: 02:30 happens twice; the window starts at the first (00:30Z), once, and ends
        // at 04:00 CET (03:00Z).
        let fall = s.verdict(utc("2026-10-24T23:59:00Z"));
        assert_eq!(
            fall.next,
            Some((utc("2026-10-25T00:00:00Z"), Lifecycle::Loaded))
        );
        let inside = s.verdict(utc("2026-10-25T01:30:00Z"));
        assert_eq!(
            inside.lifecycle,
            Lifecycle::Loaded,
            "the repeated hour stays loaded"
        );
        assert_eq!(
            inside.next,
            Some((utc("2026-10-25T03:00:00Z"), Lifecycle::BackedUp))
        );
    }

    #[test]
    fn wakes_are_spread_over_the_lead_stably_and_end_a_restore_before_the_start() {
        let start = utc("2026-07-01T06:00:00Z");
        let lead = Duration::from_secs(1800);
        let restore = Duration::from_secs(300);
        let wakes: Vec<Timestamp> = (0..1000)
            .map(|i| wake_at(start, lead, restore, &format!("uid-{i}")))
            .collect();
        let earliest = utc("2026-07-01T05:30:00Z");
        let latest = utc("2026-07-01T05:55:00Z");
        assert!(wakes.iter().all(|w| earliest <= *w && *w < latest));
        // Spread: each fifth of the 25 minutes holds some of the thousand, none most of them.
        let fifth = latest.duration_since(earliest).as_secs() / 5;
        for k in 0..5 {
            let n = wakes
                .iter()
                .filter(|w| w.duration_since(earliest).as_secs() / fifth == k)
                .count();
            assert!((100..=300).contains(&n), "fifth {k}: {n} of 1000");
        }
        assert_eq!(wake_at(start, lead, restore, "uid-7"), wakes[7], "stable");
        // A lead no longer than a restore: every phone at the lead's start.
        assert_eq!(
            wake_at(start, restore, lead, "uid-7"),
            utc("2026-07-01T05:55:00Z")
        );
    }

    #[test]
    fn an_exception_overrides_the_windows_and_overlapping_ones_are_found() {
        let holidays = Exception {
            name: "holidays".into(),
            from: date(2026, 12, 24).at(0, 0, 0, 0),
            until: date(2026, 12, 27).at(0, 0, 0, 0),
            lifecycle: Lifecycle::BackedUp,
        };
        let s = schedule(
            vec![every_day(time(8, 0, 0, 0), time(20, 0, 0, 0))],
            vec![holidays.clone()],
            0,
        );
        // 2026-12-24 10:00 CET (09:00Z): a window, but the holidays keep the phones parked.
        let v = s.verdict(utc("2026-12-24T09:00:00Z"));
        assert_eq!(
            (v.lifecycle, v.why),
            (Lifecycle::BackedUp, Why::Exception(0))
        );
        // The next change: the first window after the holidays, 2026-12-27 08:00 CET.
        assert_eq!(
            v.next,
            Some((utc("2026-12-27T07:00:00Z"), Lifecycle::Loaded))
        );
        assert_eq!(s.overlapping_exceptions(), None);
        let overlapping = Exception {
            name: "stocktaking".into(),
            from: date(2026, 12, 26).at(12, 0, 0, 0),
            until: date(2026, 12, 28).at(0, 0, 0, 0),
            lifecycle: Lifecycle::Loaded,
        };
        let s = schedule(vec![], vec![holidays, overlapping], 0);
        assert_eq!(
            s.overlapping_exceptions(),
            Some(("holidays", "stocktaking"))
        );
    }
}
