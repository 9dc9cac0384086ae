//! PKCS#11 backend against a real SoftHSM2 token. Each test run makes its own
//! token directory and SOFTHSM2_CONF, so nothing outside the temp dir is touched.
//! Skips (with a message) when SoftHSM2 or pkcs11-tool is absent; ./scripts/test
//! installs both.
use std::path::{Path, PathBuf};
use std::process::Command;

use custody_keys::pkcs11::{Pkcs11Signer, Pkcs11Uri};
use custody_keys::{KeyType, Signer};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "5678";

struct Token {
    _dir: tempfile::TempDir,
}

fn have_tools() -> bool {
    let ok = Path::new(MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok()
        && Command::new("pkcs11-tool").arg("--help").output().is_ok();
    if !ok {
        eprintln!("SKIP: SoftHSM2 ({MODULE}) or pkcs11-tool missing; run ./scripts/test");
    }
    ok
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One token with the keys every test uses. SOFTHSM2_CONF is process-wide,
/// so all token work happens in this single test function's process state.
fn make_token() -> Token {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
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
        "custody-test",
        "--so-pin",
        "1234",
        "--pin",
        PIN,
    ]));
    for (label, id, kt) in [
        ("ed", "01", "EC:edwards25519"),
        ("p256", "02", "EC:prime256v1"),
        ("p384", "03", "EC:secp384r1"),
        ("rsa", "04", "rsa:2048"),
    ] {
        run(Command::new("pkcs11-tool").args([
            "--module",
            MODULE,
            "--token-label",
            "custody-test",
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            kt,
            "--label",
            label,
            "--id",
            id,
        ]));
    }
    Token { _dir: dir }
}

/// Verify with custody-tuf's verifier: what clients will run.
fn verify(key: &custody_keys::TufPublicKey, kt: KeyType, msg: &[u8], sig: &[u8]) {
    let pk = custody_tuf::PublicKey::from_key(key).unwrap();
    assert!(
        pk.verify(msg, sig),
        "{kt}: signature from the token does not verify"
    );
}

fn uri(obj: &str, pin_file: &Path) -> Pkcs11Uri {
    format!(
        "pkcs11:token=custody-test;object={obj}?module-path={MODULE}&pin-source=file:{}",
        pin_file.display()
    )
    .parse()
    .unwrap()
}

#[test]
fn softhsm_signs_with_every_key_type_and_reports_errors() {
    if !have_tools() {
        return;
    }
    let token = make_token();
    let pin_file: PathBuf = token._dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();

    for (obj, kt) in [
        ("ed", KeyType::Ed25519),
        ("p256", KeyType::EcdsaP256),
        ("p384", KeyType::EcdsaP384),
        ("rsa", KeyType::RsaPss),
    ] {
        let signer =
            Pkcs11Signer::open(&uri(obj, &pin_file)).unwrap_or_else(|e| panic!("{obj}: {e}"));
        assert_eq!(signer.key_type(), kt);
        assert_eq!(signer.key().scheme, kt.tuf_scheme());
        assert_eq!(signer.keyid().len(), 64);
        for msg in [&b""[..], b"{\"signed\":1}", &[0xffu8; 1000][..]] {
            let sig = signer.sign(msg).unwrap();
            verify(signer.key(), kt, msg, &sig);
        }
    }

    // wrong PIN
    let bad = token._dir.path().join("badpin");
    std::fs::write(&bad, "0000").unwrap();
    let e = Pkcs11Signer::open(&uri("p256", &bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wrong PIN"), "{e}");
    // unknown key and unknown token name what was asked for
    let e = Pkcs11Signer::open(&uri("nope", &pin_file))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"nope\""), "{e}");
    let u: Pkcs11Uri = format!("pkcs11:token=other;object=ed?module-path={MODULE}&pin-value={PIN}")
        .parse()
        .unwrap();
    let e = Pkcs11Signer::open(&u).unwrap_err().to_string();
    assert!(e.contains("custody-test") && e.contains("\"other\""), "{e}");
}
