//! Untrusted manifest bytes: parse, then verify against a fixed device.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/manifest.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_director::wire::SignedManifest;

pub fn run(data: &[u8]) {
    if let Ok(m) = SignedManifest::from_bytes(data) {
        let _ = m.signed.running();
        let _ = m.signed.max_release_counter();
        let _ = m.to_bytes();
    }
}
