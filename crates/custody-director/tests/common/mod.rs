#![allow(dead_code)]
use chrono::{DateTime, Duration, TimeZone, Utc};
use custody_director::enrol::{enrol, issue_token, EnrolmentPolicy, MemoryTokenStore, TokenStore};
use custody_director::registry::DeviceRecord;
use custody_director::wire::{
    DeviceAttributes, EnrolmentClaims, EnrolmentCredential, EnrolmentRequest, InstalledTarget,
    ManifestBody, SignedManifest, TYPE_ENROLMENT, TYPE_MANIFEST, WIRE_VERSION,
};
use custody_keys::MemorySigner;
use custody_keys::Signer;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

pub fn claims(
    key: &MemorySigner,
    hw: &str,
    cred: EnrolmentCredential,
    now: DateTime<Utc>,
) -> EnrolmentClaims {
    EnrolmentClaims {
        type_: TYPE_ENROLMENT.into(),
        wire_version: WIRE_VERSION,
        key: key.key().clone(),
        hardware_id: hw.into(),
        attributes: DeviceAttributes {
            environment: "production".into(),
            tags: ["eu".to_owned()].into(),
            group: Some("fleet-a".into()),
        },
        credential: cred,
        timestamp: now.timestamp(),
        nonce: custody_director::request::fresh_nonce().unwrap(),
    }
}

/// Enrol a fresh Ed25519 device through the token path.
pub fn enrolled(hw: &str) -> (MemorySigner, DeviceRecord) {
    let now = t0();
    let store = MemoryTokenStore::default();
    let (token, rec) = issue_token("fleet-a", None, now, Duration::hours(1)).unwrap();
    store.insert(rec).unwrap();
    let key = MemorySigner::generate_ed25519().unwrap();
    let req = EnrolmentRequest::sign(
        claims(&key, hw, EnrolmentCredential::Token { token }, now),
        &key,
        None,
    )
    .unwrap();
    // through the parser, as the server would
    let req = EnrolmentRequest::from_bytes(&req.to_bytes().unwrap()).unwrap();
    let rec = enrol(&req, now, &EnrolmentPolicy::default(), &store, &|_| false).unwrap();
    (key, rec)
}

pub fn manifest(rec: &DeviceRecord, counter: u64, name: &str, release: u64) -> ManifestBody {
    ManifestBody {
        type_: TYPE_MANIFEST.into(),
        wire_version: WIRE_VERSION,
        device_id: rec.id.clone(),
        hardware_id: rec.hardware_id.clone(),
        report_counter: counter,
        device_time: t0().timestamp(),
        installed: [(
            "a".to_owned(),
            InstalledTarget {
                name: name.into(),
                length: 3,
                hashes: [("sha256".to_owned(), "ab".repeat(32))].into(),
                release_counter: release,
            },
        )]
        .into(),
        active_slot: Some("a".into()),
        attacks_detected: vec![],
        install_reports: vec![],
    }
}

pub fn signed_manifest(key: &MemorySigner, body: ManifestBody) -> SignedManifest {
    let m = SignedManifest::sign(body, key).unwrap();
    SignedManifest::from_bytes(&m.to_bytes().unwrap()).unwrap()
}
