//! Who this replica is and where it lives: its own namespace, the Lease's, and its identity in
//! the Lease.

use super::args::RunArgs;

/// The operator's own namespace: POD_NAMESPACE, else the service account's, else the kubeconfig's.
pub(super) fn pod_namespace(client: &kube::Client) -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_owned())
}

/// The namespace of the Lease: the flag, else the operator's own namespace.
pub(super) fn lease_namespace(args: &RunArgs, client: &kube::Client) -> String {
    args.lease_namespace
        .clone()
        .unwrap_or_else(|| pod_namespace(client))
}

/// This replica's identity in the Lease: the flag, else the pod name, else the host name plus a
/// random suffix, so that two processes on one host (or two containers sharing a host name) never
/// both believe they hold the Lease.
pub(super) fn identity(args: &RunArgs) -> String {
    let nonempty = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(id) = args.identity.clone().and_then(nonempty) {
        return id;
    }
    if let Some(pod) = std::env::var("POD_NAME").ok().and_then(nonempty) {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .and_then(nonempty)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(nonempty)
        })
        .unwrap_or_else(|| "cloudphone-operator".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
