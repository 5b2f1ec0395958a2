//! Leader election on a `coordination.k8s.io/v1` Lease, exposed as a `watch::Receiver<bool>`.
//!
//! The algorithm is client-go's: a candidate takes the Lease when it is free or when its record
//! has not changed for the lease duration (measured on the candidate's own clock, so that clock
//! skew between nodes does not matter); the holder renews it every retry period with an
//! optimistic-concurrency update. A holder that has not renewed within the renew deadline (shorter
//! than the lease duration) steps down, even while its renew call still hangs, so it stops before
//! any other candidate can take over.
//!
//! The intents record kept in the same Lease is [`LeaseIntents`] (in `intents`).
//!
//! NB: written here rather than taken from a crate, for what each lacks that a backup fence needs:
//! - `kube-lease-manager` keeps reporting leadership while it cannot reach the API server (its
//!   watch loop does not step down at a renew deadline), which would let two replicas call the
//!   vendor;
//! - `kube-leader-election` is, by its own description, election "without fencing", polled by the
//!   application: it offers no renew deadline shorter than the lease and no term to fence with;
//! - `kube-coordinate` follows the same client-go algorithm, but its releases depend on older kube
//!   versions than the kube 5 this operator builds on, and it exposes a state, not the monotonic
//!   time of the last renewal that [`LeaseFence`] checks before each backup call.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

mod intents;

pub use intents::LeaseIntents;
// NB: the fence lives with the engine that checks it; re-exported here, where it is fed.
pub use crate::reconciler::LeaseFence;

/// The Lease and the timings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity, written as the Lease's holder (the pod name).
    pub identity: String,
    /// How long a Lease not renewed stays held.
    pub lease_duration: Duration,
    /// A holder that could not renew for this long steps down. Shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between attempts to take or renew the Lease.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15s lease, 10s renew deadline, 2s retry period.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> LeaseConfig {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: LEASE_DURATION,
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why an attempt to take or renew the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A running election. Dropping it without [`Leadership::release`] stops it without releasing the
/// Lease (the Lease then expires).
pub struct Leadership {
    receiver: watch::Receiver<bool>,
    fence: LeaseFence,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts campaigning for the Lease.
    pub fn spawn(client: kube::Client, config: LeaseConfig) -> Leadership {
        let (sender, receiver) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let fence = LeaseFence::new(config.renew_deadline);
        let elector = Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            fence: fence.clone(),
        };
        let task = tokio::spawn(elector.run(sender, stopped));
        Leadership {
            receiver,
            fence,
            stop: Some(stop),
            task,
        }
    }

    /// True while this replica leads.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }

    /// The freshness of this replica's leadership, for the vendor calls to check.
    pub fn fence(&self) -> LeaseFence {
        self.fence.clone()
    }

    /// Stops campaigning and hands the Lease back if held, so a standby takes over at once.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Lease record as last seen, and when this replica first saw it (its own clock).
#[derive(Clone, PartialEq)]
struct LeaseRecord {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    duration_seconds: Option<i32>,
    resource_version: Option<String>,
}

/// What one attempt to take or renew the Lease came to.
enum Attempt {
    /// This replica holds it.
    Holds,
    /// Another holder's record is still valid.
    HeldElsewhere,
    /// The write conflicted (409); `ours`: this replica held the Lease as read.
    Conflict { ours: bool },
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<(LeaseRecord, Instant)>,
    fence: LeaseFence,
}

impl Elector {
    async fn run(mut self, sender: watch::Sender<bool>, mut stopped: oneshot::Receiver<()>) {
        let mut valid_until: Option<Instant> = None;
        loop {
            let started = Instant::now();
            // A holder's attempt may not outlive its deadline: it must step down on time.
            let deadline = valid_until.unwrap_or(started + self.config.renew_deadline);
            let attempt = tokio::select! {
                _ = &mut stopped => break,
                attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => attempt,
            };
            match attempt {
                Ok(Ok(true)) => {
                    valid_until = Some(started + self.config.renew_deadline);
                    self.fence.renewed(started);
                }
                Ok(Ok(false)) => valid_until = None,
                Ok(Err(e)) => warn!(error = %e, "leader election: cannot take or renew the lease"),
                Err(_) => warn!("leader election: the lease call did not answer in time"),
            }
            if valid_until.is_some_and(|until| Instant::now() >= until) {
                warn!(identity = %self.config.identity, "leader election: could not renew the lease in time; stepping down");
                valid_until = None;
            }
            let leading = valid_until.is_some();
            if !leading {
                self.fence.ended();
            }
            if *sender.borrow() != leading {
                info!(identity = %self.config.identity, lease = %self.config.name, leading, "leader election: leadership changed");
                sender.send_replace(leading);
            }
            let mut next = Instant::now() + self.config.retry_period;
            if let Some(until) = valid_until {
                next = next.min(until);
            }
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
        self.fence.ended();
        if *sender.borrow() {
            sender.send_replace(false);
            match self.release().await {
                Ok(()) => {
                    info!(identity = %self.config.identity, "leader election: lease released")
                }
                Err(e) => {
                    warn!(error = %e, "leader election: cannot release the lease; it expires instead")
                }
            }
        }
    }

    fn api_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// The Lease as the API server holds it now, if it exists.
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.api_error(e))
    }

    fn duration_seconds(&self) -> i32 {
        self.config.lease_duration.as_secs_f64().ceil().max(1.0) as i32
    }

    /// Takes the Lease if free or expired, renews it if held; true when this replica holds it now.
    ///
    /// NB: a renewal that conflicts is tried once more at once: the intents record (an annotation
    /// of the same Lease) may have been written between this read and this write.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        match self.try_once().await? {
            Attempt::Conflict { ours: true } => {
                Ok(matches!(self.try_once().await?, Attempt::Holds))
            }
            attempt => Ok(matches!(attempt, Attempt::Holds)),
        }
    }

    async fn try_once(&mut self) -> Result<Attempt, LeaseError> {
        let now = MicroTime(Timestamp::now());
        let Some(lease) = self.get().await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Holds),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict { ours: false }),
                Err(e) => Err(self.api_error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = LeaseRecord {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.clone(),
            duration_seconds: spec.lease_duration_seconds,
            resource_version: lease.metadata.resource_version.clone(),
        };
        let seen_at = match &self.observed {
            Some((old, at)) if *old == record => *at,
            _ => Instant::now(),
        };
        self.observed = Some((record.clone(), seen_at));
        let ours = record.holder.as_deref() == Some(self.config.identity.as_str());
        let their_duration =
            Duration::from_secs(record.duration_seconds.unwrap_or(0).max(0) as u64);
        if !ours && record.holder.is_some() && Instant::now() < seen_at + their_duration {
            return Ok(Attempt::HeldElsewhere);
        }
        let mut updated = lease.clone();
        updated.spec = Some(LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
            ..spec
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Holds),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict { ours }),
            Err(e) => Err(self.api_error(e)),
        }
    }

    /// Hands the Lease back: no holder, and a one-second duration so that a standby takes it at once.
    async fn release(&self) -> Result<(), LeaseError> {
        let Some(lease) = self.get().await? else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let mut released = lease.clone();
        released.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..spec
        });
        self.api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
            .map(|_| ())
            .map_err(|e| self.api_error(e))
    }
}

/// How long a Lease is held without renewal before another replica may take it.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
