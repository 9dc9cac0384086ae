//! `custody repo …` end to end through the real binary: authoring, threshold
//! signing, publish refusals, and "nothing changed on disk" on every error.
mod common;

use common::cli::{tree, Cli};

const PW: &str = "test passphrase";

fn status_json(env: &Cli) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["repo", "status", "repo", "--json"])).unwrap()
}

#[test]
fn init_add_publish_status() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    std::fs::write(env.p("fw.bin"), b"firmware v1").unwrap();
    let out = env.ok(&[
        "repo",
        "add-target",
        "repo",
        "fw.bin",
        "--name",
        "boards/x1/fw.bin",
        "--custom",
        r#"{"hwid":"x1"}"#,
        "--passphrase-env",
        "KP",
    ]);
    assert!(
        out.contains("added boards/x1/fw.bin (role targets)"),
        "{out}"
    );
    let st = status_json(&env);
    assert!(st["publish_blocker"].is_null(), "{st}");
    assert_eq!(st["targets"], 1);
    env.ok(&["repo", "publish", "repo", "out"]);
    let out = env.p("out");
    assert!(std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_symlink());
    for f in [
        "1.root.json",
        "root.json",
        "timestamp.json",
        "2.snapshot.json",
        "2.targets.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"firmware v1"));
    assert_eq!(
        std::fs::read(out.join(format!("targets/boards/x1/{sha}.fw.bin"))).unwrap(),
        b"firmware v1"
    );
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("2.targets.json")).unwrap()).unwrap();
    assert_eq!(
        t["signed"]["targets"]["boards/x1/fw.bin"]["custom"]["hwid"],
        "x1"
    );

    // a second publish switches the symlink to a new complete tree
    env.ok(&["repo", "refresh", "repo", "--passphrase-env", "KP"]);
    let first = std::fs::read_link(&out).unwrap();
    env.ok(&["repo", "publish", "repo", "out"]);
    let second = std::fs::read_link(&out).unwrap();
    assert_ne!(first, second);
    assert!(out.join("3.snapshot.json").exists());
    // the custody log recorded every step
    let log = std::fs::read_to_string(env.p("repo/custody-log.jsonl")).unwrap();
    let actions: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for a in ["init", "add-target", "refresh", "publish"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not logged: {actions:?}"
        );
    }

    // the log is hash-chained: intact now, broken by an edit
    let out = env.ok(&["repo", "verify-log", "repo"]);
    assert!(out.contains("intact"), "{out}");
    let edited = log.replacen("add-target", "add-targex", 1);
    std::fs::write(env.p("repo/custody-log.jsonl"), edited).unwrap();
    let err = env.fail(&["repo", "verify-log", "repo"]);
    assert!(
        err.contains("hash chain broken") && err.contains("line 3"),
        "{err}"
    );
    std::fs::write(env.p("repo/custody-log.jsonl"), &log).unwrap();

    // remove-target
    env.ok(&[
        "repo",
        "remove-target",
        "repo",
        "boards/x1/fw.bin",
        "--passphrase-env",
        "KP",
    ]);
    assert_eq!(status_json(&env)["targets"], 0);
}

#[test]
fn shared_keys_refused_with_reason_and_nothing_created() {
    let env = Cli::new(PW);
    env.key("k");
    env.key("s");
    let err = env.fail(&[
        "repo",
        "init",
        "repo",
        "--root-key",
        "k.pem",
        "--targets-key",
        "s.pem",
        "--snapshot-key",
        "s.pem",
        "--timestamp-key",
        "k.pem",
        "--passphrase-env",
        "KP",
    ]);
    assert!(
        err.contains("also a root key") && err.contains("online"),
        "{err}"
    );
    assert!(!env.p("repo").exists());
    // allowed when asked for (snapshot may share with targets anyway)
    env.ok(&[
        "repo",
        "init",
        "repo",
        "--root-key",
        "k.pem",
        "--targets-key",
        "s.pem",
        "--snapshot-key",
        "s.pem",
        "--timestamp-key",
        "k.pem",
        "--passphrase-env",
        "KP",
        "--allow-shared-keys",
    ]);
}

#[test]
fn wrong_passphrase_changes_nothing() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    std::fs::write(env.p("a.txt"), b"a").unwrap();
    let before = tree(&env.p("repo"));
    let o = env.run_with_env(
        &[
            "repo",
            "add-target",
            "repo",
            "a.txt",
            "--passphrase-env",
            "BAD",
        ],
        &[("BAD", "not the passphrase")],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(tree(&env.p("repo")), before);
}

#[test]
fn key_not_in_role_changes_nothing() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    let before = tree(&env.p("repo"));
    let err = env.fail(&[
        "repo",
        "sign",
        "repo",
        "--role",
        "targets",
        "--key",
        "timestamp.pem",
        "--passphrase-env",
        "KP",
    ]);
    assert!(
        err.contains("not one of the role's keys") && err.contains("targets"),
        "{err}"
    );
    assert_eq!(tree(&env.p("repo")), before);
}

