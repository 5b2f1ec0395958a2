//! The CloudPhoneAccounts on a cluster: three watches (the accounts, cluster-wide; Secrets in the
//! operator's own namespace; namespace labels) folded into the engine's [`AccountSet`] on every
//! change, each account's client kept across changes (new credentials replace the old in place, so
//! its breaker closes at once), and each account's status written after the leader's ticks.

use crate::api::CloudPhoneAccount;
use crate::koophone::{Auth, Client, ClientConfig, Credentials, CredentialsError};
use crate::metrics::Metrics;
use crate::plan::{AccountEvent, AccountTick, account_event, account_status};
use crate::reconciler::{Account, AccountSet, FIELD_MANAGER, Tenants, Unusable};
use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};

/// Hosts the operator may send an account's credentials to: exact hosts (`host` or `host:port`)
/// and domains (`*.example.com`: its subdomains, at any port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

/// The vendor's own domain: its API and its IAM endpoints are subdomains of it.
pub const DEFAULT_ALLOWED_HOSTS: &str = "*.myhuaweicloud.com";

impl AllowedHosts {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> AllowedHosts {
        AllowedHosts(
            patterns
                .into_iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Adds the host (and port) of `url`: an address the operator's own flags chose.
    pub fn with_url(mut self, url: &str) -> AllowedHosts {
        if let Some((host, port)) = host_of(url) {
            self.0.push(match port {
                Some(port) => format!("{host}:{port}"),
                None => host,
            });
        }
        self
    }

    /// `Ok` when credentials may go to `url`, else why not (naming the host and the flag).
    pub fn check(&self, url: &str) -> Result<(), HostNotAllowed> {
        let Some((host, port)) = host_of(url) else {
            return Err(HostNotAllowed::NotAnHttpUrl(url.to_owned()));
        };
        let with_port = port.map(|p| format!("{host}:{p}"));
        let allowed = self
            .0
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                None => *pattern == host || Some(pattern) == with_port.as_ref(),
            });
        if allowed {
            Ok(())
        } else {
            Err(HostNotAllowed::NotListed {
                host: with_port.unwrap_or(host),
                allowed: self.0.join(","),
            })
        }
    }
}

/// Why credentials may not go to a URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostNotAllowed {
    #[error("{0:?} is not an http(s) URL with a host")]
    NotAnHttpUrl(String),
    #[error(
        "host {host} is not in the operator's --allowed-vendor-hosts ({allowed}); no credential is sent to it"
    )]
    NotListed { host: String, allowed: String },
}

/// The lower-cased host and the port of an http(s) URL; `None` for anything else.
fn host_of(url: &str) -> Option<(String, Option<u16>)> {
    let url = reqwest::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    Some((host, url.port()))
}

/// What the accounts' clients share.
#[derive(Clone)]
pub struct AccountsConfig {
    /// The operator's own namespace: account Secrets are read there only.
    pub namespace: String,
    /// The vendor URL of an account without `spec.vendorUrl`.
    pub default_vendor_url: String,
    pub allowed: AllowedHosts,
    /// Time-outs and retries of every account's client.
    pub client: ClientConfig,
    pub metrics: Option<Arc<Metrics>>,
    /// Only the CloudPhoneAccounts matching this label selector are used (`--account-selector`).
    pub selector: Option<String>,
}

/// An account's client, kept while its endpoint and limits stay.
struct Kept {
    url: String,
    limits: (Option<usize>, Option<u32>),
    auth: Arc<Auth>,
    client: Client,
}

/// Folds the watched objects into the engine's accounts, reusing (and updating) kept clients.
fn fold(
    accounts: &[Arc<CloudPhoneAccount>],
    secrets: &Store<Secret>,
    namespaces: &Store<PartialObjectMeta<Namespace>>,
    config: &AccountsConfig,
    kept: &mut HashMap<String, Kept>,
) -> AccountSet {
    let mut set = AccountSet {
        namespace_labels: namespaces
            .state()
            .iter()
            .filter_map(|ns| {
                let name = ns.metadata.name.clone()?;
                Some((name, ns.metadata.labels.clone().unwrap_or_default()))
            })
            .collect(),
        ..AccountSet::default()
    };
    for object in accounts {
        let Some(name) = object.metadata.name.clone() else {
            continue;
        };
        let account = one_account(&name, object, secrets, config, kept);
        set.accounts.insert(name, account);
    }
    kept.retain(|name, _| set.accounts.contains_key(name));
    set
}

