//! The server's transparency log over real HTTP: appends from other
//! modules, admin actions logged, checkpoint / key / tiles / proofs, and
//! witness cosignatures (accepted, attached, refused when forged).

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_log::entry::{EntryBody, LogEntry};
use custody_log::tile::{parse_entry_bundle, tiles_for_inclusion, TileHashReader};
use custody_log::{
    inclusion_proof, leaf_hash, root_at, verify_consistency, verify_inclusion, Cosigner, Hash,
    LogVerifier, VerifierKey, WitnessPolicy,
};
use serde_json::json;

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_serves_checkpoint_tiles_proofs_and_takes_cosignatures() {
    let s = common::start().await;
    let key_text = s.get("/log/v1/key", &[]).await.text();
    let key = VerifierKey::parse(key_text.trim()).unwrap();
    let verifier = LogVerifier::new(key.name(), key.clone()).unwrap();

    // Appends from other modules (the director) are durable on return.
    let log = custody_server::testing::log(&s.server).clone();
    let first = log
        .append(EntryBody::AssignmentDelivered {
            device_id: "dev1".into(),
            target: "fw-1.0.bin".into(),
            hashes: Default::default(),
            release_counter: Some(3),
            delivered_at: 1_700_000_000,
        })
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..300 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            log.append(EntryBody::Decommission {
                device_id: format!("dev{i}"),
                reason: "test".into(),
                by: "ops".into(),
            })
            .await
            .unwrap()
        }));
    }
    let mut idx = Vec::new();
    for h in handles {
        idx.push(h.await.unwrap());
    }
    idx.sort();
    idx.dedup();
    assert_eq!(idx.len(), 300);

    // An admin action (token mint) is logged too.
    let _ = s.token(&s.bootstrap, None).await;

    let cp = s.get("/log/v1/checkpoint", &[]).await;
    assert_eq!(cp.status, 200);
    assert_eq!(cp.header("cache-control"), Some("no-cache"));
    let vc = verifier.verify(&cp.body).unwrap();
    let size = vc.checkpoint.size;
    assert!(size >= 302, "size {size}");

    // One entry by index, proved against the checkpoint with the device's
    // rule (custody-client's check_entry_evidence); beyond the log, 404.
    let trust = custody_client::log::trust_from_keys(None, key_text.trim(), &[], 0).unwrap();
    let r = s.get(&format!("/log/v1/entry?index={}", idx[7]), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = custody_log::wire::EntryEvidence::parse_for(&r.body, idx[7]).unwrap();
    let (accepted, entry) = custody_client::log::check_entry_evidence(&trust, None, &ev).unwrap();
    assert!(accepted.checkpoint.checkpoint.size > idx[7]);
    let entry = LogEntry::from_bytes(&entry).unwrap();
    assert_eq!(entry.type_name(), "decommission");
    // A flipped byte of the entry no longer proves.
    let mut forged = ev.clone();
    let mut bytes = B64.decode(&forged.entry).unwrap();
    bytes[0] ^= 1;
    forged.entry = B64.encode(&bytes);
    assert!(custody_client::log::check_entry_evidence(&trust, None, &forged).is_err());
    let r = s.get("/log/v1/entry?index=99999999", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = s.get("/log/v1/entry?index=minus-one", &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Tiles: full ones immutable, partial ones not; out-of-tree refused.
    let t0 = s.get("/log/v1/tile/0/000", &[]).await;
    assert_eq!(t0.status, 200);
    assert_eq!(t0.body.len(), 256 * 32);
    assert!(t0.header("cache-control").unwrap().contains("immutable"));
    let w = size % 256;
    let p = s.get(&format!("/log/v1/tile/0/001.p/{w}"), &[]).await;
    assert_eq!(p.status, 200, "{}", p.text());
    assert!(!p.header("cache-control").unwrap().contains("immutable"));
    assert_eq!(s.get("/log/v1/tile/0/005", &[]).await.status, 404);
    assert_eq!(s.get("/log/v1/tile/0/1", &[]).await.status, 404);
    assert_eq!(
        s.get(&format!("/log/v1/tile/0/001.p/{}", w + 1), &[])
            .await
            .status,
        404
    );

    // Client-side: recompute the root from tiles, read entries from bundles.
    let mut reader = TileHashReader::new();
    for t in custody_log::tile::tiles_for_root(size).unwrap() {
        let b = s.get(&format!("/log/v1/{}", t.path()), &[]).await;
        assert_eq!(b.status, 200, "{t}");
        reader.insert(t, &b.body).unwrap();
    }
    for t in tiles_for_inclusion(first, size).unwrap() {
        let b = s.get(&format!("/log/v1/{}", t.path()), &[]).await;
        reader.insert(t, &b.body).unwrap();
    }
    assert_eq!(root_at(&reader, size).unwrap(), vc.checkpoint.root);
    let bundle = s.get("/log/v1/tile/entries/000", &[]).await;
    assert_eq!(bundle.status, 200);
    let entries = parse_entry_bundle(&bundle.body).unwrap();
    let e = LogEntry::from_bytes(entries[first as usize]).unwrap();
    assert_eq!(e.v, 1);
    assert_eq!(e.device_id(), Some("dev1"));
    assert_eq!(e.type_name(), "assignment_delivered");
    let local = inclusion_proof(&reader, first, size).unwrap();

    // Proof endpoints agree with the tiles and verify.
    let pr = s
        .get(
            &format!("/log/v1/proof/inclusion?index={first}&size={size}"),
            &[],
        )
        .await
        .json();
    let proof = hashes(&pr);
    assert_eq!(proof, local);
    verify_inclusion(
        &leaf_hash(entries[first as usize]),
        first,
        size,
        &proof,
        &vc.checkpoint.root,
    )
    .unwrap();
    let old_root = root_at(&reader, 10).unwrap();
    let cons = s
        .get(&format!("/log/v1/proof/consistency?old=10&new={size}"), &[])
        .await
        .json();
    verify_consistency(10, size, &old_root, &vc.checkpoint.root, &hashes(&cons)).unwrap();
    assert_eq!(
        s.get(
            &format!("/log/v1/proof/inclusion?index={size}&size={size}"),
            &[]
        )
        .await
        .status,
        400
    );

    // Witness cosignature: accepted, attached, verifiable with a policy.
    let witness = Cosigner::generate("witness.example/w1").unwrap();
    let cosig = witness.cosign(vc.note.text(), 1_700_000_000).unwrap();
    let body = json!({
        "key": witness.verifier_key().to_vkey(),
        "checkpoint": String::from_utf8(cp.body.clone()).unwrap(),
        "signature": cosig.to_line(),
    });
    let r = common::http(
        "POST",
        &format!("{}/log/v1/cosign", s.url),
        &[("content-type", "application/json")],
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let policy = WitnessPolicy::new(vec![witness.verifier_key()], 1).unwrap();
    let with_policy = verifier.clone().with_witness_policy(policy);
    let cosigned = s.get("/log/v1/checkpoint/cosigned", &[]).await;
    assert_eq!(cosigned.status, 200);
    let v2 = with_policy.verify(&cosigned.body).unwrap();
    assert_eq!(v2.checkpoint.size, size);
    assert_eq!(v2.cosignatures.len(), 1);

    // A cosignature by another key than the one named is refused.
    let other = Cosigner::generate("witness.example/w1").unwrap();
    let forged = other.cosign(vc.note.text(), 1_700_000_000).unwrap();
    let body = json!({
        "key": witness.verifier_key().to_vkey(),
        "checkpoint": String::from_utf8(cp.body.clone()).unwrap(),
        "signature": forged.to_line(),
    });
    let r = common::http(
        "POST",
        &format!("{}/log/v1/cosign", s.url),
        &[("content-type", "application/json")],
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // The log survives a restart with its key, size and cosignatures.
    let dir_path = s.dir.path().to_path_buf();
    let common::TestServer { server, dir, .. } = s;
    server.shutdown().await.unwrap();
    drop(log);
    let again = custody_server::start(common::config(&dir_path))
        .await
        .unwrap();
    let url = again.url();
    let cp2 = common::http(
        "GET",
        &format!("{url}/log/v1/checkpoint/cosigned"),
        &[],
        None,
    )
    .await;
    let v3 = with_policy.verify(&cp2.body).unwrap();
    assert_eq!(v3.checkpoint.size, size);
    again.shutdown().await.unwrap();
    drop(dir);
}

/// A yank through the admin API and the admin actions around it are
/// entries of the log (read back from the entry bundle over HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yank_and_admin_actions_are_logged() {
    let s = common::start().await;
    let cred = s.credential("ops", &["target:revoke@app"]).await;
    let t = s.token(&cred, None).await;
    let r = s
        .api(
            "POST",
            "/api/v1/repos/app/yanks",
            &t,
            Some(json!({"target": "fw/app.bin", "reason": "boot loop"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let size = custody_server::testing::log(&s.server).size();
    let b = s
        .get(&format!("/log/v1/tile/entries/000.p/{size}"), &[])
        .await;
    assert_eq!(b.status, 200, "{}", b.text());
    let entries: Vec<LogEntry> = parse_entry_bundle(&b.body)
        .unwrap()
        .into_iter()
        .map(|e| LogEntry::from_bytes(e).unwrap())
        .collect();
    let yank = entries
        .iter()
        .find(|e| e.type_name() == "yank")
        .expect("a yank entry");
    assert_eq!(
        yank.body,
        EntryBody::Yank {
            repo: "app".into(),
            target: "fw/app.bin".into(),
            reason: "boot loop".into(),
            by: yank_by(&entries),
            replacement: None,
        }
    );
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.body {
            EntryBody::AdminAction { action, .. } => Some(action.as_str()),
            _ => None,
        })
        .collect();
    assert!(actions.contains(&"credential.create"), "{actions:?}");
    assert!(actions.contains(&"target.yank"), "{actions:?}");
}

fn yank_by(entries: &[LogEntry]) -> String {
    entries
        .iter()
        .find_map(|e| match &e.body {
            EntryBody::AdminAction {
                action, identity, ..
            } if action == "target.yank" => Some(identity.clone()),
            _ => None,
        })
        .unwrap()
}
