//! `custody key …` end to end through the real binary.
mod common;

use std::path::Path;

use common::cli::Cli;

#[test]
fn generate_then_show_agree_and_json_is_tuf_key() {
    let cli = Cli::new("unused");
    let key = cli.p("k.pem");
    let k = key.to_str().unwrap();
    let gen = cli.ok_with_env(
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
    );
    let g: serde_json::Value = serde_json::from_str(&gen).unwrap();
    assert_eq!(g["type"], "ecdsa-p256");
    assert_eq!(g["key"]["keytype"], "ecdsa");
    assert_eq!(g["key"]["scheme"], "ecdsa-sha2-nistp256");
    assert!(g["key"]["keyval"]["public"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let keyid = g["keyid"].as_str().unwrap();

    let pwfile = cli.p("pw");
    std::fs::write(&pwfile, "pw1\n").unwrap();
    let shown = cli.ok_with_env(
        &[
            "key",
            "show",
            k,
            "--passphrase-file",
            pwfile.to_str().unwrap(),
        ],
        &[],
    );
    assert!(shown.contains(&format!("keyid: {keyid}")), "{shown}");

    // the JSON output doubles as a public key file
    let pubf = cli.p("k.pub.json");
    std::fs::write(&pubf, &gen).unwrap();
    let shown = cli.ok_with_env(&["key", "show", pubf.to_str().unwrap(), "--json"], &[]);
    let s: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(s["keyid"], keyid);
}

#[test]
fn wrong_passphrase_and_existing_file_are_clear_errors() {
    let cli = Cli::new("unused");
    let key = cli.p("k.pem");
    let k = key.to_str().unwrap();
    cli.ok_with_env(
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
    );
    let before = std::fs::read(&key).unwrap();
    let err = cli.fail_with_env(
        &["key", "show", k, "--passphrase-env", "PW"],
        &[("PW", "wrong")],
    );
    assert!(
        err.contains("wrong passphrase") && err.contains("k.pem"),
        "{err}"
    );
    let err = cli.fail_with_env(
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
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let err = cli.fail_with_env(
        &["key", "show", k, "--passphrase-env", "UNSET_VAR_XYZ"],
        &[],
    );
    assert!(err.contains("UNSET_VAR_XYZ"), "{err}");
    assert!(Path::new(&key).exists());
}

#[test]
fn help_has_examples() {
    let cli = Cli::new("unused");
    let out = cli.ok_with_env(&["key", "generate", "--help"], &[]);
    assert!(
        out.contains("Examples:") && out.contains("rsa-pss"),
        "{out}"
    );
}
