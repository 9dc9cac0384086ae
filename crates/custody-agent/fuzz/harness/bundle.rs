//! Untrusted bundle bytes (a USB stick): parse the preamble and header,
//! decode the image metadata.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/bundle.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_agent::bundle::Bundle;

pub fn run(data: &[u8]) {
    if let Ok((h, start)) = Bundle::parse_bytes(data) {
        assert!(start <= data.len() as u64);
        for p in &h.payloads {
            assert!(start + p.offset + p.length <= data.len() as u64);
        }
    }
}
