//! A `Scheduled` phone's schedule at a tick: each `CloudPhoneSchedule` read once per tick
//! ([`ScheduleTick`]: its verdict and the wave that carries the verdict's last change out), and
//! what that makes of one phone ([`scheduled`]): the lifecycle it is kept at, or a hold (no call).

use super::effective::Effective;
use super::schedule::{self, Schedule, Verdict, Why};
use crate::api::{
    CloudPhoneSchedule, CloudPhoneStatus, EffectiveReason, Lifecycle, Phase, WaveAnchor,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// How late after a schedule's edge the operator may first act on it and still spread the wave
/// from the edge itself (a tick, a slow one, a short restart); later, it spreads from then.
pub const EDGE_SLACK: Duration = Duration::from_secs(120);

/// The least spread of a wave that is not a wake at its window's own edge: a park, or any change
/// first acted on after its edge (a schedule created, edited, unsuspended mid-window; phones that
/// have just joined), whatever its prewarmLead, so that no such change moves a fleet at once. A
/// wake at its edge is spread over prewarmLead less a restore only: it must be ready by the start.
pub const MIN_SPREAD: Duration = Duration::from_secs(300);

/// The default time a restore is taken to last (`--restore-estimate`): a window's wakes end this
/// long before its start, so that the last phone woken is ready by it.
pub const RESTORE_ESTIMATE: Duration = Duration::from_secs(300);

/// One schedule at a tick.
#[derive(Clone, Debug)]
pub struct ScheduleTick {
    /// `namespace/name`.
    pub key: String,
    pub dry_run: bool,
    pub state: ScheduleState,
}

/// Where a schedule stands at a tick.
#[derive(Clone, Debug)]
pub enum ScheduleState {
    /// Its spec does not make a schedule (why): its phones are held as they are.
    Invalid(String),
    /// `spec.suspend`: its phones are held as they are.
    Suspended,
    /// In force.
    Active(Box<Active>),
}

/// A schedule in force at a tick.
#[derive(Clone, Debug)]
pub struct Active {
    pub verdict: Verdict,
    /// The exception in force, by name, when the verdict is one.
    pub exception: Option<String>,
    /// The wave carrying out the verdict's last change: its edge and where its spread starts.
    pub wave: WaveAnchor,
    /// What each phone's turn is spread over from `wave.from`.
    pub spread: Duration,
    /// The lead its windows are woken with.
    pub lead: Duration,
    /// The time a restore is taken to last.
    pub restore: Duration,
    /// What holds, for a person: `Window 08:00-20:00`, `Exception <name>`, `Outside`.
    pub current: String,
}

impl ScheduleTick {
    /// Reads `schedule` at `now`: its verdict, and the wave its anchor starts (`remembered`, the
    /// one this process computed for its current generation; else the one in its status when that
    /// was computed for its current generation; else a new one); a restore taken to last `restore`.
    ///
    /// NB: an anchor of an older generation is never resumed: the spec changed since (unsuspended,
    /// dryRun turned off, an edit mid-window), and resuming a wave whose turns have passed would
    /// move every phone left at once; a new anchor only delays the turns not taken yet.
    pub fn read(
        schedule: &CloudPhoneSchedule,
        now: Timestamp,
        restore: Duration,
        remembered: Option<&WaveAnchor>,
    ) -> ScheduleTick {
        let key = format!(
            "{}/{}",
            schedule.metadata.namespace.as_deref().unwrap_or_default(),
            schedule.metadata.name.as_deref().unwrap_or_default()
        );
        let state = match schedule::read(&schedule.spec) {
            Err(why) => ScheduleState::Invalid(why),
            Ok(_) if schedule.spec.suspend => ScheduleState::Suspended,
            Ok(s) => {
                let stored = schedule
                    .status
                    .as_ref()
                    .filter(|st| st.observed_generation == schedule.metadata.generation)
                    .and_then(|st| st.wave.as_ref());
                // NB: the status first: after a failover it holds the other leader's anchor,
                // which this process's older memory must not override.
                let known: Vec<&WaveAnchor> = stored.into_iter().chain(remembered).collect();
                ScheduleState::Active(Box::new(active(&s, &known, now, restore)))
            }
        };
        ScheduleTick {
            key,
            dry_run: schedule.spec.dry_run,
            state,
        }
    }
}

impl Active {
    /// The turn of the phone with `uid` in the wave of a change to `lifecycle` at `edge`, acted on at
    /// its edge: a wake over the lead less a restore, a park over the lead (at least
    /// [`MIN_SPREAD`]).
    pub fn turn_at(&self, edge: Timestamp, lifecycle: Lifecycle, uid: &str) -> Timestamp {
        schedule::spread_at(edge, self.edge_spread(lifecycle), uid)
    }

    /// What a wave to `lifecycle` acted on at its edge is spread over: a wake over the lead less a
    /// restore, a park over the lead but at least [`MIN_SPREAD`].
    pub fn edge_spread(&self, lifecycle: Lifecycle) -> Duration {
        edge_spread(self.lead, self.restore, lifecycle)
    }
}

/// What a wave to `lifecycle` acted on at its edge is spread over: a wake over the lead less a
/// restore (it must be ready by the start), a park over the lead but at least [`MIN_SPREAD`].
fn edge_spread(lead: Duration, restore: Duration, lifecycle: Lifecycle) -> Duration {
    match lifecycle {
        Lifecycle::Loaded => lead.saturating_sub(restore),
        _ => lead.max(MIN_SPREAD),
    }
}

/// The schedule `s` in force at `now`, its wave anchored at the first of the `known` anchors that
/// carries the same edge.
pub fn active(s: &Schedule, known: &[&WaveAnchor], now: Timestamp, restore: Duration) -> Active {
    let verdict = s.verdict(now);
    let exception = match verdict.why {
        Why::Exception(i) => s.exceptions.get(i).map(|e| e.name.clone()),
        _ => None,
    };
    let wave = anchor(known, verdict.since, verdict.lifecycle, now);
    let lead = s.prewarm_lead.min(schedule::MAX_PREWARM_LEAD);
    let at_edge = edge_spread(lead, restore, verdict.lifecycle);
    let spread = if wave.from == wave.edge {
        at_edge
    } else {
        at_edge.max(MIN_SPREAD)
    };
    let local = |t: Timestamp| t.to_zoned(s.tz.clone()).strftime("%H:%M").to_string();
    let current = match (&verdict.why, &exception) {
        (Why::Window { start, end }, _) => format!("Window {}-{}", local(*start), local(*end)),
        (Why::Exception(_), Some(name)) => format!("Exception {name}"),
        _ => "Outside".to_owned(),
    };
    Active {
        verdict,
        exception,
        wave,
        spread,
        lead,
        restore,
        current,
    }
}

/// Where the wave of the change at `since` to `lifecycle` starts: where the first of the `known`
/// anchors that carries that change says (an operator restarted mid-wave resumes it); the edge
/// itself when `now` is within [`EDGE_SLACK`] of it; `now` otherwise (acted on first mid-window:
/// spread from now, never all at once). A schedule with no edge in sight (none in the last two
/// days) keeps its first anchor to the same lifecycle.
pub fn anchor(
    known: &[&WaveAnchor],
    since: Option<Timestamp>,
    lifecycle: Lifecycle,
    now: Timestamp,
) -> WaveAnchor {
    let edge = since.map(super::whole_seconds);
    if let Some(known) = known.iter().find(|known| {
        known.lifecycle == lifecycle && (edge.is_none() || edge == Some(known.edge.0))
    }) {
        return (*known).clone();
    }
    let edge = edge.unwrap_or_else(|| super::whole_seconds(now));
    let slack = jiff::SignedDuration::try_from(EDGE_SLACK).unwrap_or_default();
    let from = if now.duration_since(edge) <= slack {
        edge
    } else {
        super::whole_seconds(now)
    };
    WaveAnchor {
        edge: Time(edge),
        from: Time(from),
        lifecycle,
    }
}

/// What a `Scheduled` phone's schedule makes of it at a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Kept at this: the lifecycle's rules act on it.
    At(Effective),
    /// Held where it is, with no call: shown as this, the Ready condition `ready` (reason,
    /// status, message) when the hold has one, else left as it was.
    Held {
        shown: Effective,
        ready: Option<(&'static str, &'static str, String)>,
    },
}

