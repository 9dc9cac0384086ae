//! The one error type of the crate.
//!
//! Every variant names the role (or target path), the rule that was broken
//! and the values involved. [`Error::kind`] classifies an error so that the
//! client and the agent can tell an attack (rollback, freeze, mix-and-match,
//! endless data, bad signature) from malformed input or API misuse.

use chrono::{DateTime, Utc};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classification of an [`Error`], stable for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bytes are not JSON, or JSON canonical JSON cannot represent
    /// (floats, duplicate keys), or a field is missing or malformed.
    Malformed,
    /// `_type` is not the role that was expected (role confusion).
    WrongType,
    /// `spec_version` has an unsupported major version.
    UnsupportedSpecVersion,
    /// Too few valid signatures from distinct keys (forged or tampered metadata).
    Signature,
    /// A version went backwards compared to trusted metadata (rollback attack),
    /// or a role disappeared from the snapshot.
    Rollback,
    /// Root version is not exactly trusted + 1.
    RootVersionSkip,
    /// Metadata has expired at the reference time (freeze attack).
    Expired,
    /// Length, hash or version differ from what the referring role signed
    /// (mix-and-match attack).
    MixAndMatch,
    /// More bytes than the signed length arrived (endless-data attack), or
    /// metadata larger than its limit.
    TooLarge,
    /// No hash algorithm we support was listed for a file.
    NoSupportedHash,
    /// Delegation problem: the delegator does not delegate the role, or the
    /// same delegated role was served with different content.
    Delegation,
    /// The workflow was called out of order (e.g. snapshot before timestamp).
    Order,
    /// A file the workflow needs is not available (not served, not in the
    /// bundle).
    Missing,
    /// Signature-verified metadata was refused by the caller's check (for
    /// the director repository: not bound to this device).
    Refused,
}

