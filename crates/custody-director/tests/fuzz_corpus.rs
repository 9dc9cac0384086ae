//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/enrolment.rs"]
mod enrolment;
#[path = "../fuzz/harness/factory_chain.rs"]
mod factory_chain;
#[path = "../fuzz/harness/manifest.rs"]
mod manifest;
#[path = "../fuzz/harness/request_headers.rs"]
mod request_headers;
#[path = "../fuzz/harness/request_json.rs"]
mod request_json;
#[path = "../fuzz/harness/rollback_authorization.rs"]
mod rollback_authorization;

replay_tests!(
    enrolment,
    factory_chain,
    manifest,
    request_headers,
    request_json,
    rollback_authorization
);
