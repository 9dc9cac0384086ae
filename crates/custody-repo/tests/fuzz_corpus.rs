//! Replays every committed fuzz input of this crate (`fuzz/corpus/<target>/`,
//! `fuzz/seeds/<target>/`) through the function its cargo-fuzz target calls
//! (`fuzz/harness/<target>.rs`): stable toolchain, seconds, no libFuzzer.
//! Grow the corpus with `scripts/fuzz`.

#[macro_use]
#[path = "../../fuzz-support/replay.rs"]
mod fuzz_replay;

#[path = "../fuzz/harness/key_file.rs"]
mod key_file;
#[path = "../fuzz/harness/offline_signed_file.rs"]
mod offline_signed_file;
#[path = "../fuzz/harness/pkcs11_uri.rs"]
mod pkcs11_uri;

replay_tests!(key_file, offline_signed_file, pkcs11_uri);
