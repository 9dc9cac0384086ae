//! Interop: envelopes signed by independent tools, verified by this crate.
//!
//! 1. securesystemslib (python-tuf's and in-toto's crypto library) makes
//!    ed25519, ECDSA P-256 and RSA-PSS keys and signs a DSSE envelope of an
//!    in-toto Statement v1 (tests/interop/sign_dsse.py), at test time.
//! 2. The OpenSSL command line signs the PAE bytes (the recipe in the
//!    README: no jq, no custom tooling).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use common::*;
use custody_provenance::{evaluate, pae, Decision, Policy, Reason};
use serde_json::{json, Value};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CUSTODY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "securesystemslib not found: set CUSTODY_PYTHON or run ./scripts/test to create {}",
        venv.display()
    );
    venv
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}); the interop tests need python (./scripts/test) and the openssl CLI (apt-get install openssl)",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Policy for firmware/* with the given TUF keys (as JSON values).
fn policy(keys: &BTreeMap<String, Value>, threshold: u64) -> Policy {
    let spec = json!({
        "rules": [{
            "name": "firmware",
            "paths": ["firmware/*"],
            "builders": [BUILDER],
            "build_types": [GHA],
            "sources": [{"repository": REPO, "refs": ["refs/heads/main"]}],
            "signers": {"threshold": threshold, "keys": keys}
        }]
    });
    Policy::from_json("interop.json", &serde_json::to_vec(&spec).unwrap()).unwrap()
}

fn digests(b: &[u8]) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".to_owned(), sha256_hex(b))])
}

#[test]
fn securesystemslib_envelope_verifies() {
    let artifact = b"firmware built by CI";
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/sign_dsse.py");
    let out = run(Command::new(python())
        .arg(&script)
        .arg(sha256_hex(artifact))
        .args(["ed25519", "ecdsa", "rsa"]));
    let v: Value = serde_json::from_slice(&out).unwrap();
    let env = serde_json::to_vec(&v["envelope"]).unwrap();
    let keys: BTreeMap<String, Value> = serde_json::from_value(v["keys"].clone()).unwrap();
    assert_eq!(keys.len(), 3);

    // all three key types verify: 3-of-3
    let d = evaluate(
        &policy(&keys, 3),
        "firmware/app.bin",
        &digests(artifact),
        Some(&env),
    )
    .unwrap();
    let Decision::Attested(a) = d else {
        panic!("{d:?}")
    };
    assert_eq!(a.signers, vec!["ecdsa", "ed25519", "rsa"]);
    assert_eq!(a.envelope_sha256, sha256_hex(&env));

    // each key alone
    for (name, key) in &keys {
        let one = BTreeMap::from([(name.clone(), key.clone())]);
        assert!(
            evaluate(
                &policy(&one, 1),
                "firmware/app.bin",
                &digests(artifact),
                Some(&env)
            )
            .is_ok(),
            "{name}"
        );
    }

    // a flipped byte in the payload breaks every signature
    let mut tampered = v["envelope"].clone();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(tampered["payload"].as_str().unwrap()).unwrap();
    let pos = payload.len() - 3;
    payload[pos] ^= 1;
    tampered["payload"] = json!(b64.encode(&payload));
    let err = evaluate(
        &policy(&keys, 1),
        "firmware/app.bin",
        &digests(artifact),
        Some(&serde_json::to_vec(&tampered).unwrap()),
    )
    .unwrap_err();
    assert!(
        matches!(err.reason, Reason::Threshold { valid: 0, .. }),
        "{err}"
    );
}

#[test]
fn openssl_signed_envelope_verifies() {
    let dir = std::env::temp_dir().join(format!("custody-prov-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let artifact = b"firmware signed with openssl";
    let payload_type = "application/vnd.in-toto+json";
    let payload = serde_json::to_vec(&statement(&sha256_hex(artifact))).unwrap();
    std::fs::write(dir.join("pae.bin"), pae(payload_type, &payload)).unwrap();

    let mut keys = BTreeMap::new();
    let mut sigs = Vec::new();
    // ed25519: pkeyutl -rawin; P-256: dgst -sha256 (DER signature)
    for (name, genargs, sign) in [
        ("ed25519", vec!["-algorithm", "ed25519"], "pkeyutl"),
        (
            "p256",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "dgst",
        ),
    ] {
        let key = dir.join(format!("{name}.pem"));
        let sig = dir.join(format!("{name}.sig"));
        run(Command::new("openssl")
            .arg("genpkey")
            .args(&genargs)
            .arg("-out")
            .arg(&key));
        let public = run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key));
        if sign == "pkeyutl" {
            run(Command::new("openssl")
                .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
                .arg(&key)
                .arg("-in")
                .arg(dir.join("pae.bin"))
                .arg("-out")
                .arg(&sig));
        } else {
            run(Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .arg("-out")
                .arg(&sig)
                .arg(dir.join("pae.bin")));
        }
        let (keytype, scheme) = if name == "ed25519" {
            ("ed25519", "ed25519")
        } else {
            ("ecdsa", "ecdsa-sha2-nistp256")
        };
        keys.insert(
            name.to_owned(),
            json!({"keytype": keytype, "scheme": scheme, "keyval": {"public": String::from_utf8(public).unwrap()}}),
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        sigs.push(json!({"sig": b64.encode(std::fs::read(&sig).unwrap())}));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let env = serde_json::to_vec(&json!({
        "payloadType": payload_type,
        "payload": b64.encode(&payload),
        "signatures": sigs,
    }))
    .unwrap();
    let d = evaluate(
        &policy(&keys, 2),
        "firmware/app.bin",
        &digests(artifact),
        Some(&env),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let Decision::Attested(a) = d.unwrap() else {
        panic!()
    };
    assert_eq!(a.signers, vec!["ed25519", "p256"]);
}
