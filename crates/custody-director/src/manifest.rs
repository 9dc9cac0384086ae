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

/// An install report as a transparency log entry claims it (custody-log's
/// `install_report` entry): the device, the report, the digest of the
/// device-signed manifest and, when they fit, the manifest bytes (base64)
/// and the device's TUF public key (JSON).
#[derive(Debug, Clone, Copy)]
pub struct LoggedInstallReport<'a> {
    /// `device_id`
    pub device_id: &'a str,
    /// `target`
    pub target: &'a str,
    /// `outcome`
    pub outcome: &'a str,
    /// `manifest_sha256` (lowercase hex)
    pub manifest_sha256: &'a str,
    /// `manifest`: base64 of the manifest bytes as the device signed them
    pub manifest: Option<&'a str>,
    /// `device_key`: the device's TUF public key
    pub device_key: Option<&'a serde_json::Value>,
}

/// What [`check_logged_install_report`] could establish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedReportCheck {
    /// manifest embedded, device key present, every check passed
    Verified,
    /// only the manifest digest (the manifest was too large to embed)
    DigestOnly,
    /// manifest embedded but no device key: the signature cannot be checked
    NoKey,
}

impl LoggedReportCheck {
    /// The name auditors print (`verified`, `digest_only`, `no_device_key`).
    pub fn name(self) -> &'static str {
        match self {
            LoggedReportCheck::Verified => "verified",
            LoggedReportCheck::DigestOnly => "digest_only",
            LoggedReportCheck::NoKey => "no_device_key",
        }
    }
}

/// Why a logged install report does not hold up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggedReportError {
    /// `manifest` is not base64.
    #[error("install report: manifest is not base64: {0}")]
    NotBase64(String),
    /// The manifest bytes do not hash to `manifest_sha256`.
    #[error("install report: manifest sha256 is {actual}, the entry says {claimed}")]
    Digest {
        /// sha256 of the bytes
        actual: String,
        /// the entry's
        claimed: String,
    },
    /// `device_key` is not a TUF key (or has no key id).
    #[error("install report: device_key: {0}")]
    BadKey(String),
    /// The key's id is not the device id: another device's key.
    #[error("install report: device_key has key id {keyid}, the device id is {device_id}")]
    OtherDevicesKey {
        /// the key's id
        keyid: String,
        /// the entry's device
        device_id: String,
    },
    /// The bytes are not a custody device manifest.
    #[error("install report of device {device_id}: the manifest is not a custody device manifest: {reason}")]
    NotAManifest {
        /// the entry's device
        device_id: String,
        /// the parser's complaint
        reason: String,
    },
    /// The manifest is another device's.
    #[error("install report: the manifest is device {found}'s, the entry says device {device_id}")]
    OtherDevicesManifest {
        /// the manifest's device
        found: String,
        /// the entry's device
        device_id: String,
    },
    /// The device key did not sign the manifest.
    #[error("install report: {0}")]
    Signature(ManifestError),
    /// The manifest carries no report of this target with this outcome.
    #[error("install report: the entry says device {device_id} reported {outcome:?} for {target:?}, but the device-signed manifest (report counter {report_counter}) carries no such report")]
    NoSuchReport {
        /// the entry's device
        device_id: String,
        /// the entry's outcome
        outcome: String,
        /// the entry's target
        target: String,
        /// the manifest's counter
        report_counter: u64,
    },
}

