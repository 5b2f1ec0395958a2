//! Authentication of vendor calls: the current credentials (replaceable at any time, for rotation),
//! and IAM tokens fetched, cached and refreshed ahead of expiry, one refresh shared by all callers.

mod iam;

use super::credentials::{Credentials, CredentialsError, ProjectScope};
use super::token::Token;
use secrecy::SecretString;
use std::sync::RwLock;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// A token is refreshed once this fraction of its lifetime has passed.
const REFRESH_AT: f64 = 0.8;
/// IAM failures back off from 1s, doubling, up to a minute.
const IAM_BACKOFF_BASE: Duration = Duration::from_secs(1);
const IAM_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The waits after successive IAM failures (without jitter: one process, one IAM endpoint).
fn iam_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(IAM_BACKOFF_BASE)
        .with_max_delay(IAM_BACKOFF_MAX)
        .without_max_times()
        .build()
}

/// Why a call cannot be authenticated. Never carries a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("IAM token request to {endpoint} failed: {reason}")]
    Iam { endpoint: String, reason: String },
    #[error("IAM token requests are backing off after {failures} failures; next try in {}s", .wait.as_secs())]
    IamBackingOff { failures: u32, wait: Duration },
}

impl AuthError {
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Credentials(_) => "CredentialsInvalid",
            AuthError::Iam { .. } | AuthError::IamBackingOff { .. } => "IamUnavailable",
        }
    }
}

/// A generation of credentials unique in the process, so that a version seen with one [`Auth`] is
/// never taken for another's: an account's client rebuilt after its Secret came back must not find
/// its breaker's record of the old credentials matching the new ones.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What the credentials tell of the vendor project their calls reach: the scope in which instance
/// ids are unique, so that two routes to one project are known as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Project {
    /// The project's id.
    Known(String),
    /// Not known yet: an IAM user whose project is named by name, until IAM's first token tells
    /// its id; or credentials not loaded.
    Pending,
    /// Never known: a bare token without `projectId` (or an IAM answer without the project's id).
    Unknowable,
}

/// How one call is authenticated.
#[derive(Clone, Debug)]
pub enum CallAuth {
    /// Send `X-Auth-Token`.
    Bearer(Token),
    /// Sign the call with the access key pair.
    Sign {
        access_key: String,
        secret_key: SecretString,
        project_id: String,
        security_token: Option<SecretString>,
    },
}

struct Cached {
    token: Token,
    refresh_at: Instant,
    expires_at: Instant,
}

struct State {
    credentials: Result<Credentials, CredentialsError>,
    /// Bumped by every [`Auth::set`], so that a refresh started with old credentials is dropped.
    generation: u64,
    /// How many times [`Auth::set`] replaced the credentials.
    replaced: u64,
    cached: Option<Cached>,
    /// The project id of the IAM tokens of these credentials, once one was fetched (`Some(None)`:
    /// IAM did not say).
    iam_project: Option<Option<String>>,
    failures: u32,
    /// The waits after further failures; restarted by a success or new credentials.
    backoff: backon::ExponentialBackoff,
    blocked_until: Option<Instant>,
}

