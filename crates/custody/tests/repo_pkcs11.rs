//! Repository roles signed by keys on a PKCS#11 token (SoftHSM2, hermetic:
//! its own SOFTHSM2_CONF and token directory), including `key show --pkcs11`
//! and a cron-style `repo refresh` that finds the token key from the
//! repository config alone.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4321";

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

struct Env {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("KP", "pw")
            .env("HSM_PIN", PIN)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "custody {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn tool(&self, cmd: &str, args: &[&str]) {
        let o = Command::new(cmd)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd} {args:?}: {o:?}");
    }
}

#[test]
fn token_keys_sign_repository_roles() {
    if !have_tools() {
        return;
    }
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
    let env = Env { dir, conf };
    env.tool(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "repo-hsm",
            "--so-pin",
            "1111",
            "--pin",
            PIN,
        ],
    );
    for (label, kt) in [("ts", "EC:prime256v1"), ("snap", "EC:edwards25519")] {
        env.tool(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                "repo-hsm",
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                kt,
                "--label",
                label,
            ],
        );
    }
    let uri = |label: &str| {
        format!("pkcs11:token=repo-hsm;object={label}?module-path={MODULE}&pin-source=env:HSM_PIN")
    };
    let shown = env.ok(&["key", "show", "--pkcs11", &uri("ts"), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["type"], "ecdsa-p256");

    for k in ["root", "targets"] {
        env.ok(&[
            "key",
            "generate",
            "--type",
            "ed25519",
            "--out",
            &format!("{k}.pem"),
            "--passphrase-env",
            "KP",
        ]);
    }
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
