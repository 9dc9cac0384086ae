//! cargo-fuzz target `canonical_json`. What it feeds and asserts is described in
//! `harness/canonical_json.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/canonical_json.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
