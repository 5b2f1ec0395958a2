//! `kubectl cloudphone`: a kubectl plugin (install this binary on the PATH as `kubectl-cloudphone`)
//! that reads CloudPhones through the user's own kubeconfig and RBAC.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl-cloudphone",
    version,
    about = "CloudPhones at a glance (a kubectl plugin)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Phones by namespace and phase, the oldest last backup, the Loaded phones' prepares (loaded,
    /// requested, restoring, failing, refused; the last loaded), and the phones that need a person.
    Summary {
        /// Only this namespace (default: every namespace the kubeconfig's user may list).
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let Cli {
        command: Command::Summary { namespace },
    } = Cli::parse();
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the Kubernetes API through the kubeconfig: {e}")
    })?;
    let summary = cloudphone_operator::summary::fetch(client, namespace.as_deref())
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
                "your kubeconfig's user may not list cloudphones.cloudphone.io{}: {}",
                namespace
                    .as_deref()
                    .map(|n| format!(" in {n}"))
                    .unwrap_or_default(),
                s.message
            ),
            kube::Error::Api(s) if s.code == 404 => {
                anyhow::anyhow!("the CloudPhone CRD is not installed on this cluster")
            }
            _ => anyhow::anyhow!("cannot list CloudPhones: {e}"),
        })?;
    print!("{}", summary.render(jiff::Timestamp::now()));
    Ok(())
}
