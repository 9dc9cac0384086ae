//! Online snapshot/timestamp keys on a PKCS#11 token (SoftHSM2): the
//! server signs with keys that never leave the token, no key file is
//! written, and a repository whose token key is missing is refused with a
//! message naming the URI. Skips with a message when SoftHSM2 is absent
//! (./scripts/test installs it).

mod common;

use std::path::Path;
use std::process::Command;

use common::repo::{client_view, create_live_repo};
use common::start_with;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "5678";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh token (own SOFTHSM2_CONF; nextest runs each test in its own
/// process) holding Ed25519 keys labelled `app-snapshot`, `app-timestamp`.
fn token(dir: &Path) -> bool {
    if !Path::new(MODULE).exists() || Command::new("pkcs11-tool").arg("--help").output().is_err() {
        eprintln!("SKIP: SoftHSM2 ({MODULE}) or pkcs11-tool missing; run ./scripts/test");
        return false;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    run(Command::new("softhsm2-util").args([
        "--init-token",
        "--free",
        "--label",
        "custody-online",
        "--so-pin",
        "1234",
        "--pin",
        PIN,
    ]));
    for (label, id) in [("app-snapshot", "11"), ("app-timestamp", "12")] {
        run(Command::new("pkcs11-tool").args([
            "--module",
            MODULE,
            "--token-label",
            "custody-online",
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            "EC:edwards25519",
            "--label",
            label,
            "--id",
            id,
        ]));
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_keys_on_a_token_sign_every_publish() {
    let dir = tempfile::tempdir().unwrap();
    if !token(dir.path()) {
        return;
    }
    let pin = dir.path().join("pin");
    std::fs::write(&pin, PIN).unwrap();
    let template = format!(
        "pkcs11:token=custody-online;object={{repo}}-{{role}}?module-path={MODULE}&pin-source=file:{}",
        pin.display()
    );
    let s = start_with(|c| c.pkcs11_online_key_uri = Some(template.clone())).await;
    // No passphrase is configured: nothing is written as a key file.
    let _o = create_live_repo(&s, "app").await;
    assert!(!s.dir.path().join("keys/app/snapshot.pem").exists());
    assert!(!s.dir.path().join("keys/app/timestamp.pem").exists());

    // The published root lists the token's keys for snapshot and timestamp,
    // and the client accepts what the token signed.
    let (t, files) = client_view(&s).await;
    assert!(files.is_empty());
    let root = t.root();
    for role in ["snapshot", "timestamp"] {
        let ids = &root.roles[role].keyids;
        assert_eq!(ids.len(), 1, "{role}");
        let key = &root.keys[&ids[0]];
        assert_eq!(key.keytype, "ed25519");
    }
    // A publish re-signs snapshot/timestamp on the token.
    let publisher = s.credential("publisher", &["repo:publish@app"]).await;
    let pt = s.token(&publisher, None).await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (t2, _) = client_view(&s).await;
    assert!(t2.timestamp().unwrap().version > t.timestamp().unwrap().version);

    // A repository whose keys are not on the token is refused, naming the
    // URI, and nothing is created.
    let admin = s.token(&s.bootstrap, None).await;
    let (_, rk, tk) = common::repo::offline_keys();
    let r = s
        .api(
            "POST",
            "/api/v1/repos/other",
            &admin,
            Some(serde_json::json!({
                "root": {"keys": [rk], "threshold": 1},
                "targets": {"keys": [tk], "threshold": 1},
            })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("object=other-snapshot"), "{}", r.text());
    let r = s
        .api("GET", "/api/v1/repos/other/roles/root", &admin, None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}
