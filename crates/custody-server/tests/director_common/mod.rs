//! Director test harness: a real `custody serve` on loopback with a
//! published image repository `main` (offline root/targets keys signing
//! through the API, as in production), a fleet admin token, and simulated
//! devices speaking docs/DEVICE-API.md with custody-director's wire types.
#![allow(dead_code)]

use std::collections::BTreeMap;

use custody_director::request::{fresh_nonce, sign_request};
use custody_director::wire::{
    headers as h, CheckinResponse, DeviceAttributes, EnrolResponse, EnrolmentClaims,
    EnrolmentCredential, EnrolmentRequest, InstallReport, InstalledTarget, ManifestBody,
    SignedManifest, TYPE_ENROLMENT, TYPE_MANIFEST, WIRE_VERSION,
};
use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner as DeviceKey;
use custody_keys::Signer;
use custody_repo::keyring::KeyRing;
use serde_json::{json, Value};

use crate::common::{self, Resp, TestServer};

pub struct Fleet {
    pub s: TestServer,
    /// fleet:admin token
    pub admin: String,
    ring: KeyRing,
    root_id: String,
    targets_id: String,
    signer_token: String,
    uploader_token: String,
    publisher_token: String,
    pub keydir: tempfile::TempDir,
    /// The image repository delegates to TAP 15 hash bins signed online.
    binned: bool,
}

/// Start a server (with `f` applied to its config) and publish an empty
/// image repository `main`.
pub async fn fleet_with(f: impl FnOnce(&mut custody_server::ServerConfig)) -> Fleet {
    fleet_inner(f, None).await
}

/// Like [`fleet`], with an image repository whose targets live in `bins`
/// hash bins (online `bins` key; the offline targets key signs the
/// delegation once).
pub async fn fleet_binned(bins: u32) -> Fleet {
    fleet_inner(|_| {}, Some(bins)).await
}

async fn fleet_inner(
    f: impl FnOnce(&mut custody_server::ServerConfig),
    hash_bins: Option<u32>,
) -> Fleet {
    let keydir = tempfile::tempdir().unwrap();
    let pass = keydir.path().join("passphrase");
    std::fs::write(&pass, "director test passphrase\n").unwrap();
    let mut f = Some(f);
    let s = common::start_with(|c| {
        c.key_passphrase_file = Some(pass.clone());
        c.allow_upload_and_publish = false;
        if let Some(f) = f.take() {
            f(c);
        }
    })
    .await;
    let mut ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
    let root = custody_keys::MemorySigner::generate_ed25519().unwrap();
    let targets = custody_keys::MemorySigner::generate_ed25519().unwrap();
    let (rk, tk) = (
        serde_json::to_value(root.key()).unwrap(),
        serde_json::to_value(targets.key()).unwrap(),
    );
    let (root_id, targets_id) = (root.keyid().to_string(), targets.keyid().to_string());
    ring.add(Box::new(root));
    ring.add(Box::new(targets));
    let admin = s.token(&s.bootstrap, None).await;
    let r = s
        .api(
            "POST",
            "/api/v1/repos/main",
            &admin,
            Some(match hash_bins {
                None => json!({
                    "root": {"keys": [rk], "threshold": 1},
                    "targets": {"keys": [tk], "threshold": 1},
                }),
                Some(n) => json!({
                    "root": {"keys": [rk], "threshold": 1},
                    "targets": {"keys": [tk], "threshold": 1},
                    "hash_bins": n,
                }),
            }),
        )
        .await;
    assert_eq!(r.status, 201, "create image repository: {}", r.text());
    let signer = s
        .credential(
            "offline signer",
            &["role:sign:root@main", "role:sign:targets@main"],
        )
        .await;
    let uploader = s
        .credential("ci", &["target:upload@main", "target:stage@main"])
        .await;
    let publisher = s.credential("publisher", &["repo:publish@main"]).await;
    let fleet = Fleet {
        signer_token: s.token(&signer, None).await,
        uploader_token: s.token(&uploader, None).await,
        publisher_token: s.token(&publisher, None).await,
        admin,
        ring,
        root_id,
        targets_id,
        s,
        keydir,
        binned: hash_bins.is_some(),
    };
    let r = fleet.sign_role("root").await;
    assert_eq!(r.status, 200, "sign root: {}", r.text());
    let r = fleet.sign_role("targets").await;
    assert_eq!(r.status, 200, "sign targets: {}", r.text());
    fleet
}

pub async fn fleet() -> Fleet {
    fleet_with(|_| {}).await
}

impl Fleet {
    async fn sign_role(&self, role: &str) -> Resp {
        let draft = self
            .s
            .api(
                "GET",
                &format!("/api/v1/repos/main/roles/{role}"),
                &self.signer_token,
                None,
            )
            .await;
        assert_eq!(draft.status, 200, "{}", draft.text());
        let keyid = if role == "root" {
            &self.root_id
        } else {
            &self.targets_id
        };
        let (_, signed) = custody_repo::repository::sign_metadata_bytes(
            &draft.body,
            std::path::Path::new("draft.json"),
            std::slice::from_ref(keyid),
            &self.ring,
        )
        .unwrap();
        common::http(
            "POST",
            &format!("{}/api/v1/repos/main/roles/{role}/signatures", self.s.url),
            &[
                ("authorization", &format!("Bearer {}", self.signer_token)),
                ("content-type", "application/json"),
            ],
            Some(signed),
        )
        .await
    }

