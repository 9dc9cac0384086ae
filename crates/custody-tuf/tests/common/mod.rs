//! Test helpers: Ed25519 keys (ring), metadata builders and signing.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use custody_tuf::cjson::canonical_bytes;
use custody_tuf::crypto::sha256_hex;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

pub const FAR: &str = "2030-01-01T00:00:00Z";
pub const PAST: &str = "2020-01-01T00:00:00Z";

pub fn now() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

pub struct TestKey {
    pair: Ed25519KeyPair,
    pub id: String,
}

impl TestKey {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let id = sha256_hex(pair.public_key().as_ref());
        TestKey { pair, id }
    }

    pub fn json(&self) -> Value {
        json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(self.pair.public_key().as_ref())}})
    }

    pub fn sign(&self, msg: &[u8]) -> Value {
        json!({"keyid": self.id, "sig": hex::encode(self.pair.sign(msg).as_ref())})
    }

    pub fn sign_as(&self, keyid: &str, msg: &[u8]) -> Value {
        json!({"keyid": keyid, "sig": hex::encode(self.pair.sign(msg).as_ref())})
    }
}

/// Envelope bytes: `signed` signed by each of `signers`.
pub fn envelope(signed: &Value, signers: &[&TestKey]) -> Vec<u8> {
    let msg = canonical_bytes("test", signed).unwrap();
    let sigs: Vec<Value> = signers.iter().map(|k| k.sign(&msg)).collect();
    serde_json::to_vec(&json!({"signatures": sigs, "signed": signed})).unwrap()
}

/// Envelope with explicit signature objects.
pub fn envelope_with(signed: &Value, sigs: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"signatures": sigs, "signed": signed})).unwrap()
}

pub fn canon(signed: &Value) -> Vec<u8> {
    canonical_bytes("test", signed).unwrap()
}

pub fn hashes(b: &[u8]) -> Value {
    json!({"sha256": sha256_hex(b)})
}

/// Top-level keys of a test repository.
pub struct Keys {
    pub root: TestKey,
    pub timestamp: TestKey,
    pub snapshot: TestKey,
    pub targets: TestKey,
}

impl Keys {
    pub fn generate() -> Self {
        Keys {
            root: TestKey::generate(),
            timestamp: TestKey::generate(),
            snapshot: TestKey::generate(),
            targets: TestKey::generate(),
        }
    }
}

pub fn root_signed(version: u64, expires: &str, k: &Keys) -> Value {
    let mut keys = serde_json::Map::new();
    for key in [&k.root, &k.timestamp, &k.snapshot, &k.targets] {
        keys.insert(key.id.clone(), key.json());
    }
    json!({
        "_type": "root", "spec_version": "1.0.31", "version": version, "expires": expires,
        "consistent_snapshot": true, "keys": keys,
        "roles": {
            "root": {"keyids": [k.root.id], "threshold": 1},
            "timestamp": {"keyids": [k.timestamp.id], "threshold": 1},
            "snapshot": {"keyids": [k.snapshot.id], "threshold": 1},
            "targets": {"keyids": [k.targets.id], "threshold": 1},
        }
    })
}

pub fn timestamp_signed(
    version: u64,
    expires: &str,
    snap_version: u64,
    snap_bytes: Option<&[u8]>,
) -> Value {
    let mut m = json!({"version": snap_version});
    if let Some(b) = snap_bytes {
        m["length"] = json!(b.len());
        m["hashes"] = hashes(b);
    }
    json!({"_type": "timestamp", "spec_version": "1.0.31", "version": version, "expires": expires, "meta": {"snapshot.json": m}})
}

/// `meta`: (role name, version, bytes for length/hashes).
pub fn snapshot_signed(version: u64, expires: &str, meta: &[(&str, u64, Option<&[u8]>)]) -> Value {
    let mut m = serde_json::Map::new();
    for (role, v, b) in meta {
        let mut e = json!({"version": v});
        if let Some(b) = b {
            e["length"] = json!(b.len());
            e["hashes"] = hashes(b);
        }
        m.insert(format!("{role}.json"), e);
    }
    json!({"_type": "snapshot", "spec_version": "1.0.31", "version": version, "expires": expires, "meta": m})
}

/// `targets`: (path, content).
pub fn targets_signed(
    version: u64,
    expires: &str,
    targets: &[(&str, &[u8])],
    delegations: Option<Value>,
) -> Value {
    let mut t = serde_json::Map::new();
    for (p, b) in targets {
        t.insert(
            (*p).to_owned(),
            json!({"length": b.len(), "hashes": hashes(b)}),
        );
    }
    let mut v = json!({"_type": "targets", "spec_version": "1.0.31", "version": version, "expires": expires, "targets": t});
    if let Some(d) = delegations {
        v["delegations"] = d;
    }
    v
}

/// A delegation entry with `paths`.
pub fn role_entry(name: &str, key: &TestKey, paths: &[&str], terminating: bool) -> Value {
    json!({"name": name, "keyids": [key.id], "threshold": 1, "terminating": terminating, "paths": paths})
}

/// A `delegations` object from role entries and the keys they use.
pub fn delegations(keys: &[&TestKey], roles: Vec<Value>) -> Value {
    let mut k = serde_json::Map::new();
    for key in keys {
        k.insert(key.id.clone(), key.json());
    }
    json!({"keys": k, "roles": roles})
}

/// A whole small repository, version 1 everywhere, all bytes ready.
pub struct Repo {
    pub keys: Keys,
    pub root: Vec<u8>,
    pub timestamp: Vec<u8>,
    pub snapshot: Vec<u8>,
    pub targets: Vec<u8>,
}

pub fn simple_repo() -> Repo {
    let keys = Keys::generate();
    let root = envelope(&root_signed(1, FAR, &keys), &[&keys.root]);
    let targets = envelope(
        &targets_signed(1, FAR, &[("a.txt", b"hello")], None),
        &[&keys.targets],
    );
    let snapshot = envelope(
        &snapshot_signed(1, FAR, &[("targets", 1, None)]),
        &[&keys.snapshot],
    );
    let timestamp = envelope(
        &timestamp_signed(1, FAR, 1, Some(&snapshot)),
        &[&keys.timestamp],
    );
    Repo {
        keys,
        root,
        timestamp,
        snapshot,
        targets,
    }
}