fn one_account(
    name: &str,
    object: &CloudPhoneAccount,
    secrets: &Store<Secret>,
    config: &AccountsConfig,
    kept: &mut HashMap<String, Kept>,
) -> Account {
    let spec = &object.spec;
    let tenants = Tenants {
        namespaces: spec.namespaces.iter().cloned().collect(),
        selector: spec.namespace_selector.clone().and_then(|s| {
            kube::core::Selector::try_from(s)
                .inspect_err(|e| warn!(account = name, error = %e, "spec.namespaceSelector is not a valid selector: no namespace is admitted by it"))
                .ok()
        }),
    };
    let client = client(name, object, secrets, config, kept);
    if client.is_err() {
        // NB: a client is kept only while usable: one rebuilt later starts from the Secret.
        kept.remove(name);
    }
    Account {
        name: name.to_owned(),
        generation: object.metadata.generation,
        client,
        tenants,
        allowed_users: (!spec.allowed_user_ids.is_empty())
            .then(|| spec.allowed_user_ids.iter().cloned().collect()),
    }
}

/// The account's client (kept, its credentials replaced when its Secret's data changed), or why it
/// has none.
fn client(
    name: &str,
    object: &CloudPhoneAccount,
    secrets: &Store<Secret>,
    config: &AccountsConfig,
    kept: &mut HashMap<String, Kept>,
) -> Result<Client, Unusable> {
    let spec = &object.spec;
    let unusable = |reason: &'static str, message: String| Unusable { reason, message };
    let url = spec
        .vendor_url
        .clone()
        .unwrap_or_else(|| config.default_vendor_url.clone());
    if let Err(why) = config.allowed.check(&url) {
        return Err(unusable(
            "VendorUrlNotAllowed",
            format!("spec.vendorUrl: {why}"),
        ));
    }
    let secret_name = &spec.credentials_secret_ref.name;
    let secret = secrets.get(&reflector::ObjectRef::new(secret_name).within(&config.namespace));
    let credentials = match &secret {
        None => Err(CredentialsError::SecretMissing(format!(
            "{}/{secret_name}",
            config.namespace
        ))),
        Some(secret) => super::credentials::credentials_of(secret),
    }
    .map_err(|e| {
        unusable(
            "CredentialsMissing",
            format!("spec.credentialsSecretRef.name {secret_name:?}: {e}"),
        )
    })?;
    if let Credentials::Password { iam_endpoint, .. } = &credentials
        && let Err(why) = config.allowed.check(iam_endpoint)
    {
        return Err(unusable(
            "VendorUrlNotAllowed",
            format!("the IAM endpoint of Secret {secret_name:?}: {why}"),
        ));
    }
    let limits = spec.limits.clone().unwrap_or_default();
    let limits = (
        limits.calls_in_flight.map(|n| n.max(1) as usize),
        limits.calls_per_second.map(|n| n.max(1) as u32),
    );
    let reusable = kept
        .get(name)
        .is_some_and(|k| k.url == url && k.limits == limits);
    if !reusable {
        let auth = Arc::new(Auth::new(Err(CredentialsError::SecretMissing(
            secret_name.clone(),
        ))));
        let client = Client::new(
            ClientConfig {
                base_url: url.clone(),
                calls_in_flight: limits.0,
                calls_per_second: limits.1,
                ..config.client.clone()
            },
            auth.clone(),
        )
        .map_err(|e| unusable("VendorUrlNotAllowed", format!("spec.vendorUrl: {e}")))?;
        let client = match &config.metrics {
            Some(m) => client.with_observer(Arc::new(crate::metrics::AccountCalls {
                metrics: m.clone(),
                account: name.to_owned(),
            })),
            None => client,
        };
        kept.insert(
            name.to_owned(),
            Kept {
                url: url.clone(),
                limits,
                auth,
                client,
            },
        );
    }
    let k = kept.get(name).expect("inserted above");
    // NB: the content, not the Secret's resourceVersion: a Secret re-applied with the same data
    // (or only its labels changed) must not drop the IAM token nor close the account's breaker.
    let form = credentials.form();
    if k.auth.set_if_changed(Ok(credentials)) {
        info!(account = name, form, "account credentials loaded");
    }
    Ok(k.client.clone())
}

/// Strips what the fold never reads from a Secret of the operator's namespace.
fn slim_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
}

