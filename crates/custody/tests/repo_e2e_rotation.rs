//! `custody client` follows a root rotated twice by `custody repo
//! rotate-root` (served over HTTP on loopback), and refuses a new root
//! signed only by the new root keys, or only by the old ones (TUF 5.3.4:
//! a new root must meet the threshold of the trusted root's keys AND its
//! own), leaving the trusted root.json byte-for-byte unchanged.
mod common;

use std::path::Path;

use common::cli::Cli;
use common::{Client, TestServer};

const PW: &str = "rotation passphrase";

/// `custody repo rotate-root repo --role root`: add key `add`, remove key
/// id `remove`.
fn rotate(env: &Cli, add: &str, remove: &str) {
    env.ok(&[
        "repo",
        "rotate-root",
        "repo",
        "--role",
        "root",
        "--add-key",
        add,
        "--remove-key",
        remove,
        "--passphrase-env",
        "KP",
    ]);
}

/// Copy the published tree's metadata into `srv/metadata` (a plain copy, so
/// a test can add a bad root to it) and link `srv/targets`.
fn serve_copy(out: &Path, srv: &Path) {
    let md = srv.join("metadata");
    std::fs::create_dir_all(&md).unwrap();
    for e in std::fs::read_dir(out).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), md.join(e.file_name())).unwrap();
        }
    }
    let t = srv.join("targets");
    if !t.exists() {
        std::os::unix::fs::symlink(out.join("targets"), &t).unwrap();
    }
}

fn stderr(o: &common::Run) -> String {
    o.stderr.clone()
}

#[test]
fn client_follows_two_rotations_and_refuses_one_sided_ones() {
    let env = Cli::new(PW);
    env.keys(&[
        "root1",
        "targets",
        "snapshot",
        "timestamp",
        "root2",
        "root3",
        "root4",
    ]);
    env.ok(&[
        "repo",
        "init",
        "repo",
        "--root-key",
        "root1.pem",
        "--targets-key",
        "targets.pem",
        "--snapshot-key",
        "snapshot.pem",
        "--timestamp-key",
        "timestamp.pem",
        "--passphrase-env",
        "KP",
    ]);
    std::fs::write(env.p("app.bin"), b"application v1").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "app.bin",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);

    // the client trusts root v1
    let client = Client::new();
    let root1 = std::fs::read(env.p("out/1.root.json")).unwrap();
    client.init_bytes(&root1).ok();

    // two rotations: root1 -> root2 -> root3 (both key sets available, so
    // each new root carries old and new signatures)
    rotate(&env, "root2.pem", &env.keyid("root1.pem"));
    env.ok(&["repo", "publish", "repo", "out"]);
    rotate(&env, "root3.pem", &env.keyid("root2.pem"));
    env.ok(&["repo", "publish", "repo", "out"]);

    let srv = env.p("srv");
    serve_copy(&env.p("out"), &srv);
    let server = TestServer::start(&srv);
    client.download(&server, &["app.bin"], &[]).ok();
    assert_eq!(client.version("root"), 3);
    assert_eq!(
        client.downloaded().values().next().map(Vec::as_slice),
        Some(&b"application v1"[..])
    );
    let trusted_root = std::fs::read(client.metadata_dir.join("root.json")).unwrap();

    // Root v4 replaces root3 by root4, which is offline (public key only):
    // rotate-root signs it with root3 alone. Exported, it is "signed by the
    // old keys only".
    let root4_pub = env.pubkey("root4.pem");
    rotate(&env, &root4_pub, &env.keyid("root3.pem"));
    env.ok(&[
        "repo",
        "export",
        "repo",
        "--role",
        "root",
        "--out",
        "old-only.json",
    ]);
    let old_only = std::fs::read(env.p("old-only.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&old_only).unwrap();
    assert_eq!(v["signed"]["version"], 4);
    let sigs: Vec<&str> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap())
        .collect();
    assert_eq!(sigs, vec![env.keyid("root3.pem")]);

    // "signed by the new keys only": drop root3's signature (the signed
    // content is unchanged) and sign with root4 in a separate process.
    let mut new_only: serde_json::Value = v.clone();
    new_only["signatures"] = serde_json::json!([]);
    std::fs::write(
        env.p("new-only.json"),
        serde_json::to_vec(&new_only).unwrap(),
    )
    .unwrap();
    env.ok(&[
        "repo",
        "sign-file",
        "new-only.json",
        "--key",
        "root4.pem",
        "--passphrase-env",
        "KP",
    ]);
    let new_only = std::fs::read(env.p("new-only.json")).unwrap();
    let nv: serde_json::Value = serde_json::from_slice(&new_only).unwrap();
    assert_eq!(nv["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(
        nv["signatures"][0]["keyid"],
        env.keyid("root4.pem").as_str()
    );

    // custody's own publish refuses it too
    let o = env.run(&["repo", "publish", "repo", "out"]);
    assert_eq!(o.status.code(), Some(1));

    for (case, bytes, rule) in [
        // trusted root v3's keys (root3) did not sign
        ("new keys only", &new_only, "root v3"),
        // the new root's own keys (root4) did not sign
        (
            "old keys only",
            &old_only,
            "root: signature threshold not met",
        ),
    ] {
        std::fs::write(srv.join("metadata/4.root.json"), bytes).unwrap();
        let r = client.refresh(&server, &[]);
        assert_eq!(r.code, 1, "{case}: refresh must fail: {}", stderr(&r));
        let err = stderr(&r);
        assert!(
            err.contains("threshold not met") && err.contains(rule),
            "{case}: message should name the threshold rule and {rule:?}: {err}"
        );
        assert_eq!(
            std::fs::read(client.metadata_dir.join("root.json")).unwrap(),
            trusted_root,
            "{case}: trusted root.json changed"
        );
        assert_eq!(client.version("root"), 3);
    }
}
