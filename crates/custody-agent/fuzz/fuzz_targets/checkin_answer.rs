//! cargo-fuzz target `checkin_answer`. What it feeds and asserts is described in
//! `harness/checkin_answer.rs`, whose `run` is also what `tests/fuzz_corpus.rs` feeds
//! every committed corpus input (stable `cargo test`).
#![no_main]

#[path = "../harness/checkin_answer.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
