//! The local trusted metadata directory.
//!
//! Files carry non-versioned names (`root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`, `<encoded role>.json`). Only bytes that
//! custody-tuf has verified are ever written under these names, and every
//! write is crash-safe: temp file in the same directory, write, fsync,
//! rename over the old file, fsync the directory. A power cut at any instant
//! leaves either the old or the new file, never a torn one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use custody_fs::FsError;

use crate::encoding::role_file_name;

pub use custody_fs::{STALE_TEMP_AGE, TEMP_PREFIX};

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

impl From<FsError> for StoreError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Io {
                path,
                action,
                error,
            } => StoreError::Io {
                path,
                action,
                error,
            },
            FsError::TooLarge { path, bound } => StoreError::TooLarge { path, bound },
            // custody-client never asks for create_new; kept total anyway.
            FsError::Exists { path } => StoreError::Io {
                path,
                action: "create file",
                error: io::ErrorKind::AlreadyExists.into(),
            },
        }
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io {
        path: path.to_owned(),
        action,
        error,
    }
}

/// Write `bytes` to `dest` atomically and durably ([`custody_fs::write_atomic`]).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    Ok(custody_fs::write_atomic(dest, bytes)?)
}

/// fsync a directory so that a rename in it is durable ([`custody_fs::sync_dir`]).
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    Ok(custody_fs::sync_dir(dir)?)
}

/// Read a whole local file, refusing files above `bound` bytes.
/// `Ok(None)` if it does not exist ([`custody_fs::read_bounded`]).
pub fn read_bounded(path: &Path, bound: u64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(custody_fs::read_bounded(path, bound)?)
}

/// Remove temp files left in `dir` by a process that died mid-write
/// ([`custody_fs::sweep_stale_temp_files`]). Returns how many were removed.
pub fn sweep_stale_temp_files(dir: &Path, older_than: std::time::Duration) -> usize {
    custody_fs::sweep_stale_temp_files(dir, older_than)
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
        Ok(custody_fs::remove_durable(&self.path(role))?)
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
