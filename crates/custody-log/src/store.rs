//! Storage of Merkle tree nodes: the read trait used by proof generation, the
//! append trait used by the log writer, and an in-memory implementation.
//!
//! The tree is stored as *perfect subtree* hashes only: node `(level, index)`
//! is the Merkle tree hash of leaves `[index << level, (index + 1) << level)`.
//! Such a node never changes once all its leaves exist, so a store is
//! append-only. Hashes of ragged right edges are recomputed on demand from
//! O(log n) perfect nodes.

use crate::hash::Hash;

/// Address of a perfect subtree: `level` 0 is a leaf, level `l` covers `2^l`
/// consecutive leaves starting at `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height of the subtree (0 = leaf).
    pub level: u8,
    /// Index of the subtree among the subtrees of that level.
    pub index: u64,
}

impl NodeId {
    /// Construct a node address.
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(level {}, index {})", self.level, self.index)
    }
}

/// Failure of a hash store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The node is not (yet) stored.
    #[error("hash store: node {node} is not stored")]
    Missing {
        /// The node that was asked for.
        node: NodeId,
    },
    /// An append did not continue the store where it ended.
    #[error("hash store: append out of order: got node {node}, expected level {level} to continue at index {expected}")]
    OutOfOrder {
        /// The node offered.
        node: NodeId,
        /// Its level.
        level: u8,
        /// The next index that level can accept.
        expected: u64,
    },
    /// An append whose old size does not match the store size.
    #[error("hash store: append expected store size {expected}, store has {actual}")]
    SizeMismatch {
        /// Size the appender believed the store had.
        expected: u64,
        /// Size the store actually has.
        actual: u64,
    },
    /// Error of a storage backend (file, database...).
    #[error("hash store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Read access to perfect subtree hashes. Implemented by stores (server side)
/// and by [`crate::tile::TileHashReader`] (client side, from fetched tiles).
pub trait HashReader {
    /// The hash of perfect subtree `id`, or [`StoreError::Missing`].
    fn node(&self, id: NodeId) -> Result<Hash, StoreError>;
}

impl<T: HashReader + ?Sized> HashReader for &T {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        (**self).node(id)
    }
}

/// The append path of a log's storage.
///
/// [`crate::Appender`] computes, for a batch of new leaves, every new perfect
/// subtree node (O(batch + log n) of them) and hands them over in a single
/// call, so a durable implementation can write them and fsync once per batch.
pub trait HashStore: HashReader {
    /// Number of leaves committed to the store.
    fn size(&self) -> Result<u64, StoreError>;

    /// Commit a batch: `nodes` are the new perfect subtree nodes created by
    /// growing the tree from `old_size` to `new_size` leaves, in creation
    /// order (each level's indices are increasing and contiguous with what is
    /// already stored). After `Ok`, `size()` returns `new_size`. On `Err`
    /// nothing must have been committed.
    fn append(
        &mut self,
        old_size: u64,
        new_size: u64,
        nodes: &[(NodeId, Hash)],
    ) -> Result<(), StoreError>;
}

/// A [`HashStore`] holding every perfect subtree node in memory:
/// about 2 × 32 bytes per leaf (640 MB for 10 million leaves).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
    size: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with room reserved for `leaves` leaves.
    pub fn with_capacity(leaves: usize) -> Self {
        let mut levels = Vec::new();
        let mut n = leaves;
        while n > 0 {
            levels.push(Vec::with_capacity(n));
            n /= 2;
        }
        MemoryStore { levels, size: 0 }
    }
}

impl HashReader for MemoryStore {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        usize::try_from(id.index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(id.level))?.get(i))
            .copied()
            .ok_or(StoreError::Missing { node: id })
    }
}

impl HashStore for MemoryStore {
    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn append(
        &mut self,
        old_size: u64,
        new_size: u64,
        nodes: &[(NodeId, Hash)],
    ) -> Result<(), StoreError> {
        if old_size != self.size {
            return Err(StoreError::SizeMismatch {
                expected: old_size,
                actual: self.size,
            });
        }
        // Validate first so a rejected batch leaves the store untouched.
        let mut next: Vec<u64> = self.levels.iter().map(|l| l.len() as u64).collect();
        for (id, _) in nodes {
            let level = usize::from(id.level);
            if next.len() <= level {
                next.resize(level + 1, 0);
            }
            if next[level] != id.index {
                return Err(StoreError::OutOfOrder {
                    node: *id,
                    level: id.level,
                    expected: next[level],
                });
            }
            next[level] += 1;
        }
        for (id, h) in nodes {
            let level = usize::from(id.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            self.levels[level].push(*h);
        }
        self.size = new_size;
        Ok(())
    }
}
