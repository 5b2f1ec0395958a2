//! Shared test support: a recording fake of the Kubernetes API server, on kube's `tower-test` mock
//! service (every request is recorded: method, path and query, content type, JSON body, and answered
//! by a handler), fast vendor retries, and test phones (the builder shared with the unit tests).

use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Retries of the vendor client fast enough for tests; the policy's shape is what is under test.
pub fn quick_retries(max_retries: u32) -> cloudphone_operator::koophone::RetryPolicy {
    cloudphone_operator::koophone::RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_millis(50),
    }
}

// NB: the deadline rule is one file, shared with the crate's unit tests.
#[path = "../../src/test_deadline.rs"]
mod test_deadline;
pub use test_deadline::deadline;

// NB: the test phone builder is one file too; it names the crate's types as `super::api`.
pub use cloudphone_operator::api;
#[path = "../../src/test_phone.rs"]
mod test_phone;
pub use test_phone::cloudphone;

pub mod lease;
pub mod scenario;

/// A vendor client of the simulator, with its token `t` and the default retries.
pub fn sim_client(
    sim: &cloudphone_operator::sim::Simulator,
) -> cloudphone_operator::koophone::Client {
    use cloudphone_operator::koophone::{Client, ClientConfig, Token};
    Client::new(
        ClientConfig {
            base_url: sim.url(),
            ..ClientConfig::default()
        },
        Token::new("t"),
    )
    .unwrap()
}

/// A log writer that keeps every line, for tests that read what was logged.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// One request the client sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/apis/cloudphone.io/v1alpha1/namespaces/a/cloudphones/p/status?fieldManager=x`.
    pub uri: String,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    pub fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }
}

pub type Requests = Arc<Mutex<Vec<Recorded>>>;

/// A kube client whose requests go to `handler`, which returns (HTTP status, JSON body).
pub fn fake_client<F>(mut handler: F) -> (kube::Client, Requests)
where
    F: FnMut(&Recorded) -> (u16, Value) + Send + 'static,
{
    fake_client_hanging(move |r| Some(handler(r)))
}

/// Like [`fake_client`], but a handler answering `None` never answers (a watch that stays open).
pub fn fake_client_hanging<F>(mut handler: F) -> (kube::Client, Requests)
where
    F: FnMut(&Recorded) -> Option<(u16, Value)> + Send + 'static,
{
    fake_client_streaming(move |r| match handler(r) {
        Some((status, answer)) => Reply::Answer(status, answer),
        None => Reply::Hang,
    })
}

/// What the fake API server does with one request.
pub enum Reply {
    /// Answers at once: (HTTP status, JSON body).
    Answer(u16, Value),
    /// Never answers (a watch that stays open and silent).
    Hang,
    /// Answers 200 with a stream of JSON lines, one a value received (a watch that sees events).
    Stream(tokio::sync::mpsc::UnboundedReceiver<Value>),
}

type StreamedBody = http_body_util::StreamBody<
    futures::stream::BoxStream<'static, Result<http_body::Frame<bytes::Bytes>, std::io::Error>>,
>;

/// Like [`fake_client`], with a handler that may also hang or stream (see [`Reply`]).
pub fn fake_client_streaming<F>(mut handler: F) -> (kube::Client, Requests)
where
    F: FnMut(&Recorded) -> Reply + Send + 'static,
{
    use futures::StreamExt;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<StreamedBody>>();
    let requests: Requests = Arc::default();
    let log = requests.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let recorded = Recorded {
                method: parts.method.to_string(),
                uri: parts
                    .uri
                    .path_and_query()
                    .map_or_else(String::new, |pq| pq.to_string()),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    })
                },
            };
            let reply = handler(&recorded);
            log.lock().unwrap().push(recorded);
            let (status, stream) = match reply {
                Reply::Hang => {
                    open.push(respond);
                    continue;
                }
                Reply::Answer(status, answer) => {
                    let bytes = bytes::Bytes::from(serde_json::to_vec(&answer).unwrap());
                    let frame = Ok(http_body::Frame::data(bytes));
                    (status, futures::stream::once(async move { frame }).boxed())
                }
                Reply::Stream(events) => {
                    let lines = futures::stream::unfold(events, |mut events| async move {
                        let event = events.recv().await?;
                        let mut line = serde_json::to_vec(&event).unwrap();
                        line.push(b'\n');
                        Some((Ok(http_body::Frame::data(line.into())), events))
                    });
                    (200, lines.boxed())
                }
            };
            let response = Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(http_body_util::StreamBody::new(stream))
                .unwrap();
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), requests)
}

