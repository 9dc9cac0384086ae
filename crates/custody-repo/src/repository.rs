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
//! `custody_tuf::verify_threshold`, and `publish` runs the whole client
//! workflow of `custody_tuf::TrustedMetadata` over the exact bytes it is
//! about to publish.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{
    DelegatedRole, Delegations, Key, MetaFile, Metadata, RoleKeys, Root, Signature, Signed,
    Snapshot, SuccinctRoles, TargetFile, Targets, Timestamp, SPEC_VERSION, TOP_LEVEL_ROLES,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::fsutil;
use crate::keyring::{KeyLocation, KeyRing};
use crate::paths::validate_target_path;
use crate::policy::ExpiryPolicy;
use crate::signer::Signer;

/// Repository configuration file name.
pub const CONFIG_FILE: &str = "custody-repo.json";
/// Staged metadata directory.
pub const METADATA_DIR: &str = "metadata";
/// Staged target contents directory.
pub const TARGETS_DIR: &str = "targets";
/// Custody log: one JSON object per line, appended by every change.
pub const LOG_FILE: &str = "custody-log.jsonl";

/// Largest metadata file custody reads back from its own staging area.
const MAX_METADATA_FILE: u64 = 64 * 1024 * 1024;

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
}

/// The repository's stored provenance policy (JSON form of
/// `custody_provenance::PolicySpec`).
pub const PROVENANCE_POLICY_FILE: &str = "provenance-policy.json";
/// Accepted provenance envelopes, `provenance/<sha256>.dsse.json`.
pub const PROVENANCE_DIR: &str = "provenance";

/// Provenance given with targets being added.
#[derive(Debug, Clone, Default)]
pub struct ProvenanceInput {
    /// DSSE envelope bytes (in-toto Statement v1 with SLSA Provenance v1);
    /// its subjects must include each added file's digest
    pub envelope: Option<Vec<u8>>,
    /// a policy for this command only, checked in addition to the
    /// repository's stored policy (it can add rules, never waive the
    /// stored ones)
    pub policy: Option<custody_provenance::Policy>,
}

impl ProvenanceInput {
    /// From an envelope file's bytes and a policy file (TOML or JSON by
    /// `file_name`'s extension), both optional.
    pub fn from_files(
        envelope: Option<Vec<u8>>,
        policy: Option<(&str, &[u8])>,
    ) -> Result<ProvenanceInput, RepoError> {
        let policy = policy
            .map(|(name, bytes)| {
                custody_provenance::Policy::from_file_contents(name, bytes)
                    .map_err(|e| RepoError::Invalid(format!("provenance policy {name}: {e}")))
            })
            .transpose()?;
        Ok(ProvenanceInput { envelope, policy })
    }
}

/// A key id and its thread-safe signer.
type SyncSigner<'a> = (&'a String, &'a (dyn Signer + Sync));

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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Serialize an envelope exactly as it is written to disk and published.
pub fn envelope_bytes<T: Serialize>(env: &Envelope<T>) -> Result<Vec<u8>, RepoError> {
    let mut v = serde_json::to_vec_pretty(env)
        .map_err(|e| RepoError::Invalid(format!("serializing metadata: {e}")))?;
    v.push(b'\n');
    Ok(v)
}

/// [`envelope_bytes`], then parse the result back with custody-tuf's strict
/// parser and require the same canonical `signed` bytes. Catches anything
/// custody could write but clients would reject or read differently (e.g.
/// strings not in Unicode NFC, which canonical JSON would normalise).
pub fn checked_envelope_bytes<T: Signed>(
    role: &str,
    env: &Envelope<T>,
) -> Result<Vec<u8>, RepoError> {
    checked_envelope_bytes_signed(role, env, None)
}

/// [`checked_envelope_bytes`]. With the role's keys: when a signature on
/// the envelope by one of them verifies over the canonical form of the
/// parsed bytes, those bytes parse back to exactly the content that was
/// signed (custody signs the canonical form of the typed value), so the
/// second canonicalisation of the typed value is skipped (for hash bins
/// it is a third of `save`'s CPU time). Without a verifying signature the
/// canonical forms are compared as before.
fn checked_envelope_bytes_signed<T: Signed>(
    role: &str,
    env: &Envelope<T>,
    keys: Option<(&[String], &BTreeMap<String, Key>)>,
) -> Result<Vec<u8>, RepoError> {
    let bytes = envelope_bytes(env)?;
    let m = Metadata::<T>::from_bytes(role, &bytes).map_err(|e| RepoError::Role {
        role: role.into(),
        detail: format!("custody would write metadata that TUF clients reject: {e}"),
    })?;
    if let Some((keyids, keys)) = keys {
        let signed_by_role =
            custody_tuf::signature_report(role, m.canonical_signed(), &m.signatures, keyids, keys)
                .is_ok_and(|r| !r.counted.is_empty());
        if signed_by_role {
            return Ok(bytes);
        }
    }
    if m.canonical_signed() != canonical_signed(role, env)? {
        return Err(RepoError::Role {
            role: role.into(),
            detail: "written metadata does not parse back to the signed content".into(),
        });
    }
    Ok(bytes)
}

