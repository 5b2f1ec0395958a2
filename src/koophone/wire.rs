//! The vendor's request and answer bodies, as koophone-api.md documents them, with every reading the
//! pages disagree on accepted.

use serde::{Deserialize, Deserializer, Serialize};

/// The body of the status and backup calls: `{"instance_ids": [...]}`.
#[derive(Serialize, Debug)]
pub(crate) struct InstanceIdsRequest<'a> {
    pub instance_ids: &'a [String],
}

/// The body of a prepare call: `{"user_id": "...", "instance_ids": [...]}`.
#[derive(Serialize, Debug)]
pub(crate) struct PrepareRequest<'a> {
    pub user_id: &'a str,
    pub instance_ids: &'a [String],
}

/// The body of a prepare-progress call: `{"user_id": "...", "instance_id": "..."}`.
#[derive(Serialize, Debug)]
pub(crate) struct ProgressRequest<'a> {
    pub user_id: &'a str,
    pub instance_id: &'a str,
}

/// The fields every answer carries: `error_code` (`"0"` is success) and `error_msg`.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct Envelope {
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
}

/// An answer body: its own fields, and the envelope's, read in one pass.
pub(crate) trait Answer: serde::de::DeserializeOwned {
    /// `error_code` and `error_msg`.
    fn envelope(&self) -> (Option<&str>, Option<&str>);
}

