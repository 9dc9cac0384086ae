//! Rollback authorisations: the one way a device may receive a lower
//! release counter than it has installed.
//!
//! A TUF-style envelope (`_type: custody-rollback-authorization`) that names
//! the device set, the target and its counter, and an expiry, signed by a
//! threshold of the **rollback keys**: a separate, offline key set, not the
//! director's online key, so a compromised director cannot downgrade
//! devices. Signature counting is custody-tuf's [`custody_tuf::verify_threshold`].
//! The director checks it before assigning a downgrade (`policy::assign`)
//! and passes it to the device in the target's `custom.rollback_authorization`;
//! the device verifies it again with the rollback keys it was provisioned
//! with ([`RollbackAuthorization::verify`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use custody_tuf::{Key, Signature};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::wire::{WireError, WIRE_VERSION};

/// A rollback authorisation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rollback authorisation: {0}")]
pub struct RollbackError(pub String);

/// `_type` of a rollback authorisation.
pub const TYPE_ROLLBACK: &str = "custody-rollback-authorization";
/// Largest accepted rollback authorisation (bytes).
pub const MAX_ROLLBACK_AUTH_BYTES: usize = 256 * 1024;

/// The signed body of a rollback authorisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// always `custody-rollback-authorization`
    #[serde(rename = "_type")]
    pub type_: String,
    /// [`WIRE_VERSION`]
    pub wire_version: u32,
    /// the devices it applies to
    pub device_ids: BTreeSet<String>,
    /// the (older) target they may install
    pub target: String,
    /// its release counter
    pub release_counter: u64,
    /// not valid at or after (unix seconds)
    pub expires: i64,
    /// why (audit)
    pub reason: String,
}

/// A rollback authorisation signed by the rollback key(s): a separate,
/// offline key, not the director's online key, so a compromised director
/// cannot downgrade devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackAuthorization {
    /// body
    pub signed: RollbackBody,
    /// signatures
    pub signatures: Vec<Signature>,
    #[serde(skip)]
    canonical: Vec<u8>,
}

/// The keys trusted to authorise rollbacks.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackKeys {
    /// key id → key
    pub keys: BTreeMap<String, Key>,
    /// distinct keys needed
    pub threshold: u64,
}

const RB: &str = "rollback authorization";

impl RollbackAuthorization {
    /// Parse untrusted bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_ROLLBACK_AUTH_BYTES {
            return Err(WireError::TooLarge {
                message: RB,
                limit: MAX_ROLLBACK_AUTH_BYTES,
                found: bytes.len(),
            });
        }
        let malformed = |reason: String| WireError::Malformed {
            message: RB,
            reason,
        };
        let v =
            custody_tuf::cjson::parse_strict(RB, bytes).map_err(|e| malformed(e.to_string()))?;
        let canonical = v
            .get("signed")
            .map(|s| custody_tuf::cjson::canonical_bytes(RB, s))
            .transpose()
            .map_err(|e| malformed(e.to_string()))?
            .ok_or_else(|| malformed("`signed` is missing".into()))?;
        let mut a: RollbackAuthorization =
            serde_json::from_value(v).map_err(|e| malformed(e.to_string()))?;
        a.canonical = canonical;
        let f = |field: &str, rule: String| WireError::Field {
            message: RB,
            field: field.to_owned(),
            rule,
        };
        if a.signed.type_ != TYPE_ROLLBACK {
            return Err(f("signed._type", format!("must be {TYPE_ROLLBACK:?}")));
        }
        if a.signed.wire_version != WIRE_VERSION {
            return Err(f(
                "signed.wire_version",
                format!("must be {WIRE_VERSION}, got {}", a.signed.wire_version),
            ));
        }
        if a.signed.device_ids.is_empty() || a.signed.device_ids.len() > 100_000 {
            return Err(f(
                "signed.device_ids",
                "must list 1..=100000 devices".into(),
            ));
        }
        crate::wire::check_name(RB, "signed.target", &a.signed.target)?;
        Ok(a)
    }

    /// Sign a body (operator tooling, tests).
    pub fn sign(
        body: RollbackBody,
        signers: &[&dyn custody_keys::Signer],
    ) -> Result<Self, RollbackError> {
        let canonical = custody_tuf::cjson::canonical_bytes(RB, &body)
            .map_err(|e| RollbackError(e.to_string()))?;
        let mut signatures = Vec::new();
        for s in signers {
            let sig = s
                .sign(&canonical)
                .map_err(|e| RollbackError(e.to_string()))?;
            signatures.push(Signature {
                keyid: s.keyid().to_owned(),
                sig: hex::encode(sig),
                unknown: Default::default(),
            });
        }
        Ok(RollbackAuthorization {
            signed: body,
            signatures,
            canonical,
        })
    }

    /// Serialize.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Verify for `device` installing `target` at `counter` at `now`:
    /// signatures (custody-tuf threshold over the rollback keys), scope,
    /// expiry.
    pub fn verify(
        &self,
        keys: &RollbackKeys,
        device: &str,
        target: &str,
        counter: u64,
        now: DateTime<Utc>,
    ) -> Result<(), RollbackError> {
        let ids: Vec<String> = keys.keys.keys().cloned().collect();
        custody_tuf::verify_threshold(
            RB,
            "rollback keys",
            &self.canonical,
            &self.signatures,
            &ids,
            &keys.keys,
            keys.threshold.max(1),
        )
        .map_err(|e| RollbackError(e.to_string()))?;
        let b = &self.signed;
        if now.timestamp() >= b.expires {
            return Err(RollbackError(format!(
                "expired at {} (unix), now {}",
                b.expires,
                now.timestamp()
            )));
        }
        if !b.device_ids.contains(device) {
            return Err(RollbackError(format!(
                "does not name device {device} ({} devices listed)",
                b.device_ids.len()
            )));
        }
        if b.target != target || b.release_counter != counter {
            return Err(RollbackError(format!(
                "is for {} (counter {}), not {target} (counter {counter})",
                b.target, b.release_counter
            )));
        }
        Ok(())
    }
}
