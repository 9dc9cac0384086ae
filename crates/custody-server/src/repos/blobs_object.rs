//! Blob store on object storage (S3, GCS, Azure Blob, or a local directory)
//! through the `object_store` crate: the scale path for several
//! `custody serve` processes sharing one PostgreSQL.
//!
//! The security rules are the same as for [`super::blobs::LocalBlobStore`]
//! and are enforced here, not delegated to the bucket:
//! - an upload is spooled to a local temp file, bounded by the size limit
//!   and hashed while it streams; only bytes that hash to the declared
//!   SHA-256 are sent to the bucket, under `<prefix>/sha256/<aa>/<hash>`.
//!   A multipart upload becomes visible only when it completes, so a
//!   crashed upload leaves nothing under the final key (at most an
//!   unfinished multipart upload, which the bucket's lifecycle rule or
//!   abort on error removes);
//! - the bucket is not trusted on the way back: [`ObjectBlobStore::local_file`]
//!   downloads into a local cache and re-hashes, refusing bytes that do not
//!   match their name (a poisoned bucket cannot get a payload published).
//!
//! Publishing still works on local files (custody-repo links targets into
//! the generation it writes); the cache under `<data-dir>/blob-cache` holds
//! only blobs that were published from this process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::blobs::{
    fsync_dir, io_err, spool_verified, BlobError, BlobStore, BodyStream, Sha256Hex,
};

/// Blobs at most this large go up in one PUT; larger ones as multipart.
const SINGLE_PUT_MAX: u64 = 8 << 20;
/// Multipart part size (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once (bounds memory to about PARTS × PART_SIZE).
const PARTS_IN_FLIGHT: usize = 2;

/// A [`BlobStore`] over any `object_store` backend.
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    url: String,
    tmp: PathBuf,
    cache: PathBuf,
    /// Largest blob read back (the upload limit): a bucket that streams
    /// without end cannot fill the disk.
    max_bytes: u64,
}

impl std::fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("url", &self.url)
            .field("cache", &self.cache)
            .finish()
    }
}

fn obj_err<'a>(
    url: &'a str,
    op: &'static str,
) -> impl FnOnce(object_store::Error) -> BlobError + 'a {
    move |e| BlobError::Io {
        path: PathBuf::from(url),
        op,
        source: std::io::Error::other(e.to_string()),
    }
}

impl ObjectBlobStore {
    /// Open `url` (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`)
    /// with backend `options` (e.g. `aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`; see the object_store builders). Credentials not
    /// given as options are read from the usual `AWS_*` / `GOOGLE_*` /
    /// `AZURE_*` environment variables.
    pub fn open(
        url: &str,
        options: &BTreeMap<String, String>,
        tmp: &Path,
        cache: &Path,
        max_bytes: u64,
    ) -> Result<ObjectBlobStore, BlobError> {
        let parsed = url::Url::parse(url).map_err(|e| BlobError::Io {
            path: PathBuf::from(url),
            op: "parse blob_store_url",
            source: std::io::Error::other(format!(
                "{e} (expected s3://bucket/prefix, gs://…, az://… or file:///dir)"
            )),
        })?;
        let mut opts: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        opts.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
        if parsed.scheme() == "file" {
            if let Ok(dir) = parsed.to_file_path() {
                std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
            }
        }
        let (store, prefix) = object_store::parse_url_opts(&parsed, opts)
            .map_err(obj_err(url, "open object store"))?;
        std::fs::create_dir_all(tmp).map_err(io_err(tmp, "create directory"))?;
        std::fs::create_dir_all(cache).map_err(io_err(cache, "create directory"))?;
        Ok(ObjectBlobStore {
            store: Arc::from(store),
            prefix,
            url: url.to_string(),
            tmp: tmp.to_path_buf(),
            cache: cache.to_path_buf(),
            max_bytes,
        })
    }

    fn key(&self, hash: &Sha256Hex) -> ObjPath {
        let h = hash.as_str();
        let mut key = self.prefix.clone();
        for part in ["sha256", &h[..2], h] {
            key = key.join(part);
        }
        key
    }

    fn cache_path(&self, hash: &Sha256Hex) -> PathBuf {
        self.cache.join(hash.as_str())
    }

