//! Strict JSON parser + canonical JSON: parse, canonicalise, re-parse must agree.
//! OLPC canonical JSON writes control characters inside strings raw (only `"`
//! and `\` are escaped), so its output is not always valid JSON: the re-parse
//! check applies when the output has no control bytes.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/canonical_json.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_tuf::cjson::{canonical_bytes, parse_strict};

pub fn run(data: &[u8]) {
    if let Ok(v) = parse_strict("fuzz", data) {
        let c = canonical_bytes("fuzz", &v).expect("strictly parsed values are canonicalisable");
        if c.iter().any(|&b| b < 0x20) {
            return;
        }
        let back = parse_strict("fuzz", &c).expect("canonical output re-parses");
        assert_eq!(back, v);
        assert_eq!(canonical_bytes("fuzz", &back).expect("idempotent"), c);
    }
}
