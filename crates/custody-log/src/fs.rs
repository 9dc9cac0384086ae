//! Durable embedded store on the local file system (feature `fs`): the
//! only IO in this crate, kept apart from the sans-IO core.
//!
//! ## Layout (c2sp.org/tlog-tiles, so the directory can be served as is)
//!
//! ```text
//! <dir>/checkpoint                 signed note of the last durable tree
//! <dir>/tile/<L>/<N>               full tile (256 hashes), immutable
//! <dir>/tile/<L>/<N>.p/<W>         partial tile of width W
//! <dir>/tile/entries/<N>[.p/<W>]   entry bundles
//! <dir>/tmp/                       temporary files (emptied on open)
//! ```
//!
//! Only tile levels (tree levels 0, 8, 16, ...) are stored: 32 bytes per
//! entry plus 1/256 of that per level above. Other tree nodes are computed
//! from a tile when needed (a full tile is hashed once into its 9 internal
//! levels and cached).
//!
//! ## Commit protocol (crash safety)
//!
//! One batch ([`FsLog::append_batch`]): every new or widened tile and entry
//! bundle is written to `tmp/`, fsynced, renamed into place, the touched
//! directories are fsynced; then the signed checkpoint is written the same
//! way. The checkpoint rename is the commit point: an entry is durable (and
//! only then acknowledged) once the checkpoint covering it is.
//!
//! [`FsLog::open`] recovers to the checkpoint on disk: it verifies the
//! checkpoint signature, recomputes the root from the tiles and compares,
//! and deletes every tile or bundle a crashed batch left beyond that size
//! (so a full tile written before the crash is never served as part of the
//! tree before the entries in it are committed again). Superseded partial
//! tiles are deleted after the next commit; readers asking for an older
//! partial width get the same prefix of a wider tile, which is identical by
//! construction.
//!
//! ## Group commit ([`LogWriter`])
//!
//! [`LogWriter::spawn`] moves an [`FsLog`] to its own thread. Callers
//! submit entries from any thread or task; the writer takes what is queued
//! (up to `max_batch`, waiting at most `max_delay` for more), writes one
//! batch with one commit, then wakes every waiter with its index. Readers
//! ([`LogWriter::reader`], [`LogWriter::checkpoint`]) never take the
//! writer's lock.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::checkpoint::{CheckpointError, LogVerifier};
use crate::hash::{node_hash, Hash, HASH_LEN};
use crate::note::{NoteError, NoteSigner};
use crate::store::{HashReader, HashStore, NodeId, StoreError};
use crate::tile::{
    encode_entry_bundle, new_bundles, new_tiles, parse_entry_bundle, BundleId, TileError, TileId,
    TILE_HEIGHT, TILE_WIDTH,
};
use crate::tree::{root_at, Appender, TreeError};

/// Largest entry the log takes (entry bundles use a u16 length prefix).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Tile levels a 64-bit tree can have.
const TILE_LEVELS: usize = 8;

/// Errors of the durable store.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A file system operation failed.
    #[error("log store {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The files on disk contradict each other or the checkpoint.
    #[error("log store {path}: corrupt: {reason}")]
    Corrupt {
        /// The file or directory.
        path: PathBuf,
        /// The rule broken, with the values.
        reason: String,
    },
    /// An entry longer than an entry bundle can hold.
    #[error("log entry is {len} bytes; the limit is {MAX_ENTRY_LEN} (entry bundles use a 16-bit length)")]
    EntryTooLarge {
        /// Its length.
        len: usize,
    },
    /// The writer thread stopped (shut down or failed).
    #[error("log writer is not running: {0}")]
    Closed(String),
    /// Tree computation failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Tile encoding failed.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The checkpoint on disk does not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Signing failed.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Another process has this log open for writing.
    #[error("log store {path}: another process has this log open (lock {path} is held); two writers would truncate each other's batches")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn store_err(e: FsError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

fn count_at(size: u64, tile_level: usize) -> u64 {
    size.checked_shr(tile_level as u32 * TILE_HEIGHT)
        .unwrap_or(0)
}

// ------------------------------------------------------------------ reading

/// The 9 internal levels of a full tile: `levels[r]` holds `256 >> r` hashes
/// of tree level `8 * L + r`.
type TileLevels = Vec<Vec<Hash>>;

