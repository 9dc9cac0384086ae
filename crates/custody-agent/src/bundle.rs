//! Offline bundles: director metadata, image repository metadata and
//! payloads in one file, for USB or air-gapped delivery.
//!
//! # Format (version 1)
//!
//! ```text
//! "custody-bundle1\n"          16 bytes magic
//! header length                u64 big-endian, at most MAX_HEADER_BYTES
//! header                       strict JSON (BundleHeader)
//! payloads                     raw bytes, at the offsets the header lists
//! ```
//!
//! A length-prefixed JSON header and raw blobs: nothing to unpack, no
//! paths from the file ever touch the filesystem (a tar's entry names
//! would), and each payload is read in place, bounded by its recorded
//! length and then by the signed length. Parsing is bounded: header size
//! first, then custody-tuf's strict JSON, then `deny_unknown_fields`, then
//! every offset and length against the file size.
//!
//! Nothing in a bundle is trusted because it is in a bundle: the device
//! verifies it with [`crate::verify::verify_update`], exactly as online.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use custody_director::wire::DirectorMetadataSet;
use serde::{Deserialize, Serialize};

/// File magic.
pub const MAGIC: &[u8; 16] = b"custody-bundle1\n";
/// Largest header accepted (metadata only; payloads are outside it).
pub const MAX_HEADER_BYTES: u64 = 64 * 1024 * 1024;
/// Most payloads in one bundle.
pub const MAX_PAYLOADS: usize = 1024;
/// Most devices one bundle carries director metadata for.
pub const MAX_DEVICES: usize = 100_000;

/// A bundle could not be read or is malformed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// IO on the bundle file.
    #[error("bundle {path}: {action}: {source}")]
    Io {
        /// file
        path: PathBuf,
        /// what was done
        action: &'static str,
        /// OS error
        #[source]
        source: std::io::Error,
    },
    /// The file breaks a format rule.
    #[error("bundle {path}: {rule}")]
    Format {
        /// file
        path: PathBuf,
        /// rule and values
        rule: String,
    },
}

/// One payload in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePayload {
    /// TUF target path
    pub name: String,
    /// bytes
    pub length: u64,
    /// offset from the start of the payload area
    pub offset: u64,
}

/// The bundle header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    /// always 1
    pub format: u32,
    /// creation time, seconds since the epoch (informational; expiry is the
    /// signed metadata's)
    pub created: i64,
    /// the hardware id it was made for, if made per hardware id
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// device id → that device's signed director metadata
    pub director: BTreeMap<String, DirectorMetadataSet>,
    /// image repository name
    pub image_repository: String,
    /// image repository metadata, file name (as the TUF client requests
    /// it) → base64 bytes
    pub image_metadata: BTreeMap<String, String>,
    /// payloads, in file order
    pub payloads: Vec<BundlePayload>,
    /// transparency-log evidence per target name (entry, checkpoint,
    /// inclusion proof, consistency proofs from the stored sizes the bundle
    /// was made for): a device that pins a log checks it exactly as online
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log: BTreeMap<String, custody_client::log::Evidence>,
}

/// A parsed bundle, payloads still on disk.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    /// the header
    pub header: BundleHeader,
    data_start: u64,
}

