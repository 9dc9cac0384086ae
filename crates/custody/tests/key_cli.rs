//! `custody key …` end to end through the real binary.
use std::path::Path;
use std::process::{Command, Output};

fn custody(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_custody"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn fail(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {o:?}");
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn generate_then_show_agree_and_json_is_tuf_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let k = key.to_str().unwrap();
    let gen = ok(&custody(
        &[
            "key",
            "generate",
            "--type",
            "ecdsa-p256",
            "--out",
            k,
            "--passphrase-env",
            "PW",
            "--json",
        ],
        &[("PW", "pw1")],
    ));
    let g: serde_json::Value = serde_json::from_str(&gen).unwrap();
    assert_eq!(g["type"], "ecdsa-p256");
    assert_eq!(g["key"]["keytype"], "ecdsa");
    assert_eq!(g["key"]["scheme"], "ecdsa-sha2-nistp256");
    assert!(g["key"]["keyval"]["public"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let keyid = g["keyid"].as_str().unwrap();

    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "pw1\n").unwrap();
    let shown = ok(&custody(
        &[
            "key",
            "show",
            k,
            "--passphrase-file",
            pwfile.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(shown.contains(&format!("keyid: {keyid}")), "{shown}");

    // the JSON output doubles as a public key file
    let pubf = dir.path().join("k.pub.json");
    std::fs::write(&pubf, &gen).unwrap();
    let shown = ok(&custody(
        &["key", "show", pubf.to_str().unwrap(), "--json"],
        &[],
    ));
    let s: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(s["keyid"], keyid);
}

#[test]
fn wrong_passphrase_and_existing_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let k = key.to_str().unwrap();
    ok(&custody(
        &[
            "key",
            "generate",
            "--type",
            "ed25519",
            "--out",
            k,
            "--passphrase-env",
            "PW",
        ],
        &[("PW", "right")],
    ));
    let before = std::fs::read(&key).unwrap();
    let err = fail(&custody(
        &["key", "show", k, "--passphrase-env", "PW"],
        &[("PW", "wrong")],
    ));
    assert!(
        err.contains("wrong passphrase") && err.contains("k.pem"),
        "{err}"
    );
    let err = fail(&custody(
        &[
            "key",
            "generate",
            "--type",
            "ed25519",
            "--out",
            k,
            "--passphrase-env",
            "PW",
        ],
        &[("PW", "x")],
    ));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let err = fail(&custody(
        &["key", "show", k, "--passphrase-env", "UNSET_VAR_XYZ"],
        &[],
    ));
    assert!(err.contains("UNSET_VAR_XYZ"), "{err}");
    assert!(Path::new(&key).exists());
}

#[test]
fn help_has_examples() {
    let out = ok(&custody(&["key", "generate", "--help"], &[]));
    assert!(
        out.contains("Examples:") && out.contains("rsa-pss"),
        "{out}"
    );
}
