//! `GET /log/v1/evidence` over real HTTP: the publish index finds a
//! target's `target_publish` entry (across entry bundles, after a restart,
//! and with its index file deleted), the answer passes custody-client's
//! log check, a consistency proof comes from the size the client stored,
//! the cosigned checkpoint is preferred when it covers the entry, unknown
//! targets are 404 `not_logged`, and bad queries are 400.

mod common;

use std::collections::BTreeMap;

use custody_client::log::{check_target, trust_from_keys, Evidence, ExpectedPublish};
use custody_log::entry::EntryBody;
use custody_log::{Checkpoint, Cosigner, LogVerifier, VerifierKey};

fn publish(name: &str, sha: &str) -> EntryBody {
    EntryBody::TargetPublish {
        repo: "main".into(),
        name: name.into(),
        hashes: [("sha256".to_owned(), sha.to_owned())].into(),
        length: 5,
        release_counter: Some(1),
        signing_keyids: vec!["k".into()],
        provenance_sha256: None,
        targets_version: Some(2),
    }
}

fn expect(name: &str, sha: &str) -> ExpectedPublish {
    ExpectedPublish {
        repo: "main".into(),
        name: name.into(),
        length: 5,
        hashes: BTreeMap::from([("sha256".to_owned(), sha.to_owned())]),
    }
}

