//! The streaming scanner: one pass over a tar (plain, gzip or zstd, told by
//! magic bytes), reading only the files that matter (CA bundles and
//! certificate directories, package databases) each under a cap, and
//! streaming past everything else. Layers of an OCI image layout are
//! reduced to an ordered list of operations (`Op`) that `compose` applies,
//! whiteouts included.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::rc::Rc;

use crate::error::{LimitRule, ScanError};
use crate::parse::{self, FileContent};
use crate::Limits;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// How the image stream was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What the files of interest are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ca,
    Dpkg,
    Apk,
}

/// Directories whose every file is read as certificates.
const CA_DIRS: &[&str] = &[
    "etc/ssl/certs",
    "etc/pki/tls/certs",
    "etc/pki/ca-trust",
    "usr/share/ca-certificates",
    "usr/local/share/ca-certificates",
    "etc/ca-certificates",
];
/// Single certificate bundle files.
const CA_FILES: &[&str] = &["etc/ssl/cert.pem", "etc/pki/tls/cert.pem"];
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d";
const APK_DBS: &[&str] = &["lib/apk/db/installed", "usr/lib/apk/db/installed"];

fn roots() -> impl Iterator<Item = &'static str> {
    CA_DIRS
        .iter()
        .chain(CA_FILES)
        .chain(APK_DBS)
        .copied()
        .chain([DPKG_STATUS, DPKG_STATUS_D])
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The kind of a file that must be read, if it is one.
fn classify(path: &str) -> Option<Kind> {
    if CA_FILES.contains(&path) || CA_DIRS.iter().any(|d| under(path, d)) {
        Some(Kind::Ca)
    } else if path == DPKG_STATUS || under(path, DPKG_STATUS_D) {
        Some(Kind::Dpkg)
    } else if APK_DBS.contains(&path) {
        Some(Kind::Apk)
    } else {
        None
    }
}

/// A path whose change can hide or replace a file of interest: one of the
/// roots, an ancestor of one, or something below one.
fn relevant(path: &str) -> bool {
    roots().any(|r| path == r || under(r, path) || under(path, r))
}

/// One change a layer makes to the files of interest, in tar order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// `.wh.NAME`: the lower layers' PATH (and everything below it) is gone.
    Whiteout(String),
    /// `.wh..wh..opq` in DIR: the lower layers' contents of DIR are hidden.
    Opaque(String),
    /// A file of interest, parsed.
    Put(String, FileContent),
    /// Anything else at a relevant path (a symlink, a directory replaced
    /// by a file, a file replaced by a symlink): what was there is gone.
    Remove(String),
}

/// The files of interest, by path, after applying layers.
pub(crate) type State = BTreeMap<String, FileContent>;

fn remove_tree(state: &mut State, path: &str, keep_root: bool) {
    if !keep_root {
        state.remove(path);
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let doomed: Vec<String> = state
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        state.remove(&k);
    }
}

/// Apply one layer to the state below it: its whiteouts first (they only
/// hide lower layers), then its own files in tar order.
pub(crate) fn apply_layer(state: &mut State, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Whiteout(p) => remove_tree(state, p, false),
            Op::Opaque(d) => remove_tree(state, d, true),
            _ => {}
        }
    }
    for op in ops {
        match op {
            Op::Put(p, c) => {
                remove_tree(state, p, true);
                state.insert(p.clone(), c.clone());
            }
            Op::Remove(p) => remove_tree(state, p, false),
            _ => {}
        }
    }
}

/// What one pass over a tar produced.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub compression: Option<Compression>,
    pub ops: Vec<Op>,
    pub entries: u64,
    /// Entries of the layers inside (an OCI layout tar).
    pub layer_entries: u64,
    pub bytes: u64,
    /// OCI layout parts, when the tar holds one.
    pub oci_layout_file: bool,
    pub index_json: Option<Vec<u8>>,
    /// `manifest.json` of a `docker save` archive.
    pub docker_manifest: Option<Vec<u8>>,
    /// Small JSON blobs (manifests, indexes, configs) by digest.
    pub json_blobs: BTreeMap<String, Vec<u8>>,
    /// Layer blobs, scanned, by digest.
    pub layers: BTreeMap<String, Vec<Op>>,
}

