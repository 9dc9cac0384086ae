//! The state machine with a real trusted root (sigstore root 15) and fuzzed
//! bytes for every update call.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/trusted_update.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use std::sync::OnceLock;

use custody_tuf::TrustedMetadata;

/// Verified once, cloned per input (root verification dominates otherwise).
static TRUSTED: OnceLock<Option<TrustedMetadata>> = OnceLock::new();

/// Sigstore's root-signing `root_history/15.root.json`, copied from the
/// shared fixture into the crate so the target and its replay build anywhere.
const ROOT: &[u8] = include_bytes!("../data/sigstore-root-15.root.json");

pub fn run(data: &[u8]) {
    let now = chrono::DateTime::from_timestamp(1_787_000_000, 0).unwrap_or_default();
    let Some(mut t) = TRUSTED
        .get_or_init(|| TrustedMetadata::new(ROOT).ok())
        .clone()
    else {
        return;
    };
    let _ = t.update_root(data);
    let _ = t.update_timestamp(data, now);
    let _ = t.update_snapshot(data, now, true);
    let _ = t.update_snapshot(data, now, false);
    let _ = t.update_targets(data, now);
    let _ = t.update_delegated_targets(data, "x", "targets", now);
}