/// Ready reason of a phone whose schedule is missing.
pub const SCHEDULE_NOT_FOUND: &str = "ScheduleNotFound";
/// Ready reason of a phone whose schedule is not valid.
pub const SCHEDULE_INVALID: &str = "ScheduleInvalid";
/// Ready reason of a phone whose schedule is suspended.
pub const SCHEDULE_SUSPENDED: &str = "ScheduleSuspended";
/// Ready reason of a phone whose schedule is a dry run.
pub const DRY_RUN: &str = "DryRun";

/// Where a phone's schedule stands, as the tick found it.
#[derive(Clone, Copy, Debug)]
pub enum ScheduleLink<'a> {
    /// The schedules' watch has not synced (the CRD missing, say): nothing is known.
    NotSynced,
    /// No such schedule in the phone's namespace.
    Missing,
    Found(&'a ScheduleTick),
}

/// What the schedule of a phone (uid `uid`, status before this tick `status`, observed `phase`)
/// makes of it at `now`: the schedule's lifecycle once the phone's turn in the wave has come; held
/// as it was before then, and whenever the schedule cannot be followed (missing, not valid,
/// suspended, not synced: fail closed, no mass action).
pub fn scheduled(
    link: ScheduleLink<'_>,
    name: &str,
    uid: Option<&str>,
    status: &CloudPhoneStatus,
    phase: Phase,
    now: Timestamp,
) -> Kept {
    let shown = as_it_was(status, phase);
    let hold = |reason: &'static str, status: &'static str, message: String| Kept::Held {
        shown,
        ready: Some((reason, status, message)),
    };
    let tick = match link {
        ScheduleLink::NotSynced => {
            return hold(
                SCHEDULE_NOT_FOUND,
                "False",
                format!(
                    "the CloudPhoneSchedule watch has not synced (is the CRD installed?): spec.scheduleRef {name} is not known yet; the phone is kept as it is"
                ),
            );
        }
        ScheduleLink::Missing => {
            return hold(
                SCHEDULE_NOT_FOUND,
                "False",
                format!(
                    "spec.scheduleRef names CloudPhoneSchedule {name}, which does not exist in this namespace: the phone is kept as it is"
                ),
            );
        }
        ScheduleLink::Found(tick) => tick,
    };
    let active = match &tick.state {
        ScheduleState::Invalid(why) => {
            return hold(
                SCHEDULE_INVALID,
                "False",
                format!(
                    "CloudPhoneSchedule {name} is not valid ({why}): the phone is kept as it is"
                ),
            );
        }
        ScheduleState::Suspended => {
            return hold(
                SCHEDULE_SUSPENDED,
                "True",
                format!("CloudPhoneSchedule {name} is suspended: the phone is kept as it is"),
            );
        }
        ScheduleState::Active(active) => active,
    };
    let verdict = &active.verdict;
    let uid = uid.unwrap_or_default();
    let target = Effective {
        lifecycle: verdict.lifecycle,
        reason: match verdict.why {
            Why::Window { .. } => EffectiveReason::ScheduleWindow,
            Why::Outside => EffectiveReason::OutsideWindow,
            Why::Exception(_) => EffectiveReason::Exception,
        },
        // NB: the phone's own turn in the next change's wave, not the change itself: the turn a
        // phone waits for at the edge is then the one its status already shows (no write of every
        // phone at each edge).
        next: verdict
            .next
            .map(|(edge, lifecycle)| (active.turn_at(edge, lifecycle, uid), lifecycle)),
    };
    // NB: a phone a dry run switched was never acted on: once the dry run ends it takes a turn
    // like a phone that has just joined, rather than all such phones being acted on at once.
    let dry_run_over = !tick.dry_run
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == super::READY && c.reason == DRY_RUN);
    if status.effective_lifecycle == Some(target.lifecycle) && !dry_run_over {
        return Kept::At(target);
    }
    // NB: a phone whose data is already where the schedule wants it needs no call: it is kept
    // there at once (a new phone, a phone a person moved), with no turn to wait for.
    let there = match target.lifecycle {
        Lifecycle::Loaded => phase.is_loaded_or_loading(),
        _ => phase.is_parked_or_parking(),
    };
    if there {
        return Kept::At(target);
    }
    // NB: a phone that has just joined the schedule (switched to Scheduled, or new) has no place in
    // the schedule's wave: its turn is spread from when it is first seen, and kept in its own
    // nextTransition, so that ten thousand phones switched in one commit are not moved at once.
    let joining = dry_run_over
        || matches!(
            status.effective_reason,
            None | Some(EffectiveReason::Declared)
        );
    let turn = if joining {
        // NB: joining is never at an edge: at least MIN_SPREAD, whatever the wave's own spread.
        let spread = active.spread.max(MIN_SPREAD);
        let latest = schedule::spread_at(super::whole_seconds(now), spread, uid);
        status
            .next_transition
            .as_deref()
            .filter(|next| next.lifecycle == target.lifecycle)
            .map_or(latest, |next| next.at.0.min(latest))
    } else {
        schedule::spread_at(active.wave.from.0, active.spread, uid)
    };
    if now >= turn {
        return Kept::At(target);
    }
    Kept::Held {
        shown: Effective {
            next: Some((turn, target.lifecycle)),
            ..shown
        },
        ready: None,
    }
}

