//! `cloudphone-operator`: parses flags and dispatches the subcommands.

use anyhow::Context;
use clap::Parser;
use cloudphone_operator::cli::{Cli, Command};
use cloudphone_operator::sim::{SimulateArgs, Simulator};
use cloudphone_operator::telemetry;

/// Counted, for the `cloudphone_heap_bytes` metrics.
#[global_allocator]
static ALLOCATOR: cloudphone_operator::heap::Counting = cloudphone_operator::heap::Counting;

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let (config, listen) = args.into_config()?;
    let count = config.instances.len();
    let simulator = Simulator::start(config, listen).await?;
    tracing::info!(url = %simulator.url(), instances = count, "simulator listening; Ctrl-C stops it");
    shutdown_signal().await;
    simulator.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo's output is its table: only warnings and errors interleave with it, unless RUST_LOG says otherwise.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    telemetry::init(cli.log_format, default_filter);
    match cli.command {
        Command::Crd { kind } => {
            print!("{}", cloudphone_operator::api::crd_yaml(kind.into()));
            Ok(())
        }
        Command::Simulate(args) => simulate(*args).await,
        Command::Run(args) => {
            cloudphone_operator::run::run(*args, shutdown_signal()).await?;
            Ok(())
        }
        Command::Demo(args) => {
            let ok = cloudphone_operator::demo::run(args)
                .await
                .context("demo failed")?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
