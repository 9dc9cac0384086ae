//! The policy: which certificates and packages an image may carry. Pure:
//! given the inventory of an image and a reference time `at`, it returns
//! the findings. No IO, no clock.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::parse::{BadCert, CertRecord, PackageDb, PackageRecord};
use crate::version::{apk_cmp, dpkg_cmp};

/// Everything of interest found in an image, after layers and whiteouts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub certificates: Vec<CertRecord>,
    pub unparseable_certificates: Vec<BadCert>,
    pub packages: Vec<PackageRecord>,
}

/// How bad a finding is; the table is sorted by it (most severe first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
}

/// The rule a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The certificate's notAfter is at or before `at`.
    CertificateExpired,
    /// The certificate's notBefore is after `at`.
    CertificateNotYetValid,
    /// The certificate expires within the renewal window after `at`.
    CertificateExpiring,
    /// A self-signed root whose subject and public key are not in the trusted root set.
    RootNotTrusted,
    /// A certificate on the policy's distrust list.
    CertificateDistrusted,
    /// A certificate block in a CA file that does not parse.
    CertificateUnparseable,
    /// A crypto library older than the policy's minimum version.
    PackageBelowMinimum,
    /// A crypto library line the policy forbids at any version (end of life).
    PackageForbidden,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::CertificateExpired => "certificate-expired",
            Rule::CertificateNotYetValid => "certificate-not-yet-valid",
            Rule::CertificateExpiring => "certificate-expiring",
            Rule::RootNotTrusted => "root-not-trusted",
            Rule::CertificateDistrusted => "certificate-distrusted",
            Rule::CertificateUnparseable => "certificate-unparseable",
            Rule::PackageBelowMinimum => "package-below-minimum",
            Rule::PackageForbidden => "package-forbidden",
        }
    }
}

/// One reason to refuse the image: the file, the certificate or package, the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The file in the image.
    pub path: String,
    /// The certificate (`subject (serial S)`) or the package (`name version`).
    pub item: String,
    pub rule: Rule,
    pub detail: String,
}

/// A set of trusted roots, compared by subject name and public key (the
/// DER contents, as `webpki-roots` stores them).
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: BTreeSet<(Vec<u8>, Vec<u8>)>,
}

impl TrustStore {
    /// Mozilla's root set as compiled into the `webpki-roots` crate.
    pub fn mozilla() -> Self {
        let mut s = TrustStore::default();
        for a in webpki_roots::TLS_SERVER_ROOTS {
            s.anchors.insert((
                a.subject.as_ref().to_vec(),
                a.subject_public_key_info.as_ref().to_vec(),
            ));
        }
        s
    }

    /// Add the certificates of a PEM bundle (a root set given in the config).
    pub fn add_bundle(&mut self, pem: &[u8]) -> usize {
        let c = crate::parse::parse_cert_file("", pem);
        for cert in &c.certs {
            self.anchors
                .insert((cert.subject_der.clone(), cert.spki_der.clone()));
        }
        c.certs.len()
    }

    pub fn contains(&self, cert: &CertRecord) -> bool {
        self.anchors
            .contains(&(cert.subject_der.clone(), cert.spki_der.clone()))
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// A package rule: packages whose name matches `name` (`*` matches any
/// run of characters) in database `db` (any when absent) must be at least
/// `min`, or are refused outright when `forbidden`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<PackageDb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default)]
    pub forbidden: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PackageRule {
    fn new(name: &str, db: PackageDb, min: Option<&str>, reason: &str) -> Self {
        PackageRule {
            name: name.into(),
            db: Some(db),
            min: min.map(Into::into),
            forbidden: min.is_none(),
            reason: Some(reason.into()),
        }
    }

    fn matches(&self, p: &PackageRecord) -> bool {
        self.db.is_none_or(|db| db == p.db) && glob(&self.name, &p.name)
    }
}

/// The default crypto-library rules: release lines that are end of life
/// are forbidden, supported lines must be at least their first supported
/// release. Patch-level minimums are site policy (a policy file): a distro
/// backports fixes without changing the upstream version.
pub fn default_package_rules() -> Vec<PackageRule> {
    use PackageDb::{Apk, Dpkg};
    const EOL: &str = "OpenSSL 1.x and older are end of life";
    vec![
        PackageRule::new("libssl0*", Dpkg, None, EOL),
        PackageRule::new("libssl1*", Dpkg, None, EOL),
        PackageRule::new("libssl3*", Dpkg, Some("3.0.0"), "OpenSSL 3.0 or later"),
        PackageRule::new("openssl", Dpkg, Some("3.0.0"), "OpenSSL 3.0 or later"),
        PackageRule::new("libgnutls30*", Dpkg, Some("3.7.0"), "GnuTLS 3.7 or later"),
        PackageRule::new(
            "libgcrypt20*",
            Dpkg,
            Some("1.8.0"),
            "libgcrypt 1.8 or later",
        ),
        PackageRule::new("libnss3*", Dpkg, Some("2:3.61"), "NSS 3.61 or later"),
        PackageRule::new("libssl1*", Apk, None, EOL),
        PackageRule::new("libcrypto1*", Apk, None, EOL),
        PackageRule::new("libssl3", Apk, Some("3.0.0"), "OpenSSL 3.0 or later"),
        PackageRule::new("libcrypto3", Apk, Some("3.0.0"), "OpenSSL 3.0 or later"),
        PackageRule::new("openssl", Apk, Some("3.0.0"), "OpenSSL 3.0 or later"),
        PackageRule::new("gnutls", Apk, Some("3.7.0"), "GnuTLS 3.7 or later"),
        PackageRule::new("libgcrypt", Apk, Some("1.8.0"), "libgcrypt 1.8 or later"),
        PackageRule::new("nss", Apk, Some("3.61"), "NSS 3.61 or later"),
    ]
}

/// The whole policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Renewal window: certificates expiring within it after `at` are reported.
    pub window: Duration,
    /// Roots an image may carry.
    pub trusted_roots: TrustStore,
    /// SHA-256 fingerprints (lowercase hex) of certificates refused anywhere.
    pub distrust: BTreeSet<String>,
    /// Crypto-library rules; every matching rule applies.
    pub packages: Vec<PackageRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            window: Duration::days(30),
            trusted_roots: TrustStore::mozilla(),
            distrust: BTreeSet::new(),
            packages: default_package_rules(),
        }
    }
}