/// Counts the bytes read from the raw (compressed) input.
struct Counting<R> {
    inner: R,
    count: Rc<RefCell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count.borrow_mut() += n as u64;
        Ok(n)
    }
}

/// State shared between the walker and the guard under the tar reader.
struct Shared {
    /// Position in the uncompressed stream (reads and seeks).
    pos: u64,
    /// Uncompressed bytes read (seeks over data do not count).
    read: u64,
    /// While the tar reader looks for the next entry: `read` when that started.
    header_phase: Option<u64>,
    /// The typed reason the last read failed, when the guard knows it.
    failure: Option<ScanError>,
}

/// Sits between the (decompressed) stream and the tar reader: counts
/// bytes, bounds the total and the bytes of extension headers read while
/// the tar reader looks for the next entry (the tar crate reads GNU long
/// names and pax records into memory), and names decompression failures.
struct Guard<'a> {
    inner: Box<dyn ReadSeek + 'a>,
    shared: Rc<RefCell<Shared>>,
    compressed: Rc<RefCell<u64>>,
    compression: Compression,
    scope: String,
    max_total: u64,
    max_headers: u64,
}

/// A source the tar reader may seek (an uncompressed image file: the data
/// of entries that do not matter is skipped, not read) or not.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// A stream that cannot seek (the tar reader never asks: it is given
/// `entries()`, not `entries_with_seek()`).
struct NoSeek<R>(R);

impl<R: Read> Read for NoSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R> Seek for NoSeek<R> {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Err(io::Error::other("stream is not seekable"))
    }
}

impl Seek for Guard<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(to)?;
        self.shared.borrow_mut().pos = at;
        Ok(at)
    }
}

fn io_fail() -> io::Error {
    io::Error::other("custody-scan guard")
}

impl Read for Guard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut want = buf.len();
        {
            let mut s = self.shared.borrow_mut();
            if let Some(start) = s.header_phase {
                let used = s.read - start;
                if used > self.max_headers {
                    s.failure = Some(ScanError::Limit {
                        scope: self.scope.clone(),
                        rule: LimitRule::HeadersTooLarge {
                            max: self.max_headers,
                        },
                    });
                    return Err(io_fail());
                }
                want = want.min(usize::try_from(self.max_headers - used + 1).unwrap_or(usize::MAX));
            }
        }
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                let format = match self.compression {
                    Compression::Gzip => Some("gzip"),
                    Compression::Zstd => Some("zstd"),
                    Compression::None => None,
                };
                let mut s = self.shared.borrow_mut();
                if s.failure.is_none() {
                    s.failure = Some(match format {
                        Some(format) => ScanError::Decompress {
                            scope: self.scope.clone(),
                            format,
                            offset: *self.compressed.borrow(),
                            detail: e.to_string(),
                        },
                        None => ScanError::Io {
                            path: self.scope.clone(),
                            source: io::Error::new(e.kind(), e.to_string()),
                        },
                    });
                }
                return Err(e);
            }
        };
        let mut s = self.shared.borrow_mut();
        s.pos += n as u64;
        s.read += n as u64;
        if s.read > self.max_total {
            s.failure = Some(ScanError::Limit {
                scope: self.scope.clone(),
                rule: LimitRule::ImageTooLarge {
                    max: self.max_total,
                },
            });
            return Err(io_fail());
        }
        Ok(n)
    }
}

/// Fill `buf` as far as the stream allows; returns how much was read.
pub(crate) fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn sniff(head: &[u8]) -> Result<Compression, &'static str> {
    if head.starts_with(GZIP_MAGIC) {
        Ok(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(Compression::Zstd)
    } else if head.starts_with(XZ_MAGIC) {
        Err("xz")
    } else if head.starts_with(BZIP2_MAGIC)
        && head.get(3).is_some_and(|c| (b'1'..=b'9').contains(c))
    {
        Err("bzip2")
    } else {
        Ok(Compression::None)
    }
}

