//! The Kubernetes events of a status change, and whether a phone has settled.

use super::*;
use crate::api::{
    CloudPhoneSpec, CloudPhoneStatus, LOAD_UNTIL as LOAD_UNTIL_ANNOTATION, Lifecycle, Phase,
};

/// A Kubernetes event to publish on a phone: only on a transition, never once per tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneEvent {
    /// `BackupRequested`, `Parked`, `BackedUp`, `BackupFailed`, `PrepareRequested`, `Woken`,
    /// `Loaded`, `PrepareFailed`, `WouldWake`, `WouldPark`, `InstanceNotFound` or
    /// `DuplicateInstance`.
    pub reason: &'static str,
    pub message: String,
    /// A Warning event rather than a Normal one.
    pub warning: bool,
}

/// The events of a phone's change from `old` to `new` status.
pub fn events(
    spec: &CloudPhoneSpec,
    old: Option<&CloudPhoneStatus>,
    new: &CloudPhoneStatus,
) -> Vec<PhoneEvent> {
    let id = &spec.instance_id;
    let old_phase = old.map(|s| s.phase);
    let entered = |phase: Phase| new.phase == phase && old_phase != Some(phase);
    let ready_reason = |s: &CloudPhoneStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| c.reason.clone())
    };
    // NB: what the phone is kept at now (a BackedUp one kept loaded by load-until or while in
    // use); a status written before effectiveLifecycle existed: what it declares.
    let kept = |s: &CloudPhoneStatus| s.effective_lifecycle.unwrap_or(spec.lifecycle);
    let mut out = Vec::new();
    let new_request = new.backup.as_ref().and_then(|b| b.request_id.as_ref());
    let old_request = old
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.request_id.as_ref());
    if let Some(request) = new_request
        && new_request != old_request
    {
        out.push(PhoneEvent {
            reason: "BackupRequested",
            message: format!("backup of instance {id} requested (x-request-id {request})"),
            warning: false,
        });
        let why = match moved(old, new) {
            Some(Move::Park("idle")) => Some(format!(
                "unused for spec.idleTimeout ({})",
                spec.idle_timeout.as_deref().unwrap_or_default()
            )),
            Some(Move::Park("window_end")) => Some("its schedule's window is over".to_owned()),
            Some(Move::Park("exception")) => Some("an exception of its schedule".to_owned()),
            Some(Move::Park(_)) => Some(format!("its {LOAD_UNTIL_ANNOTATION} time passed")),
            _ => None,
        };
        if let Some(why) = why {
            out.push(PhoneEvent {
                reason: "Parked",
                message: format!("instance {id} is parked: {why}"),
                warning: false,
            });
        }
    }
    if kept(new) == Lifecycle::BackedUp && entered(Phase::Idle) {
        out.push(PhoneEvent {
            reason: "BackedUp",
            message: format!("instance {id} is backed up: its data is in object storage"),
            warning: false,
        });
    }
    if entered(Phase::BackupFailed) {
        out.push(PhoneEvent {
            reason: "BackupFailed",
            message: format!("the vendor reports a backup exception for instance {id}"),
            warning: true,
        });
    }
    let new_prepare = new.prepare.as_ref().and_then(|p| p.request_id.as_ref());
    let old_prepare = old
        .and_then(|s| s.prepare.as_ref())
        .and_then(|p| p.request_id.as_ref());
    if let Some(request) = new_prepare
        && new_prepare != old_prepare
    {
        out.push(PhoneEvent {
            reason: "PrepareRequested",
            message: format!(
                "prepare of instance {id} for user {} requested (x-request-id {request})",
                spec.user_id.as_deref().unwrap_or("(none)")
            ),
            warning: false,
        });
        if let Some(Move::Wake(why)) = moved(old, new) {
            let until = new
                .next_transition
                .as_ref()
                .map_or_else(String::new, |t| format!(" until {}", t.at.0));
            let by = match why {
                "load_until" => format!("its {LOAD_UNTIL_ANNOTATION} annotation"),
                "exception" => "an exception of its schedule".to_owned(),
                _ => "its schedule's window".to_owned(),
            };
            out.push(PhoneEvent {
                reason: "Woken",
                message: format!("instance {id} is woken: {by} keeps its data loaded{until}"),
                warning: false,
            });
        }
    }
    if ready_reason(new).as_deref() == Some(super::DRY_RUN)
        && new.effective_lifecycle != old.and_then(|s| s.effective_lifecycle)
    {
        let loaded = new.phase.is_loaded_or_loading();
        // NB: a streaming phone is not parked unless streams may be interrupted.
        let parkable = new.phase == Phase::DataLoaded
            || (new.phase == Phase::Streaming && spec.interrupt_streaming);
        let would = match new.effective_lifecycle {
            Some(Lifecycle::Loaded) if !loaded => Some(("WouldWake", "prepare (wake)")),
            Some(Lifecycle::BackedUp) if parkable => Some(("WouldPark", "back up (park)")),
            _ => None,
        };
        if let Some((reason, action)) = would {
            out.push(PhoneEvent {
                reason,
                message: format!(
                    "its schedule is a dry run: the operator would {action} instance {id} now, and calls nothing"
                ),
                warning: false,
            });
        }
    }
    let was_loaded = matches!(old_phase, Some(Phase::DataLoaded | Phase::Streaming));
    if kept(new) == Lifecycle::Loaded
        && matches!(new.phase, Phase::DataLoaded | Phase::Streaming)
        && !was_loaded
    {
        out.push(PhoneEvent {
            reason: "Loaded",
            message: format!("instance {id} is loaded: its data is on a physical instance"),
            warning: false,
        });
    }
    if kept(new) == Lifecycle::Loaded && entered(Phase::RestoreFailed) {
        out.push(PhoneEvent {
            reason: "PrepareFailed",
            message: format!(
                "the vendor reports a restoration exception for instance {id}; it is prepared again after the backoff"
            ),
            warning: true,
        });
    }
    if entered(Phase::NotFound) {
        out.push(PhoneEvent {
            reason: "InstanceNotFound",
            message: format!("the vendor does not list instance {id}"),
            warning: true,
        });
    }
    let duplicate = Some("DuplicateInstance".to_owned());
    if ready_reason(new) == duplicate && old.and_then(ready_reason) != duplicate {
        let message = new
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map_or_else(String::new, |c| c.message.clone());
        out.push(PhoneEvent {
            reason: "DuplicateInstance",
            message,
            warning: true,
        });
    }
    out
}

/// True when a phone has reached what it declares (`Ready=True`), or is reported as unable to with
/// a reason that no waiting will change; false while the operator or the vendor is still at work.
pub fn is_settled(status: &CloudPhoneStatus) -> bool {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .is_some_and(|c| {
            c.status == "True"
                || STALLED_REASONS.contains(&c.reason.as_str())
                || matches!(
                    c.reason.as_str(),
                    "Streaming" | "Suspended" | WAITING_FOR_IDLE
                )
        })
}
