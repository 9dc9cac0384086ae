//! Debian and apk version order on any two strings: total, antisymmetric,
//! reflexive, and no panic.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/versions.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_scan::version::{apk_cmp, dpkg_cmp};

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = s.split_once('\n').unwrap_or((s, ""));
    for cmp in [dpkg_cmp, apk_cmp] {
        assert_eq!(cmp(a, b), cmp(b, a).reverse(), "{a:?} {b:?}");
        assert_eq!(cmp(a, a), std::cmp::Ordering::Equal, "{a:?}");
    }
}
