//! The director repository, per device.
//!
//! The director serves each device its own TUF repository: one shared
//! director root (offline root keys; online targets/snapshot/timestamp keys)
//! and, per device, targets / snapshot / timestamp metadata generated on
//! demand and signed with the director's online keys (any
//! custody-keys [`Signer`]: key file or PKCS#11).
//!
//! # Device binding (never "empty")
//! Director targets metadata always carries, in the signed object, the field
//! `"x-custody-device": {"device_id": …, "hardware_id": …}`, whether or not
//! it lists any target. An empty `targets` map therefore means "this device
//! should install nothing" and cannot be replayed to another device, which
//! a bare empty targets document could. Each listed target also carries
//! `custom: {"device_id", "hardware_id", "release_counter", …}`, so a single
//! entry lifted into another document is still bound. The device checks both
//! with [`verify_director_targets_for_device`], after custody-tuf verified
//! the signatures, versions and expiry (that check never re-implements them).
//!
//! # Versions and expiry
//! Per device, versions come from [`DeviceDirectorState`] (stored by the
//! server per device, returned updated by every build) and only grow. All
//! three roles expire after [`DirectorConfig::expiry`] (default 1 day).
//! A server may cache the bytes and, when the assignment is unchanged, only
//! re-sign the timestamp ([`refresh_timestamp`]).
//!
//! # A device offline past expiry
//! Its stored director timestamp/snapshot/targets have expired. Expired
//! metadata is never accepted (custody-tuf refuses it: freeze protection),
//! and nothing about that is relaxed for a late device. Recovery is the
//! normal TUF refresh: the device fetches the current root chain (if the
//! director root rotated; the root is long-lived and offline-signed), then a
//! fresh timestamp, snapshot and targets, which the director signs on demand
//! with versions above the ones the device holds, so the rollback checks
//! pass. The device keeps its identity (enrolment is not repeated); its
//! signed requests only need its clock within the request window, and a
//! device whose clock is wrong learns the time from the `Date` of a failed
//! request and retries (the metadata expiry check itself uses that clock, so
//! a device clock set far in the past is the one residual freeze risk, as
//! in all TUF clients). A device that also missed re-attestation must
//! re-attest first (see [`crate::registry`]).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use custody_keys::Signer;
use custody_tuf::{
    Hashes, Key, MetaFile, RoleKeys, Root, Snapshot, TargetFile, Targets, Timestamp,
};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::image::{self, ImageCustom};

/// Name of the signed top-level binding field.
pub const DEVICE_BINDING_FIELD: &str = "x-custody-device";

/// Default expiry of per-device director metadata.
pub const DEFAULT_EXPIRY_SECS: i64 = 24 * 3600;

/// Director settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectorConfig {
    /// expiry of targets, snapshot and timestamp
    pub expiry: Duration,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            expiry: Duration::seconds(DEFAULT_EXPIRY_SECS),
        }
    }
}

/// Per-device version counters (persisted by the server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDirectorState {
    /// last targets version issued
    pub targets_version: u64,
    /// last snapshot version issued
    pub snapshot_version: u64,
    /// last timestamp version issued
    pub timestamp_version: u64,
}

/// One target assigned to the device.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectorTarget {
    /// target path (as in the image repository)
    pub name: String,
    /// length (must equal the image repository's)
    pub length: u64,
    /// hashes (must equal the image repository's)
    pub hashes: Hashes,
    /// release counter
    pub release_counter: u64,
    /// a verified rollback authorisation, passed to the device verbatim
    pub rollback_authorization: Option<Value>,
}

/// The director's online signers.
#[derive(Clone, Copy)]
pub struct DirectorSigners<'a> {
    /// targets role
    pub targets: &'a dyn Signer,
    /// snapshot role
    pub snapshot: &'a dyn Signer,
    /// timestamp role
    pub timestamp: &'a dyn Signer,
}