    async fn upload_file(&self, file: &Path, key: &ObjPath, size: u64) -> Result<(), BlobError> {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(io_err(file, "open spooled upload"))?;
        if size <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            f.read_to_end(&mut buf)
                .await
                .map_err(io_err(file, "read spooled upload"))?;
            self.store
                .put(key, PutPayload::from(buf))
                .await
                .map_err(obj_err(&self.url, "put object"))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(obj_err(&self.url, "start multipart upload"))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        let result = async {
            loop {
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(io_err(file, "read spooled upload"))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(obj_err(&self.url, "upload part"))?;
                w.write(buf.get(..n).unwrap_or_default());
            }
            Ok::<(), BlobError>(())
        }
        .await;
        match result {
            Ok(()) => {
                w.finish()
                    .await
                    .map_err(obj_err(&self.url, "complete multipart upload"))?;
                Ok(())
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(
        &self,
        expected: &Sha256Hex,
        body: BodyStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let (spooled, size) = spool_verified(&self.tmp, expected, body, limit).await?;
        let key = self.key(expected);
        let result = self.upload_file(&spooled, &key, size).await;
        let _ = tokio::fs::remove_file(&spooled).await;
        result.map(|()| size)
    }

    #[cfg(test)]
    async fn size(&self, hash: &Sha256Hex) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.key(hash)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(obj_err(&self.url, "head object")(e)),
        }
    }

    fn local_path(&self, _hash: &Sha256Hex) -> Option<PathBuf> {
        None
    }

    async fn local_file(&self, hash: &Sha256Hex) -> Result<PathBuf, BlobError> {
        let path = self.cache_path(hash);
        if tokio::fs::metadata(&path).await.is_ok() {
            // Cached files were verified when they were written; custody-repo
            // hashes them again when it adds them to targets metadata.
            return Ok(path);
        }
        let got = self
            .store
            .get(&self.key(hash))
            .await
            .map_err(obj_err(&self.url, "get object"))?;
        // Same bounded, hashing spool as an upload: bytes that do not hash
        // to their name never reach the cache.
        let body: BodyStream = Box::pin(got.into_stream().map(|r| r.map_err(|e| e.to_string())));
        let (tmp, _size) = spool_verified(&self.tmp, hash, body, self.max_bytes)
            .await
            .inspect_err(|e| {
                tracing::error!(blob = hash.as_str(), error = %e, "object store returned a bad blob");
            })?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_err(&path, "rename into cache")(e));
        }
        fsync_dir(&self.cache).await?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repos::blobs::tests::{sha, stream};

    fn open(dir: &Path) -> ObjectBlobStore {
        let url = url::Url::from_directory_path(dir.join("bucket")).unwrap();
        ObjectBlobStore::open(
            url.as_str(),
            &BTreeMap::new(),
            &dir.join("tmp"),
            &dir.join("cache"),
            1 << 30,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn verified_round_trip_small_and_multipart() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for len in [11usize, (SINGLE_PUT_MAX as usize) + 3 * 1024 * 1024] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let h = sha(&data);
            let parts = data.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
            assert_eq!(
                store.put(&h, stream(parts), 1 << 30).await.unwrap(),
                len as u64
            );
            assert_eq!(store.size(&h).await.unwrap(), Some(len as u64));
            let local = store.local_file(&h).await.unwrap();
            assert_eq!(std::fs::read(local).unwrap(), data);
        }
        // nothing left behind in the spool directory
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn mismatch_and_oversize_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let h = sha(b"other");
        let err = store
            .put(&h, stream(vec![b"not other".to_vec()]), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::HashMismatch { .. }), "{err}");
        assert_eq!(store.size(&h).await.unwrap(), None);
        let h = sha(b"0123456789");
        let err = store
            .put(&h, stream(vec![b"0123456789".to_vec()]), 5)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 5 }), "{err}");
        assert_eq!(store.size(&h).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_poisoned_bucket_cannot_feed_publish() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let data = b"the real payload".to_vec();
        let h = sha(&data);
        store.put(&h, stream(vec![data]), 100).await.unwrap();
        // Someone with bucket access swaps the object's bytes.
        let key = store.key(&h);
        store
            .store
            .put(&key, PutPayload::from(b"evil payload".to_vec()))
            .await
            .unwrap();
        let err = store.local_file(&h).await.unwrap_err();
        assert!(matches!(err, BlobError::HashMismatch { .. }), "{err}");
        assert!(!store.cache_path(&h).exists());
    }
}