fn canonical_signed<T: Serialize>(role: &str, env: &Envelope<T>) -> Result<Vec<u8>, RepoError> {
    Ok(custody_tuf::cjson::canonical_bytes(role, &env.signed)?)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, RepoError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(MAX_METADATA_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > MAX_METADATA_FILE {
        return Err(RepoError::BadFile {
            path: path.to_owned(),
            detail: format!("larger than {MAX_METADATA_FILE} bytes"),
        });
    }
    Ok(buf)
}

/// Parse metadata with custody-tuf's strict parser, and check it
/// round-trips: custody signs the canonical form of the typed value, so it
/// must be the same bytes the signatures on disk cover.
pub fn parse_envelope<T: Signed>(
    role: &str,
    bytes: &[u8],
    path: &Path,
) -> Result<Envelope<T>, RepoError> {
    let m = Metadata::<T>::from_bytes(role, bytes)?;
    let env = Envelope {
        signed: m.signed.clone(),
        signatures: m.signatures.clone(),
    };
    if canonical_signed(role, &env)? != m.canonical_signed() {
        return Err(RepoError::BadFile {
            path: path.to_owned(),
            detail: format!(
                "role {role}: the canonical form of the parsed `signed` differs from the file's (non-canonical timestamps or numbers?); custody cannot re-sign it faithfully"
            ),
        });
    }
    Ok(env)
}

fn load_role<T: Signed + DeserializeOwned>(
    dir: &Path,
    role: &str,
) -> Result<Envelope<T>, RepoError> {
    Ok(load_role_bytes(dir, role)?.0)
}

/// [`load_role`], also returning the file's bytes.
fn load_role_bytes<T: Signed + DeserializeOwned>(
    dir: &Path,
    role: &str,
) -> Result<(Envelope<T>, Vec<u8>), RepoError> {
    let path = dir
        .join(METADATA_DIR)
        .join(custody_tuf::metadata_filename(role, None));
    let bytes = read_bounded(&path)?;
    Ok((parse_envelope(role, &bytes, &path)?, bytes))
}

/// A delegated role's staged file, typed parse only (see `open`).
fn load_role_loose(dir: &Path, role: &str) -> Result<(Envelope<Targets>, Vec<u8>), RepoError> {
    let path = dir
        .join(METADATA_DIR)
        .join(custody_tuf::metadata_filename(role, None));
    let bytes = read_bounded(&path)?;
    let env: Envelope<Targets> =
        serde_json::from_slice(&bytes).map_err(|e| RepoError::BadFile {
            path: path.clone(),
            detail: format!("role {role}: not targets metadata: {e}"),
        })?;
    Ok((env, bytes))
}

/// Expiry `now + d`, whole seconds (TUF timestamps have no fractions).
fn expiry(now: DateTime<Utc>, d: chrono::Duration) -> Result<DateTime<Utc>, RepoError> {
    let t = now
        .checked_add_signed(d)
        .ok_or_else(|| RepoError::Invalid("expiry out of range".into()))?;
    DateTime::from_timestamp(t.timestamp(), 0)
        .ok_or_else(|| RepoError::Invalid("expiry out of range".into()))
}

fn new_targets(expires: DateTime<Utc>) -> Targets {
    Targets {
        type_: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version: 1,
        expires,
        targets: BTreeMap::new(),
        delegations: None,
        unknown: Default::default(),
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

    // ------------------------------------------------------------------
    // init / open / save

    /// Create a new repository in `dir` (which must not exist or be empty).
    /// Signs every role with the keys in `ring`; roles whose keys are
    /// offline stay under threshold until `sign`/`merge`.
    pub fn init(
        dir: &Path,
        opts: InitOptions,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Repository, RepoError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
            if entries.next().is_some() {
                return Err(RepoError::Invalid(format!(
                    "{}: directory is not empty; custody repo init only creates new repositories",
                    dir.display()
                )));
            }
        }
        for role in TOP_LEVEL_ROLES {
            let r = opts.roles.get(role).ok_or_else(|| RepoError::Role {
                role: role.into(),
                detail: "no keys given (every top-level role needs at least one key)".into(),
            })?;
            if r.keys.is_empty() {
                return Err(RepoError::Role {
                    role: role.into(),
                    detail: "no keys given (every top-level role needs at least one key)".into(),
                });
            }
            check_threshold(role, r.threshold, r.keys.len())?;
        }
        if !opts.allow_shared_keys {
            check_no_shared_keys(&opts.roles)?;
        }
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        let mut locations = BTreeMap::new();
        for (role, r) in &opts.roles {
            let mut ids = Vec::new();
            for (key, id, loc) in &r.keys {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
                keys.insert(id.clone(), key.clone());
                locations.insert(id.clone(), loc.clone());
            }
            roles.insert(
                role.clone(),
                RoleKeys {
                    keyids: ids,
                    threshold: r.threshold,
                    unknown: Default::default(),
                },
            );
        }
        let root = Root {
            type_: "root".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: expiry(now, opts.expiry.for_role("root"))?,
            consistent_snapshot: opts.consistent_snapshot,
            keys,
            roles,
            unknown: Default::default(),
        };
        let targets = new_targets(expiry(now, opts.expiry.for_role("targets"))?);
        let snapshot = Snapshot {
            type_: "snapshot".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: expiry(now, opts.expiry.for_role("snapshot"))?,
            meta: [("targets.json".to_owned(), MetaFile::with_version(1))].into(),
            unknown: Default::default(),
        };
        let timestamp = Timestamp {
            type_: "timestamp".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: expiry(now, opts.expiry.for_role("timestamp"))?,
            meta: [("snapshot.json".to_owned(), MetaFile::with_version(1))].into(),
            unknown: Default::default(),
        };
        let mut repo = Repository {
            dir: dir.to_owned(),
            config: RepoConfig {
                format: 1,
                expiry: opts.expiry,
                keys: locations,
            },
            root: Envelope {
                signatures: vec![],
                signed: root,
            },
            targets: [(
                "targets".to_owned(),
                Envelope {
                    signatures: vec![],
                    signed: targets,
                },
            )]
            .into(),
            snapshot: Envelope {
                signatures: vec![],
                signed: snapshot,
            },
            timestamp: Envelope {
                signatures: vec![],
                signed: timestamp,
            },
            dirty: TOP_LEVEL_ROLES.iter().map(|r| r.to_string()).collect(),
            bumped: TOP_LEVEL_ROLES.iter().map(|r| r.to_string()).collect(),
            new_root: true,
            pending_copies: vec![],
            pending_unsynced: false,
            pending_removals: vec![],
            log: vec![],
            lock: None,
            staged: BTreeMap::new(),
            external: Some(BTreeMap::new()),
            external_dirty: BTreeSet::new(),
            pending_policy: None,
            pending_provenance: vec![],
            unchecked: BTreeSet::new(),
        };
        repo.sign_available("root", ring)?;
        repo.sign_available("targets", ring)?;
        repo.sign_available("snapshot", ring)?;
        repo.update_timestamp(ring)?;
        repo.log_event(
            now,
            "init",
            serde_json::json!({
                "consistent_snapshot": repo.root.signed.consistent_snapshot,
                "roles": repo.root.signed.roles,
            }),
        );
        Ok(repo)
    }

    /// Open an existing repository.
    pub fn open(dir: &Path) -> Result<Repository, RepoError> {
        let lock = lock_repo(dir)?;
        let cfg_path = dir.join(CONFIG_FILE);
        let cfg_bytes = read_bounded(&cfg_path)?;
        let config: RepoConfig =
            serde_json::from_slice(&cfg_bytes).map_err(|e| RepoError::BadFile {
                path: cfg_path.clone(),
                detail: format!("not a custody repository config: {e}"),
            })?;
        if config.format != 1 {
            return Err(RepoError::BadFile {
                path: cfg_path,
                detail: format!("config format {} is not supported (1)", config.format),
            });
        }
        let root: Envelope<Root> = load_role(dir, "root")?;
        let (top, top_bytes) = load_role_bytes::<Targets>(dir, "targets")?;
        let mut staged = BTreeMap::new();
        let mut unchecked = BTreeSet::new();
        staged.insert("targets".to_owned(), std::sync::Arc::new(top_bytes));
        let snapshot: Envelope<Snapshot> = load_role(dir, "snapshot")?;
        let timestamp: Envelope<Timestamp> = load_role(dir, "timestamp")?;
        let mut targets = BTreeMap::new();
        // Load delegated roles reachable from targets (breadth first).
        // One delegation level at a time, each level's files parsed in
        // parallel (256 hash bins are one level).
        let mut level: Vec<String> = delegated_names(&top.signed);
        targets.insert("targets".to_owned(), top);
        while !level.is_empty() {
            let mut names: Vec<String> = level
                .into_iter()
                .filter(|r| !targets.contains_key(r) && !TOP_LEVEL_ROLES.contains(&r.as_str()))
                .collect();
            names.sort();
            names.dedup();
            // Delegated roles (e.g. 256 hash bins holding every target):
            // a plain typed parse. The strict parse and canonical
            // round-trip check (most of the cost: canonical JSON of every
            // target twice) runs when a role is first changed or signed
            // (`check_loaded`); what is published is verified by
            // custody-tuf's client workflow over the staged bytes anyway.
            let loaded = par_map(&names, |role| load_role_loose(dir, role));
            level = Vec::new();
            for (role, env) in names.into_iter().zip(loaded) {
                let (env, bytes) = env?;
                level.extend(delegated_names(&env.signed));
                staged.insert(role.clone(), std::sync::Arc::new(bytes));
                unchecked.insert(role.clone());
                targets.insert(role, env);
            }
        }
        Ok(Repository {
            dir: dir.to_owned(),
            config,
            root,
            targets,
            snapshot,
            timestamp,
            dirty: BTreeSet::new(),
            bumped: BTreeSet::new(),
            new_root: false,
            pending_copies: vec![],
            pending_unsynced: false,
            pending_removals: vec![],
            log: vec![],
            lock: Some(lock),
            staged,
            external: None,
            external_dirty: BTreeSet::new(),
            pending_policy: None,
            pending_provenance: vec![],
            unchecked,
        })
    }

    /// Write every changed file (targets contents first, then metadata,
    /// timestamp last, then config and log).
    pub fn save(&mut self) -> Result<(), RepoError> {
        // Serialize and re-parse every changed role first: nothing is
        // written unless all of it is metadata custody-tuf accepts.
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        if self.dirty.contains("root") {
            out.push(("root".into(), checked_envelope_bytes("root", &self.root)?));
        }
        let dirty_targets: Vec<(&String, &Envelope<Targets>)> = self
            .targets
            .iter()
            .filter(|(role, _)| self.dirty.contains(*role))
            .collect();
        let role_keys: Vec<Option<RoleKeyInfo>> = dirty_targets
            .iter()
            .map(|(role, _)| self.role_keys(role).ok())
            .collect();
        let jobs: Vec<_> = dirty_targets.iter().zip(&role_keys).collect();
        for ((role, _), bytes) in dirty_targets
            .iter()
            .zip(par_map(&jobs, |((role, env), info)| {
                checked_envelope_bytes_signed(
                    role,
                    env,
                    info.as_ref().map(|i| (i.keyids.as_slice(), &i.keys)),
                )
            }))
        {
            out.push(((*role).clone(), bytes?));
        }
        for (role, bytes) in [
            (
                "snapshot",
                self.dirty
                    .contains("snapshot")
                    .then(|| checked_envelope_bytes("snapshot", &self.snapshot)),
            ),
            (
                "timestamp",
                self.dirty
                    .contains("timestamp")
                    .then(|| checked_envelope_bytes("timestamp", &self.timestamp)),
            ),
        ] {
            if let Some(b) = bytes {
                out.push((role.into(), b?));
            }
        }
        let meta_dir = self.dir.join(METADATA_DIR);
        let targets_dir = self.dir.join(TARGETS_DIR);
        for d in [&self.dir, &meta_dir, &targets_dir] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        if self.lock.is_none() {
            self.lock = Some(lock_repo(&self.dir)?);
        }
        // Each staged file was fsynced when staged; its directory entry is
        // made durable by one fsync per directory after all renames.
        let mut parents: BTreeSet<PathBuf> = BTreeSet::new();
        for (tmp, name) in std::mem::take(&mut self.pending_copies) {
            let dest = targets_dir.join(&name);
            let parent = dest.parent().unwrap_or(&targets_dir).to_owned();
            if !parents.contains(&parent) {
                std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
            }
            tmp.persist(&dest).map_err(|e| RepoError::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            parents.insert(parent);
        }
        if std::mem::take(&mut self.pending_unsynced) {
            // Bulk add: one syncfs makes every staged file's data and every
            // rename durable, instead of one fsync per file, and before any
            // metadata naming them is written.
            bulk_sync(&targets_dir)?;
        } else {
            for parent in parents {
                std::fs::File::open(&parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(&parent))?;
            }
        }
        // Lists of contents-less targets: before the metadata naming them.
        // Many lists (hash bins) are written without a per-file fsync; the
        // metadata write below syncs the file system once before any
        // metadata rename (and a list lost in a crash only makes publish
        // refuse, naming the target: it never publishes a wrong file).
        let unsynced_lists = self.write_external()?;
        // Provenance envelopes before the metadata that names their digest.
        if !self.pending_provenance.is_empty() {
            let pdir = self.dir.join(PROVENANCE_DIR);
            std::fs::create_dir_all(&pdir).map_err(io_err(&pdir))?;
            for (sha, bytes) in std::mem::take(&mut self.pending_provenance) {
                let p = pdir.join(format!("{sha}.dsse.json"));
                fsutil::write_replace(&p, &bytes).map_err(io_err(&p))?;
            }
        }
        match self.pending_policy.take() {
            Some(Some(bytes)) => {
                let p = self.dir.join(PROVENANCE_POLICY_FILE);
                fsutil::write_replace(&p, &bytes).map_err(io_err(&p))?;
            }
            Some(None) => {
                let p = self.dir.join(PROVENANCE_POLICY_FILE);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(RepoError::Io { path: p, source: e }),
                }
            }
            None => {}
        }
        for name in std::mem::take(&mut self.pending_removals) {
            let p = targets_dir.join(&name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RepoError::Io { path: p, source: e }),
            }
        }
        // Order: root (and its history file), targets roles, snapshot,
        // timestamp last, so a crash mid-way never leaves a timestamp that
        // points at a snapshot not yet written.
        let mut writes: Vec<(PathBuf, &[u8])> = Vec::new();
        for (role, bytes) in &out {
            if role == "root" {
                let hist = meta_dir.join(custody_tuf::metadata_filename(
                    "root",
                    Some(self.root.signed.version),
                ));
                writes.push((hist, bytes));
            }
            writes.push((
                meta_dir.join(custody_tuf::metadata_filename(role, None)),
                bytes,
            ));
        }
        if writes.len() > BULK_FILES {
            // Many roles (hash bins): write every temp file, one syncfs,
            // then the renames in order, the timestamp's after a directory
            // fsync of all the others.
            write_replace_bulk(&meta_dir, &writes)?;
        } else {
            if unsynced_lists {
                bulk_sync(&meta_dir)?;
            }
            for (p, bytes) in &writes {
                fsutil::write_replace(p, bytes).map_err(io_err(p))?;
            }
        }
        drop(writes);
        for (role, bytes) in out {
            if !TOP_LEVEL_ROLES.contains(&role.as_str()) || role == "targets" {
                self.staged.insert(role, std::sync::Arc::new(bytes));
            }
        }
        let cfg = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| RepoError::Invalid(format!("serializing config: {e}")))?;
        let cfg_path = self.dir.join(CONFIG_FILE);
        fsutil::write_replace(&cfg_path, &cfg).map_err(io_err(&cfg_path))?;
        self.flush_log()?;
        self.dirty.clear();
        // What was saved is a finished version: the next change (same
        // Repository value, library use) bumps again.
        self.bumped.clear();
        self.new_root = false;
        Ok(())
    }

    /// The provenance policy stored in the repository (or set in this run
    /// and not yet saved), if any.
    pub fn provenance_policy(&self) -> Result<Option<custody_provenance::Policy>, RepoError> {
        let path = self.dir.join(PROVENANCE_POLICY_FILE);
        let bytes = match &self.pending_policy {
            Some(Some(b)) => b.clone(),
            Some(None) => return Ok(None),
            None => match std::fs::metadata(&path) {
                Ok(_) => read_bounded(&path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(RepoError::Io { path, source: e }),
            },
        };
        custody_provenance::Policy::from_json(PROVENANCE_POLICY_FILE, &bytes)
            .map(Some)
            .map_err(|e| RepoError::BadFile {
                path,
                detail: format!("stored provenance policy: {e}"),
            })
    }

    /// Store a provenance policy (TOML or JSON, by `file_name`'s
    /// extension; checked by custody-provenance) in the repository: from
    /// the next add on, every added target must pass it. Written by `save`;
    /// logged with the policy's sha256.
    pub fn set_provenance_policy(
        &mut self,
        file_name: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<custody_provenance::Policy, RepoError> {
        let policy = custody_provenance::Policy::from_file_contents(file_name, bytes)
            .map_err(|e| RepoError::Invalid(format!("provenance policy {file_name}: {e}")))?;
        let json = serde_json::to_vec_pretty(policy.spec())
            .map_err(|e| RepoError::Invalid(format!("serializing provenance policy: {e}")))?;
        self.log_event(
            now,
            "provenance-policy-set",
            serde_json::json!({
                "from": file_name,
                "sha256": custody_tuf::crypto::sha256_hex(&json),
                "rules": policy.spec().rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            }),
        );
        self.pending_policy = Some(Some(json));
        Ok(policy)
    }

    /// Remove the stored provenance policy (logged).
    pub fn clear_provenance_policy(&mut self, now: DateTime<Utc>) {
        self.log_event(now, "provenance-policy-clear", serde_json::json!({}));
        self.pending_policy = Some(None);
    }

    /// Load the per-role lists of contents-less targets (once).
    fn external_mut(&mut self) -> Result<&mut BTreeMap<String, BTreeSet<String>>, RepoError> {
        if self.external.is_none() {
            self.external = Some(load_external(&self.dir)?);
        }
        Ok(self.external.get_or_insert_with(BTreeMap::new))
    }

    /// Write the changed contents-less target lists. Returns whether files
    /// were written without fsync (the caller must sync before metadata).
    fn write_external(&mut self) -> Result<bool, RepoError> {
        if self.external_dirty.is_empty() {
            return Ok(false);
        }
        let ext_dir = self.dir.join(EXTERNAL_DIR);
        std::fs::create_dir_all(&ext_dir).map_err(io_err(&ext_dir))?;
        let empty = BTreeSet::new();
        let mut writes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut removes = Vec::new();
        for role in &self.external_dirty {
            let set = self
                .external
                .as_ref()
                .and_then(|m| m.get(role))
                .unwrap_or(&empty);
            let path = ext_dir.join(external_file_name(role));
            if set.is_empty() {
                removes.push(path);
            } else {
                let bytes =
                    serde_json::to_vec(&serde_json::json!({ "role": role, "targets": set }))
                        .map_err(|e| {
                            RepoError::Invalid(format!("serializing {}: {e}", path.display()))
                        })?;
                writes.push((path, bytes));
            }
        }
        let bulk = writes.len() > BULK_FILES;
        for (path, bytes) in &writes {
            if bulk {
                let mut tmp = tempfile::Builder::new()
                    .prefix(".custody-tmp-")
                    .tempfile_in(&ext_dir)
                    .map_err(io_err(&ext_dir))?;
                tmp.write_all(bytes).map_err(io_err(path))?;
                tmp.into_temp_path()
                    .persist(path)
                    .map_err(|e| RepoError::Io {
                        path: path.clone(),
                        source: e.error,
                    })?;
            } else {
                fsutil::write_replace(path, bytes).map_err(io_err(path))?;
            }
        }
        for p in removes {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RepoError::Io { path: p, source: e }),
            }
        }
        self.external_dirty.clear();
        Ok(bulk)
    }

    fn log_event(&mut self, now: DateTime<Utc>, action: &str, detail: serde_json::Value) {
        self.log.push(serde_json::json!({
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "action": action,
            "detail": detail,
        }));
    }

    fn flush_log(&mut self) -> Result<(), RepoError> {
        if self.log.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(LOG_FILE);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // Hash chain: each entry carries the sha256 of the previous line, so
        // an edit or deletion inside the log breaks every later link
        // (`verify_log`). It is tamper-evident, not tamper-proof: whoever can
        // rewrite the whole file can rebuild the chain.
        let mut prev = last_line_hash(&mut f).map_err(io_err(&path))?;
        let mut buf = Vec::new();
        for mut ev in self.log.drain(..) {
            if let Some(obj) = ev.as_object_mut() {
                obj.insert("prev".into(), serde_json::Value::String(prev.clone()));
            }
            let line = serde_json::to_vec(&ev)
                .map_err(|e| RepoError::Invalid(format!("serializing log: {e}")))?;
            prev = custody_tuf::crypto::sha256_hex(&line);
            buf.extend(line);
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))
    }

    // ------------------------------------------------------------------
    // keys and signatures

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
        for (parent, env) in &self.targets {
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

    fn canonical_of(&self, role: &str) -> Result<Vec<u8>, RepoError> {
        match role {
            "root" => canonical_signed(role, &self.root),
            "snapshot" => canonical_signed(role, &self.snapshot),
            "timestamp" => canonical_signed(role, &self.timestamp),
            _ => canonical_signed(role, self.targets_env(role)?),
        }
    }

    fn targets_env(&self, role: &str) -> Result<&Envelope<Targets>, RepoError> {
        self.targets.get(role).ok_or_else(|| RepoError::Role {
            role: role.into(),
            detail: "no metadata for this role in the repository".into(),
        })
    }

    /// Strictly parse and round-trip check a role `open` read loosely,
    /// from its staged bytes, before it is changed or signed: custody must
    /// re-sign exactly what the file says.
    fn check_loaded(&mut self, role: &str) -> Result<(), RepoError> {
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
        self.unchecked.remove(role);
        Ok(())
    }

    fn signatures_mut(&mut self, role: &str) -> Result<&mut Vec<Signature>, RepoError> {
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
    fn signing_keyids(&self, role: &str) -> Result<Vec<String>, RepoError> {
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

    fn previous_root(&self) -> Result<Envelope<Root>, RepoError> {
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
        self.sign_available_msg(role, &ids, &msg, ring)
    }

    /// [`Repository::sign_available`] with the role's key ids (already
    /// ensured in `ring`) and canonical bytes computed by the caller.
    fn sign_available_msg(
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
    fn apply_signatures(
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

    // ------------------------------------------------------------------
    // versions and the snapshot/timestamp chain

    /// The name prefix of the succinct hash-bin delegation that `role` is a
    /// bin of (`{prefix}-{hex}`), if any.
    fn succinct_prefix_of(&self, role: &str) -> Option<String> {
        self.targets.values().find_map(|env| {
            let s = env.signed.delegations.as_ref()?.succinct_roles.as_ref()?;
            let hex = role.strip_prefix(&s.name_prefix)?.strip_prefix('-')?;
            (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| s.name_prefix.clone())
        })
    }

    /// Mark `role` changed: bump its version (once per run), renew its
    /// expiry and drop its signatures (they cover the old content).
    fn bump(&mut self, role: &str, now: DateTime<Utc>) -> Result<(), RepoError> {
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
        self.dirty.insert(role.to_owned());
        Ok(())
    }

    /// Re-sign changed targets roles, then new snapshot and timestamp.
    fn commit_targets_change(
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
            let sigs = par_map(
                &jobs,
                |(env, signers)| -> Result<Vec<Signature>, RepoError> {
                    let msg = canonical_signed("targets", env)?;
                    signers
                        .iter()
                        .map(|(id, s)| {
                            Ok(Signature {
                                keyid: (*id).clone(),
                                sig: hex::encode(s.sign(&msg)?),
                                unknown: Default::default(),
                            })
                        })
                        .collect()
                },
            );
            drop(jobs);
            for (role, sigs) in changed.iter().zip(sigs) {
                self.apply_signatures(role, sigs?)?;
            }
        } else {
            let msgs = par_map(&envs, |env| canonical_signed("targets", env));
            drop(envs);
            for ((role, ids), msg) in changed.iter().zip(&keyids).zip(msgs) {
                self.sign_available_msg(role, ids, &msg?, ring_ref)?;
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

    fn cascade_timestamp_only(
        &mut self,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.bump("timestamp", now)?;
        self.update_timestamp(ring)
    }

    /// Point the timestamp at the snapshot's exact bytes and sign it.
    fn update_timestamp(&mut self, ring: &mut KeyRing) -> Result<(), RepoError> {
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

    // ------------------------------------------------------------------
    // targets

    /// The targets role a new target at `path` belongs to: follow the
    /// delegations from `targets` like a client search does (custody-tuf's
    /// `roles_for_target`), into the first matching role the repository
    /// holds, stopping at terminating roles.
    pub fn role_for_path(&self, path: &str) -> String {
        let mut role = "targets".to_owned();
        let mut seen = BTreeSet::new();
        loop {
            if !seen.insert(role.clone()) {
                return role;
            }
            let Some(env) = self.targets.get(&role) else {
                return role;
            };
            let Some(d) = &env.signed.delegations else {
                return role;
            };
            let next = custody_tuf::roles_for_target(d, path)
                .into_iter()
                .find(|(r, _)| self.targets.contains_key(r));
            match next {
                Some((r, _terminating)) => role = r,
                None => return role,
            }
        }
    }

    /// Stage target files: `path` (a file or a directory, walked
    /// recursively) is added under target name `name` (default: the file
    /// name, or for a directory its relative paths). Returns
    /// (target path, role) for each file.
    pub fn add_targets(
        &mut self,
        source: &Path,
        name: Option<&str>,
        custom: Option<serde_json::Value>,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, RepoError> {
        self.add_targets_with_provenance(
            source,
            name,
            custom,
            &ProvenanceInput::default(),
            ring,
            now,
        )
    }

    /// [`Repository::add_targets`] through the provenance gate: every file
    /// is evaluated (custody-provenance's `evaluate_for_role`, with the role
    /// that will list it) against the repository's stored policy and
    /// `provenance.policy`; any refusal refuses the whole command before
    /// anything changes. An accepted envelope is stored as
    /// `provenance/<sha256>.dsse.json` and its digest is put in the
    /// target's `custom.custody.provenance.sha256`. An envelope with no
    /// policy to check it is refused rather than recorded unchecked.
    pub fn add_targets_with_provenance(
        &mut self,
        source: &Path,
        name: Option<&str>,
        custom: Option<serde_json::Value>,
        provenance: &ProvenanceInput,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, RepoError> {
        let stored_policy = self.provenance_policy()?;
        let meta = std::fs::symlink_metadata(source).map_err(io_err(source))?;
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        if meta.is_dir() {
            let prefix = name.map(|n| n.trim_end_matches('/').to_owned());
            walk(source, source, &mut |file, rel| {
                let target = match &prefix {
                    Some(p) if !p.is_empty() => format!("{p}/{rel}"),
                    _ => rel.to_owned(),
                };
                files.push((file.to_owned(), target));
                Ok(())
            })?;
        } else if meta.is_file() {
            let target = match name {
                Some(n) => n.to_owned(),
                None => source
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| {
                        RepoError::Invalid(format!(
                            "{}: file name is not UTF-8; give the target a name with --name",
                            source.display()
                        ))
                    })?
                    .to_owned(),
            };
            files.push((source.to_owned(), target));
        } else {
            return Err(RepoError::Invalid(format!(
                "{}: not a regular file or directory (symlinks are not followed)",
                source.display()
            )));
        }
        if files.is_empty() {
            return Err(RepoError::Invalid(format!(
                "{}: no files to add",
                source.display()
            )));
        }
        let mut added = Vec::new();
        // Many files: skip the per-file fsync, `save` syncs once (syncfs).
        let sync_each = files.len() <= BULK_FILES;
        if !sync_each {
            self.pending_unsynced = true;
        }
        for (_, target) in &files {
            validate_target_path(target)?;
        }
        // Copy + hash every file on all cores (each staged file is hashed
        // while copied, so the recorded digest is of the staged bytes).
        let staged_files = par_map(&files, |(file, _)| self.stage_file(file, sync_each));
        let staged_files = staged_files.into_iter().collect::<Result<Vec<_>, _>>()?;
        // The provenance gate, for every file, before anything changes.
        let mut attested: Vec<Option<String>> = Vec::with_capacity(files.len());
        for ((_, target), (_, _, sha256)) in files.iter().zip(&staged_files) {
            let role = self.role_for_path(target);
            let hashes = [("sha256".to_owned(), sha256.clone())].into();
            attested.push(provenance_gate(
                stored_policy.as_ref(),
                provenance.policy.as_ref(),
                target,
                &role,
                &hashes,
                provenance.envelope.as_deref(),
            )?);
        }
        let custom_for = |sha: &Option<String>| -> Result<Option<serde_json::Value>, RepoError> {
            match sha {
                None => Ok(custom.clone()),
                Some(s) => with_provenance_digest(custom.clone(), s).map(Some),
            }
        };
        let customs = attested
            .iter()
            .map(custom_for)
            .collect::<Result<Vec<_>, _>>()?;
        if let (Some(env), Some(sha)) = (
            provenance.envelope.as_ref(),
            attested.iter().flatten().next(),
        ) {
            if !self.pending_provenance.iter().any(|(s, _)| s == sha) {
                self.pending_provenance.push((sha.clone(), env.clone()));
            }
        }
        for ((((_, target), staged), custom), prov) in files
            .into_iter()
            .zip(staged_files)
            .zip(customs)
            .zip(attested)
        {
            let (staged, length, sha256) = staged;
            let role = self.role_for_path(&target);
            // A removal of the same name earlier in this run must not
            // delete the file staged now (save renames, then removes).
            self.pending_removals.retain(|n| n != &target);
            if let Some(set) = self.external_mut()?.get_mut(&role) {
                if set.remove(&target) {
                    self.external_dirty.insert(role.clone());
                }
            }
            self.bump(&role, now)?;
            let env = self.targets.get_mut(&role).ok_or_else(|| RepoError::Role {
                role: role.clone(),
                detail: "no metadata".into(),
            })?;
            let tf = TargetFile {
                length,
                hashes: [("sha256".to_owned(), sha256.clone())].into(),
                custom: custom.clone(),
                unknown: Default::default(),
            };
            env.signed.targets.insert(target.clone(), tf);
            self.pending_copies.push((staged, target.clone()));
            self.log_event(
                now,
                "add-target",
                serde_json::json!({ "target": target, "role": role, "length": length, "sha256": sha256, "provenance_sha256": prov }),
            );
            added.push((target, role));
        }
        self.commit_targets_change(ring, now)?;
        Ok(added)
    }

    /// Add targets by length and hashes, without contents (see
    /// [`TargetEntry`]): the bulk path for a release pipeline or artifact
    /// store that already hashed what it uploaded. Each entry goes to the
    /// role [`Repository::role_for_path`] picks; every changed role is
    /// re-signed (canonicalised and, for thread-safe signers, signed on all
    /// cores), then snapshot and timestamp. One custody-log entry records
    /// the batch: its size and the sha256 of its sorted
    /// `name\tlength\tsha256` lines. Returns (target path, role) per entry.
    pub fn add_target_entries(
        &mut self,
        entries: Vec<TargetEntry>,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, RepoError> {
        if entries.is_empty() {
            return Err(RepoError::Invalid("add_target_entries: no entries".into()));
        }
        let mut seen = BTreeSet::new();
        for e in &entries {
            e.check()?;
            if !seen.insert(e.name.as_str()) {
                return Err(RepoError::Invalid(format!(
                    "target {:?} is listed twice in one batch",
                    e.name
                )));
            }
        }
        drop(seen);
        let stored_policy = self.provenance_policy()?;
        let mut entries = entries;
        if stored_policy.is_some() || entries.iter().any(|e| e.provenance.is_some()) {
            for e in &mut entries {
                let role = self.role_for_path(&e.name);
                if let Some(sha) = provenance_gate(
                    stored_policy.as_ref(),
                    None,
                    &e.name,
                    &role,
                    &e.hashes,
                    e.provenance.as_deref(),
                )? {
                    e.custom = Some(with_provenance_digest(e.custom.take(), &sha)?);
                    if let Some(env) = e.provenance.take() {
                        // one file per envelope, however many entries it covers
                        if !self.pending_provenance.iter().any(|(s, _)| *s == sha) {
                            self.pending_provenance.push((sha, env));
                        }
                    }
                }
            }
        }
        let mut digest_lines: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{}\t{}\t{}",
                    e.name,
                    e.length,
                    e.hashes.get("sha256").map(String::as_str).unwrap_or("")
                )
            })
            .collect();
        digest_lines.sort();
        let batch_digest = custody_tuf::crypto::sha256_hex(digest_lines.join("\n").as_bytes());
        drop(digest_lines);
        self.external_mut()?;
        let pending: BTreeSet<&str> = self
            .pending_copies
            .iter()
            .map(|(_, n)| n.as_str())
            .collect();
        let replaced_pending: BTreeSet<String> = entries
            .iter()
            .filter(|e| pending.contains(e.name.as_str()))
            .map(|e| e.name.clone())
            .collect();
        if !replaced_pending.is_empty() {
            self.pending_copies
                .retain(|(_, n)| !replaced_pending.contains(n));
        }
        let count = entries.len();
        let mut added = Vec::with_capacity(count);
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for e in entries {
            let role = self.role_for_path(&e.name);
            if touched.insert(role.clone()) {
                self.bump(&role, now)?;
            }
            let env = self.targets.get_mut(&role).ok_or_else(|| RepoError::Role {
                role: role.clone(),
                detail: "no metadata".into(),
            })?;
            let previous = env.signed.targets.insert(
                e.name.clone(),
                TargetFile {
                    length: e.length,
                    hashes: e.hashes,
                    custom: e.custom,
                    unknown: Default::default(),
                },
            );
            let set = self
                .external
                .get_or_insert_with(BTreeMap::new)
                .entry(role.clone())
                .or_default();
            let was_external = !set.insert(e.name.clone());
            if previous.is_some() && !was_external {
                // It had staged contents; they are no longer published.
                self.pending_removals.push(e.name.clone());
            }
            self.external_dirty.insert(role.clone());
            added.push((e.name, role));
        }
        self.log_event(
            now,
            "add-target-entries",
            serde_json::json!({ "count": count, "roles": touched.len(), "sha256_of_sorted_entries": batch_digest }),
        );
        self.commit_targets_change(ring, now)?;
        Ok(added)
    }

    /// Copy `src` into a temporary file inside the staging targets
    /// directory, hashing while copying, so the staged bytes are exactly the
    /// hashed bytes (no window for the source to change) and memory use is
    /// constant. The temp file disappears if the command fails before save.
    fn stage_file(
        &self,
        src: &Path,
        sync: bool,
    ) -> Result<(tempfile::TempPath, u64, String), RepoError> {
        use std::io::Read;
        let tdir = self.dir.join(TARGETS_DIR);
        let mut tmp = tempfile::Builder::new()
            .prefix(".custody-staging-")
            .tempfile_in(&tdir)
            .map_err(io_err(&tdir))?;
        let mut f = std::fs::File::open(src).map_err(io_err(src))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io_err(src))?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            ctx.update(chunk);
            tmp.write_all(chunk).map_err(io_err(tmp.path()))?;
            len += n as u64;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io_err(tmp.path()))?;
        }
        if sync {
            tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        }
        // Close the file now; the path is still deleted if never saved.
        Ok((
            tmp.into_temp_path(),
            len,
            hex::encode(ctx.finish().as_ref()),
        ))
    }

    /// Remove target `path` from whichever role lists it.
    pub fn remove_target(
        &mut self,
        path: &str,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<String, RepoError> {
        validate_target_path(path)?;
        let role = self
            .targets
            .iter()
            .find(|(_, env)| env.signed.targets.contains_key(path))
            .map(|(r, _)| r.clone())
            .ok_or_else(|| {
                RepoError::Invalid(format!("target {path:?} is not in the repository"))
            })?;
        self.bump(&role, now)?;
        if let Some(env) = self.targets.get_mut(&role) {
            env.signed.targets.remove(path);
        }
        let was_external = self
            .external_mut()?
            .get_mut(&role)
            .is_some_and(|s| s.remove(path));
        if was_external {
            self.external_dirty.insert(role.clone());
        } else if !self
            .targets
            .values()
            .any(|e| e.signed.targets.contains_key(path))
        {
            self.pending_removals.push(path.to_owned());
        }
        self.log_event(
            now,
            "remove-target",
            serde_json::json!({ "target": path, "role": role }),
        );
        self.commit_targets_change(ring, now)?;
        Ok(role)
    }

    // ------------------------------------------------------------------
    // export / merge of partly signed metadata (offline signing)

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

    // ------------------------------------------------------------------
    // delegations

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
        self.log_event(now, "hash-bins", serde_json::json!({ "from": parent, "prefix": prefix, "bit_length": bit_length, "bins": bins.len() }));
        self.commit_targets_change(ring, now)?;
        Ok(bins.len())
    }

    // ------------------------------------------------------------------
    // root changes

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

    // ------------------------------------------------------------------
    // publish

    /// Build every file a publish would write (relative path → bytes) and
    /// verify it with custody-tuf's client workflow at time `now`: root
    /// chain 1..N (thresholds of old and new keys), timestamp, snapshot,
    /// targets and every delegated role (signatures, thresholds, versions,
    /// expiry, hashes), and every target file's length and hashes. Any
    /// failure refuses the publish.
    pub fn build_publish_set(
        &self,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, PublishFile>, RepoError> {
        Ok(self.build_publish_set_from(now, None)?.0)
    }

    /// [`Repository::build_publish_set`], incremental against a previous
    /// generation that a host laid out differently from
    /// [`Repository::publish`]: target files under `previous_root`
    /// (`targets/…`), metadata files in `previous_metadata`. The same
    /// carry-over rules as `publish_with_stats` apply (see
    /// `build_publish_set_from`); returns the files and the number of roles
    /// carried over.
    pub fn build_publish_set_against(
        &self,
        now: DateTime<Utc>,
        previous_root: &Path,
        previous_metadata: &Path,
    ) -> Result<(BTreeMap<String, PublishFile>, usize), RepoError> {
        self.build_publish_set_from(
            now,
            Some(PreviousGeneration {
                root: previous_root,
                metadata: previous_metadata,
            }),
        )
    }

    /// [`Repository::build_publish_set`], incremental against `previous`,
    /// the generation custody published (and verified) before. Every file
    /// whose bytes are new is verified by the client workflow as always.
    /// A leaf delegated role (hash bin) whose file is byte-identical to the
    /// previous generation's file of the same name, whose delegator's file
    /// is also unchanged, and whose snapshot entry pins only its version, is
    /// carried over: it passed the client workflow when that generation was
    /// published, and what could have changed since is checked here
    /// (expiry against `now`, version against the new snapshot). A staged
    /// target file that is the same inode as the previous generation's file
    /// at its published path is not hashed again: custody links a target
    /// into a generation only after verifying it, and never writes into a
    /// staged or published file (both are replaced by rename), so a change
    /// to that inode would equally be a change to the live published file.
    /// Returns the files and the number of roles carried over.
    fn build_publish_set_from(
        &self,
        now: DateTime<Utc>,
        previous: Option<PreviousGeneration<'_>>,
    ) -> Result<(BTreeMap<String, PublishFile>, usize), RepoError> {
        let refuse = |e: custody_tuf::Error| RepoError::Publish(e.to_string());
        let mut files: BTreeMap<String, PublishFile> = BTreeMap::new();
        let meta_dir = self.dir.join(METADATA_DIR);
        let current = self.root.signed.version;
        let current_bytes = envelope_bytes(&self.root)?;
        let mut roots = Vec::new();
        for v in 1..current {
            let p = meta_dir.join(custody_tuf::metadata_filename("root", Some(v)));
            roots.push(read_bounded(&p)?);
        }
        roots.push(current_bytes.clone());
        let first = roots.first().cloned().unwrap_or_default();
        let mut trusted = custody_tuf::TrustedMetadata::new(&first).map_err(refuse)?;
        for b in roots.iter().skip(1) {
            trusted.update_root(b).map_err(refuse)?;
        }
        for (i, b) in roots.iter().enumerate() {
            let v = i as u64 + 1;
            files.insert(
                custody_tuf::metadata_filename("root", Some(v)),
                PublishFile::Bytes(b.clone()),
            );
        }
        files.insert("root.json".into(), PublishFile::Bytes(current_bytes));
        let ts = envelope_bytes(&self.timestamp)?;
        trusted.update_timestamp(&ts, now).map_err(refuse)?;
        files.insert("timestamp.json".into(), PublishFile::Bytes(ts));
        let snap = envelope_bytes(&self.snapshot)?;
        let snap_name = trusted.remote_filename("snapshot").map_err(refuse)?;
        trusted.update_snapshot(&snap, now, false).map_err(refuse)?;
        files.insert(snap_name, PublishFile::Bytes(snap));
        // Roles unchanged since read or written: their staged bytes (the
        // client workflow below verifies whatever bytes are published).
        let role_bytes = |role: &str, env: &Envelope<Targets>| -> Result<Vec<u8>, RepoError> {
            match self.staged.get(role) {
                Some(b) if !self.dirty.contains(role) => Ok(b.as_ref().clone()),
                _ => envelope_bytes(env),
            }
        };
        let loaded_external;
        let external = match &self.external {
            Some(m) => m,
            None => {
                loaded_external = load_external(&self.dir)?;
                &loaded_external
            }
        };
        let tdir = self.dir.join(TARGETS_DIR);
        // Target contents of one verified role: taken from the metadata
        // custody-tuf just verified, so what is copied is what clients will
        // check. Contents-less targets (artifact store) are skipped.
        let contents = |role: &str,
                        verified: &Targets,
                        t: &custody_tuf::TrustedMetadata|
         -> Result<Vec<(String, PublishFile)>, RepoError> {
            let ext = external.get(role);
            let mut out = Vec::new();
            for (path, tf) in &verified.targets {
                validate_target_path(path)?;
                if ext.is_some_and(|s| s.contains(path)) {
                    continue;
                }
                let src = tdir.join(path);
                let remote = t.target_remote_path(path, tf);
                validate_target_path(&remote)?;
                let rel = format!("{TARGETS_DIR}/{remote}");
                let published_before =
                    previous.is_some_and(|prev| same_inode(&src, &prev.root.join(&rel), tf.length));
                if !published_before {
                    verify_target_file(path, tf, &src)?;
                }
                out.push((rel, PublishFile::Copy(src)));
            }
            Ok(out)
        };
        let top_env = self.targets_env("targets")?;
        let top = role_bytes("targets", top_env)?;
        let top_name = trusted.remote_filename("targets").map_err(refuse)?;
        trusted.update_targets(&top, now).map_err(refuse)?;
        // Delegators whose file is byte-identical to the previous
        // generation's: their delegations (keys, thresholds) are unchanged.
        let mut unchanged_delegators: BTreeSet<String> = BTreeSet::new();
        if previous.is_some_and(|prev| same_file_bytes(&prev.metadata.join(&top_name), &top)) {
            unchanged_delegators.insert("targets".to_owned());
        }
        files.insert(top_name, PublishFile::Bytes(top));
        let verified_top = trusted
            .targets()
            .ok_or_else(|| RepoError::Publish("targets not loaded after verification".into()))?;
        files.extend(contents("targets", verified_top, &trusted)?);
        // Delegated roles, one delegation level at a time, each verified
        // against the delegator that lists it. Roles that delegate further
        // are verified on the main trusted state (their children need it);
        // leaf roles (e.g. 256 hash bins) are independent: they are
        // verified in parallel, each thread on its own copy of the trusted
        // state, with the same custody-tuf calls.
        let mut level: Vec<(String, String)> = delegated_names(&top_env.signed)
            .into_iter()
            .map(|r| (r, "targets".to_owned()))
            .collect();
        let mut done = BTreeSet::new();
        let mut carried = 0usize;
        while !level.is_empty() {
            let mut next = Vec::new();
            let mut leaves = Vec::new();
            for (role, delegator) in level {
                if !done.insert((role.clone(), delegator.clone())) {
                    continue;
                }
                let Some(env) = self.targets.get(&role) else {
                    return Err(RepoError::Publish(format!(
                        "role {role} is delegated by {delegator} but has no metadata"
                    )));
                };
                let children = delegated_names(&env.signed);
                if children.is_empty() {
                    leaves.push((role, delegator, env));
                    continue;
                }
                let bytes = role_bytes(&role, env)?;
                let name = trusted.remote_filename(&role).map_err(refuse)?;
                trusted
                    .update_delegated_targets(&bytes, &role, &delegator, now)
                    .map_err(refuse)?;
                if previous.is_some_and(|prev| same_file_bytes(&prev.metadata.join(&name), &bytes))
                    && unchanged_delegators.contains(&delegator)
                {
                    unchanged_delegators.insert(role.clone());
                }
                let verified = trusted.delegated_targets(&role).ok_or_else(|| {
                    RepoError::Publish(format!("{role} not loaded after verification"))
                })?;
                files.extend(contents(&role, verified, &trusted)?);
                files.insert(name, PublishFile::Bytes(bytes));
                next.extend(children.into_iter().map(|c| (c, role.clone())));
            }
            let results = par_map_with(
                &leaves,
                || trusted.clone(),
                |t, (role, delegator, env)| -> Result<_, RepoError> {
                    let bytes = role_bytes(role, env)?;
                    let name = t.remote_filename(role).map_err(refuse)?;
                    let carried = previous.is_some_and(|prev| {
                        unchanged_delegators.contains(delegator)
                            && t.meta_for(role).is_ok_and(|m| {
                                m.length.is_none()
                                    && m.hashes.is_none()
                                    && m.version == env.signed.version
                            })
                            && !env.signed.is_expired(now)
                            && same_file_bytes(&prev.metadata.join(&name), &bytes)
                    });
                    if carried {
                        let c = contents(role, &env.signed, t)?;
                        return Ok((name, bytes, c, true));
                    }
                    t.update_delegated_targets(&bytes, role, delegator, now)
                        .map_err(refuse)?;
                    let verified = t.delegated_targets(role).ok_or_else(|| {
                        RepoError::Publish(format!("{role} not loaded after verification"))
                    })?;
                    let c = contents(role, verified, t)?;
                    Ok((name, bytes, c, false))
                },
            );
            for r in results {
                let (name, bytes, c, was_carried) = r?;
                carried += usize::from(was_carried);
                files.insert(name, PublishFile::Bytes(bytes));
                files.extend(c);
            }
            level = next;
        }
        if let Some(orphan) = self
            .targets
            .keys()
            .find(|r| *r != "targets" && !done.iter().any(|(d, _)| d == *r))
        {
            return Err(RepoError::Publish(format!(
                "role {orphan} has metadata but no delegation points to it"
            )));
        }
        Ok((files, carried))
    }

    /// Publish to `out`: verify (see [`Repository::build_publish_set`]),
    /// write a complete new tree next to `out`, then atomically switch the
    /// `out` symlink to it. Readers see the old tree or the new one, never
    /// a mix. The previous tree is kept (readers may still be in it); older
    /// ones are removed.
    pub fn publish(&mut self, out: &Path, now: DateTime<Utc>) -> Result<PathBuf, RepoError> {
        Ok(self.publish_with_stats(out, now)?.generation)
    }

    /// [`Repository::publish`], also reporting what was written and what
    /// was reused (hard-linked) from the previous generation.
    pub fn publish_with_stats(
        &mut self,
        out: &Path,
        now: DateTime<Utc>,
    ) -> Result<PublishStats, RepoError> {
        let previous = previous_generation(out);
        let (files, carried) = self.build_publish_set_from(
            now,
            previous.as_deref().map(|p| PreviousGeneration {
                root: p,
                metadata: p,
            }),
        )?;
        let meta_dir = self.dir.join(METADATA_DIR);
        let mut stats = publish_tree(out, &files, self.timestamp.signed.version, Some(&meta_dir))?;
        stats.roles_carried_over = carried;
        self.log_event(
            now,
            "publish",
            serde_json::json!({
                "out": out.display().to_string(),
                "root": self.root.signed.version,
                "timestamp": self.timestamp.signed.version,
                "snapshot": self.snapshot.signed.version,
            }),
        );
        self.flush_log()?;
        Ok(stats)
    }
}

/// What one publish did on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PublishStats {
    /// the new generation directory (`out` now points at it)
    pub generation: PathBuf,
    /// files whose bytes were written (new or changed metadata, targets
    /// that could not be hard-linked)
    pub files_written: Vec<String>,
    /// bytes written
    pub bytes_written: u64,
    /// files hard-linked from the previous generation (identical bytes) or
    /// from the staging area (target contents)
    pub files_linked: usize,
    /// of `files_linked`: new metadata files linked from the staging area
    /// (bytes `save` already wrote, not written a second time)
    pub linked_from_staging: Vec<String>,
    /// bytes of the files in `linked_from_staging`
    pub bytes_linked_from_staging: u64,
    /// delegated roles carried over byte-identical from the previous
    /// generation (see `build_publish_set_from`) instead of re-verified
    pub roles_carried_over: usize,
}

/// `items.map(f)` on up to `available_parallelism` threads (in order).
/// Coarse chunks with `std::thread::scope`: used for canonicalising and
/// serializing many roles (hash bins), where each item is a sizeable, equal
/// piece of work; not worth a thread-pool dependency.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; re-raise it on this thread.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// [`par_map`] where each thread first builds its own state with `init`
/// (e.g. a copy of the trusted metadata) and `f` may change it.
fn par_map_with<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || items.len() < 2 {
        let mut st = init();
        return items.iter().map(|i| f(&mut st, i)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let (f, init) = (&f, &init);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                scope.spawn(move || {
                    let mut st = init();
                    c.iter().map(|i| f(&mut st, i)).collect::<Vec<R>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Above this many files, `add_targets` stages without one fsync per file
/// and `save` syncs the file system once.
const BULK_FILES: usize = 64;

/// Replace many files in `dir` (in order; the last one, the timestamp when
/// present, becomes visible only after all others are durable).
fn write_replace_bulk(dir: &Path, writes: &[(PathBuf, &[u8])]) -> Result<(), RepoError> {
    let mut temps = Vec::with_capacity(writes.len());
    for (path, bytes) in writes {
        let mut tmp = tempfile::Builder::new()
            .prefix(".custody-tmp-")
            .tempfile_in(dir)
            .map_err(io_err(dir))?;
        tmp.write_all(bytes).map_err(io_err(path))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io_err(path))?;
        }
        // closed now: 2^16 bins must not mean 2^16 open files
        temps.push((tmp.into_temp_path(), path));
    }
    bulk_sync(dir)?;
    let sync_dir = || {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    };
    let last = temps.pop();
    for (tmp, path) in temps {
        tmp.persist(path).map_err(|e| RepoError::Io {
            path: path.clone(),
            source: e.error,
        })?;
    }
    sync_dir()?;
    if let Some((tmp, path)) = last {
        tmp.persist(path).map_err(|e| RepoError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        sync_dir()?;
    }
    Ok(())
}

/// Make everything written under `dir` durable with one `syncfs(2)` (Linux);
/// elsewhere `sync(2)`-less fallback: fsync every file under `dir`.
fn bulk_sync(dir: &Path) -> Result<(), RepoError> {
    let d = std::fs::File::open(dir).map_err(io_err(dir))?;
    #[cfg(target_os = "linux")]
    {
        nix::unistd::syncfs(&d).map_err(|e| RepoError::Io {
            path: dir.to_owned(),
            source: std::io::Error::from(e),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        fn fsync_tree(p: &Path) -> std::io::Result<()> {
            for e in std::fs::read_dir(p)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    fsync_tree(&e.path())?;
                }
                std::fs::File::open(e.path())?.sync_all()?;
            }
            Ok(())
        }
        fsync_tree(dir).map_err(io_err(dir))?;
        d.sync_all().map_err(io_err(dir))
    }
}

/// Where a previously published (and verified) generation keeps its files.
#[derive(Debug, Clone, Copy)]
struct PreviousGeneration<'a> {
    /// target files are at `root/targets/<remote path>`
    root: &'a Path,
    /// metadata files are at `metadata/<file name>`
    metadata: &'a Path,
}

/// The generation the `out` symlink points at now, if any.
fn previous_generation(out: &Path) -> Option<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::read_link(out)
        .ok()
        .map(|l| if l.is_absolute() { l } else { parent.join(l) })
        .filter(|p| p.is_dir())
}

/// Whether `a` and `b` are the same inode (hard links) of `len` bytes.
fn same_inode(a: &Path, b: &Path, len: u64) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
            (Ok(x), Ok(y)) => {
                x.is_file() && x.dev() == y.dev() && x.ino() == y.ino() && x.len() == len
            }
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b, len);
        false
    }
}

/// Whether `prev` holds exactly `bytes` (length first, then content).
fn same_file_bytes(prev: &Path, bytes: &[u8]) -> bool {
    match std::fs::metadata(prev) {
        Ok(m) if m.is_file() && m.len() == bytes.len() as u64 => {
            std::fs::read(prev).map(|b| b == bytes).unwrap_or(false)
        }
        _ => false,
    }
}

/// One file of a publish.
#[derive(Debug, Clone)]
pub enum PublishFile {
    /// metadata bytes
    Bytes(Vec<u8>),
    /// a staged target file to copy (or hard-link)
    Copy(PathBuf),
}

fn publish_tree(
    out: &Path,
    files: &BTreeMap<String, PublishFile>,
    ts_version: u64,
    staged_meta: Option<&Path>,
) -> Result<PublishStats, RepoError> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| RepoError::Invalid(format!("{}: needs a UTF-8 final name", out.display())))?
        .to_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    match std::fs::symlink_metadata(out) {
        Ok(m) if !m.file_type().is_symlink() => {
            return Err(RepoError::Invalid(format!(
                "{}: exists and is not a symlink made by custody repo publish; publishing switches a symlink atomically, so give a path that does not exist yet or that an earlier publish created",
                out.display()
            )))
        }
        _ => {}
    }
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let gens = parent.join(format!(".{name}.generations"));
    std::fs::create_dir_all(&gens).map_err(io_err(&gens))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{ts_version}-"))
        .tempdir_in(&gens)
        .map_err(io_err(&gens))?;
    // The generation `out` points at now: files with identical bytes are
    // hard-linked from it instead of written again (generations are never
    // modified in place, so sharing inodes is safe). With hash bins this
    // makes a one-target change write one bin, snapshot and timestamp.
    let previous_gen = std::fs::read_link(out)
        .ok()
        .map(|l| if l.is_absolute() { l } else { parent.join(l) })
        .filter(|p| p.is_dir());
    let mut stats = PublishStats::default();
    // Many files: no fsync per file, one syncfs before the switch.
    let bulk = files.len() > BULK_FILES;
    for (rel, f) in files {
        let dest = tmp.path().join(rel);
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(io_err(p))?;
        }
        match f {
            PublishFile::Bytes(b) => {
                if let Some(prev) = previous_gen.as_ref().map(|g| g.join(rel)) {
                    if same_file_bytes(&prev, b) && std::fs::hard_link(&prev, &dest).is_ok() {
                        stats.files_linked += 1;
                        continue;
                    }
                }
                // New metadata that `save` already wrote to the staging
                // area (`N.role.json` staged as `role.json`): link the
                // staged file if it holds exactly these bytes. Staged files
                // are only ever replaced by rename, never changed in place,
                // so the generation keeps these bytes.
                if let Some(meta) = staged_meta.filter(|_| !rel.contains('/')) {
                    let unversioned = match rel.split_once('.') {
                        Some((v, rest)) if v.bytes().all(|c| c.is_ascii_digit()) => rest,
                        _ => rel.as_str(),
                    };
                    let linked = [meta.join(rel), meta.join(unversioned)]
                        .iter()
                        .any(|c| same_file_bytes(c, b) && std::fs::hard_link(c, &dest).is_ok());
                    if linked {
                        stats.files_linked += 1;
                        stats.linked_from_staging.push(rel.clone());
                        stats.bytes_linked_from_staging += b.len() as u64;
                        continue;
                    }
                }
                let mut fh = std::fs::File::create(&dest).map_err(io_err(&dest))?;
                fh.write_all(b).map_err(io_err(&dest))?;
                if !bulk {
                    fh.sync_all().map_err(io_err(&dest))?;
                }
                stats.files_written.push(rel.clone());
                stats.bytes_written += b.len() as u64;
            }
            PublishFile::Copy(src) => {
                if std::fs::hard_link(src, &dest).is_ok() {
                    stats.files_linked += 1;
                } else {
                    let n = std::fs::copy(src, &dest).map_err(io_err(&dest))?;
                    stats.files_written.push(rel.clone());
                    stats.bytes_written += n;
                }
            }
        }
    }
    if bulk {
        bulk_sync(tmp.path())?;
    }
    let gen_dir = tmp.keep();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&gen_dir, std::fs::Permissions::from_mode(0o755));
    }
    let gen_name = gen_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| RepoError::Invalid("generation name".into()))?
        .to_owned();
    let link_target = PathBuf::from(format!(".{name}.generations")).join(&gen_name);
    let previous = std::fs::read_link(out).ok();
    let tmp_link = parent.join(format!(".{name}.link-{gen_name}"));
    #[cfg(unix)]
    std::os::unix::fs::symlink(&link_target, &tmp_link).map_err(io_err(&tmp_link))?;
    #[cfg(not(unix))]
    return Err(RepoError::Invalid("publish needs symlinks (unix)".into()));
    std::fs::rename(&tmp_link, out).map_err(io_err(out))?;
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&parent))?;
    // Keep the new and the previous generation; remove older ones.
    let keep: BTreeSet<String> = [
        Some(gen_name.clone()),
        previous.and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Ok(entries) = std::fs::read_dir(&gens) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&n) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    stats.generation = gen_dir;
    Ok(stats)
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

