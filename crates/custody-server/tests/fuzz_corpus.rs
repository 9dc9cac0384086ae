//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/admin_token.rs"]
mod admin_token;
#[path = "../fuzz/harness/credential_and_scopes.rs"]
mod credential_and_scopes;
#[path = "../fuzz/harness/host_path.rs"]
mod host_path;
#[path = "../fuzz/harness/json_bodies.rs"]
mod json_bodies;
#[path = "../fuzz/harness/range_header.rs"]
mod range_header;

replay_tests!(
    admin_token,
    credential_and_scopes,
    host_path,
    json_bodies,
    range_header
);
