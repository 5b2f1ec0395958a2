//! A `CloudPhoneSchedule`'s status after a tick: what holds, its next change, its phones by state,
//! when its wake is projected ready at the account's pace (and `PrewarmAtRisk` when that is after
//! the window's start), its wave's anchor, and `Valid`. `reconciler` writes it.

use super::schedule::Why;
use super::scheduled::{ScheduleState, ScheduleTick};
use crate::api::{CloudPhoneScheduleStatus, Lifecycle, Phase, ScheduleCounts, Transition};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::time::Duration;

/// The `Valid` condition: the zone is known, the times parse, the exceptions do not overlap.
pub const VALID: &str = "Valid";
/// The `PrewarmAtRisk` condition: the wake cannot be ready by the window's start at the pace.
pub const PREWARM_AT_RISK: &str = "PrewarmAtRisk";

/// The phones of one schedule after a tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulePhones {
    pub counts: ScheduleCounts,
    /// Phones not loaded although the window (or a Loaded exception) has started: a late wave.
    pub late: i32,
    /// The prepare calls its wake takes: one per 100 phones of each user.
    pub wake_calls: usize,
    /// The status queries a second its account makes (every phone of the account, each tick: one
    /// per 100): they take their share of the account's pace while the wake runs.
    pub status_per_second: f64,
    /// The calls per second its account allows, when bounded (the slowest of its accounts).
    pub pace: Option<Pace>,
}

/// An account's bounded pace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    /// Calls of any kind per second.
    pub calls: f64,
    /// Action calls (prepares, backups) per second: a share of `calls`.
    pub actions: f64,
}

impl SchedulePhones {
    /// Counts one phone observed in `phase`.
    pub fn count(&mut self, phase: Phase) {
        let c = &mut self.counts;
        match phase {
            Phase::DataLoaded | Phase::Streaming => c.loaded += 1,
            Phase::Idle => c.parked += 1,
            Phase::Restoring | Phase::BackingUp => c.preparing += 1,
            Phase::RestoreFailed | Phase::BackupFailed => c.failed += 1,
            _ => {}
        }
    }
}

/// The instant a schedule's phones should be ready by, when its verdict at `now` keeps them loaded
/// (a window's start, an exception's start) or will next (a lead after the next wake).
fn ready_by(tick: &ScheduleTick) -> Option<Timestamp> {
    let ScheduleState::Active(active) = &tick.state else {
        return None;
    };
    match (
        &active.verdict.why,
        active.verdict.lifecycle,
        active.verdict.next,
    ) {
        (Why::Window { start, .. }, Lifecycle::Loaded, _) => Some(*start),
        (Why::Exception(_), Lifecycle::Loaded, _) => active.verdict.since,
        (_, _, Some((at, Lifecycle::Loaded))) => Some(
            at.checked_add(SignedDuration::try_from(active.lead).ok()?)
                .ok()?,
        ),
        _ => None,
    }
}

/// True when the schedule's phones should be loaded at `now` and its start has passed.
pub fn should_be_ready(tick: &ScheduleTick, now: Timestamp) -> bool {
    let ScheduleState::Active(active) = &tick.state else {
        return false;
    };
    !tick.dry_run
        && active.verdict.lifecycle == Lifecycle::Loaded
        && ready_by(tick).is_some_and(|by| by <= now)
}

/// True when a phone of the schedule (its status, observed `phase` this tick, `suspended` its
/// spec's suspend) is late for its window: the window (or a Loaded exception) has started, its turn has come (the
/// schedule keeps it loaded now), and it is not loaded although it was asked to be at least a
/// restore ago, or never asked. A phone still waiting for its turn, or whose prepare is under way
/// within a restore's time, is where the wave wants it; a suspended one is left alone by design.
pub fn is_late(
    tick: &ScheduleTick,
    status: Option<&crate::api::CloudPhoneStatus>,
    phase: Phase,
    suspended: bool,
    now: Timestamp,
) -> bool {
    let Some(status) = status else {
        return false;
    };
    let ScheduleState::Active(active) = &tick.state else {
        return false;
    };
    if suspended
        || !should_be_ready(tick, now)
        || status.effective_lifecycle != Some(Lifecycle::Loaded)
        || matches!(phase, Phase::DataLoaded | Phase::Streaming)
    {
        return false;
    }
    let restore = SignedDuration::try_from(active.restore).unwrap_or_default();
    status
        .prepare
        .as_ref()
        .and_then(|p| p.requested_at.as_ref())
        .is_none_or(|asked| asked.0.checked_add(restore).is_ok_and(|due| due <= now))
}

