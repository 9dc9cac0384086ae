//! Metadata bytes: serialize exactly as written and published, parse back
//! strictly (custody-tuf), read staged files with a size bound.
use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use custody_tuf::{Key, Metadata, Signature, Signed, Targets, SPEC_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RepoError;

use super::{Envelope, METADATA_DIR};

/// Largest metadata file custody reads back from its own staging area.
const MAX_METADATA_FILE: u64 = 64 * 1024 * 1024;

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Serialize an envelope exactly as it is written to disk and published.
pub fn envelope_bytes<T: Serialize>(env: &Envelope<T>) -> Result<Vec<u8>, RepoError> {
    let mut v = serde_json::to_vec_pretty(env)
        .map_err(|e| RepoError::Invalid(format!("serializing metadata: {e}")))?;
    v.push(b'\n');
    Ok(v)
}

/// [`envelope_bytes`], then parse the result back with custody-tuf's strict
/// parser and require the same canonical `signed` bytes. Catches anything
/// custody could write but clients would reject or read differently (e.g.
/// strings not in Unicode NFC, which canonical JSON would normalise).
pub fn checked_envelope_bytes<T: Signed>(
    role: &str,
    env: &Envelope<T>,
) -> Result<Vec<u8>, RepoError> {
    checked_envelope_bytes_signed(role, env, None)
}

/// [`checked_envelope_bytes`]. With the role's keys: when a signature on
/// the envelope by one of them verifies over the canonical form of the
/// parsed bytes, those bytes parse back to exactly the content that was
/// signed (custody signs the canonical form of the typed value), so the
/// second canonicalisation of the typed value is skipped (for hash bins
/// it is a third of `save`'s CPU time). Without a verifying signature the
/// canonical forms are compared as before.
pub(super) fn checked_envelope_bytes_signed<T: Signed>(
    role: &str,
    env: &Envelope<T>,
    keys: Option<(&[String], &BTreeMap<String, Key>)>,
) -> Result<Vec<u8>, RepoError> {
    let bytes = envelope_bytes(env)?;
    let m = Metadata::<T>::from_bytes(role, &bytes).map_err(|e| RepoError::Role {
        role: role.into(),
        detail: format!("custody would write metadata that TUF clients reject: {e}"),
    })?;
    if let Some((keyids, keys)) = keys {
        let signed_by_role =
            custody_tuf::signature_report(role, m.canonical_signed(), &m.signatures, keyids, keys)
                .is_ok_and(|r| !r.counted.is_empty());
        if signed_by_role {
            return Ok(bytes);
        }
    }
    if m.canonical_signed() != canonical_signed(role, env)? {
        return Err(RepoError::Role {
            role: role.into(),
            detail: "written metadata does not parse back to the signed content".into(),
        });
    }
    Ok(bytes)
}

/// The canonical bytes of a role's `signed` as they were signed, kept so
/// that `save` writes (and `publish` verifies) exactly those bytes instead
/// of serializing the role again. Valid while the role's version and
/// expiry are the ones recorded (every change bumps the role, which drops
/// the entry; a version or expiry set by hand no longer matches).
#[derive(Debug, Clone)]
pub(super) struct SignedCanonical {
    pub(super) version: u64,
    pub(super) expires: DateTime<Utc>,
    pub(super) bytes: std::sync::Arc<Vec<u8>>,
}

impl SignedCanonical {
    pub(super) fn of(t: &Targets, bytes: std::sync::Arc<Vec<u8>>) -> Self {
        SignedCanonical {
            version: t.version,
            expires: t.expires,
            bytes,
        }
    }

    /// Whether this is the canonical form of `t` as it stands.
    pub(super) fn matches(&self, t: &Targets) -> bool {
        self.version == t.version && self.expires == t.expires
    }
}

/// The file custody writes for a targets role signed over `signed`, the
/// canonical bytes of its `signed` (as signed): the canonical JSON envelope
/// `{"signatures":[...],"signed":SIGNED}`, holding the signed bytes
/// verbatim, so signatures are checked against exactly the bytes written
/// and nothing is serialized twice.
///
/// Only when every byte of the envelope is printable ASCII: such canonical
/// JSON is also plain JSON, and a strict parse (custody-tuf's, a client's)
/// gives back a value whose canonical form is `signed` again (no control
/// character written raw, no string a client would refuse as non-NFC).
/// `None` otherwise: the caller writes the role the general way, with the
/// parse-back check.
pub(super) fn canonical_envelope_bytes(
    role: &str,
    signatures: &[Signature],
    signed: &[u8],
) -> Result<Option<Vec<u8>>, RepoError> {
    let printable = |b: &[u8]| b.iter().all(|c| (0x20..0x7f).contains(c));
    if !printable(signed) {
        return Ok(None);
    }
    let sigs = custody_tuf::cjson::canonical_bytes(role, signatures)?;
    if !printable(&sigs) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(signed.len() + sigs.len() + 28);
    out.extend_from_slice(b"{\"signatures\":");
    out.extend_from_slice(&sigs);
    out.extend_from_slice(b",\"signed\":");
    out.extend_from_slice(signed);
    out.push(b'}');
    Ok(Some(out))
}

/// The bytes `save` writes for targets role `role`: the canonical envelope
/// around the bytes it was signed over when they are current (see
/// [`canonical_envelope_bytes`]); otherwise the general form, parsed back
/// strictly ([`checked_envelope_bytes_signed`]). Either way custody-tuf's
/// schema rules for the typed role hold.
pub(super) fn targets_file_bytes(
    role: &str,
    env: &Envelope<Targets>,
    signed: Option<&SignedCanonical>,
    keys: Option<(&[String], &BTreeMap<String, Key>)>,
) -> Result<Vec<u8>, RepoError> {
    if let Some(c) = signed.filter(|c| c.matches(&env.signed)) {
        if let Some(bytes) = canonical_envelope_bytes(role, &env.signatures, &c.bytes)? {
            env.signed.validate(role).map_err(|e| RepoError::Role {
                role: role.into(),
                detail: format!("custody would write metadata that TUF clients reject: {e}"),
            })?;
            return Ok(bytes);
        }
    }
    checked_envelope_bytes_signed(role, env, keys)
}

pub(super) fn canonical_signed<T: Serialize>(
    role: &str,
    env: &Envelope<T>,
) -> Result<Vec<u8>, RepoError> {
    Ok(custody_tuf::cjson::canonical_bytes(role, &env.signed)?)
}

pub(super) fn read_bounded(path: &Path) -> Result<Vec<u8>, RepoError> {
    // Open here: a missing file is an error to these callers, not `None`.
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    custody_fs::read_to_end_bounded(f, MAX_METADATA_FILE, path).map_err(fs_err)
}

/// A custody-fs error as this crate reports it (the same texts as before
/// custody-fs: `path: io error`, `larger than N bytes`).
pub(super) fn fs_err(e: custody_fs::FsError) -> RepoError {
    match e {
        custody_fs::FsError::TooLarge { path, bound } => RepoError::BadFile {
            path,
            detail: format!("larger than {bound} bytes"),
        },
        custody_fs::FsError::Io { path, error, .. } => RepoError::Io {
            path,
            source: error,
        },
        custody_fs::FsError::Exists { path } => RepoError::Io {
            path,
            source: std::io::ErrorKind::AlreadyExists.into(),
        },
    }
}

/// Replace (or create) `path` crash-safely, world-readable (0644).
pub(super) fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    custody_fs::write_atomic_with(path, bytes, crate::fsutil::PUBLIC_FILE).map_err(|e| {
        RepoError::Io {
            path: path.to_owned(),
            source: crate::fsutil::into_io(e),
        }
    })
}

