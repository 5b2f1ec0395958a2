//! A simulator of the KooPhone vendor API: a real HTTP server with the vendor's checks, answer
//! shapes and state machine, fault injection, and counters that tests and benchmarks read.
//!
//! It serves the quick start (`demo`), the tests and the benchmarks, and runs stand-alone as
//! `cloudphone-operator simulate`. It never talks to the real vendor.

mod args;
mod faults;
mod fleet;
mod iam;
mod seed;
mod server;
mod signature;

pub use args::SimulateArgs;
pub use faults::{CannedError, Faults, Injected};
pub use fleet::{Instance, Timings, code, parse_state};
pub use iam::{IamUser, project_id_of};

pub use seed::{SeedError, parse_instance_flag, parse_seed_text, read_seed_file};

use fleet::Fleet;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How a simulator starts.
#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// The instances and their initial status codes.
    pub instances: Vec<(String, i64)>,
    pub timings: Timings,
    pub faults: Faults,
    /// Static tokens the vendor endpoints accept. With no token, IAM user or access key
    /// configured, any non-empty token is accepted.
    pub tokens: Vec<String>,
    /// Users the IAM endpoint (`POST /v3/auth/tokens`) issues tokens to.
    pub iam_users: Vec<IamUser>,
    /// Lifetime of issued tokens (the vendor's is 24 hours).
    pub token_lifetime: Option<std::time::Duration>,
    /// Access key pairs (AK, SK) whose signed calls are accepted.
    pub access_keys: Vec<(String, String)>,
    /// Answer refused backups (2005, 2006, 4001, 1000) with HTTP 200 instead of 400, as the
    /// vendor's current error-code page says it does.
    pub business_errors_as_200: bool,
    /// Seed of the simulator's randomness (backup failures, faults), for reproducible runs.
    pub seed: u64,
    /// Create an instance it does not know, in this status, the first time a call names it (so that
    /// `run --simulate` has an instance for every CloudPhone of a cluster).
    pub auto_create: Option<i64>,
    /// Tenants apart from the default one: each has its own instances (seeded and listed as
    /// `<tenant>/<id>`), and its identities see only those.
    pub tenants: Vec<SimTenant>,
}

/// A tenant (a project) of the simulated vendor, and the identities that reach it.
#[derive(Clone, Debug, Default)]
pub struct SimTenant {
    /// The tenant's name, which is also its project id (`X-Project-Id` of its signed calls).
    pub name: String,
    /// Static tokens of the tenant.
    pub tokens: Vec<String>,
    /// Access key pairs (AK, SK) of the tenant.
    pub access_keys: Vec<(String, String)>,
}

/// The fleet's name of a tenant's instance: `<tenant>/<id>` (no id holds a `/`), or the id alone
/// in the default tenant.
fn fleet_key(tenant: &str, id: &str) -> String {
    if tenant == iam::DEFAULT_TENANT {
        id.to_owned()
    } else {
        format!("{tenant}/{id}")
    }
}

/// The instance id of a fleet key.
fn id_of(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

/// The counters' name of a tenant.
fn tenant_label(tenant: &str) -> &str {
    if tenant == iam::DEFAULT_TENANT {
        "default"
    } else {
        tenant
    }
}

/// Counts of what the simulator was asked, for tests and benchmarks (`GET /sim/counters`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Counters {
    /// Per endpoint (`batch-query-status`, `backup`, `prepare`, `prepare-progress`).
    pub endpoints: BTreeMap<String, EndpointCounters>,
    /// Backups started across all instances.
    pub backups_started: u64,
    /// Prepares started across all instances (each queued a restore).
    pub prepares_started: u64,
    /// Calls of the IAM token endpoint.
    pub iam_calls: u64,
    /// Vendor calls answered 401.
    pub unauthorized: u64,
    /// Authenticated vendor calls per tenant (`default` for the untenanted identities).
    pub calls_by_tenant: BTreeMap<String, u64>,
}

/// Counts for one endpoint.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EndpointCounters {
    /// Requests received, whatever their answer.
    pub calls: u64,
    /// Ids carried by requests that passed the checks.
    pub ids: u64,
    /// The most ids one request carried.
    pub max_ids_per_call: usize,
    /// Requests by outcome: `ok`, `refused` (a 4xx or business refusal), `injected-500`, ...
    pub outcomes: BTreeMap<String, u64>,
    /// Requests being answered now (injected latency included).
    pub in_flight: usize,
    /// The most requests answered at once.
    pub max_in_flight: usize,
}

impl Counters {
    fn record_call(&mut self, endpoint: &str, ids: usize) {
        let e = self.endpoints.entry(endpoint.to_owned()).or_default();
        e.calls += 1;
        e.ids += ids as u64;
        e.max_ids_per_call = e.max_ids_per_call.max(ids);
    }

    fn enter(&mut self, endpoint: &str) {
        let e = self.endpoints.entry(endpoint.to_owned()).or_default();
        e.in_flight += 1;
        e.max_in_flight = e.max_in_flight.max(e.in_flight);
    }

    fn leave(&mut self, endpoint: &str) {
        let e = self.endpoints.entry(endpoint.to_owned()).or_default();
        // NB: saturating: the counters may have been reset while the request was answered.
        e.in_flight = e.in_flight.saturating_sub(1);
    }

