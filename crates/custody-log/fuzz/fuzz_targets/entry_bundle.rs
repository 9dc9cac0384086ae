//! cargo-fuzz target `entry_bundle`. What it feeds and asserts is described in
//! `harness/entry_bundle.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/entry_bundle.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
