//! `CloudPhoneSchedule` (`cloudphone.io/v1alpha1`, namespaced): weekly windows and dated exceptions
//! in a time zone, during which the `Scheduled` phones naming it are kept loaded.

use super::Lifecycle;
use super::crd::{annotated, conditions_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most windows a schedule holds.
pub const MAX_WINDOWS: usize = 28;
/// The most exceptions a schedule holds.
pub const MAX_EXCEPTIONS: usize = 100;

/// When the phones that name a schedule are kept loaded: weekly windows and dated exceptions in one
/// time zone.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudphone.io",
    version = "v1alpha1",
    kind = "CloudPhoneSchedule",
    plural = "cloudphoneschedules",
    shortname = "cpsched",
    namespaced,
    status = "CloudPhoneScheduleStatus",
    derive = "PartialEq",
    doc = "When the CloudPhones that name this schedule (spec.lifecycle Scheduled) are kept loaded: weekly windows and dated exceptions in one IANA time zone; outside them the phones are backed up.",
    printcolumn = r#"{"name":"Zone","type":"string","jsonPath":".spec.timeZone"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Window","type":"string","jsonPath":".status.currentWindow"}"#,
    printcolumn = r#"{"name":"Next","type":"date","jsonPath":".status.nextTransition.at"}"#,
    printcolumn = r#"{"name":"Loaded","type":"integer","jsonPath":".status.counts.loaded"}"#,
    printcolumn = r#"{"name":"Parked","type":"integer","jsonPath":".status.counts.parked"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CloudPhoneScheduleSpec {
    /// The IANA time zone the windows and exceptions are read in (Europe/Berlin, America/New_York,
    /// UTC), from the time-zone database compiled into the operator. An unknown zone makes the
    /// schedule Valid=False, and its phones are kept as they are.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: String,

    /// Weekly windows in which the phones are kept loaded (ready by each window's start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 28))]
    pub windows: Vec<ScheduleWindow>,

    /// Dated spans that override the windows (holidays, a late shift): the phones are kept at the
    /// exception's lifecycle from `from` until `until` (exclusive). They may not overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("exception names must be unique"))]
    pub exceptions: Vec<ScheduleException>,

    /// How long before a window's start its phones are woken, so that they are ready by the start
    /// (whole units: 90s, 30m, 1h; at most 1d). Default 30m. Wakes are spread over it by a stable
    /// hash of each phone's uid, at the account's pace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^(0|([0-9]{1,5}(s|m|h|d))+)$"))]
    pub prewarm_lead: Option<String>,

    /// Keep every phone of the schedule as it is: no wake, no park. Default false. Unsuspended
    /// mid-window, the wakes are spread from then.
    #[serde(default)]
    pub suspend: bool,

    /// Compute and show everything (effective lifecycles, next transitions, WouldWake and
    /// WouldPark events) but call nothing for the schedule's phones. Default false.
    #[serde(default)]
    pub dry_run: bool,
}

/// Days of the week.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday is 0.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A weekly window: on `days`, from `start` to `end`, local time.
#[derive(Deserialize, Serialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end").message("a window's end may not equal its start (an end before the start wraps midnight)"))]
pub struct ScheduleWindow {
    /// The days the window starts on.
    #[schemars(length(min = 1, max = 7), extend("x-kubernetes-list-type" = "set"))]
    pub days: Vec<Weekday>,

    /// Local time (HH:MM, 24-hour) by which the phones are ready.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,

    /// Local time (HH:MM) at which the phones are parked again; before `start`, the next day
    /// (the window belongs to the day it starts).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

/// A dated override of the windows.
#[derive(Deserialize, Serialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(size(self.from) == 10 ? self.from + 'T00:00' : self.from) < (size(self.until) == 10 ? self.until + 'T00:00' : self.until)").message("an exception's from must be before its until (a date is its midnight)"))]
pub struct ScheduleException {
    /// A name shown in the phones' messages and events (never in a metric label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Local date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM) it starts at.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9])?$"))]
    pub from: String,

