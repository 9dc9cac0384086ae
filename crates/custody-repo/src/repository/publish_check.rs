//! The publish check: build every file a publish would write and run
//! custody-tuf's client workflow over exactly those bytes.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{Signed, TargetFile, Targets};

use crate::error::RepoError;
use crate::paths::validate_target_path;

use super::bulk::par_map_with;
use super::codec::{delegated_names, envelope_bytes, io_err, read_bounded};
use super::external::load_external;
use super::Repository;
use super::{Envelope, METADATA_DIR, TARGETS_DIR};

impl Repository {
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
    pub(super) fn build_publish_set_from(
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
}

/// Where a previously published (and verified) generation keeps its files.
#[derive(Debug, Clone, Copy)]
pub(super) struct PreviousGeneration<'a> {
    /// target files are at `root/targets/<remote path>`
    pub(super) root: &'a Path,
    /// metadata files are at `metadata/<file name>`
    pub(super) metadata: &'a Path,
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
pub(super) fn same_file_bytes(prev: &Path, bytes: &[u8]) -> bool {
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
