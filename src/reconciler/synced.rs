//! Hysteresis of the `Synced` condition: a phone's failed status query is reported only once the
//! failure has persisted, so that a blip (one lost answer, one 5xx) writes nothing.

use crate::plan::Observation;
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;

/// How long a failure must persist before `Synced` turns False: a number of consecutive ticks
/// (`3`), or a duration (`2m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncedAfter {
    Ticks(u32),
    Duration(Duration),
}

impl Default for SyncedAfter {
    fn default() -> Self {
        // Three ticks: 90s at the default interval, long enough to ride out a vendor blip, short
        // enough that a real outage shows on the phones within two minutes.
        SyncedAfter::Ticks(3)
    }
}

impl FromStr for SyncedAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<SyncedAfter, String> {
        let text = text.trim();
        if let Ok(ticks) = text.parse::<u32>() {
            return if ticks == 0 {
                Err("0 ticks: give 1 or more (1 reports a failure at once), or a duration such as 2m".into())
            } else {
                Ok(SyncedAfter::Ticks(ticks))
            };
        }
        humantime::parse_duration(text)
            .map(SyncedAfter::Duration)
            .map_err(|e| format!("{text:?} is neither a number of ticks nor a duration: {e}"))
    }
}

impl fmt::Display for SyncedAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncedAfter::Ticks(n) => write!(f, "{n} ticks"),
            SyncedAfter::Duration(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// The failures of the last ticks, per account scope and instance id (one id in two scopes is two
/// instances): how many ticks in a row, since when.
#[derive(Debug, Default)]
pub struct FailureMemory {
    failing: HashMap<String, HashMap<String, (u32, Instant)>>,
}

impl FailureMemory {
    /// Removes each failed observation whose failure has not persisted long enough yet (the phone
    /// is then planned as not observed this tick: nothing changes), and forgets the instances
    /// that answered.
    pub fn debounce(
        &mut self,
        scope: &str,
        observations: &mut HashMap<String, Observation>,
        rule: SyncedAfter,
    ) {
        let now = Instant::now();
        observations.retain(|id, observation| {
            if !matches!(observation, Observation::Failed(_)) {
                if let Some(failing) = self.failing.get_mut(scope) {
                    failing.remove(id);
                }
                return true;
            }
            let (ticks, since) = self
                .failing
                .entry(scope.to_owned())
                .or_default()
                .entry(id.clone())
                .or_insert((0, now));
            *ticks = ticks.saturating_add(1);
            match rule {
                SyncedAfter::Ticks(n) => *ticks >= n,
                SyncedAfter::Duration(d) => now.duration_since(*since) >= d,
            }
        });
    }

    /// Forgets the instances not queried this tick (deleted, suspended, or handed over), given as
    /// (scope, instance id).
    pub fn forget_except<'a>(&mut self, queried: impl IntoIterator<Item = (&'a str, &'a str)>) {
        if self.failing.values().all(HashMap::is_empty) {
            self.failing.clear();
            return;
        }
        let queried: std::collections::HashSet<(&str, &str)> = queried.into_iter().collect();
        for (scope, failing) in &mut self.failing {
            failing.retain(|id, _| queried.contains(&(scope.as_str(), id.as_str())));
        }
        self.failing.retain(|_, failing| !failing.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Failure;

    fn failed() -> Observation {
        Observation::Failed(Failure {
            reason: "ServerError".into(),
            message: "batch-query-status call answered HTTP 500".into(),
        })
    }

    fn tick(memory: &mut FailureMemory, obs: Observation, rule: SyncedAfter) -> bool {
        let mut map = HashMap::from_iter([("a".to_owned(), obs)]);
        memory.debounce("default", &mut map, rule);
        map.contains_key("a")
    }

    #[test]
    fn a_failure_shows_on_its_third_tick_in_a_row_and_a_success_resets_the_count() {
        let rule = SyncedAfter::Ticks(3);
        let mut m = FailureMemory::default();
        assert!(!tick(&mut m, failed(), rule));
        assert!(!tick(&mut m, failed(), rule));
        assert!(
            tick(&mut m, Observation::Status(0), rule),
            "answers pass at once"
        );
        assert!(!tick(&mut m, failed(), rule), "the count starts again");
        assert!(!tick(&mut m, failed(), rule));
        assert!(tick(&mut m, failed(), rule));
        assert!(tick(&mut m, failed(), rule));
    }

    #[test]
    fn one_id_fails_apart_in_each_account_scope() {
        let rule = SyncedAfter::Ticks(2);
        let mut m = FailureMemory::default();
        for _ in 0..2 {
            let mut a = HashMap::from_iter([("kp1".to_owned(), failed())]);
            m.debounce("tenant-a", &mut a, rule);
            let mut b = HashMap::from_iter([("kp1".to_owned(), Observation::Status(0))]);
            m.debounce("tenant-b", &mut b, rule);
            m.forget_except([("tenant-a", "kp1"), ("tenant-b", "kp1")]);
        }
        let mut a = HashMap::from_iter([("kp1".to_owned(), failed())]);
        m.debounce("tenant-a", &mut a, rule);
        assert!(
            a.contains_key("kp1"),
            "another tenant's answer for the same id does not reset this one's failures"
        );
    }

    #[tokio::test]
    async fn a_duration_rule_waits_that_long() {
        let _deadline = crate::test_deadline::deadline("a_duration_rule_waits_that_long");
        let rule = SyncedAfter::Duration(Duration::from_millis(50));
        let mut m = FailureMemory::default();
        assert!(!tick(&mut m, failed(), rule));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(tick(&mut m, failed(), rule));
    }

    #[test]
    fn the_rule_reads_as_ticks_or_a_duration() {
        assert_eq!("3".parse(), Ok(SyncedAfter::Ticks(3)));
        assert_eq!(
            "2m".parse(),
            Ok(SyncedAfter::Duration(Duration::from_secs(120)))
        );
        assert!("0".parse::<SyncedAfter>().unwrap_err().contains("0 ticks"));
        assert!("soon".parse::<SyncedAfter>().unwrap_err().contains("soon"));
    }
}