impl std::fmt::Debug for DirectorSigners<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorSigners")
            .field("targets", &self.targets.keyid())
            .field("snapshot", &self.snapshot.keyid())
            .field("timestamp", &self.timestamp.keyid())
            .finish()
    }
}

/// Freshly signed per-device metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorMetadata {
    /// `targets.json`
    pub targets: Vec<u8>,
    /// `snapshot.json`
    pub snapshot: Vec<u8>,
    /// `timestamp.json`
    pub timestamp: Vec<u8>,
    /// the counters to persist
    pub state: DeviceDirectorState,
}

/// Director errors (building, or the device-side binding check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectorError {
    /// signing failed
    #[error("director: signing {role} failed: {detail}")]
    Sign {
        /// role
        role: &'static str,
        /// detail
        detail: String,
    },
    /// serialisation failed
    #[error("director: encoding {role}: {detail}")]
    Encode {
        /// role
        role: &'static str,
        /// detail
        detail: String,
    },
    /// the binding field is missing or malformed
    #[error("director targets: signed field `{DEVICE_BINDING_FIELD}` is missing or malformed ({detail}); director metadata must name its device")]
    Unbound {
        /// what is wrong
        detail: String,
    },
    /// metadata for another device
    #[error("director targets: metadata is for device {found_device} (hardware {found_hardware:?}), this is device {device} (hardware {hardware:?})")]
    OtherDevice {
        /// this device
        device: String,
        /// this hardware id
        hardware: String,
        /// the metadata's device
        found_device: String,
        /// the metadata's hardware id
        found_hardware: String,
    },
    /// director and image repository disagree on a target
    #[error("target {target:?}: director and image repository disagree on {field}: director {director}, image repository {image}")]
    ImageMismatch {
        /// target path
        target: String,
        /// `length` or `hashes`
        field: &'static str,
        /// director's value
        director: String,
        /// image repository's value
        image: String,
    },
    /// the image repository's signed custom metadata contradicts the
    /// director's assignment or the device
    #[error("target {target:?}: image repository custom.{field} is {image}, but {expected_from} says {expected}")]
    ImageCustom {
        /// target path
        target: String,
        /// `hardware_id`, `hardware_ids` or `release_counter`
        field: &'static str,
        /// the image repository's value
        image: String,
        /// who says otherwise (`this device`, `the director`)
        expected_from: &'static str,
        /// their value
        expected: String,
    },
    /// a target entry is bound to another device or lacks its binding
    #[error(
        "director targets: target {target:?}: custom.{field} is {found:?}, expected {expected:?}"
    )]
    TargetBinding {
        /// target path
        target: String,
        /// custom field
        field: &'static str,
        /// expected value
        expected: String,
        /// found value (or "missing")
        found: String,
    },
}

