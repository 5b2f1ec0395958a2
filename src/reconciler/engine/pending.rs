//! The planned actions of each account waiting for their call across the tick's status chunks, so
//! that an action's calls are full: one call per action, call key and 100 phones of an account,
//! whatever chunks the phones were planned in.

use super::*;
use plan::{Action, Planned};
use std::collections::BTreeMap;

/// One call's worth of planned phones: at most 100, of one account, action and call key.
pub(super) type Batch<'v> = Vec<(usize, Planned<'v>)>;

/// The phones waiting for a call, per account, and each account's chunks still to plan.
pub(super) struct Pending<'v> {
    accounts: Mutex<Vec<AccountPending<'v>>>,
    /// From then on, every batch leaves with the chunk that adds to it, full or not: a tick that
    /// may be cut before an account's last chunk still makes its calls.
    flush_after: tokio::time::Instant,
}

struct AccountPending<'v> {
    chunks_left: usize,
    // NB: a BTreeMap: an account's calls leave in the same order from tick to tick.
    wanted: BTreeMap<(Action, Option<&'v str>), Batch<'v>>,
}

impl<'v> Pending<'v> {
    /// Nothing waits yet; `chunks[ix]` status chunks of account `ix` are to be planned; past
    /// `flush_after`, nothing waits for more.
    pub(super) fn new(
        chunks: &[(usize, Vec<usize>)],
        accounts: usize,
        flush_after: tokio::time::Instant,
    ) -> Pending<'v> {
        let mut each: Vec<AccountPending<'v>> = (0..accounts)
            .map(|_| AccountPending {
                chunks_left: 0,
                wanted: BTreeMap::new(),
            })
            .collect();
        for (ix, _) in chunks {
            each[*ix].chunks_left += 1;
        }
        Pending {
            accounts: Mutex::new(each),
            flush_after,
        }
    }

    /// Adds the phones of one planned chunk of account `ix` that want an action; returns the
    /// batches now due: each that reached 100 phones, and, once this was the account's last chunk
    /// or the tick is past `flush_after`, every one left.
    pub(super) fn add(
        &self,
        ix: usize,
        views: &[PhoneView<'v>],
        wanted: Batch<'v>,
    ) -> Vec<(ActionCall<'v>, Batch<'v>)> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let account = &mut accounts[ix];
        for (i, p) in wanted {
            let Some(action) = p.action else {
                continue;
            };
            let key = action.call_key(views[i].spec);
            account
                .wanted
                .entry((action, key))
                .or_default()
                .push((i, p));
        }
        account.chunks_left = account.chunks_left.saturating_sub(1);
        let last = account.chunks_left == 0 || tokio::time::Instant::now() >= self.flush_after;
        let mut due = Vec::new();
        for (&(action, key), phones) in account.wanted.iter_mut() {
            while phones.len() >= MAX_IDS_PER_CALL || (last && !phones.is_empty()) {
                let rest = phones.split_off(phones.len().min(MAX_IDS_PER_CALL));
                let batch = std::mem::replace(phones, rest);
                due.push((ActionCall { action, key }, batch));
            }
        }
        account.wanted.retain(|_, phones| !phones.is_empty());
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_phone::cloudphone;
    use std::borrow::Cow;
    use std::time::Duration;

    fn wanted<'v>(views: &[PhoneView<'v>]) -> Batch<'v> {
        (0..views.len())
            .map(|i| {
                let planned = Planned {
                    status: Cow::Owned(Default::default()),
                    action: Some(Action::Prepare),
                    receipt_spent: false,
                    held: None,
                    ask_progress: Vec::new(),
                };
                (i, planned)
            })
            .collect()
    }

    #[test]
    fn a_call_under_100_waits_for_the_accounts_last_chunk_or_half_the_deadline() {
        let phones: Vec<CloudPhone> = (0..2)
            .map(|i| {
                cloudphone(&format!("p{i}"), &format!("kp{i}"))
                    .loaded("u1")
                    .build()
            })
            .collect();
        let views: Vec<PhoneView> = phones
            .iter()
            .map(|p| PhoneView::of(p, Route::Scope(plan::DEFAULT_SCOPE)))
            .collect();
        // Account 0 has two status chunks: one phone wanting a prepare in each.
        let chunks = vec![(0, vec![0]), (0, vec![1])];
        let later = tokio::time::Instant::now() + Duration::from_secs(60);
        let pending = Pending::new(&chunks, 1, later);
        assert!(pending.add(0, &views, wanted(&views[..1])).is_empty());
        let due = pending.add(0, &views, vec![wanted(&views).remove(1)]);
        assert_eq!(due.len(), 1, "the last chunk sends what waits");
        assert_eq!(due[0].1.len(), 2, "one call for both");
        // Past half the deadline, nothing waits for an account's last chunk.
        let past = tokio::time::Instant::now();
        let pending = Pending::new(&chunks, 1, past);
        let due = pending.add(0, &views, wanted(&views[..1]));
        assert_eq!(due.len(), 1, "a tick that may be cut makes its calls");
    }
}
