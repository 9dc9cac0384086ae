//! Untrusted DSSE envelope bytes, then whatever payload they carry.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/parse_envelope.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_provenance::{Envelope, Limits, Provenance, Statement};

pub fn run(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(e) = Envelope::parse(data, &limits) {
        let _ = e.signed_bytes();
        // round trip: what we parsed re-parses to the same envelope
        let again = Envelope::parse(&e.to_json(), &limits).expect("re-parse");
        assert_eq!(again, e);
        if let Ok(st) = Statement::parse(&e.payload, &limits) {
            if let Some(p) = &st.predicate {
                let _ = Provenance::from_value(p).map(|p| p.source());
            }
        }
    }
}
