//! Test images built by the tests themselves: certificates from rcgen,
//! tars from the tar crate, OCI layouts by hand.
#![allow(dead_code)]

use std::io::Write;

use chrono::{DateTime, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The reference time of every test.
pub fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// ISRG Root X1 (Let's Encrypt), a root of Mozilla's set, valid until 2035.
pub const MOZILLA_ROOT: &str = include_str!("../data/isrg-root-x1.pem");

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

fn params(cn: &str, from: (i32, u8, u8), to: (i32, u8, u8)) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "custody tests");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    p
}

/// A self-signed root CA.
pub fn root(cn: &str, from: (i32, u8, u8), to: (i32, u8, u8)) -> Ca {
    let key = KeyPair::generate().unwrap();
    let cert = params(cn, from, to).self_signed(&key).unwrap();
    Ca { cert, key }
}

/// An intermediate CA signed by `issuer`.
pub fn intermediate(cn: &str, issuer: &Ca, from: (i32, u8, u8), to: (i32, u8, u8)) -> Ca {
    let key = KeyPair::generate().unwrap();
    let cert = params(cn, from, to)
        .signed_by(&key, &issuer.cert, &issuer.key)
        .unwrap();
    Ca { cert, key }
}

pub fn dpkg_status(pkgs: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::new();
    for (name, version) in pkgs {
        s.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nPriority: optional\nVersion: {version}\nDescription: {name}\n a package\n\n"
        ));
    }
    s.into_bytes()
}

/// A clean Debian-like package list.
pub fn clean_packages() -> Vec<u8> {
    dpkg_status(&[
        ("base-files", "12.4+deb12u5"),
        ("libssl3", "3.0.15-1~deb12u1"),
        ("openssl", "3.0.15-1~deb12u1"),
        ("libgnutls30", "3.7.9-2+deb12u3"),
        ("libnss3", "2:3.87.1-1+deb12u1"),
        ("zlib1g", "1:1.2.13.dfsg-1"),
    ])
}

/// A tar entry to write: a file, a directory, or a symlink.
pub enum E {
    File(&'static str, Vec<u8>),
    Owned(String, Vec<u8>),
    Dir(&'static str),
    Link(&'static str, &'static str),
}

pub fn file(path: &'static str, data: impl Into<Vec<u8>>) -> E {
    E::File(path, data.into())
}

pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        match e {
            E::File(p, d) => {
                h.set_size(d.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, p, d.as_slice()).unwrap();
            }
            E::Owned(p, d) => {
                h.set_size(d.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, p, d.as_slice()).unwrap();
            }
            E::Dir(p) => {
                h.set_size(0);
                h.set_mode(0o755);
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::Link(p, target) => {
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
    )
}

/// An OCI image layout: blobs, one manifest, index.json, oci-layout.
pub struct Oci {
    pub blobs: Vec<(String, Vec<u8>)>,
    pub index: Vec<u8>,
}

pub fn oci(layers: &[Vec<u8>]) -> Oci {
    let mut blobs = Vec::new();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config_d = sha256(&config);
    let mut layer_desc = Vec::new();
    for l in layers {
        let d = sha256(l);
        let mt = if l.starts_with(&[0x1f, 0x8b]) {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        layer_desc.push(serde_json::json!({"mediaType": mt, "digest": d, "size": l.len()}));
        blobs.push((d, l.clone()));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": layer_desc,
    }))
    .unwrap();
    let manifest_d = sha256(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len()}],
    }))
    .unwrap();
    blobs.push((config_d, config));
    blobs.push((manifest_d, manifest));
    Oci { blobs, index }
}

impl Oci {
    /// The layout as a tar, blobs in the given order (`reverse`: upper layers first).
    pub fn to_tar(&self, reverse: bool) -> Vec<u8> {
        let mut entries = vec![
            file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            file("index.json", self.index.clone()),
        ];
        let mut blobs: Vec<_> = self.blobs.iter().collect();
        if reverse {
            blobs.reverse();
        }
        for (d, data) in blobs {
            entries.push(E::Owned(format!("blobs/sha256/{}", &d[7..]), data.clone()));
        }
        tar(&entries)
    }

    pub fn write_dir(&self, dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(dir.join("index.json"), &self.index).unwrap();
        for (d, data) in &self.blobs {
            std::fs::write(dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
        }
    }
}
