//! A real TUF client against our hosting: python-tuf's ngclient refreshes a
//! hash-bin repository (delegations, consistent snapshots) published into a
//! generation and downloads and verifies targets from it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CUSTODY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "python-tuf is needed: set CUSTODY_PYTHON or run ./scripts/test (creates {})",
        venv.display()
    );
    venv
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn publish_tree(server: &common::TestServer, repo_dir: &Path) {
    let hosting = custody_server::testing::hosting(&server.server);
    let g = hosting.begin_generation("py").unwrap();
    g.inherit_current().unwrap();
    for entry in std::fs::read_dir(repo_dir.join("metadata")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        g.write_metadata(&name, &std::fs::read(entry.path()).unwrap())
            .unwrap();
    }
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
                out.push((rel, p));
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &repo_dir.join("targets"),
        &repo_dir.join("targets"),
        &mut files,
    );
    for (rel, path) in files {
        g.add_target_file(&rel, &path).unwrap();
    }
    g.commit(hosting).unwrap();
}

fn ngclient(
    server: &common::TestServer,
    meta: &Path,
    dl: &Path,
    target: &str,
) -> serde_json::Value {
    let out = run(Command::new(python())
        .arg(workspace().join("scripts/bench/ngclient.py"))
        .args(["--metadata-dir", meta.to_str().unwrap()])
        .args([
            "--metadata-url",
            &format!("{}/repos/py/metadata/", server.url),
        ])
        .args([
            "--target-base-url",
            &format!("{}/repos/py/targets/", server.url),
        ])
        .args(["--target-dir", dl.to_str().unwrap()])
        .args(["--target-name", target]));
    serde_json::from_str(out.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tuf_ngclient_updates_from_our_hosting() {
    let s = common::start().await;
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let manifest: serde_json::Value = serde_json::from_str(
        run(Command::new(python())
            .arg(workspace().join("scripts/bench/make_repo.py"))
            .args(["--out", repo.to_str().unwrap()])
            .args(["--targets", "16", "--bit-length", "2", "--stored", "2"]))
        .trim(),
    )
    .unwrap();
    publish_tree(&s, &repo);

    let meta = work.path().join("client-meta");
    let dl = work.path().join("downloads");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::copy(repo.join("root.json"), meta.join("root.json")).unwrap();

    let stored = manifest["stored_targets"].as_array().unwrap();
    for t in stored {
        let name = t["name"].as_str().unwrap();
        let got = tokio::task::block_in_place(|| ngclient(&s, &meta, &dl, name));
        let path = got["path"].as_str().unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, t["length"].as_u64().unwrap());
        assert_eq!(common::sha256_hex(&bytes), t["sha256"].as_str().unwrap());
    }

    // Hosting served what python-tuf asked for, under the names it uses.
    let metrics = s.get("/metrics", &[]).await.text();
    assert!(metrics.contains("status=\"200\""), "{metrics}");
}
