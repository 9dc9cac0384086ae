//! Parsing of the files that matter, from bytes already read: certificate
//! bundles (PEM or one DER certificate) and package databases (dpkg
//! `status`, apk `installed`). No IO, no policy: records for `policy`.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

/// One certificate found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertRecord {
    /// The file in the image (normalised, no leading `/`).
    pub path: String,
    /// Position of the certificate in its file (0-based).
    pub index: usize,
    pub subject: String,
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Issuer and subject are the same name: a root.
    pub self_signed: bool,
    /// SHA-256 of the certificate's DER, hex (what a distrust list names).
    pub sha256: String,
    /// The subject name's DER content (without the outer SEQUENCE header),
    /// as trust anchors store it.
    #[serde(skip)]
    pub subject_der: Vec<u8>,
    /// The SubjectPublicKeyInfo's DER content (without the outer header).
    #[serde(skip)]
    pub spki_der: Vec<u8>,
}

/// A certificate block that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadCert {
    pub path: String,
    pub index: usize,
    pub error: String,
}

/// Which package database a record came from (selects the version order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageDb {
    Dpkg,
    Apk,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRecord {
    pub path: String,
    pub db: PackageDb,
    pub name: String,
    pub version: String,
}

/// What one file of the image contributed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileContent {
    pub certs: Vec<CertRecord>,
    pub bad_certs: Vec<BadCert>,
    pub packages: Vec<PackageRecord>,
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Certificates of a CA file: every PEM `CERTIFICATE` block, or, when there
/// is none and the file starts like DER, the file as one DER certificate.
/// Files that are neither (a Makefile in `etc/pki/tls/certs`, a Java
/// keystore) contribute nothing.
pub fn parse_cert_file(path: &str, data: &[u8]) -> FileContent {
    let mut out = FileContent::default();
    let text = String::from_utf8_lossy(data);
    let mut rest: &str = &text;
    let mut index = 0;
    let mut any_pem = false;
    while let Some(start) = rest.find(PEM_BEGIN) {
        any_pem = true;
        let body_start = start + PEM_BEGIN.len();
        let Some(end) = rest[body_start..].find(PEM_END) else {
            out.bad_certs.push(BadCert {
                path: path.to_owned(),
                index,
                error: "PEM block without END line".into(),
            });
            break;
        };
        let body: String = rest[body_start..body_start + end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        match base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) {
            Ok(der) => push_der(&mut out, path, index, &der),
            Err(e) => out.bad_certs.push(BadCert {
                path: path.to_owned(),
                index,
                error: format!("PEM base64: {e}"),
            }),
        }
        index += 1;
        rest = &rest[body_start + end + PEM_END.len()..];
    }
    if !any_pem && data.first() == Some(&0x30) && data.len() > 64 {
        if let Ok(cert) = Certificate::from_der(data) {
            if let Some(rec) = record(path, 0, data, &cert) {
                out.certs.push(rec);
            }
        }
    }
    out
}

fn push_der(out: &mut FileContent, path: &str, index: usize, der: &[u8]) {
    let parsed = Certificate::from_der(der).map_err(|e| format!("X.509 DER: {e}"));
    match parsed.and_then(|c| {
        record(path, index, der, &c).ok_or_else(|| "X.509 re-encoding failed".to_owned())
    }) {
        Ok(rec) => out.certs.push(rec),
        Err(error) => out.bad_certs.push(BadCert {
            path: path.to_owned(),
            index,
            error,
        }),
    }
}

fn record(path: &str, index: usize, der: &[u8], cert: &Certificate) -> Option<CertRecord> {
    let tbs = &cert.tbs_certificate;
    let subject_der = tbs.subject.to_der().ok()?;
    let issuer_der = tbs.issuer.to_der().ok()?;
    let spki_der = tbs.subject_public_key_info.to_der().ok()?;
    let nb = tbs.validity.not_before.to_unix_duration();
    let na = tbs.validity.not_after.to_unix_duration();
    Some(CertRecord {
        path: path.to_owned(),
        index,
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial: hex::encode(tbs.serial_number.as_bytes()),
        not_before: unix(nb.as_secs()),
        not_after: unix(na.as_secs()),
        self_signed: subject_der == issuer_der,
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, der)),
        subject_der: strip_header(&subject_der).to_vec(),
        spki_der: strip_header(&spki_der).to_vec(),
    })
}

