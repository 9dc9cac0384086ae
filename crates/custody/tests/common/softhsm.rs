//! A hermetic SoftHSM2 token for the PKCS#11 tests: its own SOFTHSM2_CONF
//! and token directory inside the test's temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cli::Cli;

/// The SoftHSM2 PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token (given to custody in `HSM_PIN`).
pub const PIN: &str = "4321";

/// Whether SoftHSM2 and pkcs11-tool are installed; says SKIP if not.
pub fn have_tools() -> bool {
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

/// One initialised token, and a [`Cli`] whose runs see it.
pub struct Token {
    pub label: String,
    pub conf: PathBuf,
}

impl Token {
    /// A new temp dir with a token `label` in it; returns the token and a
    /// [`Cli`] (key passphrase `passphrase`, `HSM_PIN` set) working there.
    pub fn init(label: &str, passphrase: &str) -> (Token, Cli) {
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
        let token = Token {
            label: label.to_owned(),
            conf: conf.clone(),
        };
        token.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                "1111",
                "--pin",
                PIN,
            ],
        );
        let cli = Cli::in_dir(dir, passphrase)
            .with_env("SOFTHSM2_CONF", &conf)
            .with_env("HSM_PIN", PIN);
        (token, cli)
    }

    /// Run a SoftHSM tool against this token's configuration; it must
    /// succeed.
    pub fn tool(&self, cmd: &str, args: &[&str]) {
        let o = Command::new(cmd)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd} {args:?}: {o:?}");
    }

    /// Generate key pair `label` of `key_type` (pkcs11-tool's
    /// `--key-type`, e.g. `EC:edwards25519`) on the token.
    pub fn keypair(&self, label: &str, key_type: &str) {
        self.tool(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
            ],
        );
    }

    /// The custody PKCS#11 URI of key `object` on this token (PIN from
    /// `HSM_PIN`).
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={MODULE}&pin-source=env:HSM_PIN",
            self.label
        )
    }
}