fn delegated_names(t: &Targets) -> Vec<String> {
    match &t.delegations {
        Some(d) => {
            if let Some(roles) = &d.roles {
                roles.iter().map(|r| r.name.clone()).collect()
            } else if let Some(s) = &d.succinct_roles {
                (0..s.bin_count()).map(|i| s.bin_name(i)).collect()
            } else {
                vec![]
            }
        }
        None => vec![],
    }
}

fn check_threshold(role: &str, threshold: u64, keys: usize) -> Result<(), RepoError> {
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
fn check_no_shared_keys(roles: &BTreeMap<String, RoleInit>) -> Result<(), RepoError> {
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

/// Stream a staged target file through custody-tuf's `TargetVerifier`
/// (length and every listed hash), in constant memory.
fn verify_target_file(path: &str, tf: &TargetFile, src: &Path) -> Result<(), RepoError> {
    use std::io::Read;
    let refuse = |e: custody_tuf::Error| RepoError::Publish(format!("{}: {e}", src.display()));
    let mut v = custody_tuf::TargetVerifier::new(path, tf).map_err(refuse)?;
    let mut f = std::fs::File::open(src).map_err(io_err(src))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err(src))?;
        if n == 0 {
            break;
        }
        v.update(buf.get(..n).unwrap_or_default()).map_err(refuse)?;
    }
    v.finish().map_err(refuse)
}

