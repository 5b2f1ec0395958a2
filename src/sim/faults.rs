//! Fault injection: which calls the simulator answers badly, and how.

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Faults the simulator injects; every rate is a probability in [0, 1] per call.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every answer.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Rate of calls that take `latency_spike` longer (to push calls past the client's time-out).
    pub latency_spike_rate: f64,
    /// The extra delay of a spike.
    #[serde(with = "humantime_serde")]
    pub latency_spike: Duration,
    /// Rate of HTTP 500 answers (the call is not processed).
    pub server_error_rate: f64,
    /// Rate of HTTP 429 answers with `Retry-After: 1` (the call is not processed).
    pub rate_limit_rate: f64,
    /// Rate of HTTP 200 answers carrying business error 9999 (the call is not processed).
    pub business_error_rate: f64,
    /// Rate of HTTP 200 answers whose body is not JSON (the call *is* processed first).
    pub garbage_rate: f64,
    /// Instances the simulator pretends not to know: left out of status answers, 4001 on backup.
    pub unknown_ids: BTreeSet<String>,
    /// Instances the vendor refuses as a wrong parameter: any call naming one is answered HTTP 400
    /// with code 1000, whole (the call is not processed).
    pub rejected_ids: BTreeSet<String>,
    /// The next this-many calls answer HTTP 500 (the call is not processed), whatever the rates.
    pub fail_next_calls: u32,
    /// Answer in the older shapes: status results without the `data` wrapper, backup without `data`.
    pub legacy_answers: bool,
    /// Instances that do not belong to the tenant: any call naming one is answered HTTP 200 with
    /// business error 1012, whole (the call is not processed).
    pub foreign_ids: BTreeSet<String>,
    /// Instances the vendor says do not exist: any call naming one is answered HTTP 200 with
    /// business error 4001, whole (the call is not processed).
    pub vanished_ids: BTreeSet<String>,
    /// Answer every call with this error (a configuration error such as `0000`, tenant not
    /// found), whatever it names (the call is not processed).
    pub answer_all: Option<CannedError>,
    /// Answer every backup call with this error (a gateway refusing the backup path, a request
    /// shape the vendor no longer takes), whatever it names; status queries are answered as usual.
    #[serde(default)]
    pub answer_all_backups: Option<CannedError>,
    /// Answer every prepare call with this error (a user the vendor does not know, say), whatever
    /// it names; status queries are answered as usual.
    #[serde(default)]
    pub answer_all_prepares: Option<CannedError>,
    /// Answer every prepare-progress call with this error (the vendor cannot tell where a prepare
    /// stands), whatever it names; other calls are answered as usual.
    #[serde(default)]
    pub answer_all_progress: Option<CannedError>,
}

/// An error answer: HTTP status and the vendor's code number (`0000` becomes `KOOPHONE.API.0000`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CannedError {
    pub status: u16,
    pub code: String,
}

/// The fault drawn for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    ServerError,
    RateLimited,
    BusinessError,
    Garbage,
}

/// A fault rate that is not a probability, named by its field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field}: {rate} is not a probability in [0, 1]")]
pub struct BadRate {
    pub field: &'static str,
    pub rate: f64,
}

impl Faults {
    /// Refuses rates outside [0, 1], naming the field.
    pub fn validate(&self) -> Result<(), BadRate> {
        for (name, rate) in [
            ("latency_spike_rate", self.latency_spike_rate),
            ("server_error_rate", self.server_error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("business_error_rate", self.business_error_rate),
            ("garbage_rate", self.garbage_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(BadRate { field: name, rate });
            }
        }
        Ok(())
    }

    /// Draws which fault, if any, this call suffers.
    pub fn draw(&mut self, rng: &mut StdRng) -> Option<Injected> {
        if self.fail_next_calls > 0 {
            self.fail_next_calls -= 1;
            return Some(Injected::ServerError);
        }
        [
            (self.server_error_rate, Injected::ServerError),
            (self.rate_limit_rate, Injected::RateLimited),
            (self.business_error_rate, Injected::BusinessError),
            (self.garbage_rate, Injected::Garbage),
        ]
        .into_iter()
        .find(|(rate, _)| *rate > 0.0 && rng.random_bool(*rate))
        .map(|(_, fault)| fault)
    }

    /// The delay to add to this call.
    pub fn delay(&self, rng: &mut StdRng) -> Duration {
        let spike = self.latency_spike_rate > 0.0 && rng.random_bool(self.latency_spike_rate);
        if spike {
            self.latency + self.latency_spike
        } else {
            self.latency
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rates_outside_zero_one_are_refused_by_name() {
        let faults = Faults {
            garbage_rate: 1.5,
            ..Faults::default()
        };
        let err = faults.validate().unwrap_err();
        assert_eq!(err.field, "garbage_rate");
        assert!(err.to_string().contains("garbage_rate"));
    }

    #[test]
    fn no_faults_by_default_and_certain_faults_always() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Faults::default().draw(&mut rng), None);
        let mut always = Faults {
            rate_limit_rate: 1.0,
            ..Faults::default()
        };
        assert_eq!(always.draw(&mut rng), Some(Injected::RateLimited));
    }

    #[test]
    fn fail_next_calls_fails_exactly_that_many() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut faults = Faults {
            fail_next_calls: 2,
            ..Faults::default()
        };
        assert_eq!(faults.draw(&mut rng), Some(Injected::ServerError));
        assert_eq!(faults.draw(&mut rng), Some(Injected::ServerError));
        assert_eq!(faults.draw(&mut rng), None);
    }

    #[test]
    fn faults_read_from_json_with_durations() {
        let f: Faults =
            serde_json::from_str(r#"{"latency":"20ms","server_error_rate":0.2}"#).unwrap();
        assert_eq!(f.latency, Duration::from_millis(20));
        assert!(serde_json::from_str::<Faults>(r#"{"latncy":"20ms"}"#).is_err());
    }
}
