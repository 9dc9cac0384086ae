//! Content-addressed blob store for uploaded target files.
//!
//! The trait is the seam for object storage (S3 via the `object_store`
//! crate, [`crate::blobs_object`]) on the scale path. The local implementation is hand-written
//! because the crash-safety rule (write temp, fsync file, rename, fsync
//! directory) is ours to guarantee; `object_store`'s local backend renames
//! without fsync.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::ids::random_hex;

/// A hex SHA-256 digest (64 lowercase hex chars), checked on construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Sha256Hex, String> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "sha256 {s:?} must be 64 lowercase hex characters (got {} characters)",
                s.len()
            ));
        }
        Ok(Sha256Hex(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob hash mismatch: declared sha256 {declared}, received bytes hash to {actual} ({size} bytes)")]
    HashMismatch {
        declared: String,
        actual: String,
        size: u64,
    },
    #[error("reading the upload body failed after {received} bytes: {reason}")]
    Body { received: u64, reason: String },
    #[error("blob store {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into the store. The bytes become visible under
    /// `expected` only if they hash to it and fit in `limit`; otherwise
    /// nothing is stored. Returns the size.
    async fn put(
        &self,
        expected: &Sha256Hex,
        body: BodyStream,
        limit: u64,
    ) -> Result<u64, BlobError>;
    /// Size of a stored blob, `None` if absent.
    #[cfg(test)]
    async fn size(&self, hash: &Sha256Hex) -> Result<Option<u64>, BlobError>;
    /// Local path of a stored blob, for hard-linking into a hosted
    /// generation; `None` for remote stores.
    fn local_path(&self, hash: &Sha256Hex) -> Option<PathBuf>;
    /// A local file holding the blob, for publishing: the store's own file,
    /// or (remote stores) a downloaded copy whose hash was checked again.
    async fn local_file(&self, hash: &Sha256Hex) -> Result<PathBuf, BlobError> {
        self.local_path(hash).ok_or_else(|| BlobError::Io {
            path: PathBuf::from(hash.as_str()),
            op: "local file",
            source: io::Error::other("this blob store keeps no local files"),
        })
    }
}

/// Blobs under `<root>/sha256/<aa>/<full hash>`, uploads staged in `<tmp>`
/// (same filesystem, so the final rename is atomic).
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

/// `BlobError::Io` naming `path` and `op` (both backends).
pub(super) fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl LocalBlobStore {
    pub fn open(root: &Path, tmp: &Path) -> Result<LocalBlobStore, BlobError> {
        std::fs::create_dir_all(root.join("sha256")).map_err(io_err(root, "create directory"))?;
        std::fs::create_dir_all(tmp).map_err(io_err(tmp, "create directory"))?;
        Ok(LocalBlobStore {
            root: root.to_path_buf(),
            tmp: tmp.to_path_buf(),
        })
    }

    fn path_of(&self, hash: &Sha256Hex) -> PathBuf {
        let h = hash.as_str();
        self.root.join("sha256").join(&h[..2]).join(h)
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(
        &self,
        expected: &Sha256Hex,
        body: BodyStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let (tmp_path, size) = spool_verified(&self.tmp, expected, body, limit).await?;
        let result = async {
            let final_path = self.path_of(expected);
            let dir = final_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.root.clone());
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(io_err(&dir, "create directory"))?;
            tokio::fs::rename(&tmp_path, &final_path)
                .await
                .map_err(io_err(&final_path, "rename into place"))?;
            fsync_dir(&dir).await?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp_path).await;
        }
        result
    }

    #[cfg(test)]
    async fn size(&self, hash: &Sha256Hex) -> Result<Option<u64>, BlobError> {
        let path = self.path_of(hash);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "stat")(e)),
        }
    }

    fn local_path(&self, hash: &Sha256Hex) -> Option<PathBuf> {
        Some(self.path_of(hash))
    }
}

