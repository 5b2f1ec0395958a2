//! The value parsers the subcommands' flags share: durations such as `500ms`, `30s` or `5m`.

use std::time::Duration;

/// Parses `500ms`, `30s`, `5m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 500ms, 30s or 5m: {e}"))
}

/// A duration that must not be zero, such as a tick interval.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "{text:?} is zero; give a positive duration such as 30s"
        )),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_name_the_value_and_an_example() {
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("\"soon\"") && err.contains("30s"), "{err}");
    }
}
