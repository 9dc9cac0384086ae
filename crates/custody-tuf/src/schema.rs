//! TUF 1.0 metadata schema: typed views of the `signed` objects.
//!
//! Every struct keeps fields it does not know in a flattened `unknown` map,
//! so authoring tools can read, edit and re-sign metadata without dropping
//! e.g. `x-tuf-on-ci-*` fields. Verification never re-serialises these typed
//! values: signatures are checked over the canonical JSON of the `signed`
//! object exactly as received (see [`Metadata`]).
//!
//! `spec_version` rule: the string must be `MAJOR.MINOR` or
//! `MAJOR.MINOR.PATCH`, each part decimal digits, and MAJOR must be `1`.
//! Any 1.x is accepted (minor versions are backwards compatible by the
//! spec's semver promise); 0.x, 2.x and non-numeric strings are rejected.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::cjson;
use crate::error::{Error, Result};

/// Unknown fields, kept verbatim.
pub type Unknown = BTreeMap<String, Value>;

/// Hash algorithm name → lowercase hex digest.
pub type Hashes = BTreeMap<String, String>;

/// The four top-level role names.
pub const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// The spec version this crate writes.
pub const SPEC_VERSION: &str = "1.0.31";

mod expires_format {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        parse_expires(&s).map_err(serde::de::Error::custom)
    }
}

/// Parse an RFC 3339 timestamp (fractional seconds and offsets allowed) to UTC.
pub fn parse_expires(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 date-time: {e}"))
}

