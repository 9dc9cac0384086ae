//! Tile and entry bundle paths: no panic; accepted paths are canonical.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/tile_path.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_log::{parse_tile_path, TilePath};

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for p in [
        s.to_owned(),
        format!("tile/{s}"),
        format!("tile/entries/{s}"),
    ] {
        if let Ok(parsed) = parse_tile_path(&p) {
            let again = match parsed {
                TilePath::Tile(t) => t.path(),
                TilePath::Entries(b) => b.path(),
            };
            assert_eq!(again, p);
        }
    }
}
