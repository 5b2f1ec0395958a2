//! The integration tests, one crate with a module per behaviour: one binary to link (kube, reqwest
//! and axum once, not once per suite). Run one module with `cargo test --test it accounts::`.
//!
//! Tests that install a process-global tracing subscriber keep a binary of their own
//! (`tests/log_spans.rs`, `tests/no_secrets_in_logs.rs`): here every test shares one process.

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod architecture;
mod argocd;
mod auth;
mod client;
mod crd;
mod dashboard;
mod demo;
mod engine;
mod examples;
mod faults;
mod fencing;
mod kube;
mod leader;
mod loaded;
mod parking;
mod schedule_cases;
mod schedules;
mod signing;
mod simulator;
mod summary;
mod vendor_errors;
