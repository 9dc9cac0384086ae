//! What the agent is asked to install: the verified target's metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use custody_tuf::verify::TargetVerifier;
use custody_tuf::TargetFile;

/// Longest accepted target name (bytes).
pub const MAX_TARGET_NAME: usize = 1024;

/// A target as the director and the image repository agreed on it. The
/// network half fills this from verified metadata; the device-local half
/// re-checks files against it before every step that trusts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMeta {
    /// TUF target path, e.g. `firmware/app-2.1.0.img`
    pub name: String,
    /// signed length in bytes
    pub length: u64,
    /// signed hashes, algorithm name (`sha256`, `sha512`, ...) to lowercase hex
    pub hashes: BTreeMap<String, String>,
    /// release counter from the director; never goes backwards on a device
    pub release_counter: u64,
    /// the target's `custom` object, passed on to command installers
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

impl TargetMeta {
    /// Check the fields the agent relies on: a non-empty name without NUL
    /// (it ends up in environment variables) and at least one hash the agent
    /// can recompute (sha256 or sha512), in hex of the right length.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |field, rule: String| AgentError::InvalidTarget {
            target: self.name.clone(),
            field,
            rule,
        };
        if self.name.is_empty() || self.name.len() > MAX_TARGET_NAME || self.name.contains('\0') {
            return Err(bad(
                "name",
                format!(
                    "must be 1..={MAX_TARGET_NAME} bytes without NUL, got {} bytes",
                    self.name.len()
                ),
            ));
        }
        let mut known = 0;
        for (alg, want_len) in [("sha256", 64usize), ("sha512", 128)] {
            if let Some(h) = self.hashes.get(alg) {
                if h.len() != want_len || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(
                        "hashes",
                        format!("{alg} must be {want_len} hex digits, got {h:?}"),
                    ));
                }
                known += 1;
            }
        }
        if known == 0 {
            return Err(bad(
                "hashes",
                format!(
                    "needs sha256 or sha512 to re-check files on the device, got {:?}",
                    self.hashes.keys().collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }

    /// The signed length and hashes in TUF form.
    pub fn tuf_target(&self) -> TargetFile {
        TargetFile {
            length: self.length,
            hashes: self.hashes.clone().into_iter().collect(),
            custom: self.custom.clone(),
            unknown: Default::default(),
        }
    }

    /// custody-tuf's streaming verifier for this target (the same length
    /// and hash rule the TUF client applies; not re-implemented here).
    pub fn verifier(&self) -> Result<TargetVerifier, String> {
        TargetVerifier::new(&self.name, &self.tuf_target()).map_err(|e| e.to_string())
    }

    /// The signed sha256, if any.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes.get("sha256").map(String::as_str)
    }

    /// Environment passed to installer commands and health checks.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CUSTODY_TARGET_NAME".to_owned(), self.name.clone()),
            ("CUSTODY_TARGET_LENGTH".to_owned(), self.length.to_string()),
            (
                "CUSTODY_RELEASE_COUNTER".to_owned(),
                self.release_counter.to_string(),
            ),
        ];
        if let Some(h) = self.hashes.get("sha256") {
            env.push(("CUSTODY_TARGET_SHA256".to_owned(), h.clone()));
        }
        if let Some(h) = self.hashes.get("sha512") {
            env.push(("CUSTODY_TARGET_SHA512".to_owned(), h.clone()));
        }
        if let Some(c) = &self.custom {
            env.push(("CUSTODY_TARGET_CUSTOM".to_owned(), c.to_string()));
        }
        env
    }
}