/// Magic, header length, header; every bound checked against `file_len`.
fn parse_preamble<R: Read>(
    f: &mut R,
    file_len: u64,
    path: &Path,
) -> Result<(BundleHeader, u64), BundleError> {
    let mut magic = [0u8; 16];
    f.read_exact(&mut magic).map_err(|_| {
        fmt_err(
            path,
            "shorter than the 24-byte preamble: not a custody bundle",
        )
    })?;
    if &magic != MAGIC {
        return Err(fmt_err(
            path,
            format!(
                "magic is {:?}, expected {:?}: not a custody bundle (version 1)",
                String::from_utf8_lossy(&magic),
                String::from_utf8_lossy(MAGIC)
            ),
        ));
    }
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| fmt_err(path, "truncated in the header length"))?;
    let header_len = u64::from_be_bytes(len);
    let data_start = 24u64.saturating_add(header_len);
    if header_len > MAX_HEADER_BYTES || data_start > file_len {
        return Err(fmt_err(
            path,
            format!(
                "header length {header_len} is over the limit {MAX_HEADER_BYTES} or past the end of the {file_len}-byte file"
            ),
        ));
    }
    let mut header = Vec::new();
    f.take(header_len)
        .read_to_end(&mut header)
        .map_err(io_err(path, "read header"))?;
    let value = custody_tuf::cjson::parse_strict("bundle header", &header)
        .map_err(|e| fmt_err(path, format!("header: {e}")))?;
    let header: BundleHeader =
        serde_json::from_value(value).map_err(|e| fmt_err(path, format!("header: {e}")))?;
    if header.format != 1 {
        return Err(fmt_err(
            path,
            format!("header.format must be 1, got {}", header.format),
        ));
    }
    if header.payloads.len() > MAX_PAYLOADS || header.director.len() > MAX_DEVICES {
        return Err(fmt_err(
            path,
            format!(
                "at most {MAX_PAYLOADS} payloads and {MAX_DEVICES} devices, got {} and {}",
                header.payloads.len(),
                header.director.len()
            ),
        ));
    }
    let data_len = file_len.saturating_sub(data_start);
    let mut names = BTreeSet::new();
    for p in &header.payloads {
        let end = p.offset.checked_add(p.length);
        if end.is_none_or(|e| e > data_len) {
            return Err(fmt_err(
                path,
                format!(
                    "payload {:?}: offset {} + length {} is past the {data_len}-byte payload area",
                    p.name, p.offset, p.length
                ),
            ));
        }
        if !names.insert(p.name.as_str()) {
            return Err(fmt_err(path, format!("payload {:?} listed twice", p.name)));
        }
    }
    for d in header.director.values() {
        d.validate().map_err(|e| fmt_err(path, e.to_string()))?;
    }
    if header.log.len() > MAX_PAYLOADS {
        return Err(fmt_err(
            path,
            format!(
                "at most {MAX_PAYLOADS} log evidence documents, got {}",
                header.log.len()
            ),
        ));
    }
    Ok((header, data_start))
}

fn fmt_err(path: &Path, rule: impl Into<String>) -> BundleError {
    BundleError::Format {
        path: path.to_owned(),
        rule: rule.into(),
    }
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

impl Bundle {
    /// Open and parse (bounded) the bundle at `path`.
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let mut f = File::open(path).map_err(io_err(path, "open"))?;
        let file_len = f.metadata().map_err(io_err(path, "stat"))?.len();
        let (header, data_start) = parse_preamble(&mut f, file_len, path)?;
        Ok(Bundle {
            path: path.to_owned(),
            header,
            data_start,
        })
    }

    /// Parse a whole bundle held in memory (tests and fuzzing; devices use
    /// [`Bundle::open`], which reads only the header). Returns the header
    /// and where the payload area starts.
    pub fn parse_bytes(bytes: &[u8]) -> Result<(BundleHeader, u64), BundleError> {
        let mut r = bytes;
        parse_preamble(&mut r, bytes.len() as u64, Path::new("<memory>"))
    }

    /// The bundle file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image metadata files, decoded.
    pub fn image_files(&self) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
        self.header
            .image_metadata
            .iter()
            .map(|(k, v)| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|b| (k.clone(), b))
                    .map_err(|e| {
                        fmt_err(
                            &self.path,
                            format!("image_metadata[{k:?}]: not base64: {e}"),
                        )
                    })
            })
            .collect()
    }

    /// A reader over payload `name`, bounded to its recorded length.
    pub fn payload(&self, name: &str) -> Result<Box<dyn Read + Send>, BundleError> {
        let p = self
            .header
            .payloads
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                fmt_err(
                    &self.path,
                    format!(
                        "no payload for target {name:?} (it carries {:?})",
                        self.header
                            .payloads
                            .iter()
                            .map(|p| &p.name)
                            .collect::<Vec<_>>()
                    ),
                )
            })?;
        let mut f = File::open(&self.path).map_err(io_err(&self.path, "open"))?;
        f.seek(SeekFrom::Start(self.data_start.saturating_add(p.offset)))
            .map_err(io_err(&self.path, "seek to payload"))?;
        Ok(Box::new(f.take(p.length)))
    }
}

