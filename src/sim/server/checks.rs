//! The vendor's checks of a request before it looks at any instance (its headers, its body's
//! shape, the limits on ids), and the error body of a refused request.

use crate::sim::{SimState, tenant_label};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const MAX_IDS: usize = 100;
const MAX_ID_LEN: usize = 32;
const MAX_USER_ID_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    QueryStatus,
    Backup,
    Prepare,
    PrepareProgress,
}

impl Call {
    pub(super) fn name(self) -> &'static str {
        match self {
            Call::QueryStatus => "batch-query-status",
            Call::Backup => "backup",
            Call::Prepare => "prepare",
            Call::PrepareProgress => "prepare-progress",
        }
    }
}

pub(super) fn vendor_error(status: StatusCode, code: &str, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error_code": format!("KOOPHONE.API.{code}"), "error_msg": msg.into()})),
    )
        .into_response()
}

/// The checks the vendor makes before it looks at any instance; returns the ids of a good request
/// (prepare-progress names one instance).
pub(super) fn check_request(
    inner: &mut SimState,
    call: Call,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<(String, Vec<String>, Option<String>), Box<Response>> {
    let tenant = match inner
        .identities
        .check(headers, uri.path(), uri.query().unwrap_or(""), body)
    {
        Ok(tenant) => tenant,
        Err(message) => {
            inner.counters.unauthorized += 1;
            return Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error_code": "APIGW.0301", "error_msg": message})),
                )
                    .into_response(),
            ));
        }
    };
    *inner
        .counters
        .calls_by_tenant
        .entry(tenant_label(&tenant).to_owned())
        .or_default() += 1;
    let has_request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !has_request_id {
        return Err(Box::new(vendor_error(
            StatusCode::BAD_REQUEST,
            "0002",
            "the x-request-id header is missing",
        )));
    }
    let bad = |msg: String| Box::new(vendor_error(StatusCode::BAD_REQUEST, "1000", msg));
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let mut user = None;
    if matches!(call, Call::Prepare | Call::PrepareProgress) {
        match value.get("user_id").map(Value::as_str) {
            Some(Some(named)) if (1..=MAX_USER_ID_LEN).contains(&named.chars().count()) => {
                user = Some(named.to_owned());
            }
            Some(Some(user)) => {
                return Err(bad(format!(
                    "user_id: {user:?} must be between 1 and {MAX_USER_ID_LEN} characters"
                )));
            }
            Some(None) => return Err(bad("user_id must be a string".into())),
            None => return Err(bad("user_id is required".into())),
        }
    }
    if call == Call::PrepareProgress {
        return match value.get("instance_id").map(Value::as_str) {
            Some(Some(id)) if (1..=MAX_ID_LEN).contains(&id.chars().count()) => {
                Ok((tenant, vec![id.to_owned()], user))
            }
            Some(Some(id)) => Err(bad(format!(
                "instance_id: {id:?} must be between 1 and {MAX_ID_LEN} characters"
            ))),
            Some(None) => Err(bad("instance_id must be a string".into())),
            None => Err(bad("instance_id is required".into())),
        };
    }
    let Some(list) = value.get("instance_ids") else {
        return Err(bad("instance_ids is required".into()));
    };
    let Some(list) = list.as_array() else {
        return Err(bad("instance_ids must be an array of strings".into()));
    };
    if list.is_empty() || list.len() > MAX_IDS {
        return Err(bad(format!(
            "instance_ids holds {} ids; between 1 and {MAX_IDS} are allowed",
            list.len()
        )));
    }
    let mut ids = Vec::with_capacity(list.len());
    for item in list {
        let Some(id) = item.as_str() else {
            return Err(bad("instance_ids must be an array of strings".into()));
        };
        if id.is_empty() || id.chars().count() > MAX_ID_LEN {
            return Err(bad(format!(
                "instance_ids: {id:?} must be between 1 and {MAX_ID_LEN} characters"
            )));
        }
        ids.push(id.to_owned());
    }
    Ok((tenant, ids, user))
}
