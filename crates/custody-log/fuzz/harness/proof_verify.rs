//! Inclusion and consistency verification with arbitrary indices, sizes,
//! roots and proofs (including lengths that are not whole hashes): never
//! panics. Small sizes are also tried against a real tree, where a proof
//! that verifies must be the one the tree generates.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/proof_verify.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_log::hash::hashes_from_bytes;
use custody_log::{
    consistency_proof, inclusion_proof, leaf_hash, root_at, verify_consistency, verify_inclusion,
    Appender, MemoryStore,
};

fn u64_at(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in d.iter().skip(at).take(8).enumerate() {
        b[i] = *x;
    }
    u64::from_le_bytes(b)
}

pub fn run(data: &[u8]) {
    let a = u64_at(data, 0);
    let b = u64_at(data, 8);
    let mut h1 = [0u8; 32];
    let mut h2 = [0u8; 32];
    for (i, x) in data.iter().skip(16).take(32).enumerate() {
        h1[i] = *x;
    }
    for (i, x) in data.iter().skip(48).take(32).enumerate() {
        h2[i] = *x;
    }
    let rest = data.get(80..).unwrap_or(&[]);
    let whole = rest.len() - rest.len() % 32;
    let proof = hashes_from_bytes(&rest[..whole]).unwrap();
    assert!(hashes_from_bytes(rest).is_ok() == (rest.len() % 32 == 0));

    let _ = verify_inclusion(&h1, a, b, &proof, &h2);
    let _ = verify_consistency(a, b, &h1, &h2, &proof);
    let _ = verify_consistency(a.min(b), a.max(b), &h1, &h2, &proof);

    // Small trees: compare with the real thing.
    let n = b % 70 + 1;
    let mut app = Appender::open(MemoryStore::new()).unwrap();
    let entries: Vec<[u8; 8]> = (0..n).map(|i| i.to_le_bytes()).collect();
    app.append_entries(&entries).unwrap();
    let root = app.root();
    let i = a % n;
    let leaf = leaf_hash(&i.to_le_bytes());
    if verify_inclusion(&leaf, i, n, &proof, &root).is_ok() {
        assert_eq!(proof, inclusion_proof(app.store(), i, n).unwrap());
    }
    let m = a % (n + 1);
    let old_root = root_at(app.store(), m).unwrap();
    if verify_consistency(m, n, &old_root, &root, &proof).is_ok() {
        assert_eq!(proof, consistency_proof(app.store(), m, n).unwrap());
    }
}