    fn record_outcome(&mut self, endpoint: &str, outcome: &str) {
        let e = self.endpoints.entry(endpoint.to_owned()).or_default();
        *e.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// Calls received by one endpoint.
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.endpoints.get(endpoint).map_or(0, |e| e.calls)
    }
}

struct SimState {
    identities: iam::Identities,
    fleet: Fleet,
    faults: Faults,
    fault_rng: StdRng,
    counters: Counters,
}

struct SharedSim {
    inner: Mutex<SimState>,
    business_errors_as_200: bool,
    auto_create: Option<i64>,
}

impl SharedSim {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // NB: no code panics while holding the lock, so poisoning cannot happen; recover anyway.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why a simulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("simulator faults: {0}")]
    Faults(#[source] faults::BadRate),
    #[error("simulator timings: {0}")]
    Timings(#[source] faults::BadRate),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<SharedSim>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Starts the server on `addr` (port 0 picks a free port) and returns once it listens.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<Simulator, StartError> {
        config.faults.validate().map_err(StartError::Faults)?;
        config.timings.validate().map_err(StartError::Timings)?;
        let now = Instant::now();
        let mut fleet = Fleet::new(config.timings, config.seed);
        for (id, status) in &config.instances {
            fleet.set(id, *status, now);
        }
        let shared = Arc::new(SharedSim {
            inner: Mutex::new(SimState {
                identities: iam::Identities {
                    static_tokens: config.tokens.into_iter().collect(),
                    users: config.iam_users,
                    access_keys: config.access_keys.into_iter().collect(),
                    issued: Default::default(),
                    revoked: Default::default(),
                    token_lifetime: config
                        .token_lifetime
                        .unwrap_or(std::time::Duration::from_secs(24 * 3600)),
                    tenant_tokens: config
                        .tenants
                        .iter()
                        .flat_map(|t| t.tokens.iter().map(|k| (k.clone(), t.name.clone())))
                        .collect(),
                    tenant_keys: config
                        .tenants
                        .iter()
                        .flat_map(|t| {
                            t.access_keys
                                .iter()
                                .map(|(ak, sk)| (ak.clone(), (sk.clone(), t.name.clone())))
                        })
                        .collect(),
                },
                fleet,
                faults: config.faults,
                fault_rng: StdRng::seed_from_u64(config.seed.wrapping_add(1)),
                counters: Counters::default(),
            }),
            business_errors_as_200: config.business_errors_as_200,
            auto_create: config.auto_create,
        });
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        Ok(Simulator {
            addr,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or overwrites instances in the given states.
    pub fn seed<'a>(&self, instances: impl IntoIterator<Item = (&'a str, i64)>) {
        let now = Instant::now();
        let mut inner = self.shared.lock();
        for (id, status) in instances {
            inner.fleet.set(id, status, now);
        }
    }

    /// A user streams from instance `id` (of the default tenant) for `duration`: Streaming until
    /// then, then DataLoaded again; false when its data is not loaded (nothing to stream).
    pub fn start_session(&self, id: &str, duration: std::time::Duration) -> bool {
        self.shared
            .lock()
            .fleet
            .start_session(id, duration, Instant::now())
    }

    /// One instance as the vendor sees it now.
    pub fn instance(&self, id: &str) -> Option<Instance> {
        self.shared.lock().fleet.get(id, Instant::now()).cloned()
    }

    /// Every instance as the vendor sees it now, sorted by id.
    pub fn instances(&self) -> Vec<(String, Instance)> {
        self.shared.lock().fleet.all(Instant::now())
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) -> Result<(), faults::BadRate> {
        faults.validate()?;
        self.shared.lock().faults = faults;
        Ok(())
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Revokes every token the IAM endpoint issued: the next call with one is answered 401.
    pub fn revoke_tokens(&self) {
        let identities = &mut self.shared.lock().identities;
        identities.revoked.extend(identities.issued.keys().cloned());
    }

    /// Every token the IAM endpoint issued (for tests that look for leaks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared
            .lock()
            .identities
            .issued
            .keys()
            .cloned()
            .collect()
    }

    /// Changes an IAM user's password (a rotation at the vendor).
    pub fn set_iam_password(&self, user: &str, password: &str) {
        for u in self
            .shared
            .lock()
            .identities
            .users
            .iter_mut()
            .filter(|u| u.name == user)
        {
            u.password = password.to_owned();
        }
    }

    /// Replaces the static tokens accepted.
    pub fn set_static_tokens<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) {
        self.shared.lock().identities.static_tokens =
            tokens.into_iter().map(str::to_owned).collect();
    }

    /// Stops accepting `token`, whichever tenant it belonged to (a revoked credential).
    pub fn revoke_token(&self, token: &str) {
        let identities = &mut self.shared.lock().identities;
        identities.static_tokens.remove(token);
        identities.tenant_tokens.remove(token);
    }

    /// Accepts `token` for `tenant` from now on (a new credential).
    pub fn add_tenant_token(&self, tenant: &str, token: &str) {
        self.shared
            .lock()
            .identities
            .tenant_tokens
            .insert(token.to_owned(), tenant.to_owned());
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.shared.lock().counters = Counters::default();
    }

    /// Stops accepting calls and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
