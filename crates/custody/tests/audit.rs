//! `custody audit` against a real `custody serve` log: verify (tree,
//! signatures, witness cosignatures, device-signed manifests), who-has and
//! device with inclusion proofs, and the inconsistencies it must report
//! (forged install report, a bundle changed on the server's disk).

mod common;

use std::process::Output;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::custody_async as custody;
use common::serve::start_in_process;
use custody_log::entry::EntryBody;
use custody_log::{leaf_hash, verify_inclusion, Hash};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{json, Value};

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// A device key, its TUF key JSON, its key id (= device id) and a
/// manifest in the director's wire shape (custody-director types), signed
/// with the device key over its canonical `signed` part (`forge` flips a
/// signature bit). The manifest reports `installed` for `target`.
fn device_manifest(seed: u8, target: &str, forge: bool) -> (String, Value, Vec<u8>) {
    use custody_director::wire::{InstallReport, InstalledTarget, ManifestBody};
    let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let key = json!({"keytype": "ed25519", "scheme": "ed25519",
                     "keyval": {"public": hex::encode(pair.public_key().as_ref())}});
    let tuf_key: custody_tuf::schema::Key = serde_json::from_value(key.clone()).unwrap();
    let id = tuf_key.key_id().unwrap();
    let body = ManifestBody {
        type_: custody_director::wire::TYPE_MANIFEST.into(),
        wire_version: custody_director::wire::WIRE_VERSION,
        device_id: id.clone(),
        hardware_id: "board-a".into(),
        report_counter: 1,
        device_time: 1_700_000_000,
        installed: [(
            "a".to_string(),
            InstalledTarget {
                name: target.into(),
                length: 3,
                hashes: [("sha256".to_string(), "ab".repeat(32))].into(),
                release_counter: 1,
            },
        )]
        .into(),
        active_slot: Some("a".into()),
        attacks_detected: vec![],
        install_reports: vec![InstallReport {
            id: "attempt-1".into(),
            target: target.into(),
            release_counter: 1,
            outcome: "installed".into(),
            reason: None,
            time: 1_700_000_000,
        }],
    };
    let canonical = custody_tuf::cjson::canonical_bytes("manifest", &body).unwrap();
    let mut sig = pair.sign(&canonical).as_ref().to_vec();
    if forge {
        sig[0] ^= 1;
    }
    let manifest = json!({"signed": body, "signatures": [{"keyid": id, "sig": hex::encode(sig)}]});
    (id, key, serde_json::to_vec(&manifest).unwrap())
}

fn install_report(seed: u8, target: &str, forge: bool) -> (String, EntryBody) {
    let (id, key, bytes) = device_manifest(seed, target, forge);
    let body = EntryBody::InstallReport {
        device_id: id.clone(),
        target: target.into(),
        outcome: "installed".into(),
        manifest_sha256: custody_tuf::crypto::sha256_hex(&bytes),
        manifest: Some(B64.encode(&bytes)),
        device_key: Some(key),
    };
    (id, body)
}

