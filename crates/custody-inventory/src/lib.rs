//! custody-inventory: the trust-stack inventory as a model, with no IO.
//!
//! Every piece of trust material is an [`Item`]: a TUF role of a
//! repository (root, targets, each delegation, the hash bins as one group
//! with the earliest expiry, snapshot, timestamp), a server key, a
//! certificate, a credential. Each has what is known of its version,
//! expiry, age (when it was first seen), threshold, signatures and keys.
//!
//! [`assess`] gives every item a [`Status`] at a reference time that the
//! caller chooses (so a CI job can ask "what breaks in a week?"):
//!
//! - `expired`: its expiry is at or before the reference time;
//! - `drift`: something that should match does not (a device pinning an
//!   old root, a role under its threshold);
//! - `renew`: it expires within its kind's renewal window, or it is older
//!   than its kind's maximum age;
//! - `ok`: none of these.
//!
//! The windows ([`Windows`]) have defaults per kind, in the manner of
//! tuf-on-ci's signing periods, and can be set per scope (repository).
//! [`gate`] is the CI decision (`--fail-on renew|expired`). Readers of
//! repositories, servers and images build the items; this crate decides.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::indexing_slicing)]

mod repository;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use repository::{repository_items, RoleFacts};

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// a repository's root role
    Root,
    /// a repository's top-level targets role
    Targets,
    /// a delegated targets role
    Delegation,
    /// a repository's hash bins, as one group (the earliest expiry)
    HashBins,
    /// a repository's snapshot role
    Snapshot,
    /// a repository's timestamp role
    Timestamp,
    /// a signing key (its age is what matters)
    Key,
    /// an X.509 certificate (TLS, factory CA)
    Certificate,
    /// an admin credential
    Credential,
}

impl Kind {
    /// Every kind, in the order tables list them.
    pub const ALL: [Kind; 9] = [
        Kind::Root,
        Kind::Targets,
        Kind::Delegation,
        Kind::HashBins,
        Kind::Snapshot,
        Kind::Timestamp,
        Kind::Key,
        Kind::Certificate,
        Kind::Credential,
    ];

    /// The name used in tables, JSON and `--window KIND=…`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Root => "root",
            Kind::Targets => "targets",
            Kind::Delegation => "delegation",
            Kind::HashBins => "hash_bins",
            Kind::Snapshot => "snapshot",
            Kind::Timestamp => "timestamp",
            Kind::Key => "key",
            Kind::Certificate => "certificate",
            Kind::Credential => "credential",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = InventoryError;
    fn from_str(s: &str) -> Result<Kind, InventoryError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| InventoryError::UnknownKind(s.to_owned()))
    }
}

/// Where a key's private half lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// an (encrypted) key file
    KeyFile,
    /// a PKCS#11 token
    Pkcs11,
    /// a cloud KMS
    Kms,
    /// held offline by signers: not on this machine
    Offline,
    /// not known to the reader
    Unknown,
}

impl Backend {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::KeyFile => "key_file",
            Backend::Pkcs11 => "pkcs11",
            Backend::Kms => "kms",
            Backend::Offline => "offline",
            Backend::Unknown => "unknown",
        }
    }
}

/// One key of a role or of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    /// TUF key id, or the key's name
    pub id: String,
    /// `ed25519`, `ecdsa`, `rsa`, ...
    pub key_type: String,
    pub backend: Backend,
    /// when it was first seen (first root version listing it, first log
    /// entry naming it), if known
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
}

/// Valid signatures present against the threshold needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatures {
    pub present: u64,
    pub needed: u64,
}

/// One piece of trust material, as its reader found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub kind: Kind,
    /// the repository (or `server`, `image:<path>`) it belongs to
    pub scope: String,
    /// the role, key, certificate or credential name
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    /// when it was created or first seen, if known
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyRef>,
    /// how many members a group item stands for (hash bins)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u64>,
    /// a mismatch the reader found (shown as `drift`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// free text for people (the bin that expires first, a subject DN)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Item {
    /// An item with only its kind, scope and name known.
    pub fn new(kind: Kind, scope: &str, name: &str) -> Item {
        Item {
            kind,
            scope: scope.to_owned(),
            name: name.to_owned(),
            version: None,
            expires: None,
            first_seen: None,
            signatures: None,
            keys: Vec::new(),
            members: None,
            drift: None,
            detail: String::new(),
        }
    }
}

