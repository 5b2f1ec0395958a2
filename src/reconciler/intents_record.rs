//! Where a term records until when its backup intents may still be outstanding, so that the next
//! term (another replica, or this one after a crash) knows how long an earlier term's intents for
//! owners it can no longer see may still be running. The engine reads it at the start of a term and
//! extends it before its calls; `run` keeps it in the Lease (annotation
//! [`INTENTS_UNTIL_ANNOTATION`]), [`MemoryIntentsRecord`] in memory.

use futures::future::BoxFuture;
use jiff::Timestamp;
use std::sync::{Arc, Mutex};

/// The Lease annotation (RFC 3339): until when the term that wrote it may have intents outstanding.
pub const INTENTS_UNTIL_ANNOTATION: &str = "cloudphone.io/intents-until";

/// Why the record could not be read or extended.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record holds a value that is no time.
    #[error("the intents record holds {value:?}, not an RFC 3339 time")]
    Invalid { value: String },
    /// This replica does not hold the Lease the record is kept in.
    #[error("the Lease is held by {holder:?}, not by this replica")]
    NotHolder { holder: Option<String> },
    /// The record's store failed (the API server did not answer, refused, or kept conflicting).
    #[error("the intents record could not be read or written: {source}")]
    Store {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The record of until when earlier terms' intents may be outstanding: read once a term, extended
/// (never lowered) before a call whose intent would end later than it.
pub trait IntentsRecord: Send + Sync + 'static {
    /// The recorded time, `None` when nothing was ever recorded.
    fn read(&self) -> BoxFuture<'_, Result<Option<Timestamp>, RecordError>>;

    /// Makes the record at least `until`, and returns once the store confirmed it. A record
    /// already later stays as it is.
    fn extend(&self, until: Timestamp) -> BoxFuture<'_, Result<(), RecordError>>;
}

/// The time as the record spells it: RFC 3339, whole seconds rounded up (the record is an upper
/// bound).
pub fn format_until(until: Timestamp) -> String {
    let whole = if until.subsec_nanosecond() == 0 {
        until
    } else {
        Timestamp::from_second(until.as_second().saturating_add(1)).unwrap_or(Timestamp::MAX)
    };
    whole.to_string()
}

/// Reads a recorded time.
pub fn parse_until(value: &str) -> Result<Timestamp, RecordError> {
    value.parse().map_err(|_| RecordError::Invalid {
        value: value.chars().take(64).collect(),
    })
}

/// A record in memory, shared by its clones: what one process's engines share (the quick start,
/// the tests), and a fresh one is a fresh install.
#[derive(Clone, Debug, Default)]
pub struct MemoryIntentsRecord(Arc<Mutex<Option<Timestamp>>>);

impl MemoryIntentsRecord {
    /// The recorded time.
    pub fn get(&self) -> Option<Timestamp> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IntentsRecord for MemoryIntentsRecord {
    fn read(&self) -> BoxFuture<'_, Result<Option<Timestamp>, RecordError>> {
        Box::pin(async move { Ok(self.get()) })
    }

    fn extend(&self, until: Timestamp) -> BoxFuture<'_, Result<(), RecordError>> {
        Box::pin(async move {
            let mut recorded = self.0.lock().unwrap_or_else(|p| p.into_inner());
            *recorded = (*recorded).max(Some(until));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_time_is_whole_seconds_rounded_up_and_reads_back() {
        let at: Timestamp = "2026-12-06T21:00:00.250Z".parse().unwrap();
        let text = format_until(at);
        assert_eq!(text, "2026-12-06T21:00:01Z");
        assert!(parse_until(&text).unwrap() >= at);
        assert!(matches!(
            parse_until("soon"),
            Err(RecordError::Invalid { .. })
        ));
    }
}
