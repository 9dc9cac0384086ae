//! Property tests for the Merkle core: generated proofs verify, every
//! mutation of leaf, index, size, root or proof is rejected, batch appends
//! equal single appends, tile-backed proofs equal store-backed proofs, and
//! verification never panics.

use std::sync::OnceLock;

use custody_log::tile::{
    read_tile, tiles_for_consistency, tiles_for_inclusion, tiles_for_root, TileHashReader,
};
use custody_log::{
    consistency_proof, inclusion_proof, leaf_hash, root_at, root_from_leaf_hashes,
    verify_consistency, verify_inclusion, Appender, Hash, MemoryStore, TileId, EMPTY_ROOT,
};
use proptest::prelude::*;

const SMALL: u64 = 1100;
const BIG: u64 = 70_000;

struct Tree {
    store: MemoryStore,
    leaves: Vec<Hash>,
}

fn build(n: u64) -> Tree {
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut app = Appender::open(MemoryStore::new()).unwrap();
    // Mixed batch sizes exercise the frontier logic.
    let mut i = 0usize;
    let mut b = 1usize;
    while i < leaves.len() {
        let end = (i + b).min(leaves.len());
        app.append_leaf_hashes(&leaves[i..end]).unwrap();
        i = end;
        b = b % 97 + 3;
    }
    Tree {
        store: app.into_store(),
        leaves,
    }
}

fn small() -> &'static Tree {
    static T: OnceLock<Tree> = OnceLock::new();
    T.get_or_init(|| build(SMALL))
}

fn big() -> &'static Tree {
    static T: OnceLock<Tree> = OnceLock::new();
    T.get_or_init(|| build(BIG))
}

fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Sibling sides along the PATH recursion (generation-side definition):
/// two (index, size) pairs with equal shapes hash proofs identically.
fn shape(mut m: u64, mut n: u64) -> Vec<bool> {
    let mut v = Vec::new();
    while n > 1 {
        let k = split(n);
        if m < k {
            v.push(true);
            n = k;
        } else {
            v.push(false);
            m -= k;
            n -= k;
        }
    }
    v
}

/// Decisions of the SUBPROOF recursion, plus whether the seed node is sent.
/// Different size pairs with equal shapes hash the same proof identically,
/// so the (signed) roots, not the sizes, are what a proof binds.
fn consistency_shape(mut m: u64, mut n: u64) -> (Vec<bool>, bool) {
    let mut v = Vec::new();
    let mut complete = true;
    while m != n {
        let k = split(n);
        if m <= k {
            v.push(true);
            n = k;
        } else {
            v.push(false);
            m -= k;
            n -= k;
            complete = false;
        }
    }
    (v, complete && m.is_power_of_two())
}

fn size_and_index(max: u64) -> impl Strategy<Value = (u64, u64)> {
    (1..=max).prop_flat_map(|size| (Just(size), 0..size))
}

