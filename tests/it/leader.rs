//! Leader election against a fake API server that keeps one Lease with optimistic concurrency.

use crate::support;

use cloudphone_operator::reconciler::{IntentsRecord, RecordError};
use cloudphone_operator::run::leader::{Leadership, LeaseConfig, LeaseIntents};
use jiff::Timestamp;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::fake_client;
use support::lease::FakeLease;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("cloudphone-operator", "ops", identity)
    }
}

fn elector(server: &Arc<FakeLease>, identity: &str) -> Leadership {
    let s = server.clone();
    let (client, _) = fake_client(move |r| s.handle(r));
    Leadership::spawn(client, config(identity))
}

async fn wait_for(
    mut rx: tokio::sync::watch::Receiver<bool>,
    want: bool,
    within: Duration,
) -> bool {
    tokio::time::timeout(within, rx.wait_for(|v| *v == want))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_lone_candidate_creates_the_lease_and_leads() {
    let _deadline = support::deadline("a_lone_candidate_creates_the_lease_and_leads");
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    assert_eq!(server.holder().as_deref(), Some("pod-a"));
    assert_eq!(server.field("leaseDurationSeconds"), 2);
    a.release().await;
}

#[tokio::test]
async fn a_standby_waits_for_a_held_lease_and_takes_over_when_the_leader_dies() {
    let _deadline =
        support::deadline("a_standby_waits_for_a_held_lease_and_takes_over_when_the_leader_dies");
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    let b = elector(&server, "pod-b");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !*b.receiver().borrow(),
        "the standby must not lead while the lease is renewed"
    );
    // The leader dies without releasing: its record stops changing.
    drop(a);
    assert!(
        wait_for(b.receiver(), true, Duration::from_secs(10)).await,
        "no takeover"
    );
    // NB: from the dead leader's last renewal (which may precede its death by up to a renewal
    // period), not from its death: that is what the standby can see, and all the lease promises.
    let (renewed, taken) = server
        .handed_over("pod-a")
        .expect("a takeover after a renewal");
    assert!(
        taken.duration_since(renewed) >= Duration::from_secs(2),
        "taken over {:?} after the last renewal, before the lease duration",
        taken.duration_since(renewed)
    );
    assert_eq!(server.holder().as_deref(), Some("pod-b"));
    assert_eq!(server.field("leaseTransitions"), 1);
    b.release().await;
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let _deadline = support::deadline("a_released_lease_is_taken_at_once");
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    let b = elector(&server, "pod-b");
    let rx_a = a.receiver();
    a.release().await;
    assert!(!*rx_a.borrow());
    assert_eq!(server.holder(), None);
    assert!(wait_for(b.receiver(), true, Duration::from_millis(1500)).await);
    b.release().await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
    let _deadline =
        support::deadline("a_leader_that_cannot_renew_steps_down_before_the_lease_expires");
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    let fence = a.fence();
    assert!(fence.is_fresh(), "a leader's fence is fresh");
    let term = fence.term();
    server.down.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    assert!(
        wait_for(a.receiver(), false, Duration::from_secs(5)).await,
        "never stepped down"
    );
    let stepped_down_after = cut.elapsed();
    assert!(
        !fence.is_fresh(),
        "a leader that stepped down must not call the vendor"
    );
    server.down.store(false, Ordering::SeqCst);
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    assert!(fence.is_fresh());
    assert!(fence.term() > term, "leading again is a new term");
    // The last renewal started less than one retry period before the cut; others may take over a
    // lease duration (2s) after they saw it.
    assert!(
        stepped_down_after < Duration::from_secs(2),
        "stepped down after {stepped_down_after:?}, when another replica could already lead"
    );
    drop(a);
}