/// Watches the accounts, the Secrets of the operator's namespace and the namespaces' labels, and
/// sends a new [`AccountSet`] on `feed` after each change, once all three have listed; `error`
/// holds the last error of each failing watch (for `/readyz`'s note).
pub async fn watch(
    client: kube::Client,
    config: AccountsConfig,
    accounts: Store<CloudPhoneAccount>,
    accounts_writer: reflector::store::Writer<CloudPhoneAccount>,
    feed: watch::Sender<Option<Arc<AccountSet>>>,
    error: watch::Sender<Option<String>>,
) {
    let (secrets, secrets_writer) = reflector::store();
    let (namespaces, namespaces_writer) = reflector::store();
    let mut account_watch = watcher::Config::default();
    if let Some(selector) = &config.selector {
        account_watch = account_watch.labels(selector);
    }
    let account_events = watcher(Api::<CloudPhoneAccount>::all(client.clone()), account_watch)
        .default_backoff()
        .reflect(accounts_writer)
        .map(|e| ("cloudphoneaccounts", e.err().map(|e| e.to_string())))
        .boxed();
    // NB: Helm keeps its release records as Secrets of the release namespace: never cached.
    let secret_events = watcher(
        Api::<Secret>::namespaced(client.clone(), &config.namespace),
        watcher::Config::default().fields("type!=helm.sh/release.v1"),
    )
    .default_backoff()
    .modify(slim_secret)
    .reflect(secrets_writer)
    .map(|e| ("secrets", e.err().map(|e| e.to_string())))
    .boxed();
    let namespace_events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(namespaces_writer)
    .map(|e| ("namespaces", e.err().map(|e| e.to_string())))
    .boxed();
    let mut events = stream::select_all([account_events, secret_events, namespace_events]);
    let mut kept = HashMap::new();
    // The last error of each watch that fails, until it works again.
    let mut failing = std::collections::BTreeMap::new();
    while let Some((what, failed)) = events.next().await {
        let changed = match &failed {
            Some(e) => failing.insert(what, e.clone()).as_ref() != Some(e),
            None => failing.remove(what).is_some(),
        };
        if changed {
            let said = failing
                .iter()
                .map(|(what, e)| format!("{what}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            error.send_replace(Some(said).filter(|s| !s.is_empty()));
        }
        if let Some(e) = failed {
            warn!(watch = what, error = %e, namespace = %config.namespace, "cannot watch what the CloudPhoneAccounts need (list and watch cloudphoneaccounts and namespaces cluster-wide, secrets in the operator's namespace: the chart's RBAC grants them); phones that name an account wait; retrying with backoff");
            continue;
        }
        let all_ready = [
            accounts.wait_until_ready().now_or_never(),
            secrets.wait_until_ready().now_or_never(),
            namespaces.wait_until_ready().now_or_never(),
        ]
        .iter()
        .all(|r| matches!(r, Some(Ok(()))));
        if !all_ready {
            continue;
        }
        // NB: a burst of events (a list) folds once: the next event arrives before a fold would.
        tokio::task::yield_now().await;
        let set = fold(&accounts.state(), &secrets, &namespaces, &config, &mut kept);
        feed.send_replace(Some(Arc::new(set)));
    }
}

/// The Kubernetes event of an account's [`AccountEvent`].
fn kube_event(event: AccountEvent) -> Event {
    Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason,
        note: Some(event.message),
        action: event.action.into(),
        secondary: None,
    }
}

/// Writes each account's status after the leader's ticks, where it changed, and publishes its
/// events (in the `default` namespace, as for any cluster-scoped object).
pub async fn write_statuses(
    client: kube::Client,
    accounts: Store<CloudPhoneAccount>,
    mut reports: watch::Receiver<Arc<Vec<AccountTick>>>,
    reporter: Reporter,
) {
    let api: Api<CloudPhoneAccount> = Api::all(client.clone());
    let recorder = Recorder::new(client, reporter);
    let mut credentials: HashMap<String, Option<u64>> = HashMap::new();
    while reports.changed().await.is_ok() {
        let ticks = reports.borrow_and_update().clone();
        let now = Time(jiff::Timestamp::now());
        credentials.retain(|name, _| ticks.iter().any(|t| t.name == *name));
        for tick in ticks.iter() {
            let Some(object) = accounts.get(&reflector::ObjectRef::new(&tick.name)) else {
                continue;
            };
            let seen = credentials
                .insert(tick.name.clone(), tick.credentials)
                .flatten();
            if let Some(event) = account_event(tick, object.status.as_ref(), seen).map(kube_event) {
                let mut reference = object.object_ref(&());
                reference.resource_version = None;
                if let Err(e) = recorder.publish(&event, &reference).await {
                    warn!(account = %tick.name, reason = %event.reason, error = %e, "cannot publish event");
                }
            }
            let Some(status) = account_status(tick, object.status.as_ref(), &now) else {
                continue;
            };
            let patch = serde_json::json!({
                "apiVersion": "cloudphone.io/v1alpha1",
                "kind": "CloudPhoneAccount",
                "metadata": {"name": tick.name},
                "status": status,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            if let Err(e) = api
                .patch_status(&tick.name, &params, &Patch::Apply(&patch))
                .await
            {
                warn!(account = %tick.name, error = %e, "CloudPhoneAccount status write failed; retried after the next tick");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> AllowedHosts {
        AllowedHosts::new([DEFAULT_ALLOWED_HOSTS.to_owned()]).with_url("http://127.0.0.1:8081")
    }

    #[test]
    fn credentials_go_only_to_allowed_hosts() {
        let a = allowed();
        assert!(a.check("https://koophone.myhuaweicloud.com").is_ok());
        assert!(
            a.check("https://iam.cn-north-4.myhuaweicloud.com/v3")
                .is_ok()
        );
        assert!(a.check("https://KOOPHONE.MyHuaweiCloud.com:443/").is_ok());
        assert!(a.check("http://127.0.0.1:8081").is_ok());
        for refused in [
            "https://evil.example",
            "https://myhuaweicloud.com.evil.example",
            "https://evilmyhuaweicloud.com",
            "https://koophone.myhuaweicloud.com@evil.example",
            "http://127.0.0.1:9999",
            "ftp://koophone.myhuaweicloud.com",
            "not a url",
        ] {
            let err = a.check(refused).unwrap_err().to_string();
            assert!(
                err.contains("allowed-vendor-hosts") || err.contains("not an http"),
                "{refused}: {err}"
            );
        }
    }

    fn secret(version: &str, pairs: &[(&str, &str)]) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some("team-a-creds".into());
        secret.metadata.namespace = Some("ops".into());
        secret.metadata.resource_version = Some(version.into());
        secret.data = Some(
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        );
        secret
    }

    #[test]
    fn a_secret_whose_version_changes_without_new_data_keeps_the_accounts_credentials() {
        use crate::api::{CloudPhoneAccountSpec, SecretRef};
        let account = Arc::new(CloudPhoneAccount::new(
            "team-a",
            CloudPhoneAccountSpec {
                vendor_url: Some("http://127.0.0.1:8081".into()),
                credentials_secret_ref: SecretRef {
                    name: "team-a-creds".into(),
                },
                namespace_selector: None,
                namespaces: vec!["team-a".into()],
                allowed_user_ids: Vec::new(),
                limits: None,
            },
        ));
        let config = AccountsConfig {
            namespace: "ops".into(),
            default_vendor_url: "http://127.0.0.1:8081".into(),
            allowed: allowed(),
            client: ClientConfig::default(),
            metrics: None,
            selector: None,
        };
        let (secrets, mut writer) = reflector::store::<Secret>();
        let (namespaces, _) = reflector::store::<PartialObjectMeta<Namespace>>();
        let mut kept = HashMap::new();
        let mut version_after = |s: Secret| {
            writer.apply_watcher_event(&watcher::Event::Apply(s));
            let set = fold(
                std::slice::from_ref(&account),
                &secrets,
                &namespaces,
                &config,
                &mut kept,
            );
            let client = set.accounts["team-a"].client.as_ref().expect("usable");
            (client.credentials_version(), client.auth_status())
        };
        let (first, status) = version_after(secret("1", &[("token", "t0ken")]));
        assert_eq!(status, Ok("token"));
        let (same, _) = version_after(secret("2", &[("token", "t0ken")]));
        assert_eq!(
            same, first,
            "a new resourceVersion with the same data keeps the credentials (their IAM token, the breaker)"
        );
        let (rotated, _) = version_after(secret("3", &[("token", "n3w-t0ken")]));
        assert_ne!(rotated, first, "new data replaces them");
    }

    #[test]
    fn an_account_event_is_published_with_its_type_note_and_action() {
        let published = kube_event(AccountEvent {
            reason: "CredentialsRejected".into(),
            message: "the vendor refused the token".into(),
            warning: true,
            action: "Call",
        });
        assert_eq!(published.type_, EventType::Warning);
        assert_eq!(published.reason, "CredentialsRejected");
        assert_eq!(
            published.note.as_deref(),
            Some("the vendor refused the token")
        );
        assert_eq!(published.action, "Call");
        assert_eq!(published.secondary, None);
        let reloaded = kube_event(AccountEvent {
            reason: "CredentialsChanged".into(),
            message: String::new(),
            warning: false,
            action: "Reload",
        });
        assert_eq!(
            (reloaded.type_, reloaded.action.as_str()),
            (EventType::Normal, "Reload")
        );
    }
}
