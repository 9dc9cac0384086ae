//! Untrusted HTTP header values of a signed request: the input is split on
//! 0x00 into device, timestamp, nonce, signature, method, path, body.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/request_headers.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_director::wire::SignedRequest;

pub fn run(data: &[u8]) {
    let mut parts = data.splitn(7, |b| *b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (d, t, n, s, m, p) = (next(), next(), next(), next(), next(), next());
    let body = next().into_bytes();
    let _ = SignedRequest::from_headers(&d, &t, &n, &s, &m, &p, body);
}