fn expires(now: DateTime<Utc>, cfg: &DirectorConfig) -> DateTime<Utc> {
    now.trunc_subsecs(0)
        .checked_add_signed(cfg.expiry)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Sign a typed `signed` object into envelope bytes.
fn sign_envelope<T: Serialize>(
    role: &'static str,
    signed: &T,
    signers: &[&dyn Signer],
) -> Result<Vec<u8>, DirectorError> {
    let value = serde_json::to_value(signed).map_err(|e| DirectorError::Encode {
        role,
        detail: e.to_string(),
    })?;
    let msg =
        custody_tuf::cjson::canonical_bytes(role, &value).map_err(|e| DirectorError::Encode {
            role,
            detail: e.to_string(),
        })?;
    let mut sigs = Vec::with_capacity(signers.len());
    for s in signers {
        let sig = s.sign(&msg).map_err(|e| DirectorError::Sign {
            role,
            detail: e.to_string(),
        })?;
        sigs.push(json!({"keyid": s.keyid(), "sig": hex::encode(sig)}));
    }
    serde_json::to_vec(&json!({"signatures": sigs, "signed": value})).map_err(|e| {
        DirectorError::Encode {
            role,
            detail: e.to_string(),
        }
    })
}

fn meta_for(bytes: &[u8], version: u64) -> MetaFile {
    let mut hashes = Hashes::new();
    hashes.insert(
        "sha256".into(),
        hex::encode(digest::digest(&digest::SHA256, bytes)),
    );
    MetaFile {
        version,
        length: Some(bytes.len() as u64),
        hashes: Some(hashes),
        unknown: Default::default(),
    }
}

/// Build the device's targets, snapshot and timestamp, all with versions one
/// above `prev`.
pub fn build_director_metadata(
    signers: DirectorSigners<'_>,
    device_id: &str,
    hardware_id: &str,
    assigned: &[DirectorTarget],
    prev: &DeviceDirectorState,
    now: DateTime<Utc>,
    cfg: &DirectorConfig,
) -> Result<DirectorMetadata, DirectorError> {
    let exp = expires(now, cfg);
    let mut state = *prev;
    state.targets_version = prev.targets_version.saturating_add(1);
    state.snapshot_version = prev.snapshot_version.saturating_add(1);
    let mut targets = BTreeMap::new();
    for t in assigned {
        let mut custom = json!({
            "device_id": device_id,
            "hardware_id": hardware_id,
            "release_counter": t.release_counter,
        });
        if let (Some(auth), Some(o)) = (&t.rollback_authorization, custom.as_object_mut()) {
            o.insert("rollback_authorization".into(), auth.clone());
        }
        targets.insert(
            t.name.clone(),
            TargetFile {
                length: t.length,
                hashes: t.hashes.clone(),
                custom: Some(custom),
                unknown: Default::default(),
            },
        );
    }
    let mut unknown = BTreeMap::new();
    unknown.insert(
        DEVICE_BINDING_FIELD.to_owned(),
        json!({"device_id": device_id, "hardware_id": hardware_id}),
    );
    let t = Targets {
        type_: "targets".into(),
        spec_version: custody_tuf::SPEC_VERSION.into(),
        version: state.targets_version,
        expires: exp,
        targets,
        delegations: None,
        unknown,
    };
    let targets_bytes = sign_envelope("targets", &t, &[signers.targets])?;
    let mut meta = BTreeMap::new();
    meta.insert(
        "targets.json".to_owned(),
        MetaFile::with_version(state.targets_version),
    );
    let s = Snapshot {
        type_: "snapshot".into(),
        spec_version: custody_tuf::SPEC_VERSION.into(),
        version: state.snapshot_version,
        expires: exp,
        meta,
        unknown: Default::default(),
    };
    let snapshot_bytes = sign_envelope("snapshot", &s, &[signers.snapshot])?;
    let (timestamp_bytes, state) =
        refresh_timestamp(signers.timestamp, &snapshot_bytes, &state, now, cfg)?;
    Ok(DirectorMetadata {
        targets: targets_bytes,
        snapshot: snapshot_bytes,
        timestamp: timestamp_bytes,
        state,
    })
}

/// Re-sign only the timestamp for an unchanged snapshot (`snapshot_bytes`,
/// version `prev.snapshot_version`): the cheap path for a device whose
/// assignment did not change.
pub fn refresh_timestamp(
    signer: &dyn Signer,
    snapshot_bytes: &[u8],
    prev: &DeviceDirectorState,
    now: DateTime<Utc>,
    cfg: &DirectorConfig,
) -> Result<(Vec<u8>, DeviceDirectorState), DirectorError> {
    let mut state = *prev;
    state.timestamp_version = prev.timestamp_version.saturating_add(1);
    let mut meta = BTreeMap::new();
    meta.insert(
        "snapshot.json".to_owned(),
        meta_for(snapshot_bytes, state.snapshot_version),
    );
    let ts = Timestamp {
        type_: "timestamp".into(),
        spec_version: custody_tuf::SPEC_VERSION.into(),
        version: state.timestamp_version,
        expires: expires(now, cfg),
        meta,
        unknown: Default::default(),
    };
    Ok((sign_envelope("timestamp", &ts, &[signer])?, state))
}

/// Keys of the director root.
#[derive(Clone, Copy)]
pub struct DirectorRootKeys<'a> {
    /// offline root signers (all sign)
    pub root: &'a [&'a dyn Signer],
    /// root threshold
    pub root_threshold: u64,
    /// online targets key
    pub targets: &'a Key,
    /// online snapshot key
    pub snapshot: &'a Key,
    /// online timestamp key
    pub timestamp: &'a Key,
}

