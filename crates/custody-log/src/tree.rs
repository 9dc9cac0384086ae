//! Proof generation and appending, over any [`HashReader`] / [`HashStore`].

use crate::hash::{leaf_hash, node_hash, split_point, Hash, EMPTY_ROOT};
use crate::store::{HashReader, HashStore, NodeId, StoreError};

/// Failure to generate a proof or root, or to append.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Inclusion proof requested for a leaf outside the tree.
    #[error("inclusion proof: leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Requested tree size.
        size: u64,
    },
    /// Consistency proof requested from a larger to a smaller tree.
    #[error("consistency proof: old size {old_size} is larger than new size {new_size}")]
    SizesReversed {
        /// Requested old size.
        old_size: u64,
        /// Requested new size.
        new_size: u64,
    },
    /// A range hash was requested for a range that is not a subtree of the
    /// RFC 9162 tree shape (internal invariant; never reached by the public
    /// functions).
    #[error("subtree hash: range [{start}, {end}) is not a Merkle subtree")]
    NotASubtree {
        /// First leaf.
        start: u64,
        /// One past the last leaf.
        end: u64,
    },
    /// The tree cannot grow past 2^64 - 1 leaves.
    #[error("append: tree of size {size} cannot take {count} more leaves (u64 overflow)")]
    TreeFull {
        /// Current size.
        size: u64,
        /// Leaves offered.
        count: usize,
    },
    /// The store failed or lacks a node.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Merkle tree hash of leaves `[start, end)`, for ranges that are subtrees
/// of the RFC 9162 tree shape (start aligned to the largest power of two
/// not above the range size). O(log n) reads.
pub fn subtree_hash<R: HashReader + ?Sized>(
    reader: &R,
    start: u64,
    end: u64,
) -> Result<Hash, TreeError> {
    if end <= start {
        return if end == start {
            Ok(EMPTY_ROOT)
        } else {
            Err(TreeError::NotASubtree { start, end })
        };
    }
    // Walk down the right spine: [start, end) = perfect(start, k) + rest.
    // At most 64 perfect subtrees: keep them on the stack.
    let mut peaks = [[0u8; 32]; 64];
    let mut count = 0usize;
    let mut a = start;
    while a < end {
        let n = end - a;
        let width = if n.is_power_of_two() {
            n
        } else {
            split_point(n)
        };
        if !a.is_multiple_of(width) || count == peaks.len() {
            return Err(TreeError::NotASubtree { start, end });
        }
        let level = width.trailing_zeros() as u8;
        peaks[count] = reader.node(NodeId::new(level, a >> level))?;
        count += 1;
        a += width;
    }
    let mut it = peaks[..count].iter().rev();
    let mut acc = match it.next() {
        Some(h) => *h,
        None => return Ok(EMPTY_ROOT),
    };
    for left in it {
        acc = node_hash(left, &acc);
    }
    Ok(acc)
}

/// Root hash of the tree made of the first `size` leaves (empty tree:
/// SHA-256 of the empty string). O(log n) reads.
pub fn root_at<R: HashReader + ?Sized>(reader: &R, size: u64) -> Result<Hash, TreeError> {
    subtree_hash(reader, 0, size)
}

