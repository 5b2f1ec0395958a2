//! cloudphone-operator: keeps a fleet of KooPhone cloud phones at their declared lifecycles.
//!
//! ```text
//! watch -> store -> tick { query status (<=100 ids a call) -> plan -> back up -> write changed status }
//! ```
//!
//! - [`api`]: the `CloudPhone` resource, the single source of the CRD.
//! - [`koophone`]: the typed vendor client.
//! - [`sim`]: a simulator of the vendor API, for the quick start, the tests and the benchmarks.

pub mod api;
pub mod demo;
pub mod heap;
pub mod http;
pub mod koophone;
pub mod metrics;
pub mod plan;
pub mod reconciler;
pub mod run;
pub mod sim;
pub mod telemetry;
