//! Request paths under /repos/: whatever is accepted names a plain
//! repository, and target segments that cannot leave their directory.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/host_path.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_server::fuzzing::{parse_host_path, Area};

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let raw = format!("/repos/{s}");
    if let Ok(p) = parse_host_path(&raw) {
        assert!(custody_server::fuzzing::validate_repo_name(&p.repo).is_ok());
        assert!(!p.segments.is_empty());
        for seg in &p.segments {
            assert!(!seg.is_empty());
            assert!(!seg.starts_with('.'), "{raw}: {seg}");
            assert!(!seg.contains(['/', '\\', '\0']), "{raw}: {seg}");
        }
        if p.area == Area::Metadata {
            assert_eq!(p.segments.len(), 1);
        }
    }
}
