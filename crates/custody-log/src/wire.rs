//! The log's HTTP documents, defined once for the server that writes them
//! and the clients, witnesses and auditors that read them: the evidence
//! answer ([`Evidence`], also carried in offline bundles), the cosignature
//! request and answer ([`CosignRequest`], [`CosignResponse`]), the proof
//! answers ([`InclusionProofAnswer`], [`ConsistencyProofAnswer`]) and the
//! checkpoint answer (a signed note, at most [`MAX_CHECKPOINT_BYTES`]).
//!
//! Readers use the bounded strict parsers here (`from_slice`, `parse_for`):
//! a size bound before any parsing, unknown fields refused, list lengths
//! bounded, proofs decoded to hashes and answers checked against the
//! question asked. Nothing in a parsed document is trusted: the checks of
//! [`crate::client`], [`crate::witness`] and [`crate::audit`] verify it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::client::{decode_proof_hashes, ProofDecodeError};
use crate::hash::Hash;
use crate::note::Note;

/// Largest evidence document accepted (an entry is at most 64 KiB, proofs
/// at most [`MAX_CONSISTENCY_PROOFS`] + 1 lists of 130 hashes).
pub const MAX_EVIDENCE_BYTES: usize = 1024 * 1024;
/// Largest checkpoint answer (a signed note with its cosignatures), stored
/// checkpoint or checkpoint in a cosignature request.
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;
/// Largest proof answer (130 base64 hashes are about 6 KiB).
pub const MAX_PROOF_ANSWER_BYTES: usize = 64 * 1024;
/// Largest cosignature request (the checkpoint plus a key and a line).
pub const MAX_COSIGN_REQUEST_BYTES: usize = MAX_CHECKPOINT_BYTES + 4096;
/// Most consistency proofs one evidence document may carry (bundles carry
/// one per stored size the operator prepared them for).
pub const MAX_CONSISTENCY_PROOFS: usize = 64;

/// Why a log document was refused. Each variant names the document and
/// the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than the document's bound.
    #[error("{doc}: {len} bytes, at most {max}")]
    TooLarge {
        /// the document
        doc: &'static str,
        /// its length
        len: usize,
        /// the bound
        max: usize,
    },
    /// Not the JSON document (syntax, a missing or unknown field).
    #[error("{doc}: not a {doc} document: {reason}")]
    Json {
        /// the document
        doc: &'static str,
        /// the parser's complaint
        reason: String,
    },
    /// More consistency proofs than [`MAX_CONSISTENCY_PROOFS`].
    #[error("evidence: {count} consistency proofs, at most {MAX_CONSISTENCY_PROOFS}")]
    TooManyProofs {
        /// proofs sent
        count: usize,
    },
    /// A proof does not decode.
    #[error("{0}")]
    Proof(#[from] ProofDecodeError),
    /// The entry of an evidence document is not base64.
    #[error("evidence: entry: not base64: {0}")]
    Entry(String),
    /// An answer for another question than the one asked.
    #[error("{doc}: answered for {got}, asked {asked}")]
    Mismatch {
        /// the document
        doc: &'static str,
        /// what was asked
        asked: String,
        /// what was answered
        got: String,
    },
    /// A checkpoint that does not parse (read, not verified).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

fn parse_bounded<T: DeserializeOwned>(
    doc: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            doc,
            len: bytes.len(),
            max,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| WireError::Json {
        doc,
        reason: e.to_string(),
    })
}

fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

// ------------------------------------------------------------ evidence

/// A consistency proof inside [`Evidence`]: from `old` to the evidence
/// checkpoint's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConsistency {
    /// from this tree size
    pub old: u64,
    /// base64 hashes
    pub proof: Vec<String>,
}

/// `GET /log/v1/evidence?repo=&target=&sha256=&old=` answer: everything a
/// client needs to check one target against the log. Also embedded in
/// offline bundles. Nothing in it is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// repository the entry is looked up for
    pub repo: String,
    /// target path
    pub target: String,
    /// target sha256 (lowercase hex)
    pub sha256: String,
    /// index of the `target_publish` entry
    pub index: u64,
    /// the entry bytes, base64
    pub entry: String,
    /// the signed checkpoint (note text, log signature and cosignatures)
    pub checkpoint: String,
    /// inclusion proof of the entry at the checkpoint's size (base64)
    pub inclusion_proof: Vec<String>,
    /// consistency proofs to the checkpoint's size, by old size (none when
    /// the client stored no checkpoint or one of the same size)
    #[serde(default)]
    pub consistency: Vec<EvidenceConsistency>,
}