/// An item's state at the reference time. Ordered by urgency: `Expired`
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Expired,
    Drift,
    Renew,
    Ok,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Expired => "expired",
            Status::Drift => "drift",
            Status::Renew => "renew",
            Status::Ok => "ok",
        }
    }
}

/// Why an inventory request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("unknown kind {0:?} (one of: root, targets, delegation, hash_bins, snapshot, timestamp, key, certificate, credential)")]
    UnknownKind(String),
    #[error("window {spec:?}: {reason} (write KIND=DURATION, e.g. root=60d, timestamp=12h)")]
    BadWindow { spec: String, reason: String },
    #[error("--fail-on {0:?}: one of renew, expired")]
    BadFailOn(String),
}

/// How long before expiry each kind should be renewed, and how old it may
/// get: defaults per kind, overridable for everything or for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    renew: BTreeMap<(Option<String>, Kind), Duration>,
    max_age: BTreeMap<(Option<String>, Kind), Duration>,
}

impl Default for Windows {
    /// Offline roles are re-signed well ahead (signers need time to meet),
    /// online ones shortly before, keys rotated yearly, certificates a
    /// month ahead.
    fn default() -> Windows {
        let d = Duration::days;
        let renew = [
            (Kind::Root, d(60)),
            (Kind::Targets, d(30)),
            (Kind::Delegation, d(30)),
            (Kind::HashBins, d(7)),
            (Kind::Snapshot, d(2)),
            (Kind::Timestamp, Duration::hours(12)),
            (Kind::Key, d(30)),
            (Kind::Certificate, d(30)),
            (Kind::Credential, d(30)),
        ];
        let max_age = [(Kind::Key, d(365)), (Kind::Credential, d(365))];
        Windows {
            renew: renew.into_iter().map(|(k, v)| ((None, k), v)).collect(),
            max_age: max_age.into_iter().map(|(k, v)| ((None, k), v)).collect(),
        }
    }
}

impl Windows {
    /// The renewal window of `kind` in `scope`.
    pub fn renew(&self, scope: &str, kind: Kind) -> Duration {
        (self.renew.get(&(Some(scope.to_owned()), kind)))
            .or_else(|| self.renew.get(&(None, kind)))
            .copied()
            .unwrap_or_else(Duration::zero)
    }

    /// The maximum age of `kind` in `scope`, if it has one.
    pub fn max_age(&self, scope: &str, kind: Kind) -> Option<Duration> {
        (self.max_age.get(&(Some(scope.to_owned()), kind)))
            .or_else(|| self.max_age.get(&(None, kind)))
            .copied()
    }

    /// Set the renewal window of `kind` (in `scope`, or everywhere).
    pub fn set_renew(&mut self, scope: Option<&str>, kind: Kind, window: Duration) {
        self.renew.insert((scope.map(str::to_owned), kind), window);
    }

    /// Apply `[SCOPE:]KIND=DURATION` (`root=90d`, `app:timestamp=6h`;
    /// units `d`, `h`, `m`).
    pub fn apply(&mut self, spec: &str) -> Result<(), InventoryError> {
        let bad = |reason: &str| InventoryError::BadWindow {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (lhs, dur) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (scope, kind) = match lhs.split_once(':') {
            Some((s, k)) if !s.is_empty() => (Some(s), k),
            Some(_) => return Err(bad("empty scope before ':'")),
            None => (None, lhs),
        };
        let kind: Kind = kind.trim().parse()?;
        let dur = dur.trim();
        let (num, unit) = dur.split_at(dur.len().saturating_sub(1));
        let n: i64 = num
            .parse()
            .map_err(|_| bad("the duration is not a whole number with a unit"))?;
        if !(0..=36_500).contains(&n) {
            return Err(bad("the duration must be 0..=36500 of its unit"));
        }
        let window = match unit {
            "d" => Duration::days(n),
            "h" => Duration::hours(n),
            "m" => Duration::minutes(n),
            _ => return Err(bad("the unit must be d, h or m")),
        };
        self.set_renew(scope, kind, window);
        Ok(())
    }
}

/// An item with its status at the reference time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessed {
    #[serde(flatten)]
    pub item: Item,
    pub status: Status,
    /// why that status, for people
    pub why: String,
    /// seconds from the reference time to expiry (negative: expired)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<i64>,
    /// seconds since it was first seen
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
}

