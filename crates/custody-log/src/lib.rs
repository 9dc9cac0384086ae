//! # custody-log: the sans-IO transparency log core
//!
//! Everything a transparency log, its witnesses, its auditors and its
//! clients compute, with no IO: the RFC 6962 / RFC 9162 Merkle tree, proofs,
//! C2SP signed notes, checkpoints, cosignatures and tiles. Storage is behind
//! a trait; the server provides a durable implementation.
//!
//! ## Merkle tree ([`hash`], [`proof`], [`store`], [`tree`])
//!
//! - [`leaf_hash`] (`SHA-256(0x00 || entry)`), [`node_hash`]
//!   (`SHA-256(0x01 || l || r)`), [`EMPTY_ROOT`] and the reference
//!   [`root_from_leaf_hashes`].
//! - Verification, total over all inputs (typed [`ProofError`], never a
//!   panic): [`verify_inclusion`], [`root_from_inclusion_proof`],
//!   [`verify_consistency`] (RFC 9162 §2.1.3.2 and §2.1.4.2).
//! - Storage: the tree is kept as *perfect subtree* hashes addressed by
//!   [`NodeId`] `(level, index)`; they never change once complete.
//!   [`HashReader`] reads them, [`HashStore`] adds `size` and a batch
//!   `append`. [`MemoryStore`] is the in-memory store.
//! - Generation from any [`HashReader`]: [`root_at`], [`inclusion_proof`],
//!   [`consistency_proof`] (any size up to the stored size), O(log n) reads
//!   (O(log² n) worst case for consistency).
//! - [`Appender`] keeps the right frontier (≤ 64 hashes): a batch of `b`
//!   entries costs O(b + log n) hashes and one [`HashStore::append`] call
//!   with the O(b + log n) new nodes, so a durable store can write and fsync
//!   once per batch. It returns an [`AppendResult`] (first index, new size,
//!   new root).
//!
//! ```
//! use custody_log::{Appender, MemoryStore, inclusion_proof, leaf_hash, verify_inclusion};
//! let mut log = Appender::open(MemoryStore::new())?;
//! let r = log.append_entries(&[b"a".as_slice(), b"b", b"c"])?;
//! let proof = inclusion_proof(log.store(), 1, r.new_size)?;
//! verify_inclusion(&leaf_hash(b"b"), 1, r.new_size, &proof, &r.root)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Signed notes and keys ([`note`])
//!
//! [`Note`] parses and formats c2sp.org/signed-note strictly (UTF-8, no
//! control characters, ≤ 1 MiB, ≤ 100 signatures, canonical base64).
//! [`Note::verify`] ignores unknown keys, rejects the note if a known key's
//! signature fails or a key signs twice, and requires one known signature.
//! Keys: [`VerifierKey`] (`vkey` strings `name+hash+base64(type||key)`,
//! types 0x01 Ed25519 and 0x04 cosignature/v1), [`NoteSigner`] (log
//! Ed25519 key) and [`Cosigner`] (witness key), both also in Go's
//! `PRIVATE+KEY+name+hash+base64(type||seed)` form.
//!
//! ## Checkpoints and witnesses ([`checkpoint`], [`witness`])
//!
//! - [`Checkpoint`] is the c2sp.org/tlog-checkpoint body (origin, size,
//!   root, extension lines); [`Checkpoint::sign`] makes the signed note.
//! - [`LogVerifier`] verifies a signed checkpoint for one log: origin, the
//!   log's Ed25519 signature, and optionally a [`WitnessPolicy`] (`k` of
//!   these cosignature/v1 witness keys, counted by distinct public key).
//!   It returns a [`VerifiedCheckpoint`].
//! - [`check_update`] is the shared append-only rule: given the last trusted
//!   checkpoint, a new one and a consistency proof, it returns an [`Update`]
//!   or [`WitnessError::Rollback`] / [`WitnessError::Fork`] /
//!   [`WitnessError::Inconsistent`]. [`Witness`] wraps verify + check +
//!   cosign for the witness process.
//!
//! ## Tiles ([`tile`])
//!
//! c2sp.org/tlog-tiles: [`TileId`] / [`BundleId`] paths and
//! [`parse_tile_path`]; [`tile::new_tiles`] / [`tile::new_bundles`] (what to
//! publish after growing); [`tile::read_tile`] (tile bytes from a store);
//! [`tile::tiles_for_inclusion`], [`tile::tiles_for_consistency`],
//! [`tile::tiles_for_root`] (what a client must fetch) and
//! [`TileHashReader`], a [`HashReader`] over fetched tiles from which the
//! same proof and root functions work; entry bundles with
//! [`tile::encode_entry_bundle`], [`tile::parse_entry_bundle`] and
//! [`tile::check_bundle_against_tile`].
//!
//! ## Client check ([`client`])
//!
//! [`client::check_logged_entry`]: what an agent or client runs before
//! installing a target: publish entry included, checkpoint signed by the
//! pinned log key and cosigned by k of n witnesses, consistent with the
//! last stored checkpoint; otherwise a typed [`client::LogAttack`].
//!
//! ## Log protocol ([`wire`], [`cosign`], [`audit`])
//!
//! - [`wire`]: the HTTP documents server, clients, witnesses and auditors
//!   share (evidence, cosignature request and answer, proof answers,
//!   checkpoint bound), with bounded strict parsers.
//! - [`cosign::accept_cosignature`]: whether the log attaches a witness's
//!   cosignature; [`cosign::CosignatureSet`] keeps them per checkpoint
//!   (at most 16 witnesses, a stale cosignature never replaces a newer one).
//! - [`client::check_offline_freshness`]: the staleness rule for evidence
//!   carried offline (bundles).
//! - [`audit::Replay`]: an auditor's replay of the whole log from its tiles,
//!   and the fork check of a cosigned checkpoint.
//!
//! ## Durable store ([`fs`], feature `fs`)
//!
//! The only IO in the crate, behind a feature: tiles, bundles and the
//! checkpoint on the local file system, group commit, crash recovery.
//!
//! Tiles are untrusted: anything computed from them is only trusted after
//! it verifies against a verified checkpoint's root.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod checkpoint;
pub mod client;
pub mod cosign;
pub mod entry;
pub mod frontier;
#[cfg(feature = "fs")]
pub mod fs;
pub mod hash;
pub mod note;
pub mod proof;
pub mod store;
pub mod tile;
pub mod tree;
pub mod wire;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, LogVerifier, VerifiedCheckpoint, WitnessPolicy};
pub use hash::{
    hashes_from_bytes, hashes_to_bytes, leaf_hash, node_hash, root_from_leaf_hashes, Hash,
    EMPTY_ROOT,
};
pub use note::{
    Cosigner, KeyType, Note, NoteError, NoteSignature, NoteSigner, VerifiedSignature, VerifierKey,
};
pub use proof::{root_from_inclusion_proof, verify_consistency, verify_inclusion, ProofError};
pub use store::{HashReader, HashStore, MemoryStore, NodeId, StoreError};
pub use tile::{parse_tile_path, BundleId, TileError, TileHashReader, TileId, TilePath};
pub use tree::{
    consistency_proof, inclusion_proof, root_at, subtree_hash, AppendResult, Appender, TreeError,
};
pub use witness::{check_update, Cosigned, Update, Witness, WitnessError};