/// sha256 (hex) of the last line of the custody log, or 64 zeros for an
/// empty log.
fn last_line_hash(f: &mut std::fs::File) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    // Log lines are small; the last one is within the final 64 KiB.
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    if body.is_empty() {
        return Ok("0".repeat(64));
    }
    let last = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => body.get(i + 1..).unwrap_or_default(),
        None => body,
    };
    Ok(custody_tuf::crypto::sha256_hex(last))
}

/// Check the custody log's hash chain. Returns the number of entries, or
/// the 1-based line number of the first entry whose `prev` does not match.
pub fn verify_log(dir: &Path) -> Result<usize, RepoError> {
    let path = dir.join(LOG_FILE);
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    let mut prev = "0".repeat(64);
    let mut n = 0;
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| RepoError::BadFile {
                path: path.clone(),
                detail: format!("line {}: not JSON: {e}", i + 1),
            })?;
        if v.get("prev").and_then(|p| p.as_str()) != Some(prev.as_str()) {
            return Err(RepoError::BadFile {
                path: path.clone(),
                detail: format!(
                    "line {}: hash chain broken: prev should be {prev} (sha256 of the line before); the log was edited or truncated",
                    i + 1
                ),
            });
        }
        prev = custody_tuf::crypto::sha256_hex(line);
        n += 1;
    }
    Ok(n)
}