/// Normalise a tar path: no leading `./`, no empty or `.` components;
/// `..`, absolute paths, too deep or too long paths are refused.
fn normalise(raw: &[u8], limits: &Limits) -> Result<String, (String, LimitRule)> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    if raw.len() > limits.max_path_len {
        let mut s = shown;
        s.truncate(s.char_indices().nth(64).map_or(s.len(), |(i, _)| i));
        return Err((
            format!("{s}..."),
            LimitRule::PathTooLong {
                len: raw.len(),
                max: limits.max_path_len,
            },
        ));
    }
    if raw.first() == Some(&b'/') {
        return Err((shown, LimitRule::Absolute));
    }
    let mut parts = Vec::new();
    for c in shown.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err((shown, LimitRule::DotDot)),
            c => parts.push(c),
        }
    }
    if parts.len() > limits.max_depth {
        return Err((
            shown.clone(),
            LimitRule::TooDeep {
                depth: parts.len(),
                max: limits.max_depth,
            },
        ));
    }
    Ok(parts.join("/"))
}

/// A blob of an image archive, by the key its manifest names it with:
/// `blobs/<alg>/<hex>` of an OCI layout (the key is the digest, which is
/// checked), or `<id>/layer.tar` of a `docker save` archive (the key is
/// the path).
fn blob_key(path: &str) -> Option<(String, bool)> {
    if let Some(rest) = path.strip_prefix("blobs/") {
        let (alg, hex) = rest.split_once('/')?;
        return (!alg.is_empty() && !hex.is_empty() && !hex.contains('/'))
            .then(|| (format!("{alg}:{hex}"), true));
    }
    path.ends_with("/layer.tar")
        .then(|| (path.to_owned(), false))
}

/// Hashes what passes through (a blob's digest check).
pub(crate) struct Hashing<R> {
    pub inner: R,
    pub ctx: ring::digest::Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}

pub(crate) fn digest_algorithm(
    digest: &str,
) -> Result<&'static ring::digest::Algorithm, ScanError> {
    match digest.split_once(':') {
        Some(("sha256", h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(&ring::digest::SHA256)
        }
        Some(("sha512", h)) if h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(&ring::digest::SHA512)
        }
        _ => Err(ScanError::Oci(format!(
            "blob digest {digest:?}: not sha256:<64 hex> or sha512:<128 hex>"
        ))),
    }
}

/// What a blob holds, from its first bytes.
#[derive(PartialEq, Eq)]
pub(crate) enum BlobKind {
    Layer,
    Json,
    Other,
}

pub(crate) fn blob_kind(head: &[u8], size: u64, limits: &Limits) -> BlobKind {
    let tar = head.len() >= 263 && (&head[257..262] == b"ustar");
    let empty_tar = head.len() == 512 && head.iter().all(|&b| b == 0);
    if head.starts_with(GZIP_MAGIC) || head.starts_with(ZSTD_MAGIC) || tar || empty_tar {
        BlobKind::Layer
    } else if size <= limits.max_json
        && head
            .first()
            .is_some_and(|b| matches!(b, b'{' | b'[' | b' ' | b'\n'))
    {
        BlobKind::Json
    } else {
        BlobKind::Other
    }
}

/// One pass over a tar stream. `outer`: the image itself (which may be an
/// OCI layout: its blobs are scanned as they pass); otherwise a layer
/// (whiteouts are operations).
pub(crate) fn walk(
    input: &mut dyn Read,
    scope: &str,
    limits: &Limits,
    outer: bool,
) -> Result<Walk, ScanError> {
    walk_stream(input, scope, limits, outer)
}

