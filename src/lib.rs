//! cloudphone-operator: keeps a fleet of KooPhone cloud phones at their declared lifecycles.
//!
//! ```text
//! watch -> store -> tick { query status (<=100 ids a call) -> plan -> act -> write changed status }
//! ```
//!
//! Every module, by layer (the pure core, the vendor, Kubernetes I/O, the runtime wiring):
//!
//! - [`api`]: the `CloudPhone` and `CloudPhoneAccount` resources, the single source of the CRDs;
//!   types and schema only, no behaviour.
//! - [`plan`]: the pure planner: specs, observed statuses and the engine's memory in, vendor actions
//!   and new statuses out; no I/O, no clock.
//! - [`koophone`]: the typed vendor client (requests, answers, error taxonomy, credentials,
//!   signing); it knows nothing of Kubernetes.
//! - [`reconciler`]: the tick engine: snapshot, batched vendor calls per account, the plan
//!   applied, fenced status writes and events, through the `PhoneStore` trait (in memory, or the
//!   Kubernetes watch cache).
//! - [`run`]: the `run` subcommand's cluster wiring: flags, credentials, accounts, leader
//!   election, readiness, shutdown.
//! - [`metrics`], [`http`], [`telemetry`], [`heap`]: Prometheus metrics, the HTTP listener
//!   (`/metrics`, `/healthz`, `/readyz`), logging, the live-heap counter.
//! - [`sim`]: a simulator of the vendor API, an independent oracle sharing no code with the
//!   client, for the quick start, the tests and the benchmarks; and the `simulate` subcommand's flags.
//! - [`demo`]: the quick start (`cloudphone-operator demo`) and its flags.
//! - [`summary`]: the `kubectl cloudphone summary` plugin's fleet at a glance.
//! - [`cli`]: the command line, at the top: the subcommands and the global flag; [`flags`]: the
//!   duration parsers the subcommands' flags share.

pub mod api;
pub mod cli;
pub mod demo;
pub mod flags;
pub mod heap;
pub mod http;
pub mod koophone;
pub mod metrics;
pub mod plan;
pub mod reconciler;
pub mod run;
pub mod sim;
pub mod summary;
pub mod telemetry;

#[cfg(test)]
pub(crate) mod test_deadline;
#[cfg(test)]
pub(crate) mod test_phone;
