//! The check a device agent or TUF client runs before installing a target
//! (issue #7, part 4), sans-IO: the target's publish entry is in the log,
//! the checkpoint is signed by the pinned log key and cosigned by `k` of
//! the configured witnesses, and it is consistent with the last checkpoint
//! the client stored. Anything else is a typed [`LogAttack`].
//!
//! ```
//! use custody_log::client::{check_logged_entry, LogEvidence, LogTrust};
//! use custody_log::{inclusion_proof, Appender, Cosigner, MemoryStore, NoteSigner};
//! let log_key = NoteSigner::generate("log.example")?;
//! let w = Cosigner::generate("witness.example")?;
//! let mut log = Appender::open(MemoryStore::new())?;
//! let r = log.append_entries(&[b"publish fw-1.0".as_slice()])?;
//! let mut note = log.checkpoint("log.example")?.sign(&log_key)?;
//! note.add_signature(w.cosign(note.text(), 1_700_000_000)?);
//! let trust = LogTrust::new("log.example", log_key.verifier_key(), vec![w.verifier_key()], 1)?;
//! let proof = inclusion_proof(log.store(), 0, r.new_size)?;
//! let accepted = check_logged_entry(&trust, None, &LogEvidence {
//!     entry: b"publish fw-1.0", index: 0, inclusion_proof: &proof,
//!     checkpoint: &note.to_bytes(), consistency_proof: &[],
//! })?;
//! // Store `accepted.checkpoint` durably as the new "last" before installing.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::checkpoint::{
    Checkpoint, CheckpointError, LogVerifier, VerifiedCheckpoint, WitnessPolicy,
};
use crate::hash::{leaf_hash, Hash};
use crate::note::VerifierKey;
use crate::proof::{verify_inclusion, ProofError};
use crate::witness::{check_update, Update, WitnessError};

/// What the client trusts: the log (origin and pinned key) and its witness
/// policy (`k` of `n` cosignature/v1 keys; `k = 0` means no witnesses).
#[derive(Debug, Clone)]
pub struct LogTrust {
    verifier: LogVerifier,
}

impl LogTrust {
    /// Pin `log_key` for `origin` and require `k` of `witnesses`.
    pub fn new(
        origin: &str,
        log_key: VerifierKey,
        witnesses: Vec<VerifierKey>,
        k: usize,
    ) -> Result<Self, CheckpointError> {
        let mut verifier = LogVerifier::new(origin, log_key)?;
        if k > 0 {
            verifier = verifier.with_witness_policy(WitnessPolicy::new(witnesses, k)?);
        }
        Ok(LogTrust { verifier })
    }

    /// The checkpoint verifier.
    pub fn verifier(&self) -> &LogVerifier {
        &self.verifier
    }

    /// The pinned log key alone, without the witness policy: enough to
    /// read a checkpoint's size or re-check a stored checkpoint.
    pub fn log_key_verifier(&self) -> Result<LogVerifier, CheckpointError> {
        LogVerifier::new(self.verifier.origin(), self.verifier.log_key().clone())
    }
}

/// What the client received with a target.
#[derive(Debug, Clone, Copy)]
pub struct LogEvidence<'a> {
    /// The target's publish entry, as stored in the log.
    pub entry: &'a [u8],
    /// Its index in the log.
    pub index: u64,
    /// Inclusion proof of `entry` at `index` in the checkpoint's tree.
    pub inclusion_proof: &'a [Hash],
    /// The signed checkpoint with its cosignatures.
    pub checkpoint: &'a [u8],
    /// Consistency proof from the last stored checkpoint's size to this
    /// checkpoint's size (empty if there is no stored checkpoint or the
    /// sizes are equal).
    pub consistency_proof: &'a [Hash],
}

