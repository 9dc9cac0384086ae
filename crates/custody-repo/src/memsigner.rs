//! An Ed25519 key held only in memory: for tests, benchmarks and tools that
//! build throwaway repositories. Never written anywhere; a repository signed
//! with it can only be changed again by the same process. Production keys
//! live in key files or on tokens.
use ring::signature::{self as rsig, KeyPair};

use crate::error::SignerError;
use crate::keys::{ed25519_key, keyid, KeyType, TufPublicKey};
use crate::signer::Signer;

/// An in-memory Ed25519 signer.
pub struct MemorySigner {
    public: TufPublicKey,
    keyid: String,
    pair: rsig::Ed25519KeyPair,
}

impl std::fmt::Debug for MemorySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySigner")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl MemorySigner {
    /// A fresh random Ed25519 key.
    pub fn generate() -> Result<MemorySigner, SignerError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = rsig::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SignerError::Encode("ring could not generate an Ed25519 key".into()))?;
        let pair = rsig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| SignerError::Encode(format!("ring rejected its own key: {e}")))?;
        let public = ed25519_key(pair.public_key().as_ref());
        let keyid = keyid(&public)?;
        Ok(MemorySigner {
            public,
            keyid,
            pair,
        })
    }
}

impl Signer for MemorySigner {
    fn key(&self) -> &TufPublicKey {
        &self.public
    }
    fn keyid(&self) -> &str {
        &self.keyid
    }
    fn key_type(&self) -> KeyType {
        KeyType::Ed25519
    }
    fn as_sync(&self) -> Option<&(dyn Signer + Sync)> {
        Some(self)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.pair.sign(msg).as_ref().to_vec())
    }
}
