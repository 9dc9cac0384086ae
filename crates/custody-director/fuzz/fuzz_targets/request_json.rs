//! cargo-fuzz target `request_json`. What it feeds and asserts is described in
//! `harness/request_json.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/request_json.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
