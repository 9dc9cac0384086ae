//! Versions and the snapshot/timestamp chain: bump a changed role,
//! re-sign changed targets roles, then new snapshot and timestamp.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use custody_tuf::{MetaFile, Signature, TOP_LEVEL_ROLES};

use crate::error::RepoError;
use crate::keyring::KeyRing;
use crate::signer::Signer;

use super::bulk::par_map;
use super::codec::{canonical_signed, envelope_bytes, expiry};
use super::Repository;

/// A key id and its thread-safe signer.
type SyncSigner<'a> = (&'a String, &'a (dyn Signer + Sync));

impl Repository {
    /// The name prefix of the succinct hash-bin delegation that `role` is a
    /// bin of (`{prefix}-{hex}`), if any.
    fn succinct_prefix_of(&self, role: &str) -> Option<String> {
        self.delegating_envs().find_map(|env| {
            let s = env.signed.delegations.as_ref()?.succinct_roles.as_ref()?;
            let hex = role.strip_prefix(&s.name_prefix)?.strip_prefix('-')?;
            (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| s.name_prefix.clone())
        })
    }

    /// Mark `role` changed: bump its version (once per run), renew its
    /// expiry and drop its signatures (they cover the old content).
    pub(super) fn bump(&mut self, role: &str, now: DateTime<Utc>) -> Result<(), RepoError> {
        if !TOP_LEVEL_ROLES.contains(&role) {
            self.check_loaded(role)?;
        }
        let first = self.bumped.insert(role.to_owned());
        let validity = match self.succinct_prefix_of(role) {
            Some(prefix) => self.config.expiry.for_bin(role, &prefix),
            None => self.config.expiry.for_role(role),
        };
        let exp = expiry(now, validity)?;
        macro_rules! bump_env {
            ($env:expr) => {{
                if first {
                    $env.signed.version =
                        $env.signed
                            .version
                            .checked_add(1)
                            .ok_or_else(|| RepoError::Role {
                                role: role.into(),
                                detail: "version overflow".into(),
                            })?;
                }
                $env.signed.expires = exp;
                $env.signatures.clear();
            }};
        }
        match role {
            "root" => {
                bump_env!(self.root);
                if first {
                    self.new_root = true;
                }
            }
            "snapshot" => bump_env!(self.snapshot),
            "timestamp" => bump_env!(self.timestamp),
            _ => {
                let env = self.targets.get_mut(role).ok_or_else(|| RepoError::Role {
                    role: role.into(),
                    detail: "no metadata for this role in the repository".into(),
                })?;
                bump_env!(env);
            }
        }
        // The signed content changes: the bytes it was signed over are stale.
        self.signed_canonical.remove(role);
        self.dirty.insert(role.to_owned());
        Ok(())
    }

    /// Re-sign changed targets roles, then new snapshot and timestamp.
    pub(super) fn commit_targets_change(
        &mut self,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let changed: Vec<String> = self
            .bumped
            .iter()
            .filter(|r| !["root", "snapshot", "timestamp"].contains(&r.as_str()))
            .cloned()
            .collect();
        // Canonical bytes of every changed role in parallel (the expensive
        // part for big roles), then sign each one (cheap, and the signers
        // need not be thread-safe).
        let mut keyids = Vec::with_capacity(changed.len());
        for role in &changed {
            let ids = self.signing_keyids(role)?;
            for id in &ids {
                let loc = self.config.keys.get(id).cloned();
                ring.ensure(id, loc.as_ref())?;
            }
            keyids.push(ids);
        }
        let ring_ref: &KeyRing = ring;
        // Thread-safe signers (key files, in-memory keys) sign on all cores
        // together with the canonicalisation; others (tokens) one by one.
        let sync_signers: Option<Vec<Vec<SyncSigner<'_>>>> = keyids
            .iter()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| ring_ref.get(id).map(|s| (id, s)))
                    .map(|(id, s)| s.as_sync().map(|ss| (id, ss)))
                    .collect::<Option<Vec<_>>>()
            })
            .collect();
        let envs = changed
            .iter()
            .map(|r| self.targets_env(r))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(signers) = sync_signers {
            let jobs: Vec<_> = envs.into_iter().zip(signers).collect();
            let sigs = par_map(&jobs, |(env, signers)| -> Result<_, RepoError> {
                let msg = canonical_signed("targets", env)?;
                let sigs = signers
                    .iter()
                    .map(|(id, s)| {
                        Ok(Signature {
                            keyid: (*id).clone(),
                            sig: hex::encode(s.sign(&msg)?),
                            unknown: Default::default(),
                        })
                    })
                    .collect::<Result<Vec<_>, RepoError>>()?;
                Ok((msg, sigs))
            });
            drop(jobs);
            for (role, r) in changed.iter().zip(sigs) {
                let (msg, sigs) = r?;
                self.apply_signatures(role, sigs)?;
                self.remember_canonical(role, msg);
            }
        } else {
            let msgs = par_map(&envs, |env| canonical_signed("targets", env));
            drop(envs);
            for ((role, ids), msg) in changed.iter().zip(&keyids).zip(msgs) {
                let msg = msg?;
                self.sign_available_msg(role, ids, &msg, ring_ref)?;
                self.remember_canonical(role, msg);
            }
        }
        self.refresh(ring, now)
    }

    /// New snapshot (listing every targets role's current version) and new
    /// timestamp, both signed with whatever keys are available.
    pub fn refresh(&mut self, ring: &mut KeyRing, now: DateTime<Utc>) -> Result<(), RepoError> {
        let meta: BTreeMap<String, MetaFile> = self
            .targets
            .iter()
            .map(|(role, env)| {
                (
                    format!("{role}.json"),
                    MetaFile::with_version(env.signed.version),
                )
            })
            .collect();
        self.snapshot.signed.meta = meta;
        self.bump("snapshot", now)?;
        self.sign_available("snapshot", ring)?;
        self.cascade_timestamp_only(ring, now)?;
        self.log_event(
            now,
            "refresh",
            serde_json::json!({
                "snapshot": self.snapshot.signed.version,
                "timestamp": self.timestamp.signed.version,
            }),
        );
        Ok(())
    }

    /// New timestamp only (same snapshot), for frequent timestamp renewal
    /// while the snapshot key signs less often.
    pub fn refresh_timestamp(
        &mut self,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.cascade_timestamp_only(ring, now)?;
        self.log_event(
            now,
            "refresh-timestamp",
            serde_json::json!({ "timestamp": self.timestamp.signed.version }),
        );
        Ok(())
    }

    pub(super) fn cascade_timestamp_only(
        &mut self,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.bump("timestamp", now)?;
        self.update_timestamp(ring)
    }

    /// Point the timestamp at the snapshot's exact bytes and sign it.
    pub(super) fn update_timestamp(&mut self, ring: &mut KeyRing) -> Result<(), RepoError> {
        let snap = envelope_bytes(&self.snapshot)?;
        let entry = MetaFile {
            version: self.snapshot.signed.version,
            length: Some(snap.len() as u64),
            hashes: Some([("sha256".to_owned(), custody_tuf::crypto::sha256_hex(&snap))].into()),
            unknown: Default::default(),
        };
        self.timestamp.signed.meta = [("snapshot.json".to_owned(), entry)].into();
        self.timestamp.signatures.clear();
        self.dirty.insert("timestamp".into());
        self.sign_available("timestamp", ring)?;
        Ok(())
    }
}
