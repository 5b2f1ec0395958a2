//! The simulator's HTTP surface: the vendor's two endpoints with the vendor's checks and answer
//! shapes, and an admin API under `/sim/` for tests and benchmarks.
//!
//! NB: this module deliberately shares no types with `crate::koophone`: it is written from
//! koophone-api.md alone, so that a wrong field name in the client cannot pass the tests.

use super::fleet::{BackupRefusal, parse_state};
use super::{Faults, Injected, SharedSim, Timings};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

const MAX_IDS: usize = 100;
const MAX_ID_LEN: usize = 32;

pub(super) fn router(shared: Arc<SharedSim>) -> Router {
    Router::new()
        .route("/v1/instances/batch-query-status", post(query_status))
        .route("/v1/instances/backup", post(backup))
        .route("/v3/auth/tokens", post(issue_token))
        .route("/sim/iam/revoke", post(revoke_tokens))
        .route("/sim/counters", get(counters))
        .route("/sim/counters/reset", post(reset_counters))
        .route("/sim/instances", get(list_instances).put(put_instances))
        .route("/sim/faults", get(get_faults).put(put_faults))
        .route("/sim/timings", get(get_timings).put(put_timings))
        .with_state(shared)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    QueryStatus,
    Backup,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::QueryStatus => "batch-query-status",
            Call::Backup => "backup",
        }
    }
}

fn vendor_error(status: StatusCode, code: &str, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error_code": format!("KOOPHONE.API.{code}"), "error_msg": msg.into()})),
    )
        .into_response()
}