fn tile_levels(hashes: Vec<Hash>) -> TileLevels {
    let mut levels = vec![hashes];
    while let Some(last) = levels.last() {
        if last.len() <= 1 {
            break;
        }
        let next: Vec<Hash> = last
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
        levels.push(next);
    }
    levels
}

/// Read side of a log directory: tiles and bundles for any tree size up to
/// the durable one, with a cache of full tiles. Shared by the writer and
/// any number of readers (`&self` everywhere).
#[derive(Debug)]
pub struct TileStore {
    dir: PathBuf,
    cache: Mutex<HashMap<(u8, u64, u16), Arc<TileLevels>>>,
    cache_cap: usize,
}

impl TileStore {
    /// Open the read side of `dir` (no IO until something is read).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TileStore {
            dir: dir.into(),
            cache: Mutex::new(HashMap::new()),
            cache_cap: 2048,
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn read_opt(&self, path: &Path) -> Result<Option<Vec<u8>>, FsError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path, "read")(e)),
        }
    }

    /// Find the bytes of `<base>` of `width` items (`item_len` per item):
    /// the exact partial, else the full one, else the narrowest wider
    /// partial; `prefix` cuts a wider version down.
    fn read_versioned(
        &self,
        base: &str,
        width: u16,
        prefix: impl Fn(&[u8], u16) -> Result<Vec<u8>, FsError>,
    ) -> Result<Option<Vec<u8>>, FsError> {
        if width == TILE_WIDTH {
            return self.read_opt(&self.path_of(base));
        }
        let exact = self.path_of(&format!("{base}.p/{width}"));
        if let Some(b) = self.read_opt(&exact)? {
            return Ok(Some(b));
        }
        if let Some(b) = self.read_opt(&self.path_of(base))? {
            return prefix(&b, width).map(Some);
        }
        let pdir = self.path_of(&format!("{base}.p"));
        let list = match std::fs::read_dir(&pdir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&pdir, "list")(e)),
        };
        let mut best: Option<u16> = None;
        for ent in list {
            let ent = ent.map_err(io_err(&pdir, "list"))?;
            if let Some(w) = ent.file_name().to_str().and_then(|s| s.parse::<u16>().ok()) {
                if w > width && best.is_none_or(|b| w < b) {
                    best = Some(w);
                }
            }
        }
        match best {
            Some(w) => match self.read_opt(&pdir.join(w.to_string()))? {
                Some(b) => prefix(&b, width).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Bytes of tile `t` (exactly `32 * width`), or `None` if not stored.
    pub fn tile_bytes(&self, t: TileId) -> Result<Option<Vec<u8>>, FsError> {
        let base = TileId { width: 256, ..t }.path();
        let path = self.path_of(&t.path());
        let got = self.read_versioned(&base, t.width, |b, w| {
            let n = usize::from(w) * HASH_LEN;
            b.get(..n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| FsError::Corrupt {
                    path: path.clone(),
                    reason: format!("a wider version has {} bytes, fewer than {n}", b.len()),
                })
        })?;
        if let Some(b) = &got {
            if b.len() != usize::from(t.width) * HASH_LEN {
                return Err(FsError::Corrupt {
                    path: self.path_of(&t.path()),
                    reason: format!(
                        "{} bytes, expected {} (width {} x 32)",
                        b.len(),
                        usize::from(t.width) * HASH_LEN,
                        t.width
                    ),
                });
            }
        }
        Ok(got)
    }

    /// Bytes of entry bundle `b`, or `None` if not stored.
    pub fn bundle_bytes(&self, b: BundleId) -> Result<Option<Vec<u8>>, FsError> {
        let base = BundleId { width: 256, ..b }.path();
        let path = self.path_of(&b.path());
        let got = self.read_versioned(&base, b.width, |bytes, w| {
            let entries = parse_entry_bundle(bytes).map_err(|e| FsError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let take = entries
                .get(..usize::from(w))
                .ok_or_else(|| FsError::Corrupt {
                    path: path.clone(),
                    reason: format!(
                        "a wider version has {} entries, fewer than {w}",
                        entries.len()
                    ),
                })?;
            Ok(encode_entry_bundle(take)?)
        })?;
        if let Some(bytes) = &got {
            let n = parse_entry_bundle(bytes)
                .map_err(|e| FsError::Corrupt {
                    path: self.path_of(&b.path()),
                    reason: e.to_string(),
                })?
                .len();
            if n != usize::from(b.width) {
                return Err(FsError::Corrupt {
                    path: self.path_of(&b.path()),
                    reason: format!("{n} entries, expected {}", b.width),
                });
            }
        }
        Ok(got)
    }

    /// The entries of the bundle holding entry `index` in a tree of `size`.
    pub fn entry(&self, index: u64, size: u64) -> Result<Option<Vec<u8>>, FsError> {
        if index >= size {
            return Ok(None);
        }
        let bi = index >> 8;
        let width = if bi < size >> 8 {
            TILE_WIDTH
        } else {
            (size & 0xff) as u16
        };
        let Some(bytes) = self.bundle_bytes(BundleId { index: bi, width })? else {
            return Ok(None);
        };
        let entries = parse_entry_bundle(&bytes)?;
        Ok(entries.get((index & 0xff) as usize).map(|e| e.to_vec()))
    }

    /// A tile (full or partial) with its internal levels, cached: a tile
    /// path names fixed bytes, so `(level, index, width)` is a safe key.
    fn cached_tile(&self, t: TileId) -> Result<Arc<TileLevels>, FsError> {
        let key = (t.level, t.index, t.width);
        if let Ok(c) = self.cache.lock() {
            if let Some(levels) = c.get(&key) {
                return Ok(levels.clone());
            }
        }
        let bytes = self.tile_bytes(t)?.ok_or_else(|| FsError::Corrupt {
            path: self.path_of(&t.path()),
            reason: "tile missing below the committed size".into(),
        })?;
        let levels = Arc::new(tile_levels(hashes_of(&bytes)));
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= self.cache_cap {
                if let Some(k) = c.keys().next().copied() {
                    c.remove(&k);
                }
            }
            c.insert(key, levels.clone());
        }
        Ok(levels)
    }

    /// A [`HashReader`] over the tree of `size` leaves (which must not be
    /// above the durable size).
    pub fn at(&self, size: u64) -> SizedReader<'_> {
        SizedReader { store: self, size }
    }
}

