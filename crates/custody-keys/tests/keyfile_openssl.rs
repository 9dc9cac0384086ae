//! Interop: the encrypted PKCS#8 files custody writes are read by OpenSSL,
//! and keys OpenSSL writes are read by custody. Skips (with a message) when
//! the openssl CLI is absent.
use std::path::Path;
use std::process::Command;

use custody_keys::keyfile;
use custody_keys::{KeyType, Signer};

fn openssl() -> Option<&'static str> {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success());
    if ok.unwrap_or(false) {
        Some("openssl")
    } else {
        eprintln!("SKIP: openssl CLI not found");
        None
    }
}

fn pkey_pub(ossl: &str, key: &Path, pass: &str) -> std::process::Output {
    Command::new(ossl)
        .args(["pkey", "-pubout", "-in"])
        .arg(key)
        .args(["-passin", &format!("pass:{pass}")])
        .output()
        .unwrap()
}

#[test]
fn openssl_reads_custody_keys_and_agrees_on_public_key() {
    let Some(ossl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    for kt in KeyType::ALL {
        let path = dir.path().join(format!("{kt}.pem"));
        let signer = keyfile::generate(&path, kt, b"s3cret pass").unwrap();
        let out = pkey_pub(ossl, &path, "s3cret pass");
        assert!(
            out.status.success(),
            "{kt}: openssl pkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = String::from_utf8(out.stdout).unwrap();
        match kt {
            KeyType::Ed25519 => assert!(pem.contains("BEGIN PUBLIC KEY")),
            _ => assert_eq!(pem, signer.key().keyval.public.clone().unwrap(), "{kt}"),
        }
        // and a wrong passphrase is rejected by openssl too
        assert!(!pkey_pub(ossl, &path, "nope").status.success());
    }
}

#[test]
fn custody_reads_openssl_encrypted_keys() {
    let Some(ossl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, genargs, kt) in [
        ("ed", vec!["-algorithm", "ed25519"], KeyType::Ed25519),
        (
            "p256",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyType::EcdsaP256,
        ),
        (
            "p384",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            KeyType::EcdsaP384,
        ),
    ] {
        let path = dir.path().join(format!("{name}.pem"));
        let st = Command::new(ossl)
            .arg("genpkey")
            .args(&genargs)
            .args(["-aes-256-cbc", "-pass", "pass:pw", "-out"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let s = keyfile::load(&path, b"pw").unwrap();
        assert_eq!(s.key_type(), kt);
        assert!(!s.sign(b"m").unwrap().is_empty());
    }
}