/// Inclusion proof (RFC 9162 §2.1.3.1 `PATH`) for leaf `index` in the tree
/// of `size` leaves, ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut siblings = Vec::with_capacity(64);
    let (mut m, mut start, mut n) = (index, 0u64, size);
    while n > 1 {
        let k = split_point(n);
        if m < k {
            siblings.push(subtree_hash(reader, start + k, start + n)?);
            n = k;
        } else {
            siblings.push(subtree_hash(reader, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// Consistency proof (RFC 9162 §2.1.4.1 `PROOF`) between the tree of
/// `old_size` leaves and the tree of `new_size` leaves. Empty when
/// `old_size` is 0 or equal to `new_size`.
pub fn consistency_proof<R: HashReader + ?Sized>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, TreeError> {
    if old_size > new_size {
        return Err(TreeError::SizesReversed { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut siblings = Vec::with_capacity(64);
    let (mut m, mut start, mut n, mut complete) = (old_size, 0u64, new_size, true);
    while m != n {
        let k = split_point(n);
        if m <= k {
            siblings.push(subtree_hash(reader, start + k, start + n)?);
            n = k;
        } else {
            siblings.push(subtree_hash(reader, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
            complete = false;
        }
    }
    let mut proof = Vec::with_capacity(siblings.len() + 1);
    if !complete {
        proof.push(subtree_hash(reader, start, start + n)?);
    }
    proof.extend(siblings.into_iter().rev());
    Ok(proof)
}

/// Outcome of one [`Appender`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Index of the first appended entry; the batch occupies
    /// `first_index..new_size`.
    pub first_index: u64,
    /// Tree size after the batch.
    pub new_size: u64,
    /// Root hash after the batch.
    pub root: Hash,
}

/// Appends batches of leaves to a [`HashStore`].
///
/// Keeps the right frontier of the tree (the ≤ 64 perfect subtrees whose
/// sizes are the binary digits of the tree size), so a batch of `b` leaves
/// costs O(b + log n) hashes and produces O(b + log n) new nodes, written
/// with one [`HashStore::append`] call.
#[derive(Debug)]
pub struct Appender<S> {
    store: S,
    size: u64,
    /// Perfect subtrees covering `[0, size)`, largest (leftmost) first.
    frontier: Vec<(NodeId, Hash)>,
}

fn frontier_ids(size: u64) -> Vec<NodeId> {
    let mut ids = Vec::new();
    let mut pos = 0u64;
    for level in (0..64u8).rev() {
        if size & (1u64 << level) != 0 {
            ids.push(NodeId::new(level, pos >> level));
            pos += 1u64 << level;
        }
    }
    ids
}

impl<S: HashStore> Appender<S> {
    /// Open an appender over `store`, reading its size and O(log n) frontier
    /// nodes.
    pub fn open(store: S) -> Result<Self, TreeError> {
        let size = store.size()?;
        let mut frontier = Vec::new();
        for id in frontier_ids(size) {
            frontier.push((id, store.node(id)?));
        }
        Ok(Appender {
            store,
            size,
            frontier,
        })
    }

    /// Current tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Current root hash, from the frontier (no store reads).
    pub fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        let mut acc = match it.next() {
            Some((_, h)) => *h,
            None => return EMPTY_ROOT,
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// The checkpoint body for the current state (to sign with
    /// [`crate::Checkpoint::sign`]).
    pub fn checkpoint(
        &self,
        origin: &str,
    ) -> Result<crate::Checkpoint, crate::checkpoint::CheckpointError> {
        crate::Checkpoint::new(origin, self.size, self.root())
    }

    /// The underlying store (for proof generation).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The underlying store, mutably: for a durable store in this crate to
    /// take what an append produced. Not public: changing the store behind
    /// the appender's frontier would break it.
    #[cfg_attr(not(feature = "fs"), allow(dead_code))]
    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Give back the underlying store.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Append entries (hashed as RFC 6962 leaves).
    pub fn append_entries<E: AsRef<[u8]>>(
        &mut self,
        entries: &[E],
    ) -> Result<AppendResult, TreeError> {
        let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e.as_ref())).collect();
        self.append_leaf_hashes(&hashes)
    }

    /// Append precomputed leaf hashes. Either the whole batch is committed
    /// to the store, or (on error) nothing is and the appender is unchanged.
    pub fn append_leaf_hashes(&mut self, leaves: &[Hash]) -> Result<AppendResult, TreeError> {
        let old_size = self.size;
        let new_size = u64::try_from(leaves.len())
            .ok()
            .and_then(|c| old_size.checked_add(c))
            .ok_or(TreeError::TreeFull {
                size: old_size,
                count: leaves.len(),
            })?;
        let mut frontier = self.frontier.clone();
        let mut nodes = Vec::with_capacity(leaves.len() * 2 + 64);
        for (i, h) in (old_size..new_size).zip(leaves) {
            let mut id = NodeId::new(0, i);
            let mut hash = *h;
            nodes.push((id, hash));
            while id.index & 1 == 1 {
                // The left sibling is necessarily the last frontier node.
                let Some((_, left)) = frontier.pop() else {
                    break;
                };
                hash = node_hash(&left, &hash);
                id = NodeId::new(id.level + 1, id.index >> 1);
                nodes.push((id, hash));
            }
            frontier.push((id, hash));
        }
        self.store.append(old_size, new_size, &nodes)?;
        self.frontier = frontier;
        self.size = new_size;
        Ok(AppendResult {
            first_index: old_size,
            new_size,
            root: self.root(),
        })
    }
}
