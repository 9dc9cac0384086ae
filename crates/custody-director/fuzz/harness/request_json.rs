//! Untrusted JSON-form signed requests (relays, USB bundles).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/request_json.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_director::wire::SignedRequest;

pub fn run(data: &[u8]) {
    if let Ok(r) = SignedRequest::from_bytes(data) {
        let _ = custody_director::request::request_message(
            &r.method,
            &r.path,
            &r.device_id,
            r.timestamp,
            &r.nonce,
            &r.body,
        );
    }
}
