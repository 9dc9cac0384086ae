//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/image.rs"]
mod image;
#[path = "../fuzz/harness/versions.rs"]
mod versions;

replay_tests!(image, versions);