/// Why a target must be refused: each variant is an attack (or a broken
/// log), never a transient condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogAttack {
    /// The checkpoint is not signed by the pinned log key (or is malformed,
    /// or for another origin).
    #[error("log attack: checkpoint rejected: {0}")]
    BadSignature(CheckpointError),
    /// Not enough trusted witnesses cosigned the checkpoint.
    #[error("log attack: checkpoint has {got} of the required {need} witness cosignatures (cosigned by: {cosigners})")]
    TooFewCosignatures {
        /// Distinct trusted witnesses with a valid cosignature.
        got: usize,
        /// Required.
        need: usize,
        /// Who did.
        cosigners: String,
    },
    /// Two checkpoints of the same size with different roots: the log shows
    /// different trees to different clients.
    #[error("log attack: fork: checkpoints of size {size} with different roots (stored {stored_root}, new {new_root})")]
    Fork {
        /// The size.
        size: u64,
        /// Hex root of the stored checkpoint.
        stored_root: String,
        /// Hex root of the new one.
        new_root: String,
    },
    /// The new checkpoint is smaller than the stored one.
    #[error(
        "log attack: rollback: checkpoint size {new_size} is below the stored size {stored_size}"
    )]
    Rollback {
        /// Stored size.
        stored_size: u64,
        /// New size.
        new_size: u64,
    },
    /// The new checkpoint is larger but not proven to extend the stored one
    /// (a fork at a later size).
    #[error("log attack: checkpoint of size {new_size} is not proven consistent with the stored size {stored_size}: {reason}")]
    Inconsistent {
        /// Stored size.
        stored_size: u64,
        /// New size.
        new_size: u64,
        /// The proof failure.
        reason: String,
    },
    /// The target's entry is not in the tree the checkpoint commits to.
    #[error("log attack: entry at index {index} is not included in the checkpoint of size {size}: {reason}")]
    NotIncluded {
        /// Claimed index.
        index: u64,
        /// Checkpoint size.
        size: u64,
        /// The proof failure.
        reason: String,
    },
}

/// A successful check: the checkpoint to store as the new "last" (durably,
/// before installing) and how it moved.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The verified checkpoint (with the cosignatures that counted).
    pub checkpoint: VerifiedCheckpoint,
    /// First / unchanged / advanced.
    pub update: Update,
}

/// Run the four checks, in this order: log signature, witness quorum,
/// consistency with `stored` (rollback / fork), inclusion of the entry.
pub fn check_logged_entry(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    ev: &LogEvidence<'_>,
) -> Result<Accepted, LogAttack> {
    let vc = trust.verifier.verify(ev.checkpoint).map_err(|e| match e {
        CheckpointError::WitnessQuorum {
            got,
            need,
            cosigners,
        } => LogAttack::TooFewCosignatures {
            got,
            need,
            cosigners,
        },
        other => LogAttack::BadSignature(other),
    })?;
    let new = &vc.checkpoint;
    let update = check_update(stored, new, ev.consistency_proof).map_err(|e| match e {
        WitnessError::Rollback {
            last_size,
            new_size,
        } => LogAttack::Rollback {
            stored_size: last_size,
            new_size,
        },
        WitnessError::Fork {
            size,
            last_root,
            new_root,
        } => LogAttack::Fork {
            size,
            stored_root: last_root,
            new_root,
        },
        WitnessError::Inconsistent {
            last_size,
            new_size,
            source,
        } => LogAttack::Inconsistent {
            stored_size: last_size,
            new_size,
            reason: source.to_string(),
        },
        WitnessError::OriginMismatch { expected, got } => {
            LogAttack::BadSignature(CheckpointError::WrongOrigin { expected, got })
        }
        other => LogAttack::Inconsistent {
            stored_size: stored.map_or(0, |s| s.size),
            new_size: new.size,
            reason: other.to_string(),
        },
    })?;
    verify_inclusion(
        &leaf_hash(ev.entry),
        ev.index,
        new.size,
        ev.inclusion_proof,
        &new.root,
    )
    .map_err(|e: ProofError| LogAttack::NotIncluded {
        index: ev.index,
        size: new.size,
        reason: e.to_string(),
    })?;
    Ok(Accepted {
        checkpoint: vc,
        update,
    })
}