/// The checks the vendor makes before it looks at any instance; returns the ids of a good request.
fn check_request(
    inner: &mut super::SimState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<(String, Vec<String>), Box<Response>> {
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
        .entry(super::tenant_label(&tenant).to_owned())
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
    Ok((tenant, ids))
}

/// A request being answered, counted in `in_flight` until it is answered or dropped.
struct InFlight {
    shared: Arc<SharedSim>,
    call: Call,
}

impl InFlight {
    fn enter(shared: &Arc<SharedSim>, call: Call) -> InFlight {
        shared.lock().counters.enter(call.name());
        InFlight {
            shared: shared.clone(),
            call,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.lock().counters.leave(self.call.name());
    }
}

/// What a call does once its checks passed: answers the request, or fails it with a fault.
async fn serve(
    shared: Arc<SharedSim>,
    call: Call,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared, call);
    let (response, delay) = {
        let mut inner = shared.lock();
        let (tenant, checked) = match check_request(&mut inner, &headers, &uri, &body) {
            Ok((tenant, ids)) => (tenant, Ok(ids)),
            Err(response) => (String::new(), Err(response)),
        };
        inner
            .counters
            .record_call(call.name(), checked.as_ref().map_or(0, Vec::len));
        let super::SimState {
            faults, fault_rng, ..
        } = &mut *inner;
        let delay = faults.delay(fault_rng);
        let response = match checked {
            Err(response) => {
                inner.counters.record_outcome(call.name(), "refused");
                *response
            }
            Ok(_)
                if let Some(canned) = inner.faults.answer_all.clone().or_else(|| {
                    (call == Call::Backup)
                        .then(|| inner.faults.answer_all_backups.clone())
                        .flatten()
                }) =>
            {
                inner.counters.record_outcome(call.name(), "refused");
                vendor_error(
                    StatusCode::from_u16(canned.status).unwrap_or(StatusCode::BAD_REQUEST),
                    &canned.code,
                    "refused (injected)",
                )
            }
            Ok(ids) if ids.iter().any(|id| inner.faults.vanished_ids.contains(id)) => {
                inner.counters.record_outcome(call.name(), "refused");
                vendor_error(StatusCode::OK, "4001", "the instance does not exist")
            }
            Ok(ids) if ids.iter().any(|id| inner.faults.foreign_ids.contains(id)) => {
                inner.counters.record_outcome(call.name(), "refused");
                vendor_error(
                    StatusCode::OK,
                    "1012",
                    "the instance does not belong to the tenant",
                )
            }
            Ok(ids) if ids.iter().any(|id| inner.faults.rejected_ids.contains(id)) => {
                inner.counters.record_outcome(call.name(), "refused");
                let id = ids
                    .iter()
                    .find(|id| inner.faults.rejected_ids.contains(*id))
                    .map_or("", |id| id.as_str());
                vendor_error(
                    StatusCode::BAD_REQUEST,
                    "1000",
                    format!("instance_ids: {id:?} is not a valid instance id"),
                )
            }
            Ok(ids) => {
                let super::SimState {
                    faults, fault_rng, ..
                } = &mut *inner;
                let fault = faults.draw(fault_rng);
                let (outcome, response) = match fault {
                    Some(Injected::ServerError) => (
                        "injected-500",
                        vendor_error(StatusCode::INTERNAL_SERVER_ERROR, "9999", "internal error (injected)"),
                    ),
                    Some(Injected::RateLimited) => (
                        "injected-429",
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [(header::RETRY_AFTER, "1")],
                            Json(json!({"error_code": "APIGW.0308", "error_msg": "flow control (injected)"})),
                        )
                            .into_response(),
                    ),
                    Some(Injected::BusinessError) => (
                        "injected-business-error",
                        vendor_error(StatusCode::OK, "9999", "internal error (injected)"),
                    ),
                    Some(Injected::Garbage) => {
                        // Processed, then the answer is lost: the worst case for the caller.
                        let _ = process(&mut inner, call, &tenant, &ids, &shared);
                        (
                            "injected-garbage",
                            (StatusCode::OK, "<html>502 Bad Gateway</html>\u{0}").into_response(),
                        )
                    }
                    None => process(&mut inner, call, &tenant, &ids, &shared),
                };
                inner.counters.record_outcome(call.name(), outcome);
                response
            }
        };
        (response, delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Answers a checked call of `tenant` for its instances `ids`.
fn process(
    inner: &mut super::SimState,
    call: Call,
    tenant: &str,
    ids: &[String],
    shared: &SharedSim,
) -> (&'static str, Response) {
    let now = Instant::now();
    // The fleet's names of the tenant's instances: another tenant's instance of the same id is
    // another instance, and never listed.
    let keys: Vec<String> = ids.iter().map(|id| super::fleet_key(tenant, id)).collect();
    if let Some(status) = shared.auto_create {
        for (id, key) in ids.iter().zip(&keys) {
            if !inner.faults.unknown_ids.contains(id) && inner.fleet.get(key, now).is_none() {
                inner.fleet.set(key, status, now);
            }
        }
    }
    let legacy = inner.faults.legacy_answers;
    match call {
        Call::QueryStatus => {
            let mut results = Vec::with_capacity(ids.len());
            for (id, key) in ids.iter().zip(&keys) {
                if inner.faults.unknown_ids.contains(id) {
                    continue;
                }
                if let Some(instance) = inner.fleet.get(key, now) {
                    results.push(json!({"instance_id": id, "status": instance.status}));
                }
            }
            let body = if legacy {
                json!({"status_results": results, "error_code": "0", "error_msg": "ok"})
            } else {
                json!({"data": {"status_results": results}, "error_code": "0", "error_msg": "ok"})
            };
            ("ok", Json(body).into_response())
        }
        Call::Backup => {
            let refusal = ids
                .iter()
                .find(|id| inner.faults.unknown_ids.contains(*id))
                .map(|id| (id.clone(), BackupRefusal::NotFound));
            let result = match refusal {
                Some(refusal) => Err(refusal),
                None => inner
                    .fleet
                    .backup(&keys, now)
                    .map_err(|(key, why)| (super::id_of(&key).to_owned(), why)),
            };
            match result {
                Ok(()) => {
                    inner.counters.backups_started += ids.len() as u64;
                    let body = if legacy {
                        json!({"error_code": "0", "error_msg": "OK"})
                    } else {
                        let task = uuid::Uuid::new_v4().to_string();
                        let jobs: Vec<Value> = ids
                            .iter()
                            .map(|id| json!({"instance_id": id, "job_id": uuid::Uuid::new_v4().to_string()}))
                            .collect();
                        json!({"data": {"task_id": task, "cmd_jobs": jobs}, "error_code": "0", "error_msg": "OK"})
                    };
                    ("ok", Json(body).into_response())
                }
                Err((id, why)) => {
                    let (code, msg) = match why {
                        BackupRefusal::NotFound => {
                            ("4001", format!("instance {id} does not exist"))
                        }
                        BackupRefusal::BackingUp => {
                            ("2006", format!("instance {id} is being backed up"))
                        }
                        BackupRefusal::Restoring => {
                            ("2005", format!("instance {id} is being restored"))
                        }
                        BackupRefusal::WrongState => (
                            "1000",
                            format!(
                                "instance {id} holds no data on a physical instance to back up"
                            ),
                        ),
                    };
                    let status = if shared.business_errors_as_200 {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    ("refused", vendor_error(status, code, msg))
                }
            }
        }
    }
}

async fn query_status(
    State(shared): State<Arc<SharedSim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    serve(shared, Call::QueryStatus, headers, uri, body).await
}

async fn backup(
    State(shared): State<Arc<SharedSim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    serve(shared, Call::Backup, headers, uri, body).await
}

async fn issue_token(State(shared): State<Arc<SharedSim>>, body: axum::body::Bytes) -> Response {
    let mut inner = shared.lock();
    inner.counters.iam_calls += 1;
    let (status, token, answer) = inner.identities.issue(&body);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match token {
        Some(token) => (status, [("x-subject-token", token)], Json(answer)).into_response(),
        None => (status, Json(answer)).into_response(),
    }
}

async fn revoke_tokens(State(shared): State<Arc<SharedSim>>) -> StatusCode {
    let identities = &mut shared.lock().identities;
    identities.revoked.extend(identities.issued.keys().cloned());
    StatusCode::NO_CONTENT
}

async fn counters(State(shared): State<Arc<SharedSim>>) -> Response {
    Json(shared.lock().counters.clone()).into_response()
}

async fn reset_counters(State(shared): State<Arc<SharedSim>>) -> StatusCode {
    shared.lock().counters = Default::default();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct InstancesQuery {
    #[serde(default)]
    id: Option<String>,
}

async fn list_instances(
    State(shared): State<Arc<SharedSim>>,
    Query(q): Query<InstancesQuery>,
) -> Response {
    let now = Instant::now();
    let mut inner = shared.lock();
    let all = inner.fleet.all(now);
    let listed: serde_json::Map<String, Value> = all
        .into_iter()
        .filter(|(id, _)| q.id.as_ref().is_none_or(|wanted| wanted == id))
        .map(|(id, instance)| (id, json!(instance)))
        .collect();
    Json(Value::Object(listed)).into_response()
}

/// One instance to create or overwrite: `{"instance_id": "a1", "status": "DataLoaded"}` (a code or
/// a name).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedEntry {
    instance_id: String,
    status: Value,
}

async fn put_instances(State(shared): State<Arc<SharedSim>>, body: axum::body::Bytes) -> Response {
    let entries: Vec<SeedEntry> = match serde_json::from_slice(&body) {
        Ok(entries) => entries,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("instances: {e}\n")).into_response(),
    };
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = match &entry.status {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match parse_state(&text) {
            Ok(code) => parsed.push((entry.instance_id, code)),
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("instances[{}].status: {e}\n", entry.instance_id),
                )
                    .into_response();
            }
        }
    }
    let now = Instant::now();
    let mut inner = shared.lock();
    for (id, code) in parsed {
        inner.fleet.set(&id, code, now);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(shared): State<Arc<SharedSim>>) -> Response {
    Json(shared.lock().faults.clone()).into_response()
}

async fn put_faults(State(shared): State<Arc<SharedSim>>, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("faults: {e}\n")).into_response(),
    };
    if let Err(e) = faults.validate() {
        return (StatusCode::BAD_REQUEST, format!("faults.{e}\n")).into_response();
    }
    shared.lock().faults = faults;
    StatusCode::NO_CONTENT.into_response()
}

async fn get_timings(State(shared): State<Arc<SharedSim>>) -> Response {
    Json(shared.lock().fleet.timings().clone()).into_response()
}

async fn put_timings(State(shared): State<Arc<SharedSim>>, body: axum::body::Bytes) -> Response {
    let timings: Timings = match serde_json::from_slice(&body) {
        Ok(timings) => timings,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("timings: {e}\n")).into_response(),
    };
    shared.lock().fleet.set_timings(timings);
    StatusCode::NO_CONTENT.into_response()
}
