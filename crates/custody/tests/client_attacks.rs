//! One test per client-workflow rule that rejects something. Each feeds the
//! attack to the real `custody client` over loopback HTTP and asserts both
//! that it exits 1 naming the rule, and that the trusted metadata on disk is
//! byte-for-byte what it was before the attack.

mod common;

use chrono::Duration;
use common::repo::{envelope, expiry};
use common::{Attack, Client, Repo, TestKey, TestServer};
use serde_json::json;

struct Setup {
    _tmp: tempfile::TempDir,
    repo: Repo,
    server: TestServer,
    client: Client,
}

/// A repository with one target, a client that has refreshed once.
fn setup(consistent: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let mut repo = Repo::new(&tmp.path().join("repo"), consistent);
    repo.add_target("targets", "file.txt", b"the real target\n");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.refresh(&server, &[]).ok();
    Setup {
        _tmp: tmp,
        repo,
        server,
        client,
    }
}

/// Run `attack`, then check exit 1 naming `needles` and unchanged trust.
fn assert_rejected(s: &Setup, run: impl FnOnce(&Setup) -> common::Run, needles: &[&str]) {
    assert_rejected_except(s, run, needles, &[]);
}

/// Like [`assert_rejected`], but the files in `may_advance` (roles checked
/// *before* the rejected one, which were valid) may have been replaced by
/// newer verified versions; everything else must be byte-for-byte intact.
fn assert_rejected_except(
    s: &Setup,
    run: impl FnOnce(&Setup) -> common::Run,
    needles: &[&str],
    may_advance: &[&str],
) {
    let mut before = s.client.trusted();
    assert!(
        before.contains_key("timestamp.json"),
        "setup must have refreshed"
    );
    let result = run(s);
    result.fails_with(needles);
    assert!(
        !result.stderr.trim().contains('\n'),
        "error must be one line: {}",
        result.stderr
    );
    let mut after = s.client.trusted();
    for f in may_advance {
        let old = before.remove(*f);
        let new = after.remove(*f);
        assert!(new.is_some() && old.is_some(), "{f} must still exist");
    }
    assert_eq!(
        after, before,
        "trusted metadata changed on disk after a rejected update"
    );
}

fn refresh(s: &Setup) -> common::Run {
    s.client.refresh(&s.server, &[])
}

// ---- arbitrary software -------------------------------------------------

#[test]
fn arbitrary_software_target_hash_mismatch() {
    let s = setup(false);
    // Same length, other bytes.
    s.server.attack(
        "targets/file.txt",
        Attack::Bytes(b"the evil target\n".to_vec()),
    );
    assert_rejected(
        &s,
        |s| s.client.download(&s.server, &["file.txt"], &[]),
        &["file.txt", "sha256 hash", "differs from the signed hash"],
    );
    assert!(s.client.downloaded().is_empty(), "nothing may be stored");
}

#[test]
fn arbitrary_software_consistent_snapshot_target_replaced() {
    let s = setup(true);
    let path = s.repo.target_request_path("targets", "file.txt");
    s.server.attack(&path, Attack::Bytes(b"short".to_vec()));
    assert_rejected(
        &s,
        |s| s.client.download(&s.server, &["file.txt"], &[]),
        &["file.txt", "length 5 differs from the signed length 16"],
    );
    assert!(s.client.downloaded().is_empty());
}

// ---- rollback -----------------------------------------------------------

#[test]
fn rollback_timestamp_version() {
    let mut s = setup(false);
    let old = s.repo.signed_bytes("timestamp");
    s.repo.update_timestamp();
    refresh(&s).ok();
    s.server
        .attack("metadata/timestamp.json", Attack::Bytes(old));
    assert_rejected(
        &s,
        refresh,
        &["timestamp", "lower than the trusted version", "rollback"],
    );
}

#[test]
fn rollback_snapshot_meta_version() {
    let mut s = setup(false);
    // Trusted snapshot lists targets v2; a new snapshot lists targets v1.
    s.repo.snapshot["meta"]["targets.json"] = json!({"version": 1});
    common::repo::bump(&mut s.repo.snapshot);
    s.repo.publish_snapshot_only();
    s.repo.update_timestamp();
    assert_rejected_except(
        &s,
        refresh,
        &[
            "snapshot",
            "targets.json",
            "version 1 is lower than the trusted version 2",
            "rollback",
        ],
        &["timestamp.json"],
    );
}