#[tokio::test]
async fn two_candidates_never_lead_at_once() {
    let _deadline = support::deadline("two_candidates_never_lead_at_once");
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    let b = elector(&server, "pod-b");
    let (ra, rb) = (a.receiver(), b.receiver());
    let mut someone_led = false;
    for _ in 0..60 {
        let (la, lb) = (*ra.borrow(), *rb.borrow());
        assert!(!(la && lb), "both lead");
        someone_led |= la || lb;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(someone_led);
    a.release().await;
    b.release().await;
}

fn intents(server: &Arc<FakeLease>, holder: Option<&str>) -> (LeaseIntents, support::Requests) {
    let s = server.clone();
    let (client, requests) = fake_client(move |r| s.handle(r));
    (
        LeaseIntents::new(
            client,
            "ops",
            "cloudphone-operator",
            holder.map(str::to_owned),
        ),
        requests,
    )
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[tokio::test]
async fn the_intents_record_is_written_with_the_leases_version_never_lowered_and_kept_by_renewals()
{
    let _deadline = support::deadline(
        "the_intents_record_is_written_with_the_leases_version_never_lowered_and_kept_by_renewals",
    );
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    let (record, requests) = intents(&server, Some("pod-a"));
    assert_eq!(record.read().await.unwrap(), None, "a fresh install");
    record.extend(at("2030-01-01T00:02:05.5Z")).await.unwrap();
    assert_eq!(
        server.annotation().as_deref(),
        Some("2030-01-01T00:02:06Z"),
        "RFC 3339, rounded up to the second"
    );
    let put = requests
        .lock()
        .unwrap()
        .iter()
        .rfind(|r| r.method == "PUT")
        .cloned()
        .unwrap();
    assert!(
        put.body["metadata"]["resourceVersion"].is_string(),
        "written with the Lease's own resourceVersion: {}",
        put.body
    );
    record.extend(at("2030-01-01T00:01:00Z")).await.unwrap();
    assert_eq!(
        server.annotation().as_deref(),
        Some("2030-01-01T00:02:06Z"),
        "never lowered"
    );
    // Renewals keep it; a write that conflicts reads again and writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.annotation().as_deref(), Some("2030-01-01T00:02:06Z"));
    server.conflicts.store(1, Ordering::SeqCst);
    record.extend(at("2030-01-01T00:03:00Z")).await.unwrap();
    assert_eq!(server.annotation().as_deref(), Some("2030-01-01T00:03:00Z"));
    assert_eq!(
        record.read().await.unwrap(),
        Some(at("2030-01-01T00:03:00Z"))
    );
    assert!(
        *a.receiver().borrow(),
        "the leader kept its Lease throughout"
    );
    a.release().await;
    assert_eq!(
        server.annotation().as_deref(),
        Some("2030-01-01T00:03:00Z"),
        "a released Lease keeps the record for the next term"
    );
}

#[tokio::test]
async fn a_record_that_keeps_conflicting_or_whose_lease_another_replica_holds_is_not_extended() {
    let _deadline = support::deadline(
        "a_record_that_keeps_conflicting_or_whose_lease_another_replica_holds_is_not_extended",
    );
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    let (other, _) = intents(&server, Some("pod-b"));
    assert!(matches!(
        other.extend(at("2030-01-01T00:00:00Z")).await,
        Err(RecordError::NotHolder { .. })
    ));
    assert_eq!(server.annotation(), None);
    a.release().await;
    let (record, _) = intents(&server, None);
    server.conflicts.store(100, Ordering::SeqCst);
    assert!(record.extend(at("2030-01-01T00:00:00Z")).await.is_err());
    assert_eq!(server.annotation(), None);
}

#[tokio::test]
async fn without_leader_election_the_record_creates_a_lease_that_an_elector_can_take() {
    let _deadline = support::deadline(
        "without_leader_election_the_record_creates_a_lease_that_an_elector_can_take",
    );
    let server = Arc::new(FakeLease::default());
    let (record, _) = intents(&server, None);
    record.extend(at("2030-01-01T00:00:00Z")).await.unwrap();
    assert_eq!(server.annotation().as_deref(), Some("2030-01-01T00:00:00Z"));
    assert_eq!(server.holder(), None);
    record.extend(at("2030-01-01T00:01:00Z")).await.unwrap();
    assert_eq!(server.annotation().as_deref(), Some("2030-01-01T00:01:00Z"));
    // Leader election turned on later: the Lease is free, and its record stays.
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    assert_eq!(server.annotation().as_deref(), Some("2030-01-01T00:01:00Z"));
    a.release().await;
}

#[tokio::test]
async fn a_renewal_that_conflicts_with_a_record_write_keeps_leadership() {
    let _deadline =
        support::deadline("a_renewal_that_conflicts_with_a_record_write_keeps_leadership");
    let server = Arc::new(FakeLease::default());
    let a = elector(&server, "pod-a");
    assert!(wait_for(a.receiver(), true, Duration::from_secs(5)).await);
    let fence = a.fence();
    let term = fence.term();
    let mut rx = a.receiver();
    // The next renewal finds the Lease changed under it (a record write in between).
    server.conflicts.store(1, Ordering::SeqCst);
    let stepped_down = tokio::time::timeout(Duration::from_millis(600), rx.wait_for(|l| !*l)).await;
    assert!(stepped_down.is_err(), "the leader stepped down");
    assert_eq!(
        server.conflicts.load(Ordering::SeqCst),
        0,
        "the conflict happened"
    );
    assert_eq!(fence.term(), term, "the same term");
    a.release().await;
}
