//! Test helpers: keys, statements, envelopes, policies.
#![allow(dead_code)]

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

pub const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
pub const GHA: &str = "https://actions.github.io/buildtypes/workflow/v1";
pub const REPO: &str = "https://github.com/org/firmware";

pub struct Signer {
    pub pair: Ed25519KeyPair,
}

impl Signer {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Signer {
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }
    pub fn toml_key(&self, id: &str) -> String {
        format!(
            "[rule.signers.keys.{id}]\nkeytype = \"ed25519\"\nscheme = \"ed25519\"\nkeyval = {{ public = \"{}\" }}\n",
            self.public_hex()
        )
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// A GitHub Actions style SLSA v1 statement about an artifact with `digest`.
pub fn statement(digest: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app.bin", "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": GHA,
                "externalParameters": {
                    "workflow": {"ref": "refs/heads/main", "repository": REPO, "path": ".github/workflows/release.yml"}
                },
                "internalParameters": {"github": {"event_name": "push", "repository_id": "1"}},
                "resolvedDependencies": [
                    {"uri": format!("git+{REPO}@refs/heads/main"), "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"}}
                ]
            },
            "runDetails": {
                "builder": {"id": BUILDER},
                "metadata": {"invocationId": "https://github.com/org/firmware/actions/runs/1/attempts/1"}
            }
        }
    })
}

pub fn envelope_with(payload_type: &str, payload: &[u8], signers: &[&Signer]) -> Vec<u8> {
    let pae = custody_provenance::pae(payload_type, payload);
    let b64 = base64::engine::general_purpose::STANDARD;
    let sigs: Vec<Value> = signers
        .iter()
        .map(|s| json!({"keyid": "hint-ignored", "sig": b64.encode(s.pair.sign(&pae).as_ref())}))
        .collect();
    serde_json::to_vec(
        &json!({"payloadType": payload_type, "payload": b64.encode(payload), "signatures": sigs}),
    )
    .unwrap()
}

pub fn envelope(st: &Value, signers: &[&Signer]) -> Vec<u8> {
    envelope_with(
        "application/vnd.in-toto+json",
        &serde_json::to_vec(st).unwrap(),
        signers,
    )
}

/// A one-rule policy for `firmware/*` with the given signer keys and threshold.
pub fn policy_toml(keys: &[(&str, &Signer)], threshold: u64) -> String {
    let mut s = format!(
        r#"allow_unattested = ["docs/*"]

[[rule]]
name = "firmware"
paths = ["firmware/*"]
roles = ["fw-*"]
builders = ["{BUILDER}"]
build_types = ["{GHA}"]

[[rule.sources]]
repository = "{REPO}"
refs = ["refs/heads/main", "refs/tags/v*"]

[rule.signers]
threshold = {threshold}
"#
    );
    for (id, k) in keys {
        s.push_str(&k.toml_key(id));
    }
    s
}