#[test]
fn rollback_snapshot_version_in_timestamp() {
    let mut s = setup(false);
    // A new timestamp pointing at an older snapshot version.
    s.repo.timestamp["meta"]["snapshot.json"] = json!({"version": 1});
    common::repo::bump(&mut s.repo.timestamp);
    s.repo.publish_timestamp_only();
    assert_rejected(
        &s,
        refresh,
        &[
            "timestamp",
            "snapshot.json",
            "lower than the trusted version",
            "rollback",
        ],
    );
}

#[test]
fn rollback_targets_served_old() {
    let mut s = setup(false);
    let old_targets = s.repo.signed_bytes("targets");
    s.repo.bump_targets("targets");
    s.repo.update_snapshot();
    // The mirror keeps serving the old targets.json under the new snapshot.
    s.server
        .attack("metadata/targets.json", Attack::Bytes(old_targets));
    // timestamp and snapshot are verified and persisted one by one; targets
    // (the rejected role) is untouched.
    assert_rejected_except(
        &s,
        refresh,
        &["targets", "version 2 differs from version 3", "snapshot"],
        &["timestamp.json", "snapshot.json"],
    );
    assert_eq!(s.client.version("targets"), 2);
}

// ---- indefinite freeze --------------------------------------------------

#[test]
fn freeze_expired_timestamp() {
    let mut s = setup(false);
    s.repo.timestamp["expires"] = json!(expiry(Duration::days(-1)));
    s.repo.update_timestamp();
    assert_rejected(&s, refresh, &["timestamp", "expired", "freeze"]);
}

#[test]
fn freeze_expired_snapshot() {
    let mut s = setup(false);
    s.repo.snapshot["expires"] = json!(expiry(Duration::days(-1)));
    s.repo.update_snapshot();
    assert_rejected_except(
        &s,
        refresh,
        &["snapshot", "expired", "freeze"],
        &["timestamp.json"],
    );
}

#[test]
fn freeze_expired_targets() {
    let mut s = setup(false);
    s.repo.targets["expires"] = json!(expiry(Duration::days(-1)));
    s.repo.bump_targets("targets");
    s.repo.update_snapshot();
    assert_rejected_except(
        &s,
        refresh,
        &["targets", "expired", "freeze"],
        &["timestamp.json", "snapshot.json"],
    );
}

#[test]
fn freeze_expired_root_at_reference_time() {
    // The repository is frozen: nothing new is published while the trusted
    // root expires. All metadata expires in 30 days, root in 10.
    let tmp = tempfile::tempdir().unwrap();
    let mut repo = Repo::new(&tmp.path().join("repo"), false);
    repo.root["expires"] = json!(expiry(Duration::days(10)));
    repo.bump_root(&[]);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.refresh(&server, &[]).ok();
    let later = common::repo::at(chrono::Utc::now() + Duration::days(15));
    let before = client.trusted();
    client
        .refresh(&server, &["--reference-time", &later])
        .fails_with(&["root", "expired", "freeze"]);
    assert_eq!(client.trusted(), before);
}

// ---- endless data -------------------------------------------------------

#[test]
fn endless_data_timestamp() {
    let s = setup(false);
    s.server.attack("metadata/timestamp.json", Attack::Endless);
    assert_rejected(
        &s,
        refresh,
        &["timestamp.json", "endless data", "16384-byte bound"],
    );
}

#[test]
fn endless_data_root() {
    let s = setup(false);
    s.server.attack("metadata/2.root.json", Attack::Endless);
    assert_rejected(
        &s,
        refresh,
        &["2.root.json", "endless data", "512000-byte bound"],
    );
}

#[test]
fn endless_data_bound_override() {
    let s = setup(false);
    assert_rejected(
        &s,
        |s| {
            s.client
                .refresh(&s.server, &["--max-timestamp-bytes", "100"])
        },
        &["timestamp.json", "endless data", "100-byte bound"],
    );
}

#[test]
fn endless_data_target() {
    let s = setup(false);
    s.server.attack("targets/file.txt", Attack::Endless);
    assert_rejected(
        &s,
        |s| s.client.download(&s.server, &["file.txt"], &[]),
        &["targets/file.txt", "endless data", "16-byte bound"],
    );
    assert!(s.client.downloaded().is_empty());
}

