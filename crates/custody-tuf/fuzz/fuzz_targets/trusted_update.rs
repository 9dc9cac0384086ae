//! The state machine with a real trusted root (sigstore root 15) and fuzzed
//! bytes for every update call.
#![no_main]
use custody_tuf::TrustedMetadata;
use libfuzzer_sys::fuzz_target;

const ROOT: &[u8] = include_bytes!("../../../../../shared/fixtures/sigstore-root-signing/metadata/root_history/15.root.json");

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_787_000_000, 0).unwrap_or_default();
    let Ok(mut t) = TrustedMetadata::new(ROOT) else { return };
    let _ = t.update_root(data);
    let _ = t.update_timestamp(data, now);
    let _ = t.update_snapshot(data, now, true);
    let _ = t.update_snapshot(data, now, false);
    let _ = t.update_targets(data, now);
    let _ = t.update_delegated_targets(data, "x", "targets", now);
});
