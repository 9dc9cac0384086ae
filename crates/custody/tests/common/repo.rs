//! A small test-only TUF repository writer: metadata as JSON values so tests
//! can break any field, Ed25519 keys from ring, canonical JSON from
//! custody-tuf. It writes the layout a static server publishes:
//! `metadata/N.root.json`, `metadata/timestamp.json`,
//! `metadata/[V.]<role>.json`, `targets/[HASH.]<path>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

pub struct TestKey {
    pair: Ed25519KeyPair,
    pub id: String,
    pub json: Value,
}

impl TestKey {
    pub fn generate() -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let json = json!({
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": hex::encode(pair.public_key().as_ref())},
        });
        let id = sha256_hex(&canonical(&json));
        TestKey { pair, id, json }
    }

    pub fn sign(&self, signed: &Value) -> Value {
        let sig = self.pair.sign(&canonical(signed));
        json!({"keyid": self.id, "sig": hex::encode(sig.as_ref())})
    }
}

pub fn canonical(v: &Value) -> Vec<u8> {
    custody_tuf::cjson::canonical_bytes("test", v).expect("canonical json")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

pub fn expiry(from_now: Duration) -> String {
    (Utc::now() + from_now).to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Envelope `signed` with signatures from `keys`.
pub fn envelope(signed: &Value, keys: &[&TestKey]) -> Vec<u8> {
    let sigs: Vec<Value> = keys.iter().map(|k| k.sign(signed)).collect();
    serde_json::to_vec_pretty(&json!({"signatures": sigs, "signed": signed})).expect("json")
}

fn encode_role(role: &str) -> String {
    custody_client::encoding::encode_component(role)
}

/// A delegated targets role: its body and its signing keys.
pub struct Delegated {
    pub signed: Value,
    pub keys: Vec<TestKey>,
}

pub struct Repo {
    pub dir: PathBuf,
    pub consistent: bool,
    pub root: Value,
    pub timestamp: Value,
    pub snapshot: Value,
    pub targets: Value,
    pub keys: BTreeMap<String, Vec<TestKey>>,
    pub delegated: BTreeMap<String, Delegated>,
    /// target path -> bytes, as published
    pub artifacts: BTreeMap<String, Vec<u8>>,
}

impl Repo {
    /// A fresh repository with one Ed25519 key per top-level role, all
    /// version 1, published under `dir`.
    pub fn new(dir: &Path, consistent: bool) -> Repo {
        std::fs::create_dir_all(dir.join("metadata")).unwrap();
        std::fs::create_dir_all(dir.join("targets")).unwrap();
        let mut keys = BTreeMap::new();
        for role in ["root", "timestamp", "snapshot", "targets"] {
            keys.insert(role.to_owned(), vec![TestKey::generate()]);
        }
        let exp = expiry(Duration::days(30));
        let mut all_keys = serde_json::Map::new();
        let mut roles = serde_json::Map::new();
        for (role, ks) in &keys {
            for k in ks {
                all_keys.insert(k.id.clone(), k.json.clone());
            }
            roles.insert(
                role.clone(),
                json!({"keyids": ks.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), "threshold": 1}),
            );
        }
        let root = json!({
            "_type": "root", "spec_version": "1.0.31", "version": 1, "expires": exp,
            "consistent_snapshot": consistent, "keys": all_keys, "roles": roles,
        });
        let targets = json!({
            "_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": exp,
            "targets": {},
        });
        let snapshot = json!({
            "_type": "snapshot", "spec_version": "1.0.31", "version": 1, "expires": exp,
            "meta": {"targets.json": {"version": 1}},
        });
        let timestamp = json!({
            "_type": "timestamp", "spec_version": "1.0.31", "version": 1, "expires": exp,
            "meta": {"snapshot.json": {"version": 1}},
        });
        let repo = Repo {
            dir: dir.to_owned(),
            consistent,
            root,
            timestamp,
            snapshot,
            targets,
            keys,
            delegated: BTreeMap::new(),
            artifacts: BTreeMap::new(),
        };
        repo.publish_root();
        repo.publish_targets("targets");
        repo.publish_snapshot_only();
        repo.publish_timestamp_only();
        repo
    }

    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    pub fn keys_of(&self, role: &str) -> Vec<&TestKey> {
        if let Some(d) = self.delegated.get(role) {
            return d.keys.iter().collect();
        }
        self.keys
            .get(role)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }

    pub fn body(&self, role: &str) -> &Value {
        match role {
            "root" => &self.root,
            "timestamp" => &self.timestamp,
            "snapshot" => &self.snapshot,
            "targets" => &self.targets,
            other => &self.delegated[other].signed,
        }
    }

    pub fn body_mut(&mut self, role: &str) -> &mut Value {
        match role {
            "root" => &mut self.root,
            "timestamp" => &mut self.timestamp,
            "snapshot" => &mut self.snapshot,
            "targets" => &mut self.targets,
            other => &mut self.delegated.get_mut(other).unwrap().signed,
        }
    }

    pub fn version(&self, role: &str) -> u64 {
        self.body(role)["version"].as_u64().unwrap()
    }

    pub fn signed_bytes(&self, role: &str) -> Vec<u8> {
        envelope(self.body(role), &self.keys_of(role))
    }

    /// Where `role` at its current version is published.
    pub fn metadata_path(&self, role: &str) -> PathBuf {
        let v = self.version(role);
        let name = if role == "root" || (self.consistent && role != "timestamp") {
            format!("{v}.{}.json", encode_role(role))
        } else {
            format!("{}.json", encode_role(role))
        };
        self.metadata_dir().join(name)
    }

    /// Request path (relative to the server root) of `role`'s current file.
    pub fn request_path(&self, role: &str) -> String {
        let p = self.metadata_path(role);
        format!("metadata/{}", p.file_name().unwrap().to_str().unwrap())
    }

    pub fn write_role(&self, role: &str, bytes: &[u8]) {
        std::fs::write(self.metadata_path(role), bytes).unwrap();
        if role == "root" {
            std::fs::write(self.metadata_dir().join("root.json"), bytes).unwrap();
        }
    }

    pub fn publish_root(&self) {
        self.write_role("root", &self.signed_bytes("root"));
    }

    pub fn publish_targets(&self, role: &str) {
        self.write_role(role, &self.signed_bytes(role));
    }

    pub fn publish_snapshot_only(&self) {
        self.write_role("snapshot", &self.signed_bytes("snapshot"));
    }

    pub fn publish_timestamp_only(&self) {
        self.write_role("timestamp", &self.signed_bytes("timestamp"));
    }

    /// Bump snapshot: list current versions of targets and every delegated
    /// role, sign, publish; then bump timestamp to point at it.
    pub fn update_snapshot(&mut self) {
        let mut meta = serde_json::Map::new();
        meta.insert(
            "targets.json".into(),
            json!({"version": self.version("targets")}),
        );
        for (name, d) in &self.delegated {
            meta.insert(
                format!("{name}.json"),
                json!({"version": d.signed["version"]}),
            );
        }
        self.snapshot["meta"] = Value::Object(meta);
        bump(&mut self.snapshot);
        self.publish_snapshot_only();
        self.update_timestamp();
    }

    pub fn update_timestamp(&mut self) {
        self.timestamp["meta"] = json!({"snapshot.json": {"version": self.version("snapshot")}});
        bump(&mut self.timestamp);
        self.publish_timestamp_only();
    }

    /// Bump a targets role, sign and publish it.
    pub fn bump_targets(&mut self, role: &str) {
        bump(self.body_mut(role));
        self.publish_targets(role);
    }

    /// New root version signed by the keys currently in `self.keys["root"]`
    /// plus `extra_signers` (old root keys during a rotation).
    pub fn bump_root(&mut self, extra_signers: &[&TestKey]) {
        bump(&mut self.root);
        let mut signers = self.keys_of("root");
        for k in extra_signers {
            if !signers.iter().any(|s| s.id == k.id) {
                signers.push(k);
            }
        }
        self.write_role("root", &envelope(&self.root, &signers));
    }

    /// Replace the keys of a top-level role in root (does not publish).
    pub fn rotate_keys(&mut self, role: &str) -> Vec<TestKey> {
        let new = vec![TestKey::generate()];
        let old = std::mem::replace(self.keys.get_mut(role).unwrap(), new);
        let ids: Vec<String> = self.keys[role].iter().map(|k| k.id.clone()).collect();
        for k in &self.keys[role] {
            self.root["keys"][&k.id] = k.json.clone();
        }
        self.root["roles"][role]["keyids"] = json!(ids);
        old
    }

    /// Add `path` with `data` to targets role `role` (does not publish
    /// metadata); writes the target file(s).
    pub fn add_target(&mut self, role: &str, path: &str, data: &[u8]) {
        let hash = sha256_hex(data);
        self.body_mut(role)["targets"][path] = json!({
            "length": data.len(),
            "hashes": {"sha256": hash},
        });
        self.write_target_file(path, data, Some(&hash));
        self.artifacts.insert(path.to_owned(), data.to_vec());
    }

    /// Write bytes where the client will fetch `path` (hash-prefixed when
    /// consistent, using `hash` or the hash of `data`).
    pub fn write_target_file(&self, path: &str, data: &[u8], hash: Option<&str>) {
        let file = self.target_file_path(path, hash.unwrap_or(&sha256_hex(data)));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }

    pub fn target_file_path(&self, path: &str, hash: &str) -> PathBuf {
        let rel = if self.consistent {
            match path.rsplit_once('/') {
                Some((d, b)) => format!("{d}/{hash}.{b}"),
                None => format!("{hash}.{path}"),
            }
        } else {
            path.to_owned()
        };
        self.dir.join("targets").join(rel)
    }

    /// Request path for target `path` as currently listed.
    pub fn target_request_path(&self, role: &str, path: &str) -> String {
        let hash = self.body(role)["targets"][path]["hashes"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let p = self.target_file_path(path, &hash);
        p.strip_prefix(&self.dir)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Delegate `paths` from `parent` to a new role `name` with one fresh key.
    pub fn add_delegation(&mut self, parent: &str, name: &str, paths: &[&str], terminating: bool) {
        let key = TestKey::generate();
        let parent_body = self.body_mut(parent);
        if parent_body.get("delegations").is_none() {
            parent_body["delegations"] = json!({"keys": {}, "roles": []});
        }
        parent_body["delegations"]["keys"][&key.id] = key.json.clone();
        parent_body["delegations"]["roles"]
            .as_array_mut()
            .unwrap()
            .push(json!({
                "name": name, "keyids": [key.id], "threshold": 1,
                "terminating": terminating, "paths": paths,
            }));
        // A role delegated by several roles is signed by every delegator's key.
        if let Some(existing) = self.delegated.get_mut(name) {
            existing.keys.push(key);
            return;
        }
        let signed = json!({
            "_type": "targets", "spec_version": "1.0.31", "version": 1,
            "expires": expiry(Duration::days(30)), "targets": {},
        });
        self.delegated.insert(
            name.to_owned(),
            Delegated {
                signed,
                keys: vec![key],
            },
        );
    }
}

pub fn bump(v: &mut Value) {
    let n = v["version"].as_u64().unwrap();
    v["version"] = json!(n + 1);
}
