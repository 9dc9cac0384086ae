//! Small crash-safe file helpers on top of custody-fs (`write_atomic`,
//! `AtomicFile`, `sync_dir`, `remove_durable`, `read_bounded`: temp file,
//! fsync, rename, directory fsync; bounded reads).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custody_fs::{read_bounded, remove_durable, sync_dir, write_atomic, AtomicFile, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use custody_tuf::verify::TargetVerifier;

use crate::error::{io_err, AgentError};
use crate::target::TargetMeta;

/// Copy buffer size (also the granularity of the crash probes inside a copy).
pub use custody_fs::CHUNK_SIZE;

/// Upper bound for every small JSON file the agent keeps (state, manifests,
/// reports). They are local, but reads are bounded anyway.
pub const JSON_BOUND: u64 = 1024 * 1024;

/// A probe called at every persisted transition and every side effect, with
/// a stable label (`"persist:Trial"`, `"slot:copy-chunk"`, ...).
///
/// Production uses [`Probe::none`]. The crash-safety test installs a probe
/// that SIGKILLs the process at the n-th call, which is how it reaches every
/// point between two durable steps.
#[derive(Clone)]
pub struct Probe(Option<ProbeFn>);

type ProbeFn = Arc<dyn Fn(&str) + Send + Sync>;

impl Probe {
    /// No probe.
    pub fn none() -> Self {
        Probe(None)
    }

    /// Call `f` with each label.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Probe(Some(Arc::new(f)))
    }

    /// Report that `label` was reached.
    pub fn hit(&self, label: &str) {
        if let Some(f) = &self.0 {
            f(label);
        }
    }
}

impl Default for Probe {
    fn default() -> Self {
        Probe::none()
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Probe(set)"
        } else {
            "Probe(none)"
        })
    }
}

/// Serialize `value` as pretty JSON and write it atomically and durably.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AgentError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| AgentError::Corrupt {
        path: path.to_owned(),
        what: "serializable value",
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)?;
    Ok(())
}

/// Read and parse a JSON file of at most [`JSON_BOUND`] bytes.
/// `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<Option<T>, AgentError> {
    let Some(bytes) = read_bounded(path, JSON_BOUND)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| AgentError::Corrupt {
            path: path.to_owned(),
            what,
            source,
        })
}

/// Prefix of every temp file the agent (through custody-fs, whose
/// `TEMP_PREFIX` starts with it) creates; leftovers of a crash are removed with
/// [`remove_temp_files`].
pub const TEMP_PREFIX: &str = ".custody-";

/// Remove temp files left in `dir` by an interrupted write (names starting
/// with [`TEMP_PREFIX`]) and the temp symlink of an interrupted
/// [`switch_symlink`] (`.<name>.new`). Only call when nothing is writing.
pub fn remove_temp_files(dir: &Path) -> Result<(), AgentError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir, "list directory")(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io_err(dir, "list directory"))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_temp = name.starts_with(TEMP_PREFIX)
            || (name.starts_with('.') && name.ends_with(".new") && name.len() > 5);
        if is_temp && !entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err(&path, "remove leftover temp file"))?;
        }
    }
    Ok(())
}

/// Create a directory (and parents) if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), AgentError> {
    fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))
}

/// Remove a file if it exists, then fsync its directory.
pub fn remove_file_durable(path: &Path) -> Result<(), AgentError> {
    Ok(remove_durable(path)?)
}

/// The directory holding `path`.
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Point the symlink `link` at `target` atomically: a temp symlink next to
/// it, renamed over `link`, then the directory fsynced. A crash leaves the
/// old or the new link, never none. Stale temp links from an earlier crash
/// are replaced.
pub fn switch_symlink(link: &Path, target: &Path, probe: &Probe) -> Result<(), AgentError> {
    let dir = parent(link);
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "link".to_owned());
    let tmp = dir.join(format!(".{name}.new"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp, "remove stale temp symlink")(e)),
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err(&tmp, "create temp symlink"))?;
    probe.hit("symlink:temp-created");
    fs::rename(&tmp, link).map_err(io_err(link, "rename temp symlink over link"))?;
    probe.hit("symlink:renamed");
    sync_dir(dir)?;
    Ok(())
}

/// Remove the symlink `link` (if present) durably.
pub fn remove_symlink(link: &Path) -> Result<(), AgentError> {
    remove_file_durable(link)
}

/// The target of symlink `link`, or `None` when there is no link.
pub fn read_symlink(link: &Path) -> Result<Option<PathBuf>, AgentError> {
    match fs::read_link(link) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(link, "read symlink")(e)),
    }
}

/// Copy `src` to `dest` durably (temp file in `dest`'s directory, fsync,
/// rename, directory fsync) while computing SHA-256 and SHA-512 of what was
/// copied. `probe` is hit after every chunk.
pub fn copy_hashed(src: &Path, dest: &Path, probe: &Probe) -> Result<FileDigest, AgentError> {
    copy_inner(src, dest, probe, None).map(|(d, _)| d)
}

