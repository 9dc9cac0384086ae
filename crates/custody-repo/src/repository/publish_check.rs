//! The publish check: build every file a publish would write and feed
//! exactly those bytes to custody-tuf's refresh driver ([`Refresh`]), as a
//! client with no trusted store of its own would be fed the repository:
//! the root chain from version 1, timestamp, snapshot, top-level targets,
//! then every delegated role by name ([`Refresh::load_delegated`]). The
//! sequence of checks is custody-tuf's, the same one custody-client's
//! `Updater`, the device agent and the server's image lookup run.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use custody_tuf::{Fetch, Limits, Refresh, Signed, Source, Step, TargetFile, Targets};

use crate::error::RepoError;
use crate::paths::validate_target_path;

use super::bulk::par_map_with;
use super::codec::{
    canonical_envelope_bytes, delegated_names, envelope_bytes, io_err, read_bounded,
};
use super::external::load_external;
use super::Repository;
use super::{Envelope, METADATA_DIR, TARGETS_DIR};

impl Repository {
    /// Build every file a publish would write (relative path → bytes) and
    /// verify it with custody-tuf's refresh driver at time `now`: root
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
        let ts = envelope_bytes(&self.timestamp)?;
        let snap = envelope_bytes(&self.snapshot)?;
        // Roles unchanged since read or written: their staged bytes (the
        // client workflow below verifies whatever bytes are published).
        // Changed roles: the canonical envelope around the bytes they were
        // signed over, as `save` writes them.
        let role_bytes = |role: &str, env: &Envelope<Targets>| -> Result<Arc<Vec<u8>>, RepoError> {
            match self.staged.get(role) {
                Some(b) if !self.dirty.contains(role) => Ok(Arc::clone(b)),
                _ => {
                    let signed = self
                        .signed_canonical
                        .get(role)
                        .filter(|c| c.matches(&env.signed));
                    if let Some(c) = signed {
                        if let Some(b) = canonical_envelope_bytes(role, &env.signatures, &c.bytes)?
                        {
                            return Ok(Arc::new(b));
                        }
                    }
                    envelope_bytes(env).map(Arc::new)
                }
            }
        };
        let top_env = self.targets_env("targets")?;
        let top = role_bytes("targets", top_env)?;
        // custody-tuf's refresh driver, fed the publish set as a client with
        // no local store would be fed the repository: root 2..N from the
        // first root, then timestamp, snapshot and top-level targets.
        let first = roots.first().cloned().unwrap_or_default();
        let mut refresh = Refresh::new(&first, Limits::default(), now).map_err(refuse)?;
        let mut names = BTreeMap::new();
        feed(&mut refresh, |r, f| {
            if f.role != "root" && r.trusted().root().version != current {
                return Err(RepoError::Publish(format!(
                    "root chain: the walk from 1.root.json stops at version {} of {current} (at most {} rotations)",
                    r.trusted().root().version,
                    r.trusted().limits().max_root_rotations
                )));
            }
            let bytes = match f.role.as_str() {
                "root" => f
                    .version
                    .and_then(|v| usize::try_from(v).ok())
                    .and_then(|v| roots.get(v.wrapping_sub(1))),
                "timestamp" => Some(&ts),
                "snapshot" => Some(&snap),
                "targets" => Some(top.as_ref()),
                _ => None,
            };
            names.insert(f.role.clone(), f.file_name.clone());
            Ok(bytes.map(Vec::as_slice))
        })?;
        for (i, b) in roots.iter().enumerate() {
            let v = i as u64 + 1;
            files.insert(
                custody_tuf::metadata_filename("root", Some(v)),
                PublishFile::Bytes(Arc::new(b.clone())),
            );
        }
        files.insert(
            "root.json".into(),
            PublishFile::Bytes(Arc::new(current_bytes)),
        );
        let name_of = |role: &str| {
            names.get(role).cloned().ok_or_else(|| {
                RepoError::Publish(format!("{role} was not asked for by the refresh"))
            })
        };
        files.insert(name_of("timestamp")?, PublishFile::Bytes(Arc::new(ts)));
        files.insert(name_of("snapshot")?, PublishFile::Bytes(Arc::new(snap)));
        let top_name = name_of("targets")?;
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
        // Delegators whose file is byte-identical to the previous
        // generation's: their delegations (keys, thresholds) are unchanged.
        let mut unchanged_delegators: BTreeSet<String> = BTreeSet::new();
        if previous.is_some_and(|prev| same_file_bytes(&prev.metadata.join(&top_name), &top)) {
            unchanged_delegators.insert("targets".to_owned());
        }
        files.insert(top_name, PublishFile::Bytes(top));
        let verified_top = refresh
            .trusted()
            .targets()
            .ok_or_else(|| RepoError::Publish("targets not loaded after verification".into()))?;
        files.extend(contents("targets", verified_top, refresh.trusted())?);
        // Delegated roles, one delegation level at a time, each loaded by
        // the refresh driver against the delegator that lists it. Roles that
        // delegate further are verified on the main refresh (their children
        // need it); leaf roles (e.g. 256 hash bins) are independent: they
        // are verified in parallel, each thread on its own copy of the
        // refresh, with the same custody-tuf calls.
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
                let name = load_delegated(&mut refresh, &role, &delegator, &bytes)?;
                if previous.is_some_and(|prev| same_file_bytes(&prev.metadata.join(&name), &bytes))
                    && unchanged_delegators.contains(&delegator)
                {
                    unchanged_delegators.insert(role.clone());
                }
                let verified = refresh.trusted().delegated_targets(&role).ok_or_else(|| {
                    RepoError::Publish(format!("{role} not loaded after verification"))
                })?;
                files.extend(contents(&role, verified, refresh.trusted())?);
                files.insert(name, PublishFile::Bytes(bytes));
                next.extend(children.into_iter().map(|c| (c, role.clone())));
            }
            // In chunks, each thread starting every chunk from a fresh copy
            // of the refresh: a verified role stays loaded in the copy that
            // verified it, so memory holds one chunk's roles at a time, not
            // every bin of a 2.5-million-target repository.
            let mut results = Vec::with_capacity(leaves.len());
            for chunk in leaves.chunks(LEAF_CHUNK) {
                results.extend(par_map_with(
                    chunk,
                    || refresh.clone(),
                    |r, (role, delegator, env)| -> Result<_, RepoError> {
                        let bytes = role_bytes(role, env)?;
                        let name = r.trusted().remote_filename(role).map_err(refuse)?;
                        let carried = previous.is_some_and(|prev| {
                            unchanged_delegators.contains(delegator)
                                && r.trusted().meta_for(role).is_ok_and(|m| {
                                    m.length.is_none()
                                        && m.hashes.is_none()
                                        && m.version == env.signed.version
                                })
                                && !env.signed.is_expired(now)
                                && same_file_bytes(&prev.metadata.join(&name), &bytes)
                        });
                        if carried {
                            let c = contents(role, &env.signed, r.trusted())?;
                            return Ok((name, bytes, c, true));
                        }
                        let name = load_delegated(r, role, delegator, &bytes)?;
                        let verified = r.trusted().delegated_targets(role).ok_or_else(|| {
                            RepoError::Publish(format!("{role} not loaded after verification"))
                        })?;
                        let c = contents(role, verified, r.trusted())?;
                        Ok((name, bytes, c, false))
                    },
                ));
            }
            for r in results {
                let (name, bytes, c, was_carried) = r?;
                carried += usize::from(was_carried);
                files.insert(name, PublishFile::Bytes(bytes));
                files.extend(c);
            }
            level = next;
        }
        let verified: BTreeSet<&str> = done.iter().map(|(d, _)| d.as_str()).collect();
        if let Some(orphan) = self
            .targets
            .keys()
            .find(|r| *r != "targets" && !verified.contains(r.as_str()))
        {
            return Err(RepoError::Publish(format!(
                "role {orphan} has metadata but no delegation points to it"
            )));
        }
        Ok((files, carried))
    }
}

