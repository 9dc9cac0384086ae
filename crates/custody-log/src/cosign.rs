//! Cosignature acceptance, the log side of c2sp.org/tlog-cosignature
//! (sans-IO): whether a witness's cosignature, posted to the log
//! (`POST /log/v1/cosign`, a [`CosignRequest`]), is attached to one of the
//! log's checkpoints, and the set of cosignatures kept for a checkpoint.
//!
//! [`accept_cosignature`] checks, in this order:
//!
//! 1. the key is a cosignature/v1 (type 0x04) verifier key;
//! 2. it is on the log's witness allow-list, when the log has one;
//! 3. the checkpoint carries the log's valid signature, for its origin;
//! 4. its size is at most the log's size, and its root is the root the
//!    log's tree had at that size (no cosigning a tree the log never had);
//! 5. the signature line is by that key (name and key id), and verifies
//!    over the checkpoint body with its timestamp.
//!
//! [`CosignatureSet::add`] then keeps at most [`MAX_COSIGNATURES`] distinct
//! witnesses per checkpoint; a witness's newer cosignature replaces its
//! older one, and an older one (a replayed request) never replaces a newer
//! one: it is refused as [`CosignError::Stale`].

use crate::checkpoint::{LogVerifier, VerifiedCheckpoint};
use crate::hash::Hash;
use crate::note::{KeyType, Note, NoteSignature, VerifierKey};
use crate::wire::CosignRequest;

/// Most witnesses whose cosignatures are kept per checkpoint.
pub const MAX_COSIGNATURES: usize = 16;

/// Why a cosignature was not attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    /// `key` is not a verifier key.
    #[error("key: {0}")]
    BadKey(String),
    /// `key` is not a cosignature/v1 key.
    #[error("key {name}: must be a cosignature/v1 (type 0x04) witness key, got {key_type:?}")]
    NotCosignatureKey {
        /// key name
        name: String,
        /// its type
        key_type: KeyType,
    },
    /// The log has a witness allow-list and the key is not on it.
    #[error("witness key {name}+{key_id:08x} is not in this log's witnesses list")]
    UnknownWitness {
        /// key name
        name: String,
        /// key id
        key_id: u32,
    },
    /// The checkpoint is not a checkpoint of this log (signature, origin,
    /// syntax).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The checkpoint is larger than the log.
    #[error("checkpoint size {size} is beyond this log's size {log_size}")]
    BeyondLog {
        /// checkpoint size
        size: u64,
        /// the log's size
        log_size: u64,
    },
    /// The checkpoint's root is not the log's root at its size.
    #[error("checkpoint of size {size} has a root this log never had")]
    WrongRoot {
        /// checkpoint size
        size: u64,
    },
    /// The log could not compute its own root at that size.
    #[error("the log's root at size {size}: {reason}")]
    LogState {
        /// checkpoint size
        size: u64,
        /// why
        reason: String,
    },
    /// The signature line does not parse.
    #[error("signature: {0}")]
    BadLine(String),
    /// The signature line is by another key than `key`.
    #[error("signature line is by {line_name}+{line_id:08x}, the key is {name}+{key_id:08x}")]
    OtherSigner {
        /// name on the line
        line_name: String,
        /// key id on the line
        line_id: u32,
        /// key name
        name: String,
        /// key id
        key_id: u32,
    },
    /// The cosignature does not verify with the key.
    #[error("cosignature does not verify: {0}")]
    BadSignature(String),
    /// The checkpoint note lacks the log's signature line.
    #[error("checkpoint lacks the log signature")]
    NoLogSignature,
    /// The checkpoint already has [`MAX_COSIGNATURES`] other witnesses.
    #[error("checkpoint {size} already has {MAX_COSIGNATURES} cosignatures")]
    Full {
        /// checkpoint size
        size: u64,
    },
    /// An older cosignature than the one held from the same witness.
    #[error("cosignature by {name} for checkpoint {size} is timestamped {timestamp}, older than the one already held ({held}): a replayed request")]
    Stale {
        /// witness name
        name: String,
        /// checkpoint size
        size: u64,
        /// its timestamp
        timestamp: u64,
        /// the timestamp held
        held: u64,
    },
}