/// Like [`copy_hashed`], and the bytes also stream through custody-tuf's
/// [`TargetVerifier`] for `target` (signed length and hashes, the one rule
/// shared with the TUF client). A file that fails it is never renamed into
/// place: `Ok(Err(reason))`.
pub fn copy_verified(
    src: &Path,
    dest: &Path,
    probe: &Probe,
    target: &TargetMeta,
) -> Result<Result<FileDigest, String>, AgentError> {
    let verifier = match target.verifier() {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    match copy_inner(src, dest, probe, Some(verifier))? {
        (d, None | Some(Ok(()))) => Ok(Ok(d)),
        (_, Some(Err(e))) => Ok(Err(e)),
    }
}

type Verdict = Option<Result<(), String>>;

fn copy_inner(
    src: &Path,
    dest: &Path,
    probe: &Probe,
    verifier: Option<TargetVerifier>,
) -> Result<(FileDigest, Verdict), AgentError> {
    let mut tmp = AtomicFile::create(dest, WriteOptions::default())?;
    let mut hasher = Hasher::new(verifier);
    custody_fs::for_each_chunk(src, ("open payload", "read payload"), |chunk| {
        hasher.update(chunk);
        tmp.write_all(chunk)?;
        probe.hit("copy:chunk");
        Ok::<_, AgentError>(())
    })?;
    let (digest, verdict) = hasher.finish();
    if let Some(Err(_)) = &verdict {
        // dropped temp file is removed; nothing lands at `dest`
        return Ok((digest, verdict));
    }
    // fsync, rename over `dest`, fsync of the directory
    tmp.commit()?;
    Ok((digest, verdict))
}

/// Length and digests of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// bytes
    pub length: u64,
    /// lowercase hex SHA-256
    pub sha256: String,
    /// lowercase hex SHA-512
    pub sha512: String,
}

struct Hasher {
    length: u64,
    sha256: ring::digest::Context,
    sha512: ring::digest::Context,
    verifier: Option<Result<TargetVerifier, String>>,
}

impl Hasher {
    fn new(verifier: Option<TargetVerifier>) -> Self {
        Hasher {
            length: 0,
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            sha512: ring::digest::Context::new(&ring::digest::SHA512),
            verifier: verifier.map(Ok),
        }
    }
    fn update(&mut self, chunk: &[u8]) {
        self.length = self.length.saturating_add(chunk.len() as u64);
        self.sha256.update(chunk);
        self.sha512.update(chunk);
        if let Some(Ok(v)) = &mut self.verifier {
            if let Err(e) = v.update(chunk) {
                self.verifier = Some(Err(e.to_string()));
            }
        }
    }
    fn finish(self) -> (FileDigest, Verdict) {
        let verdict = self.verifier.map(|v| match v {
            Ok(v) => v.finish().map_err(|e| e.to_string()),
            Err(e) => Err(e),
        });
        (
            FileDigest {
                length: self.length,
                sha256: hex::encode(self.sha256.finish()),
                sha512: hex::encode(self.sha512.finish()),
            },
            verdict,
        )
    }
}

fn hash_file(
    path: &Path,
    verifier: Option<TargetVerifier>,
) -> Result<(FileDigest, Verdict), AgentError> {
    let mut hasher = Hasher::new(verifier);
    custody_fs::for_each_chunk(path, ("open", "read"), |chunk| {
        hasher.update(chunk);
        Ok::<_, AgentError>(())
    })?;
    Ok(hasher.finish())
}

/// Length and digests of the file at `path` (streamed, bounded memory).
pub fn digest_file(path: &Path) -> Result<FileDigest, AgentError> {
    hash_file(path, None).map(|(d, _)| d)
}

/// Digests of the file at `path`, and the verdict of custody-tuf's
/// [`TargetVerifier`] for `target` on the same pass: `Err(reason)` names
/// the length or hash rule that failed and both values.
pub fn digest_and_verify(
    path: &Path,
    target: &TargetMeta,
) -> Result<(FileDigest, Result<(), String>), AgentError> {
    let verifier = match target.verifier() {
        Ok(v) => v,
        Err(e) => return Ok((digest_file(path)?, Err(e))),
    };
    let (d, verdict) = hash_file(path, Some(verifier))?;
    Ok((d, verdict.unwrap_or(Ok(()))))
}

/// Bytes available to an unprivileged writer on the filesystem holding
/// `dir` (statvfs `f_bavail * f_frsize`).
pub fn available_space(dir: &Path) -> Result<u64, AgentError> {
    let st = rustix::fs::statvfs(dir).map_err(|e| AgentError::Io {
        path: dir.to_owned(),
        action: "statvfs",
        source: e.into(),
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