#[test]
fn target_paths_escaping_the_repo_are_refused() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    std::fs::write(env.p("a.txt"), b"a").unwrap();
    let before = tree(&env.p("repo"));
    for name in ["../evil", "/etc/passwd", "a/../../b", "a//b", "./a"] {
        let err = env.fail(&[
            "repo",
            "add-target",
            "repo",
            "a.txt",
            "--name",
            name,
            "--passphrase-env",
            "KP",
        ]);
        assert!(err.contains("rejected"), "{name}: {err}");
    }
    assert_eq!(tree(&env.p("repo")), before);
    assert!(!env.p("evil").exists());
    // symlinks inside an added directory are refused too
    std::fs::create_dir(env.p("d")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", env.p("d/link")).unwrap();
    let err = env.fail(&["repo", "add-target", "repo", "d", "--passphrase-env", "KP"]);
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(tree(&env.p("repo")), before);
}

#[test]
fn threshold_not_met_blocks_publish_until_offline_signature_is_merged() {
    let env = Cli::new(PW);
    env.keys(&["r1", "r2", "targets", "snapshot", "timestamp"]);
    let r2pub = env.pubkey("r2.pem");
    env.ok(&[
        "repo",
        "init",
        "repo",
        "--root-key",
        "r1.pem",
        "--root-key",
        &r2pub,
        "--root-threshold",
        "2",
        "--targets-key",
        "targets.pem",
        "--snapshot-key",
        "snapshot.pem",
        "--timestamp-key",
        "timestamp.pem",
        "--passphrase-env",
        "KP",
    ]);
    let st = status_json(&env);
    let root = &st["roles"][0];
    assert_eq!(root["role"], "root");
    assert_eq!(root["threshold_met"], false);
    let r2id = env.keyid("r2.pem");
    assert_eq!(root["missing"], serde_json::json!([r2id]));
    let err = env.fail(&["repo", "publish", "repo", "out"]);
    assert!(err.contains("threshold") && err.contains("root"), "{err}");
    assert!(!env.p("out").exists(), "nothing may be published");

    // offline signing round trip
    env.ok(&[
        "repo",
        "export",
        "repo",
        "--role",
        "root",
        "--out",
        "root.unsigned.json",
    ]);
    env.ok(&[
        "repo",
        "sign-file",
        "root.unsigned.json",
        "--key",
        "r2.pem",
        "--passphrase-env",
        "KP",
    ]);
    // a file signed by a key that is not a root key merges nothing
    env.ok(&[
        "repo",
        "export",
        "repo",
        "--role",
        "root",
        "--out",
        "root.wrong.json",
    ]);
    env.ok(&[
        "repo",
        "sign-file",
        "root.wrong.json",
        "--key",
        "targets.pem",
        "--passphrase-env",
        "KP",
    ]);
    let before = tree(&env.p("repo"));
    let err = env.fail(&["repo", "merge", "repo", "--role", "root", "root.wrong.json"]);
    assert!(err.contains("no new signature in it verifies"), "{err}");
    assert_eq!(tree(&env.p("repo")), before);

    let out = env.ok(&[
        "repo",
        "merge",
        "repo",
        "--role",
        "root",
        "root.unsigned.json",
    ]);
    assert!(out.contains(&r2id), "{out}");
    assert!(status_json(&env)["publish_blocker"].is_null());
    env.ok(&["repo", "publish", "repo", "out"]);
}

#[test]
fn expired_metadata_is_never_published() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    let err = env.fail(&[
        "repo",
        "publish",
        "repo",
        "out",
        "--now",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(err.contains("expired") || err.contains("Expired"), "{err}");
    assert!(!env.p("out").exists());
    // the timestamp (1 day) expires first; a refresh at that time fixes it
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let err = env.fail(&["repo", "publish", "repo", "out", "--now", &later]);
    assert!(err.contains("timestamp"), "{err}");
    env.ok(&[
        "repo",
        "refresh",
        "repo",
        "--passphrase-env",
        "KP",
        "--now",
        &later,
    ]);
    env.ok(&["repo", "publish", "repo", "out", "--now", &later]);
}

#[test]
fn publish_refuses_to_replace_a_real_directory() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    std::fs::create_dir(env.p("out")).unwrap();
    std::fs::write(env.p("out/keep"), b"x").unwrap();
    let err = env.fail(&["repo", "publish", "repo", "out"]);
    assert!(err.contains("not a symlink"), "{err}");
    assert_eq!(std::fs::read(env.p("out/keep")).unwrap(), b"x");
}

