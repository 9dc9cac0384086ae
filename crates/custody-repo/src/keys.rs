//! TUF public keys as custody writes them, and the key types it can create.
//!
//! The JSON shape is the TUF one: `{"keytype", "scheme", "keyval": {"public"}}`
//! with the securesystemslib encodings (hex for ed25519, SPKI PEM for ecdsa
//! and rsa), so python-tuf and tough read the keys custody writes.
use std::fmt;
use std::str::FromStr;

use pkcs8::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use pkcs8::der::{Encode, EncodePem};
use pkcs8::LineEnding;
use serde::{Deserialize, Serialize};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::error::SignerError;

/// id-ecPublicKey (RFC 5480).
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1.
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub(crate) const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption (RFC 8017).
pub(crate) const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-Ed25519 (RFC 8410).
pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// RSA modulus size custody generates. NIST SP 800-57: 3072 bits for
/// security beyond 2030; TUF root keys live for years.
pub const RSA_GENERATE_BITS: usize = 3072;

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
pub(crate) fn ed25519_key(raw: &[u8]) -> TufPublicKey {
    new_key(KeyType::Ed25519, hex::encode(raw))
}

/// TUF form of an EC key from its uncompressed SEC1 point.
pub(crate) fn ecdsa_key(kt: KeyType, point: &[u8]) -> Result<TufPublicKey, SignerError> {
    let curve = match kt {
        KeyType::EcdsaP256 => OID_P256,
        KeyType::EcdsaP384 => OID_P384,
        other => {
            return Err(SignerError::Encode(format!(
                "{other} is not an ECDSA key type"
            )))
        }
    };
    let curve_der = curve
        .to_der()
        .map_err(|e| SignerError::Encode(e.to_string()))?;
    let params =
        AnyRef::try_from(curve_der.as_slice()).map_err(|e| SignerError::Encode(e.to_string()))?;
    let pem = spki_pem(OID_EC_PUBLIC_KEY, Some(params), point)?;
    Ok(new_key(kt, pem))
}

/// TUF form of an RSA key from its PKCS#1 RSAPublicKey DER.
pub(crate) fn rsa_key(pkcs1_der: &[u8]) -> Result<TufPublicKey, SignerError> {
    let pem = spki_pem(OID_RSA, Some(AnyRef::NULL), pkcs1_der)?;
    Ok(new_key(KeyType::RsaPss, pem))
}

/// Encode a SubjectPublicKeyInfo as PEM ("PUBLIC KEY", LF line endings, final newline).
fn spki_pem(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    key: &[u8],
) -> Result<String, SignerError> {
    let spki = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(key)
            .map_err(|e| SignerError::Encode(e.to_string()))?,
    };
    spki.to_pem(LineEnding::LF)
        .map_err(|e| SignerError::Encode(e.to_string()))
}

/// Encode a DER INTEGER SEQUENCE `SEQUENCE { a INTEGER, b INTEGER }` from two
/// unsigned big-endian integers (ECDSA-Sig-Value, PKCS#1 RSAPublicKey).
pub(crate) fn der_uint_pair(a: &[u8], b: &[u8]) -> Result<Vec<u8>, SignerError> {
    use pkcs8::der::asn1::UintRef;
    use pkcs8::der::Tag;
    let enc = |x: &[u8]| -> Result<Vec<u8>, SignerError> {
        UintRef::new(x)
            .and_then(|u| u.to_der())
            .map_err(|e| SignerError::Encode(e.to_string()))
    };
    let mut body = enc(a)?;
    body.extend(enc(b)?);
    AnyRef::new(Tag::Sequence, &body)
        .and_then(|any| any.to_der())
        .map_err(|e| SignerError::Encode(e.to_string()))
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

    #[test]
    fn der_uint_pair_strips_and_pads() {
        // r has a leading zero that must be stripped, s a high bit that needs 0x00.
        let der = der_uint_pair(&[0x00, 0x01], &[0x80]).unwrap();
        assert_eq!(
            der,
            vec![0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80]
        );
    }
}
