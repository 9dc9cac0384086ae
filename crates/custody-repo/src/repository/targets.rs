//! Adding and removing targets (staged contents or length and hashes).
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::TargetFile;

use crate::error::RepoError;
use crate::keyring::KeyRing;
use crate::paths::validate_target_path;

use super::bulk::{par_map, BULK_FILES};
use super::codec::io_err;
use super::provenance::{provenance_gate, with_provenance_digest, ProvenanceInput};
use super::Repository;
use super::{TargetEntry, TARGETS_DIR};

impl Repository {
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