impl CosignError {
    /// The witness is not allowed to cosign for this log (HTTP 403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, CosignError::UnknownWitness { .. })
    }

    /// Valid, but conflicts with the cosignatures held (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, CosignError::Full { .. } | CosignError::Stale { .. })
    }

    /// The log's own state failed, not the request (HTTP 500).
    pub fn is_internal(&self) -> bool {
        matches!(self, CosignError::LogState { .. })
    }
}

/// A cosignature that passed [`accept_cosignature`].
#[derive(Debug, Clone)]
pub struct AcceptedCosignature {
    /// the witness key
    pub key: VerifierKey,
    /// the checkpoint (log signature verified)
    pub checkpoint: VerifiedCheckpoint,
    /// the log's signature line on it
    pub log_signature: NoteSignature,
    /// the witness's signature line
    pub cosignature: NoteSignature,
    /// the cosignature's verified timestamp
    pub timestamp: u64,
}

/// Decide whether `req` is a valid cosignature of one of this log's
/// checkpoints. `log` verifies the log's signature; `allowed` is the
/// witness allow-list (`None`: any cosignature/v1 key); `log_size` is the
/// log's durable size and `root_at(size)` its root at a smaller size.
pub fn accept_cosignature<E: std::fmt::Display>(
    log: &LogVerifier,
    allowed: Option<&[VerifierKey]>,
    req: &CosignRequest,
    log_size: u64,
    root_at: impl FnOnce(u64) -> Result<Hash, E>,
) -> Result<AcceptedCosignature, CosignError> {
    let key = VerifierKey::parse(req.key.trim()).map_err(|e| CosignError::BadKey(e.to_string()))?;
    if key.key_type() != KeyType::CosignatureV1 {
        return Err(CosignError::NotCosignatureKey {
            name: key.name().to_owned(),
            key_type: key.key_type(),
        });
    }
    if let Some(allowed) = allowed {
        if !allowed.iter().any(|k| k == &key) {
            return Err(CosignError::UnknownWitness {
                name: key.name().to_owned(),
                key_id: key.key_id(),
            });
        }
    }
    crate::wire::check_checkpoint_len(req.checkpoint.as_bytes())
        .map_err(|e| CosignError::Checkpoint(e.to_string()))?;
    let vc = log
        .verify(req.checkpoint.as_bytes())
        .map_err(|e| CosignError::Checkpoint(e.to_string()))?;
    let size = vc.checkpoint.size;
    if size > log_size {
        return Err(CosignError::BeyondLog { size, log_size });
    }
    let root = root_at(size).map_err(|e| CosignError::LogState {
        size,
        reason: e.to_string(),
    })?;
    if root != vc.checkpoint.root {
        return Err(CosignError::WrongRoot { size });
    }
    let sig = NoteSignature::parse_line(req.signature.trim_end_matches('\n'))
        .map_err(|e| CosignError::BadLine(e.to_string()))?;
    if sig.name != key.name() || sig.key_id != key.key_id() {
        return Err(CosignError::OtherSigner {
            line_name: sig.name,
            line_id: sig.key_id,
            name: key.name().to_owned(),
            key_id: key.key_id(),
        });
    }
    let timestamp = key
        .verify_signature(vc.note.text(), &sig.signature)
        .map_err(|e| CosignError::BadSignature(e.to_string()))?
        .ok_or_else(|| CosignError::BadSignature("no cosignature timestamp".into()))?;
    let log_key = log.log_key();
    let log_signature = vc
        .note
        .signatures()
        .iter()
        .find(|s| s.key_id == log_key.key_id() && s.name == log_key.name())
        .cloned()
        .ok_or(CosignError::NoLogSignature)?;
    Ok(AcceptedCosignature {
        key,
        checkpoint: vc,
        log_signature,
        cosignature: sig,
        timestamp,
    })
}

/// The cosignatures a log holds for one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureSet {
    size: u64,
    text: String,
    log_signature: NoteSignature,
    cosigs: Vec<(VerifierKey, NoteSignature)>,
}

