//! The steps of a tick, each a function with a one-line contract: the tick (`Engine::tick_inner`)
//! reads as their list.

use super::*;

/// Where each phone's calls go this tick (see [`TickAccounts::bind`]).
// NB: phones of an account whose project is not known (its credentials unusable, say its Secret not
// read yet, or IAM not asked yet) wait: no call, no write at all.
pub(super) fn bind(accounts: &TickAccounts<'_>, snapshot: &[Arc<CloudPhone>]) -> Vec<Binding> {
    snapshot
        .iter()
        .map(|p| {
            let name = p.spec.account_ref.as_ref().map(|r| r.name.as_str());
            // NB: the user a phone is readied for matters to every lifecycle that may ready it:
            // Loaded, and BackedUp (its cloudphone.io/load-until wakes it for that user).
            let user = p
                .spec
                .user_id
                .as_deref()
                .filter(|_| p.spec.lifecycle != crate::api::Lifecycle::Observed);
            accounts.bind(
                p.metadata.namespace.as_deref().unwrap_or_default(),
                name,
                user,
            )
        })
        .collect()
}

/// The planner's view of each phone, with where its calls go this tick.
pub(super) fn account_views<'a>(
    snapshot: &'a [Arc<CloudPhone>],
    bindings: &[Binding],
    accounts: &'a TickAccounts<'_>,
) -> Vec<PhoneView<'a>> {
    snapshot
        .iter()
        .zip(bindings)
        .map(|(phone, binding)| {
            let route = match binding {
                Binding::Account(ix) => Route::Scope(
                    accounts.entries[*ix]
                        .scope
                        .as_deref()
                        .expect("phones bind only to accounts whose scope is known"),
                ),
                Binding::Blocked(block) => Route::Blocked(block.clone()),
                Binding::Wait => Route::Unknown,
            };
            PhoneView::of(phone, route)
        })
        .collect()
}

/// Gives each `Scheduled` phone's view its schedule at this tick (read once per schedule).
pub(super) fn link_schedules<'a>(
    views: &mut [PhoneView<'a>],
    snapshot: &'a [Arc<CloudPhone>],
    schedules: &'a TickSchedules,
) {
    for (view, phone) in views.iter_mut().zip(snapshot) {
        if phone.spec.lifecycle == crate::api::Lifecycle::Scheduled {
            view.schedule = schedules.link(phone);
        }
    }
}

/// The tick's one log line.
pub(super) fn log_tick(report: &TickReport) {
    info!(
        phones = report.phones,
        queried = report.queried,
        status_calls = report.status_calls,
        backup_calls = report.backup_calls,
        backups_requested = report.backups_requested,
        prepare_calls = report.prepare_calls,
        prepares_requested = report.prepares_requested,
        statuses_written = report.statuses_written,
        errors = report.query_errors
            + report.backup_errors
            + report.prepare_errors
            + report.write_errors,
        chunks_cut = report.chunks_cut,
        duration_ms = report.duration.as_millis() as u64,
        "tick"
    );
}

