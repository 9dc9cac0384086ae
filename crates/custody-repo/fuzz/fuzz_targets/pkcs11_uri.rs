//! cargo-fuzz target `pkcs11_uri`. What it feeds and asserts is described in
//! `harness/pkcs11_uri.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/pkcs11_uri.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
