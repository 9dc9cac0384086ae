//! Repository hosting: `GET /repos/<repo>/metadata/<file>` and
//! `GET /repos/<repo>/targets/<path>`.
//!
//! Layout under `<data-dir>/repos/<repo>/`:
//! ```text
//! current -> generations/<id>        (symlink, replaced atomically by rename)
//! generations/<id>/metadata/…        (immutable once committed)
//! generations/<id>/targets/…
//! ```
//! A request resolves `current` once and reads only from that generation,
//! so a response never mixes two publishes, and a response in flight keeps
//! reading the generation it started with (its file descriptor stays valid
//! even if the generation is pruned). Small metadata files are served from
//! memory; the cache belongs to a generation and is dropped with it when
//! `current` moves.

use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::scope::validate_repo_name;
use crate::ids::random_hex;

pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const CACHE_REVALIDATE: &str = "no-cache";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("rejected path {path:?}: {reason}")]
    BadPath { path: String, reason: String },
    #[error("repository {repo}: {op} {path}: {source}")]
    Io {
        repo: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("repository {repo}: `current` points to {target:?}, which is not generations/<id>")]
    BadCurrent { repo: String, target: String },
}

impl IntoResponse for HostError {
    fn into_response(self) -> Response {
        let status = match &self {
            HostError::NotFound(_) => StatusCode::NOT_FOUND,
            HostError::BadPath { .. } => StatusCode::BAD_REQUEST,
            HostError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                StatusCode::NOT_FOUND
            }
            _ => {
                tracing::error!(error = %self, "hosting error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let msg = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error (see server log)".to_string()
        } else {
            self.to_string()
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            msg,
        )
            .into_response()
    }
}

struct CachedFile {
    bytes: Bytes,
    etag: HeaderValue,
}

/// One committed, immutable generation of a repository.
struct Generation {
    id: PathBuf,
    dir: PathBuf,
    metadata: RwLock<HashMap<String, Arc<CachedFile>>>,
    cached_bytes: AtomicU64,
}

/// Serves every repository under `<data-dir>/repos`.
pub struct Hosting {
    repos_dir: PathBuf,
    cache_file_limit: u64,
    cache_total_limit: u64,
    current: RwLock<HashMap<String, Arc<Generation>>>,
}

/// Which tree of a repository a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Metadata,
    Targets,
}

/// A request path split into checked parts.
#[derive(Debug, PartialEq, Eq)]
pub struct HostPath {
    pub repo: String,
    pub area: Area,
    /// Decoded, checked segments (no empty, `.`, `..`, `/`, `\`, NUL, leading dot).
    pub segments: Vec<String>,
}