#[test]
fn slow_retrieval_is_stopped() {
    let s = setup(false);
    s.server.attack(
        "metadata/timestamp.json",
        Attack::Slow(std::time::Duration::from_secs(3)),
    );
    assert_rejected(
        &s,
        |s| s.client.refresh(&s.server, &["--read-timeout", "1"]),
        &["timestamp.json", "slow retrieval"],
    );
}

// ---- mix-and-match ------------------------------------------------------

#[test]
fn mix_and_match_snapshot_version_differs_from_timestamp() {
    let mut s = setup(false);
    // timestamp points at snapshot v3, the mirror serves the (valid) v2
    s.repo.timestamp["meta"]["snapshot.json"] = json!({"version": 3});
    common::repo::bump(&mut s.repo.timestamp);
    s.repo.publish_timestamp_only();
    assert_rejected_except(
        &s,
        refresh,
        &[
            "snapshot",
            "differs from version 3",
            "timestamp",
            "mix-and-match",
        ],
        &["timestamp.json"],
    );
}

#[test]
fn mix_and_match_snapshot_hash_differs_from_timestamp() {
    let mut s = setup(false);
    s.repo.update_snapshot(); // snapshot v3, timestamp lists v3
                              // timestamp also pins the hash and length of snapshot v3
    let v3 = s.repo.signed_bytes("snapshot");
    s.repo.timestamp["meta"]["snapshot.json"] = json!({
        "version": 3,
        "length": v3.len(),
        "hashes": {"sha256": common::repo::sha256_hex(&v3)},
    });
    common::repo::bump(&mut s.repo.timestamp);
    s.repo.publish_timestamp_only();
    // the mirror serves another, differently signed snapshot v3
    let mut other = s.repo.snapshot.clone();
    other["expires"] = json!(expiry(Duration::days(29)));
    let forged = envelope(&other, &s.repo.keys_of("snapshot"));
    s.server
        .attack("metadata/snapshot.json", Attack::Bytes(forged));
    assert_rejected_except(
        &s,
        refresh,
        &["snapshot", "mix-and-match"],
        &["timestamp.json"],
    );
}

// ---- fast-forward recovery ---------------------------------------------

#[test]
fn fast_forward_recovery_after_timestamp_key_rotation() {
    let mut s = setup(false);
    // An attacker holding the timestamp key fast-forwards the client.
    s.repo.timestamp["version"] = json!(1000);
    s.repo.publish_timestamp_only();
    refresh(&s).ok();
    assert_eq!(s.client.version("timestamp"), 1000);
    // Without a key rotation the repository cannot go back: rollback.
    s.repo.timestamp["version"] = json!(3);
    s.repo.publish_timestamp_only();
    assert_rejected(&s, refresh, &["timestamp", "rollback"]);
    // The repository rotates the timestamp key in root v2 and restarts.
    s.repo.rotate_keys("timestamp");
    s.repo.bump_root(&[]);
    s.repo.timestamp["version"] = json!(1);
    s.repo.update_timestamp(); // version 2, signed by the new key
    refresh(&s).ok();
    assert_eq!(s.client.version("root"), 2);
    assert_eq!(s.client.version("timestamp"), 2);
}

#[test]
fn fast_forward_recovery_after_snapshot_key_rotation() {
    let mut s = setup(false);
    s.repo.snapshot["version"] = json!(1000);
    s.repo.publish_snapshot_only();
    s.repo.update_timestamp(); // points at snapshot 1000
    refresh(&s).ok();
    assert_eq!(s.client.version("snapshot"), 1000);
    s.repo.rotate_keys("snapshot");
    s.repo.bump_root(&[]);
    s.repo.snapshot["version"] = json!(1);
    s.repo.update_snapshot(); // snapshot v2 under the new key
    refresh(&s).ok();
    assert_eq!(s.client.version("snapshot"), 2);
}

// ---- signatures ---------------------------------------------------------