/// Everything that can go wrong while deciding trust.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not valid JSON or contain something canonical JSON
    /// cannot represent (floats, duplicate keys).
    #[error("{role}: invalid JSON: {reason}")]
    Json {
        /// role (or file) being parsed
        role: String,
        /// what is wrong
        reason: String,
    },
    /// A field is missing or has an invalid value.
    #[error("{role}: field `{field}`: {reason}")]
    Schema {
        /// role being parsed
        role: String,
        /// the offending field (dotted path)
        field: String,
        /// what is wrong
        reason: String,
    },
    /// `_type` differs from the expected role type.
    #[error("{role}: `_type` is {found:?}, expected {expected:?} (role confusion)")]
    WrongType {
        /// role being loaded
        role: String,
        /// expected `_type`
        expected: String,
        /// `_type` found in the metadata
        found: String,
    },
    /// Major spec version is not supported.
    #[error("{role}: spec_version {found:?} is not supported (this client accepts 1.x and 1.x.y)")]
    UnsupportedSpecVersion {
        /// role being loaded
        role: String,
        /// the spec_version string found
        found: String,
    },
    /// Canonical JSON serialisation failed.
    #[error("{role}: cannot canonicalise the signed object: {reason}")]
    Canonical {
        /// role being canonicalised
        role: String,
        /// underlying reason
        reason: String,
    },
    /// Fewer than `threshold` distinct keys produced a valid signature.
    #[error("{role}: signature threshold not met: {valid} valid signature(s) from distinct keys of {delegator}, threshold is {threshold}{detail}")]
    ThresholdNotMet {
        /// role whose signatures were checked
        role: String,
        /// whose keys were used (e.g. "trusted root v3", or the delegating role)
        delegator: String,
        /// required threshold
        threshold: u64,
        /// number of distinct keys with a valid signature
        valid: u64,
        /// human-readable details (skipped keys, bad signatures)
        detail: String,
    },
    /// The same key id appears more than once in the `signatures` array.
    /// The specification requires key ids there to be unique; a document
    /// that repeats one is rejected whole, whatever the threshold.
    #[error("{role}: key id {keyid} appears {count} times in \"signatures\"; the specification requires each key id to be unique there")]
    DuplicateSignatureKeyId {
        /// role whose signatures were checked
        role: String,
        /// the repeated key id
        keyid: String,
        /// how many times it appears
        count: usize,
    },
    /// New version of a role is lower than the trusted one.
    #[error("{role}: version {new} is lower than the trusted version {trusted} (rollback attack)")]
    VersionRollback {
        /// role
        role: String,
        /// version in the new metadata
        new: u64,
        /// trusted version
        trusted: u64,
    },
    /// A version listed in meta went backwards.
    #[error("{role}: meta entry {file}: version {new} is lower than the trusted version {trusted} (rollback attack)")]
    MetaRollback {
        /// role carrying the meta (timestamp or snapshot)
        role: String,
        /// meta file name (e.g. "snapshot.json")
        file: String,
        /// version in the new metadata
        new: u64,
        /// version in the trusted metadata
        trusted: u64,
    },
    /// A role listed in the trusted snapshot is missing from the new one.
    #[error("{role}: meta entry {file} is listed in the trusted snapshot but missing from the new one (rollback attack)")]
    MetaRemoved {
        /// role carrying the meta (snapshot)
        role: String,
        /// meta file that vanished
        file: String,
    },
    /// Root version is not exactly trusted + 1.
    #[error("root: version {found} does not follow the trusted version {trusted}: expected exactly {expected}")]
    RootVersionSkip {
        /// trusted root version
        trusted: u64,
        /// expected version (trusted + 1)
        expected: u64,
        /// version found
        found: u64,
    },
    /// Metadata has expired.
    #[error(
        "{role}: expired at {expires} (reference time {now}) (freeze attack or stale repository)"
    )]
    Expired {
        /// role
        role: String,
        /// expiry of the metadata
        expires: DateTime<Utc>,
        /// reference time
        now: DateTime<Utc>,
    },
    /// Version differs from the version the referring role signed.
    #[error("{role}: version {found} differs from version {expected} listed in {source_role} meta (mix-and-match attack)")]
    VersionMismatch {
        /// role being loaded
        role: String,
        /// role whose meta lists it (timestamp / snapshot)
        source_role: String,
        /// version expected from meta
        expected: u64,
        /// version found
        found: u64,
    },
    /// Length differs from the signed length.
    #[error("{role}: length {found} differs from the signed length {expected} (mix-and-match or tampering)")]
    LengthMismatch {
        /// role or target path
        role: String,
        /// signed length
        expected: u64,
        /// actual length
        found: u64,
    },
    /// Hash differs from the signed hash.
    #[error("{role}: {algorithm} hash {found} differs from the signed hash {expected} (mix-and-match or tampering)")]
    HashMismatch {
        /// role or target path
        role: String,
        /// hash algorithm
        algorithm: String,
        /// signed hash (hex)
        expected: String,
        /// actual hash (hex)
        found: String,
    },
    /// None of the listed hash algorithms is supported.
    #[error(
        "{role}: none of the hash algorithms {algorithms:?} is supported (need sha256 or sha512)"
    )]
    NoSupportedHash {
        /// role or target path
        role: String,
        /// algorithms listed
        algorithms: Vec<String>,
    },
    /// More data than allowed.
    #[error("{role}: more than {limit} bytes received (endless-data attack or size limit)")]
    TooLarge {
        /// role or target path
        role: String,
        /// the limit in bytes
        limit: u64,
    },
    /// More root rotations in one refresh than `Limits::max_root_rotations`.
    #[error("root: more than {limit} root rotations in one refresh (limit max_root_rotations)")]
    TooManyRootRotations {
        /// the limit
        limit: u32,
    },
    /// A meta entry the workflow needs is missing.
    #[error("{role}: {source_role} meta does not list {file}")]
    MissingMeta {
        /// role being loaded
        role: String,
        /// role whose meta should list it
        source_role: String,
        /// the meta key looked up
        file: String,
    },
    /// The delegator does not delegate this role.
    #[error("{role}: not delegated by {delegator}")]
    NotDelegated {
        /// role
        role: String,
        /// claimed delegator
        delegator: String,
    },
    /// A delegated role was already loaded with different signed content.
    #[error("{role}: already trusted with different content (loaded via {previous}, now via {delegator}): a role has exactly one content per snapshot")]
    InconsistentRole {
        /// role
        role: String,
        /// delegator of the earlier load
        previous: String,
        /// delegator of this load
        delegator: String,
    },
    /// A file the refresh needs was not available (the root walk ends on a
    /// missing root instead: that is not an error).
    #[error("{role}: {file} is not available")]
    Missing {
        /// role
        role: String,
        /// the file name asked for
        file: String,
    },
    /// The caller's check (see `Refresh::with_targets_check`) refused the
    /// role after its signatures, version and expiry were verified; the
    /// role was not accepted. `source` is the caller's own error.
    #[error("{role}: refused before it was accepted: {source}")]
    Refused {
        /// role
        role: String,
        /// the caller's reason (downcast it to the caller's error type)
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Workflow called out of order.
    #[error("{role}: {reason}")]
    Order {
        /// role the call was about
        role: String,
        /// what order rule was broken
        reason: String,
    },
}

