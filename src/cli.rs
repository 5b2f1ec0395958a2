//! The command line: the subcommands and the global flag. Each subcommand's own flags live beside
//! what it starts: [`RunArgs`] in `run`, [`SimulateArgs`] in `sim`, [`DemoArgs`] in `demo`.

use crate::demo::DemoArgs;
use crate::run::RunArgs;
use crate::sim::SimulateArgs;
use crate::telemetry::LogFormat;
use clap::{Parser, Subcommand};

/// Keeps a fleet of KooPhone cloud phones at their declared lifecycles, as CloudPhone resources.
#[derive(Parser, Debug)]
#[command(name = "cloudphone-operator", version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "CLOUDPHONE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator against the cluster of the kubeconfig or the in-cluster service account.
    Run(Box<RunArgs>),
    /// Print a CustomResourceDefinition as YAML (default: CloudPhone's).
    Crd {
        /// Which CRD: cloudphones, cloudphoneaccounts or cloudphoneschedules.
        #[arg(value_enum, default_value = "cloudphones")]
        kind: CrdKind,
    },
    /// Run the vendor API simulator as a stand-alone HTTP server.
    Simulate(Box<SimulateArgs>),
    /// The quick start: a simulated fleet and the example CloudPhones, queried and shown.
    Demo(DemoArgs),
}

/// The CRDs `cloudphone-operator crd` prints, by plural (as under `crds/`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    Cloudphones,
    Cloudphoneaccounts,
    Cloudphoneschedules,
}

impl From<CrdKind> for crate::api::CrdKind {
    fn from(kind: CrdKind) -> crate::api::CrdKind {
        match kind {
            CrdKind::Cloudphones => crate::api::CrdKind::CloudPhones,
            CrdKind::Cloudphoneaccounts => crate::api::CrdKind::CloudPhoneAccounts,
            CrdKind::Cloudphoneschedules => crate::api::CrdKind::CloudPhoneSchedules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        // Conflicting names, bad defaults and the like fail here, not in a user's shell.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_zero_tick_interval_is_refused_by_its_flag() {
        let err = Cli::try_parse_from(["cloudphone-operator", "run", "--tick-interval", "0s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tick-interval"), "{err}");
        assert!(err.contains("zero"), "{err}");
        let err = Cli::try_parse_from(["cloudphone-operator", "demo", "--tick-interval", "0ms"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zero"), "{err}");
        assert!(crate::flags::parse_interval("250ms").is_ok());
    }
}
