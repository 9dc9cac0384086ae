//! C2SP `tlog-checkpoint`: the signed tree head, its signer and its
//! verifier (log signature plus an optional k-of-n witness policy).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::hash::Hash;
use crate::note::{KeyType, Note, NoteError, NoteSigner, VerifiedSignature, VerifierKey};

/// Errors of checkpoint parsing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed-note layer failed.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body breaks a tlog-checkpoint line rule.
    #[error("checkpoint body line {line} ({field}): {reason}")]
    BadBody {
        /// 1-based line number.
        line: usize,
        /// "origin", "tree size", "root hash" or "extension".
        field: &'static str,
        /// The rule broken and the offending value.
        reason: String,
    },
    /// The origin line is not the one this verifier trusts.
    #[error("checkpoint origin {got:?} is not the expected log origin {expected:?}")]
    WrongOrigin {
        /// Origin configured.
        expected: String,
        /// Origin found.
        got: String,
    },
    /// The note verified, but not with the log's own key.
    #[error("checkpoint: no valid signature by the log key {key} (verified signers: {verified})")]
    MissingLogSignature {
        /// Log key as `name+keyid`.
        key: String,
        /// Keys whose signatures verified.
        verified: String,
    },
    /// The log key given to a verifier is not a plain Ed25519 key.
    #[error("log key {key}: must be an Ed25519 (type 0x01) key, got {key_type:?}")]
    WrongLogKeyType {
        /// The key.
        key: String,
        /// Its type.
        key_type: KeyType,
    },
    /// Witness policy misconfigured.
    #[error("witness policy: {reason}")]
    BadPolicy {
        /// What is wrong.
        reason: String,
    },
    /// Too few distinct trusted witnesses cosigned.
    #[error("witness policy: {got} of the required {need} trusted witnesses cosigned (cosigned by: {cosigners})")]
    WitnessQuorum {
        /// Distinct trusted witnesses with a valid cosignature.
        got: usize,
        /// Threshold.
        need: usize,
        /// Names of those that did.
        cosigners: String,
    },
}

/// The body of a checkpoint: which log, how big, which root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity (first line).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash at `size`.
    pub root: Hash,
    /// Opaque extension lines (non-empty, without newline).
    pub extensions: Vec<String>,
}

fn check_line(line: usize, field: &'static str, s: &str) -> Result<(), CheckpointError> {
    if s.is_empty() {
        return Err(CheckpointError::BadBody {
            line,
            field,
            reason: "must be non-empty".into(),
        });
    }
    if let Some(c) = s.chars().find(|c| (*c as u32) < 0x20) {
        return Err(CheckpointError::BadBody {
            line,
            field,
            reason: format!("control character U+{:04X} is not allowed", c as u32),
        });
    }
    Ok(())
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        let cp = Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        };
        cp.validate()?;
        Ok(cp)
    }

    fn validate(&self) -> Result<(), CheckpointError> {
        check_line(1, "origin", &self.origin)?;
        for (i, e) in self.extensions.iter().enumerate() {
            check_line(4 + i, "extension", e)?;
        }
        Ok(())
    }

    /// The note text: origin, size, base64 root, extensions, each
    /// newline-terminated.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a checkpoint body strictly (c2sp.org/tlog-checkpoint).
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(CheckpointError::BadBody {
                line: text.split('\n').count(),
                field: "origin",
                reason: "the body must end with a newline".into(),
            });
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::BadBody {
                line: lines.len() + 1,
                field: if lines.len() < 2 {
                    "tree size"
                } else {
                    "root hash"
                },
                reason: format!("a checkpoint needs at least 3 lines, got {}", lines.len()),
            });
        }
        let origin = lines[0];
        check_line(1, "origin", origin)?;
        let size_s = lines[1];
        let size_ok = !size_s.is_empty()
            && size_s.bytes().all(|b| b.is_ascii_digit())
            && (size_s == "0" || !size_s.starts_with('0'));
        let size = if size_ok {
            size_s.parse::<u64>().ok()
        } else {
            None
        }
        .ok_or_else(|| CheckpointError::BadBody {
            line: 2,
            field: "tree size",
            reason: format!(
                "{size_s:?} is not a decimal integer below 2^64 without leading zeroes"
            ),
        })?;
        let root_s = lines[2];
        let root_raw = B64.decode(root_s).map_err(|e| CheckpointError::BadBody {
            line: 3,
            field: "root hash",
            reason: format!("{root_s:?} is not canonical standard base64: {e}"),
        })?;
        let root: Hash = root_raw
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::BadBody {
                line: 3,
                field: "root hash",
                reason: format!("decodes to {} bytes, must be 32", root_raw.len()),
            })?;
        let mut extensions = Vec::new();
        for (i, e) in lines[3..].iter().enumerate() {
            check_line(4 + i, "extension", e)?;
            extensions.push((*e).to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Verify that `entry` is leaf `index` of the tree this checkpoint
    /// commits to. Only meaningful on a checkpoint whose signature verified.
    pub fn verify_entry_inclusion(
        &self,
        entry: &[u8],
        index: u64,
        proof: &[Hash],
    ) -> Result<(), crate::ProofError> {
        crate::verify_inclusion(
            &crate::leaf_hash(entry),
            index,
            self.size,
            proof,
            &self.root,
        )
    }

    /// Sign with the log key, producing a note with one signature.
    pub fn sign(&self, signer: &NoteSigner) -> Result<Note, CheckpointError> {
        self.validate()?;
        let text = self.to_text();
        let mut note = Note::new(text.clone())?;
        note.add_signature(signer.sign(&text)?);
        Ok(note)
    }
}

/// "At least `threshold` of these witnesses must have cosigned".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    witnesses: Vec<VerifierKey>,
    threshold: usize,
}

