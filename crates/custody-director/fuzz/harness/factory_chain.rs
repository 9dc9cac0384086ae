//! Untrusted certificate bytes into factory identity verification, both as a
//! trust anchor candidate and as the presented chain (split on a 0xff 0x00
//! 0xff marker into leaf, intermediate).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/factory_chain.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use chrono::{TimeZone, Utc};
use custody_director::enrol::{verify_factory_identity, FactoryCas};

pub fn run(data: &[u8]) {
    let now = Utc
        .timestamp_opt(1_700_000_000, 0)
        .single()
        .unwrap_or_default();
    let chain: Vec<Vec<u8>> = data
        .windows(3)
        .position(|w| w == [0xff, 0x00, 0xff])
        .map(|i| vec![data[..i].to_vec(), data[i + 3..].to_vec()])
        .unwrap_or_else(|| vec![data.to_vec()]);
    if let Ok(cas) = FactoryCas::new(vec![chain.last().cloned().unwrap_or_default()]) {
        let _ = verify_factory_identity(&cas, &chain, b"msg", b"sig", now);
    }
}
