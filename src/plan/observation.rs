//! What this tick's status query said of one instance: the planner's view of the vendor.

use super::Failure;

/// What this tick's status query said of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The vendor listed the instance with this status code.
    Status(i64),
    /// The vendor's answer did not list the instance.
    Missing,
    /// The query for this instance failed.
    Failed(Failure),
}
