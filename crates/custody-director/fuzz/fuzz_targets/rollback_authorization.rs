//! Untrusted rollback authorisations (admin uploads).
#![no_main]
use chrono::{TimeZone, Utc};
use custody_director::policy::{RollbackAuthorization, RollbackKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = RollbackAuthorization::from_bytes(data) {
        let keys = RollbackKeys {
            keys: Default::default(),
            threshold: 1,
        };
        let now = Utc
            .timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_default();
        let _ = a.verify(&keys, "d", &a.signed.target, a.signed.release_counter, now);
    }
});
