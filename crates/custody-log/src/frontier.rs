//! The right edge of an RFC 6962 tree: the hashes of the perfect subtrees
//! that cover leaves `[0, size)`, one per set bit of `size`, largest first.
//! Enough to append leaves and compute the root in O(log n) memory, so a
//! monitor can follow a log entry by entry and check each new signed root
//! against exactly the entries it read (which proves the new tree extends
//! the old one and holds those entries), without keeping the tree.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT};

/// Why a followed log is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The signed tree is smaller than the one seen before.
    #[error("the log signed a tree of {new} entries; {seen} were seen before (rollback)")]
    Rollback {
        /// entries seen before
        seen: u64,
        /// the signed tree's size
        new: u64,
    },
    /// The signed root is not the tree seen before extended by the
    /// entries the log served.
    #[error("the log signed a tree of {size} entries whose root is not the tree seen before extended by the entries it served (a fork, or entries changed after they were logged)")]
    Fork {
        /// the signed tree's size
        size: u64,
    },
}

/// A follower's first rule: a signed tree never shrinks.
pub fn check_grows(seen: u64, signed: &Checkpoint) -> Result<(), FollowError> {
    if signed.size < seen {
        return Err(FollowError::Rollback {
            seen,
            new: signed.size,
        });
    }
    Ok(())
}

/// The compact right edge of a tree of `size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Frontier {
    size: u64,
    /// perfect-subtree hashes, largest (leftmost) first
    #[serde(with = "hashes_b64")]
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append the leaf whose entry bytes are `entry`.
    pub fn push_entry(&mut self, entry: &[u8]) {
        self.push_leaf(leaf_hash(entry));
    }

    /// Append a leaf hash.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut size = self.size;
        // Each trailing 1 bit of the size is a perfect subtree of the same
        // height as the carry: merge them, as a binary counter carries.
        while size & 1 == 1 {
            match self.roots.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
            size >>= 1;
        }
        self.roots.push(carry);
        self.size += 1;
    }

    /// The root of the tree of [`Frontier::size`] leaves (RFC 6962 MTH).
    pub fn root(&self) -> Hash {
        let mut it = self.roots.iter().rev();
        let Some(last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// A follower's second rule: this frontier (the tree seen before,
    /// extended by every entry the log served up to the signed size) is
    /// exactly the signed tree. That proves the signed tree extends the
    /// one seen before and holds those entries.
    pub fn check_extends_to(&self, signed: &Checkpoint) -> Result<(), FollowError> {
        if self.size != signed.size || self.root() != signed.root {
            return Err(FollowError::Fork { size: signed.size });
        }
        Ok(())
    }

    /// Whether the stored shape is one `size` can have (one hash per set
    /// bit): a frontier read back from a file is checked before use.
    pub fn is_well_formed(&self) -> bool {
        self.roots.len() == self.size.count_ones() as usize
    }
}

/// Hashes as base64 strings, as the log's proofs are on the wire.
mod hashes_b64 {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::hash::Hash;

    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|h| B64.encode(h)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|h| {
                let bytes = B64.decode(h).map_err(serde::de::Error::custom)?;
                Hash::try_from(bytes.as_slice())
                    .map_err(|_| serde::de::Error::custom("a hash is 32 bytes"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::tree::Appender;
    use proptest::prelude::*;

    proptest! {
        /// The frontier's root is the tree's root at every size, and it
        /// survives a JSON round trip.
        #[test]
        fn root_matches_the_full_tree(n in 0usize..300) {
            let mut f = Frontier::new();
            let mut full = Appender::open(MemoryStore::default()).unwrap();
            prop_assert_eq!(f.root(), full.root());
            for i in 0..n {
                let e = format!("entry {i}");
                f.push_entry(e.as_bytes());
                full.append_entries(&[e.as_bytes()]).unwrap();
                prop_assert_eq!(f.size(), full.size());
                prop_assert_eq!(f.root(), full.root());
                prop_assert!(f.is_well_formed());
            }
            let back: Frontier = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            prop_assert_eq!(back, f);
        }
    }

    #[test]
    fn a_follower_refuses_a_smaller_tree_and_another_root() {
        let mut f = Frontier::new();
        for e in [b"a", b"b", b"c"] {
            f.push_entry(e);
        }
        let good = Checkpoint::new("o", 3, f.root()).unwrap();
        assert_eq!(f.check_extends_to(&good), Ok(()));
        assert_eq!(check_grows(3, &good), Ok(()));
        let small = Checkpoint::new("o", 2, f.root()).unwrap();
        assert_eq!(
            check_grows(3, &small),
            Err(FollowError::Rollback { seen: 3, new: 2 })
        );
        let forked = Checkpoint::new("o", 3, [9; 32]).unwrap();
        assert_eq!(
            f.check_extends_to(&forked),
            Err(FollowError::Fork { size: 3 })
        );
        // The entries served must reach the signed size exactly.
        let longer = Checkpoint::new("o", 4, f.root()).unwrap();
        assert!(f.check_extends_to(&longer).is_err());
    }

    #[test]
    fn a_malformed_stored_frontier_is_detected() {
        let f: Frontier = serde_json::from_str(r#"{"size":3,"roots":[]}"#).unwrap();
        assert!(!f.is_well_formed());
        assert!(serde_json::from_str::<Frontier>(r#"{"size":1,"roots":["AAAA"]}"#).is_err());
    }
}