/// What a phone was kept at before this tick: its last effective lifecycle, or for a phone never
/// planned, what its data shows (loaded or not).
fn as_it_was(status: &CloudPhoneStatus, phase: Phase) -> Effective {
    let lifecycle = status
        .effective_lifecycle
        .unwrap_or(if phase.is_loaded_or_loading() {
            Lifecycle::Loaded
        } else {
            Lifecycle::BackedUp
        });
    Effective {
        lifecycle,
        reason: status.effective_reason.unwrap_or(EffectiveReason::Declared),
        next: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudPhoneScheduleSpec, ScheduleWindow, Weekday};

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Every day 08:00-20:00 in Berlin, woken 30 minutes ahead.
    fn office() -> CloudPhoneSchedule {
        let mut s = CloudPhoneSchedule::new(
            "office",
            CloudPhoneScheduleSpec {
                time_zone: "Europe/Berlin".into(),
                windows: vec![ScheduleWindow {
                    days: vec![
                        Weekday::Mon,
                        Weekday::Tue,
                        Weekday::Wed,
                        Weekday::Thu,
                        Weekday::Fri,
                        Weekday::Sat,
                        Weekday::Sun,
                    ],
                    start: "08:00".into(),
                    end: "20:00".into(),
                }],
                exceptions: vec![],
                prewarm_lead: None,
                suspend: false,
                dry_run: false,
            },
        );
        s.metadata.namespace = Some("team".into());
        s
    }

    fn backed_up() -> CloudPhoneStatus {
        CloudPhoneStatus {
            effective_lifecycle: Some(Lifecycle::BackedUp),
            effective_reason: Some(EffectiveReason::OutsideWindow),
            ..Default::default()
        }
    }

    fn turns(tick: &ScheduleTick, now: Timestamp) -> Vec<Timestamp> {
        (0..1000)
            .filter_map(|i| {
                match scheduled(
                    ScheduleLink::Found(tick),
                    "office",
                    Some(&format!("uid-{i}")),
                    &backed_up(),
                    Phase::Idle,
                    now,
                ) {
                    Kept::Held { shown, .. } => shown.next.map(|(at, _)| at),
                    Kept::At(_) => Some(now),
                }
            })
            .collect()
    }

    #[test]
    fn a_window_start_wakes_each_phone_at_its_turn_a_restore_before_the_start() {
        // 2026-07-01 in Berlin (CEST): the wave starts 07:30 (05:30Z), ready by 08:00 (06:00Z).
        let at_edge = utc("2026-07-01T05:30:10Z");
        let tick = ScheduleTick::read(&office(), at_edge, RESTORE_ESTIMATE, None);
        let ScheduleState::Active(active) = &tick.state else {
            panic!("active")
        };
        assert_eq!(
            active.wave.from.0,
            utc("2026-07-01T05:30:00Z"),
            "from the edge"
        );
        let turns = turns(&tick, at_edge);
        assert!(turns.iter().all(|t| *t < utc("2026-07-01T05:55:00Z")));
        let now_or_before = turns.iter().filter(|t| **t <= at_edge).count();
        assert!(now_or_before < 30, "{now_or_before} of 1000 at once");
    }

    #[test]
    fn a_schedule_first_acted_on_mid_window_spreads_from_then_and_a_stored_anchor_resumes() {
        let mid = utc("2026-07-01T10:00:00Z");
        let tick = ScheduleTick::read(&office(), mid, RESTORE_ESTIMATE, None);
        let ScheduleState::Active(active) = &tick.state else {
            panic!("active")
        };
        assert_eq!(active.wave.edge.0, utc("2026-07-01T05:30:00Z"));
        assert_eq!(active.wave.from.0, mid, "spread from now");
        let turns = turns(&tick, mid);
        assert!(
            turns.iter().filter(|t| **t <= mid).count() < 30,
            "no mass wake"
        );
        // Restarted ten minutes later with the anchor in the status: the same turns.
        let mut stored = office();
        stored.status = Some(crate::api::CloudPhoneScheduleStatus {
            wave: Some(active.wave.clone()),
            ..Default::default()
        });
        let later = utc("2026-07-01T10:10:00Z");
        let resumed = ScheduleTick::read(&stored, later, RESTORE_ESTIMATE, None);
        let ScheduleState::Active(resumed) = &resumed.state else {
            panic!("active")
        };
        assert_eq!(resumed.wave, active.wave);
    }

    #[test]
    fn phones_switched_to_scheduled_at_once_mid_window_take_turns_kept_in_their_status() {
        let mid = utc("2026-07-01T10:00:00Z");
        let tick = ScheduleTick::read(&office(), mid, RESTORE_ESTIMATE, None);
        let declared = CloudPhoneStatus {
            effective_lifecycle: Some(Lifecycle::BackedUp),
            effective_reason: Some(EffectiveReason::Declared),
            ..Default::default()
        };
        let kept: Vec<Kept> = (0..1000)
            .map(|i| {
                scheduled(
                    ScheduleLink::Found(&tick),
                    "office",
                    Some(&format!("uid-{i}")),
                    &declared,
                    Phase::Idle,
                    mid,
                )
            })
            .collect();
        let at_once = kept.iter().filter(|k| matches!(k, Kept::At(_))).count();
        assert!(
            at_once < 10,
            "{at_once} of 1000 switched phones woken at once"
        );
        // Ten minutes later, a held phone's turn is the one its status says, not one from then.
        let (i, turn, lifecycle) = kept
            .iter()
            .enumerate()
            .find_map(|(i, k)| match k {
                Kept::Held { shown, .. } => shown
                    .next
                    .filter(|(at, _)| *at > utc("2026-07-01T10:15:00Z"))
                    .map(|(at, l)| (i, at, l)),
                Kept::At(_) => None,
            })
            .expect("a phone whose turn is after 10:15");
        let written = CloudPhoneStatus {
            next_transition: Some(Box::new(crate::api::Transition {
                at: Time(turn),
                lifecycle,
            })),
            ..declared.clone()
        };
        let later = utc("2026-07-01T10:10:00Z");
        let tick = ScheduleTick::read(&office(), later, RESTORE_ESTIMATE, None);
        let uid = format!("uid-{i}");
        let again = scheduled(
            ScheduleLink::Found(&tick),
            "office",
            Some(&uid),
            &written,
            Phase::Idle,
            later,
        );
        assert!(
            matches!(again, Kept::Held { shown, .. } if shown.next == Some((turn, lifecycle))),
            "{again:?}"
        );
    }

    #[test]
    fn an_anchor_stored_for_an_older_generation_is_not_resumed() {
        // Suspended at 05:00 with the morning's wave stored; unsuspended (generation 2) at 10:00.
        let morning = ScheduleTick::read(
            &office(),
            utc("2026-07-01T05:30:00Z"),
            RESTORE_ESTIMATE,
            None,
        );
        let ScheduleState::Active(morning) = &morning.state else {
            panic!("active")
        };
        let mut unsuspended = office();
        unsuspended.metadata.generation = Some(2);
        unsuspended.status = Some(crate::api::CloudPhoneScheduleStatus {
            observed_generation: Some(1),
            wave: Some(morning.wave.clone()),
            ..Default::default()
        });
        let mid = utc("2026-07-01T10:00:00Z");
        let tick = ScheduleTick::read(&unsuspended, mid, RESTORE_ESTIMATE, None);
        let ScheduleState::Active(active) = &tick.state else {
            panic!("active")
        };
        assert_eq!(
            active.wave.from.0, mid,
            "spread from now, not from the morning"
        );
        // The same anchor recorded for the current generation is resumed.
        unsuspended.status.as_mut().unwrap().observed_generation = Some(2);
        let tick = ScheduleTick::read(&unsuspended, mid, RESTORE_ESTIMATE, None);
        let ScheduleState::Active(active) = &tick.state else {
            panic!("active")
        };
        assert_eq!(active.wave, morning.wave);
    }

    #[test]
    fn a_phone_whose_schedule_cannot_be_followed_is_held_as_it_was() {
        let loaded = CloudPhoneStatus {
            effective_lifecycle: Some(Lifecycle::Loaded),
            effective_reason: Some(EffectiveReason::ScheduleWindow),
            ..Default::default()
        };
        let mut invalid = office();
        invalid.spec.time_zone = "Europe/Atlantis".into();
        let mut suspended = office();
        suspended.spec.suspend = true;
        let night = utc("2026-07-01T22:00:00Z");
        let invalid = ScheduleTick::read(&invalid, night, RESTORE_ESTIMATE, None);
        let suspended = ScheduleTick::read(&suspended, night, RESTORE_ESTIMATE, None);
        for (link, reason) in [
            (ScheduleLink::Missing, SCHEDULE_NOT_FOUND),
            (ScheduleLink::NotSynced, SCHEDULE_NOT_FOUND),
            (ScheduleLink::Found(&invalid), SCHEDULE_INVALID),
            (ScheduleLink::Found(&suspended), SCHEDULE_SUSPENDED),
        ] {
            let kept = scheduled(link, "office", Some("u"), &loaded, Phase::DataLoaded, night);
            let Kept::Held { shown, ready } = kept else {
                panic!("{reason}: held")
            };
            assert_eq!(shown.lifecycle, Lifecycle::Loaded, "{reason}");
            assert_eq!(ready.map(|r| r.0), Some(reason));
        }
    }

    #[test]
    fn a_phone_already_switched_is_kept_and_one_outside_its_turn_is_not_moved() {
        let tick = ScheduleTick::read(
            &office(),
            utc("2026-07-01T05:30:00Z"),
            RESTORE_ESTIMATE,
            None,
        );
        let loaded = CloudPhoneStatus {
            effective_lifecycle: Some(Lifecycle::Loaded),
            ..Default::default()
        };
        assert!(matches!(
            scheduled(ScheduleLink::Found(&tick), "o", Some("u"), &loaded, Phase::Idle, utc("2026-07-01T05:30:00Z")),
            Kept::At(e) if e.lifecycle == Lifecycle::Loaded
        ));
        // Outside the window, nobody is woken.
        let night = ScheduleTick::read(
            &office(),
            utc("2026-07-01T22:00:00Z"),
            RESTORE_ESTIMATE,
            None,
        );
        for i in 0..100 {
            let kept = scheduled(
                ScheduleLink::Found(&night),
                "o",
                Some(&format!("u{i}")),
                &backed_up(),
                Phase::Idle,
                utc("2026-07-01T22:00:00Z"),
            );
            assert!(matches!(kept, Kept::At(e) if e.lifecycle == Lifecycle::BackedUp));
        }
    }
}