/// When the last phone of the schedule's current or next wake is projected ready: its spread, or
/// the time its calls take at the account's pace when longer, plus a restore.
fn projected_ready_at(tick: &ScheduleTick, phones: &SchedulePhones) -> Option<Timestamp> {
    let ScheduleState::Active(active) = &tick.state else {
        return None;
    };
    let from = match (active.verdict.lifecycle, active.verdict.next) {
        (Lifecycle::Loaded, _) => active.wave.from.0,
        (_, Some((at, Lifecycle::Loaded))) => at,
        _ => return None,
    };
    let spread = match active.verdict.lifecycle {
        Lifecycle::Loaded => active.spread,
        _ => active.edge_spread(Lifecycle::Loaded),
    };
    let paced = match phones.pace {
        None => Duration::ZERO,
        Some(pace) => {
            // NB: the prepares at the actions' share, and in what the account's status queries
            // leave of its whole pace; none left: never ready by pace.
            let left = pace.calls - phones.status_per_second;
            if left <= 0.0 {
                return None;
            }
            let prepares = phones.wake_calls as f64 / pace.actions.max(0.001);
            Duration::from_secs_f64(prepares.max(phones.wake_calls as f64 / left))
        }
    };
    let last = spread.max(paced) + active.restore;
    from.checked_add(SignedDuration::try_from(last).ok()?).ok()
}

/// True when the current wake began at or after the instant its phones are wanted by (a Loaded
/// exception, which has no prewarm; a wave first acted on mid-window): no prewarm is at risk, the
/// wave is simply after the start.
fn wave_after_start(tick: &ScheduleTick) -> Option<Timestamp> {
    let ScheduleState::Active(active) = &tick.state else {
        return None;
    };
    let by = ready_by(tick)?;
    (active.verdict.lifecycle == Lifecycle::Loaded && active.wave.from.0 >= by).then_some(by)
}

fn condition(
    old: Option<&CloudPhoneScheduleStatus>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let old = old.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let transition = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(super::whole_seconds(now)),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    }
}

