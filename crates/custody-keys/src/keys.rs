//! TUF public keys as custody writes them, and the key types it can create.
//!
//! The JSON shape is the TUF one: `{"keytype", "scheme", "keyval": {"public"}}`
//! with the securesystemslib encodings (hex for ed25519, SPKI PEM for ecdsa
//! and rsa), so python-tuf and tough read the keys custody writes.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SignerError;

/// The key types custody can generate and sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    RsaPss,
}

impl KeyType {
    pub const ALL: [KeyType; 4] = [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::RsaPss,
    ];

    /// The command-line / config name.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::RsaPss => "rsa-pss",
        }
    }

    /// TUF `keytype` field.
    pub fn tuf_keytype(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => "ecdsa",
            KeyType::RsaPss => "rsa",
        }
    }

    /// TUF `scheme` field.
    pub fn tuf_scheme(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
            KeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
            KeyType::RsaPss => "rsassa-pss-sha256",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown key type {s:?}: expected one of ed25519, ecdsa-p256, ecdsa-p384, rsa-pss")
            })
    }
}

/// A TUF public key object (custody-tuf's schema type).
pub type TufPublicKey = custody_tuf::Key;

/// TUF key id of `key`: hex SHA-256 of its canonical JSON (custody-tuf's rule).
pub fn keyid(key: &TufPublicKey) -> Result<String, SignerError> {
    key.key_id().map_err(|e| SignerError::Encode(e.to_string()))
}

/// The custody key type of a TUF key, if it is one custody can sign with.
pub fn key_type_of(key: &TufPublicKey) -> Option<KeyType> {
    KeyType::ALL.into_iter().find(|kt| {
        key.scheme == kt.tuf_scheme()
            && (key.keytype == kt.tuf_keytype() || key.keytype == kt.tuf_scheme())
    })
}

/// A TUF key of type `kt` whose `keyval.public` is `public` (already in
/// the encoding the type uses).
pub(crate) fn new_key(kt: KeyType, public: String) -> TufPublicKey {
    custody_tuf::Key {
        keytype: kt.tuf_keytype().to_owned(),
        scheme: kt.tuf_scheme().to_owned(),
        keyval: custody_tuf::KeyVal {
            public: Some(public),
            unknown: Default::default(),
        },
        unknown: Default::default(),
    }
}

/// TUF form of an Ed25519 key (hex of the 32 raw bytes).
pub fn ed25519_key(raw: &[u8]) -> TufPublicKey {
    new_key(KeyType::Ed25519, hex::encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keytype_round_trips_and_rejects_unknown() {
        for kt in KeyType::ALL {
            assert_eq!(kt.name().parse::<KeyType>(), Ok(kt));
        }
        let err = "rsa".parse::<KeyType>().unwrap_err();
        assert!(err.contains("rsa-pss"), "{err}");
    }

    #[test]
    fn keyid_is_sha256_of_sorted_compact_json() {
        let k = ed25519_key(&[0xab; 32]);
        let cjson = custody_tuf::cjson::canonical_bytes("key", &k).unwrap();
        let expected = format!(
            "{{\"keytype\":\"ed25519\",\"keyval\":{{\"public\":\"{}\"}},\"scheme\":\"ed25519\"}}",
            "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(cjson).unwrap(), expected);
        let want = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            expected.as_bytes(),
        ));
        assert_eq!(keyid(&k).unwrap(), want);
        assert_eq!(key_type_of(&k), Some(KeyType::Ed25519));
    }
}
