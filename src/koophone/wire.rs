//! The vendor's request and answer bodies, as koophone-api.md documents them, with every reading the
//! pages disagree on accepted.

use serde::{Deserialize, Deserializer, Serialize};

/// The body of both calls: `{"instance_ids": [...]}`.
#[derive(Serialize, Debug)]
pub(crate) struct InstanceIdsRequest<'a> {
    pub instance_ids: &'a [String],
}

/// The fields every answer carries: `error_code` (`"0"` is success) and `error_msg`.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct Envelope {
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
}

/// The status answer, with or without its `data` wrapper.
#[derive(Deserialize, Debug)]
pub(crate) struct StatusAnswer {
    #[serde(default)]
    pub data: Option<StatusData>,
    #[serde(default)]
    pub status_results: Option<Vec<StatusResult>>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct StatusData {
    #[serde(default)]
    pub status_results: Vec<StatusResult>,
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
            (Some(data), _) => Some(data.status_results),
            (None, Some(results)) => Some(results),
            (None, None) => None,
        }
    }
}

/// The backup answer; `data` appears only in newer versions.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct BackupAnswer {
    #[serde(default)]
    pub data: Option<BackupData>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct BackupData {
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub cmd_jobs: Vec<CmdJob>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct CmdJob {
    pub instance_id: String,
    #[serde(default)]
    pub job_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(serde_json::Number),
}

/// `error_code` is a string in the pages; a number is accepted too.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<StringOrNumber>::deserialize(d)?.map(|v| match v {
        StringOrNumber::String(s) => s,
        StringOrNumber::Number(n) => n.to_string(),
    }))
}

/// `status` is an integer in the pages; a numeric string is accepted too.
fn integer_or_numeric_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match StringOrNumber::deserialize(d)? {
        StringOrNumber::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom(format!("status {n} is not an integer"))),
        StringOrNumber::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("status {s:?} is not an integer"))),
    }
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
    fn error_code_may_be_a_number() {
        let env: Envelope = serde_json::from_str(r#"{"error_code":0}"#).unwrap();
        assert_eq!(env.error_code.as_deref(), Some("0"));
    }
}
