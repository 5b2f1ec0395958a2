//! The two vendor calls the operator makes: their paths, and their short names for logs and
//! metrics.

/// The two vendor calls the operator makes; displayed as the short name of logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::Display)]
pub enum Endpoint {
    /// `POST /v1/instances/batch-query-status`
    #[strum(serialize = "batch-query-status")]
    QueryStatus,
    /// `POST /v1/instances/backup`
    #[strum(serialize = "backup")]
    Backup,
}

impl Endpoint {
    /// The path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::QueryStatus => "/v1/instances/batch-query-status",
            Endpoint::Backup => "/v1/instances/backup",
        }
    }

    /// A short, bounded name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
