//! cargo-fuzz target `rollback_authorization`. What it feeds and asserts is described in
//! `harness/rollback_authorization.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/rollback_authorization.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
