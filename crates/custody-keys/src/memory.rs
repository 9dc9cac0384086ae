//! An Ed25519 or ECDSA P-256 private key held in memory (ring).
//!
//! Two kinds of caller: tests, benchmarks and tools that build throwaway
//! repositories ([`MemorySigner::generate_ed25519`]: never written
//! anywhere, so a repository signed with it can only be changed again by
//! the same process), and device key stores that keep an unencrypted
//! PKCS#8 document themselves and load it with [`MemorySigner::from_pkcs8`]
//! (custody-agent's key file). Production repository keys live in key
//! files or on tokens (features `file`, `pkcs11`).
//!
//! Public key encoding: Ed25519 as hex of the 32 raw bytes (as everywhere),
//! ECDSA P-256 as hex of the uncompressed SEC1 point, which custody-tuf
//! accepts. A device's id is the key id of this exact JSON, so the encoding
//! must not change: a different encoding would be a different device.
use ring::rand::SystemRandom;
use ring::signature::{self as rsig, KeyPair};

use crate::error::SignerError;
use crate::keys::{keyid, new_key, KeyType, TufPublicKey};
use crate::signer::Signer;

/// A ring private key: the one signing implementation of every
/// in-process backend (this module's keys and decrypted key files).
pub(crate) enum RingKey {
    Ed25519(rsig::Ed25519KeyPair),
    Ecdsa(rsig::EcdsaKeyPair),
    /// only key files hold RSA keys
    #[cfg(feature = "file")]
    Rsa(rsig::RsaKeyPair),
}

impl RingKey {
    fn sign(&self, rng: &SystemRandom, msg: &[u8]) -> Result<Vec<u8>, &'static str> {
        match self {
            RingKey::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            RingKey::Ecdsa(k) => k
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ring ECDSA signing failed"),
            #[cfg(feature = "file")]
            RingKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&rsig::RSA_PSS_SHA256, rng, msg, &mut sig)
                    .map_err(|_| "ring RSA-PSS signing failed")?;
                Ok(sig)
            }
        }
    }
}

/// An in-memory signer: Ed25519 or ECDSA P-256 from [`MemorySigner::from_pkcs8`]
/// and the generators; key files ([`crate::keyfile`]) hold one too.
pub struct MemorySigner {
    inner: RingKey,
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

impl MemorySigner {
    /// A fresh random Ed25519 key.
    pub fn generate_ed25519() -> Result<Self, SignerError> {
        let rng = SystemRandom::new();
        let doc = rsig::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SignerError::Generate("ed25519: ring key generation failed".into()))?;
        Self::from_pkcs8(KeyType::Ed25519, doc.as_ref())
    }

    /// A fresh random ECDSA P-256 key.
    pub fn generate_p256() -> Result<Self, SignerError> {
        let rng = SystemRandom::new();
        let doc = rsig::EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| {
            SignerError::Generate("ecdsa-p256: ring key generation failed".into())
        })?;
        Self::from_pkcs8(KeyType::EcdsaP256, doc.as_ref())
    }

    /// Load an unencrypted PKCS#8 DER key of type `kt` (Ed25519 or P-256;
    /// other types are refused).
    pub fn from_pkcs8(kt: KeyType, der: &[u8]) -> Result<Self, SignerError> {
        let rng = SystemRandom::new();
        let bad = |d: &str| SignerError::Generate(format!("{kt}: {d}"));
        let (inner, key) = match kt {
            KeyType::Ed25519 => {
                // maybe_unchecked: PKCS#8 v1 (no public key) too; ring
                // derives the public key from the seed.
                let kp = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| bad(&e.to_string()))?;
                let key = new_key(kt, hex::encode(kp.public_key().as_ref()));
                (RingKey::Ed25519(kp), key)
            }
            KeyType::EcdsaP256 => {
                let kp = rsig::EcdsaKeyPair::from_pkcs8(
                    &rsig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    der,
                    &rng,
                )
                .map_err(|e| bad(&e.to_string()))?;
                let key = new_key(kt, hex::encode(kp.public_key().as_ref()));
                (RingKey::Ecdsa(kp), key)
            }
            other => {
                return Err(bad(&format!(
                    "{other} is not an in-memory key type (ed25519, ecdsa-p256)"
                )))
            }
        };
        Self::from_parts(inner, key, kt)
    }

    /// A signer from a loaded ring key and its TUF public key (whose
    /// encoding the caller chose: it fixes the key id).
    pub(crate) fn from_parts(
        inner: RingKey,
        key: TufPublicKey,
        key_type: KeyType,
    ) -> Result<Self, SignerError> {
        let keyid = keyid(&key)?;
        Ok(MemorySigner {
            inner,
            key,
            keyid,
            key_type,
            rng: SystemRandom::new(),
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
    fn as_sync(&self) -> Option<&(dyn Signer + Sync)> {
        Some(self)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.inner
            .sign(&self.rng, msg)
            .map_err(|detail| SignerError::Sign {
                keyid: self.keyid.clone(),
                detail: detail.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_what_custody_tuf_verifies() {
        for (s, kt) in [
            (MemorySigner::generate_ed25519().unwrap(), KeyType::Ed25519),
            (MemorySigner::generate_p256().unwrap(), KeyType::EcdsaP256),
        ] {
            assert_eq!(s.key_type(), kt);
            assert_eq!(crate::keys::key_type_of(s.key()), Some(kt));
            assert_eq!(s.keyid(), s.key().key_id().unwrap());
            let pk = custody_tuf::PublicKey::from_key(s.key()).unwrap();
            let sig = s.sign(b"m").unwrap();
            assert!(pk.verify(b"m", &sig), "{kt}");
            assert!(!pk.verify(b"n", &sig), "{kt}");
            assert!(s.as_sync().is_some());
        }
    }

    #[test]
    fn from_pkcs8_reloads_the_same_key_and_refuses_others() {
        let rng = SystemRandom::new();
        let doc = rsig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let a = MemorySigner::from_pkcs8(KeyType::Ed25519, doc.as_ref()).unwrap();
        let b = MemorySigner::from_pkcs8(KeyType::Ed25519, doc.as_ref()).unwrap();
        assert_eq!(a.keyid(), b.keyid());
        // A document of one type offered as another, and types this signer
        // does not hold, are errors naming the type.
        let e = MemorySigner::from_pkcs8(KeyType::EcdsaP256, doc.as_ref()).unwrap_err();
        assert!(e.to_string().contains("ecdsa-p256"), "{e}");
        let e = MemorySigner::from_pkcs8(KeyType::RsaPss, doc.as_ref()).unwrap_err();
        assert!(e.to_string().contains("rsa-pss"), "{e}");
        assert!(MemorySigner::from_pkcs8(KeyType::Ed25519, b"garbage").is_err());
    }
}
