//! Publishing a verified set of files as a new generation behind an
//! atomically switched symlink.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::RepoError;

use super::bulk::{bulk_sync, par_map, BULK_FILES};
use super::codec::io_err;
use super::publish_check::{same_file_bytes, PreviousGeneration, PublishFile};
use super::Repository;
use super::METADATA_DIR;

impl Repository {
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

/// How one file of a generation was put in place.
enum Placed {
    /// hard-linked from the previous generation (or a staged target file)
    Linked,
    /// new metadata hard-linked from the staging area (its length)
    LinkedFromStaging(u64),
    /// written (its length)
    Written(u64),
}

/// Put `rel` into the new generation `gen`: link identical bytes from the
/// previous generation or the staging area, else write them.
fn place_file(
    gen: &Path,
    rel: &str,
    f: &PublishFile,
    previous_gen: Option<&Path>,
    staged_meta: Option<&Path>,
    bulk: bool,
) -> Result<Placed, RepoError> {
    let dest = gen.join(rel);
    match f {
        PublishFile::Bytes(b) => {
            if let Some(prev) = previous_gen.map(|g| g.join(rel)) {
                if same_file_bytes(&prev, b) && std::fs::hard_link(&prev, &dest).is_ok() {
                    return Ok(Placed::Linked);
                }
            }
            // New metadata that `save` already wrote to the staging area
            // (`N.role.json` staged as `role.json`): link the staged file if
            // it holds exactly these bytes. Staged files are only ever
            // replaced by rename, never changed in place, so the generation
            // keeps these bytes.
            if let Some(meta) = staged_meta.filter(|_| !rel.contains('/')) {
                let unversioned = match rel.split_once('.') {
                    Some((v, rest)) if v.bytes().all(|c| c.is_ascii_digit()) => rest,
                    _ => rel,
                };
                let linked = [meta.join(rel), meta.join(unversioned)]
                    .iter()
                    .any(|c| same_file_bytes(c, b) && std::fs::hard_link(c, &dest).is_ok());
                if linked {
                    return Ok(Placed::LinkedFromStaging(b.len() as u64));
                }
            }
            let mut fh = std::fs::File::create(&dest).map_err(io_err(&dest))?;
            fh.write_all(b).map_err(io_err(&dest))?;
            if !bulk {
                fh.sync_all().map_err(io_err(&dest))?;
            }
            Ok(Placed::Written(b.len() as u64))
        }
        PublishFile::Copy(src) => {
            if std::fs::hard_link(src, &dest).is_ok() {
                Ok(Placed::Linked)
            } else {
                let n = std::fs::copy(src, &dest).map_err(io_err(&dest))?;
                Ok(Placed::Written(n))
            }
        }
    }
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
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for rel in files.keys() {
        if let Some(p) = tmp.path().join(rel).parent() {
            if dirs.insert(p.to_owned()) {
                std::fs::create_dir_all(p).map_err(io_err(p))?;
            }
        }
    }
    // Every file on all cores (comparing with the previous generation and
    // the staging area, linking or writing).
    let jobs: Vec<(&String, &PublishFile)> = files.iter().collect();
    let outcomes = par_map(&jobs, |(rel, f)| {
        place_file(
            tmp.path(),
            rel,
            f,
            previous_gen.as_deref(),
            staged_meta,
            bulk,
        )
    });
    for ((rel, _), outcome) in jobs.iter().zip(outcomes) {
        match outcome? {
            Placed::Linked => stats.files_linked += 1,
            Placed::LinkedFromStaging(n) => {
                stats.files_linked += 1;
                stats.linked_from_staging.push((*rel).clone());
                stats.bytes_linked_from_staging += n;
            }
            Placed::Written(n) => {
                stats.files_written.push((*rel).clone());
                stats.bytes_written += n;
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
