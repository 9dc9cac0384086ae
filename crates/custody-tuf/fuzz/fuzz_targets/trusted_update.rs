//! The state machine with a real trusted root (sigstore root 15) and fuzzed
//! bytes for every update call.
#![no_main]
use std::sync::OnceLock;

use custody_tuf::TrustedMetadata;
use libfuzzer_sys::fuzz_target;

/// Verified once, cloned per input (root verification dominates otherwise).
static TRUSTED: OnceLock<Option<TrustedMetadata>> = OnceLock::new();

const ROOT: &[u8] = include_bytes!("../../../../../shared/fixtures/sigstore-root-signing/metadata/root_history/15.root.json");

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_787_000_000, 0).unwrap_or_default();
    let Some(mut t) = TRUSTED.get_or_init(|| TrustedMetadata::new(ROOT).ok()).clone() else { return };
    let _ = t.update_root(data);
    let _ = t.update_timestamp(data, now);
    let _ = t.update_snapshot(data, now, true);
    let _ = t.update_snapshot(data, now, false);
    let _ = t.update_targets(data, now);
    let _ = t.update_delegated_targets(data, "x", "targets", now);
});
