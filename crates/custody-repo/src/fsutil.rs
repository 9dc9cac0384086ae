//! Crash-safe file writes, as [`custody_fs`] does them (temp file in the
//! same directory, fsync, rename, fsync of the directory): a power cut
//! leaves the old or the new file, never a mix. Kept as this crate's public
//! names for its callers (key files, the CLI, the server); the one
//! implementation is custody-fs.
use std::path::Path;

use custody_fs::{FsError, WriteOptions};

/// The io::Error behind an [`FsError`] (its kind kept: `AlreadyExists` for
/// a refused overwrite).
pub(crate) fn into_io(e: FsError) -> std::io::Error {
    e.into()
}

/// Mode of published and staged repository files: world-readable.
pub(crate) const PUBLIC_FILE: WriteOptions = WriteOptions {
    mode: Some(0o644),
    create_new: false,
};

/// Atomically replace (or create) the file at `path` with `bytes` (mode 0644).
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    custody_fs::write_atomic_with(path, bytes, PUBLIC_FILE).map_err(into_io)
}
