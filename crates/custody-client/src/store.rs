//! The local trusted metadata directory.
//!
//! Files carry non-versioned names (`root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`, `<encoded role>.json`). Only bytes that
//! custody-tuf has verified are ever written under these names, and every
//! write is crash-safe: temp file in the same directory, write, fsync,
//! rename over the old file, fsync the directory. A power cut at any instant
//! leaves either the old or the new file, never a torn one.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::encoding::role_file_name;

/// A local file operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing, renaming or syncing failed.
    #[error("{}: {action}: {error}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        /// shown in the message, so not also reported as `source()`
        error: io::Error,
    },
    /// A local file is larger than the bound for its role.
    #[error("{}: local file is larger than its {bound}-byte bound", path.display())]
    TooLarge { path: PathBuf, bound: u64 },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io {
        path: path.to_owned(),
        action,
        error,
    }
}

/// Write `bytes` to `dest` atomically and durably: a temp file next to it,
/// fsync, rename, fsync of the directory.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = parent_dir(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err(dir, "create temp file"))?;
    tmp.write_all(bytes)
        .map_err(io_err(tmp.path(), "write temp file"))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err(dest, "fsync temp file"))?;
    tmp.persist(dest)
        .map_err(|e| io_err(dest, "rename temp file into place")(e.error))?;
    sync_dir(dir)
}

/// The directory a file lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "fsync directory"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Read a whole local file, refusing files above `bound` bytes.
/// `Ok(None)` if it does not exist.
pub fn read_bounded(path: &Path, bound: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut out = Vec::new();
    file.take(bound.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io_err(path, "read"))?;
    if out.len() as u64 > bound {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            bound,
        });
    }
    Ok(Some(out))
}

/// Prefix of the temp files this crate writes (metadata and targets).
pub const TEMP_PREFIX: &str = ".custody-tmp-";

/// How old a leftover temp file must be before it is swept: far longer than
/// any write or download, so a concurrent writer is never disturbed.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Remove temp files left in `dir` by a process that died mid-write (power
/// cut, kill -9), if older than `older_than`. Best effort: problems are
/// logged, never fatal. Returns how many were removed.
pub fn sweep_stale_temp_files(dir: &Path, older_than: std::time::Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let old_enough = entry
            .metadata()
            .ok()
            .filter(fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= older_than);
        if old_enough {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::debug!(path = %entry.path().display(), error = %e, "cannot remove stale temp file")
                }
            }
        }
    }
    removed
}

/// The trusted metadata directory.
#[derive(Debug, Clone)]
pub struct MetadataStore {
    dir: PathBuf,
}

impl MetadataStore {
    /// Use `dir` as the metadata directory (it is not created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MetadataStore { dir: dir.into() }
    }

    /// Use `dir`, creating it (and its parents) if needed.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
        Ok(MetadataStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `role`'s trusted metadata.
    pub fn path(&self, role: &str) -> PathBuf {
        self.dir.join(role_file_name(role))
    }

    /// The stored bytes of `role`, if any, refusing files above `bound`.
    pub fn load(&self, role: &str, bound: u64) -> Result<Option<Vec<u8>>, StoreError> {
        read_bounded(&self.path(role), bound)
    }

    /// Store verified bytes for `role` (atomic, durable).
    pub fn persist(&self, role: &str, verified_bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.path(role), verified_bytes)
    }

    /// Delete `role`'s file (fast-forward recovery); absent is fine.
    pub fn remove(&self, role: &str) -> Result<(), StoreError> {
        let path = self.path(role);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, "remove")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(dir.path());
        assert!(store.load("a/b", 100).unwrap().is_none());
        store.persist("a/b", b"{}").unwrap();
        assert!(dir.path().join("a%2Fb.json").exists());
        assert_eq!(store.load("a/b", 100).unwrap().unwrap(), b"{}");
        store.persist("a/b", b"[1]").unwrap();
        assert_eq!(store.load("a/b", 100).unwrap().unwrap(), b"[1]");
        assert!(matches!(
            store.load("a/b", 2),
            Err(StoreError::TooLarge { bound: 2, .. })
        ));
        store.remove("a/b").unwrap();
        store.remove("a/b").unwrap();
        assert!(store.load("a/b", 100).unwrap().is_none());
        // no temp files left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sweeps_only_old_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{TEMP_PREFIX}abc")), b"torn").unwrap();
        fs::write(dir.path().join("root.json"), b"{}").unwrap();
        let recent = sweep_stale_temp_files(dir.path(), STALE_TEMP_AGE);
        assert_eq!(
            recent, 0,
            "a fresh temp file may belong to a running writer"
        );
        let swept = sweep_stale_temp_files(dir.path(), std::time::Duration::ZERO);
        assert_eq!(swept, 1);
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["root.json"]);
    }
}