impl WitnessPolicy {
    /// Witness keys must be `cosignature/v1` keys with distinct public keys
    /// (a cosignature/v1 does not commit to the witness name, so one key
    /// listed under two names would count twice); `1 <= threshold <= n`.
    pub fn new(witnesses: Vec<VerifierKey>, threshold: usize) -> Result<Self, CheckpointError> {
        let bad = |reason: String| CheckpointError::BadPolicy { reason };
        for (i, w) in witnesses.iter().enumerate() {
            if w.key_type() != KeyType::CosignatureV1 {
                return Err(bad(format!(
                    "witness key {} is {:?}, must be a cosignature/v1 (type 0x04) key",
                    w.name(),
                    w.key_type()
                )));
            }
            if witnesses[..i]
                .iter()
                .any(|o| o.public_key() == w.public_key())
            {
                return Err(bad(format!(
                    "witness key {} repeats the public key of another witness",
                    w.name()
                )));
            }
        }
        if threshold == 0 || threshold > witnesses.len() {
            return Err(bad(format!(
                "threshold {threshold} must be between 1 and the number of witnesses ({})",
                witnesses.len()
            )));
        }
        Ok(WitnessPolicy {
            witnesses,
            threshold,
        })
    }

    /// The witness keys.
    pub fn witnesses(&self) -> &[VerifierKey] {
        &self.witnesses
    }

    /// The threshold.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Check the quorum among already verified signatures; returns the
    /// witness cosignatures that counted.
    pub fn check(
        &self,
        verified: &[VerifiedSignature],
    ) -> Result<Vec<VerifiedSignature>, CheckpointError> {
        let mut counted: Vec<VerifiedSignature> = Vec::new();
        for v in verified {
            if v.key_type != KeyType::CosignatureV1 {
                continue;
            }
            let trusted = self.witnesses.iter().any(|w| {
                w.name() == v.name && w.key_id() == v.key_id && w.public_key() == &v.public_key
            });
            if trusted && !counted.iter().any(|c| c.public_key == v.public_key) {
                counted.push(v.clone());
            }
        }
        if counted.len() < self.threshold {
            return Err(CheckpointError::WitnessQuorum {
                got: counted.len(),
                need: self.threshold,
                cosigners: counted
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(counted)
    }
}

/// A checkpoint whose log signature (and witness quorum, if configured)
/// verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The parsed body.
    pub checkpoint: Checkpoint,
    /// The note as received (to forward or store).
    pub note: Note,
    /// Witness cosignatures that counted toward the policy (empty without a
    /// policy).
    pub cosignatures: Vec<VerifiedSignature>,
}

/// Verifies checkpoints of one log: its origin, its Ed25519 key and
/// optionally a witness policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerifier {
    origin: String,
    log_key: VerifierKey,
    policy: Option<WitnessPolicy>,
}

impl LogVerifier {
    /// Trust `log_key` (type Ed25519) for checkpoints with origin `origin`.
    pub fn new(origin: impl Into<String>, log_key: VerifierKey) -> Result<Self, CheckpointError> {
        if log_key.key_type() != KeyType::Ed25519 {
            return Err(CheckpointError::WrongLogKeyType {
                key: log_key.to_vkey(),
                key_type: log_key.key_type(),
            });
        }
        let origin = origin.into();
        check_line(1, "origin", &origin)?;
        Ok(LogVerifier {
            origin,
            log_key,
            policy: None,
        })
    }

    /// Additionally require a witness quorum.
    pub fn with_witness_policy(mut self, policy: WitnessPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The trusted origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log key.
    pub fn log_key(&self) -> &VerifierKey {
        &self.log_key
    }

    /// Parse and verify a signed checkpoint.
    pub fn verify(&self, signed: &[u8]) -> Result<VerifiedCheckpoint, CheckpointError> {
        let note = Note::parse(signed)?;
        self.verify_note(note)
    }

    /// Verify an already parsed note.
    pub fn verify_note(&self, note: Note) -> Result<VerifiedCheckpoint, CheckpointError> {
        let mut keys = vec![self.log_key.clone()];
        if let Some(p) = &self.policy {
            keys.extend(p.witnesses().iter().cloned());
        }
        let verified = note.verify(&keys)?;
        if !verified
            .iter()
            .any(|v| v.key_type == KeyType::Ed25519 && v.public_key == *self.log_key.public_key())
        {
            return Err(CheckpointError::MissingLogSignature {
                key: format!("{}+{:08x}", self.log_key.name(), self.log_key.key_id()),
                verified: verified
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let checkpoint = Checkpoint::parse_text(note.text())?;
        if checkpoint.origin != self.origin {
            return Err(CheckpointError::WrongOrigin {
                expected: self.origin.clone(),
                got: checkpoint.origin,
            });
        }
        let cosignatures = match &self.policy {
            Some(p) => p.check(&verified)?,
            None => Vec::new(),
        };
        Ok(VerifiedCheckpoint {
            checkpoint,
            note,
            cosignatures,
        })
    }
}
