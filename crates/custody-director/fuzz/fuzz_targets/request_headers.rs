//! Untrusted HTTP header values of a signed request: the input is split on
//! 0x00 into device, timestamp, nonce, signature, method, path, body.
#![no_main]
use custody_director::wire::SignedRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(7, |b| *b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (d, t, n, s, m, p) = (next(), next(), next(), next(), next(), next());
    let body = next().into_bytes();
    let _ = SignedRequest::from_headers(&d, &t, &n, &s, &m, &p, body);
});
