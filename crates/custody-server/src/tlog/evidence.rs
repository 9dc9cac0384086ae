//! Reading the log back: the evidence a device needs for one target
//! (entry, checkpoint, proofs) and the witnesses' cosignatures.

use custody_log::cosign::{accept_cosignature, CosignError, CosignatureSet};
use custody_log::{consistency_proof, inclusion_proof, root_at};
use serde::Deserialize;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_log::VerifierKey;

use super::{write_atomic, CosignRequest, CosignResponse, Evidence, LogError, ServerLog};
use custody_log::wire::EntryEvidence;

/// What [`ServerLog::prove_entry`] gives both evidence answers.
struct ProvedEntry {
    entry: String,
    checkpoint: String,
    inclusion_proof: Vec<String>,
    consistency: Option<(u64, Vec<custody_log::Hash>)>,
}
use crate::error::ApiError;

impl ServerLog {
    /// The checkpoint to prove an entry against: the newest cosigned one
    /// whose tree holds `index` and is at least `min_size` (so a client that
    /// stored a newer uncosigned checkpoint is not handed an older one), else
    /// the latest signed checkpoint (with any cosignatures it has). Returns
    /// the note bytes and its size; `committed` is the state proofs are
    /// computed from.
    fn checkpoint_covering(
        &self,
        committed: &custody_log::fs::Committed,
        index: u64,
        min_size: u64,
    ) -> (Vec<u8>, u64) {
        if let Ok(map) = self.cosigned.lock() {
            if let Some(c) = map.values().rev().find(|c| {
                !c.is_empty()
                    && c.size() > index
                    && c.size() >= min_size
                    && c.size() <= committed.size
            }) {
                return (c.render(), c.size());
            }
            if let Some(c) = map.get(&committed.size) {
                if !c.is_empty() {
                    return (c.render(), committed.size);
                }
            }
        }
        (committed.checkpoint.clone(), committed.size)
    }

    /// The index of the `target_publish` entry of `(repo, name, sha256)`,
    /// after indexing every entry committed since the last lookup. Blocking
    /// file IO: call from a blocking task.
    pub fn find_publish(
        &self,
        repo: &str,
        name: &str,
        sha256: &str,
    ) -> Result<Option<u64>, LogError> {
        let committed = self.writer.committed();
        let mut idx = self
            .publishes
            .lock()
            .map_err(|_| LogError::Encode("publish index lock poisoned".into()))?;
        idx.catch_up(self.writer.tiles(), committed.size)?;
        Ok(idx.get(repo, name, sha256))
    }

    /// Everything a client needs to check one target against the log
    /// (`GET /log/v1/evidence`), or `None` if no `target_publish` entry
    /// names it. Blocking: call from a blocking task.
    pub fn evidence(&self, q: &EvidenceQuery) -> Result<Option<Evidence>, ApiError> {
        let Some(index) = self
            .find_publish(&q.repo, &q.target, &q.sha256)
            .map_err(|e| ApiError::internal(e.to_string()))?
        else {
            return Ok(None);
        };
        let proved = self.prove_entry(index, q.old.unwrap_or(0))?;
        let mut ev = Evidence {
            repo: q.repo.clone(),
            target: q.target.clone(),
            sha256: q.sha256.clone(),
            index,
            entry: proved.entry,
            checkpoint: proved.checkpoint,
            inclusion_proof: proved.inclusion_proof,
            consistency: Vec::new(),
        };
        if let Some((old, proof)) = proved.consistency {
            ev.push_consistency(old, &proof);
        }
        Ok(Some(ev))
    }

    /// Entry `index` with its inclusion proof at a signed checkpoint (the
    /// newest cosigned one covering it when there is one) and a
    /// consistency proof from `old` (`GET /log/v1/entry`). `None` when the
    /// log has no entry `index` yet. Blocking: call from a blocking task.
    pub fn entry_evidence(&self, index: u64, old: u64) -> Result<Option<EntryEvidence>, ApiError> {
        if index >= self.writer.committed().size {
            return Ok(None);
        }
        let proved = self.prove_entry(index, old)?;
        let mut consistency = Vec::new();
        if let Some((old, proof)) = proved.consistency {
            consistency.push(custody_log::wire::EvidenceConsistency {
                old,
                proof: proof.iter().map(|h| B64.encode(h)).collect(),
            });
        }
        Ok(Some(EntryEvidence {
            index,
            entry: proved.entry,
            checkpoint: proved.checkpoint,
            inclusion_proof: proved.inclusion_proof,
            consistency,
        }))
    }

    /// The parts of every evidence answer for entry `index` (below the
    /// committed size): the entry, the checkpoint covering it, the
    /// inclusion proof there, and the consistency proof from `old` when
    /// `0 < old < size`. A client that stored a larger tree than this log
    /// has gets the checkpoint without a proof: it detects the rollback
    /// itself (refusing to answer would hide the rollback as an outage).
    fn prove_entry(&self, index: u64, old: u64) -> Result<ProvedEntry, ApiError> {
        let internal = |e: &dyn std::fmt::Display| ApiError::internal(e.to_string());
        let committed = self.writer.committed();
        let (checkpoint, size) = self.checkpoint_covering(&committed, index, old);
        let tiles = self.writer.tiles();
        let reader = tiles.at(committed.size);
        let entry = tiles
            .entry(index, size)
            .map_err(|e| internal(&e))?
            .ok_or_else(|| {
                ApiError::internal(format!("entry {index} is missing below size {size}"))
            })?;
        let inclusion = inclusion_proof(&reader, index, size).map_err(|e| internal(&e))?;
        let consistency = if old > 0 && old < size {
            let proof = consistency_proof(&reader, old, size).map_err(|e| internal(&e))?;
            Some((old, proof))
        } else {
            None
        };
        Ok(ProvedEntry {
            entry: B64.encode(&entry),
            checkpoint: String::from_utf8_lossy(&checkpoint).into_owned(),
            inclusion_proof: inclusion.iter().map(|h| B64.encode(h)).collect(),
            consistency,
        })
    }