/// A Kubernetes `Status` error body.
pub fn status_error(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{reason} (fake)"), "reason": reason, "code": code,
        }),
    )
}

/// The key of a test phone in namespace `fleet`.
pub fn key(name: &str) -> cloudphone_operator::plan::PhoneKey {
    cloudphone_operator::plan::PhoneKey {
        namespace: "fleet".into(),
        name: name.into(),
    }
}

/// `n` `BackedUp` phones `p00000`... naming instances `kp00000`..., and those instances, DataLoaded.
pub fn fleet(
    n: usize,
) -> (
    Vec<cloudphone_operator::api::CloudPhone>,
    Vec<(String, i64)>,
) {
    let phones = (0..n)
        .map(|i| cloudphone(&format!("p{i:05}"), &format!("kp{i:05}")).build())
        .collect();
    let instances = (0..n)
        .map(|i| {
            (
                format!("kp{i:05}"),
                cloudphone_operator::sim::code::DATA_LOADED,
            )
        })
        .collect();
    (phones, instances)
}

/// A simulator to start, built with chainable setters; see [`simulator`].
pub struct SimBuilder(cloudphone_operator::sim::SimConfig);

/// A simulator holding `instances` (id, status code), default timings and no faults.
pub fn simulator(instances: Vec<(String, i64)>) -> SimBuilder {
    SimBuilder(cloudphone_operator::sim::SimConfig {
        instances,
        ..Default::default()
    })
}