    /// Local date or date-time it ends at, exclusive. Written as from is, so that the two compare
    /// as text.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9])?$"))]
    pub until: String,

    /// What the phones are kept at meanwhile: Loaded or BackedUp.
    pub lifecycle: ExceptionLifecycle,
}

/// What an exception keeps a schedule's phones at.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionLifecycle {
    Loaded,
    BackedUp,
}

impl From<ExceptionLifecycle> for Lifecycle {
    fn from(value: ExceptionLifecycle) -> Lifecycle {
        match value {
            ExceptionLifecycle::Loaded => Lifecycle::Loaded,
            ExceptionLifecycle::BackedUp => Lifecycle::BackedUp,
        }
    }
}

/// What the operator last computed of the schedule.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudPhoneScheduleStatus {
    /// The metadata.generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,

    /// What holds now: a window (its start and end, local), an exception (by name), or Outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub current_window: Option<String>,

    /// The schedule's next change: when, and to what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<super::Transition>,

    /// The schedule's phones by what the vendor last showed of them.
    #[serde(default)]
    pub counts: ScheduleCounts,

    /// When the last phone of the current or next wake is expected ready, at the account's pace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected_ready_at: Option<Time>,

    /// The spread of the current wake or park (a wave): kept so that an operator restarted
    /// mid-wave resumes it instead of starting it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<WaveAnchor>,

    /// Valid (the zone is known, the exceptions do not overlap) and PrewarmAtRisk (the wake's calls
    /// cannot finish before the window's start at the account's pace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The schedule's phones by state.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleCounts {
    /// Data on a physical instance (DataLoaded or Streaming).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub loaded: i32,
    /// Data in object storage, no instance held (Idle).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub parked: i32,
    /// Being restored or backed up (Restoring, BackingUp) or asked to be.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub preparing: i32,
    /// Their last restore or backup failed (RestoreFailed, BackupFailed).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failed: i32,
}

/// Where a wave's spread starts.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WaveAnchor {
    /// The schedule's change the wave carries out (when the current state began).
    pub edge: Time,
    /// When its spread starts: the edge itself, or the moment the operator first acted on it
    /// when that was later (a schedule created, edited, unsuspended or turned valid mid-window).
    pub from: Time,
    /// What the wave moves the phones to: Loaded (a wake) or BackedUp (a park).
    pub lifecycle: super::Lifecycle,
}

/// The schedule CRD, as `crds/cloudphone.io_cloudphoneschedules.yaml` holds it.
pub fn schedule_crd() -> CustomResourceDefinition {
    annotated(CloudPhoneSchedule::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_reads_as_its_yaml_says() {
        let spec: CloudPhoneScheduleSpec = serde_json::from_str(
            r#"{"timeZone":"Europe/Berlin","windows":[{"days":["Mon","Fri"],"start":"08:00","end":"20:00"}],
                "exceptions":[{"name":"xmas","from":"2026-12-24","until":"2026-12-27","lifecycle":"BackedUp"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.windows[0].days, vec![Weekday::Mon, Weekday::Fri]);
        assert_eq!(Weekday::Fri.index(), 4);
        assert_eq!(spec.exceptions[0].lifecycle, ExceptionLifecycle::BackedUp);
        assert!(!spec.suspend && !spec.dry_run && spec.prewarm_lead.is_none());
    }

    #[test]
    fn the_crd_carries_the_rules_the_issue_asks_for() {
        let yaml = serde_json::to_string(&schedule_crd()).unwrap();
        for rule in [
            "self.start != self.end",
            "self.from + 'T00:00'",
            "exception names must be unique",
        ] {
            assert!(yaml.contains(rule), "{rule}");
        }
        assert!(yaml.contains("cpsched"));
    }
}
