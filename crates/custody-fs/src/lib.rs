//! custody-fs: crash-safe file writes and bounded reads.
//!
//! Every custody component that keeps state on disk (the TUF client's
//! trusted metadata, the agent's install state, the repository's staged
//! metadata, the server's log and hosting files, key files) writes it the
//! same way and reads untrusted files the same way, through this crate:
//!
//! - [`write_atomic`] / [`write_atomic_with`]: a temp file in the
//!   destination's directory, write, fsync, rename over the old file, fsync
//!   of the directory. A power cut at any instant leaves either the old or
//!   the new file, never a torn one; a failed write leaves the old file
//!   untouched and no temp file behind.
//! - [`read_bounded`] and [`read_to_end_bounded`]: a read with a length
//!   bound known before the read, so a huge or endless file or stream
//!   cannot exhaust memory.
//! - [`AtomicFile`]: the same, for content written in pieces (a download
//!   verified while it streams); dropped unfinished, it leaves nothing.
//! - [`sync_dir`], [`remove_durable`], [`sweep_stale_temp_files`].
//!
//! No custody dependency: it sits below every IO crate.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A local file operation that failed, naming the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Reading, writing, renaming or syncing failed.
    #[error("{}: {action}: {error}", path.display())]
    Io {
        /// the file or directory
        path: PathBuf,
        /// what was being done ("fsync temp file", "rename temp file into place", ...)
        action: &'static str,
        /// shown in the message, so not also reported as `source()`
        error: io::Error,
    },
    /// A file or stream is larger than the bound for what it holds.
    #[error("{}: larger than its {bound}-byte bound", path.display())]
    TooLarge {
        /// the file (or a label for a stream)
        path: PathBuf,
        /// the bound, in bytes
        bound: u64,
    },
    /// [`WriteOptions::create_new`] was set and the destination exists.
    #[error("{}: already exists; refusing to overwrite it", path.display())]
    Exists {
        /// the destination
        path: PathBuf,
    },
}

impl FsError {
    /// The io::Error behind an [`FsError::Io`], if any.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FsError::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }
}

/// For callers whose errors are `io::Error`: the underlying error of an
/// [`FsError::Io`] (its kind kept), `AlreadyExists` for a refused
/// overwrite, and an `Other` error with the message for a bound.
impl From<FsError> for io::Error {
    fn from(e: FsError) -> io::Error {
        match e {
            FsError::Io { error, .. } => error,
            e @ FsError::Exists { .. } => {
                io::Error::new(io::ErrorKind::AlreadyExists, e.to_string())
            }
            e @ FsError::TooLarge { .. } => io::Error::other(e.to_string()),
        }
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |error| FsError::Io {
        path: path.to_owned(),
        action,
        error,
    }
}

/// Prefix of the temp files custody writes before renaming them into place.
pub const TEMP_PREFIX: &str = ".custody-tmp-";

/// How old a leftover temp file must be before [`sweep_stale_temp_files`]
/// removes it: far longer than any write or download, so a concurrent
/// writer is never disturbed.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// How [`write_atomic_with`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Unix permission bits of the new file (e.g. `0o600` for keys and
    /// device state). `None`: the temp file's default (0600 on Unix, from
    /// `tempfile`).
    pub mode: Option<u32>,
    /// Refuse to replace an existing destination ([`FsError::Exists`]).
    /// The check and the rename are not one atomic step against a
    /// concurrent writer; callers that need that hold a lock.
    pub create_new: bool,
}

impl WriteOptions {
    /// A private file (0600) that may replace an existing one.
    pub fn private() -> Self {
        WriteOptions {
            mode: Some(0o600),
            create_new: false,
        }
    }
}

/// Write `bytes` to `dest` atomically and durably: a temp file next to it,
/// write, fsync, rename over the old file, fsync of the directory.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_atomic_with(dest, bytes, WriteOptions::default())
}