/// The status of one item at `at`.
pub fn assess_one(item: &Item, windows: &Windows, at: DateTime<Utc>) -> Assessed {
    let expires_in = item.expires.map(|e| e.signed_duration_since(at));
    let age = item.first_seen.map(|f| at.signed_duration_since(f));
    let window = windows.renew(&item.scope, item.kind);
    let days = |d: Duration| d.num_seconds() as f64 / 86_400.0;
    let (status, why) = if let Some(left) = expires_in.filter(|l| *l <= Duration::zero()) {
        let ago = -left;
        (
            Status::Expired,
            format!("expired {:.1} days ago", days(ago)),
        )
    } else if let Some(d) = &item.drift {
        (Status::Drift, d.clone())
    } else if let Some(s) = item.signatures.filter(|s| s.present < s.needed) {
        let why = format!("{} of {} signatures", s.present, s.needed);
        (Status::Drift, why)
    } else if let Some(left) = expires_in.filter(|l| *l <= window) {
        let why = format!(
            "expires in {:.1} days, inside its {:.0}-day renewal window",
            days(left),
            days(window)
        );
        (Status::Renew, why)
    } else if let Some((age, max)) = age.zip(windows.max_age(&item.scope, item.kind)) {
        if age > max {
            let why = format!(
                "{:.0} days old, older than {:.0} days",
                days(age),
                days(max)
            );
            (Status::Renew, why)
        } else {
            (Status::Ok, String::new())
        }
    } else {
        (Status::Ok, String::new())
    };
    Assessed {
        item: item.clone(),
        status,
        why,
        expires_in_seconds: expires_in.map(|d| d.num_seconds()),
        age_seconds: age.map(|d| d.num_seconds()),
    }
}

/// Every item's status at `at`, most urgent first: by status, then by
/// time to expiry (soonest first; no expiry last), then scope, kind, name.
pub fn assess(items: &[Item], windows: &Windows, at: DateTime<Utc>) -> Vec<Assessed> {
    let mut out: Vec<Assessed> = items.iter().map(|i| assess_one(i, windows, at)).collect();
    out.sort_by(|a, b| {
        let left = |x: &Assessed| x.expires_in_seconds.unwrap_or(i64::MAX);
        (a.status, left(a), &a.item.scope, a.item.kind, &a.item.name).cmp(&(
            b.status,
            left(b),
            &b.item.scope,
            b.item.kind,
            &b.item.name,
        ))
    });
    out
}

/// What makes the CI gate fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// anything not `ok`
    Renew,
    /// only `expired` and `drift`
    Expired,
}

impl FromStr for FailOn {
    type Err = InventoryError;
    fn from_str(s: &str) -> Result<FailOn, InventoryError> {
        match s {
            "renew" => Ok(FailOn::Renew),
            "expired" => Ok(FailOn::Expired),
            _ => Err(InventoryError::BadFailOn(s.to_owned())),
        }
    }
}

/// The items that fail the gate `fail_on` (empty: it passes). Drift always
/// fails: a role under its threshold or a device on an old root is broken
/// now, whatever the calendar says.
pub fn gate(assessed: &[Assessed], fail_on: FailOn) -> Vec<&Assessed> {
    assessed
        .iter()
        .filter(|a| match fail_on {
            FailOn::Renew => a.status != Status::Ok,
            FailOn::Expired => matches!(a.status, Status::Expired | Status::Drift),
        })
        .collect()
}

/// How many items have each status (for summaries and gauges).
pub fn counts(assessed: &[Assessed]) -> BTreeMap<Status, usize> {
    let mut m = BTreeMap::new();
    for a in assessed {
        *m.entry(a.status).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests;