/// Write a bundle: `header` (its `payloads` are filled in here) and the
/// payload files, to `out` (temp file, fsync, rename).
pub fn write_bundle(
    out: &Path,
    mut header: BundleHeader,
    payloads: &[(String, PathBuf)],
) -> Result<(), BundleError> {
    header.payloads.clear();
    let mut offset = 0u64;
    for (name, file) in payloads {
        let length = std::fs::metadata(file)
            .map_err(io_err(file, "stat payload"))?
            .len();
        header.payloads.push(BundlePayload {
            name: name.clone(),
            length,
            offset,
        });
        offset = offset.saturating_add(length);
    }
    let json = serde_json::to_vec(&header).map_err(|e| fmt_err(out, e.to_string()))?;
    // temp file next to `out`, fsync, rename, directory fsync; dropped on
    // error, it leaves nothing behind
    let mut tmp = custody_fs::AtomicFile::create(out, custody_fs::WriteOptions::default())
        .map_err(|e| fs_err(out, "create temp file", e))?;
    tmp.write_all(MAGIC)
        .and_then(|()| tmp.write_all(&(json.len() as u64).to_be_bytes()))
        .and_then(|()| tmp.write_all(&json))
        .map_err(|e| fs_err(out, "write header", e))?;
    let mut buf = vec![0u8; 64 * 1024];
    for (_, file) in payloads {
        let mut src = File::open(file).map_err(io_err(file, "open payload"))?;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(file, "copy payload")(e)),
            };
            tmp.write_all(buf.get(..n).unwrap_or_default())
                .map_err(|e| fs_err(file, "copy payload", e))?;
        }
    }
    tmp.commit()
        .map_err(|e| fs_err(out, "rename into place", e))?;
    Ok(())
}

/// A custody-fs error as a bundle IO error (the OS error kept).
fn fs_err(path: &Path, action: &'static str, e: custody_fs::FsError) -> BundleError {
    io_err(path, action)(e.into())
}

/// Encode image metadata files for the header.
pub fn encode_files(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                base64::engine::general_purpose::STANDARD.encode(v),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BundleHeader {
        BundleHeader {
            format: 1,
            created: 0,
            hardware_id: None,
            director: BTreeMap::new(),
            image_repository: "main".into(),
            image_metadata: encode_files(&[("timestamp.json".to_owned(), b"{}".to_vec())].into()),
            payloads: vec![],
            log: BTreeMap::new(),
        }
    }

    #[test]
    fn roundtrip_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let p1 = dir.path().join("p1");
        std::fs::write(&p1, b"hello").unwrap();
        let out = dir.path().join("b");
        write_bundle(&out, header(), &[("a/p1".into(), p1)]).unwrap();
        let b = Bundle::open(&out).unwrap();
        let mut s = String::new();
        b.payload("a/p1").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(b.image_files().unwrap()["timestamp.json"], b"{}");
        assert!(b.payload("nope").is_err());

        // truncation: payload past the end
        let bytes = std::fs::read(&out).unwrap();
        std::fs::write(&out, &bytes[..bytes.len() - 1]).unwrap();
        let e = Bundle::open(&out).unwrap_err().to_string();
        assert!(e.contains("past the"), "{e}");
        // bad magic, huge header length
        let mut bad = bytes.clone();
        bad[0] = b'X';
        std::fs::write(&out, &bad).unwrap();
        assert!(Bundle::open(&out)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bad = bytes.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        std::fs::write(&out, &bad).unwrap();
        assert!(Bundle::open(&out)
            .unwrap_err()
            .to_string()
            .contains("header length"));
        std::fs::write(&out, b"short").unwrap();
        assert!(Bundle::open(&out).is_err());
    }
}