#[test]
fn delegation_and_hash_bins_route_targets_by_path() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.key("boards");
    env.key("bins");
    env.ok(&[
        "repo",
        "delegate",
        "repo",
        "--name",
        "boards",
        "--key",
        "boards.pem",
        "--path",
        "boards/*",
        "--terminating",
        "--expires",
        "30d",
        "--passphrase-env",
        "KP",
    ]);
    let st = status_json(&env);
    let boards = st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "boards")
        .unwrap()
        .clone();
    let exp = chrono::DateTime::parse_from_rfc3339(boards["expires"].as_str().unwrap()).unwrap();
    let days = (exp.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((29..=30).contains(&days), "boards expires in {days} days");
    std::fs::write(env.p("fw.bin"), b"fw").unwrap();
    let out = env.ok(&[
        "repo",
        "add-target",
        "repo",
        "fw.bin",
        "--name",
        "boards/fw.bin",
        "--passphrase-env",
        "KP",
    ]);
    assert!(out.contains("(role boards)"), "{out}");
    // hash bins under the delegated role
    env.ok(&[
        "repo",
        "hash-bins",
        "repo",
        "--from",
        "boards",
        "--prefix",
        "b",
        "--bits",
        "2",
        "--key",
        "bins.pem",
        "--passphrase-env",
        "KP",
    ]);
    let out = env.ok(&[
        "repo",
        "add-target",
        "repo",
        "fw.bin",
        "--name",
        "boards/fw2.bin",
        "--passphrase-env",
        "KP",
    ]);
    assert!(out.contains("(role b-"), "{out}");
    let st = status_json(&env);
    assert!(st["publish_blocker"].is_null(), "{st}");
    assert_eq!(st["targets"], 2);
    env.ok(&["repo", "publish", "repo", "out"]);
    assert!(env.p("out/2.boards.json").exists() || env.p("out/3.boards.json").exists());
}

#[test]
fn rotate_root_and_revoke_key() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.key("root2");
    env.key("ts2");
    env.ok(&[
        "repo",
        "rotate-root",
        "repo",
        "--role",
        "root",
        "--add-key",
        "root2.pem",
        "--threshold",
        "2",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);
    assert!(env.p("out/2.root.json").exists());
    // replace the timestamp key: new root v3, new timestamp signed by ts2
    let old_ts = env.keyid("timestamp.pem");
    env.ok(&[
        "repo",
        "rotate-root",
        "repo",
        "--role",
        "timestamp",
        "--add-key",
        "ts2.pem",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&[
        "repo",
        "revoke-key",
        "repo",
        &old_ts,
        "--passphrase-env",
        "KP",
    ]);
    let st = status_json(&env);
    assert!(st["publish_blocker"].is_null(), "{st}");
    env.ok(&["repo", "publish", "repo", "out"]);
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.p("out/root.json")).unwrap()).unwrap();
    assert!(!root["signed"]["keys"]
        .as_object()
        .unwrap()
        .contains_key(&old_ts));
}

#[test]
fn without_consistent_snapshots_files_are_unversioned() {
    let env = Cli::new(PW);
    env.keys(&["root", "targets", "snapshot", "timestamp"]);
    env.init_repo(&["--no-consistent-snapshot"]);
    std::fs::write(env.p("a.txt"), b"a").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "a.txt",
        "--name",
        "d/a.txt",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);
    for f in [
        "snapshot.json",
        "targets.json",
        "timestamp.json",
        "1.root.json",
        "targets/d/a.txt",
    ] {
        assert!(env.p("out").join(f).exists(), "{f} missing");
    }
    assert!(!env.p("out/2.snapshot.json").exists());
}

#[test]
fn offline_delegated_role_blocks_publish_until_signed() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.key("boards");
    let boards_pub = env.pubkey("boards.pem");
    env.ok(&[
        "repo",
        "delegate",
        "repo",
        "--name",
        "boards",
        "--key",
        &boards_pub,
        "--path",
        "boards/*",
        "--passphrase-env",
        "KP",
    ]);
    std::fs::write(env.p("fw.bin"), b"fw").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "fw.bin",
        "--name",
        "boards/fw.bin",
        "--passphrase-env",
        "KP",
    ]);
    let err = env.fail(&["repo", "publish", "repo", "out"]);
    assert!(err.contains("boards") && err.contains("threshold"), "{err}");
    assert!(!env.p("out").exists());
    let out = env.ok(&["repo", "status", "repo"]);
    assert!(out.contains("publishable: no"), "{out}");
    env.ok(&[
        "repo",
        "sign",
        "repo",
        "--role",
        "boards",
        "--key",
        "boards.pem",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);
}

