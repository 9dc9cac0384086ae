//! Bearer tokens from the network: verification never panics and never
//! accepts bytes it did not sign.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/admin_token.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_server::fuzzing::TokenKeys;

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let keys = TokenKeys::new(&[0x5a; 32]).expect("32-byte key");
    assert!(keys.verify(s).is_err());
}
