//! Hosted repositories with succinct hash bins: the offline targets key
//! signs the delegation once; afterwards each publish goes live with the
//! server's online keys, rewrites only the bins it touches, and
//! custody-client (the real client, over HTTP) finds targets through the
//! bins. Bad bin counts are refused.

mod common;

use common::repo::{offline_keys, sign, upload_and_stage};
use common::{start_with, TestServer};
use custody_client::transport::HttpTransport;
use custody_client::updater::{init_trusted_root, Updater, UpdaterConfig};
use serde_json::json;

/// Fresh client: trust root v1, refresh, download `name`.
async fn client_fetch(s: &TestServer, name: &str) -> Vec<u8> {
    let root = s.get("/repos/app/metadata/1.root.json", &[]).await.body;
    let url = s.url.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let root_file = dir.path().join("root-v1.json");
        std::fs::write(&root_file, root).unwrap();
        let meta = dir.path().join("metadata");
        init_trusted_root(&meta, &root_file).unwrap();
        let base = url::Url::parse(&format!("{url}/repos/app/")).unwrap();
        let mut u = Updater::new(
            &meta,
            base.join("metadata/").unwrap(),
            HttpTransport::default(),
            UpdaterConfig::default(),
            chrono::Utc::now(),
        )
        .unwrap();
        let got = u
            .fetch_target(
                &name,
                &base.join("targets/").unwrap(),
                &dir.path().join("t"),
            )
            .unwrap();
        assert!(
            got.role.starts_with("bins-"),
            "found through a bin, not {}",
            got.role
        );
        std::fs::read(got.file).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_bin_repository_publishes_online_and_clients_find_targets() {
    let keydir = tempfile::tempdir().unwrap();
    let pass = keydir.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let s = start_with(|c| c.key_passphrase_file = Some(pass.clone())).await;
    let (o, rk, tk) = offline_keys();
    let admin = s.token(&s.bootstrap, None).await;

    for bad in [0, 3, 1, 131072] {
        let r = s
            .api(
                "POST",
                "/api/v1/repos/app",
                &admin,
                Some(json!({
                    "root": {"keys": [rk], "threshold": 1},
                    "targets": {"keys": [tk], "threshold": 1},
                    "hash_bins": bad,
                })),
            )
            .await;
        assert_eq!(r.status, 400, "hash_bins {bad}: {}", r.text());
        assert!(r.text().contains("power of two"), "{}", r.text());
    }
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
    assert!(r.json()["online_keys"]["bins"].is_string(), "{}", r.text());

    // The offline holders sign root and the targets delegation once.
    let signer = s
        .credential(
            "offline signer",
            &["role:sign:root@app", "role:sign:targets@app"],
        )
        .await;
    let st = s.token(&signer, None).await;
    let draft = s
        .api("GET", "/api/v1/repos/app/roles/targets", &st, None)
        .await;
    let d = draft.json();
    let succinct = &d["signed"]["delegations"]["succinct_roles"];
    assert_eq!(succinct["bit_length"], 4, "{d}");
    assert_eq!(succinct["name_prefix"], "bins");
    for (role, key) in [("root", &o.root), ("targets", &o.targets)] {
        let r = sign(&s, &st, &o, role, key).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // From now on, publishes need no offline signature.
    let ci = s
        .credential("ci", &["target:upload@app", "target:stage@app"])
        .await;
    let ct = s.token(&ci, None).await;
    let publisher = s.credential("publisher", &["repo:publish@app"]).await;
    let pt = s.token(&publisher, None).await;
    for i in 0..3 {
        upload_and_stage(
            &s,
            &ct,
            &format!("fw/{i}.bin"),
            format!("fw {i}").as_bytes(),
        )
        .await;
    }
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["generation"].is_string(), "{}", r.text());
    assert_eq!(client_fetch(&s, "fw/1.bin").await, b"fw 1");

    // One more target: the top-level targets role is untouched, the
    // client still finds every target through its bin.
    let before = s.get("/repos/app/metadata/1.targets.json", &[]).await;
    assert_eq!(before.status, 200);
    upload_and_stage(&s, &ct, "fw/new.bin", b"new firmware").await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["added"], json!(["fw/new.bin"]));
    assert_eq!(r.json()["targets_version"], 1, "{}", r.text());
    assert_eq!(client_fetch(&s, "fw/new.bin").await, b"new firmware");
    assert_eq!(client_fetch(&s, "fw/0.bin").await, b"fw 0");
}
