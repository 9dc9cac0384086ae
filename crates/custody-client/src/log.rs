//! The transparency-log check before a target is installed or written
//! (issue #7, part 4), for the device agent and for `custody client`: one
//! implementation of fetching the evidence, checking it and keeping the
//! last accepted checkpoint.
//!
//! The trust decision about the log itself is custody-log's sans-IO
//! [`check_logged_entry`] (log signature, k-of-n witness cosignatures,
//! consistency with the stored checkpoint: rollback / fork, inclusion of
//! the entry). This module adds the target it expects: the included entry
//! must be the `target_publish` entry of exactly the target about to be
//! installed (repository, name, length and every hash; the rule is
//! custody-log's [`custody_log::entry::check_publish_entry`], shared with
//! witnesses and auditors), so a valid entry for another target never
//! counts.
//!
//! Evidence comes from the server's `GET /log/v1/evidence?repo=&target=&sha256=&old=`
//! ([`fetch_evidence`]) or from an offline bundle (same JSON document,
//! [`Evidence`], defined with its bounded strict parser in custody-log's
//! `wire`). The rule for offline evidence that is too old or proves
//! consistency from other sizes is custody-log's
//! [`custody_log::client::check_offline_freshness`].
//!
//! ```no_run
//! use custody_client::log::{fetch_evidence, check_target, CheckpointStore, ExpectedPublish, trust_from_keys};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let trust = trust_from_keys(None, "custody.local/log+1234abcd+AbC...", &[], 0)?;
//! let store = CheckpointStore::new("/var/lib/app/log-checkpoint");
//! let stored = store.load(&trust)?;
//! let base = url::Url::parse("https://updates.example/log/v1/")?;
//! let expect = ExpectedPublish { repo: "main".into(), name: "fw.img".into(), length: 10,
//!     hashes: [("sha256".to_owned(), "00".repeat(32))].into() };
//! let ev = fetch_evidence(&custody_client::AnyTransport::default(), &base, &expect,
//!     stored.as_ref().map_or(0, |c| c.size))?;
//! let accepted = check_target(&trust, stored.as_ref(), &ev, &expect)?;
//! store.save(&accepted)?; // durably, BEFORE installing
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use custody_log::client::{
    check_logged_entry, check_offline_freshness, LogEvidence, OfflineRefusal,
};
pub use custody_log::client::{Accepted, LogAttack, LogTrust};
use custody_log::entry::check_publish_entry;
use custody_log::wire::{ConsistencyProofAnswer, DecodedEvidence, EntryEvidence, WireError};
use custody_log::{Checkpoint, VerifierKey};
use url::Url;

use crate::store::{read_bounded, write_atomic, StoreError};
use crate::transport::{FetchError, Transport};

/// The evidence document and its bounds are custody-log's (shared with
/// the server that writes it).
pub use custody_log::wire::{
    Evidence, EvidenceConsistency as ConsistencyDoc, MAX_CHECKPOINT_BYTES, MAX_CONSISTENCY_PROOFS,
    MAX_EVIDENCE_BYTES,
};

/// The target the evidence must be about (the rule lives in custody-log,
/// shared with witnesses and auditors).
pub use custody_log::entry::ExpectedPublish;

