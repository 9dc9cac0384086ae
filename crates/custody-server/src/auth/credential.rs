//! Long-lived bootstrap credentials: `cst1.<id>.<secret>`.
//!
//! The secret is 256 bits from the OS RNG. The server stores only
//! SHA-256("custody-credential-v1" ‖ id ‖ secret). A slow password hash
//! (argon2) exists to make guessing *low-entropy* secrets expensive; a
//! 256-bit random secret cannot be guessed, so one fast hash is enough, and
//! it keeps token minting cheap. The id is public (it is the lookup key and
//! appears in audit records); the comparison is constant-time.

use base64::Engine;
use ring::rand::SecureRandom;

const PREFIX: &str = "cst1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("credential is malformed: {0}")]
    Malformed(&'static str),
    #[error("the OS random number generator failed")]
    Rng,
}

/// A freshly generated credential; `secret_string` is shown once.
#[derive(Debug)]
pub(crate) struct NewCredential {
    pub(crate) id: String,
    pub(crate) secret_string: String,
    pub(crate) secret_hash: String,
}

/// Parsed presented credential.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedCredential {
    pub id: String,
    secret: Vec<u8>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn hash_secret(id: &str, secret: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"custody-credential-v1\0");
    ctx.update(id.as_bytes());
    ctx.update(b"\0");
    ctx.update(secret);
    hex::encode(ctx.finish().as_ref())
}

/// Generates a new credential, or a new secret for an existing id.
pub(crate) fn generate(existing_id: Option<&str>) -> Result<NewCredential, CredentialError> {
    let rng = ring::rand::SystemRandom::new();
    let id = match existing_id {
        Some(id) => id.to_string(),
        None => {
            let mut id = [0u8; 12];
            rng.fill(&mut id).map_err(|_| CredentialError::Rng)?;
            hex::encode(id)
        }
    };
    let mut secret = [0u8; 32];
    rng.fill(&mut secret).map_err(|_| CredentialError::Rng)?;
    Ok(NewCredential {
        secret_hash: hash_secret(&id, &secret),
        secret_string: format!("{PREFIX}.{id}.{}", b64().encode(secret)),
        id,
    })
}

impl PresentedCredential {
    pub fn parse(s: &str) -> Result<PresentedCredential, CredentialError> {
        if s.len() > 200 {
            return Err(CredentialError::Malformed("longer than 200 bytes"));
        }
        let mut parts = s.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(CredentialError::Malformed("does not start with \"cst1.\""));
        }
        let id = parts
            .next()
            .filter(|id| id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(CredentialError::Malformed("id is not 24 hex characters"))?;
        let secret = parts
            .next()
            .and_then(|s| b64().decode(s).ok())
            .filter(|s| s.len() == 32)
            .ok_or(CredentialError::Malformed(
                "secret is not 32 base64url bytes",
            ))?;
        if parts.next().is_some() {
            return Err(CredentialError::Malformed("too many '.'-separated parts"));
        }
        Ok(PresentedCredential {
            id: id.to_ascii_lowercase(),
            secret,
        })
    }

    /// Constant-time check against the stored hash.
    pub fn matches(&self, stored_hash: &str) -> bool {
        let ours = hash_secret(&self.id, &self.secret);
        constant_time_eq(ours.as_bytes(), stored_hash.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let c = generate(None).unwrap();
        let p = PresentedCredential::parse(&c.secret_string).unwrap();
        assert_eq!(p.id, c.id);
        assert!(p.matches(&c.secret_hash));
        let rotated = generate(Some(&c.id)).unwrap();
        assert_eq!(rotated.id, c.id);
        assert!(!p.matches(&rotated.secret_hash));
    }

    #[test]
    fn malformed_is_rejected() {
        let c = generate(None).unwrap();
        for bad in [
            "",
            "cst1",
            "cst2.aaaaaaaaaaaaaaaaaaaaaaaa.AAAA",
            &c.secret_string.replace("cst1.", "cst1.x"),
            &format!("{}.extra", c.secret_string),
            &c.secret_string[..c.secret_string.len() - 2],
        ] {
            assert!(PresentedCredential::parse(bad).is_err(), "{bad:?}");
        }
    }
}
