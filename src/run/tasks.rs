//! The long-lived tasks of `run` (watches, account fold, status writer, gate, HTTP listener), in
//! one `JoinSet` under one cancellation token: a task that ends before shutdown is named and ends
//! the process (Kubernetes restarts it), rather than leaving the operator ticking on a stale cache.

use std::collections::HashMap;
use std::time::Duration;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What a failed task says.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a supervised task ended before it was asked to stop.
#[derive(Debug, thiserror::Error)]
pub enum TaskEnd {
    #[error("it returned")]
    Returned,
    #[error("it failed: {0}")]
    Failed(#[source] BoxError),
    #[error("it panicked: {0}")]
    Panicked(String),
}

/// A supervised task that ended before shutdown: which, and how.
#[derive(Debug, thiserror::Error)]
#[error("the {task} task ended while the operator ran ({end})")]
pub struct TaskEnded {
    pub task: &'static str,
    #[source]
    pub end: TaskEnd,
}

/// The supervised tasks and their one cancellation token.
pub struct Tasks {
    set: JoinSet<(&'static str, Result<(), TaskEnd>)>,
    names: HashMap<Id, &'static str>,
    stop: CancellationToken,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::new()
    }
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks {
            set: JoinSet::new(),
            names: HashMap::new(),
            stop: CancellationToken::new(),
        }
    }

    /// The token cancelled at shutdown, for a task that stops gracefully on its own (see
    /// [`Tasks::spawn_graceful`]).
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `task`, which should run until shutdown; it is dropped when the token is cancelled.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.spawn_graceful(name, async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
            Ok(())
        });
    }

    /// Runs `task`, which stops by itself once [`Tasks::token`] is cancelled (an HTTP listener
    /// finishing its requests); an `Err` before then is logged with the task's name.
    pub fn spawn_graceful(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), BoxError>> + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let handle = self.set.spawn(async move {
            let result = task.await;
            let end = match result {
                Ok(()) if stop.is_cancelled() => return (name, Ok(())),
                Ok(()) => TaskEnd::Returned,
                Err(e) => TaskEnd::Failed(e),
            };
            (name, Err(end))
        });
        self.names.insert(handle.id(), name);
    }

    /// Resolves when a task ends (before shutdown: any end is unexpected), naming it; pending
    /// forever while every task runs (or when there is none).
    pub async fn first_ended(&mut self) -> TaskEnded {
        loop {
            let Some(joined) = self.set.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (task, end) = match joined {
                Ok((id, (task, result))) => {
                    self.names.remove(&id);
                    match result {
                        Ok(()) => continue,
                        Err(end) => (task, end),
                    }
                }
                Err(e) => {
                    let task = self.names.remove(&e.id()).unwrap_or("unnamed");
                    (task, TaskEnd::Panicked(panic_message(e)))
                }
            };
            return TaskEnded { task, end };
        }
    }

    /// Cancels the token and waits up to `within` for every task to end, then aborts the rest.
    /// What a task says as it ends now is logged, not returned: the process is stopping anyway.
    pub async fn shutdown(mut self, within: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(within, async {
            while let Some(joined) = self.set.join_next_with_id().await {
                match joined {
                    Ok((_, (task, Err(TaskEnd::Failed(e))))) => {
                        warn!(task, error = %e, "a task failed as it stopped")
                    }
                    Ok(_) => {}
                    Err(e) if e.is_panic() => {
                        let task = self.names.get(&e.id()).copied().unwrap_or("unnamed");
                        warn!(task, panic = %panic_message(e), "a task panicked as it stopped");
                    }
                    Err(_) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                within_s = within.as_secs_f64(),
                left = self.set.len(),
                "tasks still running at shutdown were aborted"
            );
            self.set.shutdown().await;
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_or_fails_or_panics_is_named() {
        let mut tasks = Tasks::new();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("CloudPhone watch", async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let ended = tasks.first_ended().await;
        assert_eq!(ended.task, "CloudPhone watch");
        assert!(matches!(ended.end, TaskEnd::Returned), "{ended}");
        assert!(
            ended.to_string().contains("CloudPhone watch task ended"),
            "{ended}"
        );

        tasks.spawn_graceful("HTTP listener", async { Err("address in use".into()) });
        let ended = tasks.first_ended().await;
        assert_eq!(ended.task, "HTTP listener");
        assert!(ended.to_string().contains("address in use"), "{ended}");

        tasks.spawn("account fold", async { panic!("the fold broke") });
        let ended = tasks.first_ended().await;
        assert_eq!(ended.task, "account fold");
        assert!(
            matches!(&ended.end, TaskEnd::Panicked(m) if m == "the fold broke"),
            "{ended}"
        );

        let waiting = tokio::time::timeout(Duration::from_secs(3600), tasks.first_ended()).await;
        assert!(waiting.is_err(), "a running task is not an end");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_every_task_lets_a_graceful_one_finish_and_bounds_it() {
        let mut tasks = Tasks::new();
        let dropped = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        tasks.spawn("watch", async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        let finished = Arc::new(AtomicBool::new(false));
        let (token, done) = (tasks.token(), finished.clone());
        tasks.spawn_graceful("HTTP listener", async move {
            token.cancelled().await;
            // Finishing the requests in flight.
            tokio::time::sleep(Duration::from_secs(2)).await;
            done.store(true, Ordering::SeqCst);
            Ok(())
        });
        tasks.spawn_graceful("stuck", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let started = tokio::time::Instant::now();
        tasks.shutdown(Duration::from_secs(5)).await;
        assert!(dropped.load(Ordering::SeqCst), "the watch was dropped");
        assert!(finished.load(Ordering::SeqCst), "the listener finished");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "a task that ignores the token is aborted at the bound: {took:?}"
        );
    }
}