/// Why the log check did not accept a target.
#[derive(Debug, thiserror::Error)]
pub enum LogCheckError {
    /// The evidence could not be fetched (network, HTTP status other than
    /// 404): transient, retry later; the target is not installed meanwhile.
    #[error("transparency log: fetching evidence: {0}")]
    Fetch(FetchError),
    /// The log has no `target_publish` entry for the target: it was
    /// published outside the log.
    #[error("transparency log: target {target:?} (repo {repo:?}, sha256 {sha256}) is not in the log: published outside the log ({detail})")]
    NotLogged {
        /// repository
        repo: String,
        /// target
        target: String,
        /// sha256
        sha256: String,
        /// where this was learnt
        detail: String,
    },
    /// The target has no sha256, so its publish entry cannot be looked up.
    #[error(
        "transparency log: target {target:?} has no sha256 hash to look its publish entry up by"
    )]
    NoSha256 {
        /// target
        target: String,
    },
    /// The evidence document is not well formed.
    #[error("transparency log: evidence from {source_name}: {reason}")]
    Malformed {
        /// URL or file
        source_name: String,
        /// the rule broken
        reason: String,
    },
    /// The included entry is not the publish entry of this target.
    #[error("transparency log attack: entry {index} is not the target_publish entry of {target:?}: {reason}")]
    WrongEntry {
        /// entry index
        index: u64,
        /// the target expected
        target: String,
        /// what differs
        reason: String,
    },
    /// custody-log refused the checkpoint or proofs.
    #[error("transparency log: {0}")]
    Attack(LogAttack),
    /// Offline evidence proves consistency from other sizes than the one
    /// stored here (not an attack: the bundle was made for other devices).
    #[error("transparency log: the evidence has no consistency proof from the stored checkpoint size {stored} to size {size} (it has proofs from [{available}]): recreate it with `--log-since {stored}`")]
    NoConsistencyProof {
        /// stored size
        stored: u64,
        /// evidence checkpoint size
        size: u64,
        /// sizes it has proofs from
        available: String,
    },
    /// Offline evidence older than the stored checkpoint (not an attack: a
    /// bundle made before the device last checked the log).
    #[error("transparency log: the evidence checkpoint (size {size}) is older than the stored checkpoint (size {stored}): recreate it from the current log")]
    Stale {
        /// stored size
        stored: u64,
        /// evidence checkpoint size
        size: u64,
    },
    /// The stored checkpoint or pin is unusable.
    #[error("transparency log: {0}")]
    Local(String),
    /// Storing the accepted checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LogCheckError {
    /// True if the refusal proves misbehaviour to report as an attack: a
    /// fork, a rollback, an inconsistent or unsigned checkpoint, a missing
    /// inclusion, an entry for something else, a target not in the log.
    ///
    /// Too few witness cosignatures is refused but not reported: it is
    /// what a client sees between a publish and the witnesses' next round,
    /// and proves nothing on its own (the target stays refused until a
    /// cosigned checkpoint covers it). Fetch failures, malformed answers,
    /// and offline evidence prepared for other devices are not attacks
    /// either; none of them lets a target through.
    pub fn is_attack(&self) -> bool {
        match self {
            LogCheckError::NotLogged { .. } | LogCheckError::WrongEntry { .. } => true,
            LogCheckError::Attack(a) => !matches!(a, LogAttack::TooFewCosignatures { .. }),
            _ => false,
        }
    }

    /// A short stable name of the refusal (`fork`, `rollback`, ...), for
    /// reports.
    pub fn kind(&self) -> &'static str {
        match self {
            LogCheckError::Fetch(_) => "log_unreachable",
            LogCheckError::NotLogged { .. } => "not_in_log",
            LogCheckError::NoSha256 { .. } => "not_in_log",
            LogCheckError::Malformed { .. } => "log_malformed",
            LogCheckError::WrongEntry { .. } => "wrong_log_entry",
            LogCheckError::Attack(a) => match a {
                LogAttack::BadSignature(_) => "log_bad_signature",
                LogAttack::TooFewCosignatures { .. } => "log_too_few_cosignatures",
                LogAttack::Rollback { .. } => "log_rollback",
                LogAttack::Fork { .. } => "log_fork",
                LogAttack::Inconsistent { .. } => "log_inconsistent",
                LogAttack::NotIncluded { .. } => "log_not_included",
            },
            LogCheckError::NoConsistencyProof { .. } => "log_no_consistency_proof",
            LogCheckError::Stale { .. } => "log_evidence_stale",
            LogCheckError::Local(_) | LogCheckError::Store(_) => "log_local_state",
        }
    }
}

/// Build the trust from pinned keys: `log_key` is the log's note verifier
/// key; `origin` defaults to its name (custody's log names its key after
/// its origin); `k` of `witnesses` (cosignature/v1 keys) must cosign.
pub fn trust_from_keys(
    origin: Option<&str>,
    log_key: &str,
    witnesses: &[String],
    k: usize,
) -> Result<LogTrust, String> {
    let key = VerifierKey::parse(log_key.trim()).map_err(|e| format!("log key: {e}"))?;
    let mut ws = Vec::with_capacity(witnesses.len());
    for (i, w) in witnesses.iter().enumerate() {
        ws.push(VerifierKey::parse(w.trim()).map_err(|e| format!("witness key {i}: {e}"))?);
    }
    if k > ws.len() {
        return Err(format!(
            "witness threshold {k} is more than the {} witness keys given",
            ws.len()
        ));
    }
    let origin = origin.unwrap_or(key.name()).to_owned();
    LogTrust::new(&origin, key, ws, k).map_err(|e| format!("log trust: {e}"))
}