/// The status chunks of a tick: each account's queried phones (in the rotated order) in chunks of
/// at most 100, the accounts taking turns, so that a deadline cut never starves one account.
// NB: owned chunks: a stream over borrowed `chunks()` makes the tick future lose `Send`.
pub(super) fn account_chunks(
    queried: &[usize],
    bindings: &[Binding],
    accounts: usize,
) -> Vec<(usize, Vec<usize>)> {
    let mut per_account: Vec<Vec<usize>> = vec![Vec::new(); accounts];
    for &i in queried {
        if let Binding::Account(ix) = bindings[i] {
            per_account[ix].push(i);
        }
    }
    let mut chunks: Vec<std::collections::VecDeque<Vec<usize>>> = per_account
        .iter()
        .map(|phones| {
            phones
                .chunks(MAX_IDS_PER_CALL)
                .map(<[usize]>::to_vec)
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    while out.len() < out.capacity() {
        for (ix, queue) in chunks.iter_mut().enumerate() {
            if let Some(chunk) = queue.pop_front() {
                out.push((ix, chunk));
            }
        }
    }
    out
}

impl<S: PhoneStore> Engine<S> {
    /// Without usable credentials and no phone naming an account, the report of a tick that makes
    /// no call at all (and no write: the phones wait); `None` otherwise.
    pub(super) fn skip_without_credentials(
        &self,
        snapshot: &[Arc<CloudPhone>],
        credentials: &Result<&'static str, crate::koophone::CredentialsError>,
        started: Instant,
    ) -> Option<TickReport> {
        if let Some(m) = &self.metrics {
            m.credentials_usable.set(i64::from(credentials.is_ok()));
        }
        let uses_accounts = snapshot.iter().any(|p| p.spec.account_ref.is_some());
        let why = credentials.as_ref().err().filter(|_| !uses_accounts)?;
        warn!(phones = snapshot.len(), reason = %why, "tick skipped: no vendor call without usable credentials");
        Some(TickReport {
            phones: snapshot.len(),
            duration: started.elapsed(),
            skipped: Some(why.to_string()),
            ..TickReport::default()
        })
    }

    /// The CloudPhoneAccounts as the feed shows them (`None` until it synced; none without a feed),
    /// each account's project asked of IAM where only IAM can tell it: every account's scope is its
    /// project, known before any of its phones is bound.
    pub(super) async fn account_set(&self) -> Option<Arc<crate::reconciler::AccountSet>> {
        let set = match &self.accounts {
            None => Some(Arc::default()),
            Some(feed) => feed.borrow().clone(),
        };
        if self.own_tenants.is_none()
            && set.as_ref().is_some_and(|s| !s.accounts.is_empty())
            && !self.warned_open_own_account.swap(true, Ordering::Relaxed)
        {
            warn!(
                "CloudPhoneAccounts exist, but the operator's own credentials serve every watched namespace: a tenant's phone without spec.accountRef can act on the platform's instances; set --own-account-namespaces or --own-account-namespace-selector (chart: vendor.namespaces, vendor.namespaceSelector)"
            );
        }
        resolve_projects(&self.client, set.as_deref(), PROJECT_RESOLVE_TIMEOUT).await;
        set
    }

    /// The accounts of this tick: the operator's own and the CloudPhoneAccounts of `set`.
    pub(super) fn tick_accounts<'a>(
        &'a self,
        set: Option<&'a crate::reconciler::AccountSet>,
    ) -> TickAccounts<'a> {
        let feed_overdue =
            set.is_none() && self.started.elapsed() >= self.config.account_feed_patience;
        if feed_overdue {
            warn!(
                waited_s = self.config.account_feed_patience.as_secs(),
                "the CloudPhoneAccount watch has not synced: the phones naming an account are told AccountNotReady (no vendor call); see /readyz for its error"
            );
        }
        let accounts = TickAccounts::new(&self.client, self.own_tenants.as_ref(), set)
            .own_allowed_users(self.own_allowed_users.as_ref())
            .feed_overdue(feed_overdue);
        for a in &accounts.entries {
            let usable = a.client.is_ok_and(|c| c.auth_status().is_ok());
            if usable && a.scope.is_none() {
                warn!(
                    account = a.name,
                    "the vendor project of this account is not known yet (IAM has not told it): its phones wait, with no vendor call"
                );
            }
        }
        accounts
    }

    /// A batcher for each account whose calls can be made (a client and a known scope).
    pub(super) fn batchers<'a>(
        &'a self,
        accounts: &'a TickAccounts<'a>,
    ) -> Vec<Option<Batcher<'a>>> {
        let cap = self.config.vendor_calls_in_flight.max(1);
        accounts
            .entries
            .iter()
            .map(|a| {
                let client = a.client.ok()?;
                let scope = a.scope.as_deref()?;
                Some(Batcher::new(client, cap, &self.breakers, a.name).in_scope(scope))
            })
            .collect()
    }

    /// What the tick plans from: the snapshot, the phones whose cache lags this term's write of
    /// them, the term, the events budget.
    pub(super) fn frame<'a>(&self, snapshot: &'a [Arc<CloudPhone>], term: u64) -> Frame<'a> {
        Frame {
            snapshot,
            lagging: self.lagging(snapshot),
            term,
            events_left: AtomicUsize::new(self.config.max_events_per_tick),
        }
    }

    /// The queried phones (only those asked for, in a partial tick) in this tick's rotated order,
    /// and the rotation's offset; the intents of the snapshot remembered, the failures of phones
    /// no longer queried forgotten (by a whole tick only).
    pub(super) fn query_order(
        &self,
        views: &[PhoneView<'_>],
        mut queried: Vec<usize>,
        partial: bool,
        asked: &dyn Fn(usize) -> bool,
    ) -> (Vec<usize>, usize) {
        if partial {
            queried.retain(|&i| asked(i));
        }
        // Every in-flight intent of the snapshot, whichever object holds it: for ownership moves.
        self.recall()
            .intents
            .observe(views, Timestamp::now(), &self.config.plan);
        let offset = self.rotation.load(Ordering::Relaxed);
        if !queried.is_empty() {
            let start = offset % queried.len();
            queried.rotate_left(start);
        }
        // NB: a partial tick forgets nothing of the phones it does not query.
        if !partial {
            self.recall()
                .failures
                .forget_except(queried.iter().filter_map(|&i| {
                    let scope = views[i].account.scope()?;
                    Some((scope, views[i].spec.instance_id.as_str()))
                }));
        }
        (queried, offset)
    }

    /// The phones that make no vendor call this tick, planned and written at once; `None` when
    /// every one of them waits.
    pub(super) async fn settle_quiet<'v>(
        &self,
        frame: &Frame<'_>,
        views: &[PhoneView<'v>],
        dispositions: &[Disposition],
        quiet: &[usize],
    ) -> Option<Group<'v>> {
        let planned = self.plan_each(frame, views, dispositions, quiet.iter().copied(), |_| None);
        if planned.is_empty() {
            return None;
        }
        // NB: these phones make no call (they are not queried): none wants an action.
        Some(self.settle(frame, planned).await)
    }

    /// The tick's counts, from its groups and its batchers.
    pub(super) fn tally(
        &self,
        snapshot: &[Arc<CloudPhone>],
        groups: &[Group<'_>],
        batchers: &[Option<Batcher<'_>>],
    ) -> TickReport {
        let mut report = TickReport {
            phones: snapshot.len(),
            ..TickReport::default()
        };
        for group in groups {
            report.absorb(&group.report);
        }
        for b in batchers.iter().flatten() {
            report.status_calls += b.status_calls.load(Ordering::Relaxed);
            for action in plan::Action::ALL {
                report.add_calls(
                    action,
                    b.action_calls[action.index()].load(Ordering::Relaxed),
                );
            }
        }
        report
    }

    /// The next tick starts where a cut one stopped, and one chunk further after a full one, so
    /// that no chunk is always last; a partial tick moves nothing.
    pub(super) fn advance_rotation(
        &self,
        offset: usize,
        cut: bool,
        partial: bool,
        finished: usize,
    ) {
        let advance = match (cut, partial) {
            (_, true) => 0,
            (true, false) => finished.max(1),
            (false, false) => 1,
        };
        self.rotation.store(
            offset.wrapping_add(advance * MAX_IDS_PER_CALL),
            Ordering::Relaxed,
        );
    }

    /// Hands the accounts' reports to their status writer when there is anything to say.
    pub(super) fn publish_account_reports(&self, report: &TickReport) {
        if !report.accounts.is_empty() || !self.account_reports.borrow().is_empty() {
            self.account_reports
                .send_replace(Arc::new(report.accounts.clone()));
        }
    }
}
