//! Untrusted DSSE envelope bytes, then whatever payload they carry.
#![no_main]
use custody_provenance::{Envelope, Limits, Provenance, Statement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
