//! `evaluate` on a typical GitHub Actions SLSA v1 envelope (~1.5 KiB).
//!
//! Run: `cargo bench -p custody-provenance --bench evaluate`

use std::collections::BTreeMap;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use custody_provenance::{evaluate, pae, Envelope, Limits, Policy, Statement};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const GHA: &str = "https://actions.github.io/buildtypes/workflow/v1";
const REPO: &str = "https://github.com/org/firmware";

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

fn statement(digest: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "firmware-1.4.2.bin", "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": GHA,
                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": REPO, "path": ".github/workflows/release.yml"}},
                "internalParameters": {"github": {"event_name": "push", "repository_id": "123456", "repository_owner_id": "7890", "runner_environment": "github-hosted"}},
                "resolvedDependencies": [{"uri": format!("git+{REPO}@refs/heads/main"), "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"}}]
            },
            "runDetails": {
                "builder": {"id": BUILDER},
                "metadata": {"invocationId": "https://github.com/org/firmware/actions/runs/1234567890/attempts/1"}
            }
        }
    })
}

fn setup(n_signers: usize) -> (Policy, BTreeMap<String, String>, Vec<u8>) {
    let rng = SystemRandom::new();
    let pairs: Vec<Ed25519KeyPair> = (0..n_signers)
        .map(|_| {
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                .unwrap()
        })
        .collect();
    let mut keys = serde_json::Map::new();
    for (i, p) in pairs.iter().enumerate() {
        keys.insert(
            format!("k{i}"),
            json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(p.public_key().as_ref())}}),
        );
    }
    let spec = json!({"rules": [{
        "name": "firmware", "paths": ["firmware/*"], "builders": [BUILDER], "build_types": [GHA],
        "sources": [{"repository": REPO, "refs": ["refs/heads/main", "refs/tags/v*"]}],
        "signers": {"threshold": n_signers, "keys": keys}
    }]});
    let policy = Policy::from_json("bench.json", &serde_json::to_vec(&spec).unwrap()).unwrap();
    let artifact = vec![0x5a; 4096];
    let payload = serde_json::to_vec(&statement(&sha256_hex(&artifact))).unwrap();
    let msg = pae("application/vnd.in-toto+json", &payload);
    let b64 = base64::engine::general_purpose::STANDARD;
    let sigs: Vec<Value> = pairs
        .iter()
        .map(|p| json!({"keyid": "", "sig": b64.encode(p.sign(&msg).as_ref())}))
        .collect();
    let env = serde_json::to_vec(&json!({"payloadType": "application/vnd.in-toto+json", "payload": b64.encode(&payload), "signatures": sigs})).unwrap();
    let digests = BTreeMap::from([("sha256".to_owned(), sha256_hex(&artifact))]);
    (policy, digests, env)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("provenance");
    g.sample_size(50);
    g.measurement_time(std::time::Duration::from_secs(3));
    for n in [1usize, 3] {
        let (policy, digests, env) = setup(n);
        assert!(evaluate(&policy, "firmware/fw.bin", &digests, Some(&env)).is_ok());
        eprintln!("envelope with {n} signature(s): {} bytes", env.len());
        g.bench_function(format!("evaluate_ed25519_{n}_of_{n}"), |b| {
            b.iter(|| evaluate(&policy, "firmware/fw.bin", &digests, Some(&env)).unwrap())
        });
        if n == 1 {
            let limits = Limits::default();
            g.bench_function("parse_envelope_and_statement", |b| {
                b.iter(|| {
                    let e = Envelope::parse(&env, &limits).unwrap();
                    Statement::parse(&e.payload, &limits).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
