//! custody-scan: the image trust-stack gate.
//!
//! An image (a rootfs tar, plain, gzip or zstd, an OCI image layout as a
//! tar or a directory, or a `docker save` archive) is read in one streaming
//! pass with bounded memory.
//! Only the files that matter are read, each under a cap: CA bundles and
//! certificate directories (`etc/ssl/certs`, `etc/pki/tls/certs`,
//! `usr/share/ca-certificates`, ...) and package databases (dpkg `status`,
//! apk `installed`). OCI layers are applied in order, whiteouts included,
//! so what an upper layer deletes is not reported.
//!
//! [`policy::evaluate`] (pure: no IO, no clock) turns the [`Inventory`] into
//! findings at a reference time: expired or expiring certificates, roots
//! not in the trusted set (Mozilla's, from `webpki-roots`, or a bundle
//! given in the policy), distrusted certificates, crypto libraries below a
//! minimum version (Debian and apk version order, [`version`]).
//!
//! Untrusted input: a malformed or hostile tar (`..` or absolute paths,
//! huge declared sizes, deep paths, too many entries, oversized long-name
//! headers) or a truncated gzip/zstd stream is a typed [`ScanError`]
//! naming the layer, offset, entry and rule; never a panic.
#![forbid(unsafe_code)]

mod error;
mod oci;
mod parse;
pub mod policy;
mod report;
mod scanner;
pub mod version;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use error::{LimitRule, ScanError};
pub use parse::{BadCert, CertRecord, PackageDb, PackageRecord};
pub use policy::{
    evaluate, Finding, Inventory, PackageRule, Policy, PolicyFile, Rule, Severity, TrustStore,
};
pub use report::{Report, Verdict};
pub use scanner::Compression;

/// Bounds on what one scan reads and keeps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Tar entries per stream (the image or one layer).
    pub max_entries: u64,
    /// Bytes of one path.
    pub max_path_len: usize,
    /// Components of one path.
    pub max_depth: usize,
    /// Declared size of one entry.
    pub max_entry_size: u64,
    /// Uncompressed bytes per stream.
    pub max_total_bytes: u64,
    /// Extension headers (GNU long names, pax records) before one entry.
    pub max_header_bytes: u64,
    /// One CA file (bundles are ~250 KiB).
    pub max_ca_file: u64,
    /// One package database.
    pub max_package_db: u64,
    /// Certificates and packages kept per stream.
    pub max_records: usize,
    /// One JSON document of an OCI layout (index, manifest, config).
    pub max_json: u64,
    /// All JSON blobs of an OCI layout tar together.
    pub max_json_total: usize,
    /// Layers of an OCI layout.
    pub max_layers: usize,
    /// zstd window (log2 bytes): bounds the decoder's memory.
    pub zstd_window_log_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 2_000_000,
            max_path_len: 4096,
            max_depth: 128,
            max_entry_size: 64 << 30,
            max_total_bytes: 256 << 30,
            max_header_bytes: 1 << 20,
            max_ca_file: 8 << 20,
            max_package_db: 32 << 20,
            max_records: 200_000,
            max_json: 1 << 20,
            max_json_total: 16 << 20,
            max_layers: 512,
            zstd_window_log_max: 25,
        }
    }
}

/// What kind of image was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// A root filesystem tar.
    Rootfs,
    /// An OCI image layout in a tar.
    OciTar,
    /// An OCI image layout directory.
    OciDir,
    /// A `docker save` archive (`manifest.json`, `<id>/layer.tar`).
    DockerArchive,
}

/// The result of one scan (before the policy).
#[derive(Debug, Clone)]
pub struct Scan {
    pub format: ImageFormat,
    pub compression: Compression,
    pub inventory: Inventory,
    /// Tar entries read (all streams).
    pub entries: u64,
    /// Uncompressed bytes read (the outer stream).
    pub bytes: u64,
}

fn inventory_of(states: Vec<scanner::State>) -> Inventory {
    let mut inv = Inventory::default();
    for state in states {
        for (_, c) in state {
            inv.certificates.extend(c.certs);
            inv.unparseable_certificates.extend(c.bad_certs);
            inv.packages.extend(c.packages);
        }
    }
    inv.certificates
        .sort_by(|a, b| (&a.path, a.index).cmp(&(&b.path, b.index)));
    inv.certificates.dedup();
    inv.unparseable_certificates
        .sort_by(|a, b| (&a.path, a.index).cmp(&(&b.path, b.index)));
    inv.unparseable_certificates.dedup();
    inv.packages
        .sort_by(|a, b| (&a.path, &a.name, &a.version).cmp(&(&b.path, &b.name, &b.version)));
    inv.packages.dedup();
    inv
}

/// Scan an image from a stream: a rootfs tar or an OCI layout tar, plain,
/// gzip or zstd (told by magic bytes). One pass; memory bounded by `limits`.
pub fn scan_reader(input: &mut dyn Read, limits: &Limits) -> Result<Scan, ScanError> {
    finish(scanner::walk(input, "image", limits, true)?)
}

/// A rootfs, or an OCI layout whose blobs passed in the tar.
fn finish(w: scanner::Walk) -> Result<Scan, ScanError> {
    let compression = w.compression.unwrap_or(Compression::None);
    if let (Some(index), true) = (&w.index_json, w.oci_layout_file || !w.layers.is_empty()) {
        let mut blob = |d: &str| {
            w.json_blobs.get(d).cloned().ok_or_else(|| {
                ScanError::Oci(format!("blob {d} is not in the layout (or is not JSON)"))
            })
        };
        let list = oci::manifests(index, &mut blob)?;
        let states = oci::compose(&list, &w.layers)?;
        return Ok(Scan {
            format: ImageFormat::OciTar,
            compression,
            inventory: inventory_of(states),
            entries: w.entries + w.layer_entries,
            bytes: w.bytes,
        });
    }
    if let (Some(manifest), false) = (&w.docker_manifest, w.layers.is_empty()) {
        let list = oci::docker_manifests(manifest)?;
        let states = oci::compose(&list, &w.layers)?;
        return Ok(Scan {
            format: ImageFormat::DockerArchive,
            compression,
            inventory: inventory_of(states),
            entries: w.entries + w.layer_entries,
            bytes: w.bytes,
        });
    }
    let mut state = scanner::State::new();
    scanner::apply_layer(&mut state, &w.ops);
    Ok(Scan {
        format: ImageFormat::Rootfs,
        compression,
        inventory: inventory_of(vec![state]),
        entries: w.entries,
        bytes: w.bytes,
    })
}

/// Scan an image file, or an OCI image layout directory. An uncompressed
/// tar file is read with seeks over the data of the entries that do not
/// matter; compressed files are streamed as by [`scan_reader`].
pub fn scan_path(path: &Path, limits: &Limits) -> Result<Scan, ScanError> {
    let io = |e| ScanError::Io {
        path: path.display().to_string(),
        source: e,
    };
    if path.is_dir() {
        let (states, entries, bytes) = oci::scan_dir(path, limits)?;
        return Ok(Scan {
            format: ImageFormat::OciDir,
            compression: Compression::None,
            inventory: inventory_of(states),
            entries,
            bytes,
        });
    }
    let mut f = File::open(path).map_err(io)?;
    let w = scanner::walk_file(&mut f, "image", limits)?;
    finish(w)
}