/// Why offline evidence (a bundle) was refused before the log check:
/// evidence made before this client last saw the log, or for other
/// clients. Neither is an attack, and neither lets a target through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineRefusal {
    /// The evidence checkpoint is older than the stored one.
    #[error(
        "the evidence checkpoint (size {size}) is older than the stored checkpoint (size {stored})"
    )]
    Stale {
        /// stored size
        stored: u64,
        /// evidence checkpoint size
        size: u64,
    },
    /// The evidence proves consistency from other sizes than the stored one.
    #[error("the evidence has no consistency proof from the stored checkpoint size {stored} to size {size} (it has proofs from {available:?})")]
    NoConsistencyProof {
        /// stored size
        stored: u64,
        /// evidence checkpoint size
        size: u64,
        /// sizes it has proofs from
        available: Vec<u64>,
    },
    /// The evidence checkpoint is not signed by the pinned log key: an
    /// attack whatever the sizes.
    #[error("log attack: checkpoint rejected: {0}")]
    BadSignature(CheckpointError),
}

/// The offline-evidence staleness rule: evidence whose checkpoint (size
/// learnt from its log-signed `checkpoint`, so a bad signature is still an
/// attack) is older than `stored`, or larger without a consistency proof
/// from `stored`'s size (`proofs_from`: the sizes the evidence proves
/// consistency from), is refused without being an attack. With nothing
/// stored, any signed evidence passes (first use). Run before
/// [`check_logged_entry`], which then checks everything as online.
pub fn check_offline_freshness(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    checkpoint: &[u8],
    proofs_from: &[u64],
) -> Result<(), OfflineRefusal> {
    let size = trust
        .log_key_verifier()
        .and_then(|v| v.verify(checkpoint))
        .map_err(OfflineRefusal::BadSignature)?
        .checkpoint
        .size;
    let Some(s) = stored else {
        return Ok(());
    };
    if s.size > size {
        return Err(OfflineRefusal::Stale {
            stored: s.size,
            size,
        });
    }
    if s.size < size && !proofs_from.contains(&s.size) {
        return Err(OfflineRefusal::NoConsistencyProof {
            stored: s.size,
            size,
            available: proofs_from.to_vec(),
        });
    }
    Ok(())
}

/// Most hashes in one proof accepted from the wire (a tree of 2^64 leaves
/// needs fewer).
pub const MAX_PROOF_HASHES: usize = 130;

/// Why a proof as sent on the wire (a JSON list of base64 hashes) could not
/// be decoded. Each variant names the field and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofDecodeError {
    /// More hashes than any valid proof has.
    #[error("{field}: {count} hashes, at most {MAX_PROOF_HASHES}")]
    TooMany {
        /// the proof field
        field: String,
        /// hashes sent
        count: usize,
    },
    /// A hash is not base64.
    #[error("{field}[{index}]: not base64: {reason}")]
    NotBase64 {
        /// the proof field
        field: String,
        /// position in the list
        index: usize,
        /// the decoder's complaint
        reason: String,
    },
    /// A hash is not 32 bytes.
    #[error("{field}[{index}]: {len} bytes, a hash is 32")]
    WrongLength {
        /// the proof field
        field: String,
        /// position in the list
        index: usize,
        /// decoded length
        len: usize,
    },
}

/// Decode a proof sent as base64 hashes (the log's HTTP answers, evidence
/// documents, bundles): the one decoder clients, witnesses and auditors
/// share. `field` names the proof in errors.
pub fn decode_proof_hashes<S: AsRef<str>>(
    field: &str,
    list: &[S],
) -> Result<Vec<Hash>, ProofDecodeError> {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    if list.len() > MAX_PROOF_HASHES {
        return Err(ProofDecodeError::TooMany {
            field: field.to_owned(),
            count: list.len(),
        });
    }
    list.iter()
        .enumerate()
        .map(|(index, s)| {
            let b = B64
                .decode(s.as_ref())
                .map_err(|e| ProofDecodeError::NotBase64 {
                    field: field.to_owned(),
                    index,
                    reason: e.to_string(),
                })?;
            Hash::try_from(b.as_slice()).map_err(|_| ProofDecodeError::WrongLength {
                field: field.to_owned(),
                index,
                len: b.len(),
            })
        })
        .collect()
}