/// Build and sign a director root (shared by every device; offline keys).
/// Production roots are authored with custody-repo's tooling; this helper
/// serves tests, benches and first-run bootstrap.
pub fn build_director_root(
    keys: DirectorRootKeys<'_>,
    version: u64,
    expires: DateTime<Utc>,
) -> Result<Vec<u8>, DirectorError> {
    let enc = |e: custody_tuf::Error| DirectorError::Encode {
        role: "root",
        detail: e.to_string(),
    };
    let mut all = BTreeMap::new();
    let mut roles = BTreeMap::new();
    let mut root_ids = Vec::new();
    for s in keys.root {
        all.insert(s.keyid().to_owned(), s.key().clone());
        root_ids.push(s.keyid().to_owned());
    }
    roles.insert(
        "root".to_owned(),
        RoleKeys {
            keyids: root_ids,
            threshold: keys.root_threshold,
            unknown: Default::default(),
        },
    );
    for (role, k) in [
        ("targets", keys.targets),
        ("snapshot", keys.snapshot),
        ("timestamp", keys.timestamp),
    ] {
        let id = k.key_id().map_err(enc)?;
        all.insert(id.clone(), k.clone());
        roles.insert(
            role.to_owned(),
            RoleKeys {
                keyids: vec![id],
                threshold: 1,
                unknown: Default::default(),
            },
        );
    }
    let root = Root {
        type_: "root".into(),
        spec_version: custody_tuf::SPEC_VERSION.into(),
        version,
        expires: expires.trunc_subsecs(0),
        consistent_snapshot: false,
        keys: all,
        roles,
        unknown: Default::default(),
    };
    sign_envelope("root", &root, keys.root)
}

/// What a device learns from its verified director targets.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundTarget {
    /// target path
    pub name: String,
    /// release counter
    pub release_counter: u64,
    /// length the director signed
    pub length: u64,
    /// hashes the director signed
    pub hashes: Hashes,
    /// a rollback authorisation, when the director assigns a downgrade (the
    /// device verifies it with its provisioned rollback keys)
    pub rollback_authorization: Option<Value>,
}