/// [`HashReader`] over a [`TileStore`] for one tree size.
#[derive(Debug, Clone, Copy)]
pub struct SizedReader<'a> {
    store: &'a TileStore,
    size: u64,
}

impl SizedReader<'_> {
    fn node_inner(&self, id: NodeId) -> Result<Hash, FsError> {
        let missing = || FsError::Tree(TreeError::Store(StoreError::Missing { node: id }));
        let tl = usize::from(id.level) / TILE_HEIGHT as usize;
        if tl >= TILE_LEVELS {
            return Err(missing());
        }
        let r = u32::from(id.level) % TILE_HEIGHT;
        let first = id.index.checked_mul(1u64 << r).ok_or_else(missing)?;
        let tile_index = first >> 8;
        let off = (first & 0xff) as usize;
        let count = count_at(self.size, tl);
        if tile_index < count >> 8 {
            let t = self.store.cached_tile(TileId {
                level: tl as u8,
                index: tile_index,
                width: TILE_WIDTH,
            })?;
            return t
                .get(r as usize)
                .and_then(|l| l.get(off >> r))
                .copied()
                .ok_or_else(missing);
        }
        let width = (count & 0xff) as u16;
        if tile_index != count >> 8 || width == 0 {
            return Err(missing());
        }
        let span = 1usize << r;
        if off + span > usize::from(width) {
            return Err(missing());
        }
        // Partial tiles are cached too (per width); chunks_exact keeps
        // exactly the complete subtrees at each internal level.
        let t = self.store.cached_tile(TileId {
            level: tl as u8,
            index: tile_index,
            width,
        })?;
        t.get(r as usize)
            .and_then(|l| l.get(off >> r))
            .copied()
            .ok_or_else(missing)
    }
}

impl HashReader for SizedReader<'_> {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        self.node_inner(id).map_err(|e| match e {
            FsError::Tree(TreeError::Store(s)) => s,
            other => store_err(other),
        })
    }
}

// ------------------------------------------------------------------ writing