/// Fetch the evidence for `expect` from the log at `log_base`
/// (`https://server/log/v1/`), with a consistency proof from `old` (the
/// stored checkpoint's size, 0 if none).
pub fn fetch_evidence<T: Transport + ?Sized>(
    transport: &T,
    log_base: &Url,
    expect: &ExpectedPublish,
    old: u64,
) -> Result<Evidence, LogCheckError> {
    let sha256 = expect.sha256().ok_or_else(|| LogCheckError::NoSha256 {
        target: expect.name.clone(),
    })?;
    let mut url = log_base
        .join("evidence")
        .map_err(|e| LogCheckError::Local(format!("log URL {log_base}: {e}")))?;
    url.query_pairs_mut()
        .append_pair("repo", &expect.repo)
        .append_pair("target", &expect.name)
        .append_pair("sha256", &sha256)
        .append_pair("old", &old.to_string());
    let bytes = match transport
        .fetch(&url, MAX_EVIDENCE_BYTES as u64)
        .and_then(|f| f.read_all())
    {
        Ok(b) => b,
        Err(FetchError::NotFound { url, status }) => {
            return Err(LogCheckError::NotLogged {
                repo: expect.repo.clone(),
                target: expect.name.clone(),
                sha256,
                detail: format!("{url} answered HTTP {status}"),
            })
        }
        Err(e) => return Err(LogCheckError::Fetch(e)),
    };
    Evidence::from_slice(&bytes).map_err(|e| LogCheckError::Malformed {
        source_name: url.to_string(),
        reason: e.to_string(),
    })
}

/// The size of the checkpoint an evidence document carries (read, not
/// verified: for tools that prepare evidence; devices verify).
pub fn evidence_size(ev: &Evidence) -> Result<u64, LogCheckError> {
    ev.checkpoint_size().map_err(|e| LogCheckError::Malformed {
        source_name: format!("evidence for {:?}", ev.target),
        reason: e.to_string(),
    })
}

