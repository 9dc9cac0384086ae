//! Signature verification and canonicalisation throughput.
//!
//! Run: `cargo bench -p custody-tuf --bench verify`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custody_tuf::cjson::{canonical_bytes, parse_strict};
use custody_tuf::crypto::{sha256_hex, verify_threshold};
use custody_tuf::{Key, Metadata, Signature, Targets};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn large_targets(n: usize) -> Value {
    let mut t = Map::new();
    for i in 0..n {
        let path = format!("packages/pkg-{i}/pkg-{i}-1.0.{i}.tar.gz");
        t.insert(
            path.clone(),
            json!({"length": 1000 + i, "hashes": {"sha256": sha256_hex(path.as_bytes())}, "custom": {"x": i}}),
        );
    }
    json!({"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": "2030-01-01T00:00:00Z", "targets": t})
}

fn olpc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    v.serialize(&mut ser).unwrap();
    buf
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let pair =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let key: Key = serde_json::from_value(json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(pair.public_key().as_ref())}})).unwrap();
    let keyid = "k".to_owned();
    let keys = BTreeMap::from([(keyid.clone(), key)]);

    let n = 10_000;
    let signed = large_targets(n);
    let canonical = canonical_bytes("targets", &signed).unwrap();
    let sig = Signature {
        keyid: keyid.clone(),
        sig: hex::encode(pair.sign(&canonical).as_ref()),
        unknown: Default::default(),
    };
    let envelope = serde_json::to_vec(&json!({"signatures": [sig], "signed": signed})).unwrap();
    eprintln!(
        "targets with {n} entries: envelope {} bytes, canonical signed {} bytes",
        envelope.len(),
        canonical.len()
    );

    let mut g = c.benchmark_group("targets_10k");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(envelope.len() as u64));
    g.bench_function("parse_strict", |b| {
        b.iter(|| parse_strict("targets", &envelope).unwrap())
    });
    let v = parse_strict("targets", &envelope).unwrap();
    // custody's canonical writer beside the reference (olpc-cjson), on the
    // same value and on the typed role the signing path serialises.
    g.bench_function("canonicalise", |b| {
        b.iter(|| canonical_bytes("targets", &v["signed"]).unwrap())
    });
    g.bench_function("canonicalise olpc-cjson (reference)", |b| {
        b.iter(|| olpc(&v["signed"]))
    });
    let typed = Metadata::<Targets>::from_bytes("targets", &envelope)
        .unwrap()
        .signed;
    g.bench_function("canonicalise typed", |b| {
        b.iter(|| canonical_bytes("targets", &typed).unwrap())
    });
    g.bench_function("canonicalise typed olpc-cjson (reference)", |b| {
        b.iter(|| olpc(&typed))
    });
    g.bench_function("parse_canonicalise_typed (Metadata::from_bytes)", |b| {
        b.iter(|| Metadata::<Targets>::from_bytes("targets", &envelope).unwrap())
    });
    let md = Metadata::<Targets>::from_bytes("targets", &envelope).unwrap();
    g.bench_function("verify_ed25519_signature", |b| {
        b.iter(|| {
            verify_threshold(
                "targets",
                "root",
                md.canonical_signed(),
                &md.signatures,
                std::slice::from_ref(&keyid),
                &keys,
                1,
            )
            .unwrap()
        })
    });
    g.finish();

    // Single signature verifications on a small message, per algorithm present in real repos.
    let msg = b"{\"_type\":\"timestamp\"}";
    let sig = pair.sign(msg);
    let pk = custody_tuf::PublicKey::from_key(&keys[&keyid]).unwrap();
    c.bench_function("ed25519_verify_small", |b| {
        b.iter(|| assert!(pk.verify(msg, sig.as_ref())))
    });

    // Real metadata: sigstore root 15 (5 ECDSA P-256 signatures, threshold 3)
    // and the whole root chain 1..15 (hex and PEM keys).
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/sigstore-root-signing/metadata/root_history");
    let roots: Vec<Vec<u8>> = (1..=15)
        .map(|v| std::fs::read(fixture.join(format!("{v}.root.json"))).unwrap())
        .collect();
    c.bench_function("sigstore_root15_trust", |b| {
        b.iter(|| custody_tuf::TrustedMetadata::new(&roots[14]).unwrap())
    });
    c.bench_function("sigstore_root_chain_1_to_15", |b| {
        b.iter(|| {
            let mut t = custody_tuf::TrustedMetadata::new(&roots[0]).unwrap();
            for r in &roots[1..] {
                t.update_root(r).unwrap();
            }
            t
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