fn proof_ok(row: &Value, entry_bytes: &[u8]) {
    let inc = &row["inclusion"];
    let proof: Vec<Hash> = inc["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    let root: Hash = B64
        .decode(inc["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    verify_inclusion(
        &leaf_hash(entry_bytes),
        inc["index"].as_u64().unwrap(),
        inc["size"].as_u64().unwrap(),
        &proof,
        &root,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_replays_the_server_log_and_reports_inconsistencies() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in_process(&dir.path().join("data")).await;
    let url = server.url();
    let log = custody_server::testing::log(&server).clone();
    let log_key = log.verifier_key().to_vkey();

    // What the director and the device report would append.
    let (dev1, report1) = install_report(1, "fw-1.0.bin", false);
    let mut appended = Vec::new();
    for body in [
        EntryBody::AssignmentDelivered {
            device_id: dev1.clone(),
            target: "fw-1.0.bin".into(),
            hashes: Default::default(),
            release_counter: Some(1),
            delivered_at: 1_700_000_000,
        },
        EntryBody::AssignmentDelivered {
            device_id: "dev-other".into(),
            target: "fw-2.0.bin".into(),
            hashes: Default::default(),
            release_counter: Some(2),
            delivered_at: 1_700_000_100,
        },
        report1,
    ] {
        let e = custody_server::testing::stamp(body);
        let i = log.append_entry(&e).await.unwrap();
        appended.push((i, e.to_bytes().unwrap()));
    }

    // A witness cosigns; the auditor trusts that witness.
    let wkey = dir.path().join("w.key");
    let o = custody(&[
        "witness",
        "--key",
        wkey.to_str().unwrap(),
        "--new-key",
        "w1.test",
    ])
    .await;
    let wvkey = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let state = dir.path().join("wstate");
    let o = custody(&[
        "witness",
        "--log",
        &url,
        "--key",
        wkey.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--log-key",
        &log_key,
        "--once",
    ])
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let common = [
        "--log",
        &url,
        "--log-key",
        &log_key,
        "--witness",
        &wvkey,
        "--json",
    ];
    let mut args = vec!["audit", "verify"];
    args.extend(common);
    let o = custody(&args).await;
    let v = json_out(&o);
    assert!(o.status.success(), "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["cosigned_by"], json!(["w1.test"]));
    assert_eq!(v["entries_by_type"]["install_report"], 1);
    assert_eq!(v["entries_by_type"]["assignment_delivered"], 2);

    // who-has: dev1 received and installed fw-1.0, each with a proof.
    let mut args = vec!["audit", "who-has", "fw-1.0.bin"];
    args.extend(common);
    let o = custody(&args).await;
    let v = json_out(&o);
    assert!(o.status.success(), "{v}");
    let rows = v["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for row in rows {
        assert_eq!(row["device_id"], dev1.as_str());
        let idx = row["index"].as_u64().unwrap();
        let bytes = &appended.iter().find(|(i, _)| *i == idx).unwrap().1;
        proof_ok(row, bytes);
    }
    assert_eq!(rows[0]["type"], "assignment_delivered");
    assert_eq!(rows[1]["type"], "install_report");

    // device: the whole history of dev-other.
    let mut args = vec!["audit", "device", "dev-other"];
    args.extend(common);
    let v = json_out(&custody(&args).await);
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["target"], "fw-2.0.bin");

    // A wrong pinned log key is refused outright.
    let other = custody_log::NoteSigner::generate("custody.local/log").unwrap();
    let o = custody(&[
        "audit",
        "verify",
        "--log",
        &url,
        "--log-key",
        &other.verifier_key().to_vkey(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));

    assert_eq!(v["entries"][0]["manifest_check"], Value::Null);

    // The valid report is verified, and says so.
    let mut args = vec!["audit", "device", &dev1];
    args.extend(common);
    let v = json_out(&custody(&args).await);
    let rep = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "install_report")
        .unwrap()
        .clone();
    assert_eq!(rep["manifest_check"], "verified", "{v}");

    // Tampered install reports, each flagged by `audit verify`:
    // a manifest whose device signature does not verify,
    let (_, forged) = install_report(2, "fw-1.0.bin", true);
    // a genuine manifest attached to a claim the device never made,
    let (
        _,
        EntryBody::InstallReport {
            device_id,
            manifest_sha256,
            manifest,
            device_key,
            ..
        },
    ) = install_report(3, "fw-1.0.bin", false)
    else {
        unreachable!()
    };
    let misattributed = EntryBody::InstallReport {
        device_id: device_id.clone(),
        target: "fw-1.0.bin".into(),
        outcome: "failed".into(),
        manifest_sha256: manifest_sha256.clone(),
        manifest: manifest.clone(),
        device_key: device_key.clone(),
    };
    // another device's key presented as this device's,
    let (_, k4, _) = device_manifest(4, "fw-1.0.bin", false);
    let wrong_key = EntryBody::InstallReport {
        device_id: device_id.clone(),
        target: "fw-1.0.bin".into(),
        outcome: "installed".into(),
        manifest_sha256: manifest_sha256.clone(),
        manifest: manifest.clone(),
        device_key: Some(k4),
    };
    // and manifest bytes changed after the digest was taken.
    let mut bytes = B64.decode(manifest.unwrap()).unwrap();
    let pos = bytes.windows(7).position(|w| w == b"board-a").unwrap();
    bytes[pos] = b'B';
    let changed = EntryBody::InstallReport {
        device_id,
        target: "fw-1.0.bin".into(),
        outcome: "installed".into(),
        manifest_sha256,
        manifest: Some(B64.encode(&bytes)),
        device_key,
    };
    for e in [forged, misattributed, wrong_key, changed] {
        log.append(e).await.unwrap();
    }
    let mut args = vec!["audit", "verify"];
    args.extend(common);
    let o = custody(&args).await;
    assert_eq!(o.status.code(), Some(2));
    let v = json_out(&o);
    let problems = v["problems"].to_string();
    for want in [
        "manifest: signature of device",
        "carries no such report",
        "device_key has key id",
        "manifest sha256 is",
    ] {
        assert!(problems.contains(want), "{want}: {v}");
    }
    assert_eq!(v["install_reports"]["bad"], 4, "{v}");
    assert_eq!(v["install_reports"]["verified"], 1, "{v}");

    // A bundle changed on the server's disk no longer matches its tile.
    let size = log.size();
    let bundle = dir
        .path()
        .join(format!("data/log/tile/entries/000.p/{size}"));
    let mut b = std::fs::read(&bundle).unwrap();
    let pos = b.windows(8).position(|w| w == b"dev-othe").unwrap();
    b[pos] = b'X';
    std::fs::write(&bundle, &b).unwrap();
    let o = custody(&args).await;
    assert_eq!(o.status.code(), Some(2));
    let v = json_out(&o);
    assert!(
        v["problems"].to_string().contains("does not hash to"),
        "{v}"
    );
    server.shutdown().await.unwrap();
}
