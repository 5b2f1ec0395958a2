//! The simulator's HTTP surface: the vendor's endpoints with the vendor's checks and answer
//! shapes (in `vendor`, the requests checked in `checks`), and an admin API under `/sim/` for
//! tests and benchmarks (in `admin`).
//!
//! NB: this module deliberately shares no types with `crate::koophone`: it is written from
//! koophone-api.md alone, so that a wrong field name in the client cannot pass the tests.

mod admin;
mod checks;
mod vendor;

use super::SharedSim;
use admin::{
    counters, get_faults, get_timings, list_instances, put_faults, put_instances, put_timings,
    reset_counters, revoke_tokens,
};
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use vendor::{backup, issue_token, prepare, prepare_progress, query_status};

/// The vendor's routes and the admin API's, over one simulator's state.
pub(super) fn router(shared: Arc<SharedSim>) -> Router {
    Router::new()
        .route("/v1/instances/batch-query-status", post(query_status))
        .route("/v1/instances/backup", post(backup))
        .route("/v1/instances/prepare", post(prepare))
        .route("/v1/instances/prepare-progress", post(prepare_progress))
        .route("/v3/auth/tokens", post(issue_token))
        .route("/sim/iam/revoke", post(revoke_tokens))
        .route("/sim/counters", get(counters))
        .route("/sim/counters/reset", post(reset_counters))
        .route("/sim/instances", get(list_instances).put(put_instances))
        .route("/sim/sessions", post(admin::start_session))
        .route("/sim/faults", get(get_faults).put(put_faults))
        .route("/sim/timings", get(get_timings).put(put_timings))
        .with_state(shared)
}
