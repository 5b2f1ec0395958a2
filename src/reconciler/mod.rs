//! The tick loop: batches every phone's vendor calls, applies the plan, writes changed statuses.
//!
//! It knows nothing of Kubernetes: it reads and writes through a [`PhoneStore`], which the watch
//! cache implements under `run` and [`MemoryStore`] implements for the quick start and the tests.

mod engine;
mod memory;
mod store;
mod vendor;

pub use engine::{Engine, EngineConfig, TickReport, Trigger};
pub use memory::{InjectedWriteFailure, MemoryStore};
pub use store::{PhoneStore, WriteError};