/// The [`HashStore`] under the [`Appender`]: reads go to the tiles on disk
/// (only needed at open, for the frontier); appends collect the new
/// tile-level hashes in memory, which [`FsLog`] then writes.
#[derive(Debug)]
struct TailStore {
    tiles: Arc<TileStore>,
    size: u64,
    /// Hashes of the rightmost (partial) tile of each tile level.
    tails: Vec<Vec<Hash>>,
    /// Full tiles completed by the last append, not yet written.
    completed: Vec<(TileId, Vec<Hash>)>,
}

impl HashReader for TailStore {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        self.tiles.at(self.size).node(id)
    }
}

impl HashStore for TailStore {
    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn append(&mut self, old: u64, new: u64, nodes: &[(NodeId, Hash)]) -> Result<(), StoreError> {
        if old != self.size {
            return Err(StoreError::SizeMismatch {
                expected: old,
                actual: self.size,
            });
        }
        let mut tails = self.tails.clone();
        let mut completed = Vec::new();
        for (id, h) in nodes {
            if u32::from(id.level) % TILE_HEIGHT != 0 {
                continue;
            }
            let tl = usize::from(id.level) / TILE_HEIGHT as usize;
            let Some(tail) = tails.get_mut(tl) else {
                return Err(StoreError::OutOfOrder {
                    node: *id,
                    level: id.level,
                    expected: 0,
                });
            };
            let expected = (id.index & !0xff) + tail.len() as u64;
            if id.index != expected {
                return Err(StoreError::OutOfOrder {
                    node: *id,
                    level: id.level,
                    expected,
                });
            }
            tail.push(*h);
            if tail.len() == usize::from(TILE_WIDTH) {
                completed.push((
                    TileId {
                        level: tl as u8,
                        index: id.index >> 8,
                        width: TILE_WIDTH,
                    },
                    std::mem::take(tail),
                ));
            }
        }
        self.tails = tails;
        self.completed = completed;
        self.size = new;
        Ok(())
    }
}

/// What the durable log committed last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed checkpoint note, as stored and served.
    pub checkpoint: Vec<u8>,
}

/// Outcome of one committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// Index of the first entry of the batch.
    pub first_index: u64,
    /// The new durable state.
    pub committed: Committed,
}

/// The durable log writer (single owner). See the module documentation.
pub struct FsLog {
    dir: PathBuf,
    tmp: PathBuf,
    origin: String,
    signer: NoteSigner,
    tiles: Arc<TileStore>,
    appender: Appender<TailStore>,
    entries_tail: Vec<Vec<u8>>,
    committed: Committed,
    tmp_seq: u64,
    /// Exclusive advisory lock on `<dir>/.lock`, held while the log is open
    /// (released by the OS when the process exits, so a crash leaves no
    /// stale lock).
    _lock: File,
}

impl std::fmt::Debug for FsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsLog")
            .field("dir", &self.dir)
            .field("origin", &self.origin)
            .field("size", &self.committed.size)
            .finish_non_exhaustive()
    }
}

/// Name of the writer lock file in the log directory.
pub const LOCK_FILE: &str = ".lock";

fn lock_dir(dir: &Path) -> Result<File, FsError> {
    let path = dir.join(LOCK_FILE);
    custody_fs::lock_exclusive(&path)?.ok_or(FsError::Locked { path })
}

/// custody-fs's errors as this store's (same path and step).
impl From<custody_fs::FsError> for FsError {
    fn from(e: custody_fs::FsError) -> Self {
        match e {
            custody_fs::FsError::Io {
                path,
                action,
                error,
            } => FsError::Io {
                path,
                op: action,
                source: error,
            },
            other => FsError::Io {
                path: PathBuf::new(),
                op: "file operation",
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

fn remove_if_exists(path: &Path) -> Result<bool, FsError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, "remove")(e)),
    }
}

