//! Untrusted in-toto statement bytes (a DSSE payload) and SLSA predicate.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/parse_statement.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_provenance::{Limits, Provenance, Statement};

pub fn run(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(st) = Statement::parse(data, &limits) {
        let bytes = serde_json::to_vec(&st).expect("serialise");
        assert_eq!(Statement::parse(&bytes, &limits).expect("re-parse"), st);
        if let Some(p) = &st.predicate {
            if let Ok(prov) = Provenance::from_value(p) {
                let _ = prov.source();
                let v = serde_json::to_value(&prov).expect("serialise");
                assert_eq!(Provenance::from_value(&v).expect("re-parse"), prov);
            }
        }
    }
    let _ = custody_provenance::slsa::parse_git_uri(&String::from_utf8_lossy(data));
}