/// `GET /log/v1/entry?index=&old=` answer: one entry by its index, with
/// its inclusion proof at a signed (cosigned when the server has it)
/// checkpoint, and a consistency proof from `old`. What an operator's tool
/// checks for a device event (an install report, a delivery) with the same
/// rule a device applies to a publish ([`crate::client::check_logged_entry`]).
/// Nothing in it is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryEvidence {
    /// the entry's index
    pub index: u64,
    /// the entry bytes, base64
    pub entry: String,
    /// the signed checkpoint (note text, log signature and cosignatures)
    pub checkpoint: String,
    /// inclusion proof of the entry at the checkpoint's size (base64)
    pub inclusion_proof: Vec<String>,
    /// consistency proof from the size asked for as `old`, if any
    #[serde(default)]
    pub consistency: Vec<EvidenceConsistency>,
}

impl EntryEvidence {
    /// Parse: at most [`MAX_EVIDENCE_BYTES`], no unknown field, at most
    /// one consistency proof, and about the entry asked for.
    pub fn parse_for(bytes: &[u8], index: u64) -> Result<EntryEvidence, WireError> {
        let ev: EntryEvidence = parse_bounded("entry evidence", bytes, MAX_EVIDENCE_BYTES)?;
        if ev.consistency.len() > 1 {
            return Err(WireError::TooManyProofs {
                count: ev.consistency.len(),
            });
        }
        check_answers(
            "entry evidence",
            format!("entry {index}"),
            format!("entry {}", ev.index),
        )?;
        Ok(ev)
    }

    /// The entry bytes and the inclusion proof (still untrusted).
    pub fn decode(&self) -> Result<DecodedEvidence, WireError> {
        decode_entry(&self.entry, &self.inclusion_proof)
    }

    /// The consistency proof from `old`, decoded (`None`: none from there).
    pub fn consistency_from(&self, old: u64) -> Result<Option<Vec<Hash>>, WireError> {
        consistency_from(&self.consistency, old)
    }
}

fn consistency_from(
    proofs: &[EvidenceConsistency],
    old: u64,
) -> Result<Option<Vec<Hash>>, WireError> {
    match proofs.iter().find(|c| c.old == old) {
        Some(c) => Ok(Some(decode_proof_hashes("consistency proof", &c.proof)?)),
        None => Ok(None),
    }
}

/// An answer about `got` to a question about `asked` is refused.
fn check_answers(doc: &'static str, asked: String, got: String) -> Result<(), WireError> {
    if asked == got {
        Ok(())
    } else {
        Err(WireError::Mismatch { doc, asked, got })
    }
}

/// A proof answer: bounded, strict, and about what was `asked` (`about`
/// says what a parsed answer is about, in the same words).
fn parse_answer<T: DeserializeOwned>(
    doc: &'static str,
    bytes: &[u8],
    asked: String,
    about: impl Fn(&T) -> String,
) -> Result<T, WireError> {
    let a: T = parse_bounded(doc, bytes, MAX_PROOF_ANSWER_BYTES)?;
    check_answers(doc, asked, about(&a))?;
    Ok(a)
}

fn decode_entry(entry: &str, inclusion_proof: &[String]) -> Result<DecodedEvidence, WireError> {
    let entry = B64
        .decode(entry)
        .map_err(|e| WireError::Entry(e.to_string()))?;
    let inclusion_proof = decode_proof_hashes("inclusion_proof", inclusion_proof)?;
    Ok(DecodedEvidence {
        entry,
        inclusion_proof,
    })
}

/// An [`Evidence`] document decoded: bytes and hashes, still untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvidence {
    /// the entry bytes
    pub entry: Vec<u8>,
    /// the inclusion proof
    pub inclusion_proof: Vec<Hash>,
}

impl Evidence {
    /// Parse an evidence document: at most [`MAX_EVIDENCE_BYTES`], no
    /// unknown field, at most [`MAX_CONSISTENCY_PROOFS`] consistency proofs.
    pub fn from_slice(bytes: &[u8]) -> Result<Evidence, WireError> {
        let ev: Evidence = parse_bounded("evidence", bytes, MAX_EVIDENCE_BYTES)?;
        ev.check_bounds()?;
        Ok(ev)
    }

