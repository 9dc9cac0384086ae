//! Short-lived admin tokens: JWTs signed with HMAC-SHA256 under a 256-bit
//! server key. Symmetric is enough because only the server (and its
//! replicas, which share the key through the database or a key file) ever
//! verifies them; HS256 verification is a single HMAC, cheap per request.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "custody-server";
pub const AUDIENCE: &str = "custody-admin";

/// What a token says. `cred`/`gen` tie it to the credential that minted
/// it, so revoking or rotating that credential kills the token at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// Identity for audit: `credential:<id> (<name>)` or `oidc:<iss>#<sub>`.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgen: Option<i64>,
    pub scopes: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token key must be at least 32 bytes, got {0}")]
    ShortKey(usize),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
}

pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn new(key: &[u8]) -> Result<TokenKeys, TokenError> {
        if key.len() < 32 {
            return Err(TokenError::ShortKey(key.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(TokenKeys {
            enc: EncodingKey::from_secret(key),
            dec: DecodingKey::from_secret(key),
            validation,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.enc)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Checks signature, algorithm (HS256 only: `none` and algorithm
    /// confusion are refused by the library), issuer, audience, exp, nbf.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > 8192 {
            return Err(TokenError::Invalid(format!(
                "token is {} bytes, the limit is 8192",
                token.len()
            )));
        }
        decode::<Claims>(token, &self.dec, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| TokenError::Invalid(describe(&e)))
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token has expired (exp is in the past)".into(),
        K::ImmatureSignature => "token is not valid yet (nbf is in the future)".into(),
        K::InvalidSignature => "signature does not verify".into(),
        K::InvalidAudience => format!("audience (aud) is not {AUDIENCE:?}"),
        K::InvalidIssuer => format!("issuer (iss) is not {ISSUER:?}"),
        K::InvalidAlgorithm => "algorithm is not HS256".into(),
        K::MissingRequiredClaim(c) => format!("required claim {c:?} is missing"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64, exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "credential:x".into(),
            cred: Some("x".into()),
            cgen: Some(1),
            scopes: vec!["audit:read".into()],
            iat: now,
            nbf: now,
            exp,
            jti: "j".into(),
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn sign_verify_and_attacks() {
        let keys = TokenKeys::new(&[7u8; 32]).unwrap();
        let t = keys.sign(&claims(now(), now() + 60)).unwrap();
        assert_eq!(keys.verify(&t).unwrap().sub, "credential:x");

        // expired
        let t = keys.sign(&claims(now() - 200, now() - 100)).unwrap();
        assert!(keys.verify(&t).unwrap_err().to_string().contains("expired"));

        // tampered payload
        let t = keys.sign(&claims(now(), now() + 60)).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = parts[1].replace('A', "B");
        let tampered = parts.join(".");
        assert!(keys.verify(&tampered).is_err());

        // other key
        let other = TokenKeys::new(&[8u8; 32]).unwrap();
        assert!(other
            .verify(&t)
            .unwrap_err()
            .to_string()
            .contains("signature"));

        // wrong audience
        let mut c = claims(now(), now() + 60);
        c.aud = "someone-else".into();
        let t = keys.sign(&c).unwrap();
        assert!(keys
            .verify(&t)
            .unwrap_err()
            .to_string()
            .contains("audience"));

        // alg none
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_vec(&claims(now(), now() + 60)).unwrap());
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
    }

    #[test]
    fn short_key_refused() {
        assert!(TokenKeys::new(&[1u8; 16]).is_err());
    }
}
