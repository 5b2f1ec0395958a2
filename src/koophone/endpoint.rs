//! The vendor calls the operator makes: their paths, and their short names for logs and metrics.

/// The vendor calls the operator makes; displayed as the short name of logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::Display)]
pub enum Endpoint {
    /// `POST /v1/instances/batch-query-status`
    #[strum(serialize = "batch-query-status")]
    QueryStatus,
    /// `POST /v1/instances/backup`
    #[strum(serialize = "backup")]
    Backup,
    /// `POST /v1/instances/prepare`: brings instances' data back onto a physical instance.
    #[strum(serialize = "prepare")]
    Prepare,
    /// `POST /v1/instances/prepare-progress`: one instance's prepare, queued or under way.
    #[strum(serialize = "prepare-progress")]
    PrepareProgress,
}

impl Endpoint {
    /// The path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::QueryStatus => "/v1/instances/batch-query-status",
            Endpoint::Backup => "/v1/instances/backup",
            Endpoint::Prepare => "/v1/instances/prepare",
            Endpoint::PrepareProgress => "/v1/instances/prepare-progress",
        }
    }

    /// A short, bounded name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
