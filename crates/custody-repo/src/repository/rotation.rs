//! Key changes: new root versions (top-level role keys) and revoking a
//! delegated key.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use custody_tuf::{Delegations, Key, TOP_LEVEL_ROLES};

use crate::error::RepoError;
use crate::keyring::{KeyLocation, KeyRing};

use super::signing::{check_no_shared_keys, check_threshold};
use super::Repository;
use super::{RoleInit, METADATA_DIR};

impl Repository {
    /// New root version replacing the keys of top-level `role`: `add` keys
    /// join, `remove` key ids leave, `threshold` (if given) is set. The new
    /// root is signed by every available key among the previous and the new
    /// root keys; it needs a threshold of both before it can be published.
    #[allow(clippy::too_many_arguments)]
    pub fn change_root_role(
        &mut self,
        role: &str,
        add: &[(Key, String, KeyLocation)],
        remove: &[String],
        threshold: Option<u64>,
        allow_shared_keys: bool,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        if !TOP_LEVEL_ROLES.contains(&role) {
            return Err(RepoError::Role {
                role: role.into(),
                detail: "not a top-level role (root, targets, snapshot, timestamp)".into(),
            });
        }
        let mut root = self.root.signed.clone();
        let rk = root.roles.get_mut(role).ok_or_else(|| RepoError::Role {
            role: role.into(),
            detail: "not listed in root".into(),
        })?;
        for id in remove {
            if !rk.keyids.contains(id) {
                return Err(RepoError::Role {
                    role: role.into(),
                    detail: format!("key {id} is not one of the role's keys {:?}", rk.keyids),
                });
            }
            rk.keyids.retain(|k| k != id);
        }
        for (k, id, loc) in add {
            if !rk.keyids.contains(id) {
                rk.keyids.push(id.clone());
            }
            root.keys.insert(id.clone(), k.clone());
            self.config.keys.entry(id.clone()).or_insert(loc.clone());
        }
        if let Some(t) = threshold {
            rk.threshold = t;
        }
        let (n, t) = (rk.keyids.len(), rk.threshold);
        check_threshold(role, t, n)?;
        // Drop keys no role uses any more.
        let used: BTreeSet<String> = root.roles.values().flat_map(|r| r.keyids.clone()).collect();
        root.keys.retain(|id, _| used.contains(id));
        if !allow_shared_keys {
            let roles: BTreeMap<String, RoleInit> = root
                .roles
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        RoleInit {
                            keys: r
                                .keyids
                                .iter()
                                .filter_map(|id| {
                                    root.keys
                                        .get(id)
                                        .map(|k| (k.clone(), id.clone(), KeyLocation::Offline))
                                })
                                .collect(),
                            threshold: r.threshold,
                        },
                    )
                })
                .collect();
            check_no_shared_keys(&roles)?;
        }
        // Previous root must be on disk as N.root.json for the union rule.
        let prev_path = self
            .dir
            .join(METADATA_DIR)
            .join(custody_tuf::metadata_filename(
                "root",
                Some(self.root.signed.version),
            ));
        if !prev_path.exists() {
            return Err(RepoError::BadFile {
                path: prev_path,
                detail: "root history file missing; cannot rotate root safely".into(),
            });
        }
        self.root.signed = root;
        self.bump("root", now)?;
        self.sign_available("root", ring)?;
        self.log_event(
            now,
            "root-change",
            serde_json::json!({ "role": role, "added": add.iter().map(|(_, id, _)| id).collect::<Vec<_>>(), "removed": remove, "threshold": t, "root_version": self.root.signed.version }),
        );
        if role == "timestamp" || role == "snapshot" || role == "targets" {
            // Re-sign the role with its new keys and refresh the chain.
            if role == "targets" {
                self.bump("targets", now)?;
                self.sign_available("targets", ring)?;
            }
            self.refresh(ring, now)?;
        }
        Ok(())
    }

    /// Remove `keyid` from every delegation that lists it (explicit roles
    /// and hash bins); each delegating role gets a new version and is
    /// re-signed, then snapshot and timestamp. Refuses if a role would be
    /// left with fewer keys than its threshold. Returns the delegating
    /// roles changed.
    pub fn revoke_delegated_key(
        &mut self,
        keyid: &str,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, RepoError> {
        let mut changed: Vec<(String, Delegations)> = Vec::new();
        for (parent, env) in &self.targets {
            let Some(d) = &env.signed.delegations else {
                continue;
            };
            let mut d = d.clone();
            let mut hit = false;
            for r in d.roles.iter_mut().flatten() {
                if r.keyids.iter().any(|k| k == keyid) {
                    r.keyids.retain(|k| k != keyid);
                    check_threshold(&r.name, r.threshold, r.keyids.len())?;
                    hit = true;
                }
            }
            if let Some(sr) = d.succinct_roles.as_mut() {
                if sr.keyids.iter().any(|k| k == keyid) {
                    sr.keyids.retain(|k| k != keyid);
                    check_threshold(&sr.name_prefix, sr.threshold, sr.keyids.len())?;
                    hit = true;
                }
            }
            if hit {
                let still_used = d
                    .roles
                    .iter()
                    .flatten()
                    .any(|r| r.keyids.iter().any(|k| k == keyid))
                    || d.succinct_roles
                        .as_ref()
                        .is_some_and(|s| s.keyids.iter().any(|k| k == keyid));
                if !still_used {
                    d.keys.remove(keyid);
                }
                changed.push((parent.clone(), d));
            }
        }
        let names: Vec<String> = changed.iter().map(|(p, _)| p.clone()).collect();
        for (parent, d) in changed {
            self.bump(&parent, now)?;
            if let Some(env) = self.targets.get_mut(&parent) {
                env.signed.delegations = Some(d);
            }
        }
        if !names.is_empty() {
            self.log_event(
                now,
                "revoke-delegated-key",
                serde_json::json!({ "keyid": keyid, "delegators": names }),
            );
            self.commit_targets_change(ring, now)?;
        }
        Ok(names)
    }
}
