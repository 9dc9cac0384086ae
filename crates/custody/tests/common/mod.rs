//! Shared support for the binary's integration tests: one runner for the
//! `custody` binary ([`cli::command`], [`custody`], [`cli::Cli`]), one key
//! setup ([`cli::Cli::key`]), one server harness ([`serve`]), and the
//! client tests' repository and file server.
#![allow(dead_code, unused_imports)]

pub mod cli;
pub mod repo;
pub mod serve;
pub mod server;
pub mod softhsm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

pub use repo::{Repo, TestKey};
pub use server::{Attack, TestServer};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_owned()
}

/// Run the real `custody` binary with `args`.
pub fn custody(args: &[&str]) -> Output {
    cli::command()
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run custody")
}

/// [`custody`] from async code (on the blocking pool, so an in-process
/// server on the same runtime keeps answering).
pub async fn custody_async(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        custody(&args)
    })
    .await
    .unwrap()
}

/// Outcome of a client run, with helpers for assertions.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Exit code 1 and an error message containing every needle
    /// (case-insensitive).
    pub fn fails_with(&self, needles: &[&str]) -> &Self {
        assert_eq!(
            self.code, 1,
            "expected exit 1\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let lower = self.stderr.to_lowercase();
        for n in needles {
            assert!(
                lower.contains(&n.to_lowercase()),
                "stderr should mention {n:?}\nstderr: {}",
                self.stderr
            );
        }
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

pub fn run(args: &[&str]) -> Run {
    let out = custody(args);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A client under test: a metadata dir and a target dir in one temp dir.
pub struct Client {
    pub tmp: tempfile::TempDir,
    pub metadata_dir: PathBuf,
    pub target_dir: PathBuf,
}

impl Client {
    pub fn new() -> Client {
        let tmp = tempfile::tempdir().unwrap();
        let metadata_dir = tmp.path().join("metadata");
        let target_dir = tmp.path().join("targets");
        std::fs::create_dir_all(&metadata_dir).unwrap();
        std::fs::create_dir_all(&target_dir).unwrap();
        Client {
            tmp,
            metadata_dir,
            target_dir,
        }
    }

    /// `init` with the given root bytes.
    pub fn init_bytes(&self, root: &[u8]) -> Run {
        let f = self.tmp.path().join("initial_root.json");
        std::fs::write(&f, root).unwrap();
        run(&[
            "client",
            "--metadata-dir",
            s(&self.metadata_dir),
            "init",
            s(&f),
        ])
    }

    /// `init` with version 1 of the repository's root.
    pub fn init(&self, repo: &Repo) -> Run {
        let root1 = std::fs::read(repo.metadata_dir().join("1.root.json")).unwrap();
        self.init_bytes(&root1)
    }

    pub fn refresh(&self, server: &TestServer, extra: &[&str]) -> Run {
        let url = server.url("metadata");
        let mut args = vec![
            "client",
            "--metadata-dir",
            s(&self.metadata_dir),
            "--metadata-url",
            &url,
        ];
        args.extend_from_slice(extra);
        args.push("refresh");
        run(&args)
    }

    pub fn download(&self, server: &TestServer, targets: &[&str], extra: &[&str]) -> Run {
        let url = server.url("metadata");
        let turl = server.url("targets");
        let mut args = vec![
            "client",
            "--metadata-dir",
            s(&self.metadata_dir),
            "--metadata-url",
            &url,
            "--target-base-url",
            &turl,
            "--target-dir",
            s(&self.target_dir),
        ];
        for t in targets {
            args.push("--target-name");
            args.push(t);
        }
        args.extend_from_slice(extra);
        args.push("download");
        run(&args)
    }

    /// Every file in the metadata dir with its bytes.
    pub fn trusted(&self) -> BTreeMap<String, Vec<u8>> {
        dir_contents(&self.metadata_dir)
    }

    pub fn version(&self, role: &str) -> u64 {
        let path = self.metadata_dir.join(format!("{role}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        v["signed"]["version"].as_u64().unwrap()
    }

    pub fn downloaded(&self) -> BTreeMap<String, Vec<u8>> {
        dir_contents(&self.target_dir)
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Regular files of a directory (not recursive), name → bytes.
pub fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

/// The path of python for the python-tuf interop tests.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CUSTODY_PYTHON") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "python-tuf not found: set CUSTODY_PYTHON or run ./scripts/test to create {}",
        p.display()
    );
    p
}
