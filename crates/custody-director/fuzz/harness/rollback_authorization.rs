//! Untrusted rollback authorisations (admin uploads).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/rollback_authorization.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use chrono::{TimeZone, Utc};
use custody_director::policy::{RollbackAuthorization, RollbackKeys};

pub fn run(data: &[u8]) {
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
}
