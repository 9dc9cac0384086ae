//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/bundle.rs"]
mod bundle;
#[path = "../fuzz/harness/checkin_answer.rs"]
mod checkin_answer;
#[path = "../fuzz/harness/log_evidence.rs"]
mod log_evidence;

replay_tests!(bundle, checkin_answer, log_evidence);