impl CosignatureSet {
    /// An empty set for the checkpoint of `size` with body `text`, signed
    /// by the log with `log_signature`.
    pub fn new(size: u64, text: String, log_signature: NoteSignature) -> Self {
        CosignatureSet {
            size,
            text,
            log_signature,
            cosigs: Vec::new(),
        }
    }

    /// The set for an accepted cosignature's checkpoint (empty).
    pub fn for_checkpoint(a: &AcceptedCosignature) -> Self {
        CosignatureSet::new(
            a.checkpoint.checkpoint.size,
            a.checkpoint.note.text().to_owned(),
            a.log_signature.clone(),
        )
    }

    /// The checkpoint size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The witnesses and their signature lines.
    pub fn cosignatures(&self) -> &[(VerifierKey, NoteSignature)] {
        &self.cosigs
    }

    /// True if no witness cosigned.
    pub fn is_empty(&self) -> bool {
        self.cosigs.is_empty()
    }

    /// Attach an accepted cosignature of this checkpoint; returns how many
    /// witnesses now cosigned. A witness already present is replaced by
    /// its newer (or same-time) cosignature; an older one is
    /// [`CosignError::Stale`]. A new witness beyond [`MAX_COSIGNATURES`] is
    /// [`CosignError::Full`].
    pub fn add(&mut self, a: &AcceptedCosignature) -> Result<usize, CosignError> {
        if a.checkpoint.checkpoint.size != self.size || a.checkpoint.note.text() != self.text {
            return Err(CosignError::Checkpoint(format!(
                "a cosignature of another checkpoint (size {}) than the one held (size {})",
                a.checkpoint.checkpoint.size, self.size
            )));
        }
        self.insert(a.key.clone(), a.cosignature.clone(), a.timestamp)?;
        Ok(self.cosigs.len())
    }

    /// Re-attach a stored cosignature after checking it verifies over this
    /// checkpoint with `key` (for a log reloading its state). Returns false
    /// if it does not verify.
    pub fn restore(&mut self, key: &VerifierKey, sig: &NoteSignature) -> bool {
        if key.key_type() != KeyType::CosignatureV1
            || sig.name != key.name()
            || sig.key_id != key.key_id()
        {
            return false;
        }
        match key.verify_signature(&self.text, &sig.signature) {
            Ok(Some(ts)) => self.insert(key.clone(), sig.clone(), ts).is_ok(),
            _ => false,
        }
    }

    fn insert(&mut self, key: VerifierKey, sig: NoteSignature, ts: u64) -> Result<(), CosignError> {
        if let Some(slot) = self
            .cosigs
            .iter_mut()
            .find(|(k, _)| k.public_key() == key.public_key())
        {
            let held = slot.1.cosignature_timestamp().unwrap_or(0);
            if ts < held {
                return Err(CosignError::Stale {
                    name: key.name().to_owned(),
                    size: self.size,
                    timestamp: ts,
                    held,
                });
            }
            *slot = (key, sig);
        } else if self.cosigs.len() >= MAX_COSIGNATURES {
            return Err(CosignError::Full { size: self.size });
        } else {
            self.cosigs.push((key, sig));
        }
        Ok(())
    }

    /// The checkpoint note with the log signature and every cosignature.
    pub fn render(&self) -> Vec<u8> {
        let Ok(mut note) = Note::new(self.text.clone()) else {
            return Vec::new();
        };
        note.add_signature(self.log_signature.clone());
        for (_, s) in &self.cosigs {
            note.add_signature(s.clone());
        }
        note.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Cosigner, NoteSigner};
    use crate::{Appender, MemoryStore};

    const ORIGIN: &str = "log.test/log";

    struct Fixture {
        key: NoteSigner,
        log: Appender<MemoryStore>,
        w: Cosigner,
    }

