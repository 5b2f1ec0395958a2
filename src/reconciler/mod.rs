//! The tick loop: batches every phone's vendor calls, applies the plan, writes changed statuses.
//!
//! It knows nothing of Kubernetes: it reads and writes through a [`PhoneStore`], which the watch
//! cache implements under `run` and [`MemoryStore`] implements for the quick start and the tests.

mod accounts;
mod batcher;
mod breaker;
mod engine;
mod fence;
mod intents_record;
mod kube_store;
mod memory;
mod schedules;
mod store;
mod synced;
mod tick;

pub use accounts::{Account, AccountSet, AccountsFeed, Tenants, Unusable};
pub use breaker::{Admission, BreakerConfig, Breakers, DEFAULT_ACCOUNT};
pub use engine::{Engine, EngineConfig, INTENT_MAX_AGE, Trigger};
pub use fence::LeaseFence;
pub use intents_record::{
    INTENTS_UNTIL_ANNOTATION, IntentsRecord, MemoryIntentsRecord, RecordError, format_until,
    parse_until,
};
pub use kube_store::{FIELD_MANAGER, KubeStore, WatchConfig, Watches, phone_apis, slim};
pub use memory::{InjectedWriteFailure, MemoryStore};
pub use schedules::{MemorySchedules, ScheduleSource, ScheduleWriteError};
pub use store::{PhoneStore, WriteError};
pub use synced::SyncedAfter;
pub use tick::TickReport;