impl Error {
    /// Classify the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Json { .. } | Error::Schema { .. } | Error::Canonical { .. } => {
                ErrorKind::Malformed
            }
            Error::WrongType { .. } => ErrorKind::WrongType,
            Error::UnsupportedSpecVersion { .. } => ErrorKind::UnsupportedSpecVersion,
            Error::ThresholdNotMet { .. } => ErrorKind::Signature,
            Error::DuplicateSignatureKeyId { .. } => ErrorKind::Signature,
            Error::VersionRollback { .. }
            | Error::MetaRollback { .. }
            | Error::MetaRemoved { .. } => ErrorKind::Rollback,
            Error::RootVersionSkip { .. } => ErrorKind::RootVersionSkip,
            Error::Expired { .. } => ErrorKind::Expired,
            Error::VersionMismatch { .. }
            | Error::LengthMismatch { .. }
            | Error::HashMismatch { .. } => ErrorKind::MixAndMatch,
            Error::NoSupportedHash { .. } => ErrorKind::NoSupportedHash,
            Error::TooLarge { .. } | Error::TooManyRootRotations { .. } => ErrorKind::TooLarge,
            Error::MissingMeta { .. } => ErrorKind::MixAndMatch,
            Error::NotDelegated { .. } | Error::InconsistentRole { .. } => ErrorKind::Delegation,
            Error::Order { .. } => ErrorKind::Order,
            Error::Missing { .. } => ErrorKind::Missing,
            Error::Refused { .. } => ErrorKind::Refused,
        }
    }

    /// True for rollback attacks (a version went backwards or a role vanished).
    pub fn is_rollback(&self) -> bool {
        self.kind() == ErrorKind::Rollback
    }

    /// True when metadata has expired (freeze attack or stale repository).
    pub fn is_expired(&self) -> bool {
        self.kind() == ErrorKind::Expired
    }

    /// True when signatures did not meet the threshold.
    pub fn is_signature(&self) -> bool {
        self.kind() == ErrorKind::Signature
    }

    /// True for mix-and-match (length/hash/version mismatch vs signed meta).
    pub fn is_mix_and_match(&self) -> bool {
        self.kind() == ErrorKind::MixAndMatch
    }

    /// The role (or target path) the error is about.
    pub fn role(&self) -> &str {
        match self {
            Error::Json { role, .. }
            | Error::Schema { role, .. }
            | Error::WrongType { role, .. }
            | Error::UnsupportedSpecVersion { role, .. }
            | Error::Canonical { role, .. }
            | Error::ThresholdNotMet { role, .. }
            | Error::DuplicateSignatureKeyId { role, .. }
            | Error::VersionRollback { role, .. }
            | Error::MetaRollback { role, .. }
            | Error::MetaRemoved { role, .. }
            | Error::Expired { role, .. }
            | Error::VersionMismatch { role, .. }
            | Error::LengthMismatch { role, .. }
            | Error::HashMismatch { role, .. }
            | Error::NoSupportedHash { role, .. }
            | Error::TooLarge { role, .. }
            | Error::MissingMeta { role, .. }
            | Error::NotDelegated { role, .. }
            | Error::InconsistentRole { role, .. }
            | Error::Missing { role, .. }
            | Error::Refused { role, .. }
            | Error::Order { role, .. } => role,
            Error::RootVersionSkip { .. } | Error::TooManyRootRotations { .. } => "root",
        }
    }

    pub(crate) fn schema(role: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::Schema {
            role: role.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn order(role: &str, reason: impl Into<String>) -> Self {
        Error::Order {
            role: role.to_owned(),
            reason: reason.into(),
        }
    }
}
