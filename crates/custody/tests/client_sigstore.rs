//! Real-world metadata: Sigstore's root-signing repository (fixture in
//! /work/shared, never copied into this repository), served over loopback
//! in its consistent-snapshot layout, verified by the real `custody client`.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, TestServer};
use serde_json::Value;

const REFERENCE_TIME: &str = "2026-08-22T00:00:00Z";

/// The fixture: `$CUSTODY_SIGSTORE_FIXTURE`, else `shared/` beside the
/// workspace (how CI lays out a clone), else /work/shared.
fn fixture() -> PathBuf {
    let rel = "fixtures/sigstore-root-signing";
    let candidates: Vec<PathBuf> = std::env::var_os("CUSTODY_SIGSTORE_FIXTURE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            common::workspace_root()
                .parent()
                .map(|p| p.join("shared").join(rel)),
        )
        .chain(std::iter::once(Path::new("/work/shared").join(rel)))
        .collect();
    candidates
        .iter()
        .find(|p| p.join("metadata/root_history/1.root.json").exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!("sigstore fixture not found in {candidates:?} (set CUSTODY_SIGSTORE_FIXTURE)")
        })
}

fn signed(path: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["signed"].clone()
}

/// Lay the fixture out as a consistent-snapshot server publishes it.
fn build_layout(out: &Path) {
    let src = fixture();
    let md = out.join("metadata");
    let tg = out.join("targets");
    std::fs::create_dir_all(&md).unwrap();
    std::fs::create_dir_all(&tg).unwrap();
    for e in std::fs::read_dir(src.join("metadata/root_history")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), md.join(e.file_name())).unwrap();
    }
    std::fs::copy(
        src.join("metadata/timestamp.json"),
        md.join("timestamp.json"),
    )
    .unwrap();
    let ts = signed(&src.join("metadata/timestamp.json"));
    let snap_v = ts["meta"]["snapshot.json"]["version"].as_u64().unwrap();
    std::fs::copy(
        src.join("metadata/snapshot.json"),
        md.join(format!("{snap_v}.snapshot.json")),
    )
    .unwrap();
    let snap = signed(&src.join("metadata/snapshot.json"));
    for role in ["targets", "registry.npmjs.org"] {
        let v = snap["meta"][format!("{role}.json")]["version"]
            .as_u64()
            .unwrap();
        let file = src.join(format!("metadata/{role}.json"));
        std::fs::copy(&file, md.join(format!("{v}.{role}.json"))).unwrap();
        let body = signed(&file);
        for (path, info) in body["targets"].as_object().unwrap() {
            let (dir, base) = path
                .rsplit_once('/')
                .map_or(("", path.as_str()), |(d, b)| (d, b));
            for hash in info["hashes"].as_object().unwrap().values() {
                let dest_dir = if dir.is_empty() {
                    tg.clone()
                } else {
                    tg.join(dir)
                };
                std::fs::create_dir_all(&dest_dir).unwrap();
                std::fs::copy(
                    src.join("targets").join(path),
                    dest_dir.join(format!("{}.{base}", hash.as_str().unwrap())),
                )
                .unwrap();
            }
        }
    }
}

fn init_with_root(client: &Client, version: u32) {
    let root = std::fs::read(fixture().join(format!("metadata/root_history/{version}.root.json")))
        .unwrap();
    client.init_bytes(&root).ok();
}

#[test]
fn walks_root_4_to_15_and_downloads_trusted_root() {
    let tmp = tempfile::tempdir().unwrap();
    build_layout(tmp.path());
    let server = TestServer::start(tmp.path());
    let client = Client::new();
    init_with_root(&client, 4);
    let run = client.download(
        &server,
        &["trusted_root.json", "registry.npmjs.org/keys.json"],
        &["--reference-time", REFERENCE_TIME, "--json"],
    );
    run.ok();
    assert_eq!(client.version("root"), 15);
    assert_eq!(client.version("timestamp"), 762);
    assert_eq!(client.version("snapshot"), 165);
    assert_eq!(client.version("targets"), 14);
    assert_eq!(client.version("registry.npmjs.org"), 8);
    let roots: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.ends_with(".root.json"))
        .collect();
    let expected: Vec<String> = (5..=16)
        .map(|n| format!("metadata/{n}.root.json"))
        .collect();
    assert_eq!(roots, expected);
    let files = client.downloaded();
    assert_eq!(
        files["trusted_root.json"],
        std::fs::read(fixture().join("targets/trusted_root.json")).unwrap()
    );
    assert_eq!(
        files["registry.npmjs.org%2Fkeys.json"],
        std::fs::read(fixture().join("targets/registry.npmjs.org/keys.json")).unwrap()
    );
    let out = run.json();
    assert_eq!(out["roles"]["root"], 15);
    // rekor.json and revocation.json are listed in the snapshot but never needed
    assert!(!server
        .requests()
        .iter()
        .any(|r| r.contains("rekor") || r.contains("revocation")));
}

#[test]
fn starting_from_root_1_also_works() {
    let tmp = tempfile::tempdir().unwrap();
    build_layout(tmp.path());
    let server = TestServer::start(tmp.path());
    let client = Client::new();
    init_with_root(&client, 1);
    client
        .download(
            &server,
            &["trusted_root.json"],
            &["--reference-time", REFERENCE_TIME],
        )
        .ok();
    assert_eq!(client.version("root"), 15);
    assert!(client.downloaded().contains_key("trusted_root.json"));
}

#[test]
fn without_reference_time_the_expired_metadata_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    build_layout(tmp.path());
    let server = TestServer::start(tmp.path());
    let client = Client::new();
    init_with_root(&client, 4);
    client
        .download(&server, &["trusted_root.json"], &[])
        .fails_with(&["expired"]);
    assert!(client.downloaded().is_empty());
}
