//! What the director writes into the transparency log, over real HTTP on
//! loopback (issue #7 part 2, docs/LOG.md "What is logged when"): a
//! delivery is logged exactly once per assignment over many check-ins and
//! across a restart, install reports are logged with the device-signed
//! manifest (whose signature verifies) before the check-in is answered,
//! large manifests by digest, a check-in that delivers nothing new and
//! carries no reports appends nothing, a bundle export of director
//! metadata is a delivery, a decommission is logged with its
//! reason and who did it, re-attestation sweep suspensions are logged.
//! On SQLite (cached store) and on PostgreSQL
//! (CUSTODY_TEST_DATABASE_URL; skipped without it).

mod common;
mod director_common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_director::wire::{InstallReport, SignedManifest};
use custody_log::entry::{EntryBody, LogEntry};
use custody_log::tile::{new_bundles, parse_entry_bundle};
use custody_log::{LogVerifier, VerifierKey};
use director_common::{Device, Fleet};
use serde_json::json;

/// Every entry of the server's log, read over HTTP like an auditor (the
/// checkpoint verified with the served key).
async fn log_entries(s: &common::TestServer) -> Vec<LogEntry> {
    log_entries_at(&s.url).await
}

async fn log_entries_at(url: &str) -> Vec<LogEntry> {
    let get = |path: String| async move {
        let r = common::http("GET", &format!("{url}{path}"), &[], None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r
    };
    let key = VerifierKey::parse(get("/log/v1/key".into()).await.text().trim()).unwrap();
    let cp = get("/log/v1/checkpoint".into()).await;
    let size = LogVerifier::new(key.name(), key.clone())
        .unwrap()
        .verify(&cp.body)
        .unwrap()
        .checkpoint
        .size;
    let mut out = Vec::new();
    for b in new_bundles(0, size) {
        let r = get(format!("/log/v1/{}", b.path())).await;
        for e in parse_entry_bundle(&r.body).unwrap() {
            out.push(LogEntry::from_bytes(e).unwrap());
        }
    }
    assert_eq!(out.len() as u64, size);
    out
}

fn deliveries<'a>(log: &'a [LogEntry], dev: &str) -> Vec<&'a LogEntry> {
    log.iter()
        .filter(|e| {
            matches!(e.body, EntryBody::AssignmentDelivered { .. }) && e.device_id() == Some(dev)
        })
        .collect()
}

fn reports<'a>(log: &'a [LogEntry], dev: &str) -> Vec<&'a LogEntry> {
    log.iter()
        .filter(|e| matches!(e.body, EntryBody::InstallReport { .. }) && e.device_id() == Some(dev))
        .collect()
}

/// The auditor's check of an install report entry, done here with
/// custody-director and custody-tuf directly: digest, key id = device id,
/// the device's signature over the manifest, and the report inside it.
fn check_report(e: &LogEntry, dev: &Device, target: &str, outcome: &str) {
    let EntryBody::InstallReport {
        device_id,
        target: t,
        outcome: o,
        manifest_sha256,
        manifest,
        device_key,
    } = &e.body
    else {
        panic!("not an install report: {e:?}")
    };
    assert_eq!(
        (device_id, t.as_str(), o.as_str()),
        (&dev.id, target, outcome)
    );
    let bytes = B64
        .decode(manifest.as_ref().expect("manifest embedded"))
        .unwrap();
    assert_eq!(&custody_tuf::crypto::sha256_hex(&bytes), manifest_sha256);
    let key: custody_tuf::schema::Key =
        serde_json::from_value(device_key.clone().expect("device key")).unwrap();
    assert_eq!(key.key_id().unwrap(), dev.id);
    let m = SignedManifest::from_bytes(&bytes).unwrap();
    assert_eq!(m.signed.device_id, dev.id);
    // The rule the server applies at check-in, not a second verifier.
    custody_director::verify_manifest_signature(&m, &dev.id, &key)
        .expect("the device's signature on the logged manifest verifies");
    assert!(m
        .signed
        .install_reports
        .iter()
        .any(|r| r.target == target && r.outcome == outcome));
}

