//! A TUF repository being authored: the staged metadata in `DIR/metadata`,
//! target contents in `DIR/targets`, configuration in `DIR/custody-repo.json`
//! and an append-only custody log in `DIR/custody-log.jsonl`.
//!
//! Every command works in memory (edit, bump versions, sign) and only then
//! writes: a failure (wrong passphrase, key not in role, bad path) leaves
//! the directory as it was. Each file is replaced atomically (temp, fsync,
//! rename).
//!
//! Verification is never re-implemented here: thresholds are answered by
//! `custody_tuf::verify_threshold`, and `publish` feeds the exact bytes it
//! is about to publish to custody-tuf's refresh driver
//! (`custody_tuf::Refresh`), the client workflow every custody client runs.
//!
//! The types ([`Repository`] and its options and reports) live here; each
//! concern is one private module adding methods to [`Repository`]:
//!
//! - `store`: init, open (under the repository lock) and save;
//! - `codec`: metadata bytes as written, strict parse back, bounded reads;
//! - `signing`: role keys, signing, per-role signature status;
//! - `chain`: version bumps and the snapshot/timestamp chain;
//! - `targets`: adding and removing targets;
//! - `external`: targets listed by length and hashes, without contents;
//! - `provenance`: the provenance policy and gate;
//! - `delegations`: delegated roles and hash bins;
//! - `rotation`: root key changes and delegated key revocation;
//! - `offline`: export, offline signing and merging of signatures;
//! - `publish_check`: the publish set, verified by custody-tuf's client
//!   workflow; `publish`: writing it as a new generation;
//! - `custody_log`: the hash-chained custody log;
//! - `bulk`: parallel map and bulk durable writes.

mod bulk;
mod chain;
mod codec;
mod custody_log;
mod delegations;
mod external;
mod inventory;
mod offline;
mod provenance;
mod publish;
mod publish_check;
mod rotation;
mod signing;
mod store;
mod targets;

pub use codec::{checked_envelope_bytes, envelope_bytes, parse_envelope};
pub use custody_log::verify_log;
pub use offline::sign_metadata_bytes;
pub use provenance::{ProvenanceInput, PROVENANCE_DIR, PROVENANCE_POLICY_FILE};
pub use publish::PublishStats;
pub use publish_check::PublishFile;
pub use store::LOCK_FILE;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{Key, Root, Signature, Snapshot, Targets, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::keyring::KeyLocation;
use crate::paths::validate_target_path;
use crate::policy::ExpiryPolicy;

/// Repository configuration file name.
pub const CONFIG_FILE: &str = "custody-repo.json";

/// Staged metadata directory.
pub const METADATA_DIR: &str = "metadata";

/// Staged target contents directory.
pub const TARGETS_DIR: &str = "targets";

/// Custody log: one JSON object per line, appended by every change.
pub const LOG_FILE: &str = "custody-log.jsonl";

/// Repository configuration (not secret: key *locations*, never keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    /// config format version (1)
    pub format: u32,
    /// validity period per role
    pub expiry: ExpiryPolicy,
    /// key id → where its private key lives
    pub keys: BTreeMap<String, KeyLocation>,
}

/// A metadata envelope as custody writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// signatures over the canonical JSON of `signed`
    pub signatures: Vec<Signature>,
    /// the signed content
    pub signed: T,
}

/// Keys and threshold for one role at initialisation.
#[derive(Debug, Clone)]
pub struct RoleInit {
    /// (public key, key id, where the private key lives)
    pub keys: Vec<(Key, String, KeyLocation)>,
    /// signatures required
    pub threshold: u64,
}

/// Options of [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// keys and threshold of root, targets, snapshot, timestamp
    pub roles: BTreeMap<String, RoleInit>,
    /// validity period per role
    pub expiry: ExpiryPolicy,
    /// publish with consistent snapshots (default true)
    pub consistent_snapshot: bool,
    /// allow one key in more than one of root / targets / timestamp
    pub allow_shared_keys: bool,
}

/// Where a role's keys and threshold come from.
#[derive(Debug, Clone)]
pub struct RoleKeyInfo {
    /// key ids allowed to sign
    pub keyids: Vec<String>,
    /// signatures required
    pub threshold: u64,
    /// key id → key (root's keys, or the delegator's delegation keys)
    pub keys: BTreeMap<String, Key>,
    /// role whose metadata lists these keys (`root` for top-level roles)
    pub delegator: String,
}