fn two_sizes(max: u64) -> impl Strategy<Value = (u64, u64)> {
    (1..=max).prop_flat_map(|new| (1..=new, Just(new)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_verify_and_mutations_fail(
        (size, index) in size_and_index(SMALL),
        other_index in 0..SMALL,
        other_size in 1..=SMALL,
        flip_at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let t = small();
        let root = root_from_leaf_hashes(&t.leaves[..size as usize]);
        prop_assert_eq!(root_at(&t.store, size).unwrap(), root);
        let leaf = t.leaves[index as usize];
        let proof = inclusion_proof(&t.store, index, size).unwrap();
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());

        // Changed leaf.
        let mut bad_leaf = leaf;
        bad_leaf[0] ^= 1 << bit;
        prop_assert!(verify_inclusion(&bad_leaf, index, size, &proof, &root).is_err());
        // Another leaf's hash at this index.
        if size > 1 {
            let other = t.leaves[((index + 1) % size) as usize];
            prop_assert!(verify_inclusion(&other, index, size, &proof, &root).is_err());
        }
        // Changed index.
        if other_index != index {
            prop_assert!(verify_inclusion(&leaf, other_index, size, &proof, &root).is_err());
        }
        // Changed size: accepted only if the proof shape is literally the same.
        if other_size != size {
            let ok = verify_inclusion(&leaf, index, other_size, &proof, &root).is_ok();
            prop_assert!(!ok || (index < other_size && shape(index, size) == shape(index, other_size)));
        }
        // Changed root.
        let mut bad_root = root;
        bad_root[31] ^= 1 << bit;
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &bad_root).is_err());
        // Mutated, truncated, extended proof.
        if !proof.is_empty() {
            let i = flip_at.index(proof.len());
            let mut p = proof.clone();
            p[i][(bit as usize * 3) % 32] ^= 1 << bit;
            prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root).is_err());
            let mut swapped = proof.clone();
            swapped.reverse();
            if swapped != proof {
                prop_assert!(verify_inclusion(&leaf, index, size, &swapped, &root).is_err());
            }
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_mutations_fail(
        (old, new) in two_sizes(SMALL),
        other_old in 1..=SMALL,
        other_new in 1..=SMALL,
        flip_at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let t = small();
        let r1 = root_at(&t.store, old).unwrap();
        let r2 = root_at(&t.store, new).unwrap();
        let proof = consistency_proof(&t.store, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof).is_ok());
        if old == new {
            prop_assert!(proof.is_empty());
            return Ok(());
        }
        let mut b1 = r1;
        b1[0] ^= 1 << bit;
        let mut b2 = r2;
        b2[0] ^= 1 << bit;
        prop_assert!(verify_consistency(old, new, &b1, &r2, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &r1, &b2, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &r2, &r1, &proof).is_err());
        // Changed sizes, with the roots of the original sizes.
        // Accepted only when the proof shape is literally the same.
        if other_old != old && other_old <= new {
            let ok = verify_consistency(other_old, new, &r1, &r2, &proof).is_ok();
            prop_assert!(!ok || consistency_shape(old, new) == consistency_shape(other_old, new),
                "old size {} -> {} accepted", old, other_old);
        }
        if other_new != new && other_new >= old {
            let ok = verify_consistency(old, other_new, &r1, &r2, &proof).is_ok();
            prop_assert!(!ok || consistency_shape(old, new) == consistency_shape(old, other_new),
                "new size {} -> {} accepted", new, other_new);
        }
        // Mutated proof element.
        let i = flip_at.index(proof.len());
        let mut p = proof.clone();
        p[i][(bit as usize * 5) % 32] ^= 1 << bit;
        prop_assert!(verify_consistency(old, new, &r1, &r2, &p).is_err());
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof[..proof.len() - 1]).is_err());
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof[1..]).is_err());
        let mut longer = proof.clone();
        longer.push(r2);
        prop_assert!(verify_consistency(old, new, &r1, &r2, &longer).is_err());
        // A proof against a forked tree (one leaf changed below old) fails.
        let mut forked = t.leaves[..new as usize].to_vec();
        forked[flip_at.index(old as usize)][0] ^= 1;
        let fr2 = root_from_leaf_hashes(&forked);
        prop_assert!(verify_consistency(old, new, &r1, &fr2, &proof).is_err());
    }

    /// A tree of size 0 has exactly one root, the empty-tree root: any
    /// other "old root of size 0" is refused whatever the new tree and the
    /// proof, and from the empty root every real tree is consistent with an
    /// empty proof (issue #13: 0 -> n used to accept any old root).
    #[test]
    fn size_zero_needs_the_empty_tree_root(
        new in 0..=SMALL,
        bogus in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        proof_len in 0usize..3,
    ) {
        let t = small();
        let r2 = root_at(&t.store, new).unwrap();
        prop_assume!(bogus != EMPTY_ROOT);
        let proof = vec![other; proof_len];
        prop_assert!(verify_consistency(0, new, &bogus, &r2, &proof).is_err());
        prop_assert!(verify_consistency(0, new, &bogus, &other, &proof).is_err());
        prop_assert!(verify_consistency(0, new, &EMPTY_ROOT, &r2, &[]).is_ok());
        prop_assert_eq!(verify_consistency(0, new, &EMPTY_ROOT, &r2, &proof).is_ok(), proof_len == 0);
        // 0 -> 0: both roots must be the empty root.
        prop_assert!(verify_consistency(0, 0, &EMPTY_ROOT, &bogus, &[]).is_err());
        prop_assert!(verify_consistency(0, 0, &bogus, &bogus, &[]).is_err());
        prop_assert!(verify_consistency(0, 0, &bogus, &other, &[]).is_err());
    }

    #[test]
    fn batch_appends_equal_single_appends(batches in prop::collection::vec(0usize..40, 1..20)) {
        let leaves: Vec<Hash> = (0u32..800).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut app = Appender::open(MemoryStore::new()).unwrap();
        let mut at = 0usize;
        for b in batches {
            let end = (at + b).min(leaves.len());
            let r = app.append_leaf_hashes(&leaves[at..end]).unwrap();
            prop_assert_eq!(r.first_index, at as u64);
            prop_assert_eq!(r.new_size, end as u64);
            prop_assert_eq!(r.root, root_from_leaf_hashes(&leaves[..end]));
            at = end;
        }
        // Reopening an appender over the store resumes at the same state.
        let size = app.size();
        let root = app.root();
        let reopened = Appender::open(app.into_store()).unwrap();
        prop_assert_eq!(reopened.size(), size);
        prop_assert_eq!(reopened.root(), root);
    }
}