fn bad(path: &str, reason: impl Into<String>) -> HostError {
    HostError::BadPath {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Parses the raw (still percent-encoded) path after `/repos/`.
///
/// - Repository and area segments must be plain (no escapes needed).
/// - A metadata file name is matched *as sent*, without decoding: role
///   names are percent-encoded into file names (`1.a%2Fb.json` is the file
///   of role `a/b`, the python-tuf and custody-tuf convention), so the raw
///   segment is the file name. It may only hold RFC 3986 unreserved
///   characters and `%`, and may not start with a dot.
/// - Target path segments are decoded one by one, so an encoded slash
///   (`%2F`) can never create a new segment, and a decoded `.`, `..`,
///   backslash, NUL or leading dot is refused.
pub fn parse_host_path(raw: &str) -> Result<HostPath, HostError> {
    let rest = raw
        .strip_prefix("/repos/")
        .ok_or_else(|| bad(raw, "must start with /repos/"))?;
    if rest.len() > 4096 {
        return Err(bad(raw, "longer than 4096 bytes"));
    }
    let mut parts = rest.split('/');
    let repo = parts.next().unwrap_or_default();
    validate_repo_name(repo).map_err(|e| bad(raw, e))?;
    let area = match parts.next() {
        Some("metadata") => Area::Metadata,
        Some("targets") => Area::Targets,
        _ => return Err(HostError::NotFound(raw.to_string())),
    };
    let raw_segments: Vec<&str> = parts.collect();
    if raw_segments.is_empty() {
        return Err(HostError::NotFound(raw.to_string()));
    }
    let mut segments = Vec::new();
    match area {
        Area::Metadata => {
            let [name] = raw_segments.as_slice() else {
                return Err(bad(raw, "metadata paths have exactly one file name"));
            };
            let plain = name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
            });
            if name.is_empty() || name.starts_with('.') || !plain {
                return Err(bad(
                    raw,
                    format!(
                        "metadata file name {name:?} must be non-empty, not start with '.', and \
                         hold only A-Z a-z 0-9 - . _ ~ and percent-escapes"
                    ),
                ));
            }
            segments.push((*name).to_string());
        }
        Area::Targets => {
            for seg in raw_segments {
                let decoded = percent_encoding::percent_decode_str(seg)
                    .decode_utf8()
                    .map_err(|_| bad(raw, "segment is not UTF-8 after percent-decoding"))?;
                if decoded.is_empty() {
                    return Err(bad(raw, "empty path segment"));
                }
                if decoded == "." || decoded == ".." {
                    return Err(bad(
                        raw,
                        format!("segment {decoded:?} is a relative reference"),
                    ));
                }
                if decoded.starts_with('.') {
                    return Err(bad(raw, format!("segment {decoded:?} starts with a dot")));
                }
                if decoded.contains(['/', '\\', '\0']) {
                    return Err(bad(
                        raw,
                        format!("segment {decoded:?} contains an encoded slash, backslash or NUL"),
                    ));
                }
                segments.push(decoded.into_owned());
            }
        }
    }
    Ok(HostPath {
        repo: repo.to_string(),
        area,
        segments,
    })
}

/// Versioned consistent-snapshot metadata: `N.<role>.json`.
pub fn is_versioned_metadata(name: &str) -> bool {
    match name.split_once('.') {
        Some((v, rest)) => {
            !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_digit())
                && rest.ends_with(".json")
                && rest.len() > 5
        }
        None => false,
    }
}

/// Consistent-snapshot target file: `<sha256 or sha512 hex>.<name>`.
pub fn is_hashed_target(name: &str) -> bool {
    match name.split_once('.') {
        Some((h, rest)) => {
            (h.len() == 64 || h.len() == 128)
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && !rest.is_empty()
        }
        None => false,
    }
}

