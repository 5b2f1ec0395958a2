//! The KooPhone HTTP client: its calls, and each call's attempts with their retries, their
//! re-authentication and the account's flow control.

mod answer;
mod config;
mod headers;
mod ids;
mod limits;

pub use answer::{BackupReceipt, PrepareProgress, PrepareReceipt, StatusReport};
pub use config::{ClientConfig, DEFAULT_BASE_URL};
pub use ids::{MAX_ID_CHARS, MAX_IDS_PER_CALL, check_id};
pub use limits::Reservation;

use super::auth::{Auth, CallAuth};
use super::endpoint::Endpoint;
use super::error::Error;
use super::retry::{RetryPolicy, parse_retry_after};
use super::wire;
use answer::{Answered, prepare_receipt, progress, read_answer, receipt};
use ids::{validate_chunk, validate_user};
use jiff::Timestamp;
// NB: foldhash: maps a tick fills and reads per phone; SipHash was a tenth of a steady tick.
use foldhash::{HashMap, HashMapExt};
use limits::Limits;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, debug, warn};
use uuid::Uuid;

/// A caller's last check before a call leaves (say, that it still leads): `Err` names why the call
/// must not. It runs after every wait of the attempt (a `Retry-After`, the account's limits, a
/// token fetch), right before the request is sent, so nothing waits between it and the call.
pub type Gate<'a> = dyn Fn() -> Result<(), &'static str> + Send + Sync + 'a;

