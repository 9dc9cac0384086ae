//! cargo-fuzz target `factory_chain`. What it feeds and asserts is described in
//! `harness/factory_chain.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/factory_chain.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
