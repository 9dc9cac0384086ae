//! Create, open (under the repository lock) and save a repository.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{
    MetaFile, RoleKeys, Root, Snapshot, Targets, Timestamp, SPEC_VERSION, TOP_LEVEL_ROLES,
};

use crate::error::RepoError;
use crate::keyring::KeyRing;

use super::bulk::{bulk_sync, par_map, write_replace_bulk, BULK_FILES};
use super::codec::{
    checked_envelope_bytes, delegated_names, expiry, fs_err, io_err, load_role, load_role_bytes,
    load_role_loose, new_targets, read_bounded, targets_file_bytes, write_replace,
};
use super::provenance::{PROVENANCE_DIR, PROVENANCE_POLICY_FILE};
use super::signing::{check_no_shared_keys, check_threshold};
use super::Repository;
use super::{
    Envelope, InitOptions, RepoConfig, RoleKeyInfo, CONFIG_FILE, METADATA_DIR, TARGETS_DIR,
};

impl Repository {
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
            signed_canonical: BTreeMap::new(),
            delegators: std::sync::OnceLock::new(),
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
            signed_canonical: BTreeMap::new(),
            delegators: std::sync::OnceLock::new(),
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
        // Each role as signed: the canonical envelope around the bytes its
        // signatures were made over (no second serialization, no parse
        // back); publish feeds exactly these bytes to the client workflow.
        for ((role, _), bytes) in dirty_targets
            .iter()
            .zip(par_map(&jobs, |((role, env), info)| {
                targets_file_bytes(
                    role,
                    env,
                    self.signed_canonical.get(*role),
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
                custody_fs::sync_dir(&parent).map_err(fs_err)?;
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
                write_replace(&p, &bytes)?;
            }
        }
        match self.pending_policy.take() {
            Some(Some(bytes)) => {
                let p = self.dir.join(PROVENANCE_POLICY_FILE);
                write_replace(&p, &bytes)?;
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
                write_replace(p, bytes)?;
            }
        }
        drop(writes);
        for (role, bytes) in out {
            if !TOP_LEVEL_ROLES.contains(&role.as_str()) || role == "targets" {
                // the staged file holds the signed bytes now: no second copy
                self.signed_canonical.remove(&role);
                self.staged.insert(role, std::sync::Arc::new(bytes));
            }
        }
        let cfg = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| RepoError::Invalid(format!("serializing config: {e}")))?;
        let cfg_path = self.dir.join(CONFIG_FILE);
        write_replace(&cfg_path, &cfg)?;
        self.flush_log()?;
        self.dirty.clear();
        // What was saved is a finished version: the next change (same
        // Repository value, library use) bumps again.
        self.bumped.clear();
        self.new_root = false;
        Ok(())
    }
}

/// Name of the lock file in the repository directory.
pub const LOCK_FILE: &str = ".custody-repo.lock";

/// Take the repository's exclusive advisory lock (flock; released when the
/// process exits, so a crash never leaves a stale lock). Two commands on one
/// repository at once would otherwise lose one's changes (e.g. a cron
/// refresh racing an add-target).
fn lock_repo(dir: &Path) -> Result<std::fs::File, RepoError> {
    let path = dir.join(LOCK_FILE);
    custody_fs::lock_exclusive(&path)
        .map_err(fs_err)?
        .ok_or_else(|| {
        RepoError::Invalid(format!(
            "{}: another custody command is working on this repository (lock {} is held); try again when it is done",
            dir.display(),
            path.display()
        ))
    })
}
