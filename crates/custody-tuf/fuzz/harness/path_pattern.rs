//! Delegation path patterns (fnmatch-like matcher) on arbitrary input.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/path_pattern.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_tuf::path_matches_pattern;

pub fn run(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let (pattern, target) = s.split_once('\u{0}').unwrap_or((&s, "a/b"));
    let _ = path_matches_pattern(target, pattern);
    // a pattern without metacharacters matches exactly itself
    if !pattern.contains(['*', '?', '[']) {
        assert_eq!(path_matches_pattern(target, pattern), target == pattern);
    }
}
