//! Device keys and device ids.
//!
//! **Device id rule**: a device's id is the TUF key id of its custody key
//! (hex SHA-256 of the canonical JSON of the key, custody-tuf's
//! [`custody_tuf::Key::key_id`]). It is derived, not assigned: nobody can
//! enrol a second device under an existing id without that device's key,
//! the id is the same on the device and on the server without a round trip,
//! and a new key is a new device (re-enrolment). A UUID would need a lookup
//! table from key to id and would let an id outlive its key.
//!
//! Device keys: Ed25519 (default) or ECDSA P-256 (secure elements that only
//! do P-256). Other TUF key types are refused at enrolment.
//!
//! [`MemorySigner`] is an in-memory key implementing custody-repo's
//! [`Signer`]: the device simulator in tests and benches, and the shape an
//! agent's key store takes. The director's online key is any [`Signer`]
//! (key file or PKCS#11).

use custody_repo::{KeyType, Signer, SignerError, TufPublicKey};
use custody_tuf::{Algorithm, Key, PublicKey};
use ring::rand::SystemRandom;
use ring::signature::{self as rsig, KeyPair};

/// Why a device key is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// custody-tuf cannot use the key (unknown type, malformed material).
    #[error("device key ({keytype}/{scheme}) is unusable: {reason}")]
    Unusable {
        /// keytype field
        keytype: String,
        /// scheme field
        scheme: String,
        /// custody-tuf's reason
        reason: String,
    },
    /// A usable key of a type devices may not use.
    #[error("device key type {found:?} is not allowed: device keys are ed25519 (default) or ecdsa-sha2-nistp256")]
    NotAllowed {
        /// what was offered
        found: String,
    },
    /// The key id could not be computed.
    #[error("device key id: {0}")]
    KeyId(String),
}

/// Parse a device key: usable by custody-tuf and Ed25519 or ECDSA P-256.
pub fn device_public_key(key: &Key) -> Result<PublicKey, KeyError> {
    let pk = PublicKey::from_key(key).map_err(|reason| KeyError::Unusable {
        keytype: key.keytype.clone(),
        scheme: key.scheme.clone(),
        reason,
    })?;
    match pk.algorithm() {
        Algorithm::Ed25519 | Algorithm::EcdsaP256Sha256 => Ok(pk),
        other => Err(KeyError::NotAllowed {
            found: format!("{other:?}"),
        }),
    }
}

/// The device id of a key (its TUF key id, 64 lowercase hex).
pub fn device_id_for_key(key: &Key) -> Result<String, KeyError> {
    key.key_id().map_err(|e| KeyError::KeyId(e.to_string()))
}

/// True if `s` has the shape of a device id (64 lowercase hex digits).
pub fn is_device_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

enum Inner {
    Ed25519(rsig::Ed25519KeyPair),
    P256(rsig::EcdsaKeyPair),
}

/// An in-memory Ed25519 or ECDSA P-256 private key (ring).
pub struct MemorySigner {
    inner: Inner,
    key: TufPublicKey,
    keyid: String,
    key_type: KeyType,
    rng: SystemRandom,
}

impl std::fmt::Debug for MemorySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySigner")
            .field("keyid", &self.keyid)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

fn tuf_key(kt: KeyType, public: String) -> TufPublicKey {
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

impl MemorySigner {
    /// A fresh Ed25519 key.
    pub fn generate_ed25519() -> Result<Self, SignerError> {
        let rng = SystemRandom::new();
        let doc = rsig::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SignerError::Generate("ed25519: ring key generation failed".into()))?;
        Self::from_pkcs8(KeyType::Ed25519, doc.as_ref())
    }

    /// A fresh ECDSA P-256 key.
    pub fn generate_p256() -> Result<Self, SignerError> {
        let rng = SystemRandom::new();
        let doc = rsig::EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| {
            SignerError::Generate("ecdsa-p256: ring key generation failed".into())
        })?;
        Self::from_pkcs8(KeyType::EcdsaP256, doc.as_ref())
    }

    /// Load an unencrypted PKCS#8 DER key of type `kt` (Ed25519 or P-256).
    pub fn from_pkcs8(kt: KeyType, der: &[u8]) -> Result<Self, SignerError> {
        let rng = SystemRandom::new();
        let bad = |d: &str| SignerError::Generate(format!("{kt}: {d}"));
        let (inner, key) = match kt {
            KeyType::Ed25519 => {
                let kp = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| bad(&e.to_string()))?;
                let key = tuf_key(kt, hex::encode(kp.public_key().as_ref()));
                (Inner::Ed25519(kp), key)
            }
            KeyType::EcdsaP256 => {
                let kp = rsig::EcdsaKeyPair::from_pkcs8(
                    &rsig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    der,
                    &rng,
                )
                .map_err(|e| bad(&e.to_string()))?;
                // TUF "ecdsa" keys: hex uncompressed point is accepted by
                // custody-tuf; keytype/scheme per custody-repo's KeyType.
                let key = tuf_key(kt, hex::encode(kp.public_key().as_ref()));
                (Inner::P256(kp), key)
            }
            other => return Err(bad(&format!("{other} is not a device key type"))),
        };
        let keyid = key
            .key_id()
            .map_err(|e| SignerError::Encode(e.to_string()))?;
        Ok(MemorySigner {
            inner,
            key,
            keyid,
            key_type: kt,
            rng,
        })
    }
}

impl Signer for MemorySigner {
    fn key(&self) -> &TufPublicKey {
        &self.key
    }
    fn keyid(&self) -> &str {
        &self.keyid
    }
    fn key_type(&self) -> KeyType {
        self.key_type
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
        match &self.inner {
            Inner::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Inner::P256(k) => k
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignerError::Sign {
                    keyid: self.keyid.clone(),
                    detail: "ring ECDSA signing failed".into(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_is_key_id_and_keys_verify() {
        for s in [
            MemorySigner::generate_ed25519().unwrap(),
            MemorySigner::generate_p256().unwrap(),
        ] {
            let id = device_id_for_key(s.key()).unwrap();
            assert_eq!(id, s.keyid());
            assert!(is_device_id(&id));
            let pk = device_public_key(s.key()).unwrap();
            let sig = s.sign(b"m").unwrap();
            assert!(pk.verify(b"m", &sig));
            assert!(!pk.verify(b"n", &sig));
        }
    }

    #[test]
    fn rejects_other_key_types() {
        let mut k = MemorySigner::generate_ed25519().unwrap().key().clone();
        k.scheme = "rsassa-pss-sha256".into();
        k.keytype = "rsa".into();
        assert!(matches!(
            device_public_key(&k),
            Err(KeyError::Unusable { .. })
        ));
    }
}