impl FsLog {
    /// Open the log in `dir`, creating it (with a signed empty checkpoint)
    /// if it has none. `origin` is the checkpoint origin line; checkpoints
    /// are signed with `signer`. Recovers from a crash as described in the
    /// module documentation.
    pub fn open(
        dir: impl Into<PathBuf>,
        origin: &str,
        signer: NoteSigner,
    ) -> Result<FsLog, FsError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
        // Recovery below truncates whatever lies beyond the committed
        // checkpoint: with a second writer live, that is its in-flight
        // batch. Take the lock first.
        let lock = lock_dir(&dir)?;
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp, "clean"))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp, "create directory"))?;
        let tiles = Arc::new(TileStore::new(&dir));
        let cp_path = dir.join("checkpoint");
        let verifier = LogVerifier::new(origin, signer.verifier_key())?;
        let (size, root, note) = match tiles.read_opt(&cp_path)? {
            Some(bytes) => {
                let v = verifier.verify(&bytes).map_err(|e| FsError::Corrupt {
                    path: cp_path.clone(),
                    reason: format!("checkpoint does not verify with the log key: {e}"),
                })?;
                (v.checkpoint.size, v.checkpoint.root, bytes)
            }
            None => (0, crate::hash::EMPTY_ROOT, Vec::new()),
        };
        // Remove what a crashed batch wrote beyond the committed size.
        remove_beyond(&dir, size)?;
        let mut tails = Vec::new();
        for tl in 0..TILE_LEVELS {
            let count = count_at(size, tl);
            let width = (count & 0xff) as u16;
            if width == 0 {
                tails.push(Vec::new());
                continue;
            }
            let t = TileId {
                level: tl as u8,
                index: count >> 8,
                width,
            };
            let bytes = tiles.tile_bytes(t)?.ok_or_else(|| FsError::Corrupt {
                path: dir.join(t.path()),
                reason: format!("partial tile for the committed size {size} is missing"),
            })?;
            tails.push(hashes_of(&bytes));
        }
        let mut entries_tail = Vec::new();
        if size & 0xff != 0 {
            let b = BundleId {
                index: size >> 8,
                width: (size & 0xff) as u16,
            };
            let bytes = tiles.bundle_bytes(b)?.ok_or_else(|| FsError::Corrupt {
                path: dir.join(b.path()),
                reason: format!("entry bundle for the committed size {size} is missing"),
            })?;
            entries_tail = parse_entry_bundle(&bytes)?
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
        }
        let computed = root_at(&tiles.at(size), size)?;
        if computed != root {
            return Err(FsError::Corrupt {
                path: dir.clone(),
                reason: format!(
                    "tiles give root {} at size {size}, the checkpoint says {}",
                    crate::hash::hex(&computed),
                    crate::hash::hex(&root)
                ),
            });
        }
        let store = TailStore {
            tiles: tiles.clone(),
            size,
            tails,
            completed: Vec::new(),
        };
        let appender = Appender::open(store)?;
        let mut log = FsLog {
            dir,
            tmp,
            origin: origin.to_owned(),
            signer,
            tiles,
            appender,
            entries_tail,
            committed: Committed {
                size,
                root,
                checkpoint: note,
            },
            tmp_seq: 0,
            _lock: lock,
        };
        if log.committed.checkpoint.is_empty() {
            let mut dirs = BTreeSet::new();
            log.write_checkpoint(&mut dirs)?;
        }
        Ok(log)
    }

    /// The read side (share it with readers).
    pub fn tiles(&self) -> &Arc<TileStore> {
        &self.tiles
    }

    /// The last committed state.
    pub fn committed(&self) -> &Committed {
        &self.committed
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn write_file(
        &mut self,
        rel: &str,
        data: &[u8],
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<(), FsError> {
        self.tmp_seq += 1;
        let tmp = self.tmp.join(format!("{}.tmp", self.tmp_seq));
        let dest = self.dir.join(rel);
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
            f.write_all(data).map_err(io_err(&tmp, "write"))?;
            f.sync_data().map_err(io_err(&tmp, "fsync"))?;
        }
        if let Some(parent) = dest.parent() {
            if !parent.is_dir() {
                // Record every directory we create, and its parent, for fsync.
                let mut missing = Vec::new();
                let mut p = parent.to_path_buf();
                while !p.is_dir() {
                    missing.push(p.clone());
                    match p.parent() {
                        Some(pp) => p = pp.to_path_buf(),
                        None => break,
                    }
                }
                std::fs::create_dir_all(parent).map_err(io_err(parent, "create directory"))?;
                for m in missing {
                    if let Some(pp) = m.parent() {
                        dirs.insert(pp.to_path_buf());
                    }
                    dirs.insert(m);
                }
            }
            dirs.insert(parent.to_path_buf());
        }
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest, "rename into place"))?;
        Ok(())
    }

    fn write_checkpoint(&mut self, dirs: &mut BTreeSet<PathBuf>) -> Result<(), FsError> {
        let cp = self.appender.checkpoint(&self.origin)?;
        let note = cp.sign(&self.signer)?.to_bytes();
        for d in std::mem::take(dirs) {
            custody_fs::sync_dir(&d)?;
        }
        let mut cp_dirs = BTreeSet::new();
        self.write_file("checkpoint", &note, &mut cp_dirs)?;
        for d in cp_dirs {
            custody_fs::sync_dir(&d)?;
        }
        self.committed = Committed {
            size: cp.size,
            root: cp.root,
            checkpoint: note,
        };
        Ok(())
    }

    /// Append a batch of entries and commit it durably (one checkpoint).
    /// On error the batch is not committed, but the in-memory state may be
    /// ahead of the disk: drop this `FsLog` and [`FsLog::open`] again.
    pub fn append_batch<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<BatchResult, FsError> {
        for e in entries {
            if e.as_ref().len() > MAX_ENTRY_LEN {
                return Err(FsError::EntryTooLarge {
                    len: e.as_ref().len(),
                });
            }
        }
        let old = self.committed.size;
        let r = self.appender.append_entries(entries)?;
        let new = r.new_size;
        let mut dirs = BTreeSet::new();
        // Tiles: full ones completed by this batch, then the new partials.
        let completed = std::mem::take(&mut self.appender_store_mut().completed);
        let mut full: HashMap<(u8, u64), Vec<Hash>> = completed
            .into_iter()
            .map(|(t, h)| ((t.level, t.index), h))
            .collect();
        for t in new_tiles(old, new) {
            let data: Vec<u8> = if t.is_full() {
                full.remove(&(t.level, t.index))
                    .ok_or_else(|| FsError::Corrupt {
                        path: self.dir.join(t.path()),
                        reason: "internal: full tile not produced by the append".into(),
                    })?
                    .concat()
            } else {
                self.appender_store_mut()
                    .tails
                    .get(usize::from(t.level))
                    .map(|h| h.concat())
                    .unwrap_or_default()
            };
            self.write_file(&t.path(), &data, &mut dirs)?;
        }
        // Entry bundles.
        let mut pos = 0usize;
        for b in new_bundles(old, new) {
            let have = self.entries_tail.len();
            let want = usize::from(b.width);
            let add = want.saturating_sub(have);
            let chunk = entries
                .get(pos..pos + add)
                .ok_or_else(|| FsError::Corrupt {
                    path: self.dir.join(b.path()),
                    reason: "internal: bundle plan does not match the batch".into(),
                })?;
            pos += add;
            self.entries_tail
                .extend(chunk.iter().map(|e| e.as_ref().to_vec()));
            let data = encode_entry_bundle(&self.entries_tail)?;
            self.write_file(&b.path(), &data, &mut dirs)?;
            if want == usize::from(TILE_WIDTH) {
                self.entries_tail.clear();
            }
        }
        self.write_checkpoint(&mut dirs)?;
        // Superseded partials are garbage now (best effort: readers of an
        // old width are served a prefix of the wider version).
        for t in new_tiles(0, old) {
            let tl = usize::from(t.level);
            if !t.is_full() && count_at(old, tl) != count_at(new, tl) {
                let _ = remove_if_exists(&self.dir.join(t.path()));
            }
        }
        for b in new_bundles(0, old) {
            if b.width != TILE_WIDTH && old != new {
                let _ = remove_if_exists(&self.dir.join(b.path()));
            }
        }
        Ok(BatchResult {
            first_index: r.first_index,
            committed: self.committed.clone(),
        })
    }

    fn appender_store_mut(&mut self) -> &mut TailStore {
        self.appender.store_mut()
    }
}