/// [`write_atomic`] with a file mode or a no-overwrite rule.
pub fn write_atomic_with(dest: &Path, bytes: &[u8], opts: WriteOptions) -> Result<(), FsError> {
    let mut file = AtomicFile::create(dest, opts)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file being written in a temp file next to its destination, for
/// content that arrives in pieces (a download verified while it streams, a
/// copy hashed while it is made). [`AtomicFile::commit`] makes it appear
/// under its name (fsync, rename, directory fsync); dropping it instead
/// removes the temp file and leaves the destination untouched.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    create_new: bool,
}

impl AtomicFile {
    /// Start writing `dest`: a temp file in its directory, with `opts.mode`.
    /// With `opts.create_new`, an existing `dest` is refused now and again
    /// at [`AtomicFile::commit`].
    pub fn create(dest: &Path, opts: WriteOptions) -> Result<Self, FsError> {
        let dir = parent_dir(dest);
        if opts.create_new && fs::symlink_metadata(dest).is_ok() {
            return Err(FsError::Exists {
                path: dest.to_owned(),
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(io_err(dir, "create temp file"))?;
        set_mode(tmp.as_file(), opts.mode).map_err(io_err(tmp.path(), "set file mode"))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_owned(),
            create_new: opts.create_new,
        })
    }

    /// Append `bytes` to the temp file.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        self.tmp
            .write_all(bytes)
            .map_err(io_err(self.tmp.path(), "write temp file"))
    }

    /// The destination this file will be renamed to.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsync the temp file, rename it over the destination, fsync the
    /// directory.
    pub fn commit(self) -> Result<(), FsError> {
        let AtomicFile {
            tmp,
            dest,
            create_new,
        } = self;
        tmp.as_file()
            .sync_all()
            .map_err(io_err(&dest, "fsync temp file"))?;
        if create_new {
            // persist_noclobber: link + unlink, refuses an existing dest.
            tmp.persist_noclobber(&dest).map_err(|e| {
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    FsError::Exists { path: dest.clone() }
                } else {
                    io_err(&dest, "move temp file into place")(e.error)
                }
            })?;
        } else {
            tmp.persist(&dest)
                .map_err(|e| io_err(&dest, "rename temp file into place")(e.error))?;
        }
        sync_dir(parent_dir(&dest))
    }

    /// Close the temp file WITHOUT fsync, for a batch of many files made
    /// durable together (one `syncfs`) by the caller before it calls
    /// [`PendingFile::rename_into_place`] and [`sync_dir`]. Closing keeps
    /// 65,536 hash bins from meaning 65,536 open files.
    pub fn into_pending(self) -> PendingFile {
        PendingFile {
            tmp: self.tmp.into_temp_path(),
            dest: self.dest,
        }
    }
}

/// A closed, not yet synced temp file waiting to be renamed over its
/// destination (see [`AtomicFile::into_pending`]). Dropped, it is removed.
#[derive(Debug)]
pub struct PendingFile {
    tmp: tempfile::TempPath,
    dest: PathBuf,
}

impl PendingFile {
    /// Rename over the destination. No fsync of the file or the
    /// directory: the caller has synced the data first and fsyncs the
    /// directory after the batch.
    pub fn rename_into_place(self) -> Result<(), FsError> {
        let PendingFile { tmp, dest } = self;
        tmp.persist(&dest)
            .map_err(|e| io_err(&dest, "rename temp file into place")(e.error))
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

#[cfg(unix)]
fn set_mode(f: &File, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match mode {
        Some(m) => f.set_permissions(fs::Permissions::from_mode(m)),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn set_mode(_f: &File, _mode: Option<u32>) -> io::Result<()> {
    Ok(())
}

/// The directory a file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory so that a rename or removal in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
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

/// Take the exclusive advisory lock on the file at `path` (created if
/// missing, never truncated): `Ok(None)` when another process holds it.
/// The lock lasts as long as the returned file is open and is released by
/// the OS when the process exits, so a crash never leaves a stale lock.
pub fn lock_exclusive(path: &Path) -> Result<Option<File>, FsError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open lock file"))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_err(path, "lock")(e)),
    }
}

/// Remove a file durably (unlink, fsync of the directory). A file that is
/// already gone is not an error.
pub fn remove_durable(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent_dir(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "remove")(e)),
    }
}