impl SimBuilder {
    pub fn backup_duration(mut self, d: Duration) -> Self {
        self.0.timings.backup_duration = d;
        self
    }
    pub fn restore_duration(mut self, d: Duration) -> Self {
        self.0.timings.restore_duration = d;
        self
    }
    /// How long an accepted prepare waits in the vendor's queue, the instance still showing Idle.
    pub fn prepare_queue_delay(mut self, d: Duration) -> Self {
        self.0.timings.prepare_queue_delay = d;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    pub fn faults(mut self, faults: cloudphone_operator::sim::Faults) -> Self {
        self.0.faults = faults;
        self
    }
    /// A token of the default tenant (with none, and no tenant, any token is accepted).
    pub fn token(mut self, token: &str) -> Self {
        self.0.tokens.push(token.into());
        self
    }
    /// A tenant other than the default one, reached with `token`; its instances are seeded as
    /// `<tenant>/<id>`.
    pub fn tenant(mut self, name: &str, token: &str) -> Self {
        self.0.tenants.push(cloudphone_operator::sim::SimTenant {
            name: name.into(),
            tokens: vec![token.into()],
            access_keys: Vec::new(),
        });
        self
    }
    /// Starts it on a free local port.
    pub async fn start(self) -> cloudphone_operator::sim::Simulator {
        cloudphone_operator::sim::Simulator::start(self.0, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }
}

/// An engine to build over an in-memory store and a simulator; see [`engine`].
pub struct EngineBuilder {
    url: String,
    auth: Arc<cloudphone_operator::koophone::Auth>,
    client: cloudphone_operator::koophone::ClientConfig,
    config: cloudphone_operator::reconciler::EngineConfig,
    store: Arc<cloudphone_operator::reconciler::MemoryStore>,
    accounts: Option<cloudphone_operator::reconciler::AccountsFeed>,
    own_tenants: Option<cloudphone_operator::reconciler::Tenants>,
}

/// An engine over `store` calling `sim` with token `t`: 2 s call time-outs and fast retries
/// (3), otherwise the engine's defaults.
pub fn engine(
    sim: &cloudphone_operator::sim::Simulator,
    store: Arc<cloudphone_operator::reconciler::MemoryStore>,
) -> EngineBuilder {
    use cloudphone_operator::koophone::{ClientConfig, Token};
    EngineBuilder {
        url: sim.url(),
        auth: Token::new("t").into(),
        client: ClientConfig {
            request_timeout: Duration::from_secs(2),
            retry: quick_retries(3),
            ..ClientConfig::default()
        },
        config: Default::default(),
        store,
        accounts: None,
        own_tenants: None,
    }
}

impl EngineBuilder {
    pub fn prepare_grace(mut self, d: Duration) -> Self {
        self.config.plan.prepare_grace_period = d;
        self
    }
    pub fn grace(mut self, d: Duration) -> Self {
        self.config.plan.grace_period = d;
        self
    }
    /// The wait after a failed backup, and its bound.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.plan.backoff_base = base;
        self.config.plan.backoff_max = max;
        self
    }
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.client.request_timeout = d;
        self
    }
    /// The account's own bound on calls started per second.
    pub fn calls_per_second(mut self, n: u32) -> Self {
        self.client.calls_per_second = Some(n);
        self
    }
    pub fn retries(mut self, n: u32) -> Self {
        self.client.retry = quick_retries(n);
        self
    }
    pub fn auth(mut self, auth: Arc<cloudphone_operator::koophone::Auth>) -> Self {
        self.auth = auth;
        self
    }
    /// Any other change of the engine's configuration.
    pub fn config(
        mut self,
        change: impl FnOnce(&mut cloudphone_operator::reconciler::EngineConfig),
    ) -> Self {
        change(&mut self.config);
        self
    }
    /// The engine's cap on vendor calls of one kind in flight.
    pub fn calls_in_flight(mut self, n: usize) -> Self {
        self.config.vendor_calls_in_flight = n;
        self
    }
    pub fn breaker(mut self, breaker: cloudphone_operator::reconciler::BreakerConfig) -> Self {
        self.config.breaker = breaker;
        self
    }
    /// The CloudPhoneAccounts the engine sees.
    pub fn accounts(mut self, feed: cloudphone_operator::reconciler::AccountsFeed) -> Self {
        self.accounts = Some(feed);
        self
    }
    /// The namespaces the operator's own credentials serve (`--own-account-namespaces`).
    pub fn own_tenants(mut self, tenants: cloudphone_operator::reconciler::Tenants) -> Self {
        self.own_tenants = Some(tenants);
        self
    }
    pub fn build(
        self,
    ) -> cloudphone_operator::reconciler::Engine<cloudphone_operator::reconciler::MemoryStore> {
        use cloudphone_operator::koophone::{Client, ClientConfig};
        let client = Client::new(
            ClientConfig {
                base_url: self.url,
                ..self.client
            },
            self.auth,
        )
        .unwrap();
        let engine = cloudphone_operator::reconciler::Engine::new(self.store, client, self.config);
        let engine = match self.own_tenants {
            Some(tenants) => engine.with_own_tenants(tenants),
            None => engine,
        };
        match self.accounts {
            Some(feed) => engine.with_accounts(feed),
            None => engine,
        }
    }
}

/// The current minute, as a UTC schedule's `HH:MM` counts it.
pub fn minute() -> jiff::Timestamp {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() / 60 * 60).unwrap()
}

/// A CloudPhoneSchedule `name` in namespace `fleet` (generation 1): a UTC window every day from
/// `start` to `end` minutes from the current minute, woken `lead` ahead. The engine reads the wall
/// clock, so a test's schedule is written around it.
pub fn utc_schedule(
    name: &str,
    start: i64,
    end: i64,
    lead: &str,
) -> cloudphone_operator::api::CloudPhoneSchedule {
    use cloudphone_operator::api::{
        CloudPhoneSchedule, CloudPhoneScheduleSpec, ScheduleWindow, Weekday,
    };
    let hhmm = |m: i64| {
        (minute() + jiff::SignedDuration::from_mins(m))
            .strftime("%H:%M")
            .to_string()
    };
    let mut s = CloudPhoneSchedule::new(
        name,
        CloudPhoneScheduleSpec {
            time_zone: "UTC".into(),
            windows: vec![ScheduleWindow {
                days: vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ],
                start: hhmm(start),
                end: hhmm(end),
            }],
            exceptions: vec![],
            prewarm_lead: Some(lead.into()),
            suspend: false,
            dry_run: false,
        },
    );
    s.metadata.namespace = Some("fleet".into());
    s.metadata.generation = Some(1);
    s
}