impl BoundTarget {
    /// Uptane's "both repositories agree": the image repository's entry for
    /// this path must have the same length, share at least one hash
    /// algorithm with the director's entry, and match on every shared one.
    pub fn agrees_with_image(&self, image: &TargetFile) -> Result<(), DirectorError> {
        let mismatch =
            |field: &'static str, expected: String, found: String| DirectorError::ImageMismatch {
                target: self.name.clone(),
                field,
                director: expected,
                image: found,
            };
        if image.length != self.length {
            return Err(mismatch(
                "length",
                self.length.to_string(),
                image.length.to_string(),
            ));
        }
        let mut shared = 0;
        for (alg, d) in &self.hashes {
            if let Some(i) = image.hashes.get(alg) {
                if !d.eq_ignore_ascii_case(i) {
                    return Err(mismatch(
                        "hashes",
                        format!("{alg}:{d}"),
                        format!("{alg}:{i}"),
                    ));
                }
                shared += 1;
            }
        }
        if shared == 0 {
            return Err(mismatch(
                "hashes",
                format!("{:?}", self.hashes.keys().collect::<Vec<_>>()),
                format!(
                    "{:?} (no algorithm in common)",
                    image.hashes.keys().collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }
}

impl BoundTarget {
    /// Uptane's "both repositories agree", all of it: [`Self::agrees_with_image`]
    /// (length, hashes), and when the image repository's signed `custom`
    /// names a `hardware_id` (or a `hardware_ids` list) it must include
    /// `hardware_id` (the device's), and when it names a `release_counter`
    /// it must equal the director's.
    pub fn agrees_with_image_for(
        &self,
        image: &TargetFile,
        hardware_id: &str,
    ) -> Result<(), DirectorError> {
        self.agrees_with_image(image)?;
        let err =
            |field, image: String, expected_from, expected: String| DirectorError::ImageCustom {
                target: self.name.clone(),
                field,
                image,
                expected_from,
                expected,
            };
        let device = || format!("{hardware_id:?}");
        let director = || self.release_counter.to_string();
        // custody-director's one reader of an image target's `custom`; a
        // mistyped field contradicts whoever it would have been checked
        // against.
        let custom = ImageCustom::of_target(&self.name, image).map_err(|e| {
            if e.field == image::RELEASE_COUNTER {
                err(e.field, e.found, "the director", director())
            } else {
                err(e.field, e.found, "this device", device())
            }
        })?;
        if let Some((field, found)) = custom.hardware_refusal(hardware_id) {
            return Err(err(field, found, "this device", device()));
        }
        if let Some(c) = custom.release_counter {
            if c != self.release_counter {
                return Err(err(
                    image::RELEASE_COUNTER,
                    c.to_string(),
                    "the director",
                    director(),
                ));
            }
        }
        Ok(())
    }
}

/// Device side: after custody-tuf verified `targets` (signatures, version,
/// expiry), check it is bound to this device: the signed binding field
/// names `device_id` and `hardware_id`, and every target's custom binding
/// does too and carries a release counter.
pub fn verify_director_targets_for_device(
    targets: &Targets,
    device_id: &str,
    hardware_id: &str,
) -> Result<Vec<BoundTarget>, DirectorError> {
    let binding =
        targets
            .unknown
            .get(DEVICE_BINDING_FIELD)
            .ok_or_else(|| DirectorError::Unbound {
                detail: "absent".into(),
            })?;
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(d), Some(h)) = (get(binding, "device_id"), get(binding, "hardware_id")) else {
        return Err(DirectorError::Unbound {
            detail: "device_id or hardware_id missing or not a string".into(),
        });
    };
    if d != device_id || h != hardware_id {
        return Err(DirectorError::OtherDevice {
            device: device_id.to_owned(),
            hardware: hardware_id.to_owned(),
            found_device: d,
            found_hardware: h,
        });
    }
    let mut out = Vec::with_capacity(targets.targets.len());
    for (name, t) in &targets.targets {
        let custom = t.custom.as_ref().unwrap_or(&Value::Null);
        for (field, want) in [("device_id", device_id), ("hardware_id", hardware_id)] {
            let found = get(custom, field);
            if found.as_deref() != Some(want) {
                return Err(DirectorError::TargetBinding {
                    target: name.clone(),
                    field,
                    expected: want.to_owned(),
                    found: found.unwrap_or_else(|| "missing".into()),
                });
            }
        }
        let Some(rc) = custom.get("release_counter").and_then(Value::as_u64) else {
            return Err(DirectorError::TargetBinding {
                target: name.clone(),
                field: "release_counter",
                expected: "an unsigned integer".into(),
                found: custom
                    .get("release_counter")
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "missing".into()),
            });
        };
        out.push(BoundTarget {
            name: name.clone(),
            release_counter: rc,
            length: t.length,
            hashes: t.hashes.clone(),
            rollback_authorization: custom.get("rollback_authorization").cloned(),
        });
    }
    Ok(out)
}