/// Read a whole local file, refusing one above `bound` bytes
/// ([`FsError::TooLarge`]). `Ok(None)` if it does not exist. At most
/// `bound + 1` bytes are ever read, whatever the file's size.
pub fn read_bounded(path: &Path, bound: u64) -> Result<Option<Vec<u8>>, FsError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    read_to_end_bounded(file, bound, path).map(Some)
}

/// Read a stream to its end, refusing more than `bound` bytes. `label`
/// names the stream in errors (a path, a URL, "request body"). At most
/// `bound + 1` bytes are read.
pub fn read_to_end_bounded(
    reader: impl Read,
    bound: u64,
    label: &Path,
) -> Result<Vec<u8>, FsError> {
    let mut out = Vec::new();
    reader
        .take(bound.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io_err(label, "read"))?;
    if out.len() as u64 > bound {
        return Err(FsError::TooLarge {
            path: label.to_owned(),
            bound,
        });
    }
    Ok(out)
}

/// Size of the pieces [`for_each_chunk`] reads.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Read the file at `path` in [`CHUNK_SIZE`] pieces (retrying interrupted
/// reads) and hand each to `f`, which may stop the reading with its own
/// error. Returns how many bytes were read. `open` and `read` name the two
/// steps in the [`FsError`] of a failure ("open payload", ...), converted
/// into `E`. Memory stays at one chunk whatever the file's size.
pub fn for_each_chunk<E: From<FsError>>(
    path: &Path,
    (open, read): (&'static str, &'static str),
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut input = File::open(path).map_err(io_err(path, open))?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut total = 0u64;
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total = total.saturating_add(n as u64);
                f(buf.get(..n).unwrap_or_default())?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, read)(e).into()),
        }
    }
}