    /// The list bounds [`Evidence::from_slice`] enforces (for documents
    /// that arrived inside another one, such as a bundle).
    pub fn check_bounds(&self) -> Result<(), WireError> {
        if self.consistency.len() > MAX_CONSISTENCY_PROOFS {
            return Err(WireError::TooManyProofs {
                count: self.consistency.len(),
            });
        }
        Ok(())
    }

    /// Decode the entry and the inclusion proof.
    pub fn decode(&self) -> Result<DecodedEvidence, WireError> {
        self.check_bounds()?;
        decode_entry(&self.entry, &self.inclusion_proof)
    }

    /// The consistency proof from `old`, decoded (`None`: the document has
    /// none from that size).
    pub fn consistency_from(&self, old: u64) -> Result<Option<Vec<Hash>>, WireError> {
        consistency_from(&self.consistency, old)
    }

    /// The sizes it carries consistency proofs from.
    pub fn consistency_sizes(&self) -> Vec<u64> {
        self.consistency.iter().map(|c| c.old).collect()
    }

    /// The size of the checkpoint it carries (read, not verified: for
    /// tools that prepare evidence; devices verify).
    pub fn checkpoint_size(&self) -> Result<u64, WireError> {
        checkpoint_size(self.checkpoint.as_bytes())
    }

    /// Add a consistency proof from `old` (hashes encoded as on the wire).
    pub fn push_consistency(&mut self, old: u64, proof: &[Hash]) {
        self.consistency.push(EvidenceConsistency {
            old,
            proof: encode_hashes(proof),
        });
    }
}

/// The size a signed checkpoint claims (read, not verified).
pub fn checkpoint_size(signed: &[u8]) -> Result<u64, WireError> {
    if signed.len() > MAX_CHECKPOINT_BYTES {
        return Err(WireError::TooLarge {
            doc: "checkpoint",
            len: signed.len(),
            max: MAX_CHECKPOINT_BYTES,
        });
    }
    let note = Note::parse(signed).map_err(|e| WireError::Checkpoint(e.to_string()))?;
    Checkpoint::parse_text(note.text())
        .map(|c| c.size)
        .map_err(|e| WireError::Checkpoint(e.to_string()))
}

/// A checkpoint answer (`GET /log/v1/checkpoint`, `/checkpoint/cosigned`, a
/// stored checkpoint): refused above [`MAX_CHECKPOINT_BYTES`] before any
/// parsing; the caller verifies it with its `LogVerifier`.
pub fn check_checkpoint_len(signed: &[u8]) -> Result<&[u8], WireError> {
    if signed.len() > MAX_CHECKPOINT_BYTES {
        return Err(WireError::TooLarge {
            doc: "checkpoint",
            len: signed.len(),
            max: MAX_CHECKPOINT_BYTES,
        });
    }
    Ok(signed)
}

// ------------------------------------------------------------ cosignatures

/// `POST /log/v1/cosign` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    /// the witness's verifier key (`name+hash+base64`, type cosignature/v1)
    pub key: String,
    /// the signed checkpoint as served by the log (log signature included)
    pub checkpoint: String,
    /// the witness's signature line (`— name base64`)
    pub signature: String,
}

impl CosignRequest {
    /// Parse a request body: at most [`MAX_COSIGN_REQUEST_BYTES`], no
    /// unknown field, a checkpoint of at most [`MAX_CHECKPOINT_BYTES`].
    pub fn from_slice(bytes: &[u8]) -> Result<CosignRequest, WireError> {
        let r: CosignRequest = parse_bounded("cosign request", bytes, MAX_COSIGN_REQUEST_BYTES)?;
        r.check_bounds()?;
        Ok(r)
    }

    /// The checkpoint bound (for a request parsed by a framework).
    pub fn check_bounds(&self) -> Result<(), WireError> {
        check_checkpoint_len(self.checkpoint.as_bytes()).map(|_| ())
    }
}

/// `POST /log/v1/cosign` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignResponse {
    /// size of the cosigned checkpoint
    pub size: u64,
    /// cosignatures it now has
    pub cosignatures: usize,
}

// ------------------------------------------------------------ proofs