/// Signature state of one role.
#[derive(Debug, Clone, Serialize)]
pub struct RoleStatus {
    /// role name
    pub role: String,
    /// metadata version
    pub version: u64,
    /// expiry
    pub expires: DateTime<Utc>,
    /// `now >= expires`
    pub expired: bool,
    /// signatures required
    pub threshold: u64,
    /// key ids whose signature verifies (and counts)
    pub signed_by: Vec<String>,
    /// key ids of the role without a valid signature
    pub missing: Vec<String>,
    /// key ids with a signature that does not verify
    pub invalid: Vec<String>,
    /// threshold met (decided by custody-tuf's `verify_threshold`); for a
    /// new root version also the previous root's threshold
    pub threshold_met: bool,
    /// for root versions after 1: the previous root's root threshold, which
    /// the new root must also meet with the previous root's keys
    pub previous_root_threshold: Option<u64>,
}

/// What a publish would check and find.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    /// per role, top-level first
    pub roles: Vec<RoleStatus>,
    /// consistent snapshots on
    pub consistent_snapshot: bool,
    /// number of targets over all roles
    pub targets: usize,
    /// `None` when publishable, else why not (custody-tuf's verdict)
    pub publish_blocker: Option<String>,
}

/// The staged repository.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    /// configuration
    pub config: RepoConfig,
    root: Envelope<Root>,
    targets: BTreeMap<String, Envelope<Targets>>,
    snapshot: Envelope<Snapshot>,
    timestamp: Envelope<Timestamp>,
    dirty: BTreeSet<String>,
    bumped: BTreeSet<String>,
    new_root: bool,
    /// staged target files (closed: a bulk add must not hold one open file
    /// per target), removed on drop unless `save` renames them
    pending_copies: Vec<(tempfile::TempPath, String)>,
    /// staged target files whose data was not fsynced one by one (bulk
    /// adds): `save` syncs the whole file system once before any metadata
    pending_unsynced: bool,
    lock: Option<std::fs::File>,
    pending_removals: Vec<String>,
    log: Vec<serde_json::Value>,
    /// the exact bytes of each targets role's staged file, for roles not
    /// changed since they were read (`open`) or written (`save`): publish
    /// verifies and publishes these instead of serializing again
    staged: BTreeMap<String, std::sync::Arc<Vec<u8>>>,
    /// targets listed without contents (added by length and hashes:
    /// [`TargetEntry`]), per role; loaded on first use
    external: Option<BTreeMap<String, BTreeSet<String>>>,
    /// roles whose external-target list changed since the last save
    external_dirty: BTreeSet<String>,
    /// provenance policy to store (`Some(None)`: remove) at save
    pending_policy: Option<Option<Vec<u8>>>,
    /// accepted provenance envelopes to store at save: (sha256, bytes)
    pending_provenance: Vec<(String, Vec<u8>)>,
    /// delegated roles read by `open` with a plain typed parse (no strict
    /// parse, no canonical round-trip check): strictly checked from their
    /// staged bytes before they are first changed or signed
    unchecked: BTreeSet<String>,
    /// targets roles: the canonical bytes of `signed` they were last
    /// signed over (dropped when the role is bumped); `save` writes these
    /// bytes and `publish` verifies them, instead of serializing again
    signed_canonical: BTreeMap<String, codec::SignedCanonical>,
    /// names of the targets roles that delegate (computed on first use,
    /// reset when delegations are added): finding a role's delegator must
    /// not walk 16,384 hash bins for each of 16,384 bins
    delegators: std::sync::OnceLock<Vec<String>>,
}

/// Directory of the per-role lists of targets whose contents custody does
/// not hold (added by length and hashes).
pub const EXTERNAL_DIR: &str = "external-targets";

/// A target added by its length and hashes, without its contents: what a
/// release pipeline or an artifact store knows once a build is uploaded
/// (e.g. a package index computing digests at upload). Its contents are
/// served by that store; `publish` writes metadata only for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetEntry {
    /// target path (the TUF target name)
    pub name: String,
    /// length in bytes
    pub length: u64,
    /// hash algorithm -> lowercase hex digest; must include `sha256`
    pub hashes: BTreeMap<String, String>,
    /// `custom` metadata of the target
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
    /// DSSE provenance envelope for this target, checked against the
    /// repository's provenance policy when one is set
    #[serde(skip)]
    pub provenance: Option<Vec<u8>>,
}

