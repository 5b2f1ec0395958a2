//! The readable phase of a phone, derived from the vendor's raw status code (design.md, "Phases").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The readable name of the vendor's status code, or what is known when there is no code.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum Phase {
    /// Not observed yet.
    #[default]
    Pending,
    /// Code 0: data in object storage, no physical instance held.
    Idle,
    /// Code 1: data being loaded onto a physical instance.
    Restoring,
    /// Codes 2 and 7: data on a physical instance, not streaming.
    DataLoaded,
    /// Code 3: a user is connected.
    Streaming,
    /// Code 4: backup in progress.
    BackingUp,
    /// Code 5: the vendor reports a backup exception.
    BackupFailed,
    /// Code 6: the vendor reports a restoration exception.
    RestoreFailed,
    /// A code this version does not know; `instanceStatus` still holds it.
    Unknown,
    /// The vendor's answer did not list this instance.
    NotFound,
}

impl Phase {
    /// Every phase, in the order of the design's table (used by tables and metrics).
    pub const ALL: &'static [Phase] = <Phase as strum::VariantArray>::VARIANTS;

    /// The phase of a vendor status code, per the newest status table of koophone-api.md.
    pub fn from_code(code: i64) -> Phase {
        match code {
            0 => Phase::Idle,
            1 => Phase::Restoring,
            2 | 7 => Phase::DataLoaded,
            3 => Phase::Streaming,
            4 => Phase::BackingUp,
            5 => Phase::BackupFailed,
            6 => Phase::RestoreFailed,
            _ => Phase::Unknown,
        }
    }

    /// True when the data is on a physical instance or on its way there (Restoring, DataLoaded,
    /// Streaming): a prepare is under way or done.
    pub fn is_loaded_or_loading(self) -> bool {
        matches!(
            self,
            Phase::Restoring | Phase::DataLoaded | Phase::Streaming
        )
    }

    /// True when the data is in object storage or on its way there (BackingUp, Idle): a backup
    /// is under way or done.
    pub fn is_parked_or_parking(self) -> bool {
        matches!(self, Phase::BackingUp | Phase::Idle)
    }

    /// The name as written in `.status.phase`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_maps_to_its_phase() {
        let table = [
            (0, Phase::Idle),
            (1, Phase::Restoring),
            (2, Phase::DataLoaded),
            (3, Phase::Streaming),
            (4, Phase::BackingUp),
            (5, Phase::BackupFailed),
            (6, Phase::RestoreFailed),
            (7, Phase::DataLoaded),
        ];
        for (code, phase) in table {
            assert_eq!(Phase::from_code(code), phase, "code {code}");
        }
    }

    #[test]
    fn unknown_codes_are_unknown_not_errors() {
        for code in [-1, 8, 42, i64::MAX, i64::MIN] {
            assert_eq!(Phase::from_code(code), Phase::Unknown);
        }
    }

    #[test]
    fn serialized_name_matches_as_str() {
        for phase in Phase::ALL {
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::json!(phase.as_str())
            );
        }
    }
}
