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
}

struct AccountPending<'v> {
    chunks_left: usize,
    // NB: a BTreeMap: an account's calls leave in the same order from tick to tick.
    wanted: BTreeMap<(Action, Option<&'v str>), Batch<'v>>,
}

impl<'v> Pending<'v> {
    /// Nothing waits yet; `chunks[ix]` status chunks of account `ix` are to be planned.
    pub(super) fn new(chunks: &[(usize, Vec<usize>)], accounts: usize) -> Pending<'v> {
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
        }
    }

    /// Adds the phones of one planned chunk of account `ix` that want an action; returns the
    /// batches now due: each that reached 100 phones, and, once this was the account's last chunk,
    /// every one left.
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
        let last = account.chunks_left == 0;
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
