//! Streaming, verified target download and the local target cache.
//!
//! A target is streamed into a temp file in the target directory with a
//! fixed 64 KiB buffer (memory does not grow with the target), every chunk
//! fed to custody-tuf's [`TargetVerifier`]; only after the verifier accepts
//! length and hashes is the temp file fsynced and renamed to its final name.
//! On any failure the temp file is removed and the previous file (if any)
//! is untouched.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use custody_tuf::schema::TargetFile;
use custody_tuf::verify::TargetVerifier;
use url::Url;

use crate::error::ClientError;
use crate::store::StoreError;
use crate::transport::Transport;

/// Read/write buffer for targets.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// A verified target on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedTarget {
    /// the TUF target path
    pub path: String,
    /// the targets role whose signed entry it matched
    pub role: String,
    /// where it is stored
    pub file: PathBuf,
    /// signed length
    pub length: u64,
    /// signed hashes
    pub hashes: BTreeMap<String, String>,
    /// true when the file was already present and verified, so nothing was
    /// downloaded
    pub cached: bool,
}

/// True when `file` exists and matches `info` (length and hashes, checked
/// by custody-tuf). Any mismatch or read problem means "not cached".
pub fn is_cached(target_path: &str, info: &TargetFile, file: &Path) -> bool {
    let Ok(mut f) = File::open(file) else {
        return false;
    };
    match f.metadata() {
        Ok(m) if m.is_file() && m.len() == info.length => {}
        _ => return false,
    }
    let Ok(mut verifier) = TargetVerifier::new(target_path, info) else {
        return false;
    };
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let Some(chunk) = buf.get(..n) else {
            return false;
        };
        if verifier.update(chunk).is_err() {
            return false;
        }
    }
    verifier.finish().is_ok()
}

/// Download `url` into `dest`, verifying against `info` while streaming.
pub fn download_verified(
    transport: &dyn Transport,
    url: &Url,
    target_path: &str,
    info: &TargetFile,
    dest: &Path,
) -> Result<(), ClientError> {
    let url_s = url.as_str();
    let mut verifier =
        TargetVerifier::new(target_path, info).map_err(|e| ClientError::rejected(url_s, e))?;
    // The signed length is the bound: one byte more is endless data.
    let mut body = transport.fetch(url, info.length)?;
    // Nothing appears under `dest` unless every byte verified: an
    // unfinished or rejected download drops the temp file.
    let mut tmp = custody_fs::AtomicFile::create(dest, custody_fs::WriteOptions::default())
        .map_err(StoreError::from)?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = body.read_chunk(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        verifier
            .update(chunk)
            .map_err(|e| ClientError::rejected(url_s, e))?;
        tmp.write_all(chunk).map_err(StoreError::from)?;
    }
    verifier
        .finish()
        .map_err(|e| ClientError::rejected(url_s, e))?;
    tmp.commit().map_err(StoreError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{FetchError, Fetched};

    /// Serves fixed bytes for any URL.
    struct Fixed(Vec<u8>);

    impl Transport for Fixed {
        fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
            let data = std::io::Cursor::new(self.0.clone());
            Fetched::new(url.as_str(), max_len, None, Box::new(data))
        }
    }

    fn info(data: &[u8]) -> TargetFile {
        let digest = ring::digest::digest(&ring::digest::SHA256, data);
        TargetFile {
            length: data.len() as u64,
            hashes: [("sha256".to_owned(), hex::encode(digest.as_ref()))].into(),
            custom: None,
            unknown: Default::default(),
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn failed_download_leaves_previous_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.bin");
        std::fs::write(&dest, b"old version").unwrap();
        let url = Url::parse("http://127.0.0.1/app.bin").unwrap();
        let signed = info(b"new version");
        for served in [&b"evil versio"[..], b"new", b"new version and more"] {
            let err = download_verified(&Fixed(served.to_vec()), &url, "app.bin", &signed, &dest)
                .unwrap_err();
            assert!(!err.to_string().is_empty());
            assert_eq!(std::fs::read(&dest).unwrap(), b"old version");
            assert_eq!(files(dir.path()), ["app.bin"]);
        }
    }

    #[test]
    fn verified_download_replaces_and_is_then_cached() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.bin");
        std::fs::write(&dest, b"old version").unwrap();
        let url = Url::parse("http://127.0.0.1/app.bin").unwrap();
        let signed = info(b"new version");
        assert!(!is_cached("app.bin", &signed, &dest));
        download_verified(
            &Fixed(b"new version".to_vec()),
            &url,
            "app.bin",
            &signed,
            &dest,
        )
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new version");
        assert!(is_cached("app.bin", &signed, &dest));
        assert_eq!(files(dir.path()), ["app.bin"]);
    }

    #[test]
    fn longer_than_signed_is_endless_data() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("t");
        let url = Url::parse("http://127.0.0.1/t").unwrap();
        let err =
            download_verified(&Fixed(vec![0; 100]), &url, "t", &info(&[0; 10]), &dest).unwrap_err();
        assert!(matches!(
            err,
            ClientError::Fetch(FetchError::EndlessData { bound: 10, .. })
        ));
        assert!(files(dir.path()).is_empty());
    }
}
