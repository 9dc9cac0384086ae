//! The auditor's replay of a whole log (sans-IO): rebuild the tree from
//! every entry bundle, check each bundle against its level-0 tile, compare
//! the recomputed root with the signed checkpoint and every higher tile
//! with what the entries imply, and check that a cosigned checkpoint is a
//! tree the replayed log had (the fork check). Each inconsistency is an
//! [`AuditProblem`]; the caller fetches the bytes and reports them.
//!
//! ```
//! use custody_log::audit::Replay;
//! use custody_log::tile::{encode_entry_bundle, read_tile};
//! use custody_log::{Appender, MemoryStore};
//! let mut log = Appender::open(MemoryStore::new())?;
//! log.append_entries(&[b"a".as_slice(), b"b"])?;
//! let checkpoint = log.checkpoint("log.example")?; // verified by the caller
//! let mut replay = Replay::new(checkpoint);
//! for b in replay.bundles() {
//!     let bundle = encode_entry_bundle(&[b"a".as_slice(), b"b"])?;
//!     let tile = read_tile(log.store(), b.tile())?;
//!     replay.add_bundle(b, Some(&bundle), Some(&tile));
//! }
//! let replayed = replay.finish()?;
//! assert!(replayed.problems().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::checkpoint::Checkpoint;
use crate::entry::LogEntry;
use crate::hash::{hex, leaf_hash, Hash};
use crate::proof::{verify_inclusion, ProofError};
use crate::store::MemoryStore;
use crate::tile::{
    check_bundle_against_tile, new_bundles, new_tiles, parse_entry_bundle, read_tile, BundleId,
    TileId,
};
use crate::tree::{inclusion_proof, root_at, Appender, TreeError};

/// One inconsistency found by the replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditProblem {
    /// An entry bundle or its level-0 tile was not served.
    #[error("{bundle} or its level-0 tile is missing (HTTP 404)")]
    BundleMissing {
        /// bundle path
        bundle: String,
    },
    /// An entry bundle does not parse.
    #[error("{bundle}: {reason}")]
    BadBundle {
        /// bundle path
        bundle: String,
        /// the rule broken
        reason: String,
    },
    /// A bundle's entries do not hash to its level-0 tile.
    #[error("{bundle} vs {tile}: {reason}")]
    BundleVsTile {
        /// bundle path
        bundle: String,
        /// tile path
        tile: String,
        /// the mismatch
        reason: String,
    },
    /// The bundles hold another number of entries than the checkpoint.
    #[error("bundles hold {entries} entries, the checkpoint says {size}")]
    EntryCount {
        /// entries found
        entries: u64,
        /// checkpoint size
        size: u64,
    },
    /// The tree of the entries has another root than the checkpoint.
    #[error("recomputed root {recomputed} differs from the signed checkpoint root {signed} at size {size}")]
    RootMismatch {
        /// checkpoint size
        size: u64,
        /// hex root of the entries
        recomputed: String,
        /// hex root signed
        signed: String,
    },
    /// A higher tile differs from the hashes the entries imply.
    #[error("{tile}: differs from the hashes the entries imply")]
    TileMismatch {
        /// tile path
        tile: String,
    },
    /// A higher tile was not served.
    #[error("{tile}: missing (HTTP 404)")]
    TileMissing {
        /// tile path
        tile: String,
    },
    /// The cosigned checkpoint is larger than the latest one.
    #[error("cosigned checkpoint size {cosigned} is beyond the latest checkpoint size {size}")]
    CosignedBeyond {
        /// cosigned size
        cosigned: u64,
        /// latest size
        size: u64,
    },
    /// The cosigned checkpoint is not a tree the replayed log had: the log
    /// showed the witnesses another tree than the auditor.
    #[error("cosigned checkpoint of size {size} has a root the replayed tree never had (fork)")]
    Fork {
        /// cosigned size
        size: u64,
    },
    /// The cosignatures do not meet the auditor's witness policy.
    #[error("witness cosignatures: {0}")]
    Cosignatures(String),
    /// An entry does not parse, or its inner check failed.
    #[error("entry {index}: {reason}")]
    Entry {
        /// entry index
        index: u64,
        /// the rule broken
        reason: String,
    },
}

