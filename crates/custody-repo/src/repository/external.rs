//! Targets listed without contents (added by length and hashes): the
//! per-role lists in `external-targets/`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::RepoError;

use super::bulk::{par_map, BULK_FILES};
use super::codec::{fs_err, io_err, read_bounded, write_replace};
use super::Repository;
use super::EXTERNAL_DIR;

impl Repository {
    /// Load the per-role lists of contents-less targets (once).
    pub(super) fn external_mut(
        &mut self,
    ) -> Result<&mut BTreeMap<String, BTreeSet<String>>, RepoError> {
        if self.external.is_none() {
            self.external = Some(load_external(&self.dir)?);
        }
        Ok(self.external.get_or_insert_with(BTreeMap::new))
    }

    /// Write the changed contents-less target lists. Returns whether files
    /// were written without fsync (the caller must sync before metadata).
    pub(super) fn write_external(&mut self) -> Result<bool, RepoError> {
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
                // No fsync per list: `save` syncs the file system once
                // before any metadata naming them is renamed into place.
                let mut tmp = custody_fs::AtomicFile::create(path, crate::fsutil::PUBLIC_FILE)
                    .map_err(fs_err)?;
                tmp.write_all(bytes).map_err(fs_err)?;
                tmp.into_pending().rename_into_place().map_err(fs_err)?;
            } else {
                write_replace(path, bytes)?;
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
pub(super) fn load_external(dir: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, RepoError> {
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
