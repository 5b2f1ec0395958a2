//! The vendor's endpoints as the simulator serves them: batch-query-status, backup, prepare,
//! prepare-progress and IAM's token, with the vendor's checks, answer shapes and the injected faults.

use super::checks::{Call, check_request, vendor_error};
use crate::sim::fleet::{BackupRefusal, PrepareRefusal};
use crate::sim::{Injected, SharedSim, SimState, fleet_key, id_of};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

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
        let (tenant, checked) = match check_request(&mut inner, call, &headers, &uri, &body) {
            Ok((tenant, ids, user)) => (tenant, Ok((ids, user))),
            Err(response) => (String::new(), Err(response)),
        };
        inner.counters.record_call(
            call.name(),
            checked.as_ref().map_or(0, |(ids, _)| ids.len()),
        );
        let SimState {
            faults, fault_rng, ..
        } = &mut *inner;
        let delay = faults.delay(fault_rng);
        let response = match checked {
            Err(response) => {
                inner.counters.record_outcome(call.name(), "refused");
                *response
            }
            Ok(_)
                if let Some(canned) = inner.faults.answer_all.clone().or_else(|| match call {
                    Call::Backup => inner.faults.answer_all_backups.clone(),
                    Call::Prepare => inner.faults.answer_all_prepares.clone(),
                    Call::PrepareProgress => inner.faults.answer_all_progress.clone(),
                    _ => None,
                }) =>
            {
                inner.counters.record_outcome(call.name(), "refused");
                vendor_error(
                    StatusCode::from_u16(canned.status).unwrap_or(StatusCode::BAD_REQUEST),
                    &canned.code,
                    "refused (injected)",
                )
            }
            Ok((ids, _)) if ids.iter().any(|id| inner.faults.vanished_ids.contains(id)) => {
                inner.counters.record_outcome(call.name(), "refused");
                vendor_error(StatusCode::OK, "4001", "the instance does not exist")
            }
            Ok((ids, _)) if ids.iter().any(|id| inner.faults.foreign_ids.contains(id)) => {
                inner.counters.record_outcome(call.name(), "refused");
                vendor_error(
                    StatusCode::OK,
                    "1012",
                    "the instance does not belong to the tenant",
                )
            }
            Ok((ids, _)) if ids.iter().any(|id| inner.faults.rejected_ids.contains(id)) => {
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
            Ok((ids, user)) => {
                let user = user.as_deref().unwrap_or_default();
                let SimState {
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
                        let _ = process(&mut inner, call, &tenant, &ids, user, &shared);
                        (
                            "injected-garbage",
                            (StatusCode::OK, "<html>502 Bad Gateway</html>\u{0}").into_response(),
                        )
                    }
                    None => process(&mut inner, call, &tenant, &ids, user, &shared),
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

/// Answers a checked call of `tenant` for its instances `ids` (and `user`, for a prepare's).
fn process(
    inner: &mut SimState,
    call: Call,
    tenant: &str,
    ids: &[String],
    user: &str,
    shared: &SharedSim,
) -> (&'static str, Response) {
    let now = Instant::now();
    // The fleet's names of the tenant's instances: another tenant's instance of the same id is
    // another instance, and never listed.
    let keys: Vec<String> = ids.iter().map(|id| fleet_key(tenant, id)).collect();
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
                    .map_err(|(key, why)| (id_of(&key).to_owned(), why)),
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
        Call::Prepare => {
            let refusal = ids
                .iter()
                .find(|id| inner.faults.unknown_ids.contains(*id))
                .map(|id| (id.clone(), PrepareRefusal::NotFound));
            let result = match refusal {
                Some(refusal) => Err(refusal),
                None => inner
                    .fleet
                    .prepare(user, &keys, now)
                    .map_err(|(key, why)| (id_of(&key).to_owned(), why)),
            };
            match result {
                Ok((answers, started)) => {
                    inner.counters.prepares_started += started;
                    let list: Vec<Value> = ids
                        .iter()
                        .zip(answers)
                        .map(|(id, status)| json!({"instance_id": id, "status": status}))
                        .collect();
                    let body = json!({"error_code": "0", "error_msg": "ok", "data": {"status_list": list}});
                    ("ok", Json(body).into_response())
                }
                Err((id, why)) => {
                    let (code, msg) = match why {
                        PrepareRefusal::NotFound => {
                            ("4001", format!("instance {id} does not exist"))
                        }
                        PrepareRefusal::WrongState => (
                            "1000",
                            format!("instance {id} is in a state a prepare cannot start from"),
                        ),
                    };
                    ("refused", vendor_error(business_status(shared), code, msg))
                }
            }
        }
        Call::PrepareProgress => {
            let progress = match ids.first() {
                Some(id) if !inner.faults.unknown_ids.contains(id) => {
                    inner.fleet.progress(&keys[0], user, now)
                }
                _ => None,
            };
            match progress {
                Some(progress) => {
                    let body = json!({"error_code": "0", "error_msg": "ok", "data": {
                        "status": progress.status,
                        "waitingCount": progress.waiting,
                    }});
                    ("ok", Json(body).into_response())
                }
                None => {
                    let id = ids.first().map_or("", String::as_str);
                    (
                        "refused",
                        vendor_error(
                            business_status(shared),
                            "4001",
                            format!("instance {id} does not exist"),
                        ),
                    )
                }
            }
        }
    }
}

/// The HTTP status of a business refusal: 400 as the per-call pages show, or 200 as the current
/// error-code page says.
fn business_status(shared: &SharedSim) -> StatusCode {
    if shared.business_errors_as_200 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

pub(super) async fn query_status(
    State(shared): State<Arc<SharedSim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    serve(shared, Call::QueryStatus, headers, uri, body).await
}

pub(super) async fn backup(
    State(shared): State<Arc<SharedSim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    serve(shared, Call::Backup, headers, uri, body).await
}

pub(super) async fn prepare(
    State(shared): State<Arc<SharedSim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    serve(shared, Call::Prepare, headers, uri, body).await
}

pub(super) async fn prepare_progress(
    State(shared): State<Arc<SharedSim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    serve(shared, Call::PrepareProgress, headers, uri, body).await
}

pub(super) async fn issue_token(
    State(shared): State<Arc<SharedSim>>,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = shared.lock();
    inner.counters.iam_calls += 1;
    let (status, token, answer) = inner.identities.issue(&body);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match token {
        Some(token) => (status, [("x-subject-token", token)], Json(answer)).into_response(),
        None => (status, Json(answer)).into_response(),
    }
}