    /// Upload, stage and publish targets `(name, bytes, release_counter)`
    /// into the image repository (the offline targets key signs).
    pub async fn publish(&self, targets: &[(&str, &[u8], u64)]) {
        for (name, data, counter) in targets {
            let sha = common::sha256_hex(data);
            let r = common::http(
                "PUT",
                &format!("{}/api/v1/repos/main/blobs/{sha}", self.s.url),
                &[("authorization", &format!("Bearer {}", self.uploader_token))],
                Some(data.to_vec()),
            )
            .await;
            assert!(r.status == 201 || r.status == 200, "{}", r.text());
            let r = self
                .s
                .api(
                    "PUT",
                    &format!("/api/v1/repos/main/targets/{name}"),
                    &self.uploader_token,
                    Some(json!({"blob_sha256": sha, "custom": {"release_counter": counter}})),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let r = self
            .s
            .api(
                "POST",
                "/api/v1/repos/main/publish",
                &self.publisher_token,
                None,
            )
            .await;
        if self.binned {
            // Bins are signed online: the publish goes live at once.
            assert_eq!(r.status, 200, "publish into bins: {}", r.text());
            return;
        }
        assert_eq!(
            r.status,
            409,
            "publish waits for the targets key: {}",
            r.text()
        );
        let r = self.sign_role("targets").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["published"]["version"].is_i64(), "{}", r.text());
    }

    pub async fn fleet_api(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.s.api(method, path, &self.admin, body).await
    }

    /// Issue one enrolment token for `group`.
    pub async fn token(&self, group: &str) -> String {
        let r = self
            .fleet_api(
                "POST",
                "/api/v1/fleet/enrolment-tokens",
                Some(json!({"group": group, "ttl_seconds": 3600})),
            )
            .await;
        assert_eq!(r.status, 201, "issue token: {}", r.text());
        r.json()["tokens"][0].as_str().unwrap().to_string()
    }

    pub async fn enrol(&self, dev: &mut Device, token: &str) -> Resp {
        let body = dev.enrol_body(EnrolmentCredential::Token {
            token: token.into(),
        });
        let r = common::http(
            "POST",
            &format!("{}/device/v1/enrol", self.s.url),
            &[("content-type", "application/json")],
            Some(body),
        )
        .await;
        if r.status == 201 {
            let e = EnrolResponse::from_bytes(&r.body).unwrap();
            assert_eq!(e.device_id, dev.id);
        }
        r
    }

    /// A device enrolled through a fresh token.
    pub async fn enrolled(&self, hw: &str, group: &str) -> Device {
        let mut d = Device::new(hw, group);
        let t = self.token(group).await;
        let r = self.enrol(&mut d, &t).await;
        assert_eq!(r.status, 201, "enrol: {}", r.text());
        d
    }

    /// POST a signed request with `body` to `path` as `signer` (claiming
    /// `claimed` as device id).
    pub async fn signed_as(
        &self,
        signer: &Device,
        method: &str,
        path: &str,
        body: Vec<u8>,
        claim: Option<&str>,
        nonce: Option<String>,
    ) -> Resp {
        let now = chrono::Utc::now();
        let req = sign_request(
            &signer.key,
            method,
            path,
            body.clone(),
            now,
            nonce.unwrap_or_else(|| fresh_nonce().unwrap()),
        )
        .unwrap();
        let device = claim.unwrap_or(&req.device_id).to_string();
        let ts = req.timestamp.to_string();
        common::http(
            method,
            &format!("{}{path}", self.s.url),
            &[
                (h::DEVICE, &device),
                (h::TIMESTAMP, &ts),
                (h::NONCE, &req.nonce),
                (h::SIGNATURE, &req.signature),
                ("content-type", "application/json"),
            ],
            if method == "GET" { None } else { Some(body) },
        )
        .await
    }

    /// A check-in with the device's next manifest. Returns the response
    /// and, on 200, the parsed answer.
    pub async fn checkin(&self, dev: &mut Device) -> (Resp, Option<CheckinResponse>) {
        let body = dev.next_manifest();
        let r = self
            .signed_as(dev, "POST", "/device/v1/checkin?root=1", body, None, None)
            .await;
        let parsed = (r.status == 200).then(|| CheckinResponse::from_bytes(&r.body).unwrap());
        if parsed.is_some() {
            dev.reports.clear();
        }
        (r, parsed)
    }

    pub async fn attacks(&self, device: &str) -> Vec<Value> {
        let r = self
            .fleet_api(
                "GET",
                &format!("/api/v1/fleet/attacks?device={device}"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().as_array().unwrap().clone()
    }

    pub async fn audit_actions(&self) -> Vec<(String, String)> {
        let r = self
            .fleet_api("GET", "/api/v1/audit?limit=1000", None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["action"].as_str().unwrap_or("").to_string(),
                    a["detail"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// A simulated device: its own Ed25519 key (generated "on the device").
pub struct Device {
    pub key: DeviceKey,
    pub id: String,
    pub hw: String,
    pub group: String,
    pub environment: String,
    pub tags: Vec<String>,
    pub counter: u64,
    pub installed: BTreeMap<String, InstalledTarget>,
    pub reports: Vec<InstallReport>,
}

impl Device {
    pub fn new(hw: &str, group: &str) -> Self {
        Self::with_key(DeviceKey::generate_ed25519().unwrap(), hw, group)
    }

    /// A device whose Ed25519 key comes from `seed` (stable device ids, so
    /// bucket shares are the same on every run).
    pub fn seeded(seed: &str, hw: &str, group: &str) -> Self {
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(
            ring::digest::digest(&ring::digest::SHA256, seed.as_bytes()).as_ref(),
        );
        let key = DeviceKey::from_pkcs8(custody_keys::KeyType::Ed25519, &der).unwrap();
        Self::with_key(key, hw, group)
    }

    pub fn with_key(key: DeviceKey, hw: &str, group: &str) -> Self {
        Device {
            id: key.keyid().to_string(),
            key,
            hw: hw.into(),
            group: group.into(),
            environment: "production".into(),
            tags: vec!["eu".into()],
            counter: 0,
            installed: BTreeMap::new(),
            reports: vec![],
        }
    }

    pub fn enrol_body(&self, credential: EnrolmentCredential) -> Vec<u8> {
        self.enrol_body_with(credential, None)
    }

    pub fn enrol_body_with(
        &self,
        credential: EnrolmentCredential,
        factory: Option<&custody_director::wire::FactorySign<'_>>,
    ) -> Vec<u8> {
        let claims = EnrolmentClaims {
            type_: TYPE_ENROLMENT.into(),
            wire_version: WIRE_VERSION,
            key: self.key.key().clone(),
            hardware_id: self.hw.clone(),
            attributes: DeviceAttributes {
                environment: self.environment.clone(),
                tags: self.tags.iter().cloned().collect(),
                group: Some(self.group.clone()),
            },
            credential,
            timestamp: chrono::Utc::now().timestamp(),
            nonce: fresh_nonce().unwrap(),
        };
        EnrolmentRequest::sign(claims, &self.key, factory)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    /// Manifest with the given counter (no side effects).
    pub fn manifest_with(&self, counter: u64) -> Vec<u8> {
        let body = ManifestBody {
            type_: TYPE_MANIFEST.into(),
            wire_version: WIRE_VERSION,
            device_id: self.id.clone(),
            hardware_id: self.hw.clone(),
            report_counter: counter,
            device_time: chrono::Utc::now().timestamp(),
            installed: self.installed.clone(),
            active_slot: self.installed.keys().next().cloned(),
            attacks_detected: vec![],
            install_reports: self.reports.clone(),
        };
        SignedManifest::sign(body, &self.key)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    pub fn next_manifest(&mut self) -> Vec<u8> {
        self.counter += 1;
        self.manifest_with(self.counter)
    }

    /// Pretend the target was installed (slot `a`) and queue its report.
    pub fn install(&mut self, name: &str, data: &[u8], counter: u64, outcome: &str) {
        if outcome == "installed" {
            self.installed.insert(
                "a".into(),
                InstalledTarget {
                    name: name.into(),
                    length: data.len() as u64,
                    hashes: [("sha256".to_string(), common::sha256_hex(data))].into(),
                    release_counter: counter,
                },
            );
        }
        let n = self.reports.len() + self.counter as usize;
        self.reports.push(InstallReport {
            id: format!("attempt-{n}"),
            target: name.into(),
            release_counter: counter,
            outcome: outcome.into(),
            reason: (outcome != "installed").then(|| "health check failed".to_string()),
            time: chrono::Utc::now().timestamp(),
        });
    }
}

/// The device side of a check-in answer: verify the director metadata with
/// custody-tuf from the root the device trusts, then the device binding;
/// returns the assigned targets.
pub fn verify_director(
    root: &[u8],
    c: &CheckinResponse,
    dev: &Device,
) -> Result<Vec<custody_director::director::BoundTarget>, String> {
    let now = chrono::Utc::now();
    let mut t = custody_tuf::TrustedMetadata::new(root).map_err(|e| e.to_string())?;
    for r in &c.director.roots {
        t.update_root(r).map_err(|e| e.to_string())?;
    }
    t.update_timestamp(&c.director.timestamp, now)
        .map_err(|e| e.to_string())?;
    t.update_snapshot(&c.director.snapshot, now, false)
        .map_err(|e| e.to_string())?;
    t.update_targets(&c.director.targets, now)
        .map_err(|e| e.to_string())?;
    custody_director::verify_director_targets_for_device(t.targets().unwrap(), &dev.id, &dev.hw)
        .map_err(|e| e.to_string())
}