    impl Fixture {
        fn new() -> Self {
            let mut log = Appender::open(MemoryStore::new()).unwrap();
            log.append_entries(&[b"a".as_slice(), b"b", b"c"]).unwrap();
            Fixture {
                key: NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap(),
                log,
                w: Cosigner::from_seed("w.test/1", [2; 32]).unwrap(),
            }
        }
        fn verifier(&self) -> LogVerifier {
            LogVerifier::new(ORIGIN, self.key.verifier_key()).unwrap()
        }
        fn note(&self, size: u64) -> Note {
            let root = crate::root_at(self.log.store(), size).unwrap();
            crate::Checkpoint::new(ORIGIN, size, root)
                .unwrap()
                .sign(&self.key)
                .unwrap()
        }
        fn request(&self, w: &Cosigner, note: &Note, ts: u64) -> CosignRequest {
            CosignRequest {
                key: w.verifier_key().to_vkey(),
                checkpoint: String::from_utf8(note.to_bytes()).unwrap(),
                signature: w.cosign(note.text(), ts).unwrap().to_line(),
            }
        }
        fn accept(
            &self,
            allowed: Option<&[VerifierKey]>,
            req: &CosignRequest,
        ) -> Result<AcceptedCosignature, CosignError> {
            accept_cosignature(&self.verifier(), allowed, req, 3, |s| {
                crate::root_at(self.log.store(), s).map_err(|e| e.to_string())
            })
        }
    }

    #[test]
    fn a_valid_cosignature_is_accepted_and_rendered() {
        let f = Fixture::new();
        let note = f.note(3);
        let a = f.accept(None, &f.request(&f.w, &note, 100)).unwrap();
        assert_eq!(a.timestamp, 100);
        let mut set = CosignatureSet::for_checkpoint(&a);
        assert_eq!(set.add(&a).unwrap(), 1);
        let policy = crate::WitnessPolicy::new(vec![f.w.verifier_key()], 1).unwrap();
        let v = f.verifier().with_witness_policy(policy);
        assert_eq!(v.verify(&set.render()).unwrap().cosignatures.len(), 1);
        // an older checkpoint the log had is fine too
        f.accept(None, &f.request(&f.w, &f.note(2), 100)).unwrap();
    }

    #[test]
    fn attacks_on_acceptance_are_refused() {
        let f = Fixture::new();
        let note = f.note(3);
        let good = f.request(&f.w, &note, 100);

        // a signature line by another key than the one named
        let other = Cosigner::from_seed("w.test/1", [9; 32]).unwrap();
        let mut forged = good.clone();
        forged.signature = other.cosign(note.text(), 100).unwrap().to_line();
        assert!(matches!(
            f.accept(None, &forged),
            Err(CosignError::OtherSigner { .. })
        ));
        // same key id and name, bytes that do not verify
        let mut bad = good.clone();
        let mut line = NoteSignature::parse_line(&bad.signature).unwrap();
        line.signature[20] ^= 1;
        bad.signature = line.to_line();
        assert!(matches!(
            f.accept(None, &bad),
            Err(CosignError::BadSignature(_))
        ));
        // a cosignature of another checkpoint text
        let mut moved = good.clone();
        moved.signature = f.w.cosign(f.note(2).text(), 100).unwrap().to_line();
        assert!(matches!(
            f.accept(None, &moved),
            Err(CosignError::BadSignature(_))
        ));
        // the log's own (Ed25519) key is not a witness key
        let mut ed = good.clone();
        ed.key = f.key.verifier_key().to_vkey();
        assert!(matches!(
            f.accept(None, &ed),
            Err(CosignError::NotCosignatureKey { .. })
        ));
        let mut garbage = good.clone();
        garbage.key = "garbage".into();
        assert!(matches!(
            f.accept(None, &garbage),
            Err(CosignError::BadKey(_))
        ));
        // a witness not on the allow-list: forbidden
        let listed = [Cosigner::from_seed("w.test/2", [3; 32])
            .unwrap()
            .verifier_key()];
        let e = f.accept(Some(&listed), &good).unwrap_err();
        assert!(e.is_forbidden(), "{e}");
        f.accept(Some(&[f.w.verifier_key()]), &good).unwrap();
        // a checkpoint signed by another log key
        let evil = NoteSigner::from_seed(ORIGIN, [5; 32]).unwrap();
        let root = crate::root_at(f.log.store(), 3).unwrap();
        let evil_note = crate::Checkpoint::new(ORIGIN, 3, root)
            .unwrap()
            .sign(&evil)
            .unwrap();
        assert!(matches!(
            f.accept(None, &f.request(&f.w, &evil_note, 100)),
            Err(CosignError::Checkpoint(_))
        ));
        // a tree the log never had: same size, other root
        let forked = crate::Checkpoint::new(ORIGIN, 3, [7; 32])
            .unwrap()
            .sign(&f.key)
            .unwrap();
        assert_eq!(
            f.accept(None, &f.request(&f.w, &forked, 100)).unwrap_err(),
            CosignError::WrongRoot { size: 3 }
        );
        // a size beyond the log
        let mut log4 = Appender::open(MemoryStore::new()).unwrap();
        log4.append_entries(&[b"a".as_slice(), b"b", b"c", b"d"])
            .unwrap();
        let big = log4.checkpoint(ORIGIN).unwrap().sign(&f.key).unwrap();
        assert_eq!(
            f.accept(None, &f.request(&f.w, &big, 100)).unwrap_err(),
            CosignError::BeyondLog {
                size: 4,
                log_size: 3
            }
        );
        // the log failing to compute its root is the log's error
        let e = accept_cosignature(&f.verifier(), None, &good, 3, |_| Err("disk")).unwrap_err();
        assert!(e.is_internal(), "{e}");
    }