fn strong_etag_for(bytes: &[u8]) -> HeaderValue {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    // 128 bits of SHA-256 in the tag: collisions are not a concern for
    // cache validation and the header stays short.
    let hex = hex::encode(d.as_ref().get(..16).unwrap_or(d.as_ref()));
    HeaderValue::from_str(&format!("\"{hex}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Files in a generation are never modified in place (written to temp and
/// renamed, or hard-linked from the content-addressed blob store), so
/// (device, inode, size, mtime) changes whenever the bytes change: a strong
/// validator without hashing gigabytes per request. Hashed so inode numbers
/// do not leak.
fn file_etag(meta: &std::fs::Metadata) -> HeaderValue {
    let id = format!(
        "{}:{}:{}:{}:{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    strong_etag_for(id.as_bytes())
}

impl Hosting {
    pub fn new(repos_dir: PathBuf, cache_file_limit: u64, cache_total_limit: u64) -> Hosting {
        Hosting {
            repos_dir,
            cache_file_limit,
            cache_total_limit,
            current: RwLock::new(HashMap::new()),
        }
    }

    pub fn repos_dir(&self) -> &Path {
        &self.repos_dir
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.repos_dir.join(repo)
    }

    /// Resolves `current` for `repo` (one readlink) and returns the cached
    /// generation, replacing the cache entry if the link moved.
    fn resolve(&self, repo: &str) -> Result<Arc<Generation>, HostError> {
        let link = self.repo_dir(repo).join("current");
        let target = match std::fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HostError::NotFound(format!(
                    "repository {repo:?} is not published"
                )))
            }
            Err(source) => {
                return Err(HostError::Io {
                    repo: repo.to_string(),
                    op: "readlink",
                    path: link,
                    source,
                })
            }
        };
        if let Ok(map) = self.current.read() {
            if let Some(g) = map.get(repo) {
                if g.id == target {
                    return Ok(g.clone());
                }
            }
        }
        let mut parts = target.components();
        let ok = matches!(parts.next(), Some(std::path::Component::Normal(c)) if c == "generations")
            && matches!(parts.next(), Some(std::path::Component::Normal(c)) if !c.to_string_lossy().starts_with('.'))
            && parts.next().is_none();
        if !ok {
            return Err(HostError::BadCurrent {
                repo: repo.to_string(),
                target: target.display().to_string(),
            });
        }
        let generation = Arc::new(Generation {
            dir: self.repo_dir(repo).join(&target),
            id: target,
            metadata: RwLock::new(HashMap::new()),
            cached_bytes: AtomicU64::new(0),
        });
        if let Ok(mut map) = self.current.write() {
            map.insert(repo.to_string(), generation.clone());
        }
        Ok(generation)
    }

    /// Drops the cached generation of `repo` (after an in-process switch).
    pub fn invalidate(&self, repo: &str) {
        if let Ok(mut map) = self.current.write() {
            map.remove(repo);
        }
    }

    /// Serves one hosting request.
    pub async fn serve(&self, method: &Method, raw_path: &str, headers: &HeaderMap) -> Response {
        match self.serve_inner(method, raw_path, headers).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn serve_inner(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Response, HostError> {
        let path = parse_host_path(raw_path)?;
        let generation = self.resolve(&path.repo)?;
        match path.area {
            Area::Metadata => {
                let name = path.segments.first().cloned().unwrap_or_default();
                let cache_control = if is_versioned_metadata(&name) {
                    CACHE_IMMUTABLE
                } else {
                    CACHE_REVALIDATE
                };
                let file = self.metadata_file(&path.repo, &generation, &name).await?;
                Ok(respond(
                    method,
                    headers,
                    &file.etag,
                    "application/json",
                    cache_control,
                    Source::Memory(file.bytes.clone()),
                )
                .await)
            }
            Area::Targets => {
                let mut fs_path = generation.dir.join("targets");
                for seg in &path.segments {
                    fs_path.push(seg);
                }
                let last = path.segments.last().map(String::as_str).unwrap_or("");
                let cache_control = if is_hashed_target(last) {
                    CACHE_IMMUTABLE
                } else {
                    CACHE_REVALIDATE
                };
                let io = |op, source| HostError::Io {
                    repo: path.repo.clone(),
                    op,
                    path: fs_path.clone(),
                    source,
                };
                let meta = tokio::fs::symlink_metadata(&fs_path)
                    .await
                    .map_err(|e| io("stat", e))?;
                if !meta.is_file() {
                    return Err(HostError::NotFound(raw_path.to_string()));
                }
                let file = tokio::fs::File::open(&fs_path)
                    .await
                    .map_err(|e| io("open", e))?;
                // Validate against the opened file, not the path.
                let meta = file.metadata().await.map_err(|e| io("stat", e))?;
                let etag = file_etag(&meta);
                Ok(respond(
                    method,
                    headers,
                    &etag,
                    "application/octet-stream",
                    cache_control,
                    Source::File(file, meta.len()),
                )
                .await)
            }
        }
    }

    async fn metadata_file(
        &self,
        repo: &str,
        generation: &Arc<Generation>,
        name: &str,
    ) -> Result<Arc<CachedFile>, HostError> {
        if let Ok(map) = generation.metadata.read() {
            if let Some(f) = map.get(name) {
                return Ok(f.clone());
            }
        }
        let path = generation.dir.join("metadata").join(name);
        let io = |op, source| HostError::Io {
            repo: repo.to_string(),
            op,
            path: path.clone(),
            source,
        };
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| io("stat", e))?;
        if !meta.is_file() {
            return Err(HostError::NotFound(format!("metadata {name:?}")));
        }
        // Metadata bigger than the per-file cache limit is still served,
        // read in full (TUF metadata is bounded by the client anyway).
        let bytes = Bytes::from(tokio::fs::read(&path).await.map_err(|e| io("read", e))?);
        let file = Arc::new(CachedFile {
            etag: strong_etag_for(&bytes),
            bytes,
        });
        let len = file.bytes.len() as u64;
        if len <= self.cache_file_limit {
            let total = generation.cached_bytes.load(Ordering::Relaxed);
            if total.saturating_add(len) <= self.cache_total_limit {
                if let Ok(mut map) = generation.metadata.write() {
                    if map.insert(name.to_string(), file.clone()).is_none() {
                        generation.cached_bytes.fetch_add(len, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(file)
    }

    /// The directory of the generation `repo` serves now (`None` before
    /// its first publish). Publishes are serialised by the authoring lock,
    /// so it is not pruned while a publish reads it.
    pub fn current_generation_dir(&self, repo: &str) -> Option<PathBuf> {
        validate_repo_name(repo).ok()?;
        std::fs::canonicalize(self.repo_dir(repo).join("current"))
            .ok()
            .filter(|p| p.is_dir())
    }

    /// Starts a new generation of `repo` in a hidden temp directory.
    pub fn begin_generation(&self, repo: &str) -> Result<GenerationBuilder, HostError> {
        validate_repo_name(repo).map_err(|e| bad(repo, e))?;
        let gens = self.repo_dir(repo).join("generations");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!("{nanos:024}-{}", random_hex(4));
        let tmp = gens.join(format!(".tmp-{id}"));
        for sub in ["metadata", "targets"] {
            std::fs::create_dir_all(tmp.join(sub)).map_err(|source| HostError::Io {
                repo: repo.to_string(),
                op: "create generation directory",
                path: tmp.join(sub),
                source,
            })?;
        }
        Ok(GenerationBuilder {
            repo: repo.to_string(),
            repo_dir: self.repo_dir(repo),
            id,
            tmp,
        })
    }

    /// Removes what a killed publish left behind: unfinished generation
    /// directories (`generations/.tmp-*`, never served) and temporary
    /// `current` symlinks. Called at startup, before any publish runs.
    pub fn remove_abandoned(&self) -> usize {
        let mut removed = 0;
        let Ok(repos) = std::fs::read_dir(&self.repos_dir) else {
            return 0;
        };
        for repo in repos.filter_map(|e| e.ok()) {
            let dir = repo.path();
            let mut leftovers: Vec<PathBuf> = Vec::new();
            for (sub, prefix) in [
                ("generations", ".tmp-"),
                ("generations", ".trash-"),
                ("", ".current-"),
            ] {
                let d = if sub.is_empty() {
                    dir.clone()
                } else {
                    dir.join(sub)
                };
                if let Ok(rd) = std::fs::read_dir(&d) {
                    leftovers.extend(
                        rd.filter_map(|e| e.ok())
                            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                            .map(|e| e.path()),
                    );
                }
            }
            for p in leftovers {
                let gone = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                    Ok(_) => std::fs::remove_file(&p),
                    Err(e) => Err(e),
                };
                match gone {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "cannot remove an abandoned publish leftover")
                    }
                }
            }
        }
        removed
    }

    /// Deletes committed generations beyond the newest `keep` (never the
    /// current one). Readers holding open files are unaffected. Each old
    /// generation is renamed to a hidden `.trash-` name at once (so it is
    /// never served or counted again) and deleted on a background thread:
    /// removing a 100,000-target tree takes about a second, which a publish
    /// need not wait for. Trash left by a crash is removed at the next start.
    pub fn prune_generations(&self, repo: &str, keep: usize) -> Result<usize, HostError> {
        let repo_dir = self.repo_dir(repo);
        let current = std::fs::read_link(repo_dir.join("current")).ok();
        let gens = repo_dir.join("generations");
        let io = |source| HostError::Io {
            repo: repo.to_string(),
            op: "prune generations",
            path: gens.clone(),
            source,
        };
        let mut names: Vec<String> = std::fs::read_dir(&gens)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let mut removed = 0;
        let n = names.len();
        for name in names.into_iter().take(n.saturating_sub(keep)) {
            if current.as_deref() == Some(Path::new("generations").join(&name).as_path()) {
                continue;
            }
            let trash = gens.join(format!(".trash-{name}"));
            std::fs::rename(gens.join(&name), &trash).map_err(io)?;
            std::thread::spawn(move || {
                if let Err(e) = std::fs::remove_dir_all(&trash) {
                    tracing::warn!(path = %trash.display(), error = %e, "removing an old generation failed");
                }
            });
            removed += 1;
        }
        Ok(removed)
    }
}

/// Writes one generation; nothing is visible until [`GenerationBuilder::commit`].
pub struct GenerationBuilder {
    repo: String,
    repo_dir: PathBuf,
    id: String,
    tmp: PathBuf,
}

impl GenerationBuilder {
    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostError {
        let repo = self.repo.clone();
        let path = path.to_path_buf();
        move |source| HostError::Io {
            repo,
            op,
            path,
            source,
        }
    }

    /// The temp directory being filled (`metadata/`, `targets/`).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Hard-links every file of the current generation into this one, so
    /// versioned metadata and targets a client may still ask for (it read
    /// the previous timestamp a moment ago) stay available.
    pub fn inherit_current(&self) -> Result<(), HostError> {
        let current = self.repo_dir.join("current");
        let src = match std::fs::canonicalize(&current) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io("resolve current", &current)(e)),
        };
        link_tree(&src, &self.tmp).map_err(|e| self.io("inherit previous generation", &src)(e))
    }

    /// Writes (replacing) metadata file `name`. Durable at
    /// [`GenerationBuilder::commit`], which syncs the whole generation
    /// before making it visible. A file inherited from the live generation
    /// with exactly these bytes is kept as it is (a hash-bin repository
    /// re-publishes hundreds of unchanged bins).
    pub fn write_metadata(&self, name: &str, bytes: &[u8]) -> Result<(), HostError> {
        check_segment(name)?;
        let path = self.tmp.join("metadata").join(name);
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.is_file()
                && m.len() == bytes.len() as u64
                && std::fs::read(&path).is_ok_and(|old| old == bytes)
            {
                return Ok(());
            }
        }
        // The file may be a hard link into the live generation
        // (inherit_current): unlink first, never truncate a served inode.
        let _ = std::fs::remove_file(&path);
        write_file(&path, bytes).map_err(self.io("write metadata", &path))
    }

    /// Places a target file at `rel` (a `/`-separated target path), hard-
    /// linking `source` (copying if linking is impossible, e.g. across
    /// filesystems).
    pub fn add_target_file(&self, rel: &str, source: &Path) -> Result<(), HostError> {
        let mut path = self.tmp.join("targets");
        for seg in rel.split('/') {
            check_segment(seg)?;
            path.push(seg);
        }
        // Inherited from the live generation as a link to this very file:
        // nothing to do (publishing one target into 100,000 must not
        // re-link the other 99,999).
        if let (Ok(have), Ok(src)) = (std::fs::symlink_metadata(&path), std::fs::metadata(source)) {
            use std::os::unix::fs::MetadataExt;
            if have.is_file() && have.dev() == src.dev() && have.ino() == src.ino() {
                return Ok(());
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(self.io("create directory", parent))?;
        }
        let _ = std::fs::remove_file(&path);
        if std::fs::hard_link(source, &path).is_err() {
            // Durable at commit (one sync of the whole generation).
            std::fs::copy(source, &path).map_err(self.io("copy target", &path))?;
        }
        Ok(())
    }

    /// Writes target bytes at `rel` (tests and small files).
    pub fn write_target(&self, rel: &str, bytes: &[u8]) -> Result<(), HostError> {
        let mut path = self.tmp.join("targets");
        for seg in rel.split('/') {
            check_segment(seg)?;
            path.push(seg);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(self.io("create directory", parent))?;
        }
        let _ = std::fs::remove_file(&path);
        write_file_synced(&path, bytes).map_err(self.io("write target", &path))
    }

    /// Makes the generation visible: rename the temp dir into place, then
    /// atomically replace `current` (symlink to a temp name, rename over),
    /// fsyncing at each step. Returns the generation id.
    pub fn commit(self, hosting: &Hosting) -> Result<String, HostError> {
        sync_generation(&self.tmp).map_err(self.io("sync generation", &self.tmp))?;
        let gens = self.repo_dir.join("generations");
        let final_dir = gens.join(&self.id);
        std::fs::rename(&self.tmp, &final_dir).map_err(self.io("rename generation", &final_dir))?;
        fsync_dir_sync(&gens).map_err(self.io("fsync directory", &gens))?;
        let tmp_link = self.repo_dir.join(format!(".current-{}", random_hex(6)));
        let target = Path::new("generations").join(&self.id);
        std::os::unix::fs::symlink(&target, &tmp_link)
            .map_err(self.io("create symlink", &tmp_link))?;
        let current = self.repo_dir.join("current");
        if let Err(e) = std::fs::rename(&tmp_link, &current) {
            let _ = std::fs::remove_file(&tmp_link);
            return Err(self.io("switch current", &current)(e));
        }
        fsync_dir_sync(&self.repo_dir).map_err(self.io("fsync directory", &self.repo_dir))?;
        hosting.invalidate(&self.repo);
        Ok(self.id.clone())
    }
}

impl Drop for GenerationBuilder {
    fn drop(&mut self) {
        // Abandoned (not committed) builds leave no trace.
        if self.tmp.exists() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn check_segment(seg: &str) -> Result<(), HostError> {
    if seg.is_empty()
        || seg == "."
        || seg == ".."
        || seg.starts_with('.')
        || seg.contains(['/', '\\', '\0'])
    {
        return Err(bad(seg, "not a plain file name"));
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)
}

fn write_file_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Make every file and directory entry under `dir` durable before the
/// generation becomes visible. Linux: one `syncfs(2)` for the filesystem
/// (an fsync per file of a 100,000-target generation issues 100,000 disk
/// cache flushes), then the directories' own fsyncs. Elsewhere: fsync
/// every file and directory.
fn sync_generation(dir: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let d = std::fs::File::open(dir)?;
        nix::unistd::syncfs(&d).map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        sync_tree(dir)
    }
}

fn fsync_dir_sync(dir: &Path) -> io::Result<()> {
    custody_fs::sync_dir(dir).map_err(|e| match e {
        custody_fs::FsError::Io { error, .. } => error,
        other => io::Error::other(other.to_string()),
    })
}

#[cfg_attr(target_os = "linux", allow(dead_code))]
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            sync_tree(&entry.path())?;
        } else if ft.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    fsync_dir_sync(dir)
}

fn link_tree(src: &Path, dst: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ft.is_dir() {
            link_tree(&entry.path(), &to)?;
        } else if ft.is_file() && !to.exists() {
            std::fs::hard_link(entry.path(), &to)?;
        }
    }
    Ok(())
}

