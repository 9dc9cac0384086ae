//! RFC 6962 / RFC 9162 Merkle tree hashing (SHA-256 with domain separation).

use ring::digest;

/// A SHA-256 Merkle tree hash (leaf hash, interior node hash or root).
pub type Hash = [u8; 32];

/// Size in bytes of a [`type@Hash`].
pub const HASH_LEN: usize = 32;

/// Root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

fn finish(d: digest::Digest) -> Hash {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

/// Leaf hash: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    finish(ctx.finish())
}

/// Interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    finish(digest::digest(&digest::SHA256, &buf))
}

/// Plain SHA-256 (used for key IDs).
/// Lowercase hex of a hash, for messages (roots and nodes named in errors).
pub(crate) fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256(data: &[u8]) -> Hash {
    finish(digest::digest(&digest::SHA256, data))
}

/// Largest power of two strictly smaller than `n` (the RFC 9162 split point `k`).
/// Requires `n >= 2`; returns 0 for smaller inputs so callers can never panic.
pub(crate) fn split_point(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Merkle tree hash of a list of leaf hashes, computed by the literal
/// recursive definition of RFC 9162 §2.1.1. O(n) time and O(log n) stack;
/// meant as the reference definition (tests, small trees), not the fast path.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            let (l, r) = leaves.split_at(k);
            node_hash(&root_from_leaf_hashes(l), &root_from_leaf_hashes(r))
        }
    }
}

/// Decode a concatenation of 32-byte hashes (for instance a proof received
/// on the wire). Fails if the length is not a multiple of 32.
pub fn hashes_from_bytes(bytes: &[u8]) -> Result<Vec<Hash>, HashLengthError> {
    if !bytes.len().is_multiple_of(HASH_LEN) {
        return Err(HashLengthError::NotMultiple { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Encode hashes as their concatenation (the inverse of [`hashes_from_bytes`]).
pub fn hashes_to_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Decode one hash from a byte slice of exactly 32 bytes.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, HashLengthError> {
    <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| HashLengthError::NotOne { len: bytes.len() })
}

/// A byte string that should hold whole 32-byte hashes did not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashLengthError {
    /// A list of hashes whose byte length is not a multiple of 32.
    #[error("hash list: length {len} is not a multiple of 32 (SHA-256 hashes are 32 bytes)")]
    NotMultiple {
        /// The offending length.
        len: usize,
    },
    /// A single hash that is not exactly 32 bytes.
    #[error("hash: length {len} is not 32 (SHA-256 hashes are 32 bytes)")]
    NotOne {
        /// The offending length.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(0), 0);
        assert_eq!(split_point(1), 0);
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn empty_root_is_sha256_of_empty_string() {
        assert_eq!(sha256(b""), EMPTY_ROOT);
        assert_eq!(root_from_leaf_hashes(&[]), EMPTY_ROOT);
    }
}