/// Check an install report a transparency log holds against the
/// device-signed manifest it carries (the auditor's inner-signature check;
/// docs/LOG.md): the bytes hash to `manifest_sha256`; with a device key,
/// its TUF key id is the device id, the bytes are a custody device manifest
/// (strict parser) of that device, the key signed it
/// ([`verify_manifest_signature`], the check-in rule), and the manifest
/// itself carries an install report of `target` with `outcome`, so a
/// genuine manifest cannot be attached to a claim the device never made.
pub fn check_logged_install_report(
    r: &LoggedInstallReport<'_>,
) -> Result<LoggedReportCheck, LoggedReportError> {
    use base64::Engine as _;
    let Some(m) = r.manifest else {
        return Ok(LoggedReportCheck::DigestOnly);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m)
        .map_err(|e| LoggedReportError::NotBase64(e.to_string()))?;
    let digest = custody_tuf::crypto::sha256_hex(&bytes);
    if digest != r.manifest_sha256 {
        return Err(LoggedReportError::Digest {
            actual: digest,
            claimed: r.manifest_sha256.to_owned(),
        });
    }
    let Some(k) = r.device_key else {
        return Ok(LoggedReportCheck::NoKey);
    };
    let key: custody_tuf::schema::Key =
        serde_json::from_value(k.clone()).map_err(|e| LoggedReportError::BadKey(e.to_string()))?;
    let keyid = crate::keys::device_id_for_key(&key)
        .map_err(|e| LoggedReportError::BadKey(e.to_string()))?;
    if keyid != r.device_id {
        return Err(LoggedReportError::OtherDevicesKey {
            keyid,
            device_id: r.device_id.to_owned(),
        });
    }
    let sm = SignedManifest::from_bytes(&bytes).map_err(|e| LoggedReportError::NotAManifest {
        device_id: r.device_id.to_owned(),
        reason: e.to_string(),
    })?;
    if sm.signed.device_id != r.device_id {
        return Err(LoggedReportError::OtherDevicesManifest {
            found: sm.signed.device_id.clone(),
            device_id: r.device_id.to_owned(),
        });
    }
    verify_manifest_signature(&sm, r.device_id, &key).map_err(LoggedReportError::Signature)?;
    if !sm
        .signed
        .install_reports
        .iter()
        .any(|rep| rep.target == r.target && rep.outcome == r.outcome)
    {
        return Err(LoggedReportError::NoSuchReport {
            device_id: r.device_id.to_owned(),
            outcome: r.outcome.to_owned(),
            target: r.target.to_owned(),
            report_counter: sm.signed.report_counter,
        });
    }
    Ok(LoggedReportCheck::Verified)
}

#[cfg(test)]
mod logged_report_tests {
    use super::*;
    use crate::wire::{InstallReport, TYPE_MANIFEST, WIRE_VERSION};
    use base64::Engine as _;
    use custody_keys::MemorySigner;
    use custody_keys::Signer as _;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// A device key, its id and the bytes of a manifest it signed that
    /// reports `installed` for `fw-1.bin` (flipping one signature byte if
    /// `forge`).
    fn signed(key: &MemorySigner, forge: bool) -> (serde_json::Value, String, Vec<u8>) {
        let kjson = serde_json::to_value(key.key()).unwrap();
        let tkey: custody_tuf::schema::Key = serde_json::from_value(kjson.clone()).unwrap();
        let id = crate::keys::device_id_for_key(&tkey).unwrap();
        let body = ManifestBody {
            type_: TYPE_MANIFEST.into(),
            wire_version: WIRE_VERSION,
            device_id: id.clone(),
            hardware_id: "board-a".into(),
            report_counter: 7,
            device_time: 1_700_000_000,
            installed: BTreeMap::new(),
            active_slot: None,
            attacks_detected: vec![],
            install_reports: vec![InstallReport {
                id: "attempt-1".into(),
                target: "fw-1.bin".into(),
                release_counter: 1,
                outcome: "installed".into(),
                reason: None,
                time: 1_700_000_000,
            }],
        };
        let mut m = SignedManifest::sign(body, key).unwrap();
        if forge {
            let mut sig = hex::decode(&m.signatures[0].sig).unwrap();
            sig[0] ^= 1;
            m.signatures[0].sig = hex::encode(sig);
        }
        (kjson, id, m.to_bytes().unwrap())
    }

