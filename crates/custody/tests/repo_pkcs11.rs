//! Repository roles signed by keys on a PKCS#11 token (SoftHSM2, hermetic:
//! its own SOFTHSM2_CONF and token directory), including `key show --pkcs11`
//! and a cron-style `repo refresh` that finds the token key from the
//! repository config alone.
mod common;

use common::softhsm::{have_tools, Token};

#[test]
fn token_keys_sign_repository_roles() {
    if !have_tools() {
        return;
    }
    let (token, env) = Token::init("repo-hsm", "pw");
    for (label, kt) in [("ts", "EC:prime256v1"), ("snap", "EC:edwards25519")] {
        token.keypair(label, kt);
    }
    let uri = |label: &str| token.uri(label);
    let shown = env.ok(&["key", "show", "--pkcs11", &uri("ts"), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["type"], "ecdsa-p256");

    env.keys(&["root", "targets"]);
    env.ok(&[
        "repo",
        "init",
        "repo",
        "--root-key",
        "root.pem",
        "--targets-key",
        "targets.pem",
        "--snapshot-key",
        &uri("snap"),
        "--timestamp-key",
        &uri("ts"),
        "--passphrase-env",
        "KP",
    ]);
    // cron-style refresh: no --key, the token keys come from the repo config
    env.ok(&["repo", "refresh", "repo"]);
    let st: serde_json::Value =
        serde_json::from_str(&env.ok(&["repo", "status", "repo", "--json"])).unwrap();
    assert!(st["publish_blocker"].is_null(), "{st}");
    env.ok(&["repo", "publish", "repo", "out"]);
    assert!(env.dir.path().join("out/timestamp.json").exists());
}
