//! The operator's one HTTP listener: `/metrics` (Prometheus text), `/healthz` (the process
//! answers), `/readyz` (ready or not, and why; with notes that do not change readiness).

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// Why the operator is not ready, as `/readyz` shows it.
pub type NotReady = Box<dyn std::error::Error + Send + Sync>;

/// Whether the operator is ready to serve; `Err` says why not.
pub trait Readiness: Send + Sync + 'static {
    fn check(&self) -> Result<(), NotReady>;

    /// What `/readyz` says besides, one line each, without changing readiness: something a
    /// person should know (a feed that never synced) that must not block a rollout.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<dyn Readiness>,
}

/// The routes of the listener.
pub fn router(metrics: Arc<Metrics>, readiness: Arc<dyn Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let (status, mut body) = match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    };
    for note in state.readiness.notes() {
        body.push_str(&format!("note: {note}\n"));
    }
    (status, body).into_response()
}