/// The credentials of the vendor client, shared by all its calls.
pub struct Auth {
    state: RwLock<State>,
    refresh: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl From<Token> for std::sync::Arc<Auth> {
    fn from(token: Token) -> Self {
        std::sync::Arc::new(Auth::token(token))
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(credentials: Result<Credentials, CredentialsError>) -> Auth {
        Auth {
            state: RwLock::new(State {
                credentials,
                generation: next_generation(),
                replaced: 0,
                cached: None,
                iam_project: None,
                failures: 0,
                backoff: iam_backoff(),
                blocked_until: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Static credentials: a token.
    pub fn token(token: Token) -> Auth {
        Auth::new(Ok(Credentials::token(token)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the credentials (a rotated Secret); the next call uses them.
    pub fn set(&self, credentials: Result<Credentials, CredentialsError>) {
        match &credentials {
            Ok(c) => info!(form = c.form(), "vendor credentials loaded"),
            Err(e) => {
                warn!(error = %e, "vendor credentials refused; no vendor call is made until they are fixed")
            }
        }
        let mut state = self.write();
        state.credentials = credentials;
        state.generation = next_generation();
        state.replaced += 1;
        state.cached = None;
        state.iam_project = None;
        state.failures = 0;
        state.backoff = iam_backoff();
        state.blocked_until = None;
    }

    /// Replaces the credentials only when they differ from those held (a Secret rewritten with the
    /// same data, or only its metadata changed, keeps the IAM token, the project and the version,
    /// so that an account's breaker stays as it is); returns whether they were replaced.
    pub fn set_if_changed(&self, credentials: Result<Credentials, CredentialsError>) -> bool {
        if self.read().credentials == credentials {
            return false;
        }
        self.set(credentials);
        true
    }

    /// The version of the credentials: it changes with every replacement, and is never the
    /// version of another `Auth`'s credentials.
    pub fn version(&self) -> u64 {
        self.read().generation
    }

    /// How many times the credentials were replaced since start.
    pub fn replacements(&self) -> u64 {
        self.read().replaced
    }

    /// `Ok(form)` when calls can be authenticated, else why not (for `/readyz` and the tick).
    pub fn status(&self) -> Result<&'static str, CredentialsError> {
        match &self.read().credentials {
            Ok(c) => Ok(c.form()),
            Err(e) => Err(e.clone()),
        }
    }

    /// The project these credentials reach, as far as known now.
    pub fn project(&self) -> Project {
        let state = self.read();
        match &state.credentials {
            Err(_) => Project::Pending,
            Ok(Credentials::Token {
                project_id: Some(id),
                ..
            })
            | Ok(Credentials::AccessKey { project_id: id, .. })
            | Ok(Credentials::Password {
                project: ProjectScope::Id(id),
                ..
            }) => Project::Known(id.clone()),
            Ok(Credentials::Token {
                project_id: None, ..
            }) => Project::Unknowable,
            Ok(Credentials::Password {
                project: ProjectScope::Name(_),
                ..
            }) => match &state.iam_project {
                None => Project::Pending,
                Some(Some(id)) => Project::Known(id.clone()),
                Some(None) => Project::Unknowable,
            },
        }
    }

    /// The project, fetching an IAM token first when only IAM can tell it (an IAM user whose
    /// project is named by name). Still `Pending` while IAM fails or backs off.
    pub async fn resolve_project(&self) -> Project {
        match self.project() {
            Project::Pending if self.status().is_ok() => {
                if let Err(e) = self.iam_token().await {
                    warn!(error = %e, "the project of the credentials is not known yet: IAM gave no token");
                }
                self.project()
            }
            known => known,
        }
    }

    /// How to authenticate the next call.
    pub async fn call_auth(&self) -> Result<CallAuth, AuthError> {
        let credentials = self.read().credentials.clone()?;
        match credentials {
            Credentials::Token { token, .. } => Ok(CallAuth::Bearer(token)),
            Credentials::AccessKey {
                access_key,
                secret_key,
                project_id,
                security_token,
            } => Ok(CallAuth::Sign {
                access_key,
                secret_key,
                project_id,
                security_token,
            }),
            Credentials::Password { .. } => self.iam_token().await.map(CallAuth::Bearer),
        }
    }

    /// The vendor refused `token` (HTTP 401): forget it, so that the next call fetches a new one.
    pub fn refused(&self, token: &Token) {
        let mut state = self.write();
        if state.cached.as_ref().is_some_and(|c| c.token == *token) {
            state.cached = None;
        }
    }

    fn cached(&self, fresh: bool) -> Option<Token> {
        let state = self.read();
        let now = Instant::now();
        let c = state.cached.as_ref()?;
        let until = if fresh { c.refresh_at } else { c.expires_at };
        (now < until).then(|| c.token.clone())
    }

    async fn iam_token(&self) -> Result<Token, AuthError> {
        if let Some(token) = self.cached(true) {
            return Ok(token);
        }
        // One refresh at a time: callers arriving meanwhile wait, then find the new token.
        let _refreshing = self.refresh.lock().await;
        if let Some(token) = self.cached(true) {
            return Ok(token);
        }
        let (credentials, generation) = {
            let state = self.read();
            if let Some(until) = state.blocked_until
                && Instant::now() < until
            {
                // A token that is due for refresh but not expired still serves while IAM backs off.
                drop(state);
                if let Some(token) = self.cached(false) {
                    return Ok(token);
                }
                let state = self.read();
                return Err(AuthError::IamBackingOff {
                    failures: state.failures,
                    wait: until.saturating_duration_since(Instant::now()),
                });
            }
            (state.credentials.clone()?, state.generation)
        };
        let Credentials::Password {
            username,
            password,
            domain,
            project,
            iam_endpoint,
        } = credentials
        else {
            return Err(AuthError::Iam {
                endpoint: String::new(),
                reason: "the credentials changed to a form without IAM".into(),
            });
        };
        let result = self
            .fetch(&iam_endpoint, &username, &password, &domain, &project)
            .await;
        let mut state = self.write();
        if state.generation != generation {
            // Rotated meanwhile: this token belongs to the old credentials.
            return result.map(|(token, ..)| token);
        }
        match result {
            Ok((token, lifetime, project_id)) => {
                let now = Instant::now();
                // NB: the first answer's project holds for these credentials: a refresh never
                // moves their scope (a scope that changes while intents are in flight would let
                // two routes own one instance).
                match (&state.iam_project, project_id) {
                    (None, Some(id)) => state.iam_project = Some(Some(id)),
                    (None, None) => {
                        warn!(endpoint = %iam_endpoint, "the IAM token's answer names no project id: instances reached through these credentials and through another route to the same project are not known as the same");
                        state.iam_project = Some(None);
                    }
                    (Some(known), answered) if answered.is_some() && *known != answered => {
                        warn!(endpoint = %iam_endpoint, "a refreshed IAM token names another project id than the first: the first is kept until the credentials change");
                    }
                    _ => {}
                }
                state.cached = Some(Cached {
                    token: token.clone(),
                    refresh_at: now + lifetime.mul_f64(REFRESH_AT),
                    expires_at: now + lifetime,
                });
                state.failures = 0;
                state.backoff = iam_backoff();
                state.blocked_until = None;
                info!(endpoint = %iam_endpoint, lifetime_s = lifetime.as_secs(), "IAM token fetched");
                Ok(token)
            }
            Err(e) => {
                state.failures += 1;
                let wait = state.backoff.next().unwrap_or(IAM_BACKOFF_MAX);
                state.blocked_until = Some(Instant::now() + wait);
                warn!(error = %e, backoff_s = wait.as_secs(), "IAM token request failed");
                drop(state);
                if let Some(token) = self.cached(false) {
                    return Ok(token);
                }
                Err(e)
            }
        }
    }
}