enum Source {
    Memory(Bytes),
    File(tokio::fs::File, u64),
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            Source::File(_, len) => *len,
        }
    }
}

/// Outcome of parsing a `Range` header against a representation length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// No usable range: serve the whole representation (absent, not
    /// `bytes`, malformed, or several ranges, which we choose to ignore as
    /// RFC 9110 §14.2 permits).
    Full,
    /// Inclusive byte range.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses a single-range `Range` header (RFC 9110 §14.1.2).
pub fn parse_range(value: &str, len: u64) -> RangeSpec {
    let value = value.trim();
    let Some((unit, set)) = value.split_once('=') else {
        return RangeSpec::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Full;
    }
    if set.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if first.is_empty() {
        // suffix range: last N bytes
        let Some(n) = num(last) else {
            return RangeSpec::Full;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Partial(len.saturating_sub(n), len - 1);
    }
    let Some(start) = num(first) else {
        return RangeSpec::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match num(last) {
            Some(e) if e >= start => Some(e),
            _ => return RangeSpec::Full,
        }
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    RangeSpec::Partial(start, end)
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2).
fn if_none_match_hits(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == ours
        })
    })
}

/// `If-Range` with an entity tag uses the strong comparison; a date (we send
/// no Last-Modified) never matches.
fn if_range_allows(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => v.as_bytes().trim_ascii() == etag.as_bytes(),
    }
}

