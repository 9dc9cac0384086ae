//! Key-file bytes (PEM, PKCS#8 PBES2, the decrypted PKCS#8) must never panic.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/key_file.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

pub fn run(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custody_repo::keyfile::load_pem(std::path::Path::new("fuzz.pem"), s, b"pw");
    }
}
