//! The check before anything starts that the CloudPhones can be listed where they are watched:
//! a missing CRD, missing RBAC or a bad selector is an error at start.

use super::args::RunArgs;
use super::error::RunError;
use crate::reconciler::phone_apis;
use kube::api::ListParams;

/// One list call per watched namespace, so that a missing CRD, missing RBAC or a bad selector is a
/// clear error at start rather than a watch retrying forever.
pub async fn preflight(client: &kube::Client, args: &RunArgs) -> Result<(), RunError> {
    let mut params = ListParams::default().limit(1);
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    for api in phone_apis(client, &args.namespaces) {
        if let Err(e) = api.list(&params).await {
            let scope = if args.namespaces.is_empty() {
                "all namespaces".to_owned()
            } else {
                format!("namespaces {}", args.namespaces.join(","))
            };
            let hint = match &e {
                kube::Error::Api(s) if s.code == 404 => {
                    "the CloudPhone CRD is not installed: kubectl apply -f crds/cloudphone.io_cloudphones.yaml".to_owned()
                }
                kube::Error::Api(s) if s.code == 403 => {
                    "the service account may not list cloudphones.cloudphone.io: apply the RBAC of docs/install.md".to_owned()
                }
                kube::Error::Api(s) if s.code == 400 => format!("--selector {:?} is refused: {}", args.selector.as_deref().unwrap_or(""), s.message),
                other => other.to_string(),
            };
            return Err(RunError::Preflight {
                scope,
                hint,
                source: e,
            });
        }
    }
    Ok(())
}