/// A public key as listed in root or delegations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// e.g. `ed25519`, `ecdsa`, `ecdsa-sha2-nistp256`, `rsa`
    pub keytype: String,
    /// e.g. `ed25519`, `ecdsa-sha2-nistp256`, `rsassa-pss-sha256`
    pub scheme: String,
    /// key value
    pub keyval: KeyVal,
    /// unknown fields (e.g. `keyid_hash_algorithms`, `x-tuf-on-ci-*`)
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `keyval` of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyVal {
    /// public key: hex (ed25519, ecdsa point) or PEM SPKI. Optional so that
    /// unknown key types with other shapes do not fail parsing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// key id the signature claims
    pub keyid: String,
    /// signature, hex
    pub sig: String,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Keys and threshold of a top-level role in root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// key ids allowed to sign
    pub keyids: Vec<String>,
    /// how many distinct keys must sign
    pub threshold: u64,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Length, hashes and version of a metadata file, as listed in timestamp
/// and snapshot `meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaFile {
    /// version of the listed metadata
    pub version: u64,
    /// length in bytes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// hashes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Hashes>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// A target file entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    /// length in bytes
    pub length: u64,
    /// hashes
    pub hashes: Hashes,
    /// opaque application data
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Root metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// always `root`
    #[serde(rename = "_type")]
    pub type_: String,
    /// spec version string
    pub spec_version: String,
    /// version
    pub version: u64,
    /// expiry
    #[serde(with = "expires_format")]
    pub expires: DateTime<Utc>,
    /// consistent snapshots (absent means false, as in python-tuf)
    #[serde(default)]
    pub consistent_snapshot: bool,
    /// key id → key
    pub keys: BTreeMap<String, Key>,
    /// role name → keys and threshold
    pub roles: BTreeMap<String, RoleKeys>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Timestamp metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    /// always `timestamp`
    #[serde(rename = "_type")]
    pub type_: String,
    /// spec version string
    pub spec_version: String,
    /// version
    pub version: u64,
    /// expiry
    #[serde(with = "expires_format")]
    pub expires: DateTime<Utc>,
    /// must contain `snapshot.json`
    pub meta: BTreeMap<String, MetaFile>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Snapshot metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// always `snapshot`
    #[serde(rename = "_type")]
    pub type_: String,
    /// spec version string
    pub spec_version: String,
    /// version
    pub version: u64,
    /// expiry
    #[serde(with = "expires_format")]
    pub expires: DateTime<Utc>,
    /// `ROLE.json` → version (and optional length/hashes)
    pub meta: BTreeMap<String, MetaFile>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Targets metadata (top-level or delegated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// always `targets`
    #[serde(rename = "_type")]
    pub type_: String,
    /// spec version string
    pub spec_version: String,
    /// version
    pub version: u64,
    /// expiry
    #[serde(with = "expires_format")]
    pub expires: DateTime<Utc>,
    /// target path → file info
    pub targets: BTreeMap<String, TargetFile>,
    /// delegations, if any
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Delegations of a targets role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delegations {
    /// key id → key
    pub keys: BTreeMap<String, Key>,
    /// explicit delegated roles, in priority order
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    /// TAP 15 succinct hash-bin delegation
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// One explicitly delegated role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegatedRole {
    /// role name
    pub name: String,
    /// key ids allowed to sign
    pub keyids: Vec<String>,
    /// how many distinct keys must sign
    pub threshold: u64,
    /// stop the search here if this role matches the path
    #[serde(default)]
    pub terminating: bool,
    /// path patterns (fnmatch-like, per path segment)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// hex prefixes of sha256(target path)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// TAP 15 succinct hash-bin delegation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccinctRoles {
    /// key ids allowed to sign every bin
    pub keyids: Vec<String>,
    /// threshold for every bin
    pub threshold: u64,
    /// number of leading bits of sha256(path) selecting the bin (1..=32)
    pub bit_length: u32,
    /// bin names are `{name_prefix}-{hex}`
    pub name_prefix: String,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Common accessors of the four `signed` types.
pub trait Signed: Serialize + DeserializeOwned + Clone {
    /// the `_type` value
    const TYPE: &'static str;
    /// `_type` as parsed
    fn type_field(&self) -> &str;
    /// spec version string
    fn spec_version(&self) -> &str;
    /// version
    fn version(&self) -> u64;
    /// expiry
    fn expires(&self) -> DateTime<Utc>;
    /// type-specific validation beyond serde
    fn validate(&self, role: &str) -> Result<()>;
    /// true when expired at `now` (expired means `now >= expires`)
    fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires()
    }
}

macro_rules! signed_common {
    ($t:ty, $name:literal) => {
        impl Signed for $t {
            const TYPE: &'static str = $name;
            fn type_field(&self) -> &str {
                &self.type_
            }
            fn spec_version(&self) -> &str {
                &self.spec_version
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> DateTime<Utc> {
                self.expires
            }
            fn validate(&self, role: &str) -> Result<()> {
                self.validate_specific(role)
            }
        }
    };
}
signed_common!(Root, "root");
signed_common!(Timestamp, "timestamp");
signed_common!(Snapshot, "snapshot");
signed_common!(Targets, "targets");

fn check_threshold(role: &str, field: &str, threshold: u64) -> Result<()> {
    if threshold == 0 {
        return Err(Error::schema(
            role,
            field,
            "threshold must be at least 1, got 0",
        ));
    }
    Ok(())
}

fn check_unique_keyids(role: &str, field: &str, keyids: &[String]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for k in keyids {
        if !seen.insert(k) {
            return Err(Error::schema(
                role,
                field,
                format!("key id {k} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_hashes(role: &str, field: &str, hashes: &Hashes) -> Result<()> {
    if hashes.is_empty() {
        return Err(Error::schema(role, field, "hashes must not be empty"));
    }
    Ok(())
}

impl MetaFile {
    fn validate(&self, role: &str, name: &str) -> Result<()> {
        if self.version == 0 {
            return Err(Error::schema(
                role,
                &format!("meta.{name}.version"),
                "version must be at least 1, got 0",
            ));
        }
        if self.length == Some(0) {
            return Err(Error::schema(
                role,
                &format!("meta.{name}.length"),
                "length must be at least 1, got 0",
            ));
        }
        if let Some(h) = &self.hashes {
            check_hashes(role, &format!("meta.{name}.hashes"), h)?;
        }
        Ok(())
    }

    /// Plain entry with only a version (what timestamp/snapshot usually carry).
    pub fn with_version(version: u64) -> Self {
        MetaFile {
            version,
            length: None,
            hashes: None,
            unknown: Unknown::new(),
        }
    }
}

impl Root {
    fn validate_specific(&self, role: &str) -> Result<()> {
        for name in TOP_LEVEL_ROLES {
            let r = self.roles.get(name).ok_or_else(|| {
                Error::schema(role, "roles", format!("top-level role {name:?} is missing"))
            })?;
            check_threshold(role, &format!("roles.{name}.threshold"), r.threshold)?;
            check_unique_keyids(role, &format!("roles.{name}.keyids"), &r.keyids)?;
        }
        if let Some(extra) = self
            .roles
            .keys()
            .find(|n| !TOP_LEVEL_ROLES.contains(&n.as_str()))
        {
            return Err(Error::schema(
                role,
                "roles",
                format!(
                    "unexpected role {extra:?}: root lists only root, timestamp, snapshot, targets"
                ),
            ));
        }
        Ok(())
    }

    /// Keys and threshold of a top-level role.
    pub fn role_keys(&self, name: &str) -> Option<&RoleKeys> {
        self.roles.get(name)
    }
}

impl Timestamp {
    fn validate_specific(&self, role: &str) -> Result<()> {
        if !self.meta.contains_key("snapshot.json") {
            return Err(Error::schema(role, "meta", "must list \"snapshot.json\""));
        }
        for (name, m) in &self.meta {
            m.validate(role, name)?;
        }
        Ok(())
    }

    /// The `snapshot.json` entry (validated to exist at parse time).
    pub fn snapshot_meta(&self) -> Option<&MetaFile> {
        self.meta.get("snapshot.json")
    }
}

impl Snapshot {
    fn validate_specific(&self, role: &str) -> Result<()> {
        for (name, m) in &self.meta {
            m.validate(role, name)?;
        }
        Ok(())
    }
}

impl Targets {
    fn validate_specific(&self, role: &str) -> Result<()> {
        for (path, t) in &self.targets {
            check_hashes(role, &format!("targets.{path}.hashes"), &t.hashes)?;
        }
        if let Some(d) = &self.delegations {
            d.validate(role)?;
        }
        Ok(())
    }
}

impl Delegations {
    fn validate(&self, role: &str) -> Result<()> {
        match (&self.roles, &self.succinct_roles) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::schema(
                    role,
                    "delegations",
                    "exactly one of `roles` and `succinct_roles` must be set",
                ))
            }
            (Some(roles), None) => {
                let mut names = BTreeSet::new();
                for r in roles {
                    let f = format!("delegations.roles.{}", r.name);
                    if TOP_LEVEL_ROLES.contains(&r.name.as_str()) {
                        return Err(Error::schema(
                            role,
                            &f,
                            "a delegated role must not use a top-level role name",
                        ));
                    }
                    if r.name.is_empty() {
                        return Err(Error::schema(role, &f, "role name must not be empty"));
                    }
                    if !names.insert(r.name.as_str()) {
                        return Err(Error::schema(role, &f, "role name is delegated twice"));
                    }
                    check_threshold(role, &format!("{f}.threshold"), r.threshold)?;
                    check_unique_keyids(role, &format!("{f}.keyids"), &r.keyids)?;
                    if r.paths.is_some() && r.path_hash_prefixes.is_some() {
                        return Err(Error::schema(
                            role,
                            &f,
                            "only one of `paths` and `path_hash_prefixes` may be set",
                        ));
                    }
                }
            }
            (None, Some(s)) => {
                check_threshold(role, "delegations.succinct_roles.threshold", s.threshold)?;
                check_unique_keyids(role, "delegations.succinct_roles.keyids", &s.keyids)?;
                if !(1..=32).contains(&s.bit_length) {
                    return Err(Error::schema(
                        role,
                        "delegations.succinct_roles.bit_length",
                        format!("must be in 1..=32, got {}", s.bit_length),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Check `spec_version` (see module docs for the rule).
pub fn check_spec_version(role: &str, v: &str) -> Result<()> {
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(parts.len() == 2 || parts.len() == 3) || !numeric || parts.first() != Some(&"1") {
        return Err(Error::UnsupportedSpecVersion {
            role: role.to_owned(),
            found: v.to_owned(),
        });
    }
    Ok(())
}

/// A parsed and well-formed (but not yet signature-checked) metadata
/// envelope. The typed `signed` view is parsed from the raw value, and the
/// canonical bytes of the raw value are what signatures cover.
#[derive(Debug, Clone)]
pub struct Metadata<T> {
    /// typed view of `signed`
    pub signed: T,
    /// signatures as received
    pub signatures: Vec<Signature>,
    signed_value: Value,
    canonical_signed: Vec<u8>,
}

impl<T: Signed> Metadata<T> {
    /// Parse untrusted bytes: strict JSON, envelope shape, `_type` must be
    /// `T::TYPE`, `spec_version` major 1, version ≥ 1, type-specific rules.
    /// `role` is the role name used in errors (a delegated role's name for
    /// delegated targets). No signature is checked here.
    pub fn from_bytes(role: &str, bytes: &[u8]) -> Result<Self> {
        let v = cjson::parse_strict(role, bytes)?;
        Self::from_value(role, v)
    }

    /// Like [`Metadata::from_bytes`] from an already parsed value.
    pub fn from_value(role: &str, v: Value) -> Result<Self> {
        let Value::Object(mut top) = v else {
            return Err(Error::schema(role, "(top level)", "must be a JSON object"));
        };
        let signed_value = top
            .remove("signed")
            .ok_or_else(|| Error::schema(role, "signed", "missing"))?;
        if !signed_value.is_object() {
            return Err(Error::schema(role, "signed", "must be an object"));
        }
        let sigs_value = top
            .remove("signatures")
            .ok_or_else(|| Error::schema(role, "signatures", "missing"))?;
        let signatures: Vec<Signature> = serde_json::from_value(sigs_value)
            .map_err(|e| Error::schema(role, "signatures", e.to_string()))?;
        // Check _type before anything else so role confusion gets a clear error.
        match signed_value.get("_type") {
            Some(Value::String(t)) if t == T::TYPE => {}
            Some(Value::String(t)) => {
                return Err(Error::WrongType {
                    role: role.to_owned(),
                    expected: T::TYPE.to_owned(),
                    found: t.clone(),
                })
            }
            _ => {
                return Err(Error::schema(
                    role,
                    "signed._type",
                    "missing or not a string",
                ))
            }
        }
        match signed_value.get("spec_version") {
            Some(Value::String(s)) => check_spec_version(role, s)?,
            _ => {
                return Err(Error::schema(
                    role,
                    "signed.spec_version",
                    "missing or not a string",
                ))
            }
        }
        let canonical_signed = cjson::canonical_bytes(role, &signed_value)?;
        // Deserialize from a borrow: no copy of a multi-megabyte value.
        let signed: T = T::deserialize(&signed_value)
            .map_err(|e| Error::schema(role, "signed", e.to_string()))?;
        if signed.version() == 0 {
            return Err(Error::schema(
                role,
                "signed.version",
                "version must be at least 1, got 0",
            ));
        }
        signed.validate(role)?;
        Ok(Metadata {
            signed,
            signatures,
            signed_value,
            canonical_signed,
        })
    }

    /// The raw `signed` value as received.
    pub fn signed_value(&self) -> &Value {
        &self.signed_value
    }

    /// Canonical JSON of the raw `signed` value: the bytes signatures cover.
    pub fn canonical_signed(&self) -> &[u8] {
        &self.canonical_signed
    }
}