#[test]
fn concurrent_commands_are_refused_not_interleaved() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    // Hold the repository lock as another custody process would.
    let held = custody_repo::Repository::open(&env.p("repo")).unwrap();
    let before = tree(&env.p("repo"));
    let err = env.fail(&["repo", "refresh", "repo", "--passphrase-env", "KP"]);
    assert!(err.contains("another custody command"), "{err}");
    assert_eq!(tree(&env.p("repo")), before);
    drop(held);
    env.ok(&["repo", "refresh", "repo", "--passphrase-env", "KP"]);
}

#[test]
fn revoke_key_from_a_delegation() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.key("d1");
    env.key("d2");
    env.ok(&[
        "repo",
        "delegate",
        "repo",
        "--name",
        "apps",
        "--key",
        "d1.pem",
        "--key",
        "d2.pem",
        "--path",
        "apps/*",
        "--passphrase-env",
        "KP",
    ]);
    let d1 = env.keyid("d1.pem");
    let d2 = env.keyid("d2.pem");
    env.ok(&["repo", "revoke-key", "repo", &d1, "--passphrase-env", "KP"]);
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.p("repo/metadata/targets.json")).unwrap())
            .unwrap();
    let d = &t["signed"]["delegations"];
    assert_eq!(d["roles"][0]["keyids"], serde_json::json!([d2.clone()]));
    assert!(d["keys"].get(&d1).is_none());
    // the last key cannot go: the role could never be signed again
    let before = tree(&env.p("repo"));
    let err = env.fail(&["repo", "revoke-key", "repo", &d2, "--passphrase-env", "KP"]);
    assert!(err.contains("threshold 1") && err.contains("(0)"), "{err}");
    assert_eq!(tree(&env.p("repo")), before);
    assert!(status_json(&env)["publish_blocker"].is_null());
}

#[test]
fn timestamp_only_refresh_keeps_the_snapshot() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    let snap_before = std::fs::read(env.p("repo/metadata/snapshot.json")).unwrap();
    env.ok(&[
        "repo",
        "refresh",
        "repo",
        "--timestamp-only",
        "--passphrase-env",
        "KP",
    ]);
    assert_eq!(
        std::fs::read(env.p("repo/metadata/snapshot.json")).unwrap(),
        snap_before
    );
    let st = status_json(&env);
    let ts = st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "timestamp")
        .unwrap()
        .clone();
    assert_eq!(ts["version"], 2);
    assert!(st["publish_blocker"].is_null(), "{st}");
}

#[test]
fn root_rotation_to_an_offline_key_needs_both_thresholds() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.key("newroot");
    let newpub = env.pubkey("newroot.pem");
    let old = env.keyid("root.pem");
    let new = env.keyid("newroot.pem");
    env.ok(&[
        "repo",
        "rotate-root",
        "repo",
        "--role",
        "root",
        "--add-key",
        &newpub,
        "--remove-key",
        &old,
        "--passphrase-env",
        "KP",
    ]);
    // old root key signed (it was found at its recorded location); the new
    // root's own key is offline, so the new root is not yet valid
    let st = status_json(&env);
    let root = &st["roles"][0];
    assert_eq!(root["version"], 2);
    assert_eq!(root["threshold_met"], false);
    assert_eq!(root["missing"], serde_json::json!([new.clone()]));
    assert_eq!(root["signed_by"], serde_json::json!([old.clone()]));
    let err = env.fail(&["repo", "publish", "repo", "out"]);
    assert!(err.contains("root"), "{err}");
    env.ok(&[
        "repo", "export", "repo", "--role", "root", "--out", "r.json",
    ]);
    env.ok(&[
        "repo",
        "sign-file",
        "r.json",
        "--key",
        "newroot.pem",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&["repo", "merge", "repo", "--role", "root", "r.json"]);
    let st = status_json(&env);
    assert_eq!(st["roles"][0]["threshold_met"], true, "{st}");
    assert!(st["publish_blocker"].is_null(), "{st}");
    env.ok(&["repo", "publish", "repo", "out"]);
}

#[test]
fn merge_refuses_a_file_whose_signed_content_was_changed() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.ok(&[
        "repo", "export", "repo", "--role", "targets", "--out", "t.json",
    ]);
    // an offline signer (or someone on the way) edits the content, then signs
    let text = std::fs::read_to_string(env.p("t.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["signed"]["targets"]["evil.bin"] = serde_json::json!({
        "length": 1, "hashes": {"sha256": "00".repeat(32)}
    });
    std::fs::write(env.p("t.json"), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    env.ok(&[
        "repo",
        "sign-file",
        "t.json",
        "--key",
        "targets.pem",
        "--passphrase-env",
        "KP",
    ]);
    let before = tree(&env.p("repo"));
    let err = env.fail(&["repo", "merge", "repo", "--role", "targets", "t.json"]);
    assert!(err.contains("differs from the staged targets"), "{err}");
    assert_eq!(tree(&env.p("repo")), before);
}
