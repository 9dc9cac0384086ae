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
//! Device keys are held by custody-keys' signers (an agent's key store
//! loads them into a `custody_keys::MemorySigner`); the director's online
//! key is any `custody_keys::Signer` (key file or PKCS#11).

use custody_tuf::{Algorithm, Key, PublicKey};

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

#[cfg(test)]
mod tests {
    use super::*;
    use custody_keys::{MemorySigner, Signer};

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
