//! custody-log
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod store;
pub mod tile;
pub mod tree;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, LogVerifier, VerifiedCheckpoint, WitnessPolicy};
pub use hash::{leaf_hash, node_hash, root_from_leaf_hashes, Hash, EMPTY_ROOT};
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
