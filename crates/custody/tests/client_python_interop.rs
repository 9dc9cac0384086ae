//! Interop with python-tuf: a repository written by python-tuf's Metadata
//! API (consistent snapshots, a terminating path delegation, succinct hash
//! bins, ECDSA and Ed25519 keys, sha256+sha512 target hashes), served over
//! loopback and consumed by the real `custody client`.

mod common;

use std::process::Command;

use common::{Client, TestServer};
use serde_json::Value;

#[test]
fn custody_client_consumes_python_tuf_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/make_python_repo.py");
    let out = Command::new(common::python())
        .arg(&script)
        .arg(tmp.path())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "make_python_repo.py failed (run ./scripts/test to install python-tuf): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bin = info["bin"].as_str().unwrap().to_owned();

    let server = TestServer::start(tmp.path());
    let client = Client::new();
    client
        .init_bytes(&std::fs::read(tmp.path().join("metadata/1.root.json")).unwrap())
        .ok();
    let run = client.download(
        &server,
        &["top.txt", "delegated/file.txt", "hashed/file.txt"],
        &["--json"],
    );
    run.ok();

    let out = run.json();
    let roles: Vec<&str> = out["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["targets", "delegated", bin.as_str()]);
    let files = client.downloaded();
    for (path, hex_content) in info["targets"].as_object().unwrap() {
        let name = custody_client::encoding::target_file_name(path).unwrap();
        assert_eq!(
            hex::encode(&files[&name]),
            hex_content.as_str().unwrap(),
            "{path}"
        );
    }
    let requests = server.requests();
    // delegated roles fetched on demand, by version (consistent snapshots)
    for r in ["metadata/1.delegated.json", "metadata/1.hashed.json"] {
        assert!(
            requests.contains(&r.to_owned()),
            "{r} not requested: {requests:?}"
        );
    }
    assert!(requests.contains(&format!("metadata/1.{bin}.json")));
    // only the bin responsible for the path is fetched
    let bins: Vec<_> = requests.iter().filter(|r| r.contains(".bin-")).collect();
    assert_eq!(bins.len(), 1, "{requests:?}");
    let trusted = client.trusted();
    for f in ["delegated.json", "hashed.json", &format!("{bin}.json")] {
        assert!(trusted.contains_key(f), "{f} not persisted");
    }
}