/// The policy file (TOML or JSON), before the CLI resolves its paths.
///
/// ```toml
/// window_days = 30
/// distrust = ["<sha256 of a certificate, hex>"]
/// trusted_roots = "roots.pem"   # root set instead of Mozilla's (relative to the file)
/// mozilla_roots = true          # keep Mozilla's set as well (default true)
/// default_packages = true       # keep the default crypto-library rules (default true)
/// [[packages]]
/// name = "libssl3"
/// db = "dpkg"
/// min = "3.0.15-1~deb12u1"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub window_days: Option<u32>,
    #[serde(default)]
    pub distrust: Vec<String>,
    #[serde(default)]
    pub trusted_roots: Option<String>,
    #[serde(default)]
    pub mozilla_roots: Option<bool>,
    #[serde(default)]
    pub default_packages: Option<bool>,
    #[serde(default)]
    pub packages: Vec<PackageRule>,
}

impl PolicyFile {
    /// Parse a policy: JSON when it starts with `{`, TOML otherwise.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: PolicyFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("policy JSON: {e}"))?
        } else {
            toml::from_str(text).map_err(|e| format!("policy TOML: {e}"))?
        };
        for d in &p.distrust {
            if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "policy distrust entry {d:?}: not a SHA-256 hex fingerprint"
                ));
            }
        }
        for r in &p.packages {
            if r.min.is_none() && !r.forbidden {
                return Err(format!(
                    "policy package rule {:?}: needs `min` or `forbidden = true`",
                    r.name
                ));
            }
        }
        Ok(p)
    }

    /// The policy, given the contents of `trusted_roots` (read by the caller).
    pub fn into_policy(self, trusted_roots_pem: Option<&[u8]>) -> Result<Policy, String> {
        let mut trusted = if self.mozilla_roots.unwrap_or(true) {
            TrustStore::mozilla()
        } else {
            TrustStore::default()
        };
        if let Some(pem) = trusted_roots_pem {
            if trusted.add_bundle(pem) == 0 {
                return Err("policy trusted_roots: no certificate in the bundle".into());
            }
        }
        let mut packages = if self.default_packages.unwrap_or(true) {
            default_package_rules()
        } else {
            Vec::new()
        };
        packages.extend(self.packages);
        Ok(Policy {
            window: Duration::days(i64::from(self.window_days.unwrap_or(30))),
            trusted_roots: trusted,
            distrust: self
                .distrust
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            packages,
        })
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn cert_item(c: &CertRecord) -> String {
    format!("{} (serial {})", c.subject, c.serial)
}

/// Evaluate the policy at `at`: every finding, most severe first, then by
/// path and item.
pub fn evaluate(inv: &Inventory, policy: &Policy, at: DateTime<Utc>) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &inv.certificates {
        let item = cert_item(c);
        let mut push = |severity, rule, detail: String| {
            out.push(Finding {
                severity,
                path: c.path.clone(),
                item: item.clone(),
                rule,
                detail,
            })
        };
        if policy.distrust.contains(&c.sha256) {
            push(
                Severity::Critical,
                Rule::CertificateDistrusted,
                format!("sha256 {} is on the distrust list", c.sha256),
            );
        }
        if c.not_after <= at {
            push(
                Severity::Critical,
                Rule::CertificateExpired,
                format!("expired {}", c.not_after.to_rfc3339()),
            );
        } else if c.not_after <= at + policy.window {
            push(
                Severity::Medium,
                Rule::CertificateExpiring,
                format!(
                    "expires {} (within the {}-day window)",
                    c.not_after.to_rfc3339(),
                    policy.window.num_days()
                ),
            );
        }
        if c.not_before > at {
            push(
                Severity::High,
                Rule::CertificateNotYetValid,
                format!("not valid before {}", c.not_before.to_rfc3339()),
            );
        }
        if c.self_signed && !policy.trusted_roots.contains(c) {
            push(
                Severity::High,
                Rule::RootNotTrusted,
                "self-signed root not in the trusted root set (subject and public key)".into(),
            );
        }
    }
    for b in &inv.unparseable_certificates {
        out.push(Finding {
            severity: Severity::High,
            path: b.path.clone(),
            item: format!("certificate #{}", b.index),
            rule: Rule::CertificateUnparseable,
            detail: b.error.clone(),
        });
    }
    for p in &inv.packages {
        for r in policy.packages.iter().filter(|r| r.matches(p)) {
            let reason = r.reason.as_deref().unwrap_or("policy");
            let finding = |severity, rule, detail| Finding {
                severity,
                path: p.path.clone(),
                item: format!("{} {}", p.name, p.version),
                rule,
                detail,
            };
            if r.forbidden {
                out.push(finding(
                    Severity::Critical,
                    Rule::PackageForbidden,
                    format!("matches forbidden {:?}: {reason}", r.name),
                ));
            } else if let Some(min) = &r.min {
                let below = match p.db {
                    PackageDb::Dpkg => dpkg_cmp(&p.version, min),
                    PackageDb::Apk => apk_cmp(&p.version, min),
                } == Ordering::Less;
                if below {
                    out.push(finding(
                        Severity::High,
                        Rule::PackageBelowMinimum,
                        format!("below minimum {min} for {:?}: {reason}", r.name),
                    ));
                }
            }
        }
    }
    sort_findings(&mut out);
    out.dedup();
    out
}