async fn get_evidence(url: &str, query: &str) -> common::Resp {
    common::http("GET", &format!("{url}/log/v1/evidence?{query}"), &[], None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_finds_publish_entries_and_passes_the_client_check() {
    let s = common::start().await;
    let log = custody_server::testing::log(&s.server).clone();
    let vkey = s.get("/log/v1/key", &[]).await.text();
    let trust = trust_from_keys(None, vkey.trim(), &[], 0).unwrap();
    let sha_a = "aa".repeat(32);
    let sha_b = "bb".repeat(32);
    for i in 0..270 {
        log.append(EntryBody::Decommission {
            device_id: format!("d{i}"),
            reason: "filler".into(),
            by: "test".into(),
        })
        .await
        .unwrap();
    }
    let ia = log.append(publish("fw/a.bin", &sha_a)).await.unwrap();
    assert!(ia >= 256, "in the second entry bundle");

    let q = format!("repo=main&target=fw/a.bin&sha256={sha_a}");
    let r = get_evidence(&s.url, &q).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let ev: Evidence = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(ev.index, ia);
    let first = check_target(&trust, None, &ev, &expect("fw/a.bin", &sha_a)).unwrap();
    let stored: Checkpoint = first.checkpoint.checkpoint.clone();

    // Another target, published later: proven against a newer checkpoint
    // with a consistency proof from the stored size.
    let ib = log.append(publish("fw/b.bin", &sha_b)).await.unwrap();
    let q = format!(
        "repo=main&target=fw/b.bin&sha256={sha_b}&old={}",
        stored.size
    );
    let ev: Evidence = serde_json::from_slice(&get_evidence(&s.url, &q).await.body).unwrap();
    assert_eq!(ev.index, ib);
    assert_eq!(ev.consistency.len(), 1);
    assert_eq!(ev.consistency[0].old, stored.size);
    let second = check_target(&trust, Some(&stored), &ev, &expect("fw/b.bin", &sha_b)).unwrap();
    assert!(matches!(
        second.update,
        custody_log::Update::Advanced { .. }
    ));
    // The same evidence presented for another target is refused.
    let e = check_target(&trust, Some(&stored), &ev, &expect("fw/a.bin", &sha_a)).unwrap_err();
    assert!(e.is_attack(), "{e}");
    assert!(
        e.to_string().contains("not the target_publish entry"),
        "{e}"
    );

    // Not in the log: 404 not_logged (also: right name, other hash).
    for q in [
        format!("repo=main&target=fw/c.bin&sha256={sha_a}"),
        format!("repo=main&target=fw/a.bin&sha256={sha_b}"),
        format!("repo=other&target=fw/a.bin&sha256={sha_a}"),
    ] {
        let r = get_evidence(&s.url, &q).await;
        assert_eq!(r.status, 404, "{q}: {}", r.text());
        assert_eq!(r.json()["error"], "not_logged", "{}", r.text());
        assert!(
            r.text().contains("published outside the log")
                || r.text().contains("not published through the log")
        );
    }
    // Bad queries: 400, never a panic.
    for q in [
        "repo=main&target=fw/a.bin&sha256=XYZ".to_owned(),
        format!("repo=main&target=fw/a.bin&sha256={}", "AA".repeat(32)),
        format!("repo=main&target={}&sha256={sha_a}", "x".repeat(5000)),
        format!("repo=&target=a&sha256={sha_a}"),
        format!("repo=main&target=a&sha256={sha_a}&old=-1"),
        format!("repo=main&target=a&sha256={sha_a}&bogus=1"),
        "target=a".to_owned(),
    ] {
        let r = get_evidence(&s.url, &q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    // A client that stored more than the log has gets the latest
    // checkpoint and no proof: it sees the rollback itself.
    let q = format!("repo=main&target=fw/a.bin&sha256={sha_a}&old=999999");
    let ev: Evidence = serde_json::from_slice(&get_evidence(&s.url, &q).await.body).unwrap();
    assert!(ev.consistency.is_empty());

    // Cosigned checkpoints are preferred when they cover the entry.
    let w = Cosigner::generate("witness.test/w").unwrap();
    let cp = s.get("/log/v1/checkpoint", &[]).await;
    let key = VerifierKey::parse(vkey.trim()).unwrap();
    let vc = LogVerifier::new(key.name(), key.clone())
        .unwrap()
        .verify(&cp.body)
        .unwrap();
    let sig = w.cosign(vc.note.text(), 1_700_000_000).unwrap();
    let r = common::http(
        "POST",
        &format!("{}/log/v1/cosign", s.url),
        &[("content-type", "application/json")],
        Some(
            serde_json::to_vec(&serde_json::json!({
                "key": w.verifier_key().to_vkey(),
                "checkpoint": cp.text(),
                "signature": sig.to_line(),
            }))
            .unwrap(),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    log.append(publish("fw/later.bin", &sha_a)).await.unwrap();
    let k1 = trust_from_keys(None, vkey.trim(), &[w.verifier_key().to_vkey()], 1).unwrap();
    let q = format!("repo=main&target=fw/b.bin&sha256={sha_b}");
    let ev: Evidence = serde_json::from_slice(&get_evidence(&s.url, &q).await.body).unwrap();
    let ok = check_target(&k1, None, &ev, &expect("fw/b.bin", &sha_b)).unwrap();
    assert_eq!(ok.checkpoint.checkpoint.size, vc.checkpoint.size);
    // The later entry is not covered by it: the latest checkpoint, which
    // has no cosignature yet, so a k=1 client refuses (not an attack).
    let q = format!("repo=main&target=fw/later.bin&sha256={sha_a}");
    let ev: Evidence = serde_json::from_slice(&get_evidence(&s.url, &q).await.body).unwrap();
    let e = check_target(&k1, None, &ev, &expect("fw/later.bin", &sha_a)).unwrap_err();
    assert!(!e.is_attack(), "{e}");
    assert_eq!(e.kind(), "log_too_few_cosignatures");

    // The index survives a restart, and is rebuilt if deleted.
    let dir_path = s.dir.path().to_path_buf();
    let common::TestServer { server, dir, .. } = s;
    server.shutdown().await.unwrap();
    drop(log);
    for delete in [false, true] {
        if delete {
            std::fs::remove_file(dir_path.join("log/publish-index")).unwrap();
        }
        let again = custody_server::start(common::config(&dir_path))
            .await
            .unwrap();
        let url = again.url();
        for (name, sha, idx) in [("fw/a.bin", &sha_a, ia), ("fw/b.bin", &sha_b, ib)] {
            let q = format!("repo=main&target={name}&sha256={sha}");
            let r = get_evidence(&url, &q).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let ev: Evidence = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(ev.index, idx);
        }
        again.shutdown().await.unwrap();
    }
    drop(dir);
}

/// A target listed by a hash bin (a delegated role, not the top-level
/// targets role) is logged at publish, so devices find its evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_in_hash_bins_are_logged_and_have_evidence() {
    use common::repo::{offline_keys, sign, upload_and_stage};
    use serde_json::json;
    let keydir = tempfile::tempdir().unwrap();
    let pass = keydir.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let s = common::start_with(|c| c.key_passphrase_file = Some(pass.clone())).await;
    let (o, rk, tk) = offline_keys();
    let admin = s.token(&s.bootstrap, None).await;
    let r = s
        .api(
            "POST",
            "/api/v1/repos/app",
            &admin,
            Some(json!({
                "root": {"keys": [rk], "threshold": 1},
                "targets": {"keys": [tk], "threshold": 1},
                "hash_bins": 16,
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let signer = s
        .credential(
            "offline signer",
            &["role:sign:root@app", "role:sign:targets@app"],
        )
        .await;
    let st = s.token(&signer, None).await;
    for (role, key) in [("root", &o.root), ("targets", &o.targets)] {
        let r = sign(&s, &st, &o, role, key).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let ci = s
        .credential("ci", &["target:upload@app", "target:stage@app"])
        .await;
    let ct = s.token(&ci, None).await;
    upload_and_stage(&s, &ct, "fw/0.bin", b"fw 0").await;
    let publisher = s.credential("publisher", &["repo:publish@app"]).await;
    let pt = s.token(&publisher, None).await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let sha = common::sha256_hex(b"fw 0");
    let r = get_evidence(&s.url, &format!("repo=app&target=fw/0.bin&sha256={sha}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ev: Evidence = serde_json::from_slice(&r.body).unwrap();
    let vkey = s.get("/log/v1/key", &[]).await.text();
    let trust = trust_from_keys(None, vkey.trim(), &[], 0).unwrap();
    let want = ExpectedPublish {
        repo: "app".into(),
        name: "fw/0.bin".into(),
        length: 4,
        hashes: BTreeMap::from([("sha256".to_owned(), sha.clone())]),
    };
    // the entry may carry more hash algorithms than asked; take them all
    let entry = custody_log::entry::LogEntry::from_bytes(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &ev.entry).unwrap(),
    )
    .unwrap();
    let EntryBody::TargetPublish {
        hashes,
        signing_keyids,
        ..
    } = entry.body
    else {
        panic!("not a target_publish entry");
    };
    assert!(!signing_keyids.is_empty(), "the bin's signature key ids");
    check_target(&trust, None, &ev, &ExpectedPublish { hashes, ..want }).unwrap();
}