/// [`walk`] over an image file: an uncompressed tar is read with seeks
/// over the data of entries that do not matter (each entry's declared
/// extent is checked against the file's length instead); a compressed one
/// is streamed.
pub(crate) fn walk_file(file: &mut File, scope: &str, limits: &Limits) -> Result<Walk, ScanError> {
    let io_err = |e| ScanError::Io {
        path: scope.to_owned(),
        source: e,
    };
    let len = file.metadata().map_err(io_err)?.len();
    let mut head = [0u8; 512];
    let n = read_up_to(file, &mut head).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    match sniff(&head[..n]) {
        Ok(Compression::None) => walk_tar(
            Box::new(RelSeek(BufReader::with_capacity(64 * 1024, file))),
            Rc::new(RefCell::new(0)),
            Compression::None,
            Some(len),
            scope,
            limits,
            true,
        ),
        _ => walk_stream(
            &mut BufReader::with_capacity(256 * 1024, file),
            scope,
            limits,
            true,
        ),
    }
}

/// A buffered file whose relative seeks (the tar reader skipping an
/// entry's data) stay inside the buffer when they can: many small entries
/// cost no read each.
struct RelSeek<R>(BufReader<R>);

impl<R: Read> Read for RelSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Seek> Seek for RelSeek<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Current(n) => {
                self.0.seek_relative(n)?;
                self.0.stream_position()
            }
            other => self.0.seek(other),
        }
    }
}

fn walk_stream(
    input: &mut dyn Read,
    scope: &str,
    limits: &Limits,
    outer: bool,
) -> Result<Walk, ScanError> {
    let compressed = Rc::new(RefCell::new(0u64));
    let mut counting = Counting {
        inner: input,
        count: compressed.clone(),
    };
    let mut head = [0u8; 512];
    let n = read_up_to(&mut counting, &mut head).map_err(|e| ScanError::Io {
        path: scope.to_owned(),
        source: e,
    })?;
    let head = head[..n].to_vec();
    let compression = sniff(&head).map_err(|format| ScanError::UnsupportedCompression {
        scope: scope.to_owned(),
        format,
    })?;
    let raw = io::Cursor::new(head).chain(counting);
    let stream: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::new(raw).map_err(|e| ScanError::Decompress {
                    scope: scope.to_owned(),
                    format: "zstd",
                    offset: 0,
                    detail: e.to_string(),
                })?;
            d.window_log_max(limits.zstd_window_log_max)
                .map_err(|e| ScanError::Decompress {
                    scope: scope.to_owned(),
                    format: "zstd",
                    offset: 0,
                    detail: e.to_string(),
                })?;
            Box::new(d)
        }
    };
    walk_tar(
        Box::new(NoSeek(stream)),
        compressed,
        compression,
        None,
        scope,
        limits,
        outer,
    )
}

