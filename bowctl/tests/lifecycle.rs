//! The record half of the update lifecycle, through the real binary: start,
//! abort, and the refusals that need no device-mapper device. `boot`,
//! `commit` and `health` act on live devices; the VM scenarios `lifecycle`
//! and `update` run them.

use assert_cmd::Command;
use bowctl::lifecycle::{self, Loaded, Record};
use predicates::prelude::*;
use std::path::Path;

fn bowctl(record: &Path) -> Command {
    let mut c = Command::cargo_bin("bowctl").unwrap();
    c.env("BOWCTL_RECORD", record);
    c
}

fn load(p: &Path) -> Loaded {
    lifecycle::load(p).unwrap()
}

#[test]
fn start_writes_a_record_and_replaces_an_old_one() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("meta/bow/checkpoint.json");
    bowctl(&rec)
        .args(["start", "--force", "--retries", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("the next 2 boots"));
    assert_eq!(load(&rec), Loaded::Valid(Record::new(2)));
    // Again (an updater retried): same record, and it says what it replaced.
    bowctl(&rec)
        .args(["start", "--force", "--retries", "3"])
        .assert()
        .success()
        .stdout(predicate::str::contains("replaced the previous record"));
    assert_eq!(load(&rec), Loaded::Valid(Record::new(3)));
    // --record wins over the environment.
    let other = d.path().join("other.json");
    bowctl(&rec)
        .args(["--json", "start", "--force", "--retries", "1", "--record"])
        .arg(&other)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"result\": \"started\""));
    assert_eq!(load(&other), Loaded::Valid(Record::new(1)));
}

#[test]
fn start_refuses_a_record_on_the_root_filesystem() {
    // /metadata not mounted: /metadata/bow would be made on the root
    // filesystem, where the next boot (with /metadata mounted over it) does
    // not see it. The nearest existing directory here is / itself.
    let rec = Path::new("/nonexistent-bowctl-test/bow/checkpoint.json");
    bowctl(rec)
        .args(["start", "--retries", "2"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("root filesystem").and(predicate::str::contains("--force")),
        );
    assert!(
        !Path::new("/nonexistent-bowctl-test").exists(),
        "nothing was created"
    );
    let out = bowctl(rec)
        .args(["--json", "start", "--retries", "2"])
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("root filesystem"),
        "{v}"
    );
}

#[test]
fn start_refuses_zero_or_absurd_retries() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("r.json");
    for n in ["0", "101", "-2", "x"] {
        bowctl(&rec)
            .args(["start", "--retries", n])
            .assert()
            .code(2);
    }
    assert_eq!(load(&rec), Loaded::Missing);
}

#[test]
fn abort_sets_the_flag_once() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("r.json");
    bowctl(&rec)
        .arg("abort")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no update pending"));
    bowctl(&rec)
        .args(["start", "--force", "--retries", "2"])
        .assert()
        .success();
    bowctl(&rec).arg("abort").assert().success();
    assert!(matches!(load(&rec), Loaded::Valid(r) if r.abort && r.remaining == 2));
    bowctl(&rec)
        .arg("abort")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("already requested"));
}

#[test]
fn abort_is_refused_while_committing() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("r.json");
    let r = Record {
        committing: true,
        device: Some("userdata".into()),
        ..Record::new(2)
    };
    lifecycle::store(&rec, &r).unwrap();
    bowctl(&rec)
        .arg("abort")
        .assert()
        .code(7)
        .stderr(predicate::str::contains("can no longer be aborted"));
    assert_eq!(load(&rec), Loaded::Valid(r));
}

#[test]
fn abort_over_a_damaged_record_writes_a_valid_one() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("r.json");
    std::fs::write(&rec, b"{\"record\": {\"version\": 1").unwrap();
    bowctl(&rec).arg("abort").assert().success();
    assert!(matches!(load(&rec), Loaded::Valid(r) if r.abort));
}

#[test]
fn commit_and_health_without_a_device_say_so() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("r.json");
    bowctl(&rec)
        .args(["start", "--force", "--retries", "2"])
        .assert()
        .success();
    for cmd in [&["commit"][..], &["health", "--once"][..]] {
        bowctl(&rec)
            .args(cmd)
            .assert()
            .failure()
            .stderr(predicate::str::contains("names none"));
    }
    bowctl(&rec)
        .args(["health", "--once", "--min-free", "12X"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("K, M or G"));
}

#[test]
fn start_unlimited_and_pending() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("r.json");
    // Nothing pending: exit 3.
    bowctl(&rec).arg("pending").assert().code(3);
    for n in ["unlimited", "-1"] {
        bowctl(&rec)
            .args(["start", "--force", "--retries", n])
            .assert()
            .success()
            .stdout(predicate::str::contains(
                "every boot runs until a commit or an abort",
            ));
        assert_eq!(load(&rec), Loaded::Valid(Record::new(lifecycle::UNLIMITED)));
    }
    bowctl(&rec)
        .arg("pending")
        .assert()
        .success()
        .stdout(predicate::str::contains("unlimited"));
    let out = bowctl(&rec).args(["--json", "pending"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["pending"], true);
    // An abort closes it.
    bowctl(&rec).arg("abort").assert().success();
    bowctl(&rec).arg("pending").assert().code(3);
}
