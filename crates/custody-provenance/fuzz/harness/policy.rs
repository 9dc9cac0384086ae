//! Policy files (TOML and JSON) and the rule matcher on arbitrary input.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/policy.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_provenance::Policy;

pub fn run(data: &[u8]) {
    for name in ["p.toml", "p.json"] {
        if let Ok(p) = Policy::from_file_contents(name, data) {
            let _ = p.rule_for("firmware/a.bin", Some("role"));
            let _ = p.unattested_pattern("docs/a");
        }
    }
}