/// `GET /log/v1/proof/inclusion?index=&size=` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofAnswer {
    /// leaf index
    pub index: u64,
    /// tree size
    pub size: u64,
    /// base64 hashes, leaf's sibling first
    pub proof: Vec<String>,
}

impl InclusionProofAnswer {
    /// The answer for `index` in the tree of `size`.
    pub fn new(index: u64, size: u64, proof: &[Hash]) -> Self {
        InclusionProofAnswer {
            index,
            size,
            proof: encode_hashes(proof),
        }
    }

    /// Parse the answer to "inclusion of `index` at `size`" and decode its
    /// proof: bounded, strict, and for exactly that question.
    pub fn parse_for(bytes: &[u8], index: u64, size: u64) -> Result<Vec<Hash>, WireError> {
        let asked = format!("index {index} size {size}");
        let a = parse_answer(
            "inclusion proof",
            bytes,
            asked,
            |a: &InclusionProofAnswer| format!("index {} size {}", a.index, a.size),
        )?;
        Ok(decode_proof_hashes("inclusion proof: proof", &a.proof)?)
    }
}

/// `GET /log/v1/proof/consistency?old=&new=` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofAnswer {
    /// from this size
    pub old: u64,
    /// to this size
    pub new: u64,
    /// base64 hashes
    pub proof: Vec<String>,
}

impl ConsistencyProofAnswer {
    /// The answer for `old..new`.
    pub fn new(old: u64, new: u64, proof: &[Hash]) -> Self {
        ConsistencyProofAnswer {
            old,
            new,
            proof: encode_hashes(proof),
        }
    }

