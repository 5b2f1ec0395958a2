//! The leader-gated loop: ticks on the interval and, spaced, on the trigger, only while leading;
//! a lost leadership or a shutdown cuts the tick in flight.

use super::*;

/// Resolves once `leader` says false (or its sender is gone).
pub(super) async fn leadership_lost(leader: &mut watch::Receiver<bool>) {
    loop {
        if !*leader.borrow_and_update() {
            return;
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

impl<S: PhoneStore> Engine<S> {
    /// Ticks every `interval` and on each trigger, until `shutdown` resolves. A tick in flight when
    /// `shutdown` resolves is given `shutdown_grace` to finish, then cut.
    pub async fn run(
        &self,
        interval: Duration,
        shutdown_grace: Duration,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let (_always, leader) = watch::channel(true);
        self.run_while_leading(interval, leader, shutdown_grace, shutdown)
            .await;
    }

    /// Like [`Engine::run`], but ticks only while `leader` is true. Gaining leadership ticks at once;
    /// losing it cuts the tick in flight, so that no vendor call starts after the loss.
    ///
    /// NB: cutting a tick is safe at any point: a backup's intent is written before its call, and a
    /// call already sent is found out from the next status query.
    pub async fn run_while_leading(
        &self,
        interval: Duration,
        mut leader: watch::Receiver<bool>,
        shutdown_grace: Duration,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let shutdown = shutdown.boxed().shared();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'outer: loop {
            // Wait for leadership.
            while !*leader.borrow_and_update() {
                tokio::select! {
                    _ = shutdown.clone() => break 'outer,
                    changed = leader.changed() => if changed.is_err() { break 'outer },
                }
            }
            info!(
                "leading: ticking every {}",
                humantime::format_duration(interval)
            );
            // A new term: what this engine wrote in an earlier one may be older than what
            // another leader wrote since.
            self.start_term();
            ticker.reset_immediately();
            // NB: early ticks keep their spacing, and never postpone the interval's whole ticks:
            // a request repeated in a loop costs at most one early tick per spacing.
            let mut early_pending = false;
            let mut next_early = tokio::time::Instant::now();
            loop {
                let early = tokio::select! {
                    biased;
                    _ = shutdown.clone() => break 'outer,
                    changed = leader.changed() => {
                        if changed.is_err() || !*leader.borrow_and_update() {
                            break;
                        }
                        continue;
                    }
                    _ = ticker.tick() => false,
                    _ = self.trigger.0.notify.notified(), if !early_pending => {
                        early_pending = true;
                        continue;
                    }
                    _ = tokio::time::sleep_until(next_early), if early_pending => true,
                };
                early_pending = false;
                // NB: a whole tick serves every phone a request named, too.
                let only = match (early, self.trigger.take()) {
                    (false, _) | (true, Asked::Whole) => None,
                    (true, Asked::Phones(phones)) => Some(phones),
                    (true, Asked::Nothing) => continue,
                };
                next_early = tokio::time::Instant::now() + self.config.min_tick_spacing;
                let tick = self.tick_of(only);
                tokio::pin!(tick);
                tokio::select! {
                    _ = &mut tick => {}
                    _ = leadership_lost(&mut leader) => {
                        warn!("leadership lost during a tick: the tick was cut");
                        break;
                    }
                    _ = shutdown.clone() => {
                        // The grace is for finishing the tick, not for outliving the Lease: a
                        // leader that loses it meanwhile stops at once.
                        tokio::select! {
                            finished = tokio::time::timeout(shutdown_grace, &mut tick) => match finished {
                                Ok(_) => info!("shutting down: the tick in flight finished"),
                                Err(_) => warn!("shutting down: the tick in flight was cut after {}", humantime::format_duration(shutdown_grace)),
                            },
                            _ = leadership_lost(&mut leader) => warn!("shutting down: leadership lost during the grace; the tick in flight was cut"),
                        }
                        break 'outer;
                    }
                }
            }
            info!("not leading: ticks stop");
            // A standby exports no fleet or breaker gauges: queries and alerts need no
            // de-duplication, and none shows the last term's state as current.
            if let Some(m) = &self.metrics {
                m.clear_fleet();
            }
            self.breaker_series
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }
}