/// Stream `body` into a new temp file under `tmp`, at most `limit` bytes,
/// hashing as it goes; the file is fsynced and returned only if the bytes
/// hash to `expected`, otherwise it is removed and nothing remains.
pub(crate) async fn spool_verified(
    tmp: &Path,
    expected: &Sha256Hex,
    mut body: BodyStream,
    limit: u64,
) -> Result<(PathBuf, u64), BlobError> {
    let tmp_path = tmp.join(format!("upload-{}", random_hex(12)));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp_path)
            .await
            .map_err(io_err(&tmp_path, "create temp file"))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|reason| BlobError::Body {
                received: size,
                reason,
            })?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            ctx.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(io_err(&tmp_path, "write temp file"))?;
        }
        let actual = hex::encode(ctx.finish().as_ref());
        if actual != expected.as_str() {
            return Err(BlobError::HashMismatch {
                declared: expected.as_str().to_string(),
                actual,
                size,
            });
        }
        file.flush()
            .await
            .map_err(io_err(&tmp_path, "flush temp file"))?;
        file.sync_all()
            .await
            .map_err(io_err(&tmp_path, "fsync temp file"))?;
        Ok(size)
    }
    .await;
    match result {
        Ok(size) => Ok((tmp_path, size)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp_path).await;
            Err(e)
        }
    }
}

/// fsync a directory so a rename inside it is durable.
pub(crate) async fn fsync_dir(dir: &Path) -> Result<(), BlobError> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || custody_fs::sync_dir(&d))
        .await
        .map_err(|e| BlobError::Io {
            path: dir.to_path_buf(),
            op: "fsync directory",
            source: io::Error::other(e.to_string()),
        })?
        .map_err(|e| match e {
            custody_fs::FsError::Io { error, .. } => io_err(dir, "fsync directory")(error),
            other => io_err(dir, "fsync directory")(io::Error::other(other.to_string())),
        })
}

/// How the admin API answers a blob store failure.
impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match &e {
            BlobError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            BlobError::HashMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "hash_mismatch",
                e.to_string(),
            ),
            BlobError::Body { .. } => ApiError::bad_request(e.to_string()),
            BlobError::Io { .. } => {
                tracing::error!(error = %e, "blob store error");
                ApiError::internal("blob store error (see server log)")
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A body of `parts` (for both backends' tests).
    pub(in crate::repos) fn stream(parts: Vec<Vec<u8>>) -> BodyStream {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from(p))),
        ))
    }

    /// The SHA-256 of `data` (for both backends' tests).
    pub(in crate::repos) fn sha(data: &[u8]) -> Sha256Hex {
        Sha256Hex::parse(&hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            data,
        )))
        .unwrap()
    }

    #[tokio::test]
    async fn stores_verified_blob_and_rejects_mismatch_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            LocalBlobStore::open(&dir.path().join("blobs"), &dir.path().join("tmp")).unwrap();
        let h = sha(b"hello world");
        assert_eq!(
            store
                .put(&h, stream(vec![b"hello ".to_vec(), b"world".to_vec()]), 100)
                .await
                .unwrap(),
            11
        );
        assert_eq!(store.size(&h).await.unwrap(), Some(11));
        assert_eq!(
            std::fs::read(store.local_path(&h).unwrap()).unwrap(),
            b"hello world"
        );

        let other = sha(b"other");
        let err = store
            .put(&other, stream(vec![b"not other".to_vec()]), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::HashMismatch { .. }), "{err}");
        assert_eq!(store.size(&other).await.unwrap(), None);

        let err = store
            .put(&other, stream(vec![b"other".to_vec()]), 3)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 3 }), "{err}");
        // no temp files left behind
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn sha256_hex_is_strict() {
        assert!(Sha256Hex::parse(&"a".repeat(64)).is_ok());
        assert!(Sha256Hex::parse(&"A".repeat(64)).is_err());
        assert!(Sha256Hex::parse(&"a".repeat(63)).is_err());
        assert!(Sha256Hex::parse("../../etc/passwd").is_err());
    }
}
