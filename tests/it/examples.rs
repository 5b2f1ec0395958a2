//! The scheduled fleet of `examples/scheduled-fleet/` (docs/guides/scheduled-fleet.md) read with the
//! operator's own types and rules: the schedule is valid and keeps the kiosks where the walkthrough
//! says, the generated phones name it, and the account's limits keep its wake on time by the
//! walkthrough's arithmetic. tests/chart/test_examples.py checks the same files against the CRDs.

use cloudphone_operator::api::{CloudPhoneAccount, CloudPhoneSchedule, Lifecycle};
use cloudphone_operator::plan::schedule::{self, Why};
use cloudphone_operator::plan::{
    PREWARM_AT_RISK, RESTORE_ESTIMATE, SchedulePhones, ScheduleTick, schedule_status,
};
use jiff::Timestamp;
use std::io::Write;
use std::process::{Command, Stdio};

const SCHEDULE: &str = include_str!("../../examples/scheduled-fleet/schedule.yaml");
const ACCOUNT: &str = include_str!("../../examples/scheduled-fleet/account.yaml");

fn utc(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn office() -> CloudPhoneSchedule {
    yaml_serde::from_str(SCHEDULE).expect("schedule.yaml is a CloudPhoneSchedule")
}

#[test]
fn the_example_schedule_keeps_the_kiosks_where_the_walkthrough_says() {
    let office = office();
    let s = schedule::read(&office.spec).expect("a valid schedule");
    assert!(office.spec.dry_run, "applied as a dry run first");
    // Monday 2026-12-07 in Berlin (CET, +1): woken from 07:30, ready by 08:00, parked from 20:00.
    let before = s.verdict(utc("2026-12-07T06:29:00Z"));
    assert_eq!(before.lifecycle, Lifecycle::BackedUp);
    assert_eq!(
        before.next,
        Some((utc("2026-12-07T06:30:00Z"), Lifecycle::Loaded))
    );
    let noon = s.verdict(utc("2026-12-07T11:00:00Z"));
    assert_eq!(
        noon.why,
        Why::Window {
            start: utc("2026-12-07T07:00:00Z"),
            end: utc("2026-12-07T19:00:00Z")
        }
    );
    // Christmas Eve, a Thursday, 10:00: the exception keeps them parked, until the 28th.
    let eve = s.verdict(utc("2026-12-24T09:00:00Z"));
    assert_eq!(eve.lifecycle, Lifecycle::BackedUp);
    assert_eq!(
        office.spec.exceptions[match eve.why {
            Why::Exception(i) => i,
            other => panic!("{other:?}"),
        }]
        .name,
        "christmas"
    );
    assert_eq!(
        eve.next,
        Some((utc("2026-12-28T06:30:00Z"), Lifecycle::Loaded)),
        "Monday the 28th's wake"
    );
    // A Saturday: outside.
    assert_eq!(s.verdict(utc("2026-12-12T11:00:00Z")).why, Why::Outside);
}

#[test]
fn the_generated_phones_name_the_schedule_and_the_account_admits_them() {
    let mut child = Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/scheduled-fleet/phones.sh"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a44uhlf7\nb55vimg8\nc66wjnh9")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phones = cloudphone_operator::demo::parse_manifests(
        "phones.sh",
        std::str::from_utf8(&out.stdout).unwrap(),
    )
    .expect("CloudPhones");
    assert_eq!(
        phones.len(),
        3,
        "one a line, the last without a newline too"
    );
    let office = office();
    let account: CloudPhoneAccount = yaml_serde::from_str(ACCOUNT).unwrap();
    for phone in &phones {
        assert_eq!(phone.spec.lifecycle, Lifecycle::Scheduled);
        assert_eq!(
            phone.spec.schedule_ref.as_ref().map(|r| r.name.as_str()),
            office.metadata.name.as_deref()
        );
        assert_eq!(phone.metadata.namespace, office.metadata.namespace);
        assert!(phone.spec.user_id.is_some(), "required for Scheduled");
        assert_eq!(
            phone.spec.account_ref.as_ref().map(|r| r.name.as_str()),
            account.metadata.name.as_deref()
        );
        assert!(
            account
                .spec
                .namespaces
                .contains(phone.metadata.namespace.as_ref().unwrap())
        );
    }
    assert_eq!(phones[2].spec.instance_id, "c66wjnh9");
}

#[test]
fn the_walkthroughs_arithmetic_is_the_operators() {
    // A thousand phones, each its own user: 1,000 prepares; 10 status queries a 30 s tick (1/3 a
    // second) on the account. callsPerSecond 2, of which actions 1.5/s.
    let account: CloudPhoneAccount = yaml_serde::from_str(ACCOUNT).unwrap();
    let per_second = account
        .spec
        .limits
        .as_ref()
        .and_then(|l| l.calls_per_second)
        .unwrap();
    let mut office = office();
    office.spec.dry_run = false;
    let now = utc("2026-12-07T06:00:00Z");
    let tick = ScheduleTick::read(&office, now, RESTORE_ESTIMATE, None);
    let at = |per_second: f64, phones: usize| {
        let phones = SchedulePhones {
            wake_calls: phones,
            status_per_second: (phones / 100) as f64 / 30.0,
            pace: Some(cloudphone_operator::plan::Pace {
                calls: per_second,
                actions: 0.75 * per_second,
            }),
            ..Default::default()
        };
        let status = schedule_status(&tick, Some(1), None, &phones, now).unwrap();
        let risk = status
            .conditions
            .iter()
            .find(|c| c.type_ == PREWARM_AT_RISK)
            .unwrap()
            .status
            .clone();
        (risk, status.projected_ready_at.map(|t| t.0))
    };
    assert_eq!(
        at(f64::from(per_second), 1_000),
        ("False".to_owned(), Some(utc("2026-12-07T07:00:00Z"))),
        "ready by 08:00 Berlin"
    );
    assert_eq!(
        at(1.0, 1_000),
        ("False".to_owned(), Some(utc("2026-12-07T07:00:00Z"))),
        "callsPerSecond 1: 1,500 s, the spread exactly, no margin"
    );
    assert_eq!(
        at(1.0, 1_200),
        ("True".to_owned(), Some(utc("2026-12-07T07:08:20Z"))),
        "1,200 phones at callsPerSecond 1: 08:08:20"
    );
}