/// Parse metadata with custody-tuf's strict parser, and check it
/// round-trips: custody signs the canonical form of the typed value, so it
/// must be the same bytes the signatures on disk cover.
pub fn parse_envelope<T: Signed>(
    role: &str,
    bytes: &[u8],
    path: &Path,
) -> Result<Envelope<T>, RepoError> {
    let m = Metadata::<T>::from_bytes(role, bytes)?;
    let env = Envelope {
        signed: m.signed.clone(),
        signatures: m.signatures.clone(),
    };
    if canonical_signed(role, &env)? != m.canonical_signed() {
        return Err(RepoError::BadFile {
            path: path.to_owned(),
            detail: format!(
                "role {role}: the canonical form of the parsed `signed` differs from the file's (non-canonical timestamps or numbers?); custody cannot re-sign it faithfully"
            ),
        });
    }
    Ok(env)
}

pub(super) fn load_role<T: Signed + DeserializeOwned>(
    dir: &Path,
    role: &str,
) -> Result<Envelope<T>, RepoError> {
    Ok(load_role_bytes(dir, role)?.0)
}

/// [`load_role`], also returning the file's bytes.
pub(super) fn load_role_bytes<T: Signed + DeserializeOwned>(
    dir: &Path,
    role: &str,
) -> Result<(Envelope<T>, Vec<u8>), RepoError> {
    let path = dir
        .join(METADATA_DIR)
        .join(custody_tuf::metadata_filename(role, None));
    let bytes = read_bounded(&path)?;
    Ok((parse_envelope(role, &bytes, &path)?, bytes))
}

/// A delegated role's staged file, typed parse only (see `open`).
pub(super) fn load_role_loose(
    dir: &Path,
    role: &str,
) -> Result<(Envelope<Targets>, Vec<u8>), RepoError> {
    let path = dir
        .join(METADATA_DIR)
        .join(custody_tuf::metadata_filename(role, None));
    let bytes = read_bounded(&path)?;
    let env: Envelope<Targets> =
        serde_json::from_slice(&bytes).map_err(|e| RepoError::BadFile {
            path: path.clone(),
            detail: format!("role {role}: not targets metadata: {e}"),
        })?;
    Ok((env, bytes))
}

/// Expiry `now + d`, whole seconds (TUF timestamps have no fractions).
pub(super) fn expiry(now: DateTime<Utc>, d: chrono::Duration) -> Result<DateTime<Utc>, RepoError> {
    let t = now
        .checked_add_signed(d)
        .ok_or_else(|| RepoError::Invalid("expiry out of range".into()))?;
    DateTime::from_timestamp(t.timestamp(), 0)
        .ok_or_else(|| RepoError::Invalid("expiry out of range".into()))
}

pub(super) fn new_targets(expires: DateTime<Utc>) -> Targets {
    Targets {
        type_: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version: 1,
        expires,
        targets: BTreeMap::new(),
        delegations: None,
        unknown: Default::default(),
    }
}

pub(super) fn delegated_names(t: &Targets) -> Vec<String> {
    match &t.delegations {
        Some(d) => {
            if let Some(roles) = &d.roles {
                roles.iter().map(|r| r.name.clone()).collect()
            } else if let Some(s) = &d.succinct_roles {
                (0..s.bin_count()).map(|i| s.bin_name(i)).collect()
            } else {
                vec![]
            }
        }
        None => vec![],
    }
}
