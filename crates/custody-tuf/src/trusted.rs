//! The trusted metadata state machine (TUF client workflow, spec §5).
//!
//! Semantics follow python-tuf ngclient's `TrustedMetadataSet` (which
//! tuf-conformance exercises), with the stricter points listed in the crate
//! docs. In particular, like python-tuf:
//! - an expired timestamp or snapshot that passed every other check is kept
//!   as the trusted reference for rollback checks even though the update
//!   call returns [`Error::Expired`]; so is a (local) snapshot whose version
//!   differs from the timestamp's meta;
//! - targets metadata that is expired or mismatched is not kept.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::crypto::{verify_threshold, PublicKey};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::naming::{consistent_target_path, metadata_filename};
use crate::schema::{
    Key, MetaFile, Metadata, Root, Signed, Snapshot, TargetFile, Targets, Timestamp,
};

/// Outcome of [`TrustedMetadata::update_root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootUpdate {
    /// version of the newly trusted root
    pub version: u64,
    /// true if the timestamp or snapshot keys changed in this rotation: the
    /// client must delete its local timestamp and snapshot files (spec
    /// 5.3.11, fast-forward attack recovery) and must not load them. Also
    /// available cumulatively as
    /// [`TrustedMetadata::must_discard_timestamp_and_snapshot`].
    pub discard_timestamp_and_snapshot: bool,
}

/// Outcome of [`TrustedMetadata::update_timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUpdate {
    /// The new timestamp is now trusted (persist it).
    Updated,
    /// The new timestamp has the same version as the trusted one; the
    /// trusted one is kept (nothing to persist; not an error).
    Unchanged,
}

#[derive(Debug, Clone)]
struct LoadedTargets {
    meta: Metadata<Targets>,
    /// delegators whose delegation (keys, threshold) this content verified against
    verified_by: BTreeSet<String>,
}

/// Trusted metadata for one refresh. See the crate docs for the call order.
#[derive(Debug, Clone)]
pub struct TrustedMetadata {
    limits: Limits,
    root: Metadata<Root>,
    discard_ts_snap: bool,
    rotations: u32,
    timestamp: Option<Metadata<Timestamp>>,
    snapshot: Option<Metadata<Snapshot>>,
    targets: BTreeMap<String, LoadedTargets>,
}

fn check_size(role: &str, bytes: &[u8], limit: u64) -> Result<()> {
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            role: role.to_owned(),
            limit,
        });
    }
    Ok(())
}

fn key_set(root: &Root, role: &str) -> BTreeSet<Result<PublicKey, String>> {
    let Some(r) = root.roles.get(role) else {
        return BTreeSet::new();
    };
    r.keyids
        .iter()
        .map(|id| match root.keys.get(id) {
            Some(k) => PublicKey::from_key(k).map_err(|_| canonical_key_string(k)),
            None => Err(format!("missing:{id}")),
        })
        .collect()
}

