//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/evaluate.rs"]
mod evaluate;
#[path = "../fuzz/harness/parse_envelope.rs"]
mod parse_envelope;
#[path = "../fuzz/harness/parse_statement.rs"]
mod parse_statement;
#[path = "../fuzz/harness/policy.rs"]
mod policy;

replay_tests!(evaluate, parse_envelope, parse_statement, policy);
