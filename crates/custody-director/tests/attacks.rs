//! Every attack the director core stops, each refused with a clear reason.
mod common;

use chrono::Duration;
use common::*;
use custody_director::director::{
    build_director_metadata, build_director_root, DeviceDirectorState, DirectorConfig,
    DirectorRootKeys, DirectorSigners, DirectorTarget,
};
use custody_director::enrol::{
    enrol, issue_token, EnrolError, EnrolmentPolicy, FactoryCas, MemoryTokenStore, TokenRefusal,
    TokenStore,
};
use custody_director::manifest::{verify_manifest, verify_manifest_signature, ManifestError};
use custody_director::policy::{
    assign, Assignment, DeviceView, FleetPolicy, Gate, Installed, PolicyError, Release,
    RollbackAuthorization, RollbackBody, RollbackKeys, Rollout, Selector, Stage, TYPE_ROLLBACK,
};
use custody_director::registry::{Purpose, ReattestationPolicy, StatusError};
use custody_director::request::{
    sign_request, verify_device_request, MemoryNonceCache, RequestError, RequestPolicy, Route,
};
use custody_director::wire::{EnrolmentCredential, EnrolmentRequest, SignedRequest, WIRE_VERSION};
use custody_director::{verify_director_targets_for_device, DirectorError};
use custody_keys::MemorySigner;
use custody_keys::{KeyType, Signer};
use custody_tuf::TrustedMetadata;

const HW: &str = "board-x1";

fn route(path: &str) -> Route<'_> {
    Route {
        method: "POST",
        path,
        purpose: Purpose::Normal,
    }
}

// ------------------------------------------------------------ manifests

#[test]
fn manifest_signed_by_another_devices_key_is_refused() {
    let (_ka, a) = enrolled(HW);
    let (kb, _b) = enrolled(HW);
    // B signs a manifest that claims to be A's
    let m = signed_manifest(&kb, manifest(&a, 1, "app-1", 1));
    let e = verify_manifest(&a, &m, None, t0(), &ReattestationPolicy::default()).unwrap_err();
    assert!(matches!(e, ManifestError::SignedByOtherKey { .. }), "{e}");
    assert!(e.to_string().contains("not signed by device"), "{e}");
    // ... even when B relabels its signature with A's key id
    let mut m2 = m.clone();
    m2.signatures[0].keyid = a.id.clone();
    let e = verify_manifest(&a, &m2, None, t0(), &ReattestationPolicy::default()).unwrap_err();
    assert!(matches!(e, ManifestError::BadSignature { .. }), "{e}");
}

#[test]
fn manifest_signature_alone_is_checked_without_the_device_record() {
    // What the log auditor has: the manifest and the device key, no record.
    let (ka, a) = enrolled(HW);
    let (kb, _b) = enrolled(HW);
    let good = signed_manifest(&ka, manifest(&a, 1, "app-1", 1));
    verify_manifest_signature(&good, &a.id, &a.key).unwrap();
    // B's signature on a manifest claiming to be A's
    let m = signed_manifest(&kb, manifest(&a, 1, "app-1", 1));
    let e = verify_manifest_signature(&m, &a.id, &a.key).unwrap_err();
    assert!(
        matches!(e, ManifestError::SignedByOtherKey { ref expected_keyid, .. } if expected_keyid == &a.id),
        "{e}"
    );
    assert!(e.to_string().contains(&a.id), "{e}");
    // ... relabelled with A's key id
    let mut m2 = m.clone();
    m2.signatures[0].keyid = a.id.clone();
    let e = verify_manifest_signature(&m2, &a.id, &a.key).unwrap_err();
    assert!(
        matches!(e, ManifestError::BadSignature { ref device, .. } if device == &a.id),
        "{e}"
    );
    // ... and A's genuine signature over altered content
    let mut v: serde_json::Value = serde_json::from_slice(&good.to_bytes().unwrap()).unwrap();
    v["signed"]["report_counter"] = 7.into();
    let m3 = SignedManifest::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
    let e = verify_manifest_signature(&m3, &a.id, &a.key).unwrap_err();
    assert!(matches!(e, ManifestError::BadSignature { .. }), "{e}");
}

#[test]
fn manifest_tampered_after_signing_is_refused() {
    let (k, a) = enrolled(HW);
    let m = SignedManifest::sign(manifest(&a, 1, "app-1", 1), &k).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&m.to_bytes().unwrap()).unwrap();
    v["signed"]["installed"]["a"]["release_counter"] = 99.into();
    let m = SignedManifest::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
    let e = verify_manifest(&a, &m, None, t0(), &ReattestationPolicy::default()).unwrap_err();
    assert!(matches!(e, ManifestError::BadSignature { .. }), "{e}");
}
use custody_director::wire::SignedManifest;

#[test]
fn manifest_for_other_device_or_hardware_is_refused() {
    let (ka, a) = enrolled(HW);
    let (_kb, b) = enrolled(HW);
    let m = signed_manifest(&ka, manifest(&a, 1, "app-1", 1));
    let e = verify_manifest(&b, &m, None, t0(), &ReattestationPolicy::default()).unwrap_err();
    assert!(matches!(e, ManifestError::WrongDevice { .. }), "{e}");
    let mut body = manifest(&a, 1, "app-1", 1);
    body.hardware_id = "board-y".into();
    let m = signed_manifest(&ka, body);
    let e = verify_manifest(&a, &m, None, t0(), &ReattestationPolicy::default()).unwrap_err();
    assert!(matches!(e, ManifestError::WrongHardware { .. }), "{e}");
}