/// The pass itself. `file_len`: the source is an uncompressed file of
/// that length, and may seek.
fn walk_tar<'a>(
    stream: Box<dyn ReadSeek + 'a>,
    compressed: Rc<RefCell<u64>>,
    compression: Compression,
    file_len: Option<u64>,
    scope: &str,
    limits: &Limits,
    outer: bool,
) -> Result<Walk, ScanError> {
    let shared = Rc::new(RefCell::new(Shared {
        pos: 0,
        read: 0,
        header_phase: None,
        failure: None,
    }));
    let guard = Guard {
        inner: stream,
        shared: shared.clone(),
        compressed,
        compression,
        scope: scope.to_owned(),
        max_total: limits.max_total_bytes,
        max_headers: limits.max_header_bytes,
    };
    let mut archive = tar::Archive::new(guard);
    let mut out = Walk {
        compression: Some(compression),
        ..Walk::default()
    };
    let mut records = 0usize;
    let mut last: Option<String> = None;
    let malformed =
        |shared: &Rc<RefCell<Shared>>, last: &Option<String>, e: io::Error| -> ScanError {
            let mut s = shared.borrow_mut();
            s.failure.take().unwrap_or_else(|| ScanError::MalformedTar {
                scope: scope.to_owned(),
                offset: s.pos,
                entry: last.clone(),
                detail: e.to_string(),
            })
        };
    let entries = match file_len {
        Some(_) => archive.entries_with_seek(),
        None => archive.entries(),
    };
    let mut entries = entries.map_err(|e| malformed(&shared, &last, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let start = shared.borrow().read;
        shared.borrow_mut().header_phase = Some(start);
        let next = entries.next();
        shared.borrow_mut().header_phase = None;
        let mut entry = match next {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(malformed(&shared, &last, e)),
        };
        out.entries += 1;
        if out.entries > limits.max_entries {
            return Err(ScanError::Limit {
                scope: scope.to_owned(),
                rule: LimitRule::TooManyEntries {
                    max: limits.max_entries,
                },
            });
        }
        let offset = entry.raw_header_position();
        let path =
            normalise(&entry.path_bytes(), limits).map_err(|(entry, rule)| ScanError::Refused {
                scope: scope.to_owned(),
                offset,
                entry,
                rule,
            })?;
        let refused = |rule| ScanError::Refused {
            scope: scope.to_owned(),
            offset,
            entry: path.clone(),
            rule,
        };
        let size = entry.size();
        if size > limits.max_entry_size {
            return Err(refused(LimitRule::EntryTooLarge {
                size,
                max: limits.max_entry_size,
            }));
        }
        if let Some(len) = file_len {
            // Seeking past the end would read as a clean end of archive.
            let end = entry.raw_file_position().saturating_add(size);
            if end > len {
                return Err(ScanError::MalformedTar {
                    scope: scope.to_owned(),
                    offset,
                    entry: Some(path),
                    detail: format!(
                        "entry declares {size} bytes but the file ends {} bytes into it",
                        len.saturating_sub(entry.raw_file_position())
                    ),
                });
            }
        }
        let et = entry.header().entry_type();
        let regular = et.is_file() || et == tar::EntryType::Continuous;
        let name = path.rsplit('/').next().unwrap_or("");
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        let joined = |n: &str| {
            if parent.is_empty() {
                n.to_owned()
            } else {
                format!("{parent}/{n}")
            }
        };
        let mut consumed = 0u64;
        if !outer && name == ".wh..wh..opq" {
            if relevant(parent) || parent.is_empty() {
                out.ops.push(Op::Opaque(parent.to_owned()));
            }
        } else if let Some(hidden) = name.strip_prefix(".wh.").filter(|_| !outer) {
            let hidden = joined(hidden);
            if relevant(&hidden) {
                out.ops.push(Op::Whiteout(hidden));
            }
        } else if regular && classify(&path).is_some() {
            let kind = classify(&path).unwrap_or(Kind::Ca);
            let cap = match kind {
                Kind::Ca => limits.max_ca_file,
                Kind::Dpkg | Kind::Apk => limits.max_package_db,
            };
            if size > cap {
                return Err(refused(LimitRule::FileTooLarge { size, max: cap }));
            }
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            (&mut entry)
                .take(cap + 1)
                .read_to_end(&mut data)
                .map_err(|e| malformed(&shared, &Some(path.clone()), e))?;
            consumed = data.len() as u64;
            let content = match kind {
                Kind::Ca => parse::parse_cert_file(&path, &data),
                Kind::Dpkg => parse::parse_dpkg_status(&path, &data),
                Kind::Apk => parse::parse_apk_installed(&path, &data),
            };
            records += content.certs.len() + content.packages.len() + content.bad_certs.len();
            if records > limits.max_records {
                return Err(ScanError::Limit {
                    scope: scope.to_owned(),
                    rule: LimitRule::TooManyRecords {
                        max: limits.max_records,
                    },
                });
            }
            out.ops.push(Op::Put(path.clone(), content));
        } else if outer
            && regular
            && matches!(path.as_str(), "index.json" | "oci-layout" | "manifest.json")
        {
            if size > limits.max_json {
                return Err(refused(LimitRule::FileTooLarge {
                    size,
                    max: limits.max_json,
                }));
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(limits.max_json + 1)
                .read_to_end(&mut data)
                .map_err(|e| malformed(&shared, &Some(path.clone()), e))?;
            consumed = data.len() as u64;
            match path.as_str() {
                "index.json" => out.index_json = Some(data),
                "manifest.json" => out.docker_manifest = Some(data),
                _ => out.oci_layout_file = true,
            }
        } else if let Some((key, digest)) = blob_key(&path).filter(|_| outer && regular) {
            consumed = scan_blob(&mut entry, &key, digest, size, limits, &mut out).map_err(
                |e| match e {
                    BlobError::Scan(e) => e,
                    BlobError::Io(e) => malformed(&shared, &Some(path.clone()), e),
                },
            )?;
        } else if relevant(&path) && !et.is_dir() {
            out.ops.push(Op::Remove(path.clone()));
        }
        // Stream past the rest of the entry, checking it is all there (a
        // seekable file: the tar reader seeks past it; its extent was checked).
        while file_len.is_none() {
            let k = match entry.read(&mut buf) {
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(malformed(&shared, &Some(path.clone()), e)),
            };
            if k == 0 {
                break;
            }
            consumed += k as u64;
        }
        if file_len.is_none() && consumed != size && !et.is_gnu_sparse() {
            return Err(ScanError::MalformedTar {
                scope: scope.to_owned(),
                offset: shared.borrow().pos,
                entry: Some(path),
                detail: format!("entry declares {size} bytes but the stream ends after {consumed}"),
            });
        }
        last = Some(path);
    }
    if outer && out.entries == 0 {
        return Err(ScanError::MalformedTar {
            scope: scope.to_owned(),
            offset: 0,
            entry: None,
            detail: "no tar entry: not an image".into(),
        });
    }
    // The end-of-archive blocks and anything after them: read too, so the
    // whole stream is decompressed (a truncated gzip is still an error)
    // and counted.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| malformed(&shared, &last, e))?;
    out.bytes = shared.borrow().pos;
    Ok(out)
}

pub(crate) enum BlobError {
    Scan(ScanError),
    Io(io::Error),
}

/// A blob of an OCI layout inside the image tar: a layer is scanned (its
/// digest checked), small JSON is kept for the manifests, the rest skipped.
/// Returns the bytes consumed.
fn scan_blob(
    entry: &mut dyn Read,
    digest: &str,
    check_digest: bool,
    size: u64,
    limits: &Limits,
    out: &mut Walk,
) -> Result<u64, BlobError> {
    let alg = if check_digest {
        digest_algorithm(digest).map_err(BlobError::Scan)?
    } else {
        &ring::digest::SHA256
    };
    let mut hashing = Hashing {
        inner: entry,
        ctx: ring::digest::Context::new(alg),
    };
    let mut head = [0u8; 512];
    let n = read_up_to(&mut hashing, &mut head).map_err(BlobError::Io)?;
    let head = &head[..n];
    let mut consumed = n as u64;
    match blob_kind(head, size, limits) {
        BlobKind::Layer => {
            if out.layers.len() >= limits.max_layers {
                return Err(BlobError::Scan(ScanError::Oci(format!(
                    "more than {} layer blobs",
                    limits.max_layers
                ))));
            }
            let mut counted = CountRead {
                inner: &mut hashing,
                n: 0,
            };
            let mut inner = io::Cursor::new(head.to_vec()).chain(&mut counted);
            let w = walk(&mut inner, &format!("layer {digest}"), limits, false)
                .map_err(BlobError::Scan)?;
            // the rest of the blob (tar padding after the end marker)
            let rest = io::copy(&mut inner, &mut io::sink()).map_err(BlobError::Io)?;
            let _ = rest;
            consumed += counted.n;
            out.layer_entries += w.entries;
            out.layers.insert(digest.to_owned(), w.ops);
        }
        BlobKind::Json => {
            let mut data = head.to_vec();
            let k = (&mut hashing)
                .take(limits.max_json + 1 - n as u64)
                .read_to_end(&mut data)
                .map_err(BlobError::Io)?;
            consumed += k as u64;
            let budget: usize = out.json_blobs.values().map(Vec::len).sum();
            if budget + data.len() > limits.max_json_total {
                return Err(BlobError::Scan(ScanError::Oci(format!(
                    "JSON blobs exceed {} bytes in all",
                    limits.max_json_total
                ))));
            }
            out.json_blobs.insert(digest.to_owned(), data);
        }
        BlobKind::Other => {}
    }
    // hash the rest of the blob too
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = hashing.read(&mut buf).map_err(BlobError::Io)?;
        if k == 0 {
            break;
        }
        consumed += k as u64;
    }
    let got = hex::encode(hashing.ctx.finish());
    let want = digest
        .split_once(':')
        .map_or("", |(_, h)| h)
        .to_ascii_lowercase();
    if check_digest && got != want {
        return Err(BlobError::Scan(ScanError::Oci(format!(
            "blob {digest}: content digest is {got}"
        ))));
    }
    Ok(consumed)
}

struct CountRead<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance_and_classification() {
        assert_eq!(
            classify("etc/ssl/certs/ca-certificates.crt"),
            Some(Kind::Ca)
        );
        assert_eq!(
            classify("usr/share/ca-certificates/mozilla/X.crt"),
            Some(Kind::Ca)
        );
        assert_eq!(classify("etc/ssl/certs"), None);
        assert_eq!(classify("var/lib/dpkg/status"), Some(Kind::Dpkg));
        assert_eq!(classify("var/lib/dpkg/status-old"), None);
        assert_eq!(classify("lib/apk/db/installed"), Some(Kind::Apk));
        assert!(relevant("etc"));
        assert!(relevant("etc/ssl"));
        assert!(relevant("etc/ssl/certs/x.pem"));
        assert!(!relevant("etc/passwd"));
        assert!(!relevant("usr/bin/ls"));
    }

    #[test]
    fn paths() {
        let l = Limits::default();
        assert_eq!(
            normalise(b"./etc//ssl/./certs/", &l).unwrap(),
            "etc/ssl/certs"
        );
        assert_eq!(normalise(b"a/../b", &l).unwrap_err().1, LimitRule::DotDot);
        assert_eq!(normalise(b"/etc/x", &l).unwrap_err().1, LimitRule::Absolute);
        let deep = "a/".repeat(l.max_depth + 1);
        assert!(matches!(
            normalise(deep.as_bytes(), &l).unwrap_err().1,
            LimitRule::TooDeep { .. }
        ));
    }

    #[test]
    fn layers_compose_with_whiteouts() {
        let put = |p: &str| Op::Put(p.into(), FileContent::default());
        let mut s = State::new();
        apply_layer(
            &mut s,
            &[
                put("etc/ssl/certs/a.pem"),
                put("etc/ssl/certs/b.pem"),
                put("var/lib/dpkg/status"),
            ],
        );
        apply_layer(
            &mut s,
            &[
                Op::Whiteout("etc/ssl/certs/a.pem".into()),
                put("etc/ssl/certs/c.pem"),
            ],
        );
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            [
                "etc/ssl/certs/b.pem",
                "etc/ssl/certs/c.pem",
                "var/lib/dpkg/status"
            ]
        );
        apply_layer(
            &mut s,
            &[
                Op::Opaque("etc/ssl/certs".into()),
                put("etc/ssl/certs/d.pem"),
            ],
        );
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["etc/ssl/certs/d.pem", "var/lib/dpkg/status"]
        );
        apply_layer(&mut s, &[Op::Whiteout("var".into())]);
        apply_layer(&mut s, &[Op::Remove("etc/ssl".into())]);
        assert!(s.is_empty());
    }
}
