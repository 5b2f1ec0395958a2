//! The cases an adversarial review of the `Scheduled` lifecycle found (issue 22), end to end: the
//! engine on the in-memory stores against the simulator. Schedules in UTC around the wall clock.

use crate::support;

use cloudphone_operator::api::{
    CloudPhone, CloudPhoneSchedule, CloudPhoneScheduleStatus, WaveAnchor,
};
use cloudphone_operator::reconciler::{MemorySchedules, MemoryStore, ScheduleSource};
use cloudphone_operator::sim::code;
use futures::future::BoxFuture;
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::sync::{Arc, Mutex};

fn fleet(n: usize, code: i64) -> (Vec<CloudPhone>, Vec<(String, i64)>) {
    let phones = (0..n)
        .map(|i| {
            support::cloudphone(&format!("p{i:04}"), &format!("kp{i:04}"))
                .scheduled("office", "u1")
                .build()
        })
        .collect();
    let instances = (0..n).map(|i| (format!("kp{i:04}"), code)).collect();
    (phones, instances)
}

/// Phones whose status records a prepare call.
fn prepared(store: &MemoryStore, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let phone = store.get(&support::key(&format!("p{i:04}"))).unwrap();
            phone
                .status
                .as_ref()
                .is_some_and(|s| s.prepare.as_ref().is_some_and(|p| p.requested_at.is_some()))
        })
        .count()
}

#[tokio::test]
async fn finding_1_dry_run_turned_off_mid_window_wakes_the_fleet_spread_not_at_once() {
    let _deadline = support::deadline("finding_1_dry_run_turned_off_mid_window");
    // The window started an hour ago; the dry run has run since its wake (90 minutes ago): the
    // wave's anchor in the status is its edge.
    let mut s = support::utc_schedule("office", -60, 180, "30m");
    s.spec.dry_run = true;
    let edge = Time(support::minute() - SignedDuration::from_mins(90));
    s.status = Some(CloudPhoneScheduleStatus {
        wave: Some(WaveAnchor {
            edge: edge.clone(),
            from: edge,
            lifecycle: cloudphone_operator::api::Lifecycle::Loaded,
        }),
        ..Default::default()
    });
    let schedules = Arc::new(MemorySchedules::new([s]));
    let (phones, instances) = fleet(50, code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    assert_eq!(prepared(&store, 50), 0, "a dry run calls nothing");
    // A person turns the dry run off: a change not at an edge, to be spread from now over the
    // 25 minutes of the lead less a restore.
    let mut live = (*schedules.get("fleet", "office").unwrap()).clone();
    live.spec.dry_run = false;
    schedules.insert(live);
    engine.tick().await;
    let at_once = prepared(&store, 50);
    assert!(
        at_once < 10,
        "{at_once} of 50 phones prepared in the tick after dryRun was turned off"
    );
}

/// The schedules of `inner`, whose status writes all fail (a Role without
/// cloudphoneschedules/status, an API server that refuses them); the statuses tried are kept.
struct Unwritable {
    inner: MemorySchedules,
    tried: Mutex<Vec<CloudPhoneScheduleStatus>>,
}

impl ScheduleSource for Unwritable {
    fn snapshot(&self) -> Option<Vec<Arc<CloudPhoneSchedule>>> {
        self.inner.snapshot()
    }

    fn write_status<'a>(
        &'a self,
        _schedule: &'a CloudPhoneSchedule,
        status: &'a CloudPhoneScheduleStatus,
    ) -> BoxFuture<'a, Result<(), cloudphone_operator::reconciler::ScheduleWriteError>> {
        self.tried.lock().unwrap().push(status.clone());
        Box::pin(async {
            Err(
                cloudphone_operator::reconciler::ScheduleWriteError::Failed {
                    key: "fleet/office".into(),
                    source: "forbidden".into(),
                },
            )
        })
    }
}

#[tokio::test]
async fn finding_2_a_wave_keeps_its_anchor_while_the_schedules_status_cannot_be_written() {
    let _deadline = support::deadline("finding_2_a_wave_keeps_its_anchor");
    // The window started an hour ago: a schedule created mid-window, spread from its first tick.
    let schedules = Arc::new(Unwritable {
        inner: MemorySchedules::new([support::utc_schedule("office", -60, 180, "30m")]),
        tried: Mutex::new(Vec::new()),
    });
    let (phones, instances) = fleet(5, code::IDLE);
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    engine.tick().await;
    let tried = schedules.tried.lock().unwrap().clone();
    let froms: Vec<_> = tried
        .iter()
        .map(|s| s.wave.as_ref().map(|w| w.from.0))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert_eq!(
        froms[0], froms[1],
        "the wave started again from the second tick: its later turns recede forever"
    );
    // Nor is every waiting phone's status rewritten each tick (its turn moved): measured, 5 of 5.
    let before = store.writes();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    engine.tick().await;
    assert_eq!(store.writes() - before, 0, "status writes in a steady tick");
}

#[tokio::test]
async fn finding_4_a_fleet_switched_to_scheduled_mid_window_is_woken_spread() {
    let _deadline = support::deadline("finding_4_a_fleet_switched_to_scheduled_mid_window");
    // The window started an hour ago; its wave ran from its edge 90 minutes ago. One commit
    // switches 200 phones, each its own vendor user, to Scheduled.
    let mut s = support::utc_schedule("office", -60, 180, "30m");
    let edge = Time(support::minute() - SignedDuration::from_mins(90));
    s.status = Some(CloudPhoneScheduleStatus {
        wave: Some(WaveAnchor {
            edge: edge.clone(),
            from: edge,
            lifecycle: cloudphone_operator::api::Lifecycle::Loaded,
        }),
        ..Default::default()
    });
    let schedules = Arc::new(MemorySchedules::new([s]));
    let phones: Vec<CloudPhone> = (0..200)
        .map(|i| {
            support::cloudphone(&format!("p{i:04}"), &format!("kp{i:04}"))
                .scheduled("office", &format!("u{i}"))
                .build()
        })
        .collect();
    let instances = (0..200)
        .map(|i| (format!("kp{i:04}"), code::IDLE))
        .collect();
    let sim = support::simulator(instances).start().await;
    let store = Arc::new(MemoryStore::new(phones));
    let engine = support::engine(&sim, store.clone())
        .build()
        .with_schedules(schedules.clone());
    engine.tick().await;
    let calls = sim.counters().calls("prepare");
    assert!(calls < 20, "{calls} prepare calls in the first tick");
}