/// Root v2 requires 2 of 2 timestamp keys; returns the extra key.
fn two_key_timestamp(s: &mut Setup) {
    let extra = TestKey::generate();
    s.repo.root["keys"][&extra.id] = extra.json.clone();
    s.repo.root["roles"]["timestamp"]["keyids"]
        .as_array_mut()
        .unwrap()
        .push(json!(extra.id));
    s.repo.root["roles"]["timestamp"]["threshold"] = json!(2);
    s.repo.keys.get_mut("timestamp").unwrap().push(extra);
    s.repo.bump_root(&[]);
    s.repo.update_timestamp();
    refresh(s).ok();
    assert_eq!(s.client.version("root"), 2);
}

#[test]
fn threshold_not_met() {
    let mut s = setup(false);
    two_key_timestamp(&mut s);
    common::repo::bump(&mut s.repo.timestamp);
    let one = envelope(&s.repo.timestamp, &[&s.repo.keys["timestamp"][0]]);
    s.server
        .attack("metadata/timestamp.json", Attack::Bytes(one));
    assert_rejected(
        &s,
        refresh,
        &[
            "timestamp",
            "threshold not met",
            "1 valid",
            "threshold is 2",
        ],
    );
}

#[test]
fn duplicate_signatures_rejected() {
    let mut s = setup(false);
    two_key_timestamp(&mut s);
    common::repo::bump(&mut s.repo.timestamp);
    let k = &s.repo.keys["timestamp"][0];
    let dup = envelope(&s.repo.timestamp, &[k, k]);
    s.server
        .attack("metadata/timestamp.json", Attack::Bytes(dup));
    assert_rejected(&s, refresh, &["timestamp", "appears 2 times", "unique"]);
}

#[test]
fn wrong_delegation_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repo = Repo::new(&tmp.path().join("repo"), true);
    repo.add_delegation("targets", "team", &["team/*"], false);
    repo.add_target("team", "team/app.bin", b"team artifact");
    repo.bump_targets("team");
    repo.bump_targets("targets");
    repo.update_snapshot();
    // The delegated role is signed by a key the delegation does not name.
    let rogue = TestKey::generate();
    let forged = envelope(&repo.delegated["team"].signed, &[&rogue]);
    repo.write_role("team", &forged);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.refresh(&server, &[]).ok();
    let before = client.trusted();
    client
        .download(&server, &["team/app.bin"], &[])
        .fails_with(&["team", "threshold not met", "0 valid", "targets"]);
    assert_eq!(client.trusted(), before);
    assert!(!client.metadata_dir.join("team.json").exists());
    assert!(client.downloaded().is_empty());
}

#[test]
fn unsigned_new_root_rejected() {
    let mut s = setup(false);
    // root v2 signed only by a new key: not by a threshold of the trusted root
    s.repo.rotate_keys("root");
    common::repo::bump(&mut s.repo.root);
    let bytes = envelope(&s.repo.root, &s.repo.keys_of("root"));
    std::fs::write(s.repo.metadata_dir().join("2.root.json"), bytes).unwrap();
    assert_rejected(&s, refresh, &["2.root.json", "root", "threshold not met"]);
}

// ---- malicious mirror ---------------------------------------------------

#[test]
fn malicious_mirror_serves_other_repository() {
    let s = setup(false);
    let tmp = tempfile::tempdir().unwrap();
    let other = Repo::new(&tmp.path().join("other"), false);
    let evil = TestServer::start(&other.dir);
    assert_rejected(
        &s,
        |s| s.client.refresh(&evil, &[]),
        &["timestamp", "threshold not met", "0 valid"],
    );
    // and the other repository's new root is not accepted either
    let mut other = other;
    other.bump_root(&[]);
    assert_rejected(
        &s,
        |s| s.client.refresh(&evil, &[]),
        &["2.root.json", "threshold not met"],
    );
}

#[test]
fn wrong_type_served_for_timestamp() {
    let s = setup(false);
    // a correctly signed snapshot served as the timestamp (role confusion)
    let snap = std::fs::read(s.repo.metadata_dir().join("snapshot.json")).unwrap();
    s.server
        .attack("metadata/timestamp.json", Attack::Bytes(snap));
    assert_rejected(&s, refresh, &["timestamp", "_type"]);
}

#[test]
fn missing_timestamp_is_an_error() {
    let s = setup(false);
    s.server
        .attack("metadata/timestamp.json", Attack::Status(404));
    assert_rejected(&s, refresh, &["timestamp.json", "not found"]);
}
