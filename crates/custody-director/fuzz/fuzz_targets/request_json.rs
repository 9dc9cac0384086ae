//! Untrusted JSON-form signed requests (relays, USB bundles).
#![no_main]
use custody_director::wire::SignedRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SignedRequest::from_bytes(data) {
        let _ = custody_director::request::request_message(
            &r.method,
            &r.path,
            &r.device_id,
            r.timestamp,
            &r.nonce,
            &r.body,
        );
    }
});
