//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/canonical_json.rs"]
mod canonical_json;
#[path = "../fuzz/harness/parse_metadata.rs"]
mod parse_metadata;
#[path = "../fuzz/harness/path_pattern.rs"]
mod path_pattern;
#[path = "../fuzz/harness/public_key.rs"]
mod public_key;
#[path = "../fuzz/harness/trusted_update.rs"]
mod trusted_update;

replay_tests!(
    canonical_json,
    parse_metadata,
    path_pattern,
    public_key,
    trusted_update
);