/// Delete tiles and bundles beyond the committed `size` (left by a batch
/// that crashed before its checkpoint was renamed into place).
fn remove_beyond(dir: &Path, size: u64) -> Result<(), FsError> {
    for tl in 0..=TILE_LEVELS {
        // tl == TILE_LEVELS stands for the entry bundles (same numbering as
        // level 0).
        let count = if tl == TILE_LEVELS {
            size
        } else {
            count_at(size, tl)
        };
        let full = count >> 8;
        let width = (count & 0xff) as u16;
        let base = |index: u64| -> String {
            if tl == TILE_LEVELS {
                BundleId { index, width: 256 }.path()
            } else {
                TileId {
                    level: tl as u8,
                    index,
                    width: 256,
                }
                .path()
            }
        };
        let mut index = full;
        loop {
            let f = dir.join(base(index));
            let pdir = dir.join(format!("{}.p", base(index)));
            let had_full = remove_if_exists(&f)?;
            let had_p = pdir.is_dir();
            if had_p {
                let keep = if index == full { width } else { 0 };
                for ent in std::fs::read_dir(&pdir).map_err(io_err(&pdir, "list"))? {
                    let ent = ent.map_err(io_err(&pdir, "list"))?;
                    let w = ent.file_name().to_str().and_then(|s| s.parse::<u16>().ok());
                    if w.is_none_or(|w| w > keep) {
                        remove_if_exists(&ent.path())?;
                    }
                }
            }
            if !had_full && !had_p {
                break;
            }
            index += 1;
        }
    }
    Ok(())
}

