//! custody-tuf: the sans-IO TUF 1.0.x verification core.
//!
//! Everything that decides whether metadata or a target is trusted lives
//! here. No network, no files, no clock: bytes, the reference time
//! (`chrono::DateTime<Utc>`) and [`Limits`] are arguments. The IO shell
//! (`custody-client`) moves bytes and calls this crate.
//!
//! # Workflow (one refresh)
//!
//! [`Refresh`] drives the whole sequence below as a sans-IO step machine
//! (it asks for files, takes bytes back and says which verified bytes to
//! persist); every caller (custody-client's `Updater`, the device agent,
//! the server) uses it. What it does, by hand:
//!
//! ```text
//! let mut t = TrustedMetadata::with_limits(&local_root_bytes, limits)?;   // self-signed, threshold
//! for _ in 0..limits.max_root_rotations {                                 // spec 5.3
//!     fetch t.next_root_filename() (≤ limits.max_root_bytes); stop on 404/403
//!     let u = t.update_root(&bytes)?;  persist as root.json
//!     if u.discard_timestamp_and_snapshot { delete local timestamp.json + snapshot.json }
//! }
//! // local timestamp first (errors ignored, it only serves as rollback reference),
//! // unless t.must_discard_timestamp_and_snapshot() (then delete it instead):
//! let _ = t.update_timestamp(&local_ts, now);
//! match t.update_timestamp(&remote_ts, now)? {            // ≤ t.max_length("timestamp")
//!     TimestampUpdate::Updated => persist, TimestampUpdate::Unchanged => keep local }
//! // snapshot: local copy first (no hash check), if that fails download:
//! if t.update_snapshot(&local_snap, now, true).is_err() {
//!     fetch t.remote_filename("snapshot")? (≤ t.max_length("snapshot"));
//!     t.update_snapshot(&bytes, now, false)?; persist }
//! // targets the same way with t.update_targets(&bytes, now)
//! // lookup:
//! let mut s = TargetSearch::new(path, limits.max_delegations);
//! loop { match s.next(&t)? {
//!     SearchStep::Found { role, target } => break,
//!     SearchStep::NotFound => break,
//!     SearchStep::Load { role, delegator } =>   // local first, then remote
//!         t.update_delegated_targets(&bytes, &role, &delegator, now)?, } }
//! // download: t.target_remote_path(path, &target); stream through
//! let mut v = TargetVerifier::new(path, &target)?; v.update(chunk)?…; v.finish()?;
//! ```
//!
//! Local file names: [`encode_role_filename`] / [`local_metadata_filename`]
//! for metadata, [`encode_target_filename`] for targets (python-tuf's
//! `quote(name, "")`).
//!
//! # Rules and where they are written down
//! - canonical JSON, strict parsing (duplicate keys, floats, NFC): [`cjson`]
//! - `spec_version` (major 1, `1.x` / `1.x.y`), `_type`, field checks: [`schema`]
//! - key types, schemes, threshold counting by distinct public key: [`crypto`]
//! - hash rule (≥1 supported algorithm; all supported must match; unknown
//!   ignored) and streaming length rule: [`verify`]
//! - workflow order, rollback, freeze, mix-and-match, fast-forward: [`trusted`]
//! - the refresh sequence (spec §5 order, python-tuf's requests): [`refresh`]
//! - delegation search, path patterns, hash bins: [`search`]
//! - file names: [`naming`]; limits: [`limits`]
//!
//! # Where custody is stricter than python-tuf
//! - A delegated role is verified against the delegator pointing to it in
//!   the lookup at hand, not whichever delegator loaded it first; the same
//!   role reached through two delegators must have identical content.
//! - Threshold counts distinct public keys: the same key under two key ids
//!   counts once (python-tuf counts key ids).
//! - Duplicate JSON object keys, floats and non-NFC strings are rejected
//!   before any check (see [`cjson`]).
//! - A snapshot whose own version is lower than the trusted snapshot's is a
//!   rollback (python-tuf relies on the timestamp check only).
//! - After a root rotation that changed timestamp/snapshot keys, loading a
//!   local snapshot is refused (fast-forward recovery, spec 5.3.11), and the
//!   client is told to delete local timestamp/snapshot.
//! - Equal-version timestamps keep the trusted one but still report the
//!   trusted one's expiry immediately.
//! - `update_root` itself refuses more than `Limits::max_root_rotations`
//!   rotations per refresh (the client loop is the first guard).
//! - Target file names `.`/`..`/empty are escaped ([`encode_target_filename`]).
//!
//! # Where custody is more lenient than python-tuf
//! - A hash list with one supported and one unknown algorithm is accepted
//!   if the supported one matches (python-tuf rejects unknown algorithms).
//! - The same key id signing twice is counted once instead of rejecting the
//!   whole metadata.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cjson;
pub mod crypto;
pub mod error;
pub mod limits;
pub mod naming;
pub mod refresh;
pub mod schema;
pub mod search;
pub mod trusted;
pub mod verify;

pub use crypto::{
    signature_report, verify_hashes, verify_threshold, Algorithm, HashAlgorithm, PublicKey,
    SignatureReport,
};
pub use error::{Error, ErrorKind, Result};
pub use limits::{
    Limits, MAX_DELEGATIONS, MAX_ROOT_BYTES, MAX_ROOT_ROTATIONS, MAX_SNAPSHOT_BYTES,
    MAX_TARGETS_BYTES, MAX_TIMESTAMP_BYTES,
};
pub use naming::{
    consistent_target_path, encode_role_filename, encode_target_filename, local_metadata_filename,
    metadata_filename,
};
pub use refresh::{CheckError, Fetch, Refresh, Source, Step, StoreWrite, TargetsCheck};
pub use schema::{
    check_spec_version, parse_expires, DelegatedRole, Delegations, Hashes, Key, KeyVal, MetaFile,
    Metadata, RoleKeys, Root, Signature, Signed, Snapshot, SuccinctRoles, TargetFile, Targets,
    Timestamp, Unknown, SPEC_VERSION, TOP_LEVEL_ROLES,
};
pub use search::{fnmatch, path_matches_pattern, roles_for_target, SearchStep, TargetSearch};
pub use trusted::{RootUpdate, TimestampUpdate, TrustedMetadata};
pub use verify::TargetVerifier;
