//! Keeps the vendor credentials in step with one Kubernetes Secret: read at start, and re-read on
//! every change, so that a rotated password or token is used from the next call without a restart.
//!
//! It watches only the named Secret (a field selector on its name), so RBAC can limit the operator
//! to that one object. Values never reach a log line: only the form and the keys.

use crate::koophone::{Auth, Credentials, CredentialsError, Token};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::warn;

/// Why the static token a flag names cannot be read. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum StaticTokenError {
    #[error("--token-file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--token-file {}: the file is empty", path.display())]
    EmptyFile { path: PathBuf },
    #[error("--token-env {var}: the variable is not set")]
    UnsetVariable { var: String },
    #[error("--token-env {var}: the variable is empty")]
    EmptyVariable { var: String },
}

/// The static token of `--token-file` or else `--token-env`; `None` when neither is given.
pub fn static_token(
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Token>, StaticTokenError> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| StaticTokenError::Unreadable {
                path: path.to_owned(),
                source,
            })?;
        let token = Token::new(text);
        if token.is_empty() {
            return Err(StaticTokenError::EmptyFile {
                path: path.to_owned(),
            });
        }
        return Ok(Some(token));
    }
    if let Some(var) = env {
        let value = std::env::var(var).map_err(|_| StaticTokenError::UnsetVariable {
            var: var.to_owned(),
        })?;
        let token = Token::new(value);
        if token.is_empty() {
            return Err(StaticTokenError::EmptyVariable {
                var: var.to_owned(),
            });
        }
        return Ok(Some(token));
    }
    Ok(None)
}

/// A `--credentials-secret` value that names no Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--credentials-secret {text:?} is not NAMESPACE/NAME or NAME of a Secret")]
pub struct BadSecretRef {
    pub text: String,
}

/// `NAMESPACE/NAME`, or `NAME` in `default_namespace`.
pub fn parse_secret_ref(
    text: &str,
    default_namespace: &str,
) -> Result<(String, String), BadSecretRef> {
    let (namespace, name) = match text.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (default_namespace.to_owned(), text.to_owned()),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !valid(&namespace) || !valid(&name) {
        return Err(BadSecretRef {
            text: text.to_owned(),
        });
    }
    Ok((namespace, name))
}

/// The credentials a Secret holds.
pub fn credentials_of(secret: &Secret) -> Result<Credentials, CredentialsError> {
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .chain(
            secret
                .string_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
        )
        .collect();
    Credentials::from_secret_data(&data)
}

/// Watches the Secret until the process ends, loading each version into `auth`.
pub async fn watch(client: kube::Client, namespace: String, name: String, auth: Arc<Auth>) {
    let what = format!("{namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut seen_in_listing = false;
    let mut loaded_version: Option<String> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => seen_in_listing = false,
            Ok(watcher::Event::InitApply(secret)) | Ok(watcher::Event::Apply(secret)) => {
                seen_in_listing = true;
                // A re-list repeats the same version: load only what changed.
                if secret.metadata.resource_version.is_some()
                    && secret.metadata.resource_version == loaded_version
                {
                    continue;
                }
                loaded_version = secret.metadata.resource_version.clone();
                // NB: a new version may hold the same data (re-applied, or its labels changed):
                // the IAM token and the breaker stay unless the credentials did change.
                auth.set_if_changed(credentials_of(&secret));
            }
            Ok(watcher::Event::InitDone) => {
                if !seen_in_listing {
                    loaded_version = None;
                    auth.set_if_changed(Err(CredentialsError::SecretMissing(what.clone())));
                }
            }
            Ok(watcher::Event::Delete(_)) => {
                loaded_version = None;
                auth.set_if_changed(Err(CredentialsError::SecretMissing(what.clone())));
            }
            Err(e) => {
                warn!(secret = %what, error = %e, "cannot watch the credentials Secret; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_default_their_namespace_and_refuse_garbage() {
        assert_eq!(
            parse_secret_ref("ops/koophone", "x").unwrap(),
            ("ops".into(), "koophone".into())
        );
        assert_eq!(
            parse_secret_ref("koophone", "ops").unwrap(),
            ("ops".into(), "koophone".into())
        );
        assert!(
            parse_secret_ref("Bad Name", "ops")
                .unwrap_err()
                .to_string()
                .contains("--credentials-secret")
        );
        assert!(parse_secret_ref("/x", "ops").is_err());
    }
}