impl TargetEntry {
    /// Check the path rules and the digests (known algorithm, hex, length).
    pub fn check(&self) -> Result<(), RepoError> {
        validate_target_path(&self.name)?;
        if !self.hashes.contains_key("sha256") {
            return Err(RepoError::Invalid(format!(
                "target {:?}: hashes {:?} has no sha256; custody needs sha256 (consistent-snapshot file names, client checks)",
                self.name,
                self.hashes.keys().collect::<Vec<_>>()
            )));
        }
        for (alg, hex) in &self.hashes {
            let want = match alg.as_str() {
                "sha256" => 64,
                "sha512" => 128,
                other => {
                    return Err(RepoError::Invalid(format!(
                        "target {:?}: hash algorithm {other:?} is not supported (sha256, sha512)",
                        self.name
                    )))
                }
            };
            if hex.len() != want || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(RepoError::Invalid(format!(
                    "target {:?}: {alg} digest {hex:?} must be {want} lowercase hex digits",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

impl Repository {
    /// The repository directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Trusted root as staged.
    pub fn root(&self) -> &Envelope<Root> {
        &self.root
    }

    /// A targets role (top-level `targets` or delegated) as staged.
    pub fn targets_role(&self, role: &str) -> Option<&Envelope<Targets>> {
        self.targets.get(role)
    }

    /// Names of all targets roles (top-level first, then delegated, sorted).
    pub fn targets_roles(&self) -> Vec<String> {
        let mut v = vec!["targets".to_owned()];
        v.extend(self.targets.keys().filter(|r| *r != "targets").cloned());
        v
    }

    /// Snapshot as staged.
    pub fn snapshot(&self) -> &Envelope<Snapshot> {
        &self.snapshot
    }

    /// Timestamp as staged.
    pub fn timestamp(&self) -> &Envelope<Timestamp> {
        &self.timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::codec::{canonical_signed, new_targets};
    use super::signing::{check_no_shared_keys, check_threshold};
    use super::*;
    use custody_tuf::TargetFile;
    use proptest::prelude::*;

    fn targets_with(entries: Vec<(String, u64, String)>) -> Envelope<Targets> {
        let mut t = new_targets(DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default());
        for (path, len, custom) in entries {
            t.targets.insert(
                path,
                TargetFile {
                    length: len,
                    hashes: [("sha256".to_owned(), "ab".repeat(32))].into(),
                    custom: Some(serde_json::json!({ "note": custom })),
                    unknown: Default::default(),
                },
            );
        }
        Envelope {
            signatures: vec![],
            signed: t,
        }
    }

    proptest! {
        // custody signs the canonical form of the typed value; what it writes
        // must parse back (custody-tuf's strict parser) to the same canonical
        // bytes, or every signature it makes would be over the wrong bytes.
        #[test]
        fn written_metadata_round_trips_canonically(
            entries in proptest::collection::vec(
                ("[a-z0-9_/é]{1,12}", 0u64..u64::MAX / 2, "\\PC{0,16}"), 0..6)
        ) {
            let env = targets_with(entries);
            // Either custody refuses to write it, or it parses back to the
            // exact canonical bytes it signed.
            if let Ok(bytes) = checked_envelope_bytes("targets", &env) {
                let back: Envelope<Targets> =
                    parse_envelope("targets", &bytes, Path::new("t.json")).unwrap();
                prop_assert_eq!(
                    canonical_signed("targets", &back).unwrap(),
                    canonical_signed("targets", &env).unwrap()
                );
            }
        }
    }

    #[test]
    fn non_nfc_strings_are_refused_before_writing() {
        // "e" + combining acute: canonical JSON would normalise it to "é".
        let env = targets_with(vec![("cafe\u{301}.txt".into(), 1, "x".into())]);
        let e = checked_envelope_bytes("targets", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("targets") && e.contains("normalization"), "{e}");
        let ok = targets_with(vec![("caf\u{e9}.txt".into(), 1, "x".into())]);
        assert!(checked_envelope_bytes("targets", &ok).is_ok());
    }

    #[test]
    fn shared_key_rule_names_both_roles() {
        let key = crate::keys::ed25519_key(&[1; 32]);
        let id = crate::keys::keyid(&key).unwrap();
        let one = |t| RoleInit {
            keys: vec![(key.clone(), id.clone(), KeyLocation::Offline)],
            threshold: t,
        };
        let mut roles = BTreeMap::new();
        roles.insert("root".to_owned(), one(1));
        roles.insert("snapshot".to_owned(), one(1));
        // snapshot may share with root (not guarded)
        assert!(check_no_shared_keys(&roles).is_ok());
        roles.insert("timestamp".to_owned(), one(1));
        let e = check_no_shared_keys(&roles).unwrap_err().to_string();
        assert!(
            e.contains("timestamp") && e.contains("also a root key"),
            "{e}"
        );
    }

    #[test]
    fn threshold_bounds() {
        assert!(check_threshold("targets", 0, 1).is_err());
        let e = check_threshold("targets", 3, 2).unwrap_err().to_string();
        assert!(e.contains("threshold 3") && e.contains("(2)"), "{e}");
        assert!(check_threshold("targets", 2, 2).is_ok());
    }
}