    /// Parse the answer to "consistency from `old` to `new`" and decode
    /// its proof: bounded, strict, and for exactly that question.
    pub fn parse_for(bytes: &[u8], old: u64, new: u64) -> Result<Vec<Hash>, WireError> {
        let asked = format!("{old}..{new}");
        let a = parse_answer(
            "consistency proof",
            bytes,
            asked,
            |a: &ConsistencyProofAnswer| format!("{}..{}", a.old, a.new),
        )?;
        Ok(decode_proof_hashes("consistency proof: proof", &a.proof)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash {
        [b; 32]
    }

    #[test]
    fn proof_answers_round_trip_and_must_answer_the_question() {
        let bytes = serde_json::to_vec(&ConsistencyProofAnswer::new(3, 9, &[h(1), h(2)])).unwrap();
        assert_eq!(
            ConsistencyProofAnswer::parse_for(&bytes, 3, 9).unwrap(),
            vec![h(1), h(2)]
        );
        let e = ConsistencyProofAnswer::parse_for(&bytes, 2, 9).unwrap_err();
        assert_eq!(
            e.to_string(),
            "consistency proof: answered for 3..9, asked 2..9"
        );
        let bytes = serde_json::to_vec(&InclusionProofAnswer::new(1, 4, &[h(3)])).unwrap();
        assert_eq!(
            InclusionProofAnswer::parse_for(&bytes, 1, 4).unwrap(),
            vec![h(3)]
        );
        assert!(matches!(
            InclusionProofAnswer::parse_for(&bytes, 1, 5),
            Err(WireError::Mismatch { .. })
        ));
        // unknown fields, oversize answers and bad hashes are refused
        let extra = br#"{"old":1,"new":2,"proof":[],"root":"x"}"#;
        assert!(matches!(
            ConsistencyProofAnswer::parse_for(extra, 1, 2),
            Err(WireError::Json { .. })
        ));
        let big = vec![b' '; MAX_PROOF_ANSWER_BYTES + 1];
        assert!(matches!(
            ConsistencyProofAnswer::parse_for(&big, 1, 2),
            Err(WireError::TooLarge { .. })
        ));
        let bad = br#"{"old":1,"new":2,"proof":["AAAA"]}"#;
        assert!(matches!(
            ConsistencyProofAnswer::parse_for(bad, 1, 2),
            Err(WireError::Proof(ProofDecodeError::WrongLength { .. }))
        ));
    }

    fn evidence() -> Evidence {
        Evidence {
            repo: "main".into(),
            target: "fw.img".into(),
            sha256: "aa".repeat(32),
            index: 0,
            entry: B64.encode(b"entry"),
            checkpoint: "x".into(),
            inclusion_proof: vec![],
            consistency: vec![],
        }
    }

    #[test]
    fn evidence_is_bounded_and_strict() {
        let mut ev = evidence();
        ev.push_consistency(2, &[h(1)]);
        let bytes = serde_json::to_vec(&ev).unwrap();
        let back = Evidence::from_slice(&bytes).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.consistency_from(2).unwrap(), Some(vec![h(1)]));
        assert_eq!(back.consistency_from(3).unwrap(), None);
        assert_eq!(back.decode().unwrap().entry, b"entry");
        // consistency may be absent (older bundles)
        let mut v = serde_json::to_value(evidence()).unwrap();
        v.as_object_mut().unwrap().remove("consistency");
        Evidence::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        // unknown field
        v["extra"] = 1.into();
        assert!(Evidence::from_slice(&serde_json::to_vec(&v).unwrap()).is_err());
        // too many proofs
        let mut many = evidence();
        for i in 0..=MAX_CONSISTENCY_PROOFS as u64 {
            many.push_consistency(i, &[]);
        }
        let e = Evidence::from_slice(&serde_json::to_vec(&many).unwrap()).unwrap_err();
        assert_eq!(e, WireError::TooManyProofs { count: 65 });
        // too large
        let mut huge = evidence();
        huge.entry = "A".repeat(MAX_EVIDENCE_BYTES);
        assert!(matches!(
            Evidence::from_slice(&serde_json::to_vec(&huge).unwrap()),
            Err(WireError::TooLarge { .. })
        ));
        // entry not base64
        let mut bad = evidence();
        bad.entry = "!".into();
        assert!(matches!(bad.decode(), Err(WireError::Entry(_))));
        assert!(matches!(
            evidence().checkpoint_size(),
            Err(WireError::Checkpoint(_))
        ));
    }

    #[test]
    fn cosign_requests_are_bounded_and_strict() {
        let r = CosignRequest {
            key: "k".into(),
            checkpoint: "c".into(),
            signature: "s".into(),
        };
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(CosignRequest::from_slice(&bytes).unwrap(), r);
        let big = CosignRequest {
            checkpoint: "c".repeat(MAX_CHECKPOINT_BYTES + 1),
            ..r.clone()
        };
        assert!(matches!(
            CosignRequest::from_slice(&serde_json::to_vec(&big).unwrap()),
            Err(WireError::TooLarge {
                doc: "checkpoint",
                ..
            })
        ));
        assert!(CosignRequest::from_slice(br#"{"key":"k","checkpoint":"c"}"#).is_err());
    }

    #[test]
    fn entry_evidence_is_about_the_entry_asked_for_and_bounded() {
        let ev = EntryEvidence {
            index: 4,
            entry: B64.encode(b"entry"),
            checkpoint: "c".into(),
            inclusion_proof: encode_hashes(&[[3u8; 32]]),
            consistency: Vec::new(),
        };
        let bytes = serde_json::to_vec(&ev).unwrap();
        let parsed = EntryEvidence::parse_for(&bytes, 4).unwrap();
        let decoded = parsed.decode().unwrap();
        assert_eq!(decoded.entry, b"entry");
        assert_eq!(decoded.inclusion_proof, vec![[3u8; 32]]);
        // an answer about another entry is refused
        assert!(matches!(
            EntryEvidence::parse_for(&bytes, 5),
            Err(WireError::Mismatch { .. })
        ));
        // unknown fields, more than one consistency proof, oversize
        let extra = br#"{"index":4,"entry":"","checkpoint":"","inclusion_proof":[],"x":1}"#;
        assert!(EntryEvidence::parse_for(extra, 4).is_err());
        let mut two = ev.clone();
        for old in [1, 2] {
            two.consistency.push(EvidenceConsistency {
                old,
                proof: Vec::new(),
            });
        }
        let bytes = serde_json::to_vec(&two).unwrap();
        assert!(matches!(
            EntryEvidence::parse_for(&bytes, 4),
            Err(WireError::TooManyProofs { count: 2 })
        ));
        let huge = vec![b' '; MAX_EVIDENCE_BYTES + 1];
        assert!(EntryEvidence::parse_for(&huge, 4).is_err());
        // an entry that is not base64 does not decode
        let mut bad = ev;
        bad.entry = "%%%".into();
        assert!(matches!(bad.decode(), Err(WireError::Entry(_))));
    }
}
