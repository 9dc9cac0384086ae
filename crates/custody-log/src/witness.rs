//! The append-only check shared by witnesses, agents and auditors: given the
//! last checkpoint we trust for a log and a new one with a consistency
//! proof, accept it, or name the attack (rollback, fork).

use crate::checkpoint::{Checkpoint, CheckpointError, LogVerifier};
use crate::hash::Hash;
use crate::note::{Cosigner, NoteError, NoteSignature};
use crate::proof::{verify_consistency, ProofError};

use crate::hash::hex;

/// Why a new checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The new checkpoint is for another log.
    #[error("checkpoint origin {got:?} differs from the last seen origin {expected:?}")]
    OriginMismatch {
        /// Origin of the last seen checkpoint.
        expected: String,
        /// Origin of the new checkpoint.
        got: String,
    },
    /// The new checkpoint is smaller than one already seen.
    #[error(
        "rollback: new checkpoint size {new_size} is smaller than the last seen size {last_size}"
    )]
    Rollback {
        /// Last seen size.
        last_size: u64,
        /// New size.
        new_size: u64,
    },
    /// Same size, different roots: the log shows two different trees.
    #[error("fork: two checkpoints of size {size} with different roots (last seen {last_root}, new {new_root})")]
    Fork {
        /// The size.
        size: u64,
        /// Hex of the last seen root.
        last_root: String,
        /// Hex of the new root.
        new_root: String,
    },
    /// The consistency proof does not link the two checkpoints.
    #[error("consistency from size {last_size} to {new_size} not proven: {source}")]
    Inconsistent {
        /// Last seen size.
        last_size: u64,
        /// New size.
        new_size: u64,
        /// The proof failure.
        #[source]
        source: ProofError,
    },
    /// Signature verification of the new checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Cosigning failed.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// What an accepted update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// First checkpoint seen for this log (trust on first use).
    First,
    /// Same checkpoint as before (same size and root).
    Unchanged,
    /// The log grew consistently.
    Advanced {
        /// Previous size.
        from: u64,
        /// New size.
        to: u64,
    },
}

/// Decide whether `new` may replace `last` given `proof` (a consistency proof
/// from `last.size` to `new.size`). Both checkpoints must already have their
/// signatures verified.
pub fn check_update(
    last: Option<&Checkpoint>,
    new: &Checkpoint,
    proof: &[Hash],
) -> Result<Update, WitnessError> {
    let Some(last) = last else {
        return Ok(Update::First);
    };
    if last.origin != new.origin {
        return Err(WitnessError::OriginMismatch {
            expected: last.origin.clone(),
            got: new.origin.clone(),
        });
    }
    if new.size < last.size {
        return Err(WitnessError::Rollback {
            last_size: last.size,
            new_size: new.size,
        });
    }
    if new.size == last.size {
        if new.root != last.root {
            return Err(WitnessError::Fork {
                size: new.size,
                last_root: hex(&last.root),
                new_root: hex(&new.root),
            });
        }
        return Ok(Update::Unchanged);
    }
    verify_consistency(last.size, new.size, &last.root, &new.root, proof).map_err(|source| {
        WitnessError::Inconsistent {
            last_size: last.size,
            new_size: new.size,
            source,
        }
    })?;
    Ok(Update::Advanced {
        from: last.size,
        to: new.size,
    })
}

/// The state machine of a witness for one log: verify the log signature,
/// check the update against the last cosigned checkpoint, cosign.
/// Persistence of `last` is the caller's job (it must be durable before the
/// cosignature is released).
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
}

/// Result of a successful [`Witness::add_checkpoint`].
#[derive(Debug, Clone)]
pub struct Cosigned {
    /// The checkpoint that becomes the witness's new state.
    pub checkpoint: Checkpoint,
    /// How the state moved.
    pub update: Update,
    /// The cosignature line to return to the log.
    pub cosignature: NoteSignature,
}

impl Witness {
    /// A witness signing with `cosigner`.
    pub fn new(cosigner: Cosigner) -> Self {
        Witness { cosigner }
    }

    /// The cosigner.
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// Verify `signed` with `log`, check it against `last` with `proof`, and
    /// cosign it at POSIX time `now`.
    pub fn add_checkpoint(
        &self,
        log: &LogVerifier,
        last: Option<&Checkpoint>,
        signed: &[u8],
        proof: &[Hash],
        now: u64,
    ) -> Result<Cosigned, WitnessError> {
        let verified = log.verify(signed)?;
        let update = check_update(last, &verified.checkpoint, proof)?;
        let cosignature = self.cosigner.cosign(verified.note.text(), now)?;
        Ok(Cosigned {
            checkpoint: verified.checkpoint,
            update,
            cosignature,
        })
    }
}
