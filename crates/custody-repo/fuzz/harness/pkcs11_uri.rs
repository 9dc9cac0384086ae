//! PKCS#11 URIs (from config files and the command line) must never panic.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/pkcs11_uri.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

pub fn run(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<custody_repo::pkcs11::Pkcs11Uri>();
    }
}
