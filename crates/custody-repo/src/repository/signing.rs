//! Role keys, signing, and the per-role signature status (thresholds
//! decided by custody-tuf).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use custody_tuf::{Root, Signature, Targets, TOP_LEVEL_ROLES};

use crate::error::RepoError;
use crate::keyring::KeyRing;

use super::codec::{canonical_signed, parse_envelope, read_bounded, SignedCanonical};
use super::Repository;
use super::{Envelope, RepoStatus, RoleInit, RoleKeyInfo, RoleStatus, METADATA_DIR};

impl Repository {
    /// Keys, threshold and delegator of `role`.
    pub fn role_keys(&self, role: &str) -> Result<RoleKeyInfo, RepoError> {
        if TOP_LEVEL_ROLES.contains(&role) {
            let rk = self
                .root
                .signed
                .roles
                .get(role)
                .ok_or_else(|| RepoError::Role {
                    role: role.into(),
                    detail: "not listed in root".into(),
                })?;
            return Ok(RoleKeyInfo {
                keyids: rk.keyids.clone(),
                threshold: rk.threshold,
                keys: self.root.signed.keys.clone(),
                delegator: "root".into(),
            });
        }
        for (parent, env) in self.delegating_roles() {
            let Some(d) = &env.signed.delegations else {
                continue;
            };
            if let Some(r) = d.roles.iter().flatten().find(|r| r.name == role) {
                return Ok(RoleKeyInfo {
                    keyids: r.keyids.clone(),
                    threshold: r.threshold,
                    keys: d.keys.clone(),
                    delegator: parent.clone(),
                });
            }
            if let Some(s) = &d.succinct_roles {
                if s.is_bin(role) {
                    return Ok(RoleKeyInfo {
                        keyids: s.keyids.clone(),
                        threshold: s.threshold,
                        keys: d.keys.clone(),
                        delegator: parent.clone(),
                    });
                }
            }
        }
        Err(RepoError::Role {
            role: role.into(),
            detail: "no such role: not a top-level role and not delegated by any targets role"
                .into(),
        })
    }