/// Evaluate one target against the stored policy and the command's policy
/// (each must accept). Returns the accepted envelope's sha256, if any.
fn provenance_gate(
    stored: Option<&custody_provenance::Policy>,
    given: Option<&custody_provenance::Policy>,
    target: &str,
    role: &str,
    hashes: &BTreeMap<String, String>,
    envelope: Option<&[u8]>,
) -> Result<Option<String>, RepoError> {
    let policies: Vec<(&str, &custody_provenance::Policy)> = stored
        .map(|p| ("repository's provenance policy", p))
        .into_iter()
        .chain(given.map(|p| ("provenance policy given for this command", p)))
        .collect();
    if policies.is_empty() {
        if envelope.is_some() {
            return Err(RepoError::Provenance {
                target: target.to_owned(),
                policy: "(no policy)".into(),
                detail: "a provenance envelope was given but no provenance policy is set (stored in the repository or given with the command): nothing could check it, and custody does not record provenance unchecked".into(),
            });
        }
        return Ok(None);
    }
    let mut accepted = None;
    for (which, policy) in policies {
        match custody_provenance::evaluate_for_role(policy, target, Some(role), hashes, envelope) {
            Ok(custody_provenance::Decision::Attested(a)) => accepted = Some(a.envelope_sha256),
            Ok(custody_provenance::Decision::Unattested { .. }) => {}
            Err(refused) => {
                return Err(RepoError::Provenance {
                    target: target.to_owned(),
                    policy: which.to_owned(),
                    detail: refused.to_string(),
                })
            }
        }
    }
    Ok(accepted)
}

