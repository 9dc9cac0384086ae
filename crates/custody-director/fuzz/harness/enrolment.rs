//! Untrusted enrolment requests: parse, decode the chain, run enrolment
//! (token path against an empty store, factory path with no CA).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/enrolment.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use chrono::{TimeZone, Utc};
use custody_director::enrol::{enrol, EnrolmentPolicy, MemoryTokenStore};
use custody_director::wire::EnrolmentRequest;

pub fn run(data: &[u8]) {
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
}
