//! The `custody` binary run as a user runs it: from a working directory
//! (a temp dir), with the passphrase of its key files in `KP`. One runner
//! and one key setup for the `repo_*` tests (and any test that drives the
//! CLI from a directory of files).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The environment variable holding the key passphrase.
pub const PASSPHRASE_ENV: &str = "KP";

/// The real `custody` binary, with the server settings a developer's
/// shell may hold (`CUSTODY_DATABASE_URL`, `CUSTODY_CONFIG`,
/// `CUSTODY_LISTEN`, `CUSTODY_DATA_DIR`) removed from its environment.
/// Every test runs the binary through this.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_custody"));
    for k in [
        "CUSTODY_DATABASE_URL",
        "CUSTODY_CONFIG",
        "CUSTODY_LISTEN",
        "CUSTODY_DATA_DIR",
    ] {
        c.env_remove(k);
    }
    c
}

/// A finished run must have succeeded; its stdout.
pub fn succeeded(args: &[&str], o: &Output) -> String {
    assert!(
        o.status.success(),
        "custody {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A finished run must have failed with exit code 1; its stderr.
pub fn failed(args: &[&str], o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "custody {args:?} should fail:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A working directory and the environment every `custody` run gets.
pub struct Cli {
    pub dir: tempfile::TempDir,
    env: Vec<(String, OsString)>,
    /// `--passphrase-env KP` appended to every command
    passphrase_on_every_command: bool,
}

impl Cli {
    /// A fresh temp dir; key files are encrypted with `passphrase`.
    pub fn new(passphrase: &str) -> Cli {
        Cli::in_dir(tempfile::tempdir().unwrap(), passphrase)
    }

    /// [`Cli::new`] in an existing temp dir (e.g. one holding a SoftHSM
    /// token directory).
    pub fn in_dir(dir: tempfile::TempDir, passphrase: &str) -> Cli {
        Cli {
            dir,
            env: vec![(PASSPHRASE_ENV.to_owned(), passphrase.into())],
            passphrase_on_every_command: false,
        }
    }

    /// Set `key=value` in the environment of every run.
    pub fn with_env(mut self, key: &str, value: impl Into<OsString>) -> Cli {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Append `--passphrase-env KP` to every command.
    pub fn with_passphrase_on_every_command(mut self) -> Cli {
        self.passphrase_on_every_command = true;
        self
    }

    /// A path inside the working directory.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Run `custody args` in the working directory.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// [`Cli::run`] with `extra` set in the environment too.
    pub fn run_with_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut c = command();
        c.args(args);
        if self.passphrase_on_every_command {
            c.args(["--passphrase-env", PASSPHRASE_ENV]);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        c.current_dir(self.dir.path()).output().unwrap()
    }

    /// Run; it must succeed. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }

    /// Run; it must fail with exit code 1. Returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        failed(args, &self.run(args))
    }

    /// [`Cli::ok`] with `extra` set in the environment too.
    pub fn ok_with_env(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        succeeded(args, &self.run_with_env(args, extra))
    }

    /// [`Cli::fail`] with `extra` set in the environment too.
    pub fn fail_with_env(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        failed(args, &self.run_with_env(args, extra))
    }

    /// `args` plus `--passphrase-env KP` unless every command gets it.
    fn with_passphrase<'a>(&self, mut args: Vec<&'a str>) -> Vec<&'a str> {
        if !self.passphrase_on_every_command {
            args.extend(["--passphrase-env", PASSPHRASE_ENV]);
        }
        args
    }

    /// Generate an ed25519 key file `{name}.pem`; returns its file name.
    pub fn key(&self, name: &str) -> String {
        self.key_of_type(name, "ed25519")
    }

    /// Generate a key file `{name}.pem` of `key_type` (`custody key
    /// generate --type`); returns its file name.
    pub fn key_of_type(&self, name: &str, key_type: &str) -> String {
        let f = format!("{name}.pem");
        self.ok(&self.with_passphrase(vec!["key", "generate", "--type", key_type, "--out", &f]));
        f
    }

    /// [`Cli::key`] for each name.
    pub fn keys(&self, names: &[&str]) {
        for n in names {
            self.key(n);
        }
    }

    /// `custody key show --json` of a key file.
    fn show(&self, pem: &str) -> String {
        self.ok(&self.with_passphrase(vec!["key", "show", pem, "--json"]))
    }

    /// Public-only key file `{pem}.pub.json` (an offline key); returns its
    /// file name.
    pub fn pubkey(&self, pem: &str) -> String {
        let out = self.show(pem);
        let f = format!("{pem}.pub.json");
        std::fs::write(self.p(&f), out).unwrap();
        f
    }

    /// The TUF key id of a key file.
    pub fn keyid(&self, pem: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.show(pem)).unwrap();
        v["keyid"].as_str().unwrap().to_owned()
    }

    /// `custody repo init repo` with key files `root.pem`, `targets.pem`,
    /// `snapshot.pem` and `timestamp.pem` (which must exist), plus `extra`
    /// arguments.
    pub fn init_repo(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "repo",
            "init",
            "repo",
            "--root-key",
            "root.pem",
            "--targets-key",
            "targets.pem",
            "--snapshot-key",
            "snapshot.pem",
            "--timestamp-key",
            "timestamp.pem",
        ];
        args.extend_from_slice(extra);
        self.ok(&self.with_passphrase(args))
    }

    /// The standard repository `repo`: one new ed25519 key per top-level
    /// role, [`Cli::init_repo`].
    pub fn init_standard_repo(&self) {
        self.keys(&["root", "targets", "snapshot", "timestamp"]);
        self.init_repo(&[]);
    }
}

/// Every file under `dir` with its bytes (for "nothing changed on disk"
/// checks); symlinked directories are followed.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
