//! Delegations: explicit delegated roles and TAP 15 hash bins.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use custody_tuf::{DelegatedRole, Delegations, Key, SuccinctRoles, TargetFile, TOP_LEVEL_ROLES};

use crate::error::RepoError;
use crate::keyring::{KeyLocation, KeyRing};

use super::codec::{expiry, new_targets};
use super::signing::check_threshold;
use super::Envelope;
use super::Repository;

impl Repository {
    /// Delegate `paths` (or hash prefixes) from `parent` to a new role.
    #[allow(clippy::too_many_arguments)]
    pub fn delegate(
        &mut self,
        parent: &str,
        name: &str,
        keys: &[(Key, String, KeyLocation)],
        threshold: u64,
        paths: Option<Vec<String>>,
        path_hash_prefixes: Option<Vec<String>>,
        terminating: bool,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        if TOP_LEVEL_ROLES.contains(&name) || name.is_empty() {
            return Err(RepoError::Role {
                role: name.into(),
                detail: "a delegated role needs a non-empty name that is not a top-level role name"
                    .into(),
            });
        }
        if self.targets.contains_key(name) {
            return Err(RepoError::Role {
                role: name.into(),
                detail: "already exists in this repository".into(),
            });
        }
        check_threshold(name, threshold, keys.len())?;
        if paths.is_some() == path_hash_prefixes.is_some() {
            return Err(RepoError::Role {
                role: name.into(),
                detail: "give exactly one of paths and path hash prefixes".into(),
            });
        }
        self.targets_env(parent)?;
        self.bump(parent, now)?;
        let env = self
            .targets
            .get_mut(parent)
            .ok_or_else(|| RepoError::Role {
                role: parent.into(),
                detail: "no metadata".into(),
            })?;
        let d = env.signed.delegations.get_or_insert_with(|| Delegations {
            keys: BTreeMap::new(),
            roles: Some(vec![]),
            succinct_roles: None,
            unknown: Default::default(),
        });
        if d.succinct_roles.is_some() {
            return Err(RepoError::Role {
                role: parent.into(),
                detail:
                    "delegates to hash bins (succinct_roles); it cannot also delegate explicitly"
                        .into(),
            });
        }
        let mut ids = Vec::new();
        for (k, id, loc) in keys {
            d.keys.insert(id.clone(), k.clone());
            if !ids.contains(id) {
                ids.push(id.clone());
            }
            self.config.keys.entry(id.clone()).or_insert(loc.clone());
        }
        d.roles.get_or_insert_with(Vec::new).push(DelegatedRole {
            name: name.into(),
            keyids: ids,
            threshold,
            terminating,
            paths,
            path_hash_prefixes,
            unknown: Default::default(),
        });
        let exp = expiry(now, self.config.expiry.for_role(name))?;
        self.targets.insert(
            name.into(),
            Envelope {
                signatures: vec![],
                signed: new_targets(exp),
            },
        );
        self.bumped.insert(name.into());
        self.dirty.insert(name.into());
        // `parent` may delegate for the first time
        self.delegators = std::sync::OnceLock::new();
        self.log_event(
            now,
            "delegate",
            serde_json::json!({ "from": parent, "role": name, "threshold": threshold }),
        );
        self.commit_targets_change(ring, now)
    }

    /// TAP 15: delegate all of `parent`'s paths to 2^bit_length hash bins
    /// `{prefix}-{hex}` with one key set.
    #[allow(clippy::too_many_arguments)]
    pub fn hash_bins(
        &mut self,
        parent: &str,
        prefix: &str,
        bit_length: u32,
        keys: &[(Key, String, KeyLocation)],
        threshold: u64,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<usize, RepoError> {
        if !(1..=16).contains(&bit_length) {
            return Err(RepoError::Invalid(format!(
                "hash bins: bit length {bit_length} is outside 1..=16 (2..65536 bins)"
            )));
        }
        check_threshold(prefix, threshold, keys.len())?;
        let env = self.targets_env(parent)?;
        if env.signed.delegations.is_some() {
            return Err(RepoError::Role {
                role: parent.into(),
                detail: "already has delegations; hash bins must be its only delegation".into(),
            });
        }
        let succinct = SuccinctRoles {
            keyids: keys.iter().map(|(_, id, _)| id.clone()).collect(),
            threshold,
            bit_length,
            name_prefix: prefix.into(),
            unknown: Default::default(),
        };
        let bins: Vec<String> = (0..succinct.bin_count())
            .map(|i| succinct.bin_name(i))
            .collect();
        if let Some(clash) = bins.iter().find(|b| self.targets.contains_key(*b)) {
            return Err(RepoError::Role {
                role: clash.clone(),
                detail: "a role with this bin name already exists".into(),
            });
        }
        self.bump(parent, now)?;
        // Move the parent's existing targets into their bins.
        let moved: Vec<(String, TargetFile)> = match self.targets.get_mut(parent) {
            Some(env) => std::mem::take(&mut env.signed.targets)
                .into_iter()
                .collect(),
            None => vec![],
        };
        let mut dkeys = BTreeMap::new();
        for (k, id, loc) in keys {
            dkeys.insert(id.clone(), k.clone());
            self.config.keys.entry(id.clone()).or_insert(loc.clone());
        }
        let exp = expiry(now, self.config.expiry.for_role(prefix))?;
        for b in &bins {
            self.targets.insert(
                b.clone(),
                Envelope {
                    signatures: vec![],
                    signed: new_targets(exp),
                },
            );
            self.bumped.insert(b.clone());
            self.dirty.insert(b.clone());
        }
        for (path, tf) in moved {
            let bin = succinct.role_for_target(&path);
            if let Some(env) = self.targets.get_mut(&bin) {
                env.signed.targets.insert(path, tf);
            }
        }
        if let Some(env) = self.targets.get_mut(parent) {
            env.signed.delegations = Some(Delegations {
                keys: dkeys,
                roles: None,
                succinct_roles: Some(succinct),
                unknown: Default::default(),
            });
        }
        self.delegators = std::sync::OnceLock::new();
        self.log_event(now, "hash-bins", serde_json::json!({ "from": parent, "prefix": prefix, "bit_length": bit_length, "bins": bins.len() }));
        self.commit_targets_change(ring, now)?;
        Ok(bins.len())
    }
}