    fn check(
        id: &str,
        target: &str,
        outcome: &str,
        bytes: &[u8],
        key: Option<&serde_json::Value>,
    ) -> Result<LoggedReportCheck, LoggedReportError> {
        let m = b64(bytes);
        let digest = custody_tuf::crypto::sha256_hex(bytes);
        check_logged_install_report(&LoggedInstallReport {
            device_id: id,
            target,
            outcome,
            manifest_sha256: &digest,
            manifest: Some(&m),
            device_key: key,
        })
    }

    #[test]
    fn a_genuine_report_verifies_and_each_forgery_is_named() {
        let dev = MemorySigner::generate_ed25519().unwrap();
        let (k, id, bytes) = signed(&dev, false);
        assert_eq!(
            check(&id, "fw-1.bin", "installed", &bytes, Some(&k)),
            Ok(LoggedReportCheck::Verified)
        );
        assert_eq!(
            check(&id, "fw-1.bin", "installed", &bytes, None),
            Ok(LoggedReportCheck::NoKey)
        );
        let digest_only = check_logged_install_report(&LoggedInstallReport {
            device_id: &id,
            target: "fw-1.bin",
            outcome: "installed",
            manifest_sha256: "00",
            manifest: None,
            device_key: Some(&k),
        });
        assert_eq!(digest_only, Ok(LoggedReportCheck::DigestOnly));

        // a claim the device never made (other outcome, other target)
        for (t, o) in [("fw-1.bin", "failed"), ("fw-2.bin", "installed")] {
            assert!(matches!(
                check(&id, t, o, &bytes, Some(&k)),
                Err(LoggedReportError::NoSuchReport { .. })
            ));
        }
        // a signature that does not verify
        let (_, _, forged) = signed(&dev, true);
        let e = check(&id, "fw-1.bin", "installed", &forged, Some(&k)).unwrap_err();
        assert!(matches!(e, LoggedReportError::Signature(_)), "{e}");
        assert!(
            e.to_string().contains("manifest: signature of device"),
            "{e}"
        );
        // another device's key presented as this device's
        let other = MemorySigner::generate_ed25519().unwrap();
        let (k2, id2, bytes2) = signed(&other, false);
        assert!(matches!(
            check(&id, "fw-1.bin", "installed", &bytes, Some(&k2)),
            Err(LoggedReportError::OtherDevicesKey { .. })
        ));
        // another device's genuine manifest, with its key, under this id
        assert!(matches!(
            check(&id, "fw-1.bin", "installed", &bytes2, Some(&k2)),
            Err(LoggedReportError::OtherDevicesKey { .. })
        ));
        assert!(matches!(
            check(&id2, "fw-1.bin", "installed", &bytes, Some(&k2)),
            Err(LoggedReportError::OtherDevicesManifest { .. })
        ));
        // bytes changed after the digest was taken
        let digest = custody_tuf::crypto::sha256_hex(&bytes);
        let mut changed = bytes.clone();
        let pos = changed.windows(7).position(|w| w == b"board-a").unwrap();
        changed[pos] = b'B';
        let e = check_logged_install_report(&LoggedInstallReport {
            device_id: &id,
            target: "fw-1.bin",
            outcome: "installed",
            manifest_sha256: &digest,
            manifest: Some(&b64(&changed)),
            device_key: Some(&k),
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("install report: manifest sha256 is"),
            "{e}"
        );
        // not base64, not a manifest, not a key
        let e = check_logged_install_report(&LoggedInstallReport {
            device_id: &id,
            target: "fw-1.bin",
            outcome: "installed",
            manifest_sha256: &digest,
            manifest: Some("!"),
            device_key: Some(&k),
        })
        .unwrap_err();
        assert!(matches!(e, LoggedReportError::NotBase64(_)));
        assert!(matches!(
            check(&id, "fw-1.bin", "installed", b"{}", Some(&k)),
            Err(LoggedReportError::NotAManifest { .. })
        ));
        assert!(matches!(
            check(
                &id,
                "fw-1.bin",
                "installed",
                &bytes,
                Some(&serde_json::json!({"x": 1}))
            ),
            Err(LoggedReportError::BadKey(_))
        ));
    }
}
