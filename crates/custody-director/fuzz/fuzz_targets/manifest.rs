//! Untrusted manifest bytes: parse, then verify against a fixed device.
#![no_main]
use custody_director::wire::SignedManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SignedManifest::from_bytes(data) {
        let _ = m.signed.running();
        let _ = m.signed.max_release_counter();
        let _ = m.to_bytes();
    }
});