/// Sees every vendor HTTP attempt: for metrics.
pub trait CallObserver: Send + Sync {
    /// `outcome` is `ok` or the failure's bounded label.
    fn observe(&self, endpoint: Endpoint, outcome: &'static str, elapsed: Duration);
}

/// A typed client of the two vendor calls the operator makes. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    /// `host[:port]` of the base URL, as the HTTP stack sends it: signed as the `host` header.
    host: String,
    auth: Arc<Auth>,
    retry: RetryPolicy,
    observer: Option<Arc<dyn CallObserver>>,
    /// Flow control: after a 429, no call of this client (one account) leaves before this time,
    /// whichever chunk or endpoint it is for.
    paused_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The account's own limits, shared by every clone.
    limits: Arc<Limits>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client; fails on a base URL without a host, or a TLS setup the platform cannot
    /// provide. `auth` is a [`Token`](super::Token) or a shared [`Auth`] whose credentials may rotate.
    pub fn new(config: ClientConfig, auth: impl Into<Arc<Auth>>) -> Result<Client, Error> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base_url).map_err(|e| Error::BaseUrl {
            url: base_url.clone(),
            source: Box::new(e),
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(Error::BaseUrlWithoutHost { url: base_url }),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("cloudphone-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Client {
            http,
            base_url,
            host,
            auth: auth.into(),
            retry: config.retry,
            observer: None,
            paused_until: Arc::default(),
            limits: Arc::new(Limits::new(config.calls_in_flight, config.calls_per_second)),
        })
    }

    /// Reports every attempt to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Client {
        self.observer = Some(observer);
        self
    }

    /// The credentials' state: `Ok(form)`, or why no call can be authenticated.
    pub fn auth_status(&self) -> Result<&'static str, super::CredentialsError> {
        self.auth.status()
    }

    /// The version of the credentials: it changes whenever they are replaced (a rotated Secret).
    pub fn credentials_version(&self) -> u64 {
        self.auth.version()
    }

    /// The vendor project the credentials reach, as far as known now.
    pub fn project(&self) -> super::Project {
        self.auth.project()
    }

    /// The vendor project, asking IAM for a token first when only IAM can tell it.
    pub async fn resolve_project(&self) -> super::Project {
        self.auth.resolve_project().await
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// One status call for at most 100 ids.
    pub async fn query_status_chunk(&self, ids: &[String]) -> Result<StatusReport, Error> {
        validate_chunk(ids)?;
        let Answered {
            request_id,
            body: answer,
            ..
        }: Answered<wire::StatusAnswer> = self
            .call(
                Endpoint::QueryStatus,
                &ids_body(ids),
                ids.len(),
                None,
                None,
                None,
            )
            .await?;
        let Some(results) = answer.into_results() else {
            return Err(Error::Decode {
                endpoint: Endpoint::QueryStatus,
                request_id,
                status: 200,
                detail: "the answer has no status_results, neither under data nor at the top"
                    .into(),
                excerpt: String::new(),
            });
        };
        // Only the ids asked for: an id the vendor added on its own is dropped.
        let mut answered: HashMap<String, i64> = results
            .into_iter()
            .map(|r| (r.instance_id, r.status))
            .collect();
        let mut observed = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match answered.remove_entry(id) {
                Some((id, code)) => {
                    observed.insert(id, code);
                }
                // NB: an id asked for twice is observed once, not missing.
                None if observed.contains_key(id) => {}
                None => missing.push(id.clone()),
            }
        }
        Ok(StatusReport {
            request_id,
            observed,
            missing,
        })
    }

    /// Takes the slot of an action's call to `endpoint`: waits out the account's flow-control
    /// pause, its credentials (an IAM token fetch), the actions' share of its call rate, its call
    /// rate and a place in flight. The call that uses it (such as [`Client::backup_chunk_gated`])
    /// leaves without waiting.
    pub async fn reserve(&self, endpoint: Endpoint) -> Result<Reservation<'_>, Error> {
        self.wait_for_flow_control().await;
        let call_auth = self
            .auth
            .call_auth()
            .await
            .map_err(|source| Error::Auth { endpoint, source })?;
        if let Some(spacing) = &self.limits.backup_spacing {
            spacing.start().await;
        }
        let slot = self.limits.admit().await;
        Ok(Reservation {
            call_auth,
            _slot: slot,
        })
    }

    /// One backup call for at most 100 ids.
    ///
    /// NB: the vendor has no idempotency token, so a backup call is sent again only when the vendor
    /// certainly did not act on it (no connection, or a 429); after a time-out or a 5xx the outcome
    /// is unknown and the caller must find it out from the status query instead.
    pub async fn backup_chunk(&self, ids: &[String]) -> Result<BackupReceipt, Error> {
        self.backup_chunk_gated(ids, Uuid::new_v4(), &|| Ok(()), None)
            .await
    }

    /// [`Client::backup_chunk`] whose first attempt carries `request_id` as its `x-request-id`, so
    /// that the caller can record it before the call (a re-sent attempt gets a fresh one, which the
    /// receipt gives), and whose every attempt asks `gate` last, after all its waits: a refusal is
    /// [`Error::Withheld`], and nothing is sent. With a `reservation` (see [`Client::reserve`]),
    /// the first attempt leaves at once (after `gate`); a retry (after a 429) waits for a slot of
    /// its own, and asks `gate` again.
    pub async fn backup_chunk_gated(
        &self,
        ids: &[String],
        request_id: Uuid,
        gate: &Gate<'_>,
        reservation: Option<Reservation<'_>>,
    ) -> Result<BackupReceipt, Error> {
        validate_chunk(ids)?;
        let answered: Answered<wire::BackupAnswer> = self
            .call(
                Endpoint::Backup,
                &ids_body(ids),
                ids.len(),
                Some(request_id),
                Some(gate),
                reservation,
            )
            .await?;
        Ok(receipt(answered))
    }

    /// One prepare call for at most 100 ids, readying them for `user_id`: sent as a backup call is
    /// (a first attempt carrying `request_id`, `gate` asked last before every attempt, retried only
    /// when the vendor certainly did not act, in `reservation` when given).
    pub async fn prepare_chunk_gated(
        &self,
        user_id: &str,
        ids: &[String],
        request_id: Uuid,
        gate: &Gate<'_>,
        reservation: Option<Reservation<'_>>,
    ) -> Result<PrepareReceipt, Error> {
        validate_chunk(ids)?;
        validate_user(user_id)?;
        // NB: serialising strings cannot fail.
        let body = serde_json::to_vec(&wire::PrepareRequest {
            user_id,
            instance_ids: ids,
        })
        .unwrap_or_default();
        let answered: Answered<wire::PrepareAnswer> = self
            .call(
                Endpoint::Prepare,
                &body,
                ids.len(),
                Some(request_id),
                Some(gate),
                reservation,
            )
            .await?;
        Ok(prepare_receipt(answered))
    }

    /// Where one instance's prepare for `user_id` stands (one call for one instance: for a phone
    /// about to be prepared again, never to poll a fleet).
    pub async fn prepare_progress(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<PrepareProgress, Error> {
        validate_chunk(std::slice::from_ref(&id.to_owned()))?;
        validate_user(user_id)?;
        // NB: serialising strings cannot fail.
        let body = serde_json::to_vec(&wire::ProgressRequest {
            user_id,
            instance_id: id,
        })
        .unwrap_or_default();
        let answered: Answered<wire::ProgressAnswer> = self
            .call(Endpoint::PrepareProgress, &body, 1, None, None, None)
            .await?;
        progress(answered)
    }

    /// Sends one call, retrying what may be retried, and decodes the answer. Each attempt waits
    /// for the account's flow control, its credentials and its limits, then asks `gate`, then
    /// leaves.
    async fn call<T: wire::Answer>(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        ids: usize,
        mut first_request_id: Option<Uuid>,
        gate: Option<&Gate<'_>>,
        mut reserved: Option<Reservation<'_>>,
    ) -> Result<Answered<T>, Error> {
        // NB: the reads; an action is retried only when the vendor certainly did not act.
        let idempotent = matches!(endpoint, Endpoint::QueryStatus | Endpoint::PrepareProgress);
        let mut backoff = self.retry.backoff();
        let mut retry = 0;
        let mut reauthenticated = false;
        loop {
            // NB: a reserved first attempt waited for all of this before its caller's last steps.
            let (call_auth, slot) = match reserved.take() {
                Some(Reservation { call_auth, _slot }) => (call_auth, _slot),
                None => {
                    self.wait_for_flow_control().await;
                    let call_auth = self
                        .auth
                        .call_auth()
                        .await
                        .map_err(|source| Error::Auth { endpoint, source })?;
                    (call_auth, self.limits.admit().await)
                }
            };
            let request_id = first_request_id.take().unwrap_or_else(Uuid::new_v4);
            // One span an attempt: every line about it carries the endpoint and the request id.
            let span = tracing::info_span!("vendor_call", %endpoint, %request_id, ids);
            // NB: the last step before the send: no wait may come between the gate and the call.
            if let Some(gate) = gate
                && let Err(reason) = gate()
            {
                span.in_scope(|| debug!(reason, "vendor call withheld by its caller's last check"));
                return Err(Error::Withheld { endpoint, reason });
            }
            let sent_at = Timestamp::now();
            let started = Instant::now();
            let result = self
                .attempt(endpoint, request_id, body, &call_auth)
                .instrument(span.clone())
                .await;
            drop(slot);
            if let Some(observer) = &self.observer {
                let outcome = result.as_ref().map_or_else(Error::label, |_| "ok");
                observer.observe(endpoint, outcome, started.elapsed());
            }
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let err = match result {
                Ok(body) => {
                    span.in_scope(|| debug!(elapsed_ms, "vendor call succeeded"));
                    return Ok(Answered {
                        request_id,
                        sent_at,
                        body,
                    });
                }
                Err(err) => err,
            };
            // A refused token: forget it, fetch a new one and try once more; never a loop.
            if err.http_status() == Some(401) && !reauthenticated {
                reauthenticated = true;
                if let CallAuth::Bearer(token) = &call_auth {
                    self.auth.refused(token);
                }
                span.in_scope(|| {
                    warn!("vendor refused the credentials (HTTP 401); re-authenticating once")
                });
                continue;
            }
            let may_retry = if idempotent {
                err.is_transient()
            } else {
                err.certainly_not_processed()
            };
            let retry_after = match &err {
                Error::Http { retry_after, .. } => *retry_after,
                _ => None,
            };
            let Some(wait) = may_retry.then(|| backoff.next()).flatten() else {
                if err.http_status() == Some(429) {
                    self.pause(self.retry.honour(self.retry.base_delay, retry_after));
                }
                span.in_scope(|| warn!(elapsed_ms, error = %err, "vendor call failed"));
                return Err(err);
            };
            let delay = self.retry.honour(wait, retry_after);
            if err.http_status() == Some(429) {
                self.pause(delay);
            }
            span.in_scope(|| {
                warn!(elapsed_ms, error = %err, retry = retry + 1, delay_ms = delay.as_millis() as u64,
                    "vendor call failed, retrying")
            });
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Sends one attempt of a call and reads its answer.
    async fn attempt<T: wire::Answer>(
        &self,
        endpoint: Endpoint,
        request_id: Uuid,
        body: &[u8],
        call_auth: &CallAuth,
    ) -> Result<T, Error> {
        let transport = |source: reqwest::Error| Error::Transport {
            endpoint,
            request_id,
            timeout: source.is_timeout(),
            connect: source.is_connect(),
            source: source.without_url(),
        };
        let headers = self.headers(endpoint, request_id, call_auth, body);
        let mut request = self
            .http
            .post(format!("{}{}", self.base_url, endpoint.path()));
        // NB: `host` is signed but not set by hand: the HTTP stack sends the same value, as `Host`
        // on HTTP/1.1 or as `:authority` on HTTP/2, where a `host` header has no place.
        for (name, value) in headers.iter().filter(|(name, _)| name != "host") {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .body(body.to_vec())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.bytes().await.map_err(transport)?;
        read_answer(endpoint, request_id, status, retry_after, &body)
    }
}

/// The body of a call that names only instance ids: `{"instance_ids": [...]}`.
fn ids_body(ids: &[String]) -> Vec<u8> {
    // NB: serialising a list of strings cannot fail.
    serde_json::to_vec(&wire::InstanceIdsRequest { instance_ids: ids }).unwrap_or_default()
}
