//! Inclusion and consistency proof verification (RFC 9162 §2.1.3.2 and
//! §2.1.4.2). Every function here is total: any combination of indices,
//! sizes and proof lengths yields `Ok` or a typed [`ProofError`], never a
//! panic.

use crate::hash::{node_hash, split_point, Hash, EMPTY_ROOT};

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Inclusion proof for a leaf index outside the tree.
    #[error("inclusion proof: leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Claimed tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for the claimed index and size.
    #[error("{kind} proof: {got} hashes, but index/sizes {params} need {want}")]
    WrongLength {
        /// "inclusion" or "consistency".
        kind: &'static str,
        /// Human description of the claimed parameters.
        params: String,
        /// Hashes supplied.
        got: usize,
        /// Hashes required.
        want: usize,
    },
    /// The hashes recomputed from the proof do not match the claimed root(s).
    #[error("{kind} proof: recomputed root {computed} does not match the expected root {expected} ({params})")]
    RootMismatch {
        /// "inclusion", "consistency (old root)" or "consistency (new root)".
        kind: &'static str,
        /// Human description of the claimed parameters.
        params: String,
        /// Hex of the recomputed root.
        computed: String,
        /// Hex of the expected root.
        expected: String,
    },
    /// Consistency proof asked to go backwards in time.
    #[error("consistency proof: old size {old_size} is larger than new size {new_size}")]
    SizesReversed {
        /// The older (first) tree size.
        old_size: u64,
        /// The newer (second) tree size.
        new_size: u64,
    },
    /// A tree of size 0 claimed a root other than the empty-tree root
    /// (SHA-256 of the empty string, RFC 9162 §2.1.1): no log has that tree.
    #[error("consistency proof: the {which} tree has size 0, so its root must be the empty-tree root {empty}, not {root}")]
    EmptyTreeRoot {
        /// "old" or "new".
        which: &'static str,
        /// Hex of the claimed root.
        root: String,
        /// Hex of the empty-tree root.
        empty: String,
    },
    /// Equal sizes but different roots: the two trees cannot both be this log.
    #[error("consistency proof: same size {size} but different roots {old_root} and {new_root}")]
    SameSizeDifferentRoots {
        /// The common size.
        size: u64,
        /// Hex of the old root.
        old_root: String,
        /// Hex of the new root.
        new_root: String,
    },
}

use crate::hash::hex;

/// Number of hashes in an inclusion proof for `index` in a tree of `size`
/// (0 if `index >= size`). Follows the PATH recursion of RFC 9162 §2.1.3.1.
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    let (mut m, mut n) = (index, size);
    let mut len = 0;
    while n > 1 {
        let k = split_point(n);
        if m < k {
            n = k;
        } else {
            m -= k;
            n -= k;
        }
        len += 1;
    }
    len
}

/// Number of hashes in a consistency proof from `old_size` to `new_size`
/// (0 for the trivial cases `old_size == 0` or `old_size >= new_size`).
/// Follows the SUBPROOF recursion of RFC 9162 §2.1.4.1.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let (mut m, mut n, mut b) = (old_size, new_size, true);
    let mut len = 0;
    while m != n {
        let k = split_point(n);
        if m <= k {
            n = k;
        } else {
            m -= k;
            n -= k;
            b = false;
        }
        len += 1;
    }
    if !b {
        len += 1;
    }
    len
}

/// Recompute the root from a leaf hash and an inclusion proof
/// (RFC 9162 §2.1.3.2, steps 1-5 minus the final root comparison).
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            kind: "inclusion",
            params: format!("index {index}, size {size}"),
            got: proof.len(),
            want,
        });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            // Unreachable after the length check; kept as the RFC's guard.
            return Err(ProofError::WrongLength {
                kind: "inclusion",
                params: format!("index {index}, size {size}"),
                got: proof.len(),
                want,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength {
            kind: "inclusion",
            params: format!("index {index}, size {size}"),
            got: proof.len(),
            want,
        });
    }
    Ok(r)
}

/// Verify that `leaf_hash` is the leaf at `index` in the tree of `size`
/// leaves with root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf_hash, index, size, proof)?;
    if &computed != root {
        return Err(ProofError::RootMismatch {
            kind: "inclusion",
            params: format!("index {index}, size {size}"),
            computed: hex(&computed),
            expected: hex(root),
        });
    }
    Ok(())
}

/// Verify that the tree of `new_size` leaves with root `new_root` is an
/// append-only extension of the tree of `old_size` leaves with root
/// `old_root` (RFC 9162 §2.1.4.2).
///
/// Trivial cases, which RFC 9162 leaves out (it defines these proofs only
/// for `0 < old_size < new_size`): `old_size == 0` needs an empty proof and
/// `old_root` must be [`EMPTY_ROOT`](crate::hash::EMPTY_ROOT), the only
/// root a tree of size 0 has (so does `new_root` when `new_size == 0`);
/// the empty tree is then a prefix of any tree. `old_size == new_size`
/// needs an empty proof and equal roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let params = || format!("old size {old_size}, new size {new_size}");
    if old_size > new_size {
        return Err(ProofError::SizesReversed { old_size, new_size });
    }
    let want = consistency_proof_len(old_size, new_size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            kind: "consistency",
            params: params(),
            got: proof.len(),
            want,
        });
    }
    if old_size == 0 && *old_root != EMPTY_ROOT {
        return Err(ProofError::EmptyTreeRoot {
            which: "old",
            root: hex(old_root),
            empty: hex(&EMPTY_ROOT),
        });
    }
    if new_size == 0 && *new_root != EMPTY_ROOT {
        return Err(ProofError::EmptyTreeRoot {
            which: "new",
            root: hex(new_root),
            empty: hex(&EMPTY_ROOT),
        });
    }
    if old_size == 0 {
        return Ok(());
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(ProofError::SameSizeDifferentRoots {
                size: old_size,
                old_root: hex(old_root),
                new_root: hex(new_root),
            });
        }
        return Ok(());
    }
    // Step 1: if old_size is a power of two, the old root is the seed.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => {
                return Err(ProofError::WrongLength {
                    kind: "consistency",
                    params: params(),
                    got: 0,
                    want,
                })
            }
        }
    };
    // Step 2-3.
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 4.
    let mut fr = seed;
    let mut sr = seed;
    // Step 5.
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                kind: "consistency",
                params: params(),
                got: proof.len(),
                want,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 6.
    if snode != 0 {
        return Err(ProofError::WrongLength {
            kind: "consistency",
            params: params(),
            got: proof.len(),
            want,
        });
    }
    if &fr != old_root {
        return Err(ProofError::RootMismatch {
            kind: "consistency (old root)",
            params: params(),
            computed: hex(&fr),
            expected: hex(old_root),
        });
    }
    if &sr != new_root {
        return Err(ProofError::RootMismatch {
            kind: "consistency (new root)",
            params: params(),
            computed: hex(&sr),
            expected: hex(new_root),
        });
    }
    Ok(())
}
