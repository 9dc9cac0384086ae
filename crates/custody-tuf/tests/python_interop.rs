//! Interop with python-tuf (the reference implementation): a repository
//! built and signed by python-tuf (Ed25519 + ECDSA keys, a terminating path
//! delegation, TAP 15 succinct hash bins, sha256+sha512 hashes) is verified
//! end to end, and python-tuf's answers for bin names and path patterns are
//! compared with ours.

use std::path::PathBuf;
use std::process::Command;

use custody_tuf::{
    path_matches_pattern, SearchStep, SuccinctRoles, TargetSearch, TargetVerifier, TrustedMetadata,
};
use serde_json::Value;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CUSTODY_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "python-tuf not found: set CUSTODY_PYTHON or run ./scripts/test to create {}",
        p.display()
    );
    p
}

fn python_repo() -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/py_repo.py");
    let out = Command::new(python())
        .arg(&script)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "py_repo.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("py_repo.py output is JSON")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a [u8] {
    v[k].as_str().unwrap().as_bytes()
}

#[test]
fn python_tuf_repository_and_semantics() {
    let repo = python_repo();
    let now = "2026-01-01T00:00:00Z".parse().unwrap();

    let mut t = TrustedMetadata::new(s(&repo, "root")).unwrap();
    t.update_timestamp(s(&repo, "timestamp"), now).unwrap();
    t.update_snapshot(s(&repo, "snapshot"), now, false).unwrap();
    t.update_targets(s(&repo, "targets"), now).unwrap();

    let path = repo["target_path"].as_str().unwrap();
    let mut search = TargetSearch::new(path, 32);
    let mut loads = Vec::new();
    let found = loop {
        match search.next(&t).unwrap() {
            SearchStep::Found { role, target } => break (role, target),
            SearchStep::NotFound => panic!("{path} not found"),
            SearchStep::Load { role, delegator } => {
                let bytes = if role == "proj" {
                    s(&repo, "proj")
                } else {
                    repo["bins"][&role].as_str().unwrap().as_bytes()
                };
                t.update_delegated_targets(bytes, &role, &delegator, now)
                    .unwrap();
                loads.push(role);
            }
        }
    };
    assert_eq!(loads.len(), 2, "{loads:?}");
    assert_eq!(found.0, loads[1]);
    TargetVerifier::verify_all(
        path,
        &found.1,
        repo["target_data"].as_str().unwrap().as_bytes(),
    )
    .unwrap();

    // top-level target with sha256 + sha512
    let mut search = TargetSearch::new("top.txt", 32);
    let SearchStep::Found { target, .. } = search.next(&t).unwrap() else {
        panic!("top.txt")
    };
    assert_eq!(target.hashes.len(), 2);
    TargetVerifier::verify_all("top.txt", &target, b"top level\n").unwrap();

    // hash-bin names agree with python-tuf
    let checks = repo["bin_checks"].as_array().unwrap();
    for c in checks {
        let bit_length = c[0].as_u64().unwrap();
        let sr: SuccinctRoles = serde_json::from_value(serde_json::json!({"keyids": [], "threshold": 1, "bit_length": bit_length, "name_prefix": "p"})).unwrap();
        let p = c[1].as_str().unwrap();
        assert_eq!(
            sr.role_for_target(p),
            c[2].as_str().unwrap(),
            "bit_length {bit_length}, path {p:?}"
        );
        assert!(sr.is_bin(c[2].as_str().unwrap()));
    }

    // path patterns agree with python-tuf's per-segment fnmatch
    let checks = repo["pattern_checks"].as_array().unwrap();
    let mut mismatches = Vec::new();
    for c in checks {
        let (target, pattern, expected) = (
            c[0].as_str().unwrap(),
            c[1].as_str().unwrap(),
            c[2].as_bool().unwrap(),
        );
        if path_matches_pattern(target, pattern) != expected {
            mismatches.push((target.to_owned(), pattern.to_owned(), expected));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ from python-tuf, e.g. {:?}",
        mismatches.len(),
        checks.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}