    #[test]
    fn a_stale_cosignature_never_replaces_a_newer_one() {
        let f = Fixture::new();
        let note = f.note(3);
        let new = f.accept(None, &f.request(&f.w, &note, 200)).unwrap();
        let old = f.accept(None, &f.request(&f.w, &note, 100)).unwrap();
        let mut set = CosignatureSet::for_checkpoint(&new);
        set.add(&new).unwrap();
        let e = set.add(&old).unwrap_err();
        assert!(e.is_conflict(), "{e}");
        assert!(matches!(
            e,
            CosignError::Stale {
                timestamp: 100,
                held: 200,
                ..
            }
        ));
        // the same request again (a retry) and a newer one are fine
        assert_eq!(set.add(&new).unwrap(), 1);
        let newer = f.accept(None, &f.request(&f.w, &note, 300)).unwrap();
        assert_eq!(set.add(&newer).unwrap(), 1);
        assert_eq!(set.cosignatures()[0].1.cosignature_timestamp(), Some(300));
        // a cosignature of another checkpoint does not go into this set
        let other = f.accept(None, &f.request(&f.w, &f.note(2), 300)).unwrap();
        assert!(set.add(&other).is_err());
    }

    #[test]
    fn at_most_sixteen_witnesses_per_checkpoint() {
        let f = Fixture::new();
        let note = f.note(3);
        let mut set: Option<CosignatureSet> = None;
        for i in 0..=MAX_COSIGNATURES {
            let w = Cosigner::from_seed(&format!("w.test/{i}"), [i as u8 + 10; 32]).unwrap();
            let a = f.accept(None, &f.request(&w, &note, 100)).unwrap();
            let s = set.get_or_insert_with(|| CosignatureSet::for_checkpoint(&a));
            let r = s.add(&a);
            if i < MAX_COSIGNATURES {
                assert_eq!(r.unwrap(), i + 1);
            } else {
                assert_eq!(r.unwrap_err(), CosignError::Full { size: 3 });
            }
        }
    }

    #[test]
    fn restore_keeps_only_cosignatures_that_verify() {
        let f = Fixture::new();
        let note = f.note(3);
        let a = f.accept(None, &f.request(&f.w, &note, 100)).unwrap();
        let mut set = CosignatureSet::for_checkpoint(&a);
        assert!(set.restore(&a.key, &a.cosignature));
        let other = Cosigner::from_seed("w.test/9", [9; 32]).unwrap();
        assert!(!set.restore(&other.verifier_key(), &a.cosignature));
        assert_eq!(set.cosignatures().len(), 1);
    }
}