    /// The targets roles that delegate, with their metadata: the roles
    /// recorded in `delegators`, then (in case one gained delegations since
    /// the list was made) every other role that delegates. Callers stop at
    /// the first match, so a role delegated by a listed delegator is found
    /// without walking every role.
    pub(super) fn delegating_roles(
        &self,
    ) -> impl Iterator<Item = (&String, &Envelope<Targets>)> + '_ {
        let listed = self.delegators.get_or_init(|| {
            self.targets
                .iter()
                .filter(|(_, e)| e.signed.delegations.is_some())
                .map(|(r, _)| r.clone())
                .collect()
        });
        let first = listed
            .iter()
            .filter_map(|r| self.targets.get_key_value(r))
            .filter(|(_, e)| e.signed.delegations.is_some());
        let rest = self.targets.iter().filter(move |(r, e)| {
            e.signed.delegations.is_some() && !listed.iter().any(|l| l == *r)
        });
        first.chain(rest)
    }

    /// [`Repository::delegating_roles`], metadata only.
    pub(super) fn delegating_envs(&self) -> impl Iterator<Item = &Envelope<Targets>> + '_ {
        self.delegating_roles().map(|(_, e)| e)
    }

    pub(super) fn canonical_of(&self, role: &str) -> Result<Vec<u8>, RepoError> {
        match role {
            "root" => canonical_signed(role, &self.root),
            "snapshot" => canonical_signed(role, &self.snapshot),
            "timestamp" => canonical_signed(role, &self.timestamp),
            _ => {
                let env = self.targets_env(role)?;
                match self.signed_canonical.get(role) {
                    Some(c) if c.matches(&env.signed) => Ok(c.bytes.as_ref().clone()),
                    _ => canonical_signed(role, env),
                }
            }
        }
    }

    /// Record `msg` as the canonical bytes targets role `role` was just
    /// signed over (see `SignedCanonical`); no-op for top-level roles
    /// other than `targets`.
    pub(super) fn remember_canonical(&mut self, role: &str, msg: Vec<u8>) {
        if TOP_LEVEL_ROLES.contains(&role) && role != "targets" {
            return;
        }
        if let Some(env) = self.targets.get(role) {
            let c = SignedCanonical::of(&env.signed, std::sync::Arc::new(msg));
            self.signed_canonical.insert(role.to_owned(), c);
        }
    }

    pub(super) fn targets_env(&self, role: &str) -> Result<&Envelope<Targets>, RepoError> {
        self.targets.get(role).ok_or_else(|| RepoError::Role {
            role: role.into(),
            detail: "no metadata for this role in the repository".into(),
        })
    }

    /// Strictly parse and round-trip check a role `open` read loosely,
    /// from its staged bytes, before it is changed or signed: custody must
    /// re-sign exactly what the file says.
    pub(super) fn check_loaded(&mut self, role: &str) -> Result<(), RepoError> {
        if !self.unchecked.contains(role) {
            return Ok(());
        }
        let path = self
            .dir
            .join(METADATA_DIR)
            .join(custody_tuf::metadata_filename(role, None));
        let bytes = self
            .staged
            .get(role)
            .cloned()
            .ok_or_else(|| RepoError::Role {
                role: role.into(),
                detail: "staged bytes missing".into(),
            })?;
        let env = parse_envelope::<Targets>(role, &bytes, &path)?;
        self.targets.insert(role.to_owned(), env);
        self.signed_canonical.remove(role);
        self.delegators = std::sync::OnceLock::new();
        self.unchecked.remove(role);
        Ok(())
    }

    pub(super) fn signatures_mut(&mut self, role: &str) -> Result<&mut Vec<Signature>, RepoError> {
        if !TOP_LEVEL_ROLES.contains(&role) {
            self.check_loaded(role)?;
        }
        Ok(match role {
            "root" => &mut self.root.signatures,
            "snapshot" => &mut self.snapshot.signatures,
            "timestamp" => &mut self.timestamp.signatures,
            _ => {
                &mut self
                    .targets
                    .get_mut(role)
                    .ok_or_else(|| RepoError::Role {
                        role: role.into(),
                        detail: "no metadata for this role in the repository".into(),
                    })?
                    .signatures
            }
        })
    }

    fn signatures(&self, role: &str) -> Result<&[Signature], RepoError> {
        Ok(match role {
            "root" => &self.root.signatures,
            "snapshot" => &self.snapshot.signatures,
            "timestamp" => &self.timestamp.signatures,
            _ => &self.targets_env(role)?.signatures,
        })
    }

    /// Key ids allowed to sign `role` now. For root this is the union of
    /// the previous root's root keys and the new root's: a new root version
    /// must be signed by a threshold of both (TUF 5.3.4).
    pub(super) fn signing_keyids(&self, role: &str) -> Result<Vec<String>, RepoError> {
        let mut ids = self.role_keys(role)?.keyids;
        if role == "root" && self.root.signed.version > 1 {
            if let Ok(prev) = self.previous_root() {
                for id in prev
                    .signed
                    .roles
                    .get("root")
                    .map(|r| r.keyids.clone())
                    .unwrap_or_default()
                {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        Ok(ids)
    }

    pub(super) fn previous_root(&self) -> Result<Envelope<Root>, RepoError> {
        let v = self.root.signed.version.saturating_sub(1);
        let path = self
            .dir
            .join(METADATA_DIR)
            .join(custody_tuf::metadata_filename("root", Some(v)));
        let bytes = read_bounded(&path)?;
        parse_envelope("root", &bytes, &path)
    }

    /// Sign `role` with every key of the role that is loaded in `ring` or
    /// reachable at its recorded location. Returns the key ids that signed.
    pub fn sign_available(
        &mut self,
        role: &str,
        ring: &mut KeyRing,
    ) -> Result<Vec<String>, RepoError> {
        let ids = self.signing_keyids(role)?;
        for id in &ids {
            let loc = self.config.keys.get(id).cloned();
            ring.ensure(id, loc.as_ref())?;
        }
        let msg = self.canonical_of(role)?;
        let signed = self.sign_available_msg(role, &ids, &msg, ring)?;
        self.remember_canonical(role, msg);
        Ok(signed)
    }

    /// [`Repository::sign_available`] with the role's key ids (already
    /// ensured in `ring`) and canonical bytes computed by the caller.
    pub(super) fn sign_available_msg(
        &mut self,
        role: &str,
        ids: &[String],
        msg: &[u8],
        ring: &KeyRing,
    ) -> Result<Vec<String>, RepoError> {
        let mut new_sigs = Vec::new();
        for id in ids {
            if let Some(signer) = ring.get(id) {
                let sig = signer.sign(msg)?;
                new_sigs.push(Signature {
                    keyid: id.clone(),
                    sig: hex::encode(sig),
                    unknown: Default::default(),
                });
            }
        }
        self.apply_signatures(role, new_sigs)
    }

    /// Put `new_sigs` on `role` (replacing earlier ones by the same keys).
    pub(super) fn apply_signatures(
        &mut self,
        role: &str,
        new_sigs: Vec<Signature>,
    ) -> Result<Vec<String>, RepoError> {
        let signed: Vec<String> = new_sigs.iter().map(|s| s.keyid.clone()).collect();
        let sigs = self.signatures_mut(role)?;
        for s in new_sigs {
            sigs.retain(|o| o.keyid != s.keyid);
            sigs.push(s);
        }
        if !signed.is_empty() {
            self.dirty.insert(role.to_owned());
        }
        Ok(signed)
    }

    /// Sign `role` with the given key ids only (`custody repo sign --key`).
    /// Errors if a key is not one of the role's keys: the signature would
    /// never count, and signing with the wrong key is usually a mistake.
    pub fn sign_with(
        &mut self,
        role: &str,
        keyids: &[String],
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let allowed = self.signing_keyids(role)?;
        let msg = self.canonical_of(role)?;
        let mut new_sigs = Vec::new();
        for id in keyids {
            if !allowed.contains(id) {
                return Err(RepoError::Role {
                    role: role.into(),
                    detail: format!(
                        "key {id} is not one of the role's keys {allowed:?}; its signature would not count"
                    ),
                });
            }
            let signer = ring.get(id).ok_or_else(|| RepoError::Role {
                role: role.into(),
                detail: format!("key {id} is not loaded"),
            })?;
            new_sigs.push(Signature {
                keyid: id.clone(),
                sig: hex::encode(signer.sign(&msg)?),
                unknown: Default::default(),
            });
        }
        let sigs = self.signatures_mut(role)?;
        for s in new_sigs {
            sigs.retain(|o| o.keyid != s.keyid);
            sigs.push(s);
        }
        self.remember_canonical(role, msg);
        self.dirty.insert(role.to_owned());
        self.log_event(
            now,
            "sign",
            serde_json::json!({ "role": role, "keyids": keyids }),
        );
        if role == "snapshot" {
            // The timestamp pins the snapshot's bytes (length and hash).
            self.cascade_timestamp_only(ring, now)?;
        }
        Ok(())
    }

    /// Per-role signature report. The threshold verdict is custody-tuf's
    /// `verify_threshold`.
    pub fn role_status(&self, role: &str, now: DateTime<Utc>) -> Result<RoleStatus, RepoError> {
        let info = self.role_keys(role)?;
        let msg = self.canonical_of(role)?;
        let sigs = self.signatures(role)?;
        let report = custody_tuf::signature_report(role, &msg, sigs, &info.keyids, &info.keys)?;
        let mut threshold_met = custody_tuf::verify_threshold(
            role,
            &info.delegator,
            &msg,
            sigs,
            &info.keyids,
            &info.keys,
            info.threshold,
        )
        .is_ok();
        let mut report = report;
        let mut keyids = info.keyids.clone();
        let mut previous_root_threshold = None;
        // A new root version must also meet the previous root's threshold
        // with the previous root's keys (TUF 5.3.4).
        if role == "root" && self.root.signed.version > 1 {
            let prev = self.previous_root()?;
            if let Some(prk) = prev.signed.roles.get("root") {
                let delegator = format!("root v{}", prev.signed.version);
                let prev_report = custody_tuf::signature_report(
                    role,
                    &msg,
                    sigs,
                    &prk.keyids,
                    &prev.signed.keys,
                )?;
                threshold_met &= custody_tuf::verify_threshold(
                    role,
                    &delegator,
                    &msg,
                    sigs,
                    &prk.keyids,
                    &prev.signed.keys,
                    prk.threshold,
                )
                .is_ok();
                previous_root_threshold = Some(prk.threshold);
                for k in &prk.keyids {
                    if !keyids.contains(k) {
                        keyids.push(k.clone());
                    }
                }
                for k in prev_report.counted {
                    if !report.counted.contains(&k) {
                        report.counted.push(k);
                    }
                }
                for k in prev_report.invalid {
                    if !report.invalid.contains(&k) {
                        report.invalid.push(k);
                    }
                }
            }
        }
        let (version, expires) = match role {
            "root" => (self.root.signed.version, self.root.signed.expires),
            "snapshot" => (self.snapshot.signed.version, self.snapshot.signed.expires),
            "timestamp" => (self.timestamp.signed.version, self.timestamp.signed.expires),
            _ => {
                let t = &self.targets_env(role)?.signed;
                (t.version, t.expires)
            }
        };
        let missing = keyids
            .iter()
            .filter(|k| !report.counted.contains(k) && !report.duplicate_keys.contains(k))
            .cloned()
            .collect();
        Ok(RoleStatus {
            role: role.into(),
            version,
            expires,
            expired: now >= expires,
            threshold: info.threshold,
            signed_by: report.counted,
            missing,
            invalid: report.invalid,
            threshold_met,
            previous_root_threshold,
        })
    }

    /// Status of every role and whether publishing would succeed.
    pub fn status(&self, now: DateTime<Utc>) -> Result<RepoStatus, RepoError> {
        let mut roles = Vec::new();
        for r in ["root", "targets", "snapshot", "timestamp"] {
            roles.push(self.role_status(r, now)?);
        }
        for r in self.targets.keys().filter(|r| *r != "targets") {
            roles.push(self.role_status(r, now)?);
        }
        let publish_blocker = self.build_publish_set(now).err().map(|e| e.to_string());
        Ok(RepoStatus {
            roles,
            consistent_snapshot: self.root.signed.consistent_snapshot,
            targets: self.targets.values().map(|t| t.signed.targets.len()).sum(),
            publish_blocker,
        })
    }
}

pub(super) fn check_threshold(role: &str, threshold: u64, keys: usize) -> Result<(), RepoError> {
    if threshold == 0 {
        return Err(RepoError::Role {
            role: role.into(),
            detail: "threshold must be at least 1, got 0".into(),
        });
    }
    if threshold > keys as u64 {
        return Err(RepoError::Role {
            role: role.into(),
            detail: format!(
                "threshold {threshold} is larger than the number of keys ({keys}): the role could never be signed"
            ),
        });
    }
    Ok(())
}

/// Refuse a key that serves more than one of root, targets and timestamp.
pub(super) fn check_no_shared_keys(roles: &BTreeMap<String, RoleInit>) -> Result<(), RepoError> {
    let guarded = ["root", "targets", "timestamp"];
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for role in guarded {
        let Some(r) = roles.get(role) else { continue };
        for (_, id, _) in &r.keys {
            if let Some(other) = owner.get(id.as_str()) {
                if *other != role {
                    return Err(RepoError::Role {
                        role: role.into(),
                        detail: format!(
                            "key {id} is also a {other} key. root, targets and timestamp must not share keys: the timestamp key sits on an online server, targets keys sign releases, root keys are kept offline to recover from the compromise of the others; one key in two of these roles means stealing it yields both powers and root can no longer revoke it. Use separate keys, or pass --allow-shared-keys for a test setup"
                        ),
                    });
                }
            }
            owner.insert(id.as_str(), role);
        }
    }
    Ok(())
}