/// Evidence for an offline bundle: [`fetch_evidence`], plus a consistency
/// proof to the same checkpoint from every size in `since` (the sizes of
/// the checkpoints the receiving devices stored; `custody agent status`
/// shows it). A device whose stored size is not listed refuses the bundle
/// (without reporting an attack); a device with no stored checkpoint needs
/// none.
pub fn fetch_offline_evidence<T: Transport + ?Sized>(
    transport: &T,
    log_base: &Url,
    expect: &ExpectedPublish,
    since: &[u64],
) -> Result<Evidence, LogCheckError> {
    let max = since.iter().copied().max().unwrap_or(0);
    let mut ev = fetch_evidence(transport, log_base, expect, max)?;
    let size = evidence_size(&ev)?;
    for &old in since {
        if old == 0 || old == size || ev.consistency.iter().any(|c| c.old == old) {
            continue;
        }
        if old > size {
            return Err(LogCheckError::Local(format!(
                "the log's checkpoint for {:?} has size {size}, below the stored size {old} given",
                expect.name
            )));
        }
        let mut url = log_base
            .join("proof/consistency")
            .map_err(|e| LogCheckError::Local(format!("log URL {log_base}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("old", &old.to_string())
            .append_pair("new", &size.to_string());
        let bytes = transport
            .fetch(&url, custody_log::wire::MAX_PROOF_ANSWER_BYTES as u64)
            .and_then(|f| f.read_all())
            .map_err(LogCheckError::Fetch)?;
        let proof = ConsistencyProofAnswer::parse_for(&bytes, old, size).map_err(|e| {
            LogCheckError::Malformed {
                source_name: url.to_string(),
                reason: e.to_string(),
            }
        })?;
        ev.push_consistency(old, &proof);
    }
    Ok(ev)
}

/// Check `ev` for `expect` against `stored` (the last accepted checkpoint,
/// if any). On success the caller stores [`Accepted::checkpoint`] durably
/// ([`CheckpointStore::save`]) BEFORE installing.
pub fn check_target(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    ev: &Evidence,
    expect: &ExpectedPublish,
) -> Result<Accepted, LogCheckError> {
    check_inner(trust, stored, ev, expect, false)
}

/// [`check_target`] for evidence carried offline (a bundle): evidence older
/// than the stored checkpoint, or without a consistency proof from the
/// stored size, is refused as [`LogCheckError::Stale`] /
/// [`LogCheckError::NoConsistencyProof`] (not attacks: the bundle may have
/// been made before this device last saw the log, or for other devices);
/// everything else is checked exactly as online.
pub fn check_offline_target(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    ev: &Evidence,
    expect: &ExpectedPublish,
) -> Result<Accepted, LogCheckError> {
    check_inner(trust, stored, ev, expect, true)
}

fn check_inner(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    ev: &Evidence,
    expect: &ExpectedPublish,
    offline: bool,
) -> Result<Accepted, LogCheckError> {
    let malformed = |e: WireError| LogCheckError::Malformed {
        source_name: format!("evidence for {:?}", expect.name),
        reason: e.to_string(),
    };
    let decoded = ev.decode().map_err(malformed)?;
    if offline {
        check_offline_freshness(
            trust,
            stored,
            ev.checkpoint.as_bytes(),
            &ev.consistency_sizes(),
        )
        .map_err(|r| match r {
            OfflineRefusal::Stale { stored, size } => LogCheckError::Stale { stored, size },
            OfflineRefusal::NoConsistencyProof {
                stored,
                size,
                available,
            } => LogCheckError::NoConsistencyProof {
                stored,
                size,
                available: available
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            OfflineRefusal::BadSignature(e) => LogCheckError::Attack(LogAttack::BadSignature(e)),
        })?;
    }
    let accepted =
        check_proved(trust, stored, ev, &decoded).map_err(|e| e.or_malformed(malformed))?;
    check_entry_is(&decoded.entry, ev.index, expect)?;
    Ok(accepted)
}

/// What [`check_proved`] reads of an evidence document ([`Evidence`] for a
/// publish, [`EntryEvidence`] for an entry by index).
trait ProvedDoc {
    fn index(&self) -> u64;
    fn checkpoint(&self) -> &str;
    fn consistency_from(&self, old: u64) -> Result<Option<Vec<custody_log::Hash>>, WireError>;
}

impl ProvedDoc for Evidence {
    fn index(&self) -> u64 {
        self.index
    }
    fn checkpoint(&self) -> &str {
        &self.checkpoint
    }
    fn consistency_from(&self, old: u64) -> Result<Option<Vec<custody_log::Hash>>, WireError> {
        Evidence::consistency_from(self, old)
    }
}

impl ProvedDoc for EntryEvidence {
    fn index(&self) -> u64 {
        self.index
    }
    fn checkpoint(&self) -> &str {
        &self.checkpoint
    }
    fn consistency_from(&self, old: u64) -> Result<Option<Vec<custody_log::Hash>>, WireError> {
        EntryEvidence::consistency_from(self, old)
    }
}

/// Why [`check_proved`] refused: a document that does not decode, or the
/// log check.
enum ProvedError {
    Wire(WireError),
    Check(LogCheckError),
}

impl ProvedError {
    fn or_malformed(self, malformed: impl FnOnce(WireError) -> LogCheckError) -> LogCheckError {
        match self {
            ProvedError::Wire(e) => malformed(e),
            ProvedError::Check(e) => e,
        }
    }
}

/// [`check_logged_entry`] over a decoded evidence document, with the
/// consistency proof from the stored size (an honest log sends exactly
/// that one; without it a larger checkpoint fails as inconsistent).
fn check_proved(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    doc: &impl ProvedDoc,
    decoded: &DecodedEvidence,
) -> Result<Accepted, ProvedError> {
    let consistency = match stored {
        Some(s) => (doc.consistency_from(s.size))
            .map_err(ProvedError::Wire)?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    check_logged_entry(
        trust,
        stored,
        &LogEvidence {
            entry: &decoded.entry,
            index: doc.index(),
            inclusion_proof: &decoded.inclusion_proof,
            checkpoint: doc.checkpoint().as_bytes(),
            consistency_proof: &consistency,
        },
    )
    .map_err(|a| ProvedError::Check(LogCheckError::Attack(a)))
}

/// Check `ev` (an entry by index, `GET /log/v1/entry`) against `trust` and
/// `stored` with the rule a device applies to a publish (log signature,
/// witness quorum, consistency, inclusion: [`check_logged_entry`]). Returns
/// the verified checkpoint and the entry bytes; what the entry must say is
/// the caller's to check.
pub fn check_entry_evidence(
    trust: &LogTrust,
    stored: Option<&Checkpoint>,
    ev: &EntryEvidence,
) -> Result<(Accepted, Vec<u8>), LogCheckError> {
    let malformed = |e: WireError| LogCheckError::Malformed {
        source_name: format!("evidence for log entry {}", ev.index),
        reason: e.to_string(),
    };
    let decoded = ev.decode().map_err(malformed)?;
    let accepted =
        check_proved(trust, stored, ev, &decoded).map_err(|e| e.or_malformed(malformed))?;
    Ok((accepted, decoded.entry))
}

/// The entry must be a `target_publish` of exactly this repository, name,
/// length and hashes (every algorithm either side names, equal).
pub fn check_entry_is(
    entry: &[u8],
    index: u64,
    expect: &ExpectedPublish,
) -> Result<(), LogCheckError> {
    check_publish_entry(entry, expect).map_err(|e| LogCheckError::WrongEntry {
        index,
        target: expect.name.clone(),
        reason: e.to_string(),
    })
}

/// The last accepted checkpoint, kept in one file (signed note as
/// received, replaced atomically and durably).
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    /// The store at `path` (a file; its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored checkpoint, re-verified with the pinned log key (a file
    /// that does not verify is a local error, never silently ignored: that
    /// would reset the rollback protection).
    pub fn load(&self, trust: &LogTrust) -> Result<Option<Checkpoint>, LogCheckError> {
        let Some(bytes) = read_bounded(&self.path, MAX_CHECKPOINT_BYTES as u64)? else {
            return Ok(None);
        };
        let v = trust.log_key_verifier().map_err(|e| {
            LogCheckError::Local(format!(
                "stored checkpoint {}: the pinned log origin/key is unusable: {e}",
                self.path.display()
            ))
        })?;
        let vc = v.verify(&bytes).map_err(|e| {
            LogCheckError::Local(format!(
                "stored checkpoint {}: does not verify with the pinned log key: {e}",
                self.path.display()
            ))
        })?;
        Ok(Some(vc.checkpoint))
    }

    /// Store the accepted checkpoint (atomic, fsynced). A no-op when it is
    /// the stored one.
    pub fn save(&self, accepted: &Accepted) -> Result<(), LogCheckError> {
        if accepted.update == custody_log::Update::Unchanged && self.path.exists() {
            return Ok(());
        }
        write_atomic(&self.path, &accepted.checkpoint.note.to_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use custody_log::entry::{EntryBody, LogEntry};
    use custody_log::{
        consistency_proof, inclusion_proof, Appender, Hash, MemoryStore, NoteSigner,
    };
    use proptest::prelude::*;

    const ORIGIN: &str = "log.test/log";

    fn publish(repo: &str, name: &str, len: u64, sha: &str) -> Vec<u8> {
        LogEntry::new(
            1,
            EntryBody::TargetPublish {
                repo: repo.into(),
                name: name.into(),
                hashes: [("sha256".to_owned(), sha.to_owned())].into(),
                length: len,
                release_counter: None,
                signing_keyids: vec![],
                provenance_sha256: None,
                targets_version: None,
            },
        )
        .to_bytes()
        .unwrap()
    }

    fn expect(sha: &str) -> ExpectedPublish {
        ExpectedPublish {
            repo: "main".into(),
            name: "fw.img".into(),
            length: 10,
            hashes: [("sha256".to_owned(), sha.to_owned())].into(),
        }
    }

    /// A log of `n` entries whose last is the publish of `fw.img`; the
    /// evidence for it at size `n`, with proofs from `since`.
    struct Log {
        key: NoteSigner,
        log: Appender<MemoryStore>,
    }

    impl Log {
        fn new() -> Self {
            Log {
                key: NoteSigner::from_seed(ORIGIN, [7; 32]).unwrap(),
                log: Appender::open(MemoryStore::new()).unwrap(),
            }
        }
        fn push(&mut self, e: &[u8]) -> u64 {
            self.log.append_entries(&[e]).unwrap().new_size - 1
        }
        fn trust(&self) -> LogTrust {
            trust_from_keys(None, &self.key.verifier_key().to_vkey(), &[], 0).unwrap()
        }
        fn checkpoint(&self) -> Checkpoint {
            self.log.checkpoint(ORIGIN).unwrap()
        }
        fn evidence(&self, index: u64, entry: &[u8], since: &[u64]) -> Evidence {
            let size = self.checkpoint().size;
            let note = self.checkpoint().sign(&self.key).unwrap();
            let enc = |h: Vec<Hash>| h.iter().map(|h| B64.encode(h)).collect::<Vec<_>>();
            Evidence {
                repo: "main".into(),
                target: "fw.img".into(),
                sha256: "aa".repeat(32),
                index,
                entry: B64.encode(entry),
                checkpoint: String::from_utf8(note.to_bytes()).unwrap(),
                inclusion_proof: enc(inclusion_proof(self.log.store(), index, size).unwrap()),
                consistency: since
                    .iter()
                    .map(|&old| ConsistencyDoc {
                        old,
                        proof: enc(consistency_proof(self.log.store(), old, size).unwrap()),
                    })
                    .collect(),
            }
        }
    }

    #[test]
    fn the_entry_must_be_the_publish_of_exactly_this_target() {
        let sha = "aa".repeat(32);
        let ok = publish("main", "fw.img", 10, &sha);
        check_entry_is(&ok, 0, &expect(&sha)).unwrap();
        // upper-case hex in the signed metadata still matches
        check_entry_is(&ok, 0, &expect(&sha.to_ascii_uppercase())).unwrap();
        for (entry, rule) in [
            (publish("other", "fw.img", 10, &sha), "repo is \"other\""),
            (
                publish("main", "fw2.img", 10, &sha),
                "target name is \"fw2.img\"",
            ),
            (publish("main", "fw.img", 11, &sha), "length is 11"),
            (
                publish("main", "fw.img", 10, &"bb".repeat(32)),
                "hashes are",
            ),
            (
                LogEntry::new(
                    1,
                    EntryBody::Decommission {
                        device_id: "d1".into(),
                        reason: "x".into(),
                        by: "y".into(),
                    },
                )
                .to_bytes()
                .unwrap(),
                "it is a decommission entry",
            ),
            (b"{\"v\":2}".to_vec(), "version 2"),
            (b"not json".to_vec(), "not JSON"),
        ] {
            let e = check_entry_is(&entry, 3, &expect(&sha)).unwrap_err();
            assert!(e.is_attack(), "{e}");
            assert_eq!(e.kind(), "wrong_log_entry");
            assert!(e.to_string().contains(rule), "{rule}: {e}");
        }
        // a signed target with an extra hash the entry lacks
        let mut more = expect(&sha);
        more.hashes.insert("sha512".into(), "cc".repeat(64));
        assert!(check_entry_is(&ok, 0, &more).is_err());
    }

    #[test]
    fn online_check_advances_and_refuses_another_target() {
        let mut l = Log::new();
        let sha = "aa".repeat(32);
        l.push(b"filler");
        let e = publish("main", "fw.img", 10, &sha);
        let i = l.push(&e);
        let trust = l.trust();
        let a = check_target(&trust, None, &l.evidence(i, &e, &[]), &expect(&sha)).unwrap();
        let stored = a.checkpoint.checkpoint.clone();
        l.push(b"later");
        let ev = l.evidence(i, &e, &[stored.size]);
        let a = check_target(&trust, Some(&stored), &ev, &expect(&sha)).unwrap();
        assert_eq!(
            a.update,
            custody_log::Update::Advanced {
                from: stored.size,
                to: stored.size + 1
            }
        );
        // without the proof: inconsistent (an honest log sends it)
        let ev = l.evidence(i, &e, &[]);
        let err = check_target(&trust, Some(&stored), &ev, &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_inconsistent");
        assert!(err.is_attack());
        // a rollback
        let mut small = stored.clone();
        small.size += 5;
        let err = check_target(&trust, Some(&small), &ev, &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_rollback");
        // another key: a bad signature
        let other = trust_from_keys(
            Some(ORIGIN),
            &NoteSigner::from_seed(ORIGIN, [8; 32])
                .unwrap()
                .verifier_key()
                .to_vkey(),
            &[],
            0,
        )
        .unwrap();
        let err = check_target(&other, None, &ev, &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_bad_signature");
        assert!(err.is_attack());
    }

    #[test]
    fn offline_evidence_needs_a_proof_from_the_stored_size() {
        let mut l = Log::new();
        let sha = "aa".repeat(32);
        l.push(b"a");
        l.push(b"b");
        let stored_small = l.checkpoint();
        let e = publish("main", "fw.img", 10, &sha);
        let i = l.push(&e);
        let trust = l.trust();
        // no stored checkpoint: first use
        let ev = l.evidence(i, &e, &[]);
        check_offline_target(&trust, None, &ev, &expect(&sha)).unwrap();
        // stored smaller, no proof from its size: refused, not an attack
        let err =
            check_offline_target(&trust, Some(&stored_small), &ev, &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_no_consistency_proof");
        assert!(!err.is_attack());
        assert!(err.to_string().contains("--log-since 2"), "{err}");
        // with it: accepted
        let ev2 = l.evidence(i, &e, &[1, 2]);
        check_offline_target(&trust, Some(&stored_small), &ev2, &expect(&sha)).unwrap();
        // a proof that is present but wrong: an attack
        let mut bad = ev2.clone();
        bad.consistency[1].proof[0] = B64.encode([9u8; 32]);
        let err =
            check_offline_target(&trust, Some(&stored_small), &bad, &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_inconsistent");
        // stored larger: stale, not an attack
        l.push(b"later");
        let stored_big = l.checkpoint();
        let err = check_offline_target(&trust, Some(&stored_big), &ev, &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_evidence_stale");
        assert!(!err.is_attack());
    }

    #[test]
    fn too_few_cosignatures_is_refused_but_not_an_attack() {
        let mut l = Log::new();
        let sha = "aa".repeat(32);
        let e = publish("main", "fw.img", 10, &sha);
        let i = l.push(&e);
        let w = custody_log::Cosigner::from_seed("w.test/w", [3; 32]).unwrap();
        let trust = trust_from_keys(
            None,
            &l.key.verifier_key().to_vkey(),
            &[w.verifier_key().to_vkey()],
            1,
        )
        .unwrap();
        let err = check_target(&trust, None, &l.evidence(i, &e, &[]), &expect(&sha)).unwrap_err();
        assert_eq!(err.kind(), "log_too_few_cosignatures");
        assert!(!err.is_attack());
        assert!(trust_from_keys(None, &l.key.verifier_key().to_vkey(), &[], 1).is_err());
        assert!(trust_from_keys(None, "garbage", &[], 0).is_err());
    }

    #[test]
    fn the_stored_checkpoint_round_trips_and_a_tampered_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("log-checkpoint"));
        let mut l = Log::new();
        let sha = "aa".repeat(32);
        let e = publish("main", "fw.img", 10, &sha);
        let i = l.push(&e);
        let trust = l.trust();
        assert!(store.load(&trust).unwrap().is_none());
        let a = check_target(&trust, None, &l.evidence(i, &e, &[]), &expect(&sha)).unwrap();
        store.save(&a).unwrap();
        assert_eq!(store.load(&trust).unwrap(), Some(l.checkpoint()));
        let mut bytes = std::fs::read(store.path()).unwrap();
        bytes[0] ^= 1;
        std::fs::write(store.path(), &bytes).unwrap();
        let err = store.load(&trust).unwrap_err();
        assert_eq!(err.kind(), "log_local_state");
    }

    proptest! {
        /// Any bytes as an evidence document, and any mutation of a valid
        /// one: never a panic, never accepted unless it is the valid one.
        #[test]
        fn evidence_parse_and_check_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            pos in any::<usize>(),
            flip in 1u8..=255,
        ) {
            let mut l = Log::new();
            let sha = "aa".repeat(32);
            let e = publish("main", "fw.img", 10, &sha);
            l.push(b"x");
            let i = l.push(&e);
            let trust = l.trust();
            if let Ok(ev) = serde_json::from_slice::<Evidence>(&bytes) {
                prop_assert!(check_target(&trust, None, &ev, &expect(&sha)).is_err());
                let _ = check_offline_target(&trust, Some(&l.checkpoint()), &ev, &expect(&sha));
            }
            let good = serde_json::to_vec(&l.evidence(i, &e, &[1])).unwrap();
            let mut bad = good.clone();
            let p = pos % bad.len();
            bad[p] ^= flip;
            if let Ok(ev) = serde_json::from_slice::<Evidence>(&bad) {
                let stored = l.checkpoint();
                let _ = check_target(&trust, Some(&stored), &ev, &expect(&sha));
                let _ = check_offline_target(&trust, None, &ev, &expect(&sha));
            }
        }
    }
}
