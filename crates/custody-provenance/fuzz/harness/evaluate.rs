//! The whole decision on arbitrary envelope bytes under a fixed policy.
//! The policy key is fixed (seeded) so that the fuzzer can only win by
//! forging ed25519; every other path must refuse without panicking.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/evaluate.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use custody_provenance::{evaluate, Policy};
use ring::signature::{Ed25519KeyPair, KeyPair};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("seed");
        let toml = format!(
            r#"allow_unattested = ["docs/*"]
[[rule]]
name = "fw"
paths = ["firmware/*"]
builders = ["https://builder"]
build_types = ["https://actions.github.io/buildtypes/workflow/v1"]
sources = [{{ repository = "https://github.com/org/fw", refs = ["refs/heads/main"] }}]
[rule.signers]
threshold = 1
[rule.signers.keys.k]
keytype = "ed25519"
scheme = "ed25519"
keyval = {{ public = "{}" }}
"#,
            hex::encode(pair.public_key().as_ref())
        );
        Policy::from_toml("fuzz.toml", &toml).expect("policy")
    })
}

pub fn run(data: &[u8]) {
    let digests = BTreeMap::from([("sha256".to_owned(), "00".repeat(32))]);
    let _ = evaluate(policy(), "firmware/a", &digests, Some(data));
    let _ = evaluate(policy(), "docs/a", &digests, Some(data));
}