/// Most severe first, then path, item, rule.
pub fn sort_findings(f: &mut [Finding]) {
    f.sort_by(|a, b| {
        (a.severity, &a.path, &a.item, a.rule, &a.detail)
            .cmp(&(b.severity, &b.path, &b.item, b.rule, &b.detail))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("libssl1*", "libssl1.1"));
        assert!(glob("libssl1*", "libssl1"));
        assert!(!glob("libssl1*", "libssl3"));
        assert!(glob("*ssl*", "libssl3"));
        assert!(glob("openssl", "openssl"));
        assert!(!glob("openssl", "openssl-dev"));
        assert!(!glob("a*a", "a"));
    }

    fn pkg(db: PackageDb, name: &str, version: &str) -> PackageRecord {
        PackageRecord {
            path: "p".into(),
            db,
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn default_package_rules_refuse_old_lines_and_accept_current_ones() {
        let inv = Inventory {
            packages: vec![
                pkg(PackageDb::Dpkg, "libssl1.1", "1.1.1w-0+deb11u1"),
                pkg(PackageDb::Dpkg, "libssl3", "3.0.0~alpha1-1"),
                pkg(PackageDb::Dpkg, "libssl3t64", "3.0.13-0ubuntu3.4"),
                pkg(PackageDb::Dpkg, "libnss3", "2:3.87.1-1"),
                pkg(PackageDb::Dpkg, "libnss3-tools", "3.40-1"),
                pkg(PackageDb::Apk, "libcrypto3", "3.1.4-r5"),
                pkg(PackageDb::Apk, "gnutls", "3.6.15-r1"),
            ],
            ..Inventory::default()
        };
        let f = evaluate(
            &inv,
            &Policy::default(),
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        );
        let got: Vec<_> = f.iter().map(|f| (f.item.as_str(), f.rule)).collect();
        assert_eq!(
            got,
            [
                ("libssl1.1 1.1.1w-0+deb11u1", Rule::PackageForbidden),
                ("gnutls 3.6.15-r1", Rule::PackageBelowMinimum),
                ("libnss3-tools 3.40-1", Rule::PackageBelowMinimum),
                ("libssl3 3.0.0~alpha1-1", Rule::PackageBelowMinimum),
            ]
        );
    }

    #[test]
    fn policy_file_toml_and_json() {
        let t = PolicyFile::parse(
            "window_days = 10\ndefault_packages = false\n[[packages]]\nname = \"libssl3\"\ndb = \"dpkg\"\nmin = \"3.0.15\"\n",
        )
        .unwrap();
        let p = t.into_policy(None).unwrap();
        assert_eq!(p.window, Duration::days(10));
        assert_eq!(p.packages.len(), 1);
        let j = PolicyFile::parse(r#"{"distrust": ["AB"]}"#).unwrap_err();
        assert!(j.contains("distrust"), "{j}");
        let e = PolicyFile::parse("[[packages]]\nname = \"x\"\n").unwrap_err();
        assert!(e.contains("min"), "{e}");
        assert!(PolicyFile::parse("bogus = 1").is_err());
    }
}