/// The status answer, with or without its `data` wrapper.
#[derive(Deserialize, Debug)]
pub(crate) struct StatusAnswer {
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
    #[serde(default)]
    pub data: Option<StatusData>,
    #[serde(default)]
    pub status_results: Option<Vec<StatusResult>>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct StatusData {
    /// NB: no default: an answer without `status_results` is an error, not "every instance
    /// vanished" (which would mark a whole fleet NotFound on one malformed answer).
    pub status_results: Option<Vec<StatusResult>>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct StatusResult {
    pub instance_id: String,
    #[serde(deserialize_with = "integer_or_numeric_string")]
    pub status: i64,
}

impl StatusAnswer {
    /// The results, wherever the answer put them; `None` when it has neither shape.
    pub fn into_results(self) -> Option<Vec<StatusResult>> {
        match (self.data, self.status_results) {
            (
                Some(StatusData {
                    status_results: Some(results),
                }),
                _,
            )
            | (_, Some(results)) => Some(results),
            _ => None,
        }
    }
}

/// The backup answer; `data` appears only in newer versions.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct BackupAnswer {
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
    #[serde(default)]
    pub data: Option<BackupData>,
}

/// The prepare answer; its per-instance `status_list` is recorded when present, never required.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct PrepareAnswer {
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
    #[serde(default)]
    pub data: Option<PrepareData>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct PrepareData {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub status_list: Vec<PrepareStatus>,
}

/// One instance's answer to a prepare call. Either field may be missing or odd: such an entry is
/// ignored, never a reason to fail the answer.
#[derive(Deserialize, Debug)]
pub(crate) struct PrepareStatus {
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_integer")]
    pub status: Option<i64>,
}

/// The prepare-progress answer: `data.status` and `data.waitingCount`.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct ProgressAnswer {
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
    #[serde(default)]
    pub data: Option<ProgressData>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct ProgressData {
    /// NB: no default: an answer without a status tells nothing, and is an error.
    #[serde(deserialize_with = "integer_or_numeric_string")]
    pub status: i64,
    #[serde(default, rename = "waitingCount", deserialize_with = "lenient_integer")]
    pub waiting_count: Option<i64>,
}

impl Answer for PrepareAnswer {
    fn envelope(&self) -> (Option<&str>, Option<&str>) {
        (self.error_code.as_deref(), self.error_msg.as_deref())
    }
}

impl Answer for ProgressAnswer {
    fn envelope(&self) -> (Option<&str>, Option<&str>) {
        (self.error_code.as_deref(), self.error_msg.as_deref())
    }
}

impl Answer for StatusAnswer {
    fn envelope(&self) -> (Option<&str>, Option<&str>) {
        (self.error_code.as_deref(), self.error_msg.as_deref())
    }
}

impl Answer for BackupAnswer {
    fn envelope(&self) -> (Option<&str>, Option<&str>) {
        (self.error_code.as_deref(), self.error_msg.as_deref())
    }
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct BackupData {
    /// A string in the pages; some versions send a number.
    #[serde(default, deserialize_with = "string_or_number")]
    pub task_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cmd_jobs: Vec<CmdJob>,
}

/// One job of a backup task. Either field may be missing: a job without `instance_id` cannot be
/// matched to an instance and is ignored, never a reason to fail the answer.
#[derive(Deserialize, Debug)]
pub(crate) struct CmdJob {
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub job_id: Option<String>,
}

/// A list that may be `null`.
fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A string, or a JSON number as its text (`error_code`, `task_id`, `job_id`).
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    // NB: a visitor, not an untagged enum: that would buffer each value and try every variant.
    d.deserialize_any(Text)
}

/// `status` is an integer in the pages; a numeric string is accepted too.
/// An integer, or a string holding one; anything else (absent, `null`, a fraction, text) is `None`:
/// for fields the operator records but never requires.
fn lenient_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

fn integer_or_numeric_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Integer;
    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer, or a string holding one")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("status {v} is not an integer")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            Err(E::custom(format!("status {v} is not an integer")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("status {v:?} is not an integer")))
        }
    }
    d.deserialize_any(Integer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_answer_is_read_with_and_without_the_data_wrapper() {
        let wrapped: StatusAnswer = serde_json::from_str(
            r#"{"data":{"status_results":[{"instance_id":"a","status":0}]},"error_code":"0","error_msg":"ok"}"#,
        )
        .unwrap();
        let bare: StatusAnswer =
            serde_json::from_str(r#"{"status_results":[{"instance_id":"a","status":"3"}]}"#)
                .unwrap();
        assert_eq!(wrapped.into_results().unwrap()[0].status, 0);
        assert_eq!(bare.into_results().unwrap()[0].status, 3);
    }

    #[test]
    fn a_status_answer_without_results_is_refused_not_read_as_empty() {
        for body in [
            r#"{"error_code":"0","error_msg":"ok"}"#,
            r#"{"data":{},"error_code":"0"}"#,
            r#"{"data":{"status_results":null},"error_code":"0"}"#,
        ] {
            let answer: StatusAnswer = serde_json::from_str(body).unwrap();
            assert!(answer.into_results().is_none(), "{body}");
        }
        let empty: StatusAnswer =
            serde_json::from_str(r#"{"data":{"status_results":[]},"error_code":"0"}"#).unwrap();
        assert_eq!(empty.into_results().map(|r| r.len()), Some(0));
    }

    #[test]
    fn backup_answers_are_read_as_the_vendor_sends_them() {
        let answer: BackupAnswer = serde_json::from_str(
            r#"{"data":{"task_id":12345,"cmd_jobs":[{"job_id":"j1"},{"instance_id":"a","job_id":7},{"instance_id":"b"}]},"error_code":"0"}"#,
        )
        .unwrap();
        let data = answer.data.unwrap();
        assert_eq!(data.task_id.as_deref(), Some("12345"));
        assert_eq!(data.cmd_jobs.len(), 3);
        assert_eq!(data.cmd_jobs[1].job_id.as_deref(), Some("7"));
        let nulls: BackupAnswer =
            serde_json::from_str(r#"{"data":{"task_id":null,"cmd_jobs":null},"error_code":"0"}"#)
                .unwrap();
        assert!(nulls.data.unwrap().cmd_jobs.is_empty());
    }

    #[test]
    fn a_prepare_answers_per_instance_codes_are_recorded_when_present_and_never_required() {
        let answer: PrepareAnswer = serde_json::from_str(
            r#"{"error_code":"0","error_msg":"ok","data":{"status_list":[{"instance_id":"a","status":1},{"instance_id":"b","status":"0"},{"instance_id":"c","status":"odd"},{"status":3},{"instance_id":"d"}]}}"#,
        )
        .unwrap();
        let list = answer.data.unwrap().status_list;
        let read: Vec<(Option<&str>, Option<i64>)> = list
            .iter()
            .map(|s| (s.instance_id.as_deref(), s.status))
            .collect();
        assert_eq!(
            read,
            [
                (Some("a"), Some(1)),
                (Some("b"), Some(0)),
                (Some("c"), None),
                (None, Some(3)),
                (Some("d"), None)
            ]
        );
        for body in [
            r#"{"error_code":"0","error_msg":"ok"}"#,
            r#"{"error_code":"0","data":null}"#,
            r#"{"error_code":"0","data":{"status_list":null}}"#,
            r#"{"error_code":"0","data":{}}"#,
        ] {
            let answer: PrepareAnswer = serde_json::from_str(body).unwrap();
            assert!(
                answer.data.unwrap_or_default().status_list.is_empty(),
                "{body}"
            );
        }
    }

    #[test]
    fn a_prepare_progress_answer_needs_its_status() {
        let answer: ProgressAnswer =
            serde_json::from_str(r#"{"error_code":"0","data":{"status":"1","waitingCount":12}}"#)
                .unwrap();
        let data = answer.data.unwrap();
        assert_eq!((data.status, data.waiting_count), (1, Some(12)));
        assert!(serde_json::from_str::<ProgressAnswer>(r#"{"data":{"waitingCount":1}}"#).is_err());
    }

    #[test]
    fn an_answer_carries_its_envelope_and_a_status_must_be_an_integer() {
        let answer: StatusAnswer = serde_json::from_str(
            r#"{"error_code":"KOOPHONE.API.9999","error_msg":"busy","status_results":[]}"#,
        )
        .unwrap();
        assert_eq!(answer.envelope(), (Some("KOOPHONE.API.9999"), Some("busy")));
        for status in ["2.5", "\"two\"", "null", "true"] {
            let body = format!(r#"{{"status_results":[{{"instance_id":"a","status":{status}}}]}}"#);
            assert!(
                serde_json::from_str::<StatusAnswer>(&body).is_err(),
                "{status} was read as a status"
            );
        }
    }

    #[test]
    fn error_code_may_be_a_number() {
        let env: Envelope = serde_json::from_str(r#"{"error_code":0}"#).unwrap();
        assert_eq!(env.error_code.as_deref(), Some("0"));
    }
}