fn tile_reader(tiles: &[TileId], store: &MemoryStore) -> TileHashReader {
    let mut r = TileHashReader::new();
    for t in tiles {
        r.insert(*t, &read_tile(store, *t).unwrap()).unwrap();
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tile_backed_proofs_equal_store_proofs(
        (size, index) in size_and_index(BIG),
        old_frac in 0.0f64..=1.0,
    ) {
        let t = big();
        // Root from tiles alone.
        let tiles = tiles_for_root(size).unwrap();
        let r = tile_reader(&tiles, &t.store);
        let root = root_at(&t.store, size).unwrap();
        prop_assert_eq!(root_at(&r, size).unwrap(), root);

        // Inclusion proof from tiles alone.
        let tiles = tiles_for_inclusion(index, size).unwrap();
        let r = tile_reader(&tiles, &t.store);
        let want = inclusion_proof(&t.store, index, size).unwrap();
        prop_assert_eq!(&inclusion_proof(&r, index, size).unwrap(), &want);
        prop_assert!(verify_inclusion(&t.leaves[index as usize], index, size, &want, &root).is_ok());

        // Consistency proof from tiles alone.
        let old = ((size as f64 * old_frac) as u64).clamp(1, size);
        let tiles = tiles_for_consistency(old, size).unwrap();
        let r = tile_reader(&tiles, &t.store);
        prop_assert_eq!(
            consistency_proof(&r, old, size).unwrap(),
            consistency_proof(&t.store, old, size).unwrap()
        );
        // Every needed tile is the one published for this size.
        for tile in &tiles {
            let count = size >> (8 * u32::from(tile.level));
            let full = tile.index < (count >> 8);
            prop_assert!(full == tile.is_full());
            if !full {
                prop_assert_eq!(u64::from(tile.width), count & 255);
            }
        }
    }

    #[test]
    fn verification_never_panics(
        leaf in any::<[u8; 32]>(),
        root in any::<[u8; 32]>(),
        index in any::<u64>(),
        size in any::<u64>(),
        size2 in any::<u64>(),
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..130),
    ) {
        let _ = verify_inclusion(&leaf, index, size, &proof, &root);
        let _ = verify_inclusion(&leaf, index % 4096, size % 4096, &proof, &root);
        let _ = verify_consistency(size, size2, &leaf, &root, &proof);
        let _ = verify_consistency(size % 4096, size2 % 4096, &leaf, &root, &proof);
        let _ = verify_consistency(size.min(size2), size.max(size2), &leaf, &root, &proof);
    }
}

#[test]
fn full_tiles_never_change_as_the_tree_grows() {
    let t = big();
    for (old, new) in [(0u64, 256u64), (256, 65_536), (65_536, BIG), (1000, 1256)] {
        for tile in custody_log::tile::new_tiles(old, new) {
            let data = read_tile(&t.store, tile).unwrap();
            assert_eq!(data.len(), usize::from(tile.width) * 32);
            if tile.is_full() {
                // A full tile is the same whatever larger size we compute it at.
                assert_eq!(data, read_tile(&t.store, tile).unwrap());
            }
        }
    }
    // Partial tile = prefix of the later full tile.
    let partial = read_tile(&t.store, TileId::new(0, 3, 17).unwrap()).unwrap();
    let full = read_tile(&t.store, TileId::new(0, 3, 256).unwrap()).unwrap();
    assert_eq!(&full[..partial.len()], &partial[..]);
}

#[test]
fn tile_reader_prefers_wider_tile_and_rejects_bad_lengths() {
    let t = big();
    let mut r = TileHashReader::new();
    let full = TileId::new(0, 0, 256).unwrap();
    let part = TileId::new(0, 0, 10).unwrap();
    r.insert(full, &read_tile(&t.store, full).unwrap()).unwrap();
    r.insert(part, &read_tile(&t.store, part).unwrap()).unwrap();
    assert_eq!(
        inclusion_proof(&r, 200, 256).unwrap(),
        inclusion_proof(&t.store, 200, 256).unwrap()
    );
    assert!(r.insert(full, &[0u8; 31]).is_err());
    assert!(r.insert(part, &[0u8; 32 * 11]).is_err());
    // A missing tile is a typed error, not a panic.
    assert!(inclusion_proof(&TileHashReader::new(), 5, 1000).is_err());
}
