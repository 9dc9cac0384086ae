//! Presented credentials and scope strings never panic, and scopes that
//! parse print back to themselves.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/credential_and_scopes.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_server::fuzzing::PresentedCredential;
use custody_server::fuzzing::{Scope, ScopeSet};

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = PresentedCredential::parse(s) {
        assert_eq!(c.id.len(), 24);
        assert!(!c.matches(""));
    }
    if let Ok(scope) = Scope::parse(s) {
        assert_eq!(scope.to_string(), s);
    }
    if let Ok(set) = ScopeSet::parse_all(s.split(' ')) {
        let _ = set.separation_of_duties_conflict();
    }
}