async fn respond(
    method: &Method,
    headers: &HeaderMap,
    etag: &HeaderValue,
    content_type: &'static str,
    cache_control: &'static str,
    source: Source,
) -> Response {
    let mut builder = Response::builder()
        .header(header::ETAG, etag.clone())
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if if_none_match_hits(headers, etag) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let len = source.len();
    let range = match headers.get(header::RANGE) {
        Some(v) if *method == Method::GET && if_range_allows(headers, etag) => {
            v.to_str().map_or(RangeSpec::Full, |s| parse_range(s, len))
        }
        _ => RangeSpec::Full,
    };
    let (status, start, count) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Partial(s, e) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{len}"));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeSpec::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, count);
    let body = match source {
        Source::Memory(bytes) => {
            let s = usize::try_from(start).unwrap_or(usize::MAX);
            let e = usize::try_from(start + count).unwrap_or(usize::MAX);
            Body::from(bytes.slice(s.min(bytes.len())..e.min(bytes.len())))
        }
        Source::File(mut file, _) => {
            if start > 0 {
                if let Err(e) = file.seek(SeekFrom::Start(start)).await {
                    tracing::error!(error = %e, "seek in target file");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            }
            Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                file.take(count),
                64 * 1024,
            ))
        }
    };
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_parsing() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Partial(90, 99));
        assert_eq!(
            parse_range("bytes=90-1000", 100),
            RangeSpec::Partial(90, 99)
        );
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Partial(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), RangeSpec::Partial(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Full);
        assert_eq!(parse_range("bytes=a-b", 100), RangeSpec::Full);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            RangeSpec::Full
        );
    }

    proptest! {
        #[test]
        fn range_never_out_of_bounds(s in "\\PC{0,40}", len in 0u64..1_000_000) {
            if let RangeSpec::Partial(a, b) = parse_range(&s, len) {
                prop_assert!(a <= b && b < len);
            }
        }

        #[test]
        fn host_path_never_escapes(s in "[a-z%2Ff./\\\\]{0,40}") {
            if let Ok(p) = parse_host_path(&format!("/repos/{s}")) {
                for seg in p.segments.iter().chain(std::iter::once(&p.repo)) {
                    prop_assert!(seg != ".." && seg != "." && !seg.contains('/') && !seg.contains('\\'));
                }
            }
        }
    }

    #[test]
    fn traversal_is_rejected() {
        for p in [
            "/repos/app/targets/../../etc/passwd",
            "/repos/app/targets/%2e%2e/x",
            "/repos/app/targets/a%2Fb",
            "/repos/app/targets/a%5Cb",
            "/repos/app/targets//etc/passwd",
            "/repos/app/targets/.hidden",
            "/repos/../app/targets/x",
            "/repos/app/metadata/a/b.json",
            "/repos/app/metadata/1.a%2F..%2Fb.json%00\\",
            "/repos/app/metadata/..",
        ] {
            assert!(
                matches!(parse_host_path(p), Err(HostError::BadPath { .. })),
                "{p} must be rejected: {:?}",
                parse_host_path(p)
            );
        }
        let ok = parse_host_path("/repos/app/targets/dir/file%20name.bin").unwrap();
        assert_eq!(ok.segments, vec!["dir", "file name.bin"]);
        // metadata names stay encoded: the file of role "a/b" is 1.a%2Fb.json
        let ok = parse_host_path("/repos/app/metadata/1.a%2Fb.json").unwrap();
        assert_eq!(ok.segments, vec!["1.a%2Fb.json"]);
    }

    #[test]
    fn cache_classification() {
        assert!(is_versioned_metadata("1.root.json"));
        assert!(is_versioned_metadata("12.snapshot.json"));
        assert!(!is_versioned_metadata("timestamp.json"));
        assert!(!is_versioned_metadata("root.json"));
        assert!(!is_versioned_metadata("1..json"));
        assert!(is_hashed_target(&format!("{}.app.bin", "a".repeat(64))));
        assert!(!is_hashed_target("app.bin"));
        assert!(!is_hashed_target(&format!("{}.app.bin", "g".repeat(64))));
    }
}
