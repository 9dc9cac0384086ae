//! Untrusted enrolment requests: parse, decode the chain, run enrolment
//! (token path against an empty store, factory path with no CA).
#![no_main]
use chrono::{TimeZone, Utc};
use custody_director::enrol::{enrol, EnrolmentPolicy, MemoryTokenStore};
use custody_director::wire::EnrolmentRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = EnrolmentRequest::from_bytes(data) {
        let _ = r.factory_chain_der();
        let now = Utc
            .timestamp_opt(r.signed.timestamp.clamp(0, 4_000_000_000), 0)
            .single();
        if let Some(now) = now {
            let _ = enrol(
                &r,
                now,
                &EnrolmentPolicy::default(),
                &MemoryTokenStore::default(),
                &|_| false,
            );
        }
    }
});