/// `custom` with `custody.provenance.sha256` set, keeping everything else
/// (custody-provenance owns the field).
fn with_provenance_digest(
    custom: Option<serde_json::Value>,
    sha256: &str,
) -> Result<serde_json::Value, RepoError> {
    custody_provenance::with_provenance_digest(custom, sha256)
        .map_err(|e| RepoError::Invalid(e.to_string()))
}

/// File name of `role`'s contents-less target list: the role name hashed,
/// since delegated role names are arbitrary strings (never a path).
fn external_file_name(role: &str) -> String {
    format!("{}.json", custody_tuf::crypto::sha256_hex(role.as_bytes()))
}

#[derive(Deserialize)]
struct ExternalList {
    role: String,
    targets: BTreeSet<String>,
}

/// Read every contents-less target list of the repository in `dir`.
fn load_external(dir: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, RepoError> {
    let ext_dir = dir.join(EXTERNAL_DIR);
    let mut files = Vec::new();
    match std::fs::read_dir(&ext_dir) {
        Ok(entries) => {
            for e in entries {
                let e = e.map_err(io_err(&ext_dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !name.starts_with('.') {
                    files.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(RepoError::Io {
                path: ext_dir,
                source: e,
            })
        }
    }
    let parsed = par_map(&files, |p| -> Result<ExternalList, RepoError> {
        let bytes = read_bounded(p)?;
        let list: ExternalList =
            serde_json::from_slice(&bytes).map_err(|e| RepoError::BadFile {
                path: p.clone(),
                detail: format!("not a custody external-target list: {e}"),
            })?;
        if p.file_name().and_then(|n| n.to_str()) != Some(external_file_name(&list.role).as_str()) {
            return Err(RepoError::BadFile {
                path: p.clone(),
                detail: format!(
                    "lists role {:?}, whose list has another file name",
                    list.role
                ),
            });
        }
        Ok(list)
    });
    let mut out = BTreeMap::new();
    for l in parsed {
        let l = l?;
        out.insert(l.role, l.targets);
    }
    Ok(out)
}

/// Name of the lock file in the repository directory.
pub const LOCK_FILE: &str = ".custody-repo.lock";

/// Take the repository's exclusive advisory lock (flock; released when the
/// process exits, so a crash never leaves a stale lock). Two commands on one
/// repository at once would otherwise lose one's changes (e.g. a cron
/// refresh racing an add-target).
fn lock_repo(dir: &Path) -> Result<std::fs::File, RepoError> {
    let path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(RepoError::Invalid(format!(
            "{}: another custody command is working on this repository (lock {} is held); try again when it is done",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(RepoError::Io { path, source: e }),
    }
}

/// Walk `dir`, calling `f(file, relative path with '/')` for every regular
/// file, in sorted order. Symlinks are refused: following them could pull
/// files from outside the tree into a release.
fn walk(
    base: &Path,
    dir: &Path,
    f: &mut dyn FnMut(&Path, &str) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let ft = e.file_type().map_err(io_err(&p))?;
        if ft.is_symlink() {
            return Err(RepoError::Invalid(format!(
                "{}: is a symlink; custody does not follow symlinks when adding a directory",
                p.display()
            )));
        } else if ft.is_dir() {
            walk(base, &p, f)?;
        } else if ft.is_file() {
            let rel = p.strip_prefix(base).map_err(|_| {
                RepoError::Invalid(format!("{}: outside {}", p.display(), base.display()))
            })?;
            let mut parts = Vec::new();
            for c in rel.components() {
                let s = c.as_os_str().to_str().ok_or_else(|| {
                    RepoError::Invalid(format!("{}: file name is not UTF-8", p.display()))
                })?;
                parts.push(s.to_owned());
            }
            f(&p, &parts.join("/"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