/// Why a replay or a proof from it could not be computed (not a problem of
/// the log: a bound of this process).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Building the tree failed.
    #[error("rebuilding the tree: {0}")]
    Tree(TreeError),
    /// An inclusion proof from the replayed tree does not verify (the
    /// replay did not reach the checkpoint's tree).
    #[error("inclusion proof of entry {index}: {error}")]
    Inclusion {
        /// entry index
        index: u64,
        /// the proof failure
        error: ProofError,
    },
    /// No entry at that index.
    #[error("entry {index} missing")]
    NoEntry {
        /// entry index
        index: u64,
    },
}

impl From<TreeError> for AuditError {
    fn from(e: TreeError) -> Self {
        AuditError::Tree(e)
    }
}

/// A replay in progress: feed it every bundle of [`Replay::bundles`].
#[derive(Debug)]
pub struct Replay {
    checkpoint: Checkpoint,
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    problems: Vec<AuditProblem>,
}

impl Replay {
    /// Replay the tree of `checkpoint` (already verified by the caller).
    pub fn new(checkpoint: Checkpoint) -> Self {
        Replay {
            checkpoint,
            entries: Vec::new(),
            leaves: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The entry bundles to fetch, in order.
    pub fn bundles(&self) -> Vec<BundleId> {
        new_bundles(0, self.checkpoint.size)
    }

    /// Add bundle `b` and its level-0 tile as served (`None`: not served).
    /// Call in the order of [`Replay::bundles`].
    pub fn add_bundle(&mut self, b: BundleId, bundle: Option<&[u8]>, tile: Option<&[u8]>) {
        let bpath = b.path();
        let (Some(bundle), Some(tile)) = (bundle, tile) else {
            self.problems
                .push(AuditProblem::BundleMissing { bundle: bpath });
            return;
        };
        let parsed = match parse_entry_bundle(bundle) {
            Ok(p) => p,
            Err(e) => {
                self.problems.push(AuditProblem::BadBundle {
                    bundle: bpath,
                    reason: e.to_string(),
                });
                return;
            }
        };
        if let Err(e) = check_bundle_against_tile(&parsed, tile) {
            self.problems.push(AuditProblem::BundleVsTile {
                bundle: bpath,
                tile: b.tile().path(),
                reason: e.to_string(),
            });
        }
        for e in parsed {
            self.leaves.push(leaf_hash(e));
            self.entries.push(e.to_vec());
        }
    }

    /// Rebuild the tree and compare it with the checkpoint.
    pub fn finish(self) -> Result<ReplayedLog, AuditError> {
        let Replay {
            checkpoint,
            entries,
            leaves,
            mut problems,
        } = self;
        let size = checkpoint.size;
        let mut app = Appender::open(MemoryStore::new())?;
        app.append_leaf_hashes(&leaves)?;
        let complete = leaves.len() as u64 == size;
        if !complete {
            problems.push(AuditProblem::EntryCount {
                entries: leaves.len() as u64,
                size,
            });
        } else if app.root() != checkpoint.root {
            problems.push(AuditProblem::RootMismatch {
                size,
                recomputed: hex(&app.root()),
                signed: hex(&checkpoint.root),
            });
        }
        Ok(ReplayedLog {
            size,
            root: checkpoint.root,
            entries,
            store: app.into_store(),
            complete,
            problems,
        })
    }
}

/// A replayed log: its entries, the tree they build, and the problems found.
#[derive(Debug)]
pub struct ReplayedLog {
    size: u64,
    root: Hash,
    entries: Vec<Vec<u8>>,
    store: MemoryStore,
    complete: bool,
    problems: Vec<AuditProblem>,
}

impl ReplayedLog {
    /// The checkpoint's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The checkpoint's (signed) root.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The entries, in log order.
    pub fn entries(&self) -> &[Vec<u8>] {
        &self.entries
    }

    /// The problems found so far.
    pub fn problems(&self) -> &[AuditProblem] {
        &self.problems
    }

    /// Record a problem found outside the replay (for instance the
    /// witness policy).
    pub fn push_problem(&mut self, p: AuditProblem) {
        self.problems.push(p);
    }

    /// The tiles above level 0 to fetch and give to
    /// [`ReplayedLog::check_tile`] (none when the entries are incomplete).
    pub fn tiles_to_check(&self) -> Vec<TileId> {
        if !self.complete {
            return Vec::new();
        }
        new_tiles(0, self.size)
            .into_iter()
            .filter(|t| t.level > 0)
            .collect()
    }

    /// A higher tile as served must be what the entries imply.
    pub fn check_tile(&mut self, t: TileId, served: Option<&[u8]>) -> Result<(), AuditError> {
        let want = read_tile(&self.store, t)?;
        match served {
            Some(got) if got == want.as_slice() => {}
            Some(_) => self
                .problems
                .push(AuditProblem::TileMismatch { tile: t.path() }),
            None => self
                .problems
                .push(AuditProblem::TileMissing { tile: t.path() }),
        }
        Ok(())
    }

    /// The fork check: a cosigned checkpoint (verified by the caller with
    /// its witness policy) must be no larger than the latest one and have
    /// the root the replayed tree had at its size.
    pub fn check_cosigned(&mut self, cosigned: &Checkpoint) {
        let s = cosigned.size;
        if s > self.size {
            self.problems.push(AuditProblem::CosignedBeyond {
                cosigned: s,
                size: self.size,
            });
        } else if self.complete {
            match root_at(&self.store, s) {
                Ok(r) if r == cosigned.root => {}
                _ => self.problems.push(AuditProblem::Fork { size: s }),
            }
        }
    }

    /// Parse every entry once. An entry that does not parse is a problem
    /// (`None` in the result); each one that does is given to `check` (the
    /// caller's inner checks, such as install-report signatures), whose
    /// error is a problem too.
    pub fn parse_entries(
        &mut self,
        mut check: impl FnMut(&LogEntry) -> Result<(), String>,
    ) -> Vec<Option<LogEntry>> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let index = i as u64;
            match LogEntry::from_bytes(e) {
                Ok(entry) => {
                    if let Err(reason) = check(&entry) {
                        self.problems.push(AuditProblem::Entry { index, reason });
                    }
                    out.push(Some(entry));
                }
                Err(reason) => {
                    self.problems.push(AuditProblem::Entry { index, reason });
                    out.push(None);
                }
            }
        }
        out
    }

