//! After a whole tick: each CloudPhoneSchedule's status (what holds, its next change, its phones by
//! state, its wave's anchor, `PrewarmAtRisk`), written only where it changed, and the phones late
//! for their window.

use super::*;
use crate::api::Phase;

impl<S: PhoneStore> Engine<S> {
    /// Writes the statuses of the tick's schedules that changed; returns the phones late for their
    /// window (for `cloudphone_wave_late_phones`).
    pub(super) async fn write_schedules(
        &self,
        schedules: &TickSchedules,
        snapshot: &[Arc<CloudPhone>],
        phases: &[Phase],
        (accounts, bindings): (&TickAccounts<'_>, &[Binding]),
    ) -> i64 {
        let Some(source) = &self.schedules else {
            return 0;
        };
        let now = Timestamp::now();
        // NB: each account's status queries per tick, for the share of its pace a wave keeps.
        let mut queried = vec![0usize; accounts.entries.len()];
        for binding in bindings {
            if let Binding::Account(ix) = binding {
                queried[*ix] += 1;
            }
        }
        let pace = |i: usize| match bindings.get(i) {
            Some(Binding::Account(ix)) => {
                let client = accounts.entries[*ix].client.ok()?;
                let pace = plan::Pace {
                    calls: client.calls_per_second()?,
                    actions: client.action_calls_per_second()?,
                };
                Some((pace, queried[*ix].div_ceil(MAX_IDS_PER_CALL)))
            }
            _ => None,
        };
        let interval = self.config.tick_interval;
        let mut late = 0i64;
        for (schedule, tick, phones) in schedules.phones(snapshot, phases, pace, interval, now) {
            late += i64::from(phones.late);
            let old = schedule.status.as_ref();
            let Some(status) =
                plan::schedule_status(tick, schedule.metadata.generation, old, &phones, now)
            else {
                continue;
            };
            if let Err(why) = source.write_status(schedule, &status).await {
                let cause = std::error::Error::source(&why).map(ToString::to_string);
                warn!(schedule = %tick.key, error = %why, cause = cause.unwrap_or_default(), "CloudPhoneSchedule status write failed; retried next tick");
            }
        }
        late
    }
}
