//! End-to-end offline threshold signing: root and targets are 2-of-3, one
//! signer of each on a PKCS#11 token (SoftHSM2, hermetic), two on key files.
//! Every signature is made by its own `custody` process (`repo export` →
//! `repo sign-file` per signer → `repo merge`); publish is refused while
//! only 1 of 3 signatures is present (nothing changes on disk), then the
//! published repository is served on loopback and `custody client`
//! verifies it and downloads a target.
mod common;

use std::collections::BTreeMap;

use common::cli::{tree, Cli};
use common::softhsm::{have_tools, Token};
use common::{Client, TestServer};

/// Public key JSON of a key file or token key (`custody key show`), written
/// to `{name}.pub.json`; returns that file name.
fn public(env: &Cli, name: &str, show: &[&str]) -> String {
    let mut args = vec!["key", "show"];
    args.extend_from_slice(show);
    args.push("--json");
    let out = env.ok(&args);
    let f = format!("{name}.pub.json");
    std::fs::write(env.p(&f), out).unwrap();
    f
}

#[test]
fn two_of_three_signed_in_separate_processes_with_one_hsm_signer() {
    if !have_tools() {
        return;
    }
    let (token, env) = Token::init("offline-hsm", "pw");
    for label in ["root-hsm", "targets-hsm"] {
        token.keypair(label, "EC:edwards25519");
    }
    env.keys(&[
        "root-a",
        "root-b",
        "targets-a",
        "targets-b",
        "snapshot",
        "timestamp",
    ]);
    // Root and targets keys are given as public keys only: the repository
    // holds no way to sign them (offline), every signature comes from a
    // separate sign-file process.
    let mut pubs = BTreeMap::new();
    for role in ["root", "targets"] {
        let hsm = public(
            &env,
            &format!("{role}-hsm"),
            &["--pkcs11", &token.uri(&format!("{role}-hsm"))],
        );
        let a = public(
            &env,
            &format!("{role}-a"),
            &[&format!("{role}-a.pem"), "--passphrase-env", "KP"],
        );
        let b = public(
            &env,
            &format!("{role}-b"),
            &[&format!("{role}-b.pem"), "--passphrase-env", "KP"],
        );
        pubs.insert(role, [hsm, a, b]);
    }
    let mut init = vec!["repo", "init", "repo"];
    for role in ["root", "targets"] {
        for p in &pubs[role] {
            init.push(if role == "root" {
                "--root-key"
            } else {
                "--targets-key"
            });
            init.push(p);
        }
    }
    init.extend_from_slice(&[
        "--root-threshold",
        "2",
        "--targets-threshold",
        "2",
        "--snapshot-key",
        "snapshot.pem",
        "--timestamp-key",
        "timestamp.pem",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&init);
    std::fs::write(env.p("app.bin"), b"offline-signed application").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "app.bin",
        "--passphrase-env",
        "KP",
    ]);

    // Export each role once; each signer signs its own copy in its own
    // process.
    let sign = |role: &str, signer: &str, key: &str| -> String {
        let f = format!("{role}.{signer}.json");
        std::fs::copy(env.p(&format!("{role}.export.json")), env.p(&f)).unwrap();
        env.ok(&[
            "repo",
            "sign-file",
            &f,
            "--key",
            key,
            "--passphrase-env",
            "KP",
        ]);
        f
    };
    for role in ["root", "targets"] {
        env.ok(&[
            "repo",
            "export",
            "repo",
            "--role",
            role,
            "--out",
            &format!("{role}.export.json"),
        ]);
    }
    // First signer (a key file) only: 1 of 3.
    for role in ["root", "targets"] {
        let f = sign(role, "a", &format!("{role}-a.pem"));
        env.ok(&["repo", "merge", "repo", "--role", role, &f]);
    }
    let st: serde_json::Value =
        serde_json::from_str(&env.ok(&["repo", "status", "repo", "--json"])).unwrap();
    assert_eq!(st["roles"][0]["role"], "root");
    assert_eq!(
        st["roles"][0]["signed_by"].as_array().unwrap().len(),
        1,
        "{st}"
    );
    assert_eq!(st["roles"][0]["threshold_met"], false);
    let before = tree(env.dir.path());
    let o = env.run(&["repo", "publish", "repo", "out"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "publish with 1 of 3 must fail: {o:?}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("threshold"), "{err}");
    assert_eq!(
        tree(env.dir.path()),
        before,
        "a refused publish changed files"
    );
    assert!(!env.p("out").exists());

    // Second signer on the token (its own process), then the third key file
    // for targets: root ends 2 of 3 (file + HSM), targets 3 of 3 (merge of
    // the last one is allowed beyond the threshold).
    for role in ["root", "targets"] {
        let f = sign(role, "hsm", &token.uri(&format!("{role}-hsm")));
        env.ok(&["repo", "merge", "repo", "--role", role, &f]);
    }
    let f = sign("targets", "b", "targets-b.pem");
    env.ok(&["repo", "merge", "repo", "--role", "targets", &f]);
    let st: serde_json::Value =
        serde_json::from_str(&env.ok(&["repo", "status", "repo", "--json"])).unwrap();
    assert!(st["publish_blocker"].is_null(), "{st}");
    assert_eq!(st["roles"][0]["signed_by"].as_array().unwrap().len(), 2);
    assert_eq!(st["roles"][1]["signed_by"].as_array().unwrap().len(), 3);
    env.ok(&["repo", "publish", "repo", "out"]);

    // Serve and verify with custody client.
    let srv = env.p("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::os::unix::fs::symlink(env.p("out"), srv.join("metadata")).unwrap();
    std::os::unix::fs::symlink(env.p("out/targets"), srv.join("targets")).unwrap();
    let server = TestServer::start(&srv);
    let client = Client::new();
    client
        .init_bytes(&std::fs::read(env.p("out/1.root.json")).unwrap())
        .ok();
    client.download(&server, &["app.bin"], &[]).ok();
    assert_eq!(
        client.downloaded().values().next().map(Vec::as_slice),
        Some(&b"offline-signed application"[..])
    );
}
