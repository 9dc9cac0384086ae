//! custody-log benchmarks.
//!
//! Run: `cargo bench -p custody-log --bench log`
//!
//! - batch append throughput into the in-memory store (entries/s),
//! - inclusion / consistency proof generation and verification latency on a
//!   10,000,000-entry tree (all perfect-subtree nodes in memory, ~640 MB),
//! - the tile-backed client path (plan tiles, build them, prove from tiles),
//! - checkpoint signing and verification (log signature, with 3 cosignatures).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use custody_log::tile::{read_tile, tiles_for_inclusion, TileHashReader};
use custody_log::{
    consistency_proof, inclusion_proof, leaf_hash, root_at, verify_consistency, verify_inclusion,
    Appender, Checkpoint, Cosigner, Hash, LogVerifier, MemoryStore, NoteSigner, WitnessPolicy,
};

const BIG: u64 = 10_000_000;

/// Deterministic pseudo-random sequence (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) % below
    }
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(20);
    for batch in [1usize, 256, 4096] {
        let entries: Vec<Vec<u8>> = (0..batch)
            .map(|i| format!("entry-{i:08}-{}", "x".repeat(100)).into_bytes())
            .collect();
        g.throughput(Throughput::Elements(batch as u64));
        // Start from a 1M-entry log so the frontier is realistic; the store
        // keeps growing across iterations, as a log does.
        let mut app = Appender::open(MemoryStore::with_capacity(4_000_000)).unwrap();
        let base: Vec<Hash> = (0..1_000_000u64)
            .map(|i| leaf_hash(&i.to_le_bytes()))
            .collect();
        app.append_leaf_hashes(&base).unwrap();
        g.bench_function(format!("entries_batch_{batch}"), |b| {
            b.iter(|| black_box(app.append_entries(&entries).unwrap()))
        });
    }
    g.finish();
}

fn build_big() -> (MemoryStore, Hash) {
    let t = Instant::now();
    let mut app = Appender::open(MemoryStore::with_capacity(BIG as usize)).unwrap();
    let chunk = 1 << 16;
    let mut buf = Vec::with_capacity(chunk);
    let mut i = 0u64;
    while i < BIG {
        buf.clear();
        let end = (i + chunk as u64).min(BIG);
        buf.extend((i..end).map(|j| leaf_hash(&j.to_le_bytes())));
        app.append_leaf_hashes(&buf).unwrap();
        i = end;
    }
    let root = app.root();
    eprintln!(
        "built {BIG}-entry tree in {:.2?} ({:.0} entries/s incl. leaf hashing)",
        t.elapsed(),
        BIG as f64 / t.elapsed().as_secs_f64()
    );
    (app.into_store(), root)
}

fn bench_proofs(c: &mut Criterion) {
    let (store, root) = build_big();
    let mut g = c.benchmark_group("proofs_10M");
    let mut rng = Lcg(1);
    g.bench_function("inclusion_generate", |b| {
        b.iter(|| {
            let i = rng.next(BIG);
            black_box(inclusion_proof(&store, i, BIG).unwrap())
        })
    });
    let mut rng = Lcg(2);
    g.bench_function("inclusion_verify", |b| {
        b.iter_batched(
            || {
                let i = rng.next(BIG);
                (i, inclusion_proof(&store, i, BIG).unwrap())
            },
            |(i, p)| {
                verify_inclusion(&leaf_hash(&i.to_le_bytes()), i, BIG, &p, &root).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    let mut rng = Lcg(3);
    g.bench_function("inclusion_generate_and_verify", |b| {
        b.iter(|| {
            let i = rng.next(BIG);
            let p = inclusion_proof(&store, i, BIG).unwrap();
            verify_inclusion(&leaf_hash(&i.to_le_bytes()), i, BIG, &p, &root).unwrap();
        })
    });
    let mut rng = Lcg(4);
    g.bench_function("consistency_generate_and_verify", |b| {
        b.iter_batched(
            || {
                let old = 1 + rng.next(BIG - 1);
                (old, root_at(&store, old).unwrap())
            },
            |(old, old_root)| {
                let p = consistency_proof(&store, old, BIG).unwrap();
                verify_consistency(old, BIG, &old_root, &root, &p).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    let mut rng = Lcg(5);
    g.bench_function("tile_client_inclusion", |b| {
        // What a client does with fetched tiles (here built from the store):
        // plan, load, prove, verify.
        b.iter(|| {
            let i = rng.next(BIG);
            let mut r = TileHashReader::new();
            for t in tiles_for_inclusion(i, BIG).unwrap() {
                r.insert(t, &read_tile(&store, t).unwrap()).unwrap();
            }
            let p = inclusion_proof(&r, i, BIG).unwrap();
            verify_inclusion(&leaf_hash(&i.to_le_bytes()), i, BIG, &p, &root).unwrap();
        })
    });
    g.finish();
}

fn bench_checkpoints(c: &mut Criterion) {
    let origin = "log.custody.example/updates";
    let log = NoteSigner::from_seed(origin, [1; 32]).unwrap();
    let witnesses: Vec<Cosigner> = (0..3)
        .map(|i| Cosigner::from_seed(&format!("w{i}.example"), [10 + i; 32]).unwrap())
        .collect();
    let cp = Checkpoint::new(origin, BIG, [7; 32]).unwrap();
    let mut g = c.benchmark_group("checkpoint");
    g.bench_function("sign", |b| {
        b.iter(|| black_box(cp.sign(&log).unwrap().to_bytes()))
    });
    let signed = cp.sign(&log).unwrap().to_bytes();
    let v = LogVerifier::new(origin, log.verifier_key()).unwrap();
    g.bench_function("verify", |b| {
        b.iter(|| black_box(v.verify(&signed).unwrap()))
    });
    let mut note = cp.sign(&log).unwrap();
    for w in &witnesses {
        note.add_signature(w.cosign(note.text(), 1_700_000_000).unwrap());
    }
    let cosigned = note.to_bytes();
    let vw = v.clone().with_witness_policy(
        WitnessPolicy::new(witnesses.iter().map(|w| w.verifier_key()).collect(), 2).unwrap(),
    );
    g.bench_function("verify_with_3_cosignatures_2_of_3", |b| {
        b.iter(|| black_box(vw.verify(&cosigned).unwrap()))
    });
    g.bench_function("cosign", |b| {
        b.iter(|| black_box(witnesses[0].cosign(note.text(), 1_700_000_000).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_checkpoints, bench_proofs);
criterion_main!(benches);
