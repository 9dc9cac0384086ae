//! Offline signing: export a role, sign metadata bytes without a
//! repository, merge the signatures back.
use std::path::Path;

use chrono::{DateTime, Utc};
use custody_tuf::{Root, Signature, Signed, Snapshot, Targets, Timestamp};

use crate::error::RepoError;
use crate::keyring::KeyRing;

use super::codec::{canonical_signed, envelope_bytes, parse_envelope};
use super::Envelope;
use super::Repository;

impl Repository {
    /// The bytes of `role`'s staged metadata, to hand to an offline signer.
    pub fn export_role(&self, role: &str) -> Result<Vec<u8>, RepoError> {
        match role {
            "root" => envelope_bytes(&self.root),
            "snapshot" => envelope_bytes(&self.snapshot),
            "timestamp" => envelope_bytes(&self.timestamp),
            _ => envelope_bytes(self.targets_env(role)?),
        }
    }

    /// Merge signatures from a copy of `role`'s metadata signed elsewhere.
    /// The signed content must be byte-identical (canonically) to the staged
    /// one; only signatures that verify with one of the role's keys are
    /// taken (custody-tuf decides). Returns the key ids merged.
    pub fn merge_signatures(
        &mut self,
        role: &str,
        bytes: &[u8],
        from: &Path,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, RepoError> {
        let staged = self.canonical_of(role)?;
        let (theirs, sigs) = match role {
            "root" => {
                let e: Envelope<Root> = parse_envelope(role, bytes, from)?;
                (canonical_signed(role, &e)?, e.signatures)
            }
            "snapshot" => {
                let e: Envelope<Snapshot> = parse_envelope(role, bytes, from)?;
                (canonical_signed(role, &e)?, e.signatures)
            }
            "timestamp" => {
                let e: Envelope<Timestamp> = parse_envelope(role, bytes, from)?;
                (canonical_signed(role, &e)?, e.signatures)
            }
            _ => {
                let e: Envelope<Targets> = parse_envelope(role, bytes, from)?;
                (canonical_signed(role, &e)?, e.signatures)
            }
        };
        if theirs != staged {
            return Err(RepoError::BadFile {
                path: from.to_owned(),
                detail: format!(
                    "role {role}: its signed content differs from the staged {role} metadata (a different version, or edited since export); re-export and sign again"
                ),
            });
        }
        let mut info = self.role_keys(role)?;
        info.keyids = self.signing_keyids(role)?;
        if role == "root" && self.root.signed.version > 1 {
            if let Ok(prev) = self.previous_root() {
                for (k, v) in prev.signed.keys {
                    info.keys.entry(k).or_insert(v);
                }
            }
        }
        let report = custody_tuf::signature_report(role, &staged, &sigs, &info.keyids, &info.keys)?;
        let good: Vec<Signature> = sigs
            .into_iter()
            .filter(|s| {
                report.counted.contains(&s.keyid) || report.duplicate_keys.contains(&s.keyid)
            })
            .collect();
        let target = self.signatures_mut(role)?;
        let fresh: Vec<Signature> = good
            .into_iter()
            .filter(|s| !target.iter().any(|o| o.keyid == s.keyid && o.sig == s.sig))
            .collect();
        if fresh.is_empty() {
            let present: Vec<&str> = target.iter().map(|s| s.keyid.as_str()).collect();
            return Err(RepoError::BadFile {
                path: from.to_owned(),
                detail: format!(
                    "role {role}: no new signature in it verifies with one of the role's keys {:?} (already staged: {present:?}; invalid: {:?}; signatures by keys outside the role are ignored)",
                    info.keyids, report.invalid
                ),
            });
        }
        let mut merged = Vec::new();
        for s in fresh {
            target.retain(|o| o.keyid != s.keyid);
            merged.push(s.keyid.clone());
            target.push(s);
        }
        self.dirty.insert(role.to_owned());
        self.log_event(
            now,
            "merge",
            serde_json::json!({ "role": role, "keyids": merged }),
        );
        if role == "snapshot" && !merged.is_empty() {
            self.cascade_timestamp_only(ring, now)?;
        }
        Ok(merged)
    }
}

/// Sign metadata `bytes` (read from `from`) with the loaded keys `keyids`,
/// offline: no repository needed; whether the keys belong to the role is
/// checked when the file is merged. The role type comes from `_type`.
/// Returns (`_type`, new bytes).
pub fn sign_metadata_bytes(
    bytes: &[u8],
    from: &Path,
    keyids: &[String],
    ring: &KeyRing,
) -> Result<(String, Vec<u8>), RepoError> {
    fn sign_env<T: Signed>(
        role: &str,
        bytes: &[u8],
        from: &Path,
        keyids: &[String],
        ring: &KeyRing,
    ) -> Result<Vec<u8>, RepoError> {
        let mut env: Envelope<T> = parse_envelope(role, bytes, from)?;
        let msg = canonical_signed(role, &env)?;
        for id in keyids {
            let signer = ring.get(id).ok_or_else(|| RepoError::Role {
                role: role.into(),
                detail: format!("key {id} is not loaded"),
            })?;
            let sig = signer.sign(&msg)?;
            env.signatures.retain(|s| &s.keyid != id);
            env.signatures.push(Signature {
                keyid: id.clone(),
                sig: hex::encode(sig),
                unknown: Default::default(),
            });
        }
        envelope_bytes(&env)
    }
    let v = custody_tuf::cjson::parse_strict("metadata", bytes)?;
    let ty = v
        .pointer("/signed/_type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| RepoError::BadFile {
            path: from.to_owned(),
            detail: "no signed._type".into(),
        })?
        .to_owned();
    let out = match ty.as_str() {
        "root" => sign_env::<Root>("root", bytes, from, keyids, ring)?,
        "snapshot" => sign_env::<Snapshot>("snapshot", bytes, from, keyids, ring)?,
        "timestamp" => sign_env::<Timestamp>("timestamp", bytes, from, keyids, ring)?,
        "targets" => sign_env::<Targets>("targets", bytes, from, keyids, ring)?,
        other => {
            return Err(RepoError::BadFile {
                path: from.to_owned(),
                detail: format!("unknown _type {other:?}"),
            })
        }
    };
    Ok((ty, out))
}