fn canonical_key_string(k: &Key) -> String {
    crate::cjson::canonical_bytes("key", k)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl TrustedMetadata {
    /// Trust `root_bytes` (the locally stored root, the trust anchor) after
    /// checking it is signed by a threshold of its own root keys. Expiry is
    /// not checked here (intermediate roots may be expired); the final root
    /// is checked by [`TrustedMetadata::update_timestamp`].
    pub fn new(root_bytes: &[u8]) -> Result<Self> {
        Self::with_limits(root_bytes, Limits::default())
    }

    /// Like [`TrustedMetadata::new`] with explicit limits.
    pub fn with_limits(root_bytes: &[u8], limits: Limits) -> Result<Self> {
        check_size("root", root_bytes, limits.max_root_bytes)?;
        let root = Metadata::<Root>::from_bytes("root", root_bytes)?;
        verify_by_root(
            "root",
            &format!("root v{} (itself)", root.signed.version),
            &root.signed,
            &root,
        )?;
        Ok(TrustedMetadata {
            limits,
            root,
            discard_ts_snap: false,
            rotations: 0,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        })
    }

    fn root_label(&self) -> String {
        format!("root v{}", self.root.signed.version)
    }

    /// Limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Update to root version N+1 (spec 5.3): signed by a threshold of the
    /// trusted root's root keys AND of its own root keys, version exactly
    /// N+1. Not allowed after the timestamp was loaded. The client loops,
    /// fetching `{N+1}.root.json` until not found, at most
    /// `Limits::max_root_rotations` times.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<RootUpdate> {
        if self.timestamp.is_some() {
            return Err(Error::order(
                "root",
                "cannot update root after the timestamp was loaded",
            ));
        }
        if self.rotations >= self.limits.max_root_rotations {
            return Err(Error::TooManyRootRotations {
                limit: self.limits.max_root_rotations,
            });
        }
        check_size("root", bytes, self.limits.max_root_bytes)?;
        let new = Metadata::<Root>::from_bytes("root", bytes)?;
        // Old root's keys first: an attacker-made root is rejected on signatures.
        let old_label = format!("trusted root v{}", self.root.signed.version);
        verify_by_root("root", &old_label, &self.root.signed, &new)?;
        let trusted = self.root.signed.version;
        let expected = trusted.saturating_add(1);
        if new.signed.version != expected {
            return Err(Error::RootVersionSkip {
                trusted,
                expected,
                found: new.signed.version,
            });
        }
        let new_label = format!("new root v{} (itself)", new.signed.version);
        verify_by_root("root", &new_label, &new.signed, &new)?;
        let discard = ["timestamp", "snapshot"]
            .iter()
            .any(|r| key_set(&self.root.signed, r) != key_set(&new.signed, r));
        self.discard_ts_snap |= discard;
        self.rotations += 1;
        self.root = new;
        Ok(RootUpdate {
            version: self.root.signed.version,
            discard_timestamp_and_snapshot: discard,
        })
    }

    /// True if, during this refresh, a root rotation changed the timestamp
    /// or snapshot keys: local timestamp/snapshot must be deleted, not loaded.
    pub fn must_discard_timestamp_and_snapshot(&self) -> bool {
        self.discard_ts_snap
    }

    /// Check the final root is not expired at `now` (also done by
    /// [`TrustedMetadata::update_timestamp`]).
    pub fn check_root_not_expired(&self, now: DateTime<Utc>) -> Result<()> {
        if self.root.signed.is_expired(now) {
            return Err(Error::Expired {
                role: "root".to_owned(),
                expires: self.root.signed.expires,
                now,
            });
        }
        Ok(())
    }

    /// Load a timestamp (local cached copy first, then the remote one).
    ///
    /// Checks: the final root is not expired; `_type`; signatures by the
    /// root's timestamp keys; against the trusted timestamp (if any): the
    /// version must not be lower (rollback), an equal version keeps the
    /// trusted one ([`TimestampUpdate::Unchanged`]), the snapshot version in
    /// meta must not be lower; and the new timestamp must not be expired.
    /// An expired but otherwise valid timestamp is kept as the rollback
    /// reference while `Expired` is returned (python-tuf semantics).
    pub fn update_timestamp(
        &mut self,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<TimestampUpdate> {
        if self.snapshot.is_some() {
            return Err(Error::order(
                "timestamp",
                "cannot update timestamp after the snapshot was loaded",
            ));
        }
        self.check_root_not_expired(now)?;
        check_size("timestamp", bytes, self.limits.max_timestamp_bytes)?;
        let new = Metadata::<Timestamp>::from_bytes("timestamp", bytes)?;
        verify_by_root("timestamp", &self.root_label(), &self.root.signed, &new)?;
        if let Some(old) = &self.timestamp {
            let (nv, ov) = (new.signed.version, old.signed.version);
            if nv < ov {
                return Err(Error::VersionRollback {
                    role: "timestamp".to_owned(),
                    new: nv,
                    trusted: ov,
                });
            }
            if nv == ov {
                self.check_final_timestamp(now)?;
                return Ok(TimestampUpdate::Unchanged);
            }
            let nsv = new.signed.snapshot_meta().map_or(0, |m| m.version);
            let osv = old.signed.snapshot_meta().map_or(0, |m| m.version);
            if nsv < osv {
                return Err(Error::MetaRollback {
                    role: "timestamp".to_owned(),
                    file: "snapshot.json".to_owned(),
                    new: nsv,
                    trusted: osv,
                });
            }
        }
        self.timestamp = Some(new);
        self.check_final_timestamp(now)?;
        Ok(TimestampUpdate::Updated)
    }

    fn check_final_timestamp(&self, now: DateTime<Utc>) -> Result<()> {
        let Some(ts) = &self.timestamp else {
            return Err(Error::order(
                "snapshot",
                "cannot load the snapshot before the timestamp",
            ));
        };
        if ts.signed.is_expired(now) {
            return Err(Error::Expired {
                role: "timestamp".to_owned(),
                expires: ts.signed.expires,
                now,
            });
        }
        Ok(())
    }

    fn snapshot_meta(&self) -> Result<&MetaFile> {
        self.timestamp
            .as_ref()
            .and_then(|t| t.signed.snapshot_meta())
            .ok_or_else(|| {
                Error::order("snapshot", "cannot load the snapshot before the timestamp")
            })
    }

    /// Load a snapshot. `from_local_cache`: the bytes come from the client's
    /// own store, so (like python-tuf) length and hashes from timestamp meta
    /// are not checked, everything else is.
    ///
    /// Checks: timestamp loaded and not expired; length/hashes vs timestamp
    /// meta (remote only); `_type`; signatures by the root's snapshot keys;
    /// against the trusted snapshot (if any): version not lower, no meta
    /// entry removed or with a lower version; then not expired and version
    /// equal to timestamp meta. A snapshot failing only the last two checks
    /// is kept as rollback reference (python-tuf semantics).
    pub fn update_snapshot(
        &mut self,
        bytes: &[u8],
        now: DateTime<Utc>,
        from_local_cache: bool,
    ) -> Result<()> {
        if self.timestamp.is_none() {
            return Err(Error::order(
                "snapshot",
                "cannot load the snapshot before the timestamp",
            ));
        }
        if !self.targets.is_empty() {
            return Err(Error::order(
                "snapshot",
                "cannot update the snapshot after targets were loaded",
            ));
        }
        if from_local_cache && self.discard_ts_snap {
            return Err(Error::order("snapshot", "the local snapshot must be discarded: root rotation changed the timestamp or snapshot keys (fast-forward attack recovery)"));
        }
        self.check_final_timestamp(now)?;
        let meta = self.snapshot_meta()?.clone();
        if from_local_cache {
            check_size("snapshot", bytes, self.limits.max_snapshot_bytes)?;
        } else {
            check_size(
                "snapshot",
                bytes,
                meta.length.unwrap_or(self.limits.max_snapshot_bytes),
            )?;
            meta.verify_bytes("snapshot", bytes)?;
        }
        let new = Metadata::<Snapshot>::from_bytes("snapshot", bytes)?;
        verify_by_root("snapshot", &self.root_label(), &self.root.signed, &new)?;
        if let Some(old) = &self.snapshot {
            if new.signed.version < old.signed.version {
                return Err(Error::VersionRollback {
                    role: "snapshot".to_owned(),
                    new: new.signed.version,
                    trusted: old.signed.version,
                });
            }
            for (file, old_meta) in &old.signed.meta {
                let Some(new_meta) = new.signed.meta.get(file) else {
                    return Err(Error::MetaRemoved {
                        role: "snapshot".to_owned(),
                        file: file.clone(),
                    });
                };
                if new_meta.version < old_meta.version {
                    return Err(Error::MetaRollback {
                        role: "snapshot".to_owned(),
                        file: file.clone(),
                        new: new_meta.version,
                        trusted: old_meta.version,
                    });
                }
            }
        }
        self.snapshot = Some(new);
        self.check_final_snapshot(now)
    }

    fn check_final_snapshot(&self, now: DateTime<Utc>) -> Result<()> {
        let Some(snap) = &self.snapshot else {
            return Err(Error::order(
                "targets",
                "cannot load targets before the snapshot",
            ));
        };
        if snap.signed.is_expired(now) {
            return Err(Error::Expired {
                role: "snapshot".to_owned(),
                expires: snap.signed.expires,
                now,
            });
        }
        let expected = self.snapshot_meta()?.version;
        if snap.signed.version != expected {
            return Err(Error::VersionMismatch {
                role: "snapshot".to_owned(),
                source_role: "timestamp".to_owned(),
                expected,
                found: snap.signed.version,
            });
        }
        Ok(())
    }

    /// Load the top-level targets role (delegated by root).
    pub fn update_targets(&mut self, bytes: &[u8], now: DateTime<Utc>) -> Result<()> {
        self.update_delegated_targets(bytes, "targets", "root", now)
    }

    /// Load (or re-verify) targets role `role` as delegated by `delegator`
    /// (`"root"` for the top-level `"targets"`).
    ///
    /// Checks: snapshot loaded, not expired, version equal to timestamp
    /// meta; the delegator is trusted and delegates `role` (explicitly or as
    /// a succinct bin); snapshot lists `ROLE.json`; length/hashes from that
    /// entry; `_type`; signatures by the delegator's keys for the role with
    /// its threshold; version equal to snapshot meta; not expired. If the role
    /// is already trusted (through another delegator), the content must be
    /// identical and the new delegator is recorded as verified.
    pub fn update_delegated_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.update_delegated_targets_checked(bytes, role, delegator, now, |_| Ok(()))
    }

    /// Like [`TrustedMetadata::update_targets`], and before the role is
    /// accepted, `check` sees the parsed role whose signatures, version,
    /// length, hashes and expiry passed every rule above. If `check` refuses,
    /// the role is not trusted and [`Error::Refused`] carries the caller's
    /// error. The director repository's device-binding check runs here.
    pub fn update_targets_checked<F>(
        &mut self,
        bytes: &[u8],
        now: DateTime<Utc>,
        check: F,
    ) -> Result<()>
    where
        F: FnOnce(&Targets) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    {
        self.update_delegated_targets_checked(bytes, "targets", "root", now, check)
    }

    fn update_delegated_targets_checked<F>(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
        now: DateTime<Utc>,
        check: F,
    ) -> Result<()>
    where
        F: FnOnce(&Targets) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.snapshot.is_none() {
            return Err(Error::order(
                role,
                "cannot load targets before the snapshot",
            ));
        }
        self.check_final_snapshot(now)?;
        let (keyids, threshold, keys) = self.delegation_for(role, delegator)?;
        let file = format!("{role}.json");
        let meta = self
            .snapshot
            .as_ref()
            .and_then(|s| s.signed.meta.get(&file))
            .ok_or_else(|| Error::MissingMeta {
                role: role.to_owned(),
                source_role: "snapshot".to_owned(),
                file: file.clone(),
            })?
            .clone();
        check_size(
            role,
            bytes,
            meta.length.unwrap_or(self.limits.max_targets_bytes),
        )?;
        meta.verify_bytes(role, bytes)?;
        let new = Metadata::<Targets>::from_bytes(role, bytes)?;
        verify_threshold(
            role,
            delegator,
            new.canonical_signed(),
            &new.signatures,
            &keyids,
            &keys,
            threshold,
        )?;
        if new.signed.version != meta.version {
            return Err(Error::VersionMismatch {
                role: role.to_owned(),
                source_role: "snapshot".to_owned(),
                expected: meta.version,
                found: new.signed.version,
            });
        }
        if new.signed.is_expired(now) {
            return Err(Error::Expired {
                role: role.to_owned(),
                expires: new.signed.expires,
                now,
            });
        }
        check(&new.signed).map_err(|source| Error::Refused {
            role: role.to_owned(),
            source,
        })?;
        match self.targets.get_mut(role) {
            Some(existing) => {
                if existing.meta.canonical_signed() != new.canonical_signed() {
                    let previous = existing
                        .verified_by
                        .iter()
                        .next()
                        .cloned()
                        .unwrap_or_default();
                    return Err(Error::InconsistentRole {
                        role: role.to_owned(),
                        previous,
                        delegator: delegator.to_owned(),
                    });
                }
                existing.verified_by.insert(delegator.to_owned());
            }
            None => {
                self.targets.insert(
                    role.to_owned(),
                    LoadedTargets {
                        meta: new,
                        verified_by: BTreeSet::from([delegator.to_owned()]),
                    },
                );
            }
        }
        Ok(())
    }

    /// Keys and threshold `delegator` assigns to `role`.
    fn delegation_for(
        &self,
        role: &str,
        delegator: &str,
    ) -> Result<(Vec<String>, u64, BTreeMap<String, Key>)> {
        let not_delegated = || Error::NotDelegated {
            role: role.to_owned(),
            delegator: delegator.to_owned(),
        };
        if delegator == "root" {
            if role != "targets" {
                return Err(not_delegated());
            }
            let r = self
                .root
                .signed
                .roles
                .get("targets")
                .ok_or_else(not_delegated)?;
            return Ok((r.keyids.clone(), r.threshold, self.root.signed.keys.clone()));
        }
        if role == "targets" {
            return Err(not_delegated());
        }
        let parent = self.targets.get(delegator).ok_or_else(|| {
            Error::order(
                role,
                format!("cannot load {role} before its delegator {delegator}"),
            )
        })?;
        let d = parent
            .meta
            .signed
            .delegations
            .as_ref()
            .ok_or_else(not_delegated)?;
        if let Some(roles) = &d.roles {
            let r = roles
                .iter()
                .find(|r| r.name == role)
                .ok_or_else(not_delegated)?;
            Ok((r.keyids.clone(), r.threshold, d.keys.clone()))
        } else if let Some(s) = &d.succinct_roles {
            if !s.is_bin(role) {
                return Err(not_delegated());
            }
            Ok((s.keyids.clone(), s.threshold, d.keys.clone()))
        } else {
            Err(not_delegated())
        }
    }

    /// Has `role` been verified against `delegator`'s delegation in this refresh?
    pub fn is_verified_by(&self, role: &str, delegator: &str) -> bool {
        self.targets
            .get(role)
            .is_some_and(|t| t.verified_by.contains(delegator))
    }

    /// The trusted root.
    pub fn root(&self) -> &Root {
        &self.root.signed
    }

    /// The trusted root envelope.
    pub fn root_metadata(&self) -> &Metadata<Root> {
        &self.root
    }

    /// The trusted timestamp, if loaded (possibly expired: check the update result).
    pub fn timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref().map(|m| &m.signed)
    }

    /// The trusted snapshot, if loaded.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|m| &m.signed)
    }

    /// The trusted top-level targets, if loaded.
    pub fn targets(&self) -> Option<&Targets> {
        self.targets_role("targets")
    }

    /// A trusted targets role (top-level or delegated) by name.
    pub fn targets_role(&self, role: &str) -> Option<&Targets> {
        self.targets.get(role).map(|t| &t.meta.signed)
    }

    /// Alias of [`TrustedMetadata::targets_role`].
    pub fn delegated_targets(&self, role: &str) -> Option<&Targets> {
        self.targets_role(role)
    }

    /// Does the trusted root use consistent snapshots?
    pub fn consistent_snapshot(&self) -> bool {
        self.root.signed.consistent_snapshot
    }

    /// Remote file name of the next root to try: `{N+1}.root.json`.
    pub fn next_root_filename(&self) -> String {
        metadata_filename("root", Some(self.root.signed.version.saturating_add(1)))
    }

    /// Remote file name for a non-root role: `timestamp.json`; for the
    /// snapshot and targets roles `{version}.{role}.json` with consistent
    /// snapshots (version from timestamp / snapshot meta), else `{role}.json`.
    /// Errors if the needed meta is not trusted yet.
    pub fn remote_filename(&self, role: &str) -> Result<String> {
        if role == "timestamp" {
            return Ok(metadata_filename(role, None));
        }
        if !self.consistent_snapshot() {
            return Ok(metadata_filename(role, None));
        }
        Ok(metadata_filename(role, Some(self.meta_for(role)?.version)))
    }

    /// Maximum number of bytes to download for `role`: the length from
    /// timestamp/snapshot meta when given, else the limit from [`Limits`].
    pub fn max_length(&self, role: &str) -> u64 {
        match role {
            "root" => self.limits.max_root_bytes,
            "timestamp" => self.limits.max_timestamp_bytes,
            "snapshot" => self
                .meta_for(role)
                .ok()
                .and_then(|m| m.length)
                .unwrap_or(self.limits.max_snapshot_bytes),
            _ => self
                .meta_for(role)
                .ok()
                .and_then(|m| m.length)
                .unwrap_or(self.limits.max_targets_bytes),
        }
    }

    /// The trusted meta entry for `role`: from timestamp meta for
    /// `"snapshot"`, from snapshot meta (`ROLE.json`) for targets roles.
    /// Errors with [`Error::MissingMeta`] when the snapshot does not list the
    /// role (the client need not download it then), or an order error when
    /// the needed metadata is not loaded yet.
    pub fn meta_for(&self, role: &str) -> Result<&MetaFile> {
        if role == "snapshot" {
            return self.snapshot_meta();
        }
        let file = format!("{role}.json");
        self.snapshot
            .as_ref()
            .ok_or_else(|| Error::order(role, "the snapshot is not loaded yet"))?
            .signed
            .meta
            .get(&file)
            .ok_or_else(|| Error::MissingMeta {
                role: role.to_owned(),
                source_role: "snapshot".to_owned(),
                file,
            })
    }

    /// Remote path of a target: with consistent snapshots `dir/{hash}.{name}`
    /// (sha256 preferred, else sha512, else the first listed hash), else the
    /// path itself.
    pub fn target_remote_path(&self, path: &str, target: &TargetFile) -> String {
        if !self.consistent_snapshot() {
            return path.to_owned();
        }
        match target.preferred_hash() {
            Some(h) => consistent_target_path(path, h),
            None => path.to_owned(),
        }
    }
}

impl TargetFile {
    /// The hash used in consistent-snapshot target names: sha256, else
    /// sha512, else the first listed.
    pub fn preferred_hash(&self) -> Option<&str> {
        self.hashes
            .get("sha256")
            .or_else(|| self.hashes.get("sha512"))
            .or_else(|| self.hashes.values().next())
            .map(String::as_str)
    }
}

/// `label` names the root whose keys are used (e.g. "trusted root v3").
fn verify_by_root<T: Signed>(role: &str, label: &str, root: &Root, md: &Metadata<T>) -> Result<()> {
    let r = root
        .roles
        .get(T::TYPE)
        .ok_or_else(|| Error::schema("root", "roles", format!("role {} is missing", T::TYPE)))?;
    verify_threshold(
        role,
        label,
        md.canonical_signed(),
        &md.signatures,
        &r.keyids,
        &root.keys,
        r.threshold,
    )
    .map(|_| ())
}
