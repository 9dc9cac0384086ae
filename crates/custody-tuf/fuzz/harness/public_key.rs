//! Key material parsing (hex points, PEM SPKI via spki/der) and verification
//! with arbitrary signatures.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/public_key.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_tuf::{Key, PublicKey};

const TYPES: [(&str, &str); 5] = [
    ("ed25519", "ed25519"),
    ("ecdsa", "ecdsa-sha2-nistp256"),
    ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
    ("rsa", "rsassa-pss-sha256"),
    ("ecdsa", "ecdsa-sha2-nistp384"),
];

pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (keytype, scheme) = TYPES[usize::from(sel) % TYPES.len()];
    let split = rest.len() / 2;
    let (public, sig) = rest.split_at(split);
    let public = String::from_utf8_lossy(public).into_owned();
    let key: Key = match serde_json::from_value(serde_json::json!({
        "keytype": keytype, "scheme": scheme, "keyval": {"public": public}
    })) {
        Ok(k) => k,
        Err(_) => return,
    };
    if let Ok(pk) = PublicKey::from_key(&key) {
        let _ = pk.verify(b"message", sig);
    }
}