/// Remove temp files left in `dir` by a process that died mid-write (power
/// cut, kill -9), if older than `older_than`. Best effort: problems are
/// logged, never fatal. Returns how many were removed.
pub fn sweep_stale_temp_files(dir: &Path, older_than: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        // Only regular files: a directory with the prefix is not ours.
        let old_enough = entry
            .metadata()
            .ok()
            .filter(fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= older_than);
        if !old_enough {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale temp file")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn write_atomic_replaces_the_whole_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.json");
        write_atomic(&p, b"old, and longer than the new one").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"trusted").unwrap();
        // The destination is a directory: the rename fails after the temp
        // file was written and synced.
        let d = dir.path().join("sub");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("x"), b"x").unwrap();
        let err = write_atomic(&d, b"new").unwrap_err();
        assert!(
            err.to_string().contains("rename temp file into place"),
            "{err}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"trusted");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn create_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_atomic_with(
            &p,
            b"first",
            WriteOptions {
                mode: None,
                create_new: true,
            },
        )
        .unwrap();
        let err = write_atomic_with(
            &p,
            b"second",
            WriteOptions {
                mode: None,
                create_new: true,
            },
        )
        .unwrap_err();
        assert!(matches!(err, FsError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("device.key");
        write_atomic_with(&p, b"secret", WriteOptions::private()).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let p2 = dir.path().join("public.json");
        write_atomic_with(
            &p2,
            b"{}",
            WriteOptions {
                mode: Some(0o644),
                create_new: false,
            },
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&p2).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn read_bounded_takes_exactly_the_bound_and_refuses_one_more_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("timestamp.json");
        fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read_bounded(&p, 100).unwrap().unwrap().len(), 100);
        let err = read_bounded(&p, 99).unwrap_err();
        assert!(matches!(err, FsError::TooLarge { bound: 99, .. }), "{err}");
        assert!(err.to_string().contains("timestamp.json"), "{err}");
        assert!(read_bounded(&dir.path().join("missing"), 10)
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_endless_stream_is_cut_at_the_bound() {
        let endless = io::repeat(b'a');
        let err = read_to_end_bounded(endless, 1 << 16, Path::new("request body")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("request body: larger than its 65536-byte bound"));
    }

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("payload.bin");
        write_atomic(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p, WriteOptions::default()).unwrap();
        f.write_all(b"new ").unwrap();
        f.write_all(b"payload").unwrap();
        assert_eq!(f.dest(), p);
        // Not visible before commit.
        assert_eq!(fs::read(&p).unwrap(), b"old");
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new payload");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn a_dropped_atomic_file_leaves_the_old_file_and_no_temp_file() {
        // A download that fails verification half-way is dropped.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("payload.bin");
        write_atomic(&p, b"trusted").unwrap();
        let mut f = AtomicFile::create(&p, WriteOptions::default()).unwrap();
        f.write_all(b"attacker's half").unwrap();
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"trusted");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn create_new_is_checked_again_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        let opts = WriteOptions {
            mode: Some(0o600),
            create_new: true,
        };
        let mut f = AtomicFile::create(&p, opts).unwrap();
        f.write_all(b"mine").unwrap();
        // Someone else creates the file meanwhile.
        fs::write(&p, b"theirs").unwrap();
        let err = f.commit().unwrap_err();
        assert!(matches!(err, FsError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"theirs");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn pending_files_appear_only_when_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("1.bin.json");
        let b = dir.path().join("2.bin.json");
        let mut pending = Vec::new();
        for p in [&a, &b] {
            let mut f = AtomicFile::create(p, WriteOptions::default()).unwrap();
            f.write_all(b"bin").unwrap();
            pending.push(f.into_pending());
        }
        assert!(!a.exists() && !b.exists());
        assert_eq!(temp_files(dir.path()).len(), 2);
        let second = pending.pop().unwrap();
        pending.pop().unwrap().rename_into_place().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"bin");
        // A batch abandoned half-way leaves no temp file.
        assert_eq!(second.dest(), b);
        drop(second);
        assert!(!b.exists());
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn sweep_leaves_directories_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(format!("{TEMP_PREFIX}dir"))).unwrap();
        assert_eq!(sweep_stale_temp_files(dir.path(), Duration::ZERO), 0);
        assert!(dir.path().join(format!("{TEMP_PREFIX}dir")).is_dir());
    }

    #[test]
    fn remove_durable_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("queue-item");
        fs::write(&p, b"x").unwrap();
        remove_durable(&p).unwrap();
        remove_durable(&p).unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn sweep_removes_only_old_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{TEMP_PREFIX}abc")), b"torn").unwrap();
        fs::write(dir.path().join("root.json"), b"keep").unwrap();
        assert_eq!(sweep_stale_temp_files(dir.path(), STALE_TEMP_AGE), 0);
        assert_eq!(sweep_stale_temp_files(dir.path(), Duration::ZERO), 1);
        assert!(dir.path().join("root.json").exists());
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn for_each_chunk_reads_everything_in_bounded_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE + 123)).map(|i| i as u8).collect();
        fs::write(&path, &data).unwrap();
        let mut got = Vec::new();
        let mut largest = 0;
        let n = for_each_chunk(&path, ("open", "read"), |c| {
            largest = largest.max(c.len());
            got.extend_from_slice(c);
            Ok::<_, FsError>(())
        })
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(got, data);
        assert_eq!(largest, CHUNK_SIZE);
    }

    #[test]
    fn for_each_chunk_stops_on_the_callers_error_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        fs::write(&path, vec![7u8; 3 * CHUNK_SIZE]).unwrap();
        let mut calls = 0;
        let e = for_each_chunk(&path, ("open", "read"), |_| {
            calls += 1;
            Err(io::Error::other("stop"))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(e.to_string(), "stop");
        let missing = dir.path().join("missing");
        let e = for_each_chunk(&missing, ("open payload", "read payload"), |_| {
            Ok::<_, FsError>(())
        })
        .unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
        let text = e.to_string();
        assert!(
            text.contains("missing") && text.contains("open payload"),
            "{text}"
        );
    }

    #[test]
    fn lock_exclusive_is_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = lock_exclusive(&path).unwrap().expect("free at first");
        assert!(lock_exclusive(&path).unwrap().is_none(), "held twice");
        drop(held);
        assert!(lock_exclusive(&path).unwrap().is_some(), "released on drop");
    }
}