fn unix(secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The content of a DER TLV we just encoded ourselves (so well-formed).
fn strip_header(tlv: &[u8]) -> &[u8] {
    match tlv.get(1) {
        Some(&l) if l < 0x80 => tlv.get(2..).unwrap_or(&[]),
        Some(&l) => tlv.get(2 + usize::from(l & 0x7f)..).unwrap_or(&[]),
        None => &[],
    }
}

/// Installed packages of a dpkg `status` file (or one file of a
/// distroless `status.d/`): paragraphs of `Field: value` lines separated
/// by blank lines; a package counts when its `Status` ends in `installed`
/// (or the paragraph has no Status field, as in `status.d`).
pub fn parse_dpkg_status(path: &str, data: &[u8]) -> FileContent {
    let text = String::from_utf8_lossy(data);
    let mut out = FileContent::default();
    let mut flush =
        |name: &mut Option<String>, version: &mut Option<String>, installed: &mut bool| {
            if let (Some(n), Some(v)) = (name.take(), version.take()) {
                if *installed {
                    out.packages.push(PackageRecord {
                        path: path.to_owned(),
                        db: PackageDb::Dpkg,
                        name: n,
                        version: v,
                    });
                }
            }
            *name = None;
            *version = None;
            *installed = true;
        };
    let (mut name, mut version, mut installed) = (None, None, true);
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut installed);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match field {
            "Package" => name = Some(value.to_owned()),
            "Version" => version = Some(value.to_owned()),
            "Status" => installed = value.split_whitespace().last() == Some("installed"),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut installed);
    out
}

/// Installed packages of apk's `lib/apk/db/installed`: records of
/// `X:value` lines separated by blank lines; `P` is the name, `V` the version.
pub fn parse_apk_installed(path: &str, data: &[u8]) -> FileContent {
    let text = String::from_utf8_lossy(data);
    let mut out = FileContent::default();
    let (mut name, mut version): (Option<String>, Option<String>) = (None, None);
    let mut flush = |name: &mut Option<String>, version: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            out.packages.push(PackageRecord {
                path: path.to_owned(),
                db: PackageDb::Apk,
                name: n,
                version: v,
            });
        }
        *name = None;
        *version = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version);
            continue;
        }
        if let Some(v) = line.strip_prefix("P:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("V:") {
            version = Some(v.trim().to_owned());
        }
    }
    flush(&mut name, &mut version);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_only() {
        let s = b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\n";
        let c = parse_dpkg_status("var/lib/dpkg/status", s);
        let names: Vec<_> = c
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            names,
            [("libssl3", "3.0.11-1~deb12u2"), ("zlib1g", "1:1.2.13")]
        );
    }

    #[test]
    fn apk_installed_records() {
        let s = b"C:Q1abc\nP:libssl3\nV:3.1.4-r5\nA:x86_64\n\nP:musl\nV:1.2.4-r2\n";
        let c = parse_apk_installed("lib/apk/db/installed", s);
        assert_eq!(c.packages.len(), 2);
        assert_eq!(c.packages[0].name, "libssl3");
        assert_eq!(c.packages[1].version, "1.2.4-r2");
    }

    #[test]
    fn broken_pem_is_reported_not_dropped() {
        let s = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        let c = parse_cert_file("etc/ssl/certs/x.pem", s);
        assert!(c.certs.is_empty());
        assert_eq!(c.bad_certs.len(), 2);
        assert_eq!(c.bad_certs[1].index, 1);
    }

    #[test]
    fn non_certificate_files_contribute_nothing() {
        let c = parse_cert_file("etc/pki/tls/certs/Makefile", b"all:\n\techo hi\n");
        assert_eq!(c, FileContent::default());
    }
}
