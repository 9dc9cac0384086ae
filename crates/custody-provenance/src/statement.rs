//! in-toto Statement v1.
//!
//! ```json
//! {"_type": "https://in-toto.io/Statement/v1",
//!  "subject": [{"name": "app.bin", "digest": {"sha256": "…"}}],
//!  "predicateType": "https://slsa.dev/provenance/v1",
//!  "predicate": {…}}
//! ```
//!
//! Strict on what is required: `_type` must be exactly Statement v1 (v0.1
//! statements are refused: custody only evaluates v1 provenance),
//! `subject` must be non-empty, each subject must have a non-empty `digest`
//! whose values for `sha256`/`sha384`/`sha512` are lowercase hex of the
//! right length, `predicateType` must be present. Unknown fields are kept
//! (`unknown`) so re-serialising loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ParseError;
use crate::Limits;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";

/// Unknown fields, kept verbatim.
pub type Unknown = BTreeMap<String, Value>;

/// in-toto DigestSet: algorithm name → hex digest.
pub type DigestSet = BTreeMap<String, String>;

/// One subject (an artifact the statement is about).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// artifact name chosen by the builder (not compared with target paths:
    /// the digest is the binding)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// digests of the artifact
    pub digest: DigestSet,
    /// unknown fields (ResourceDescriptor's uri, annotations, …)
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// `_type`
    #[serde(rename = "_type")]
    pub type_: String,
    /// the artifacts
    pub subject: Vec<Subject>,
    /// `predicateType`
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// the predicate, untyped (see [`crate::slsa::Provenance`])
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<Value>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Expected hex length of the digest algorithms custody compares.
pub(crate) fn strong_digest_len(alg: &str) -> Option<usize> {
    match alg {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ParseError {
    ParseError::Statement {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Statement {
    /// Parse an untrusted statement (a DSSE payload).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        let value = custody_tuf::cjson::parse_strict("in-toto statement", bytes)
            .map_err(|e| err("(document)", e.to_string()))?;
        let st: Statement =
            serde_json::from_value(value).map_err(|e| err("(document)", e.to_string()))?;
        st.check(limits)?;
        Ok(st)
    }

    fn check(&self, limits: &Limits) -> Result<(), ParseError> {
        if self.type_ != STATEMENT_TYPE_V1 {
            return Err(err(
                "_type",
                format!("is {:?}, must be {STATEMENT_TYPE_V1:?}", self.type_),
            ));
        }
        if self.subject.is_empty() {
            return Err(err("subject", "must list at least one artifact"));
        }
        if self.subject.len() > limits.max_subjects {
            return Err(ParseError::TooLarge {
                what: "in-toto statement subject list".to_owned(),
                size: self.subject.len(),
                max: limits.max_subjects,
            });
        }
        if self.predicate_type.is_empty() {
            return Err(err("predicateType", "must not be empty"));
        }
        for (i, s) in self.subject.iter().enumerate() {
            if s.digest.is_empty() {
                return Err(err(
                    format!("subject[{i}].digest"),
                    "must contain at least one digest",
                ));
            }
            for (alg, hexval) in &s.digest {
                if let Some(len) = strong_digest_len(alg) {
                    let ok = hexval.len() == len
                        && hexval
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                    if !ok {
                        return Err(err(
                            format!("subject[{i}].digest.{alg}"),
                            format!("{hexval:?} is not {len} lowercase hex characters"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