/// The status a schedule should show after a tick, or `None` when it shows it already.
pub fn schedule_status(
    tick: &ScheduleTick,
    generation: Option<i64>,
    old: Option<&CloudPhoneScheduleStatus>,
    phones: &SchedulePhones,
    now: Timestamp,
) -> Option<CloudPhoneScheduleStatus> {
    let (valid, current, next, wave) = match &tick.state {
        ScheduleState::Invalid(why) => (
            condition(
                old,
                VALID,
                "False",
                "InvalidSpec",
                format!("{why}: its phones are kept as they are"),
                generation,
                now,
            ),
            None,
            None,
            None,
        ),
        ScheduleState::Suspended => (
            condition(
                old,
                VALID,
                "True",
                "Suspended",
                "spec.suspend: its phones are kept as they are".into(),
                generation,
                now,
            ),
            Some("Suspended".to_owned()),
            None,
            None,
        ),
        ScheduleState::Active(active) => (
            condition(old, VALID, "True", "Valid", String::new(), generation, now),
            Some(active.current.clone()),
            active.verdict.next.map(|(at, lifecycle)| Transition {
                at: Time(super::whole_seconds(at)),
                lifecycle,
            }),
            Some(active.wave.clone()),
        ),
    };
    let projected = projected_ready_at(tick, phones);
    let by = ready_by(tick);
    let saturated = phones
        .pace
        .is_some_and(|pace| phones.status_per_second >= pace.calls)
        && phones.wake_calls > 0;
    let at_risk = match (projected, by) {
        (None, Some(by)) if saturated => condition(
            old,
            PREWARM_AT_RISK,
            "True",
            "PaceTooSlow",
            format!(
                "the account's status queries ({:.1} a second) take its whole pace: the wake's {} prepare calls cannot be made by {by}; raise the account's callsPerSecond or --tick-interval",
                phones.status_per_second, phones.wake_calls
            ),
            generation,
            now,
        ),
        (Some(projected), Some(by)) if wave_after_start(tick).is_some() => condition(
            old,
            PREWARM_AT_RISK,
            "False",
            "WaveAfterStart",
            format!(
                "this wake began at or after {by}, when its phones are wanted (a Loaded exception has no prewarm; a schedule created or changed mid-window wakes from then): its phones are projected ready by {}",
                super::whole_seconds(projected)
            ),
            generation,
            now,
        ),
        (Some(projected), Some(by)) if projected > by => condition(
            old,
            PREWARM_AT_RISK,
            "True",
            "PaceTooSlow",
            format!(
                "the wake's {} prepare calls (at most three quarters of the account's pace, and what its {:.1} status queries a second leave of it) and a restore end at {}, after the start at {by}: raise the account's callsPerSecond or spec.prewarmLead",
                phones.wake_calls,
                phones.status_per_second,
                super::whole_seconds(projected)
            ),
            generation,
            now,
        ),
        _ => condition(
            old,
            PREWARM_AT_RISK,
            "False",
            "OnTime",
            String::new(),
            generation,
            now,
        ),
    };
    let status = CloudPhoneScheduleStatus {
        observed_generation: generation,
        current_window: current,
        next_transition: next,
        counts: phones.counts.clone(),
        projected_ready_at: projected.map(|t| Time(super::whole_seconds(t))),
        wave,
        conditions: vec![valid, at_risk],
    };
    (old != Some(&status)).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudPhoneSchedule, CloudPhoneScheduleSpec, ScheduleWindow, Weekday};

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn office(lead: &str) -> CloudPhoneSchedule {
        let mut s = CloudPhoneSchedule::new(
            "office",
            CloudPhoneScheduleSpec {
                time_zone: "Europe/Berlin".into(),
                windows: vec![ScheduleWindow {
                    days: vec![Weekday::Wed],
                    start: "08:00".into(),
                    end: "20:00".into(),
                }],
                exceptions: vec![],
                prewarm_lead: Some(lead.into()),
                suspend: false,
                dry_run: false,
            },
        );
        s.metadata.namespace = Some("team".into());
        s
    }

    fn reason<'s>(s: &'s CloudPhoneScheduleStatus, type_: &str) -> (&'s str, &'s str) {
        let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_wake_the_pace_cannot_finish_before_the_start_is_at_risk() {
        // Wednesday 2026-07-01, 05:00Z: the next wake at 05:30Z, the start at 06:00Z (08:00 CEST).
        let now = utc("2026-07-01T05:00:00Z");
        let tick = ScheduleTick::read(&office("30m"), now, crate::plan::RESTORE_ESTIMATE, None);
        let mut phones = SchedulePhones {
            wake_calls: 100,
            pace: Some(Pace {
                calls: 4.0 / 3.0,
                actions: 1.0,
            }),
            ..Default::default()
        };
        let s = schedule_status(&tick, Some(1), None, &phones, now).unwrap();
        assert_eq!(reason(&s, VALID), ("True", "Valid"));
        assert_eq!(reason(&s, PREWARM_AT_RISK), ("False", "OnTime"));
        assert_eq!(s.current_window.as_deref(), Some("Outside"));
        assert_eq!(
            s.next_transition.as_ref().map(|t| (t.at.0, t.lifecycle)),
            Some((utc("2026-07-01T05:30:00Z"), Lifecycle::Loaded))
        );
        assert_eq!(
            s.projected_ready_at.as_ref().map(|t| t.0),
            Some(utc("2026-07-01T06:00:00Z"))
        );
        // The account's status queries take their share of its pace: at 1.3 a second they leave
        // 0.03 for the 100 prepares, 58 minutes, past the 25-minute spread; at its whole pace,
        // none.
        phones.status_per_second = 1.3;
        let busy = schedule_status(&tick, Some(1), Some(&s), &phones, now).unwrap();
        assert_eq!(reason(&busy, PREWARM_AT_RISK), ("True", "PaceTooSlow"));
        phones.status_per_second = 2.0;
        let saturated = schedule_status(&tick, Some(1), Some(&s), &phones, now).unwrap();
        assert_eq!(reason(&saturated, PREWARM_AT_RISK), ("True", "PaceTooSlow"));
        assert_eq!(saturated.projected_ready_at, None);
        phones.status_per_second = 0.0;
        // A hundred times the prepares at the same pace: about 2h47m of calls.
        phones.wake_calls = 10_000;
        let risky = schedule_status(&tick, Some(1), Some(&s), &phones, now).unwrap();
        assert_eq!(reason(&risky, PREWARM_AT_RISK), ("True", "PaceTooSlow"));
        // Nothing changed: no write.
        assert_eq!(
            schedule_status(&tick, Some(1), Some(&risky), &phones, now),
            None
        );
    }

    #[test]
    fn an_unknown_zone_is_not_valid_and_keeps_no_wave() {
        let mut bad = office("30m");
        bad.spec.time_zone = "Mars/Olympus".into();
        let now = utc("2026-07-01T05:00:00Z");
        let tick = ScheduleTick::read(&bad, now, crate::plan::RESTORE_ESTIMATE, None);
        let s = schedule_status(&tick, Some(2), None, &SchedulePhones::default(), now).unwrap();
        let c = s.conditions.iter().find(|c| c.type_ == VALID).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(c.message.contains("Mars/Olympus"), "{}", c.message);
        assert_eq!(s.wave, None);
    }
}
