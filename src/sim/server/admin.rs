//! The simulator's own control endpoints under `/sim/`, for tests and benchmarks: its counters,
//! its instances, its faults and its timings, and the revocation of the tokens it issued.

use crate::sim::fleet::parse_state;
use crate::sim::{Faults, SharedSim, Timings};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

pub(super) async fn revoke_tokens(State(shared): State<Arc<SharedSim>>) -> StatusCode {
    let identities = &mut shared.lock().identities;
    identities.revoked.extend(identities.issued.keys().cloned());
    StatusCode::NO_CONTENT
}

pub(super) async fn counters(State(shared): State<Arc<SharedSim>>) -> Response {
    Json(shared.lock().counters.clone()).into_response()
}

pub(super) async fn reset_counters(State(shared): State<Arc<SharedSim>>) -> StatusCode {
    shared.lock().counters = Default::default();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(super) struct InstancesQuery {
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn list_instances(
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

pub(super) async fn put_instances(
    State(shared): State<Arc<SharedSim>>,
    body: axum::body::Bytes,
) -> Response {
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Session {
    instance_id: String,
    /// How long the user streams.
    seconds: u64,
}

/// `POST /sim/sessions` `{"instance_id": "a1", "seconds": 30}`: a user streams from the instance
/// for that long (Streaming, then DataLoaded again); 409 when its data is not loaded.
pub(super) async fn start_session(
    State(shared): State<Arc<SharedSim>>,
    body: axum::body::Bytes,
) -> Response {
    let session: Session = match serde_json::from_slice(&body) {
        Ok(session) => session,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("session: {e}\n")).into_response(),
    };
    let duration = std::time::Duration::from_secs(session.seconds);
    let started = shared
        .lock()
        .fleet
        .start_session(&session.instance_id, duration, Instant::now());
    if started {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::CONFLICT,
            format!(
                "instance {:?}: unknown, or its data is not loaded: nothing to stream\n",
                session.instance_id
            ),
        )
            .into_response()
    }
}

pub(super) async fn get_faults(State(shared): State<Arc<SharedSim>>) -> Response {
    Json(shared.lock().faults.clone()).into_response()
}

pub(super) async fn put_faults(
    State(shared): State<Arc<SharedSim>>,
    body: axum::body::Bytes,
) -> Response {
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

pub(super) async fn get_timings(State(shared): State<Arc<SharedSim>>) -> Response {
    Json(shared.lock().fleet.timings().clone()).into_response()
}

pub(super) async fn put_timings(
    State(shared): State<Arc<SharedSim>>,
    body: axum::body::Bytes,
) -> Response {
    let timings: Timings = match serde_json::from_slice(&body) {
        Ok(timings) => timings,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("timings: {e}\n")).into_response(),
    };
    if let Err(e) = timings.validate() {
        return (StatusCode::BAD_REQUEST, format!("timings.{e}\n")).into_response();
    }
    shared.lock().fleet.set_timings(timings);
    StatusCode::NO_CONTENT.into_response()
}