/// Leaf roles verified per fresh copy of the refresh (see
/// `build_publish_set_from`).
const LEAF_CHUNK: usize = 512;

/// Drive `r` until it stops asking for files, answering each remote
/// request with `answer`'s bytes (`None`: not in the publish set) and each
/// local one with nothing: the publish check has no trusted store of its
/// own, so every role is verified from the publish set's bytes.
fn feed<'b>(
    r: &mut Refresh,
    mut answer: impl FnMut(&Refresh, &Fetch) -> Result<Option<&'b [u8]>, RepoError>,
) -> Result<(), RepoError> {
    let refuse = |e: custody_tuf::Error| RepoError::Publish(e.to_string());
    loop {
        match r.step().map_err(refuse)? {
            Step::Fetch(f) => {
                let bytes = match f.source {
                    Source::Local => None,
                    Source::Remote => answer(r, &f)?,
                };
                r.provide(bytes).map_err(refuse)?;
            }
            Step::Refreshed => {
                // no store to write: the verified bytes are in the set
                r.take_writes();
                return Ok(());
            }
            Step::Found { .. } | Step::NotFound { .. } => {
                return Err(RepoError::Publish(
                    "the refresh answered a lookup nobody started".into(),
                ))
            }
        }
    }
}

/// Verify delegated role `role` (as delegated by `delegator`) from `bytes`
/// on `r`; returns the file name it is published under.
fn load_delegated(
    r: &mut Refresh,
    role: &str,
    delegator: &str,
    bytes: &[u8],
) -> Result<String, RepoError> {
    r.load_delegated(role, delegator)
        .map_err(|e| RepoError::Publish(e.to_string()))?;
    let mut name = None;
    feed(r, |_, f| {
        if f.role != role {
            return Ok(None);
        }
        name = Some(f.file_name.clone());
        Ok(Some(bytes))
    })?;
    name.ok_or_else(|| RepoError::Publish(format!("{role}: verified without being asked for")))
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
    /// metadata bytes (shared with the repository's staged copy)
    Bytes(Arc<Vec<u8>>),
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

/// Each refusal the publish check must give, fed the attack it stops: the
/// repository's staged metadata is tampered with in memory (re-signed by
/// the right key where the attack needs it) and the publish set must be
/// refused with custody-tuf's named error.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Duration, TimeZone, Utc};
    use custody_keys::passphrase::SecretSource;
    use custody_keys::{MemorySigner, Signer};
    use custody_tuf::Signature;

    use crate::keyring::{KeyLocation, KeyRing};
    use crate::policy::ExpiryPolicy;
    use crate::repository::{InitOptions, RoleInit};
    use crate::Repository;

    type KeyEntry = (custody_tuf::Key, String, KeyLocation);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap()
    }

    fn key(ring: &mut KeyRing) -> KeyEntry {
        let s = MemorySigner::generate_ed25519().unwrap();
        let e = (s.key().clone(), s.keyid().to_owned(), KeyLocation::Offline);
        ring.add(Box::new(s));
        e
    }

    /// targets delegates `team` (team/*), which delegates `leaf`
    /// (team/leaf/*): one role verified on the main refresh, one leaf
    /// verified on a copy. The untampered publish set passes.
    fn repo(dir: &std::path::Path) -> (Repository, KeyRing) {
        let mut ring = KeyRing::new(SecretSource::Env("UNUSED_PASSPHRASE".into()));
        let mut roles = BTreeMap::new();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            let keys = vec![key(&mut ring)];
            roles.insert(role.to_owned(), RoleInit { keys, threshold: 1 });
        }
        let opts = InitOptions {
            roles,
            expiry: ExpiryPolicy::default(),
            consistent_snapshot: true,
            allow_shared_keys: false,
        };
        let mut repo = Repository::init(dir, opts, &mut ring, now()).unwrap();
        let team = [key(&mut ring)];
        let leaf = [key(&mut ring)];
        let paths = |p: &str| Some(vec![p.to_owned()]);
        repo.delegate(
            "targets",
            "team",
            &team,
            1,
            paths("team/*"),
            None,
            false,
            &mut ring,
            now(),
        )
        .unwrap();
        repo.delegate(
            "team",
            "leaf",
            &leaf,
            1,
            paths("team/leaf/*"),
            None,
            false,
            &mut ring,
            now(),
        )
        .unwrap();
        repo.save().unwrap();
        repo.build_publish_set(now()).unwrap();
        (repo, ring)
    }

    fn refusal(repo: &Repository) -> String {
        match repo.build_publish_set(now()) {
            Ok(_) => panic!("the tampered publish set was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_names(err: &str, needles: &[&str]) {
        for n in needles {
            assert!(err.contains(n), "{n:?} missing from: {err}");
        }
    }

    fn entry(name: &str) -> crate::repository::TargetEntry {
        crate::repository::TargetEntry {
            name: name.into(),
            length: 7,
            hashes: [("sha256".to_owned(), "ab".repeat(32))].into(),
            custom: None,
            provenance: None,
        }
    }

    fn staged(repo: &Repository, role: &str) -> Vec<u8> {
        std::fs::read(repo.dir().join("metadata").join(format!("{role}.json"))).unwrap()
    }

    /// save writes a targets role as the canonical envelope around the
    /// exact bytes it was signed over; those bytes are what custody-tuf
    /// parses back and verifies the role's signature against.
    #[test]
    fn a_saved_role_is_the_canonical_envelope_of_the_signed_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        repo.add_target_entries(vec![entry("team/a.txt")], &mut ring, now())
            .unwrap();
        let signed = repo.signed_canonical["team"].bytes.clone();
        repo.save().unwrap();
        let bytes = staged(&repo, "team");
        let m = custody_tuf::Metadata::<custody_tuf::Targets>::from_bytes("team", &bytes).unwrap();
        assert_eq!(m.canonical_signed(), signed.as_slice());
        let sigs = custody_tuf::cjson::canonical_bytes("team", &m.signatures).unwrap();
        let mut want = b"{\"signatures\":".to_vec();
        want.extend_from_slice(&sigs);
        want.extend_from_slice(b",\"signed\":");
        want.extend_from_slice(&signed);
        want.push(b'}');
        assert_eq!(bytes, want);
        let info = repo.role_keys("team").unwrap();
        custody_tuf::verify_threshold(
            "team",
            "targets",
            m.canonical_signed(),
            &m.signatures,
            &info.keyids,
            &info.keys,
            info.threshold,
        )
        .unwrap();
        repo.build_publish_set(now()).unwrap();
    }

    /// Non-ASCII content is written the general way and parsed back
    /// strictly before anything is written; a non-NFC name is refused.
    #[test]
    fn non_ascii_roles_are_parsed_back_and_non_nfc_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        let added = repo
            .add_target_entries(vec![entry("team/caf\u{e9}.txt")], &mut ring, now())
            .unwrap();
        assert_eq!(added[0].1, "team");
        repo.save().unwrap();
        let bytes = staged(&repo, "team");
        assert!(bytes.starts_with(b"{\n"), "general form expected");
        repo.build_publish_set(now()).unwrap();

        drop(repo);
        let tmp = tempfile::tempdir().unwrap();
        let (mut second, mut ring) = self::repo(tmp.path());
        let before = staged(&second, "team");
        second
            .add_target_entries(vec![entry("team/cafe\u{301}.txt")], &mut ring, now())
            .unwrap();
        let e = second.save().unwrap_err().to_string();
        assert!(e.contains("team") && e.contains("normalization"), "{e}");
        assert_eq!(staged(&second, "team"), before, "nothing written");
    }

    /// The signed bytes kept for a role are used only while they are its
    /// canonical form: content changed by hand without re-signing is
    /// written as it now stands, and publish refuses its stale signature.
    #[test]
    fn stale_signed_bytes_are_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        repo.add_target_entries(vec![entry("team/a.txt")], &mut ring, now())
            .unwrap();
        let signed = repo.signed_canonical["team"].bytes.clone();
        repo.targets.get_mut("team").unwrap().signed.version += 1;
        repo.dirty.insert("team".to_owned());
        repo.save().unwrap();
        let m = custody_tuf::Metadata::<custody_tuf::Targets>::from_bytes(
            "team",
            &staged(&repo, "team"),
        )
        .unwrap();
        assert_ne!(m.canonical_signed(), signed.as_slice());
        assert_names(&refusal(&repo), &["team: "]);
    }

    #[test]
    fn a_targets_version_the_snapshot_does_not_list_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        // targets v2, correctly signed, beside a snapshot that lists v1
        repo.targets.get_mut("targets").unwrap().signed.version += 1;
        repo.sign_available("targets", &mut ring).unwrap();
        assert_names(
            &refusal(&repo),
            &["targets: version 2 differs from version 1 listed in snapshot meta"],
        );
    }

    #[test]
    fn a_delegated_version_the_snapshot_does_not_list_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        let v = repo.targets["leaf"].signed.version;
        repo.targets.get_mut("leaf").unwrap().signed.version += 1;
        repo.sign_available("leaf", &mut ring).unwrap();
        assert_names(
            &refusal(&repo),
            &[&format!(
                "leaf: version {} differs from version {v} listed in snapshot meta",
                v + 1
            )],
        );
    }

    /// Replace `role`'s signatures by one from a key its delegator does not
    /// list (`claimed_keyid`: the key id written beside the signature).
    fn sign_with_wrong_key(repo: &mut Repository, role: &str, claim_delegated_keyid: bool) {
        let wrong = MemorySigner::generate_ed25519().unwrap();
        let msg = repo.canonical_of(role).unwrap();
        let keyid = if claim_delegated_keyid {
            repo.role_keys(role).unwrap().keyids[0].clone()
        } else {
            wrong.keyid().to_owned()
        };
        let sig = Signature {
            keyid,
            sig: hex::encode(wrong.sign(&msg).unwrap()),
            unknown: Default::default(),
        };
        *repo.signatures_mut(role).unwrap() = vec![sig];
        repo.dirty.insert(role.to_owned());
    }

    #[test]
    fn a_delegated_role_signed_by_the_wrong_key_is_refused() {
        for role in ["team", "leaf"] {
            for claim in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let (mut repo, _ring) = repo(tmp.path());
                sign_with_wrong_key(&mut repo, role, claim);
                assert_names(
                    &refusal(&repo),
                    &[&format!("{role}: signature threshold not met: 0 valid")],
                );
            }
        }
    }

    #[test]
    fn an_expired_timestamp_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        repo.timestamp.signed.expires = now() - Duration::hours(1);
        repo.sign_available("timestamp", &mut ring).unwrap();
        assert_names(&refusal(&repo), &["timestamp: expired at", "freeze attack"]);
    }

    #[test]
    fn a_snapshot_other_than_the_one_the_timestamp_signed_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, mut ring) = repo(tmp.path());
        // re-signed by the snapshot key, but not the snapshot the
        // timestamp lists (its version; its hashes too if they are pinned)
        repo.snapshot.signed.version += 1;
        repo.sign_available("snapshot", &mut ring).unwrap();
        assert_names(&refusal(&repo), &["snapshot: ", "(mix-and-match"]);
    }

    #[test]
    fn a_root_not_signed_by_the_previous_root_keys_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut repo, _ring) = repo(tmp.path());
        // root v2 claims to follow v1 but carries no valid signature
        repo.root.signed.version += 1;
        repo.root.signatures.clear();
        assert_names(&refusal(&repo), &["root: signature threshold not met"]);
    }
}
