//! The vendor's answers: one read (HTTP 2xx and no business error code, then decoded), and what
//! the calls give their callers.

use crate::koophone::endpoint::Endpoint;
use crate::koophone::error::{Error, excerpt};
use crate::koophone::vendor_code::{VendorCode, VendorError};
use crate::koophone::wire;
use foldhash::HashMap;
use jiff::Timestamp;
use std::time::Duration;
use uuid::Uuid;

/// The vendor's answer to one status query.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// The `x-request-id` of the call that answered.
    pub request_id: Uuid,
    /// Each listed instance's raw status code.
    pub observed: HashMap<String, i64>,
    /// Requested ids the answer did not list: unknown or inaccessible instances.
    pub missing: Vec<String>,
}

/// The vendor's acceptance of one backup call.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReceipt {
    /// The `x-request-id` of the accepted call.
    pub request_id: Uuid,
    /// The vendor's task id, when the answer carried one.
    pub task_id: Option<String>,
    /// The vendor's job id per instance, when the answer carried them.
    pub jobs: HashMap<String, String>,
    /// When the accepted attempt left: after any wait for the account's limits or a `Retry-After`.
    pub sent_at: Timestamp,
}

/// The vendor's acceptance of one prepare call.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReceipt {
    /// The `x-request-id` of the accepted call.
    pub request_id: Uuid,
    /// The vendor's per-instance answer code (0 ready, 1 waiting to be restored, 2 waiting for
    /// assignment, 3 backing up, ...), for the instances the answer listed.
    pub statuses: HashMap<String, i64>,
    /// When the accepted attempt left.
    pub sent_at: Timestamp,
}

/// Where one instance's prepare stands, as `prepare-progress` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareProgress {
    /// 0 normal, 1 queued, 2 restoring or offline, 3 backing up, -1 failed.
    pub status: i64,
    /// Prepares queued ahead of it, when the answer said.
    pub waiting: Option<i64>,
}

impl PrepareProgress {
    /// True when the vendor has a prepare of the instance queued (1), or is backing it up (3): a
    /// new prepare call now would be a second one, or refused. NB: 2 means "restoring or offline":
    /// asked of an instance the status query shows Idle (the only one the operator prepares
    /// again), it is offline, not restoring (which the status query shows as 1).
    pub fn under_way(&self) -> bool {
        // NB: only the documented answers of nothing queued (0 normal, 2 offline, -1 failed) let a
        // prepare go: a value the documentation does not list counts as under way.
        !matches!(self.status, 0 | 2 | -1)
    }
}

/// A decoded answer, the `x-request-id` of its attempt and when that attempt left.
pub(super) struct Answered<T> {
    pub(super) request_id: Uuid,
    pub(super) sent_at: Timestamp,
    pub(super) body: T,
}

/// The receipt of an accepted backup call.
pub(super) fn receipt(answered: Answered<wire::BackupAnswer>) -> BackupReceipt {
    let Answered {
        request_id,
        sent_at,
        body: answer,
    } = answered;
    let data = answer.data.unwrap_or_default();
    BackupReceipt {
        request_id,
        sent_at,
        task_id: data.task_id,
        jobs: data
            .cmd_jobs
            .into_iter()
            .filter_map(|job| Some((job.instance_id?, job.job_id?)))
            .collect(),
    }
}

/// An answer read: success only with HTTP 2xx and no business error code, then decoded as `T`.
pub(super) fn read_answer<T: wire::Answer>(
    endpoint: Endpoint,
    request_id: Uuid,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<T, Error> {
    let vendor_error = |(code, message): (Option<&str>, Option<&str>)| {
        code.filter(|code| code.trim() != "0")
            .map(|code| VendorError {
                code: VendorCode::parse(code),
                message: message.unwrap_or_default().to_owned(),
            })
    };
    // Only the envelope of an answer that is not the documented shape (an error's, say).
    let envelope_error = || {
        serde_json::from_slice::<wire::Envelope>(body)
            .ok()
            .and_then(|e| vendor_error((e.error_code.as_deref(), e.error_msg.as_deref())))
    };
    if !(200..300).contains(&status) {
        return Err(Error::Http {
            endpoint,
            request_id,
            status,
            vendor: envelope_error(),
            retry_after,
        });
    }
    // NB: one pass over a 2xx body: the answer carries its envelope's fields. The body is checked
    // as UTF-8 once, not string by string.
    let decoded = std::str::from_utf8(body)
        .map_err(serde::de::Error::custom)
        .and_then(serde_json::from_str::<T>);
    let vendor = match &decoded {
        Ok(answer) => vendor_error(answer.envelope()),
        Err(_) => envelope_error(),
    };
    if let Some(vendor) = vendor {
        return Err(Error::Vendor {
            endpoint,
            request_id,
            status,
            vendor,
        });
    }
    decoded.map_err(|e| Error::Decode {
        endpoint,
        request_id,
        status,
        detail: e.to_string(),
        excerpt: excerpt(&String::from_utf8_lossy(body)),
    })
}

/// The receipt of an accepted prepare call: the per-instance codes the answer listed, if any.
pub(super) fn prepare_receipt(answered: Answered<wire::PrepareAnswer>) -> PrepareReceipt {
    let Answered {
        request_id,
        sent_at,
        body: answer,
    } = answered;
    let data = answer.data.unwrap_or_default();
    PrepareReceipt {
        request_id,
        sent_at,
        statuses: data
            .status_list
            .into_iter()
            .filter_map(|s| Some((s.instance_id?, s.status?)))
            .collect(),
    }
}

/// One instance's progress, from a prepare-progress answer (one without `data` is an error).
pub(super) fn progress(answered: Answered<wire::ProgressAnswer>) -> Result<PrepareProgress, Error> {
    let Answered {
        request_id,
        body: answer,
        ..
    } = answered;
    let Some(data) = answer.data else {
        return Err(Error::Decode {
            endpoint: Endpoint::PrepareProgress,
            request_id,
            status: 200,
            detail: "the answer has no data".into(),
            excerpt: String::new(),
        });
    };
    Ok(PrepareProgress {
        status: data.status,
        waiting: data.waiting_count,
    })
}
