//! The device API of `custody serve` (docs/DEVICE-API.md) against a real
//! server on loopback: enrolment, check-in with director metadata that the
//! device verifies with custody-tuf, and every attack of issue #5 refused
//! with its ErrorBody code AND recorded (attack table + audit log).

mod common;
mod director_common;

use custody_director::wire::{EnrolmentCredential, ErrorBody};
use director_common::{fleet, fleet_with, verify_director, Device};
use serde_json::json;

fn code(r: &common::Resp) -> String {
    let b: ErrorBody = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("status {} not an ErrorBody ({e}): {}", r.status, r.text()));
    assert!(!b.message.is_empty());
    b.error
}

async fn assert_recorded(f: &director_common::Fleet, device: &str, want: &str) {
    let attacks = f.attacks(device).await;
    assert!(
        attacks.iter().any(|a| a["code"] == want),
        "attack {want} for {device} not recorded: {attacks:?}"
    );
    let audit = f.audit_actions().await;
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "device.attack" && d.starts_with(want)),
        "attack {want} not in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_checkin_and_verify_director_metadata() {
    let f = fleet().await;
    let mut dev = Device::new("board-a", "fleet-a");
    let token = f.token("fleet-a").await;
    let r = f.enrol(&mut dev, &token).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let e = custody_director::wire::EnrolResponse::from_bytes(&r.body).unwrap();
    assert_eq!(e.image_repository, "main");
    assert_eq!(e.image_metadata_path, "/repos/main/metadata/");
    // The image root handed out is the hosted one.
    let hosted = f.s.get("/repos/main/metadata/1.root.json", &[]).await;
    assert_eq!(hosted.body, e.image_root);

    let (r, c) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = c.unwrap();
    assert_eq!(c.accepted_counter, 1);
    assert!(c.next_checkin_secs.is_some());
    // Verified by custody-tuf from the pinned director root; never empty:
    // bound to this device even with no target assigned.
    let bound = verify_director(&e.director_root, &c, &dev).unwrap();
    assert!(bound.is_empty());
    let (_, c2) = f.checkin(&mut dev).await;
    let c2 = c2.unwrap();
    assert_eq!(c2.accepted_counter, 2);
    verify_director(&e.director_root, &c2, &dev).unwrap();

    // Director root chain: the signed GET serves version 1.
    let r = f
        .signed_as(
            &dev,
            "GET",
            "/device/v1/director/1.root.json",
            vec![],
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, e.director_root);
    // Unsigned: refused.
    let r = f.s.get("/device/v1/director/1.root.json", &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(code(&r), "malformed");

    // Fleet view: the device, its counter, its check-in.
    let r = f
        .fleet_api("GET", &format!("/api/v1/fleet/devices/{}", dev.id), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["hardware_id"], "board-a");
    assert_eq!(j["group"], "fleet-a");
    assert_eq!(j["last_report_counter"], 2);
    assert_eq!(j["status"], "active");
    // Device routes without the fleet scope are not admin routes; the
    // fleet API refuses a token without fleet:admin.
    let auditor = f.s.credential("auditor", &["audit:read"]).await;
    let at = f.s.token(&auditor, None).await;
    let r = f.s.api("GET", "/api/v1/fleet/devices", &at, None).await;
    assert_eq!(r.status, 403, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_manifest_signed_by_another_devices_key() {
    let f = fleet().await;
    let a = f.enrolled("board-a", "fleet-a").await;
    let mut b = f.enrolled("board-a", "fleet-a").await;
    // B's key signs a manifest that claims to be A's, sent as A's request
    // (request signed by B): refused at the request signature.
    let mut forged = Device::new("board-a", "fleet-a");
    forged.key = custody_keys::MemorySigner::generate_ed25519().unwrap();
    forged.id = a.id.clone();
    let body = forged.manifest_with(1);
    let r = f
        .signed_as(
            &b,
            "POST",
            "/device/v1/checkin?root=1",
            body.clone(),
            Some(&a.id),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "bad_signature");
    assert_recorded(&f, &a.id, "bad_signature").await;
    // B's own authenticated request carrying a manifest signed by another
    // key for B: refused at the manifest signature.
    let mut other = Device::new("board-a", "fleet-a");
    other.id = b.id.clone();
    let body = other.manifest_with(1);
    let r = f
        .signed_as(&b, "POST", "/device/v1/checkin?root=1", body, None, None)
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "bad_signature");
    assert!(r.text().contains("not signed by device"), "{}", r.text());
    assert_recorded(&f, &b.id, "bad_signature").await;
    // B sending A's genuinely signed manifest under its own request.
    let body = a.manifest_with(1);
    let r = f
        .signed_as(&b, "POST", "/device/v1/checkin?root=1", body, None, None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(code(&r), "wrong_device");
    // B is still fine with its own manifest.
    let (r, _) = f.checkin(&mut b).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_replayed_manifest_and_request() {
    let f = fleet().await;
    let mut dev = f.enrolled("board-a", "fleet-a").await;
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Old counter (1 < 2) with a fresh request: replayed manifest.
    let old = dev.manifest_with(1);
    let r = f
        .signed_as(&dev, "POST", "/device/v1/checkin?root=1", old, None, None)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(code(&r), "replayed_counter");
    assert_recorded(&f, &dev.id, "replayed_counter").await;
    // Same counter as the last accepted one.
    let same = dev.manifest_with(2);
    let r = f
        .signed_as(&dev, "POST", "/device/v1/checkin?root=1", same, None, None)
        .await;
    assert_eq!(code(&r), "replayed_counter");
    // A replayed request (same nonce) with a new counter.
    let nonce = custody_director::request::fresh_nonce().unwrap();
    let m = dev.manifest_with(10);
    let r = f
        .signed_as(
            &dev,
            "POST",
            "/device/v1/checkin?root=1",
            m,
            None,
            Some(nonce.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = dev.manifest_with(11);
    let r = f
        .signed_as(
            &dev,
            "POST",
            "/device/v1/checkin?root=1",
            m,
            None,
            Some(nonce),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(code(&r), "replayed_nonce");
    assert_recorded(&f, &dev.id, "replayed_nonce").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_director_metadata_of_a_presented_to_b() {
    let f = fleet().await;
    let mut a = f.enrolled("board-a", "fleet-a").await;
    let b = f.enrolled("board-a", "fleet-a").await;
    let root = f
        .signed_as(
            &a,
            "GET",
            "/device/v1/director/1.root.json",
            vec![],
            None,
            None,
        )
        .await
        .body;
    let (_, c) = f.checkin(&mut a).await;
    let c = c.unwrap();
    verify_director(&root, &c, &a).unwrap();
    // The same signed metadata, presented to B: valid signatures, but
    // bound to A (the never-empty binding), so B refuses it.
    let err = verify_director(&root, &c, &b).unwrap_err();
    assert!(err.contains(&a.id) && err.contains(&b.id), "{err}");
    // And B cannot fetch A's metadata: a request claiming A's id signed
    // with B's key is refused and recorded.
    let body = a.manifest_with(99);
    let r = f
        .signed_as(
            &b,
            "POST",
            "/device/v1/checkin?root=1",
            body,
            Some(&a.id),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "bad_signature");
    assert_recorded(&f, &a.id, "bad_signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_decommissioned_and_suspended_devices() {
    let f = fleet().await;
    let mut dev = f.enrolled("board-a", "fleet-a").await;
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200);
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/suspend", dev.id),
            Some(json!({"reason": "stolen?"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(code(&r), "suspended");
    assert!(r.text().contains("stolen?"), "{}", r.text());
    assert_recorded(&f, &dev.id, "suspended").await;
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/resume", dev.id),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/decommission", dev.id),
            Some(json!({"reason": "end of life"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "decommissioned");
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(code(&r), "decommissioned");
    assert_recorded(&f, &dev.id, "decommissioned").await;
    // Final: no resume, and the root route is closed too.
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/resume", dev.id),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = f
        .signed_as(
            &dev,
            "GET",
            "/device/v1/director/1.root.json",
            vec![],
            None,
            None,
        )
        .await;
    assert_eq!(code(&r), "decommissioned");
    // Re-enrolling the same key is refused.
    let t = f.token("fleet-a").await;
    let r = f.enrol(&mut dev, &t).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(code(&r), "already_enrolled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reattestation_overdue_suspends() {
    let f = fleet_with(|c| c.director.reattestation_period_seconds = 2).await;
    let mut dev = f.enrolled("board-a", "fleet-a").await;
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(code(&r), "suspended");
    assert!(r.text().contains("re-attestation overdue"), "{}", r.text());
    let r = f
        .fleet_api("GET", &format!("/api/v1/fleet/devices/{}", dev.id), None)
        .await;
    assert_eq!(r.json()["effective_status"], "overdue");
    // An administrator resuming it restarts the clock.
    let r = f
        .fleet_api(
            "POST",
            &format!("/api/v1/fleet/devices/{}/resume", dev.id),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_expired_used_and_unknown_tokens() {
    let f = fleet().await;
    // Used: the second device presenting the same token.
    let token = f.token("fleet-a").await;
    let mut d1 = Device::new("board-a", "fleet-a");
    assert_eq!(f.enrol(&mut d1, &token).await.status, 201);
    let mut d2 = Device::new("board-a", "fleet-a");
    let r = f.enrol(&mut d2, &token).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "token_used");
    assert_recorded(&f, &d2.id, "token_used").await;
    // Expired: a 1-second token, used after it expired.
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/enrolment-tokens",
            Some(json!({"group": "fleet-a", "ttl_seconds": 1})),
        )
        .await;
    let short = r.json()["tokens"][0].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let mut d3 = Device::new("board-a", "fleet-a");
    let r = f.enrol(&mut d3, &short).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "token_expired");
    assert_recorded(&f, &d3.id, "token_expired").await;
    // Unknown token.
    let mut d4 = Device::new("board-a", "fleet-a");
    let r = f.enrol(&mut d4, "cet_not-a-real-token").await;
    assert_eq!(code(&r), "token_unknown");
    // Wrong group for the token: scope refused (and the token is burnt).
    let t = f.token("fleet-b").await;
    let mut d5 = Device::new("board-a", "fleet-a");
    let r = f.enrol(&mut d5, &t).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(code(&r), "token_scope");
    // Tampered enrolment (proof does not match the claims).
    let t = f.token("fleet-a").await;
    let d6 = Device::new("board-a", "fleet-a");
    let mut body: serde_json::Value =
        serde_json::from_slice(&d6.enrol_body(EnrolmentCredential::Token { token: t })).unwrap();
    body["signed"]["hardware_id"] = json!("board-z");
    let r = common::http(
        "POST",
        &format!("{}/device/v1/enrol", f.s.url),
        &[("content-type", "application/json")],
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "bad_signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_factory_certificate_from_unknown_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, PKCS_ED25519,
    };
    let ca = |name: &str| {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        let cert = p.self_signed(&key).unwrap();
        (cert, key)
    };
    let (trusted, trusted_key) = ca("ACME factory CA");
    let (rogue, rogue_key) = ca("Rogue CA");
    let leaf = |issuer: &rcgen::Certificate, issuer_key: &KeyPair, hw: &str| {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, hw);
        p.distinguished_name = dn;
        let cert = p.signed_by(&key, issuer, issuer_key).unwrap();
        (cert, key)
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("factory-ca.pem");
    std::fs::write(&ca_file, trusted.pem()).unwrap();
    let f = fleet_with(|c| c.director.factory_ca_files = vec![ca_file.clone()]).await;

    let enrol_with = |cert: rcgen::Certificate, key: KeyPair, hw: &str| {
        let dev = Device::new(hw, "factory");
        use base64::Engine as _;
        let chain = vec![base64::engine::general_purpose::STANDARD.encode(cert.der())];
        let sign = move |msg: &[u8]| -> Result<Vec<u8>, String> {
            let pair =
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key.serialize_der())
                    .map_err(|e| e.to_string())?;
            Ok(pair.sign(msg).as_ref().to_vec())
        };
        let body = dev.enrol_body_with(EnrolmentCredential::Factory { chain }, Some(&sign));
        (dev, body)
    };
    // A certificate from the configured manufacturer CA enrols.
    let (c, k) = leaf(&trusted, &trusted_key, "board-f");
    let (dev, body) = enrol_with(c, k, "board-f");
    let r = common::http(
        "POST",
        &format!("{}/device/v1/enrol", f.s.url),
        &[("content-type", "application/json")],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let j = f
        .fleet_api("GET", &format!("/api/v1/fleet/devices/{}", dev.id), None)
        .await
        .json();
    assert_eq!(j["enrolled_with"]["kind"], "factory");
    // One from another CA is refused as unknown_ca and recorded.
    let (c, k) = leaf(&rogue, &rogue_key, "board-f");
    let (dev, body) = enrol_with(c, k, "board-f");
    let r = common::http(
        "POST",
        &format!("{}/device/v1/enrol", f.s.url),
        &[("content-type", "application/json")],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "unknown_ca");
    assert_recorded(&f, &dev.id, "unknown_ca").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_timestamp_and_malformed_bodies() {
    let f = fleet().await;
    let dev = f.enrolled("board-a", "fleet-a").await;
    // A request signed 10 minutes ago.
    let old = chrono::Utc::now() - chrono::Duration::minutes(10);
    let body = dev.manifest_with(1);
    let req = custody_director::request::sign_request(
        &dev.key,
        "POST",
        "/device/v1/checkin?root=1",
        body.clone(),
        old,
        custody_director::request::fresh_nonce().unwrap(),
    )
    .unwrap();
    let ts = req.timestamp.to_string();
    let r = common::http(
        "POST",
        &format!("{}/device/v1/checkin?root=1", f.s.url),
        &[
            ("custody-device", &dev.id),
            ("custody-timestamp", &ts),
            ("custody-nonce", &req.nonce),
            ("custody-signature", &req.signature),
        ],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "stale_timestamp");
    // Signed for another path (root=2) than called (root=1).
    let body = dev.manifest_with(1);
    let req = custody_director::request::sign_request(
        &dev.key,
        "POST",
        "/device/v1/checkin?root=2",
        body.clone(),
        chrono::Utc::now(),
        custody_director::request::fresh_nonce().unwrap(),
    )
    .unwrap();
    let ts = req.timestamp.to_string();
    let r = common::http(
        "POST",
        &format!("{}/device/v1/checkin?root=1", f.s.url),
        &[
            ("custody-device", &dev.id),
            ("custody-timestamp", &ts),
            ("custody-nonce", &req.nonce),
            ("custody-signature", &req.signature),
        ],
        Some(body),
    )
    .await;
    assert_eq!(code(&r), "bad_signature");
    // Garbage manifest under a valid signature: malformed, 400.
    let r = f
        .signed_as(
            &dev,
            "POST",
            "/device/v1/checkin?root=1",
            b"{\"signed\":1}".to_vec(),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(code(&r), "malformed");
    // Missing root query.
    let r = f
        .signed_as(
            &dev,
            "POST",
            "/device/v1/checkin",
            dev.manifest_with(1),
            None,
            None,
        )
        .await;
    assert_eq!(code(&r), "malformed");
    // Unknown device.
    let stranger = Device::new("board-a", "fleet-a");
    let r = f
        .signed_as(
            &stranger,
            "POST",
            "/device/v1/checkin?root=1",
            stranger.manifest_with(1),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "unknown_device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_fleet_routes() {
    let f = fleet().await;
    let r = f.s.get("/openapi.json", &[]).await;
    assert_eq!(r.status, 200);
    let doc = r.text();
    for p in [
        "/api/v1/fleet/enrolment-tokens",
        "/api/v1/fleet/devices/{id}",
        "/api/v1/fleet/rollouts/{id}/pause",
        "/api/v1/fleet/yanks",
        "/api/v1/fleet/rollback-authorizations",
    ] {
        assert!(doc.contains(p), "{p} missing from /openapi.json");
    }
}