    /// The inclusion proof of entry `index` at the checkpoint's size,
    /// verified against the signed root before it is handed out.
    pub fn inclusion(&self, index: u64) -> Result<Vec<Hash>, AuditError> {
        let proof = inclusion_proof(&self.store, index, self.size)?;
        let entry = self
            .entries
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .ok_or(AuditError::NoEntry { index })?;
        verify_inclusion(&leaf_hash(entry), index, self.size, &proof, &self.root)
            .map_err(|error| AuditError::Inclusion { index, error })?;
        Ok(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::encode_entry_bundle;

    const ORIGIN: &str = "log.test/log";

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    fn build(es: &[Vec<u8>]) -> Appender<MemoryStore> {
        let mut a = Appender::open(MemoryStore::new()).unwrap();
        a.append_entries(es).unwrap();
        a
    }

    /// Replay `served` (entries as the log serves them, tiles from the
    /// tree they build) against `checkpoint`.
    fn replay(checkpoint: Checkpoint, served: &[Vec<u8>]) -> ReplayedLog {
        let tree = build(served);
        let mut r = Replay::new(checkpoint);
        for b in r.bundles() {
            let lo = usize::try_from(b.index * 256).unwrap();
            let hi = (lo + usize::from(b.width)).min(served.len());
            let refs: Vec<&[u8]> = served[lo..hi].iter().map(Vec::as_slice).collect();
            let bundle = encode_entry_bundle(&refs).unwrap();
            let tile = read_tile(tree.store(), b.tile()).ok();
            r.add_bundle(b, Some(&bundle), tile.as_deref());
        }
        let mut out = r.finish().unwrap();
        for t in out.tiles_to_check() {
            let served = read_tile(tree.store(), t).unwrap();
            out.check_tile(t, Some(&served)).unwrap();
        }
        out
    }

    #[test]
    fn an_honest_log_replays_clean_with_verified_proofs() {
        let es = entries(600);
        let cp = build(&es).checkpoint(ORIGIN).unwrap();
        let mut r = replay(cp.clone(), &es);
        assert_eq!(r.problems(), &[]);
        assert_eq!(r.entries().len(), 600);
        assert_eq!(r.tiles_to_check().len(), 1, "one level-1 partial tile");
        let p = r.inclusion(300).unwrap();
        verify_inclusion(&leaf_hash(&es[300]), 300, 600, &p, &cp.root).unwrap();
        assert!(matches!(
            r.inclusion(600),
            Err(AuditError::Tree(TreeError::IndexOutOfRange { .. }))
        ));
        // an older cosigned checkpoint of the same tree: no fork
        let older = build(&es[..100]).checkpoint(ORIGIN).unwrap();
        r.check_cosigned(&older);
        r.check_cosigned(&cp);
        assert_eq!(r.problems(), &[]);
    }

    #[test]
    fn replay_finds_a_root_the_entries_do_not_build() {
        // the log signed a tree, then serves other entries (with tiles
        // that agree with them, so only the root tells)
        let es = entries(10);
        let cp = build(&es).checkpoint(ORIGIN).unwrap();
        let mut other = es.clone();
        other[4] = b"rewritten history".to_vec();
        let r = replay(cp, &other);
        assert!(
            matches!(r.problems(), [AuditProblem::RootMismatch { size: 10, .. }]),
            "{:?}",
            r.problems()
        );
        // and the inclusion proofs from it no longer verify
        assert!(matches!(
            r.inclusion(4),
            Err(AuditError::Inclusion { index: 4, .. })
        ));
    }

    #[test]
    fn replay_finds_missing_and_tampered_bundles_and_tiles() {
        let es = entries(300);
        let tree = build(&es);
        let cp = tree.checkpoint(ORIGIN).unwrap();
        let mut r = Replay::new(cp.clone());
        let bs = r.bundles();
        assert_eq!(bs.len(), 2);
        // first bundle changed after its tile was written
        let mut first: Vec<&[u8]> = es[..256].iter().map(Vec::as_slice).collect();
        first[3] = b"changed";
        let bundle = encode_entry_bundle(&first).unwrap();
        let tile = read_tile(tree.store(), bs[0].tile()).unwrap();
        r.add_bundle(bs[0], Some(&bundle), Some(&tile));
        // second bundle not served
        r.add_bundle(bs[1], None, None);
        let r = r.finish().unwrap();
        let msgs: Vec<String> = r.problems().iter().map(ToString::to_string).collect();
        assert!(
            matches!(r.problems()[0], AuditProblem::BundleVsTile { .. }),
            "{msgs:?}"
        );
        assert!(msgs[1].ends_with("or its level-0 tile is missing (HTTP 404)"));
        assert_eq!(msgs[2], "bundles hold 256 entries, the checkpoint says 300");
        assert!(r.tiles_to_check().is_empty(), "incomplete: no tile check");

        // a higher tile that lies, and one not served
        let es = entries(600);
        let tree = build(&es);
        let mut r = replay(tree.checkpoint(ORIGIN).unwrap(), &es);
        let t = r.tiles_to_check()[0];
        r.check_tile(t, Some(&[0u8; 64])).unwrap();
        r.check_tile(t, None).unwrap();
        assert!(matches!(
            r.problems(),
            [
                AuditProblem::TileMismatch { .. },
                AuditProblem::TileMissing { .. }
            ]
        ));
    }

    #[test]
    fn a_cosigned_checkpoint_of_another_tree_is_a_fork() {
        let es = entries(20);
        let cp = build(&es).checkpoint(ORIGIN).unwrap();
        let mut r = replay(cp, &es);
        // what the witnesses were shown at size 12: another history
        let mut forked = es[..12].to_vec();
        forked[0] = b"forked".to_vec();
        let shown = build(&forked).checkpoint(ORIGIN).unwrap();
        r.check_cosigned(&shown);
        assert_eq!(r.problems(), &[AuditProblem::Fork { size: 12 }]);
        // a cosigned checkpoint larger than the latest
        let bigger = build(&entries(21)).checkpoint(ORIGIN).unwrap();
        r.check_cosigned(&bigger);
        assert_eq!(
            r.problems()[1],
            AuditProblem::CosignedBeyond {
                cosigned: 21,
                size: 20
            }
        );
    }

    #[test]
    fn entries_are_parsed_once_and_problems_named_by_index() {
        let good = LogEntry::new(
            1,
            crate::entry::EntryBody::Yank {
                repo: "r".into(),
                target: "t".into(),
                reason: "x".into(),
                by: "y".into(),
                replacement: None,
            },
        )
        .to_bytes()
        .unwrap();
        let es = vec![good.clone(), b"not json".to_vec(), good];
        let cp = build(&es).checkpoint(ORIGIN).unwrap();
        let mut r = replay(cp, &es);
        let mut seen = 0;
        let parsed = r.parse_entries(|_| {
            seen += 1;
            if seen == 2 {
                Err("inner check failed".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(seen, 2);
        assert!(parsed[0].is_some() && parsed[1].is_none() && parsed[2].is_some());
        let msgs: Vec<String> = r.problems().iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].starts_with("entry 1: "), "{msgs:?}");
        assert_eq!(msgs[1], "entry 2: inner check failed");
    }
}