// ------------------------------------------------------------ group commit

/// Group-commit settings of a [`LogWriter`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Most entries in one batch.
    pub max_batch: usize,
    /// How long the writer waits for more entries after the first one of a
    /// batch arrived (0: take only what is already queued).
    pub max_delay: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: 4096,
            max_delay: Duration::from_millis(1),
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<u64, String>>;

/// What the writer thread receives.
enum Msg {
    /// Append one entry and answer with its index once durable.
    Append(Vec<u8>, Reply),
    /// Commit what is queued before this, then stop and release the log.
    Close,
}

/// A pending append: wait on it with [`PendingAppend::wait`] (async) or
/// [`PendingAppend::wait_blocking`].
#[derive(Debug)]
pub struct PendingAppend(tokio::sync::oneshot::Receiver<Result<u64, String>>);

impl PendingAppend {
    /// The entry's index once its batch is durable.
    pub async fn wait(self) -> Result<u64, FsError> {
        match self.0.await {
            Ok(r) => r.map_err(FsError::Closed),
            Err(_) => Err(FsError::Closed("writer stopped before answering".into())),
        }
    }

    /// Same, for threads outside an async runtime.
    pub fn wait_blocking(self) -> Result<u64, FsError> {
        match self.0.blocking_recv() {
            Ok(r) => r.map_err(FsError::Closed),
            Err(_) => Err(FsError::Closed("writer stopped before answering".into())),
        }
    }
}

/// Handle to the group-commit writer thread. Cheap to clone.
///
/// Dropping the last handle stops the thread and waits for it, so the log's
/// directory lock is released when the drop returns (a restart in the same
/// process can open the log again at once).
#[derive(Debug, Clone)]
pub struct LogWriter {
    // Field order matters: `tx` (the channel) drops first, which ends the
    // writer loop; `thread` drops last and joins it.
    tx: mpsc::Sender<Msg>,
    tiles: Arc<TileStore>,
    committed: Arc<RwLock<Arc<Committed>>>,
    stats: Arc<Mutex<WriterStats>>,
    thread: Arc<WriterThread>,
}

/// Joins the writer thread when the last [`LogWriter`] is gone.
#[derive(Debug)]
struct WriterThread(Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        let handle = match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            // The last sender is already dropped: the loop returns after at
            // most the batch it is committing.
            let _ = h.join();
        }
    }
}

/// Counters of a [`LogWriter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterStats {
    /// Batches committed.
    pub batches: u64,
    /// Entries committed.
    pub entries: u64,
    /// Largest batch.
    pub max_batch: usize,
    /// Batches that failed.
    pub failures: u64,
}