#[test]
fn replayed_and_reordered_manifests_are_refused() {
    let (k, a) = enrolled(HW);
    let p = ReattestationPolicy::default();
    let m5 = signed_manifest(&k, manifest(&a, 5, "app-1", 1));
    let accepted = verify_manifest(&a, &m5, Some(4), t0(), &p).unwrap();
    assert_eq!(accepted.report_counter, 5);
    let e = verify_manifest(&a, &m5, Some(5), t0(), &p).unwrap_err();
    assert_eq!(
        e,
        ManifestError::Replayed {
            device: a.id.clone(),
            counter: 5
        }
    );
    assert!(e.to_string().contains("replayed"), "{e}");
    let e = verify_manifest(&a, &m5, Some(9), t0(), &p).unwrap_err();
    assert!(
        matches!(
            e,
            ManifestError::Reordered {
                last: 9,
                found: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn p256_device_keys_are_accepted() {
    let now = t0();
    let store = MemoryTokenStore::default();
    let (token, rec) = issue_token("fleet-a", None, now, Duration::hours(1)).unwrap();
    store.insert(rec).unwrap();
    let key = MemorySigner::generate_p256().unwrap();
    let req = EnrolmentRequest::sign(
        claims(&key, HW, EnrolmentCredential::Token { token }, now),
        &key,
        None,
    )
    .unwrap();
    let dev = enrol(&req, now, &EnrolmentPolicy::default(), &store, &|_| false).unwrap();
    let m = signed_manifest(&key, manifest(&dev, 1, "app", 1));
    verify_manifest(&dev, &m, None, now, &ReattestationPolicy::default()).unwrap();
}

// ------------------------------------------------------------ requests

#[test]
fn signed_requests_reject_forgery_staleness_replay_and_wrong_route() {
    let (k, a) = enrolled(HW);
    let (kb, _b) = enrolled(HW);
    let pol = RequestPolicy::default();
    let cache = MemoryNonceCache::new(1000);
    let now = t0();
    let path = "/api/v1/device/manifest";
    let nonce = || custody_director::request::fresh_nonce().unwrap();
    let req = sign_request(&k, "POST", path, b"{}".to_vec(), now, nonce()).unwrap();
    // over HTTP headers, as the server would parse them
    let parsed = SignedRequest::from_headers(
        &req.device_id,
        &req.timestamp.to_string(),
        &req.nonce,
        &req.signature,
        "POST",
        path,
        req.body.clone(),
    )
    .unwrap();
    verify_device_request(&a, &parsed, route(path), now, &pol, &cache).unwrap();
    // replay: same nonce
    let e = verify_device_request(&a, &parsed, route(path), now, &pol, &cache).unwrap_err();
    assert!(matches!(e, RequestError::ReplayedNonce { .. }), "{e}");
    // tampered body
    let mut t = sign_request(&k, "POST", path, b"{}".to_vec(), now, nonce()).unwrap();
    t.body = b"{\"x\":1}".to_vec();
    let e = verify_device_request(&a, &t, route(path), now, &pol, &cache).unwrap_err();
    assert!(matches!(e, RequestError::BadSignature { .. }), "{e}");
    // signed by another device's key, claiming A
    let mut f = sign_request(&kb, "POST", path, vec![], now, nonce()).unwrap();
    f.device_id = a.id.clone();
    let e = verify_device_request(&a, &f, route(path), now, &pol, &cache).unwrap_err();
    assert!(matches!(e, RequestError::BadSignature { .. }), "{e}");
    // stale and future
    let old = sign_request(
        &k,
        "POST",
        path,
        vec![],
        now - Duration::minutes(6),
        nonce(),
    )
    .unwrap();
    let e = verify_device_request(&a, &old, route(path), now, &pol, &cache).unwrap_err();
    assert!(
        matches!(e, RequestError::Stale { which, .. } if which.contains("too old")),
        "{e}"
    );
    let fut = sign_request(
        &k,
        "POST",
        path,
        vec![],
        now + Duration::minutes(6),
        nonce(),
    )
    .unwrap();
    let e = verify_device_request(&a, &fut, route(path), now, &pol, &cache).unwrap_err();
    assert!(
        matches!(e, RequestError::Stale { which, .. } if which.contains("future")),
        "{e}"
    );
    // within the window: fine
    let ok = sign_request(
        &k,
        "POST",
        path,
        vec![],
        now - Duration::minutes(4),
        nonce(),
    )
    .unwrap();
    verify_device_request(&a, &ok, route(path), now, &pol, &cache).unwrap();
    // a signature for one route used on another
    let r = sign_request(&k, "POST", path, vec![], now, nonce()).unwrap();
    let e = verify_device_request(&a, &r, route("/api/v1/device/enrol"), now, &pol, &cache)
        .unwrap_err();
    assert!(matches!(e, RequestError::WrongRoute { .. }), "{e}");
}

#[test]
fn decommissioned_and_suspended_devices_are_refused_at_once() {
    let (k, mut a) = enrolled(HW);
    let pol = RequestPolicy::default();
    let cache = MemoryNonceCache::new(100);
    let now = t0();
    let path = "/api/v1/device/checkin";
    let nonce = || custody_director::request::fresh_nonce().unwrap();
    a.suspend("lost in transit", now);
    let r = sign_request(&k, "POST", path, vec![], now, nonce()).unwrap();
    let e = verify_device_request(&a, &r, route(path), now, &pol, &cache).unwrap_err();
    assert!(
        matches!(e, RequestError::Status(StatusError::Suspended { .. })),
        "{e}"
    );
    assert!(a.resume());
    verify_device_request(&a, &r, route(path), now, &pol, &cache).unwrap();
    a.decommission(now);
    assert!(!a.resume(), "a decommissioned device cannot be resumed");
    let r = sign_request(&k, "POST", path, vec![], now, nonce()).unwrap();
    let e = verify_device_request(&a, &r, route(path), now, &pol, &cache).unwrap_err();
    assert!(
        matches!(e, RequestError::Status(StatusError::Decommissioned { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("decommissioned"), "{e}");
    let m = signed_manifest(&k, manifest(&a, 1, "app", 1));
    let e = verify_manifest(&a, &m, None, now, &pol.reattestation).unwrap_err();
    assert!(
        matches!(e, ManifestError::Status(StatusError::Decommissioned { .. })),
        "{e}"
    );
}

#[test]
fn overdue_reattestation_suspends_until_the_device_proves_possession() {
    let (k, mut a) = enrolled(HW);
    let pol = RequestPolicy::default();
    let cache = MemoryNonceCache::new(100);
    let later = t0() + Duration::days(31);
    let nonce = || custody_director::request::fresh_nonce().unwrap();
    let r = sign_request(&k, "POST", "/checkin", vec![], later, nonce()).unwrap();
    let e = verify_device_request(&a, &r, route("/checkin"), later, &pol, &cache).unwrap_err();
    assert!(
        matches!(
            e,
            RequestError::Status(StatusError::ReattestationOverdue { .. })
        ),
        "{e}"
    );
    let r = sign_request(&k, "POST", "/attest", vec![], later, nonce()).unwrap();
    let att = Route {
        method: "POST",
        path: "/attest",
        purpose: Purpose::Reattest,
    };
    verify_device_request(&a, &r, att, later, &pol, &cache).unwrap();
    a.reattested(later);
    let r = sign_request(&k, "POST", "/checkin", vec![], later, nonce()).unwrap();
    verify_device_request(&a, &r, route("/checkin"), later, &pol, &cache).unwrap();
}

// ------------------------------------------------------------ director metadata

struct Director {
    root_key: MemorySigner,
    online: MemorySigner,
    root: Vec<u8>,
}

fn director() -> Director {
    let root_key = MemorySigner::generate_ed25519().unwrap();
    let online = MemorySigner::generate_ed25519().unwrap();
    let root = build_director_root(
        DirectorRootKeys {
            root: &[&root_key],
            root_threshold: 1,
            targets: online.key(),
            snapshot: online.key(),
            timestamp: online.key(),
        },
        1,
        t0() + Duration::days(365),
    )
    .unwrap();
    Director {
        root_key,
        online,
        root,
    }
}

fn signers(d: &Director) -> DirectorSigners<'_> {
    DirectorSigners {
        targets: &d.online,
        snapshot: &d.online,
        timestamp: &d.online,
    }
}

fn target(name: &str, rc: u64) -> DirectorTarget {
    DirectorTarget {
        name: name.into(),
        length: 3,
        hashes: [("sha256".to_owned(), "cd".repeat(32))].into(),
        release_counter: rc,
        rollback_authorization: None,
    }
}

/// The device-side refresh: custody-tuf verifies, then the binding check.
fn device_refresh(
    root: &[u8],
    md: &custody_director::director::DirectorMetadata,
    now: chrono::DateTime<chrono::Utc>,
    device: &str,
    hw: &str,
) -> Result<Vec<custody_director::director::BoundTarget>, String> {
    let mut t = TrustedMetadata::new(root).map_err(|e| e.to_string())?;
    t.update_timestamp(&md.timestamp, now)
        .map_err(|e| e.to_string())?;
    t.update_snapshot(&md.snapshot, now, false)
        .map_err(|e| e.to_string())?;
    t.update_targets(&md.targets, now)
        .map_err(|e| e.to_string())?;
    let targets = t.targets().ok_or("no targets")?;
    verify_director_targets_for_device(targets, device, hw).map_err(|e| e.to_string())
}

#[test]
fn director_metadata_for_device_a_is_refused_by_device_b() {
    let d = director();
    let (_ka, a) = enrolled(HW);
    let (_kb, b) = enrolled(HW);
    let now = t0();
    let md = build_director_metadata(
        signers(&d),
        &a.id,
        &a.hardware_id,
        &[target("app-2", 2)],
        &DeviceDirectorState::default(),
        now,
        &DirectorConfig::default(),
    )
    .unwrap();
    let got = device_refresh(&d.root, &md, now, &a.id, HW).unwrap();
    assert_eq!(got[0].name, "app-2");
    assert_eq!(got[0].release_counter, 2);
    let e = device_refresh(&d.root, &md, now, &b.id, HW).unwrap_err();
    assert!(e.contains("is for device") && e.contains(&a.id), "{e}");
    // an "install nothing" document is still bound
    let empty = build_director_metadata(
        signers(&d),
        &a.id,
        &a.hardware_id,
        &[],
        &md.state,
        now,
        &DirectorConfig::default(),
    )
    .unwrap();
    assert_eq!(
        device_refresh(&d.root, &empty, now, &a.id, HW).unwrap(),
        vec![]
    );
    let e = device_refresh(&d.root, &empty, now, &b.id, HW).unwrap_err();
    assert!(e.contains("is for device"), "{e}");
    let _ = &d.root_key;
}

#[test]
fn director_binding_rejects_unbound_or_mixed_entries() {
    let (_k, a) = enrolled(HW);
    let mut t: custody_tuf::Targets = serde_json::from_value(serde_json::json!({
        "_type": "targets", "spec_version": "1.0.31", "version": 1,
        "expires": "2030-01-01T00:00:00Z", "targets": {}
    }))
    .unwrap();
    let e = verify_director_targets_for_device(&t, &a.id, HW).unwrap_err();
    assert!(matches!(e, DirectorError::Unbound { .. }), "{e}");
    t.unknown.insert(
        "x-custody-device".into(),
        serde_json::json!({"device_id": a.id, "hardware_id": HW}),
    );
    verify_director_targets_for_device(&t, &a.id, HW).unwrap();
    // wrong hardware id
    let e = verify_director_targets_for_device(&t, &a.id, "board-y").unwrap_err();
    assert!(matches!(e, DirectorError::OtherDevice { .. }), "{e}");
    // an entry lifted from another device's metadata
    t.targets.insert(
        "app".into(),
        serde_json::from_value(serde_json::json!({
            "length": 1, "hashes": {"sha256": "00"},
            "custom": {"device_id": "b".repeat(64), "hardware_id": HW, "release_counter": 1}
        }))
        .unwrap(),
    );
    let e = verify_director_targets_for_device(&t, &a.id, HW).unwrap_err();
    assert!(
        matches!(
            e,
            DirectorError::TargetBinding {
                field: "device_id",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn expired_director_metadata_is_refused_and_fresh_metadata_recovers() {
    let d = director();
    let (_k, a) = enrolled(HW);
    let cfg = DirectorConfig::default();
    let md1 = build_director_metadata(
        signers(&d),
        &a.id,
        HW,
        &[target("app", 1)],
        &DeviceDirectorState::default(),
        t0(),
        &cfg,
    )
    .unwrap();
    let later = t0() + Duration::days(3);
    let e = device_refresh(&d.root, &md1, later, &a.id, HW).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    // recovery: the device's stored (expired) timestamp is the rollback
    // reference, the fresh one (higher version) is accepted; no re-enrolment
    let md2 = build_director_metadata(
        signers(&d),
        &a.id,
        HW,
        &[target("app", 1)],
        &md1.state,
        later,
        &cfg,
    )
    .unwrap();
    let mut t = TrustedMetadata::new(&d.root).unwrap();
    assert!(t.update_timestamp(&md1.timestamp, later).is_err());
    t.update_timestamp(&md2.timestamp, later).unwrap();
    t.update_snapshot(&md2.snapshot, later, false).unwrap();
    t.update_targets(&md2.targets, later).unwrap();
    verify_director_targets_for_device(t.targets().unwrap(), &a.id, HW).unwrap();
    // and an older director timestamp cannot be replayed after a newer one
    let mut t = TrustedMetadata::new(&d.root).unwrap();
    t.update_timestamp(&md2.timestamp, later).unwrap();
    assert!(t.update_timestamp(&md1.timestamp, t0()).is_err());
}

// ------------------------------------------------------------ anti-rollback

fn release(name: &str, rc: u64) -> Release {
    Release {
        name: name.into(),
        length: 3,
        hashes: [("sha256".to_owned(), "ef".repeat(32))].into(),
        release_counter: rc,
        hardware_ids: [HW.to_owned()].into(),
    }
}

fn view(a: &custody_director::registry::DeviceRecord, installed_rc: u64) -> DeviceView {
    let mut v = DeviceView::new(a, None, t0(), &ReattestationPolicy::default());
    v.installed = Some(Installed {
        name: format!("app-{installed_rc}"),
        release_counter: installed_rc,
        max_release_counter: installed_rc,
    });
    v
}

fn rollback_keys(k: &MemorySigner) -> RollbackKeys {
    RollbackKeys {
        keys: [(k.keyid().to_owned(), k.key().clone())].into(),
        threshold: 1,
    }
}

fn auth(
    device: &str,
    rc: u64,
    expires: chrono::DateTime<chrono::Utc>,
    by: &MemorySigner,
) -> RollbackAuthorization {
    let a = RollbackAuthorization::sign(
        RollbackBody {
            type_: TYPE_ROLLBACK.into(),
            wire_version: WIRE_VERSION,
            device_ids: [device.to_owned()].into(),
            target: format!("app-{rc}"),
            release_counter: rc,
            expires: expires.timestamp(),
            reason: "bad release 5".into(),
        },
        &[by],
    )
    .unwrap();
    // through the parser, as an admin upload would be
    RollbackAuthorization::from_bytes(&serde_json::to_vec(&a.to_value()).unwrap()).unwrap()
}

fn pinned_policy(
    dev: &str,
    rc: u64,
    rk: &MemorySigner,
    auths: Vec<RollbackAuthorization>,
) -> FleetPolicy {
    FleetPolicy {
        rollouts: vec![],
        pins: [(
            dev.to_owned(),
            custody_director::policy::Pin {
                release: release(&format!("app-{rc}"), rc),
                reason: "hold".into(),
            },
        )]
        .into(),
        yanks: vec![],
        rollback_authorizations: auths,
        rollback_keys: rollback_keys(rk),
    }
}

#[test]
fn downgrade_needs_a_valid_rollback_authorisation() {
    let (_k, a) = enrolled(HW);
    let rk = MemorySigner::generate_ed25519().unwrap();
    let other = MemorySigner::generate_ed25519().unwrap();
    let v = view(&a, 5);
    let now = t0();
    // no authorisation
    let r = assign(&v, &pinned_policy(&a.id, 3, &rk, vec![]), now);
    let Assignment::Refused(e @ PolicyError::Downgrade { .. }) = &r else {
        panic!("{r:?}")
    };
    assert!(
        e.to_string().contains("needs a rollback authorisation"),
        "{e}"
    );
    // valid
    let good = auth(&a.id, 3, now + Duration::hours(1), &rk);
    let r = assign(&v, &pinned_policy(&a.id, 3, &rk, vec![good]), now);
    match &r {
        Assignment::Install {
            release,
            rollback_authorization,
            ..
        } => {
            assert_eq!(release.release_counter, 3);
            assert!(rollback_authorization.is_some());
            let t = r.director_target().unwrap();
            assert!(t.rollback_authorization.is_some());
        }
        other => panic!("{other:?}"),
    }
    // expired
    let expired = auth(&a.id, 3, now - Duration::seconds(1), &rk);
    let r = assign(&v, &pinned_policy(&a.id, 3, &rk, vec![expired]), now);
    let Assignment::Refused(e) = &r else {
        panic!("{r:?}")
    };
    assert!(e.to_string().contains("expired"), "{e}");
    // signed by a key that is not a rollback key (e.g. the director's)
    let forged = auth(&a.id, 3, now + Duration::hours(1), &other);
    let r = assign(&v, &pinned_policy(&a.id, 3, &rk, vec![forged]), now);
    let Assignment::Refused(e) = &r else {
        panic!("{r:?}")
    };
    assert!(e.to_string().contains("threshold"), "{e}");
    // for another device
    let (_kb, b) = enrolled(HW);
    let elsewhere = auth(&b.id, 3, now + Duration::hours(1), &rk);
    let r = assign(&v, &pinned_policy(&a.id, 3, &rk, vec![elsewhere]), now);
    assert!(matches!(r, Assignment::Refused(_)), "{r:?}");
    // an upgrade or a re-install needs nothing
    let r = assign(&v, &pinned_policy(&a.id, 5, &rk, vec![]), now);
    assert!(matches!(r, Assignment::Install { .. }), "{r:?}");
}

#[test]
fn yanked_target_gets_remediation_and_is_never_rolled_out() {
    let (_k, a) = enrolled(HW);
    let rk = MemorySigner::generate_ed25519().unwrap();
    let v = view(&a, 5);
    let ro = Rollout::new(
        "r5",
        "seed",
        release("app-5", 5),
        Selector::default(),
        vec![Stage {
            share_bp: 10_000,
            gate: Gate::default(),
        }],
        vec![],
    )
    .unwrap();
    let p = FleetPolicy {
        rollouts: vec![ro],
        pins: Default::default(),
        yanks: vec![custody_director::policy::Yank {
            target: "app-5".into(),
            replacement: release("app-6", 6),
        }],
        rollback_authorizations: vec![],
        rollback_keys: rollback_keys(&rk),
    };
    match assign(&v, &p, t0()) {
        Assignment::Install { release, via, .. } => {
            assert_eq!(release.name, "app-6");
            assert!(matches!(
                via,
                custody_director::policy::Via::Remediation { .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    let fleet = vec![v.clone(), view(&a, 4)];
    assert_eq!(
        custody_director::policy::remediation_set(&fleet, &p.yanks[0]),
        vec![a.id.as_str()]
    );
    // a device on app-4 is not offered the yanked app-5
    let r = assign(&view(&a, 4), &p, t0());
    assert!(matches!(r, Assignment::Nothing { .. }), "{r:?}");
}

// ------------------------------------------------------------ enrolment

#[test]
fn expired_and_used_tokens_are_refused() {
    let now = t0();
    let store = MemoryTokenStore::default();
    let (token, rec) = issue_token("fleet-a", None, now, Duration::minutes(10)).unwrap();
    assert!(token.starts_with("cet_"));
    assert_ne!(rec.hash, token, "only the hash is stored");
    store.insert(rec).unwrap();
    let key = MemorySigner::generate_ed25519().unwrap();
    let mk = |k: &MemorySigner, at| {
        EnrolmentRequest::sign(
            claims(
                k,
                HW,
                EnrolmentCredential::Token {
                    token: token.clone(),
                },
                at,
            ),
            k,
            None,
        )
        .unwrap()
    };
    // expired
    let late = now + Duration::minutes(11);
    let e = enrol(
        &mk(&key, late),
        late,
        &EnrolmentPolicy::default(),
        &store,
        &|_| false,
    )
    .unwrap_err();
    assert!(
        matches!(e, EnrolError::Token(TokenRefusal::Expired { .. })),
        "{e}"
    );
    // fresh token: first use fine, second refused
    let (token2, rec2) = issue_token("fleet-a", None, now, Duration::minutes(10)).unwrap();
    store.insert(rec2).unwrap();
    let mk2 = |k: &MemorySigner| {
        EnrolmentRequest::sign(
            claims(
                k,
                HW,
                EnrolmentCredential::Token {
                    token: token2.clone(),
                },
                now,
            ),
            k,
            None,
        )
        .unwrap()
    };
    let dev = enrol(
        &mk2(&key),
        now,
        &EnrolmentPolicy::default(),
        &store,
        &|_| false,
    )
    .unwrap();
    assert_eq!(dev.group, "fleet-a");
    let key2 = MemorySigner::generate_ed25519().unwrap();
    let e = enrol(
        &mk2(&key2),
        now,
        &EnrolmentPolicy::default(),
        &store,
        &|_| false,
    )
    .unwrap_err();
    assert!(
        matches!(e, EnrolError::Token(TokenRefusal::AlreadyUsed { .. })),
        "{e}"
    );
    // unknown token
    let req = EnrolmentRequest::sign(
        claims(
            &key2,
            HW,
            EnrolmentCredential::Token {
                token: "cet_nope".into(),
            },
            now,
        ),
        &key2,
        None,
    )
    .unwrap();
    let e = enrol(&req, now, &EnrolmentPolicy::default(), &store, &|_| false).unwrap_err();
    assert!(
        matches!(e, EnrolError::Token(TokenRefusal::Unknown { .. })),
        "{e}"
    );
}

#[test]
fn enrolment_without_key_possession_does_not_burn_the_token() {
    let now = t0();
    let store = MemoryTokenStore::default();
    let (token, rec) = issue_token("fleet-a", None, now, Duration::minutes(10)).unwrap();
    store.insert(rec).unwrap();
    let victim = MemorySigner::generate_ed25519().unwrap();
    let attacker = MemorySigner::generate_ed25519().unwrap();
    // claims name the victim's key, signed by the attacker
    let c = claims(
        &victim,
        HW,
        EnrolmentCredential::Token {
            token: token.clone(),
        },
        now,
    );
    let req = EnrolmentRequest::sign(c, &attacker, None).unwrap();
    let req = EnrolmentRequest::from_bytes(&req.to_bytes().unwrap()).unwrap();
    let e = enrol(&req, now, &EnrolmentPolicy::default(), &store, &|_| false).unwrap_err();
    assert!(matches!(e, EnrolError::NoPossession { .. }), "{e}");
    let ok = EnrolmentRequest::sign(
        claims(&victim, HW, EnrolmentCredential::Token { token }, now),
        &victim,
        None,
    )
    .unwrap();
    enrol(&ok, now, &EnrolmentPolicy::default(), &store, &|_| false).unwrap();
}

#[test]
fn token_group_scope_and_duplicate_enrolment_are_enforced() {
    let now = t0();
    let store = MemoryTokenStore::default();
    let (token, rec) = issue_token("fleet-b", None, now, Duration::minutes(10)).unwrap();
    store.insert(rec).unwrap();
    let key = MemorySigner::generate_ed25519().unwrap();
    // claims ask for fleet-a
    let req = EnrolmentRequest::sign(
        claims(&key, HW, EnrolmentCredential::Token { token }, now),
        &key,
        None,
    )
    .unwrap();
    let e = enrol(&req, now, &EnrolmentPolicy::default(), &store, &|_| false).unwrap_err();
    assert!(matches!(e, EnrolError::GroupMismatch { .. }), "{e}");
    let e = enrol(&req, now, &EnrolmentPolicy::default(), &store, &|_| true).unwrap_err();
    assert!(matches!(e, EnrolError::AlreadyEnrolled { .. }), "{e}");
}

// ------------------------------------------------------------ factory identity

struct Factory {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

fn factory_ca(name: &str) -> Factory {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let ca = p.self_signed(&ca_key).unwrap();
    Factory { ca, ca_key }
}

/// A device certificate with subject serialNumber = hw, and its key as a signer.
fn device_cert(f: &Factory, hw: &str) -> (Vec<u8>, MemorySigner) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), hw);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "device");
    let cert = p.signed_by(&key, &f.ca, &f.ca_key).unwrap();
    let signer = MemorySigner::from_pkcs8(KeyType::EcdsaP256, &key.serialize_der()).unwrap();
    (cert.der().to_vec(), signer)
}

fn factory_request(
    cert: &[u8],
    cert_key: &MemorySigner,
    hw: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> (MemorySigner, EnrolmentRequest) {
    use base64::Engine as _;
    let key = MemorySigner::generate_ed25519().unwrap();
    let chain = vec![base64::engine::general_purpose::STANDARD.encode(cert)];
    let sign = |m: &[u8]| cert_key.sign(m).map_err(|e| e.to_string());
    let req = EnrolmentRequest::sign(
        claims(&key, hw, EnrolmentCredential::Factory { chain }, now),
        &key,
        Some(&sign),
    )
    .unwrap();
    let req = EnrolmentRequest::from_bytes(&req.to_bytes().unwrap()).unwrap();
    (key, req)
}

#[test]
fn factory_identity_chains_to_the_manufacturer_ca_and_binds_the_hardware_id() {
    let now = t0();
    let f = factory_ca("Acme Factory CA");
    let policy = EnrolmentPolicy {
        factory_cas: FactoryCas::new(vec![f.ca.der().to_vec()]).unwrap(),
        ..Default::default()
    };
    let store = MemoryTokenStore::default();
    let (cert, ck) = device_cert(&f, "SN-0001");
    let (_key, req) = factory_request(&cert, &ck, "SN-0001", now);
    let dev = enrol(&req, now, &policy, &store, &|_| false).unwrap();
    assert_eq!(dev.hardware_id, "SN-0001");
    assert_eq!(dev.group, "fleet-a");
    // hardware id the certificate does not bind
    let (_key, req) = factory_request(&cert, &ck, "SN-9999", now);
    let e = enrol(&req, now, &policy, &store, &|_| false).unwrap_err();
    assert!(matches!(e, EnrolError::HardwareMismatch { .. }), "{e}");
    // the certificate presented without its key's signature (copied cert)
    let other = MemorySigner::generate_p256().unwrap();
    let (_key, req) = factory_request(&cert, &other, "SN-0001", now);
    let e = enrol(&req, now, &policy, &store, &|_| false).unwrap_err();
    assert!(matches!(e, EnrolError::NoFactoryPossession), "{e}");
}

#[test]
fn factory_certificate_from_an_unknown_ca_is_refused() {
    let now = t0();
    let trusted = factory_ca("Acme Factory CA");
    let rogue = factory_ca("Acme Factory CA"); // same name, different key
    let policy = EnrolmentPolicy {
        factory_cas: FactoryCas::new(vec![trusted.ca.der().to_vec()]).unwrap(),
        ..Default::default()
    };
    let (cert, ck) = device_cert(&rogue, "SN-0001");
    let (_key, req) = factory_request(&cert, &ck, "SN-0001", now);
    let e = enrol(&req, now, &policy, &MemoryTokenStore::default(), &|_| false).unwrap_err();
    assert!(matches!(e, EnrolError::Certificate(_)), "{e}");
    assert!(
        e.to_string()
            .contains("does not chain to a configured manufacturer CA"),
        "{e}"
    );
    // no CA configured: factory enrolment disabled
    let e = enrol(
        &req,
        now,
        &EnrolmentPolicy::default(),
        &MemoryTokenStore::default(),
        &|_| false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no manufacturer CA"), "{e}");
}

// ------------------------------------------------------------ wire boundary

#[test]
fn token_consume_is_single_use_under_concurrency() {
    let now = t0();
    let store = std::sync::Arc::new(MemoryTokenStore::default());
    let (token, rec) = issue_token("fleet-a", None, now, Duration::hours(1)).unwrap();
    store.insert(rec).unwrap();
    let hash = custody_director::enrol::token_hash(&token);
    let wins: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let hash = hash.clone();
                s.spawn(move || usize::from(store.consume(&hash, now).unwrap().is_ok()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
}

#[test]
fn wire_parsers_refuse_confusion_versions_unknown_fields_and_size() {
    use custody_director::wire::{WireError, MAX_MANIFEST_BYTES};
    let (k, a) = enrolled(HW);
    let good = SignedManifest::sign(manifest(&a, 1, "app", 1), &k).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&good.to_bytes().unwrap()).unwrap();
    let parse = |v: &serde_json::Value| SignedManifest::from_bytes(&serde_json::to_vec(v).unwrap());
    // an enrolment's signed claims presented as a manifest (type confusion)
    let mut t = v.clone();
    t["signed"]["_type"] = "custody-enrolment".into();
    let e = parse(&t).unwrap_err();
    assert!(e.to_string().contains("_type"), "{e}");
    // a future wire version
    let mut t = v.clone();
    t["signed"]["wire_version"] = 2.into();
    let e = parse(&t).unwrap_err();
    assert!(
        matches!(e, WireError::Field { ref field, .. } if field == "wire_version"),
        "{e}"
    );
    // a field this version does not know (would be signed but ignored)
    let mut t = v.clone();
    t["signed"]["priority"] = 1.into();
    let e = parse(&t).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    // duplicate keys (parser differential)
    let dup = br#"{"signed":{"_type":"custody-manifest","_type":"x"},"signatures":[]}"#;
    assert!(SignedManifest::from_bytes(dup)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    // oversized
    let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert!(matches!(
        SignedManifest::from_bytes(&big),
        Err(WireError::TooLarge { .. })
    ));
    // headers: non-numeric timestamp, short nonce, newline in path
    let id = a.id.clone();
    let sig = "ab".repeat(32);
    let nonce = "0".repeat(32);
    // each refusal names the header or field that broke its rule
    let refused = |r: Result<SignedRequest, WireError>, field: &str| {
        let e = r.expect_err(field).to_string();
        assert!(e.contains(field), "expected {field:?} in: {e}");
    };
    refused(
        SignedRequest::from_headers(&id, "12x", &nonce, &sig, "POST", "/a", vec![]),
        "custody-timestamp",
    );
    refused(
        SignedRequest::from_headers(&id, "12", "abcd", &sig, "POST", "/a", vec![]),
        "nonce",
    );
    refused(
        SignedRequest::from_headers(&id, "12", &nonce, &sig, "POST", "/a\n/b", vec![]),
        "path",
    );
    refused(
        SignedRequest::from_headers("dev", "12", &nonce, &sig, "POST", "/a", vec![]),
        "device_id",
    );
    SignedRequest::from_headers(&id, "12", &nonce, &sig, "POST", "/a?x=1", vec![]).unwrap();
}

#[test]
fn request_for_another_device_record_is_refused() {
    let (ka, _a) = enrolled(HW);
    let (_kb, b) = enrolled(HW);
    let r = sign_request(
        &ka,
        "POST",
        "/x",
        vec![],
        t0(),
        custody_director::request::fresh_nonce().unwrap(),
    )
    .unwrap();
    let e = verify_device_request(
        &b,
        &r,
        route("/x"),
        t0(),
        &RequestPolicy::default(),
        &MemoryNonceCache::new(10),
    )
    .unwrap_err();
    assert!(matches!(e, RequestError::WrongDevice { .. }), "{e}");
}

#[test]
fn director_and_image_repository_must_agree() {
    let d = director();
    let (_k, a) = enrolled(HW);
    let md = build_director_metadata(
        signers(&d),
        &a.id,
        HW,
        &[target("app", 1)],
        &DeviceDirectorState::default(),
        t0(),
        &DirectorConfig::default(),
    )
    .unwrap();
    let bound = device_refresh(&d.root, &md, t0(), &a.id, HW).unwrap();
    let image = |len: u64, h: &str| -> custody_tuf::TargetFile {
        serde_json::from_value(serde_json::json!({"length": len, "hashes": {"sha256": h}})).unwrap()
    };
    bound[0]
        .agrees_with_image(&image(3, &"cd".repeat(32)))
        .unwrap();
    let e = bound[0]
        .agrees_with_image(&image(4, &"cd".repeat(32)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            DirectorError::ImageMismatch {
                field: "length",
                ..
            }
        ),
        "{e}"
    );
    let e = bound[0]
        .agrees_with_image(&image(3, &"ce".repeat(32)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            DirectorError::ImageMismatch {
                field: "hashes",
                ..
            }
        ),
        "{e}"
    );
}

/// The image repository's signed custom metadata must not contradict the
/// device (hardware id) or the director (release counter).
#[test]
fn image_custom_metadata_must_agree_with_device_and_director() {
    let d = director();
    let (_k, a) = enrolled(HW);
    let md = build_director_metadata(
        signers(&d),
        &a.id,
        HW,
        &[target("app", 7)],
        &DeviceDirectorState::default(),
        t0(),
        &DirectorConfig::default(),
    )
    .unwrap();
    let bound = device_refresh(&d.root, &md, t0(), &a.id, HW).unwrap();
    let image = |custom: serde_json::Value| -> custody_tuf::TargetFile {
        serde_json::from_value(serde_json::json!({
            "length": 3, "hashes": {"sha256": "cd".repeat(32)}, "custom": custom,
        }))
        .unwrap()
    };
    for ok in [
        serde_json::json!({}),
        serde_json::json!({"hardware_id": HW, "release_counter": 7}),
        serde_json::json!({"hardware_ids": ["other", HW]}),
    ] {
        bound[0]
            .agrees_with_image_for(&image(ok.clone()), HW)
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, field) in [
        (serde_json::json!({"hardware_id": "other"}), "hardware_id"),
        (
            serde_json::json!({"hardware_ids": ["other"]}),
            "hardware_ids",
        ),
        (serde_json::json!({"hardware_ids": HW}), "hardware_ids"),
        (serde_json::json!({"release_counter": 6}), "release_counter"),
        (
            serde_json::json!({"release_counter": "7"}),
            "release_counter",
        ),
    ] {
        let e = bound[0]
            .agrees_with_image_for(&image(bad.clone()), HW)
            .unwrap_err();
        match &e {
            DirectorError::ImageCustom {
                field: f, target, ..
            } => {
                assert_eq!((*f, target.as_str()), (field, "app"), "{bad}: {e}")
            }
            other => panic!("{bad}: expected ImageCustom, got {other}"),
        }
        assert!(e.to_string().contains(&format!("custom.{field}")), "{e}");
    }
    // length and hashes are still checked first
    let e = bound[0]
        .agrees_with_image_for(
            &serde_json::from_value(
                serde_json::json!({"length": 4, "hashes": {"sha256": "cd".repeat(32)}}),
            )
            .unwrap(),
            HW,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            DirectorError::ImageMismatch {
                field: "length",
                ..
            }
        ),
        "{e}"
    );
}
