//! Conditions set with the Kubernetes conventions, on an owned status or on one borrowed until it
//! changes.

use super::*;
use crate::api::CloudPhoneStatus;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::borrow::Cow;

/// The conditions of one status, set with the Kubernetes conventions.
pub(super) struct Conditions<'a> {
    pub(super) list: &'a mut Vec<Condition>,
    pub(super) generation: Option<i64>,
    pub(super) now: Timestamp,
}

impl Conditions<'_> {
    /// Sets a condition; `lastTransitionTime` changes only when its status changes.
    pub(super) fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let now = Time(self.now);
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                    c.status = status.to_owned();
                }
                if c.reason != reason {
                    c.reason = reason.to_owned();
                }
                if c.message != message {
                    c.message = message.to_owned();
                }
                c.observed_generation = self.generation;
            }
            None => {
                self.list.push(Condition {
                    type_: type_.to_owned(),
                    status: status.to_owned(),
                    reason: reason.to_owned(),
                    message: message.to_owned(),
                    observed_generation: self.generation,
                    last_transition_time: now,
                });
                // Ready first, then Synced, whatever order they were first set in.
                self.list.sort_by_key(|c| match c.type_.as_str() {
                    READY => 0,
                    SYNCED => 1,
                    _ => 2,
                });
            }
        }
    }
}

/// [`Conditions`] on a status borrowed until a condition actually changes: setting a condition
/// to what it already says copies nothing.
pub(super) struct LazyConditions<'s, 'a> {
    pub(super) status: &'s mut Cow<'a, CloudPhoneStatus>,
    pub(super) generation: Option<i64>,
    pub(super) now: Timestamp,
}

impl LazyConditions<'_, '_> {
    pub(super) fn has(&self, type_: &str) -> bool {
        self.status.conditions.iter().any(|c| c.type_ == type_)
    }

    pub(super) fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let same = self.status.conditions.iter().any(|c| {
            c.type_ == type_
                && c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == self.generation
        });
        if !same {
            Conditions {
                list: &mut self.status.to_mut().conditions,
                generation: self.generation,
                now: self.now,
            }
            .set(type_, status, reason, message);
        }
    }
}
