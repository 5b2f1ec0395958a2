//! Named exchanges with the fake Kubernetes API server, as kube-rs's controller-rs names the
//! scenarios its `ApiServerVerifier` plays: a test picks one, and reads "given this scenario, the
//! operator does that". Stateful fakes (a cluster that applies writes, a Lease) stay with their
//! suites.

use super::{Recorded, Requests, fake_client, fake_client_hanging, status_error};
use serde_json::{Value, json};

/// What the fake API server answers, by name; [`Scenario::serve`] starts it.
pub enum Scenario {
    /// Every request is answered with this API error (a `Status` body): (HTTP status, reason).
    EveryRequestFails(u16, &'static str),
    /// Every status apply is accepted: CloudPhone `fleet-a/p1` comes back at resourceVersion 11
    /// with the status applied.
    EveryStatusApplyAccepted,
    /// CloudPhones listed (resourceVersion 9) in these pages: each page but the last names the
    /// next as `continue=page-<n>`, n counting from 1.
    PhonesInPages(Vec<Vec<Value>>),
    /// These CloudPhones listed (resourceVersion 10); the first watch sees `event`, and every
    /// watch after it stays open and silent.
    PhonesThenOneWatchEvent { phones: Vec<Value>, event: Value },
    /// The Secret `ops/koophone` lists with a token, then its first watch sees it rotated to an
    /// access key pair; later watches stay silent.
    SecretRotatedFromTokenToAccessKey,
    /// The Secret holds a token; its first watch sees it re-applied at a new version with the same
    /// data (and a label), its second rotated to new data; later watches stay silent.
    SecretReappliedThenRotated,
    /// No Secret is listed, and the watch stays silent.
    NoSecret,
}

/// The CloudPhones' collection, cluster-wide.
const PHONES: &str = "/apis/cloudphone.io/v1alpha1/cloudphones";
const SECRETS: &str = "/api/v1/namespaces/ops/secrets";

impl Scenario {
    /// A kube client whose API server plays this scenario, and the requests it received; a request
    /// the scenario does not expect is answered 404.
    pub fn serve(self) -> (kube::Client, Requests) {
        match self {
            Scenario::EveryRequestFails(code, reason) => {
                fake_client(move |_| status_error(code, reason))
            }
            Scenario::EveryStatusApplyAccepted => fake_client(|r| {
                (
                    200,
                    json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhone",
                           "metadata": {"name": "p1", "namespace": "fleet-a", "resourceVersion": "11"},
                           "spec": {"instanceId": "kp1"}, "status": r.body["status"].clone()}),
                )
            }),
            Scenario::PhonesInPages(pages) => fake_client(move |r: &Recorded| {
                let n = r
                    .query()
                    .split('&')
                    .find_map(|q| q.strip_prefix("continue=page-"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(1);
                let mut metadata = json!({"resourceVersion": "9"});
                if n < pages.len() {
                    metadata["continue"] = json!(format!("page-{}", n + 1));
                }
                (
                    200,
                    json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneList",
                           "metadata": metadata, "items": pages[n - 1]}),
                )
            }),
            Scenario::PhonesThenOneWatchEvent { phones, event } => {
                let mut event = Some(event);
                fake_client_hanging(move |r: &Recorded| match (r.method.as_str(), r.path()) {
                    ("GET", PHONES) if watching(r) => event.take().map(|e| (200, e)),
                    ("GET", PHONES) => Some((
                        200,
                        json!({"apiVersion": "cloudphone.io/v1alpha1", "kind": "CloudPhoneList",
                               "metadata": {"resourceVersion": "10"}, "items": phones}),
                    )),
                    _ => Some(status_error(404, "NotFound")),
                })
            }
            Scenario::SecretRotatedFromTokenToAccessKey => {
                let rotated = secret_json(
                    "2",
                    &[
                        ("accessKey", "AK"),
                        ("secretKey", "SK-value"),
                        ("projectId", "p"),
                    ],
                );
                secret_watched(vec![rotated])
            }
            Scenario::SecretReappliedThenRotated => {
                let mut same = secret_json("2", &[("token", "t0ken-value")]);
                same["metadata"]["labels"] = json!({"team": "ops"});
                secret_watched(vec![same, secret_json("3", &[("token", "n3w-t0ken")])])
            }
            Scenario::NoSecret => fake_client_hanging(|r: &Recorded| {
                if watching(r) {
                    return None;
                }
                Some((
                    200,
                    json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "1"}, "items": []}),
                ))
            }),
        }
    }
}

fn watching(r: &Recorded) -> bool {
    r.query().contains("watch=true")
}

/// The Secret `ops/koophone` listed with token `t0ken-value` at version 1; watch `n` sees the
/// `n`th of `versions` MODIFIED, and the watches after them stay silent.
fn secret_watched(versions: Vec<Value>) -> (kube::Client, Requests) {
    let mut versions = versions.into_iter();
    fake_client_hanging(move |r: &Recorded| match (r.method.as_str(), r.path()) {
        ("GET", SECRETS) if watching(r) => versions
            .next()
            .map(|object| (200, json!({"type": "MODIFIED", "object": object}))),
        ("GET", SECRETS) => Some((
            200,
            json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "1"},
                   "items": [secret_json("1", &[("token", "t0ken-value")])]}),
        )),
        _ => Some(status_error(404, "NotFound")),
    })
}

/// The Secret `ops/koophone` at `version`, as the API server returns it: data base64-encoded.
pub fn secret_json(version: &str, pairs: &[(&str, &str)]) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "koophone", "namespace": "ops", "resourceVersion": version},
           "data": data})
}