#[cfg(test)]
mod proof_decode_tests {
    use super::*;

    #[test]
    fn proof_hashes_decode_and_each_bad_one_is_named() {
        let good = "A".repeat(43) + "=";
        assert_eq!(
            decode_proof_hashes("p", &[good.as_str()]).unwrap(),
            vec![[0u8; 32]]
        );
        assert_eq!(
            decode_proof_hashes("p", &[good.as_str(), "AAAA"]).unwrap_err(),
            ProofDecodeError::WrongLength {
                field: "p".into(),
                index: 1,
                len: 3
            }
        );
        assert!(matches!(
            decode_proof_hashes("p", &["!"]).unwrap_err(),
            ProofDecodeError::NotBase64 { index: 0, .. }
        ));
        let many = vec![good; MAX_PROOF_HASHES + 1];
        let e = decode_proof_hashes("p", &many).unwrap_err();
        assert_eq!(e.to_string(), "p: 131 hashes, at most 130");
    }
}

#[cfg(test)]
mod offline_tests {
    use super::*;
    use crate::{Appender, MemoryStore, NoteSigner};

    const ORIGIN: &str = "log.test/log";

    fn log(n: usize) -> Appender<MemoryStore> {
        let mut a = Appender::open(MemoryStore::new()).unwrap();
        let e: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8]).collect();
        a.append_entries(&e).unwrap();
        a
    }

    #[test]
    fn offline_evidence_must_be_fresh_and_prove_from_the_stored_size() {
        let key = NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap();
        let trust = LogTrust::new(ORIGIN, key.verifier_key(), vec![], 0).unwrap();
        let at5 = log(5).checkpoint(ORIGIN).unwrap();
        let at3 = log(3).checkpoint(ORIGIN).unwrap();
        let at8 = log(8).checkpoint(ORIGIN).unwrap();
        let signed5 = at5.sign(&key).unwrap().to_bytes();
        // first use: anything signed
        check_offline_freshness(&trust, None, &signed5, &[]).unwrap();
        // same size: no proof needed
        check_offline_freshness(&trust, Some(&at5), &signed5, &[]).unwrap();
        // stored smaller, proof from it: fine; without: refused
        check_offline_freshness(&trust, Some(&at3), &signed5, &[1, 3]).unwrap();
        assert_eq!(
            check_offline_freshness(&trust, Some(&at3), &signed5, &[1, 2]).unwrap_err(),
            OfflineRefusal::NoConsistencyProof {
                stored: 3,
                size: 5,
                available: vec![1, 2]
            }
        );
        // stored larger: stale
        assert_eq!(
            check_offline_freshness(&trust, Some(&at8), &signed5, &[3]).unwrap_err(),
            OfflineRefusal::Stale { stored: 8, size: 5 }
        );
        // signed by another key: an attack, whatever the sizes
        let evil = NoteSigner::from_seed(ORIGIN, [2; 32]).unwrap();
        let forged = at5.sign(&evil).unwrap().to_bytes();
        for stored in [None, Some(&at3), Some(&at8)] {
            assert!(matches!(
                check_offline_freshness(&trust, stored, &forged, &[3]),
                Err(OfflineRefusal::BadSignature(_))
            ));
        }
        // the witness policy does not apply to learning the size
        let w = crate::Cosigner::from_seed("w.test/1", [3; 32]).unwrap();
        let strict = LogTrust::new(ORIGIN, key.verifier_key(), vec![w.verifier_key()], 1).unwrap();
        check_offline_freshness(&strict, Some(&at5), &signed5, &[]).unwrap();
    }
}
