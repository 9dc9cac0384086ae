//! Entry bundles: no panic; accepted bundles re-encode to the input; the
//! check against a level-0 tile never panics.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/entry_bundle.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_log::tile::{check_bundle_against_tile, encode_entry_bundle, parse_entry_bundle};

pub fn run(data: &[u8]) {
    if let Ok(entries) = parse_entry_bundle(data) {
        assert!(entries.len() <= 256);
        assert_eq!(encode_entry_bundle(&entries).unwrap(), data);
        let tile: Vec<u8> = entries
            .iter()
            .flat_map(|e| custody_log::leaf_hash(e))
            .collect();
        check_bundle_against_tile(&entries, &tile).unwrap();
        let _ = check_bundle_against_tile(&entries, data);
    }
}