    pub(super) fn load_cosigned(&self) {
        let path = self.dir.join("cosigned");
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let Ok(v) = self.verifier() else { return };
        let Ok(vc) = v.verify(&bytes) else {
            tracing::warn!(path = %path.display(), "stored cosigned checkpoint does not verify; ignored");
            return;
        };
        let Some(log_sig) = vc
            .note
            .signatures()
            .iter()
            .find(|s| s.key_id == self.verifier.key_id() && s.name == self.verifier.name())
            .cloned()
        else {
            return;
        };
        // Stored cosignatures are re-verified against their stored keys.
        let keys: Vec<VerifierKey> = std::fs::read_to_string(self.dir.join("cosigned.keys"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| VerifierKey::parse(l.trim()).ok())
            .collect();
        let mut set = CosignatureSet::new(vc.checkpoint.size, vc.note.text().to_owned(), log_sig);
        for s in vc.note.signatures() {
            if let Some(k) = keys
                .iter()
                .find(|k| k.name() == s.name && k.key_id() == s.key_id)
            {
                set.restore(k, s);
            }
        }
        if let Ok(mut map) = self.cosigned.lock() {
            map.insert(vc.checkpoint.size, set);
        }
    }

    /// Accept a witness cosignature for a checkpoint of this log
    /// (custody-log's [`accept_cosignature`] and [`CosignatureSet::add`]
    /// decide; this keeps the newest sets and persists the newest one).
    pub fn add_cosignature(&self, req: &CosignRequest) -> Result<CosignResponse, ApiError> {
        let committed = self.writer.committed();
        let tiles = self.writer.tiles();
        let accepted = accept_cosignature(
            &self.verifier()?,
            self.witnesses.as_deref(),
            req,
            committed.size,
            |size| root_at(&tiles.at(committed.size), size),
        )
        .map_err(cosign_error)?;
        let size = accepted.checkpoint.checkpoint.size;
        let (rendered, count, keys, newest) = {
            let mut map = self
                .cosigned
                .lock()
                .map_err(|_| ApiError::internal("cosignature state poisoned"))?;
            let set = map
                .entry(size)
                .or_insert_with(|| CosignatureSet::for_checkpoint(&accepted));
            let count = set.add(&accepted).map_err(cosign_error)?;
            let rendered = set.render();
            let keys: String = set
                .cosignatures()
                .iter()
                .map(|(k, _)| format!("{}\n", k.to_vkey()))
                .collect();
            while map.len() > 16 {
                let Some(first) = map.keys().next().copied() else {
                    break;
                };
                map.remove(&first);
            }
            let newest = map.keys().next_back().copied();
            (rendered, count, keys, newest)
        };
        // Persist the newest cosigned checkpoint (and its witness keys).
        // Public data: 0644, what the default umask gave the old
        // open-with-default-mode write.
        if newest == Some(size) {
            write_atomic(&self.dir.join("cosigned.keys"), keys.as_bytes(), 0o644)
                .and_then(|()| write_atomic(&self.dir.join("cosigned"), &rendered, 0o644))
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        Ok(CosignResponse {
            size,
            cosignatures: count,
        })
    }
}

/// The HTTP status of a refused cosignature.
fn cosign_error(e: CosignError) -> ApiError {
    if e.is_forbidden() {
        ApiError::forbidden(e.to_string())
    } else if e.is_conflict() {
        ApiError::conflict(e.to_string())
    } else if e.is_internal() {
        ApiError::internal(e.to_string())
    } else {
        ApiError::bad_request(e.to_string())
    }
}

/// `GET /log/v1/evidence` query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    /// hosted repository name
    pub repo: String,
    /// target path
    pub target: String,
    /// the target's sha256 (lowercase hex)
    pub sha256: String,
    /// size of the checkpoint the client stored (0 or absent: none)
    pub old: Option<u64>,
}

impl EvidenceQuery {
    pub(super) fn validate(&self) -> Result<(), ApiError> {
        if self.repo.is_empty() || self.repo.len() > 256 {
            return Err(ApiError::bad_request(format!(
                "evidence: repo must be 1..=256 bytes, got {}",
                self.repo.len()
            )));
        }
        if self.target.is_empty() || self.target.len() > 4096 {
            return Err(ApiError::bad_request(format!(
                "evidence: target must be 1..=4096 bytes, got {}",
                self.target.len()
            )));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ApiError::bad_request(format!(
                "evidence: sha256 must be 64 lowercase hex digits, got {:?}",
                self.sha256.chars().take(80).collect::<String>()
            )));
        }
        Ok(())
    }
}