fn targets_of(c: &custody_director::wire::CheckinResponse) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&c.director.targets).unwrap();
    v["signed"]["targets"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

async fn rollout(f: &Fleet, id: &str, target: &str) {
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/rollouts",
            Some(json!({
                "id": id,
                "target": target,
                "selector": {"groups": ["fleet-a"]},
                "stages": [{"percent": 100}],
                "seed": "log-test",
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn checkin_ok(f: &Fleet, dev: &mut Device) -> Vec<String> {
    let (r, c) = f.checkin(dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    targets_of(&c.unwrap())
}

const FW1: &[u8] = b"firmware one for the log test";
const FW2: &[u8] = b"firmware two for the log test";

/// Enrol, assign, check in repeatedly, report, reassign; returns the device.
async fn deliveries_and_reports(f: &Fleet) -> Device {
    f.publish(&[("fw/1.0.bin", FW1, 1)]).await;
    let mut dev = f.enrolled("board-a", "fleet-a").await;
    // Nothing assigned yet: the check-in appends nothing.
    let before = log_entries(&f.s).await.len();
    assert!(checkin_ok(f, &mut dev).await.is_empty());
    assert_eq!(log_entries(&f.s).await.len(), before, "nothing to log");

    rollout(f, "fw1", "fw/1.0.bin").await;
    for _ in 0..3 {
        assert_eq!(checkin_ok(f, &mut dev).await, ["fw/1.0.bin"]);
    }
    let log = log_entries(&f.s).await;
    let d = deliveries(&log, &dev.id);
    assert_eq!(d.len(), 1, "one delivery over three check-ins: {d:?}");
    let EntryBody::AssignmentDelivered {
        target,
        hashes,
        release_counter,
        delivered_at,
        ..
    } = &d[0].body
    else {
        unreachable!()
    };
    assert_eq!(target, "fw/1.0.bin");
    assert_eq!(release_counter, &Some(1));
    assert_eq!(hashes["sha256"], common::sha256_hex(FW1));
    assert!((d[0].time - delivered_at).abs() <= 5);

    // The device installs it and reports: logged before the answer, with
    // the manifest the device signed.
    dev.install("fw/1.0.bin", FW1, 1, "installed");
    let size = log_entries(&f.s).await.len();
    assert_eq!(checkin_ok(f, &mut dev).await, ["fw/1.0.bin"]);
    let log = log_entries(&f.s).await;
    let r = reports(&log, &dev.id);
    assert_eq!(r.len(), 1, "{r:?}");
    check_report(r[0], &dev, "fw/1.0.bin", "installed");
    assert!(log.len() > size);

    // Steady state: same assignment, no reports: nothing appended.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let size = log_entries(&f.s).await.len();
    for _ in 0..3 {
        checkin_ok(f, &mut dev).await;
    }
    assert_eq!(
        log_entries(&f.s).await.len(),
        size,
        "hot path appends nothing"
    );

    // A failed attempt of a new release: a new assignment is a new
    // delivery (once), the failure report is logged.
    f.publish(&[("fw/2.0.bin", FW2, 2)]).await;
    rollout(f, "fw2", "fw/2.0.bin").await;
    assert_eq!(checkin_ok(f, &mut dev).await, ["fw/2.0.bin"]);
    dev.install("fw/2.0.bin", FW2, 2, "failed");
    checkin_ok(f, &mut dev).await;
    checkin_ok(f, &mut dev).await;
    let log = log_entries(&f.s).await;
    let d = deliveries(&log, &dev.id);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[1].target(), Some("fw/2.0.bin"));
    let r = reports(&log, &dev.id);
    assert_eq!(r.len(), 2, "{r:?}");
    check_report(r[1], &dev, "fw/2.0.bin", "failed");
    dev
}

/// Director metadata exported for an offline bundle is a delivery too
/// (every export); the check-in marker is untouched.
async fn bundle_export_logged(f: &Fleet, dev: &mut Device) {
    let before = deliveries(&log_entries(&f.s).await, &dev.id).len();
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/bundle-metadata", dev.id),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let log = log_entries(&f.s).await;
    let d = deliveries(&log, &dev.id);
    assert_eq!(d.len(), before + 1, "{d:?}");
    let EntryBody::AssignmentDelivered {
        target,
        release_counter,
        hashes,
        ..
    } = &d[before].body
    else {
        unreachable!()
    };
    assert_eq!((target.as_str(), *release_counter), ("fw/2.0.bin", Some(2)));
    assert_eq!(hashes["sha256"], common::sha256_hex(FW2));
    checkin_ok(f, dev).await;
    assert_eq!(
        deliveries(&log_entries(&f.s).await, &dev.id).len(),
        before + 1
    );
}

/// A manifest above the embedding limit is logged by digest only.
async fn large_manifest_by_digest(f: &Fleet, dev: &mut Device) {
    for i in 0..14 {
        dev.reports.push(InstallReport {
            id: format!("big-{i}"),
            target: "fw/2.0.bin".into(),
            release_counter: 2,
            outcome: "failed".into(),
            reason: Some("x".repeat(4000)),
            time: chrono::Utc::now().timestamp(),
        });
    }
    let before = reports(&log_entries(&f.s).await, &dev.id).len();
    checkin_ok(f, dev).await;
    let log = log_entries(&f.s).await;
    let r = reports(&log, &dev.id);
    assert_eq!(r.len(), before + 14);
    let EntryBody::InstallReport {
        manifest_sha256: first_sha,
        ..
    } = &r[before].body
    else {
        unreachable!()
    };
    for e in &r[before..] {
        let EntryBody::InstallReport {
            manifest,
            manifest_sha256,
            device_key,
            ..
        } = &e.body
        else {
            unreachable!()
        };
        assert!(manifest.is_none(), "a ~56 KB manifest is not embedded");
        // one check-in, one manifest: every report names its digest
        assert_eq!(manifest_sha256, first_sha, "{e:?}");
        assert!(custody_director::keys::is_device_id(manifest_sha256));
        let key: custody_tuf::schema::Key =
            serde_json::from_value(device_key.clone().expect("device key")).unwrap();
        assert_eq!(key.key_id().unwrap(), dev.id, "the device's own key");
    }
}

async fn decommission(f: &Fleet, dev: &mut Device) {
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/decommission", dev.id),
            Some(json!({"reason": "stolen from the depot"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let log = log_entries(&f.s).await;
    let d: Vec<_> = log
        .iter()
        .filter(|e| {
            matches!(e.body, EntryBody::Decommission { .. }) && e.device_id() == Some(&dev.id)
        })
        .collect();
    assert_eq!(d.len(), 1, "{d:?}");
    let EntryBody::Decommission { reason, by, .. } = &d[0].body else {
        unreachable!()
    };
    assert_eq!(reason, "stolen from the depot");
    assert!(!by.is_empty());
    let (r, _) = f.checkin(dev).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // Final: a second decommission is refused and not logged again.
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/decommission", dev.id),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let again = log_entries(&f.s)
        .await
        .iter()
        .filter(|e| matches!(e.body, EntryBody::Decommission { .. }))
        .count();
    assert_eq!(again, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_logs_deliveries_reports_and_decommissions_on_sqlite() {
    let f = director_common::fleet().await;
    let mut dev = deliveries_and_reports(&f).await;

    // The marker is in the database, not only in the row cache: a second
    // store on the same file (what a restarted server reads) has it. (The
    // PostgreSQL test runs uncached: every check-in there reads it from
    // the database; audit_director.rs restarts a server process.)
    let s = custody_server::testing::SqliteStorage::open(&f.s.dir.path().join("custody.db"))
        .await
        .unwrap();
    use custody_server::testing::DirectorDb as _;
    let row = custody_server::testing::SqliteDirectorDb::new(s.pool().clone())
        .get_device(&dev.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.log_delivery.as_ref().map(String::len),
        Some(64),
        "{row:?}"
    );

    bundle_export_logged(&f, &mut dev).await;
    large_manifest_by_digest(&f, &mut dev).await;
    decommission(&f, &mut dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_logs_deliveries_reports_and_decommissions_on_postgresql() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    let f = director_common::fleet_with(|c| c.database_url = Some(url.clone())).await;
    let mut dev = deliveries_and_reports(&f).await;
    bundle_export_logged(&f, &mut dev).await;
    large_manifest_by_digest(&f, &mut dev).await;
    decommission(&f, &mut dev).await;

    // The re-attestation sweep's suspensions are logged (by `director`). A
    // second replica on the same database with a 1 s period sweeps at
    // start; its own log gets the entry.
    let quiet = f.enrolled("board-a", "fleet-a").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let pass = f.keydir.path().join("passphrase");
    let replica_dir = tempfile::tempdir().unwrap();
    let mut c = common::config(replica_dir.path());
    c.database_url = Some(url.clone());
    c.key_passphrase_file = Some(pass);
    c.allow_upload_and_publish = false;
    c.director.reattestation_period_seconds = 1;
    let replica = custody_server::start(c).await.expect("replica starts");
    let mut swept = None;
    for _ in 0..50 {
        swept = log_entries_at(&replica.url()).await.into_iter().find(|e| {
            matches!(&e.body, EntryBody::AdminAction { identity, action, target, .. }
                if identity == "director" && action == "fleet.device.suspend"
                    && target.as_deref() == Some(quiet.id.as_str()))
        });
        if swept.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let swept = swept.expect("the sweep's suspension is in the replica's log");
    assert!(
        matches!(&swept.body, EntryBody::AdminAction { detail, .. } if detail.contains("re-attestation overdue")),
        "{swept:?}"
    );
    replica.shutdown().await.unwrap();
}