impl LogWriter {
    /// Move `log` to a writer thread.
    pub fn spawn(log: FsLog, opts: WriterOptions) -> Result<LogWriter, FsError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let tiles = log.tiles().clone();
        let committed = Arc::new(RwLock::new(Arc::new(log.committed().clone())));
        let stats = Arc::new(Mutex::new(WriterStats::default()));
        let (c2, s2) = (committed.clone(), stats.clone());
        let handle = std::thread::Builder::new()
            .name("custody-log-writer".into())
            .spawn(move || writer_loop(log, rx, opts, c2, s2))
            .map_err(|e| FsError::Closed(format!("cannot start the writer thread: {e}")))?;
        Ok(LogWriter {
            tx,
            tiles,
            committed,
            stats,
            thread: Arc::new(WriterThread(Mutex::new(Some(handle)))),
        })
    }

    /// Stop the writer: entries queued before this call are committed and
    /// answered, later ones fail with [`FsError::Closed`]. Returns once the
    /// thread has exited and the log directory's lock is released (blocks
    /// for at most the batch in flight). Idempotent.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        let handle = match self.thread.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Queue an entry; the returned handle resolves to its index once the
    /// batch holding it is durable.
    pub fn submit(&self, entry: Vec<u8>) -> Result<PendingAppend, FsError> {
        if entry.len() > MAX_ENTRY_LEN {
            return Err(FsError::EntryTooLarge { len: entry.len() });
        }
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Append(entry, rtx))
            .map_err(|_| FsError::Closed("writer thread has stopped".into()))?;
        Ok(PendingAppend(rrx))
    }

    /// Append and wait until durable (async).
    pub async fn append(&self, entry: Vec<u8>) -> Result<u64, FsError> {
        self.submit(entry)?.wait().await
    }

    /// Append and wait until durable (blocking).
    pub fn append_blocking(&self, entry: Vec<u8>) -> Result<u64, FsError> {
        self.submit(entry)?.wait_blocking()
    }

    /// The last committed state.
    pub fn committed(&self) -> Arc<Committed> {
        match self.committed.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The read side.
    pub fn tiles(&self) -> &Arc<TileStore> {
        &self.tiles
    }

    /// Counters.
    pub fn stats(&self) -> WriterStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

fn writer_loop(
    mut log: FsLog,
    rx: mpsc::Receiver<Msg>,
    opts: WriterOptions,
    committed: Arc<RwLock<Arc<Committed>>>,
    stats: Arc<Mutex<WriterStats>>,
) {
    let max_batch = opts.max_batch.max(1);
    loop {
        let first = match rx.recv() {
            Ok(Msg::Append(e, r)) => (e, r),
            Ok(Msg::Close) | Err(_) => return, // closed, or every handle dropped
        };
        let mut closing = false;
        let mut batch = vec![first];
        let deadline = Instant::now() + opts.max_delay;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Append(e, r)) => batch.push((e, r)),
                Ok(Msg::Close) => {
                    closing = true;
                    break;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(Msg::Append(e, r)) => batch.push((e, r)),
                        Ok(Msg::Close) => {
                            closing = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        let (entries, replies): (Vec<Vec<u8>>, Vec<Reply>) = batch.into_iter().unzip();
        match log.append_batch(&entries) {
            Ok(r) => {
                if let Ok(mut g) = committed.write() {
                    *g = Arc::new(r.committed.clone());
                }
                if let Ok(mut s) = stats.lock() {
                    s.batches += 1;
                    s.entries += entries.len() as u64;
                    s.max_batch = s.max_batch.max(entries.len());
                }
                for (i, reply) in replies.into_iter().enumerate() {
                    let _ = reply.send(Ok(r.first_index + i as u64));
                }
            }
            Err(e) => {
                let msg = format!("append batch of {} entries failed: {e}", entries.len());
                tracing::warn!("{msg}");
                if let Ok(mut s) = stats.lock() {
                    s.failures += 1;
                }
                for reply in replies {
                    let _ = reply.send(Err(msg.clone()));
                }
                // The in-memory tree may be ahead of the disk: recover.
                let FsLog {
                    dir,
                    origin,
                    signer,
                    _lock,
                    ..
                } = log;
                // Release our own lock, or the reopen would find it held.
                drop(_lock);
                match FsLog::open(dir, &origin, signer) {
                    Ok(l) => log = l,
                    Err(e) => {
                        tracing::error!(error = %e, "log writer cannot recover, stopping");
                        return;
                    }
                }
            }
        }
        if closing {
            return;
        }
    }
}
