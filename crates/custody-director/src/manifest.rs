//! Verification of device version manifests.
//!
//! Rules, in order ([`verify_manifest`]):
//! 1. the device may act now (status, re-attestation);
//! 2. `signed.device_id` is the registered device and `signed.hardware_id`
//!    its registered hardware id;
//! 3. the device's registered key signed it: custody-tuf's
//!    [`custody_tuf::verify_threshold`] with threshold 1 over the device key
//!    alone. A manifest whose signatures all claim other key ids is
//!    reported as [`ManifestError::SignedByOtherKey`] (e.g. device B's
//!    manifest relabelled as device A's); a signature under the right key
//!    id that does not verify as [`ManifestError::BadSignature`];
//! 4. `report_counter` strictly greater than the last accepted one: equal is
//!    a replay ([`ManifestError::Replayed`]), lower is reordering or an old
//!    capture ([`ManifestError::Reordered`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::registry::{DeviceRecord, Purpose, ReattestationPolicy, StatusError};
use crate::wire::{ManifestBody, SignedManifest};

/// Why a manifest was refused. Each variant says what was flagged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// the device may not act now
    #[error(transparent)]
    Status(#[from] StatusError),
    /// manifest names another device
    #[error("manifest: signed.device_id is {found}, but it was submitted for device {expected}")]
    WrongDevice {
        /// registered id
        expected: String,
        /// manifest's id
        found: String,
    },
    /// manifest names another hardware id
    #[error(
        "manifest: signed.hardware_id is {found:?}, device {device} is registered as {expected:?}"
    )]
    WrongHardware {
        /// device id
        device: String,
        /// registered hardware id
        expected: String,
        /// manifest's
        found: String,
    },
    /// no signature under the device's key id: signed by another key
    #[error("manifest: not signed by device {device}'s key {expected_keyid}; signatures claim key ids {found:?} (another device's or an unknown key)")]
    SignedByOtherKey {
        /// device id
        device: String,
        /// the device key's id
        expected_keyid: String,
        /// key ids found
        found: Vec<String>,
    },
    /// a signature under the device key id does not verify
    #[error("manifest: signature of device {device} does not verify: {detail}")]
    BadSignature {
        /// device id
        device: String,
        /// custody-tuf's reason
        detail: String,
    },
    /// same counter as the last accepted manifest
    #[error("manifest: report_counter {counter} of device {device} was already accepted (replayed manifest)")]
    Replayed {
        /// device id
        device: String,
        /// counter
        counter: u64,
    },
    /// lower counter than the last accepted manifest
    #[error("manifest: report_counter {found} of device {device} is lower than the last accepted {last} (reordered or replayed old manifest)")]
    Reordered {
        /// device id
        device: String,
        /// last accepted
        last: u64,
        /// this one
        found: u64,
    },
}

/// Verify `manifest` for `device`. `last_counter` is the last accepted
/// report counter (`None` before the first manifest). On success the caller
/// stores `manifest.signed.report_counter` as the new last counter, in the
/// same transaction that records the manifest.
pub fn verify_manifest<'m>(
    device: &DeviceRecord,
    manifest: &'m SignedManifest,
    last_counter: Option<u64>,
    now: DateTime<Utc>,
    reattestation: &ReattestationPolicy,
) -> Result<&'m ManifestBody, ManifestError> {
    device.check_usable(now, reattestation, Purpose::Normal)?;
    let body = &manifest.signed;
    if body.device_id != device.id {
        return Err(ManifestError::WrongDevice {
            expected: device.id.clone(),
            found: body.device_id.clone(),
        });
    }
    if body.hardware_id != device.hardware_id {
        return Err(ManifestError::WrongHardware {
            device: device.id.clone(),
            expected: device.hardware_id.clone(),
            found: body.hardware_id.clone(),
        });
    }
    verify_manifest_signature(manifest, &device.id, &device.key)?;
    if let Some(last) = last_counter {
        let found = body.report_counter;
        if found == last {
            return Err(ManifestError::Replayed {
                device: device.id.clone(),
                counter: found,
            });
        }
        if found < last {
            return Err(ManifestError::Reordered {
                device: device.id.clone(),
                last,
                found,
            });
        }
    }
    Ok(body)
}

/// Rule 3 alone: `key`, the key of device `device_id` (whose id is that
/// key's id, crate::keys), signed `manifest`. For whoever holds a manifest
/// and the device key but not the device record (the transparency log
/// auditor re-checking an install report); [`verify_manifest`] calls it.
pub fn verify_manifest_signature(
    manifest: &SignedManifest,
    device_id: &str,
    key: &custody_tuf::Key,
) -> Result<(), ManifestError> {
    let keyid = device_id.to_owned();
    if !manifest.signatures.iter().any(|s| s.keyid == keyid) {
        return Err(ManifestError::SignedByOtherKey {
            device: device_id.to_owned(),
            expected_keyid: keyid,
            found: manifest
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
        });
    }
    let keys = BTreeMap::from([(keyid.clone(), key.clone())]);
    custody_tuf::verify_threshold(
        "manifest",
        &format!("device {device_id}"),
        manifest.signed_bytes(),
        &manifest.signatures,
        std::slice::from_ref(&keyid),
        &keys,
        1,
    )
    .map_err(|e| ManifestError::BadSignature {
        device: device_id.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(())
}
