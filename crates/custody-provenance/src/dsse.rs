//! DSSE envelopes (Dead Simple Signing Envelope, v1.0).
//!
//! ```json
//! {"payloadType": "application/vnd.in-toto+json",
//!  "payload": "<base64>",
//!  "signatures": [{"keyid": "<optional hint>", "sig": "<base64>"}]}
//! ```
//!
//! Signatures are computed over the pre-authentication encoding
//! ([`pae`]), never over the base64 text nor the bare payload.
//!
//! Parsing rules:
//! - the envelope is at most [`Limits::max_envelope_bytes`] and carries at
//!   most [`Limits::max_signatures`] signatures (checked before any
//!   signature is tried: a bound on verification work);
//! - JSON is parsed strictly (custody-tuf's `parse_strict`: duplicate keys,
//!   floats and trailing data are refused, so two parsers cannot read two
//!   different envelopes out of the same bytes);
//! - base64 is standard or URL-safe, padded or not (the DSSE spec allows
//!   either);
//! - `keyid` is optional and only a hint: verification never trusts it
//!   (see [`crate::evaluate`]); unknown envelope fields are ignored.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::Limits;

/// The DSSE payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

fn b64_decode(field: &str, text: &str) -> Result<Vec<u8>, ParseError> {
    STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .map_err(|e| ParseError::Envelope {
            field: field.to_owned(),
            reason: format!("not base64 (standard or URL-safe): {e}"),
        })
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsseSignature {
    /// The signer's key id hint, if any. Never trusted.
    pub keyid: Option<String>,
    /// The raw signature bytes (decoded from base64).
    pub sig: Vec<u8>,
}

/// A parsed DSSE envelope, payload and signatures decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `payloadType`
    pub payload_type: String,
    /// the decoded payload bytes
    pub payload: Vec<u8>,
    /// the signatures, in envelope order
    pub signatures: Vec<DsseSignature>,
}

#[derive(Serialize, Deserialize)]
struct RawSignature {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
    sig: String,
}

#[derive(Serialize, Deserialize)]
struct RawEnvelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<RawSignature>,
}

impl Envelope {
    /// Parse untrusted envelope bytes (rules: module docs).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        if bytes.len() > limits.max_envelope_bytes {
            return Err(ParseError::TooLarge {
                what: "DSSE envelope".to_owned(),
                size: bytes.len(),
                max: limits.max_envelope_bytes,
            });
        }
        let value = custody_tuf::cjson::parse_strict("DSSE envelope", bytes).map_err(|e| {
            ParseError::Envelope {
                field: "(document)".to_owned(),
                reason: e.to_string(),
            }
        })?;
        let raw: RawEnvelope = serde_json::from_value(value).map_err(|e| ParseError::Envelope {
            field: "(document)".to_owned(),
            reason: e.to_string(),
        })?;
        if raw.signatures.len() > limits.max_signatures {
            return Err(ParseError::TooLarge {
                what: "DSSE signatures array".to_owned(),
                size: raw.signatures.len(),
                max: limits.max_signatures,
            });
        }
        let payload = b64_decode("payload", &raw.payload)?;
        let mut signatures = Vec::with_capacity(raw.signatures.len());
        for (i, s) in raw.signatures.into_iter().enumerate() {
            signatures.push(DsseSignature {
                sig: b64_decode(&format!("signatures[{i}].sig"), &s.sig)?,
                keyid: s.keyid,
            });
        }
        Ok(Envelope {
            payload_type: raw.payload_type,
            payload,
            signatures,
        })
    }

    /// The bytes signatures are made over: [`pae`] of this envelope.
    pub fn signed_bytes(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Serialise as DSSE JSON (standard base64, padded).
    pub fn to_json(&self) -> Vec<u8> {
        let raw = RawEnvelope {
            payload: base64::engine::general_purpose::STANDARD.encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| RawSignature {
                    keyid: s.keyid.clone(),
                    sig: base64::engine::general_purpose::STANDARD.encode(&s.sig),
                })
                .collect(),
        };
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_vec(&raw).unwrap_or_default()
    }
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN being the
/// byte length as ASCII decimal without leading zeros.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // DSSE protocol.md test vector
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn base64_variants_accepted() {
        let l = Limits::default();
        for p in ["aGk+Pw==", "aGk+Pw", "aGk-Pw=="] {
            let doc = format!(r#"{{"payload":"{p}","payloadType":"t","signatures":[]}}"#);
            let e = Envelope::parse(doc.as_bytes(), &l).unwrap();
            assert_eq!(e.payload, b"hi>?");
        }
    }

    #[test]
    fn refuses_bad_envelopes() {
        let l = Limits::default();
        for doc in [
            r#"{"payload":"aGk=","payloadType":"t"}"#,
            r#"{"payload":"%%%","payloadType":"t","signatures":[]}"#,
            r#"{"payload":"aGk=","payload":"aGk=","payloadType":"t","signatures":[]}"#,
            r#"{"payload":"aGk=","payloadType":"t","signatures":[{"sig":"!"}]}"#,
            r#"{"payload":"aGk=","payloadType":"t","signatures":[]} x"#,
            r#"[]"#,
        ] {
            assert!(Envelope::parse(doc.as_bytes(), &l).is_err(), "{doc}");
        }
        let small = Limits {
            max_envelope_bytes: 10,
            ..Limits::default()
        };
        let doc = br#"{"payload":"aGk=","payloadType":"t","signatures":[]}"#;
        assert!(matches!(
            Envelope::parse(doc, &small),
            Err(ParseError::TooLarge { .. })
        ));
        let few = Limits {
            max_signatures: 1,
            ..Limits::default()
        };
        let doc =
            br#"{"payload":"aGk=","payloadType":"t","signatures":[{"sig":"aGk="},{"sig":"aGk="}]}"#;
        assert!(matches!(
            Envelope::parse(doc, &few),
            Err(ParseError::TooLarge { .. })
        ));
    }
}
