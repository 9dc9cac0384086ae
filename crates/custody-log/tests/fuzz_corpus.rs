//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/entry_bundle.rs"]
mod entry_bundle;
#[path = "../fuzz/harness/log_entry.rs"]
mod log_entry;
#[path = "../fuzz/harness/note_checkpoint.rs"]
mod note_checkpoint;
#[path = "../fuzz/harness/proof_verify.rs"]
mod proof_verify;
#[path = "../fuzz/harness/tile_path.rs"]
mod tile_path;

replay_tests!(
    entry_bundle,
    log_entry,
    note_checkpoint,
    proof_verify,
    tile_path
);
