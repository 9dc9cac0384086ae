//! C2SP `tlog-tiles`: tile and entry bundle paths, which tiles a tree size
//! has, building tiles from a store, reading hashes back from fetched tiles
//! ([`TileHashReader`]) and the entry bundle format.
//!
//! A tile at level `L`, index `N` holds up to 256 consecutive tree hashes of
//! tree level `8 * L`, starting at hash index `N * 256`. Full tiles (256
//! hashes) never change; the rightmost tile of each level is partial.

use std::collections::BTreeMap;

use crate::hash::{leaf_hash, node_hash, Hash, HASH_LEN};
use crate::store::{HashReader, NodeId, StoreError};
use crate::tree::{consistency_proof, inclusion_proof, root_at, TreeError};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile (and entries in a full bundle).
pub const TILE_WIDTH: u16 = 256;
/// Highest tile level allowed in a path.
pub const MAX_TILE_LEVEL: u8 = 63;
/// Highest tile level a 64-bit tree can actually have.
const TREE_TILE_LEVELS: u8 = 8;

/// Errors of tile paths, tile data and entry bundles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// A tile or bundle path that breaks the tlog-tiles path rules.
    #[error("tile path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// The rule broken.
        reason: String,
    },
    /// Tile width outside 1..=256, or level outside 0..=63.
    #[error("tile: {reason}")]
    BadTileId {
        /// What is out of range.
        reason: String,
    },
    /// Tile data whose length is not `32 * width`.
    #[error("tile {path}: {len} bytes of data, expected {expected} (width {width} x 32)")]
    BadTileLength {
        /// Tile path.
        path: String,
        /// Data length.
        len: usize,
        /// Expected length.
        expected: usize,
        /// Tile width.
        width: u16,
    },
    /// Entry bundle ends inside a length prefix or an entry.
    #[error("entry bundle: truncated at byte {offset}: entry {entry} needs {needed} more bytes, {available} left")]
    BundleTruncated {
        /// Byte offset of the incomplete item.
        offset: usize,
        /// Index of the entry within the bundle.
        entry: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// More than 256 entries in a bundle.
    #[error("entry bundle: more than {max} entries")]
    BundleTooManyEntries {
        /// The limit (256).
        max: usize,
    },
    /// An entry longer than the u16 length prefix allows.
    #[error("entry bundle: entry {entry} is {len} bytes, the limit is 65535")]
    EntryTooLong {
        /// Entry index in the bundle.
        entry: usize,
        /// Its length.
        len: usize,
    },
    /// Bundle entry count differs from the matching level-0 tile width.
    #[error("entry bundle: {got} entries, but the level-0 tile has {want} hashes")]
    BundleCount {
        /// Entries in the bundle.
        got: usize,
        /// Hashes in the tile.
        want: usize,
    },
    /// A bundle entry does not hash to the level-0 tile hash.
    #[error(
        "entry bundle: entry {entry} does not hash to the level-0 tile hash at the same position"
    )]
    BundleMismatch {
        /// Entry index in the bundle.
        entry: usize,
    },
}

/// A Merkle tree tile: `level` (tile level, tree level `8 * level`), tile
/// `index` within the level, and `width` (1..=256; 256 is a full tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    /// Tile level.
    pub level: u8,
    /// Tile index within the level.
    pub index: u64,
    /// Number of hashes (256 = full).
    pub width: u16,
}

/// An entry bundle: `index` (same numbering as level-0 tiles) and `width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleId {
    /// Bundle index.
    pub index: u64,
    /// Number of entries (256 = full).
    pub width: u16,
}

/// A parsed `tile/...` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`
    Tile(TileId),
    /// `tile/entries/<N>[.p/<W>]`
    Entries(BundleId),
}

fn check_width(width: u16) -> Result<(), TileError> {
    if width == 0 || width > TILE_WIDTH {
        return Err(TileError::BadTileId {
            reason: format!("width {width} is outside 1..=256"),
        });
    }
    Ok(())
}

impl TileId {
    /// Checked constructor.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Self, TileError> {
        if level > MAX_TILE_LEVEL {
            return Err(TileError::BadTileId {
                reason: format!("level {level} is above 63"),
            });
        }
        check_width(width)?;
        Ok(TileId {
            level,
            index,
            width,
        })
    }

    /// True for a full (256-hash, immutable) tile.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The URL path below the log prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, index_path(self.index, self.width))
    }

    /// Tree level of the hashes in this tile.
    pub fn tree_level(&self) -> u32 {
        u32::from(self.level) * TILE_HEIGHT
    }
}

impl BundleId {
    /// Checked constructor.
    pub fn new(index: u64, width: u16) -> Result<Self, TileError> {
        check_width(width)?;
        Ok(BundleId { index, width })
    }

    /// The URL path below the log prefix, e.g. `tile/entries/x001/234.p/3`.
    pub fn path(&self) -> String {
        format!("tile/entries/{}", index_path(self.index, self.width))
    }

    /// The level-0 tile holding the leaf hashes of this bundle's entries.
    pub fn tile(&self) -> TileId {
        TileId {
            level: 0,
            index: self.index,
            width: self.width,
        }
    }

    /// Index of the first entry in the bundle.
    pub fn first_entry(&self) -> Option<u64> {
        self.index.checked_mul(u64::from(TILE_WIDTH))
    }
}

impl std::fmt::Display for TileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

impl std::fmt::Display for BundleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

/// `<N>[.p/<W>]` with N in x-prefixed 3-digit groups.
fn index_path(index: u64, width: u16) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut s = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            s.push_str(&format!("x{g:03}/"));
        } else {
            s.push_str(&format!("{g:03}"));
        }
    }
    if width != TILE_WIDTH {
        s.push_str(&format!(".p/{width}"));
    }
    s
}

fn parse_small_decimal(s: &str, max: u16) -> Option<u16> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse::<u16>().ok().filter(|v| *v <= max)
}

/// Parse `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` strictly
/// (canonical encoding only: every accepted path re-encodes to itself).
pub fn parse_tile_path(path: &str) -> Result<TilePath, TileError> {
    let bad = |reason: &str| TileError::BadPath {
        path: path.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let rest = path
        .strip_prefix("tile/")
        .ok_or_else(|| bad("must start with tile/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 2 || parts.len() > 10 {
        return Err(bad("wrong number of path elements"));
    }
    let (kind, mut idx_parts) = (parts[0], parts[1..].to_vec());
    let mut width = TILE_WIDTH;
    if idx_parts.len() >= 2 {
        let n = idx_parts.len();
        if let Some(stripped) = idx_parts[n - 2].strip_suffix(".p") {
            let w = parse_small_decimal(idx_parts[n - 1], TILE_WIDTH - 1)
                .filter(|w| *w >= 1)
                .ok_or_else(|| {
                    bad("partial width must be a decimal 1..=255 without leading zeroes")
                })?;
            width = w;
            idx_parts.truncate(n - 1);
            idx_parts[n - 2] = stripped;
        }
    }
    let mut index: u64 = 0;
    let groups = idx_parts.len();
    for (i, g) in idx_parts.iter().enumerate() {
        let last = i + 1 == groups;
        let digits = if last {
            *g
        } else {
            g.strip_prefix('x')
                .ok_or_else(|| bad("all index elements but the last must start with 'x'"))?
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("index elements must be exactly 3 decimal digits"));
        }
        let v: u64 = digits
            .parse()
            .map_err(|_| bad("index element is not a number"))?;
        if i == 0 && !last && v == 0 {
            return Err(bad("leading index element x000 is not canonical"));
        }
        index = index
            .checked_mul(1000)
            .and_then(|x| x.checked_add(v))
            .ok_or_else(|| bad("index does not fit in 64 bits"))?;
    }
    let parsed = if kind == "entries" {
        TilePath::Entries(BundleId { index, width })
    } else {
        let level = parse_small_decimal(kind, u16::from(MAX_TILE_LEVEL)).ok_or_else(|| {
            bad("level must be \"entries\" or a decimal 0..=63 without leading zeroes")
        })?;
        TilePath::Tile(TileId {
            level: level as u8,
            index,
            width,
        })
    };
    let again = match parsed {
        TilePath::Tile(t) => t.path(),
        TilePath::Entries(b) => b.path(),
    };
    if again != path {
        return Err(bad("not in canonical form"));
    }
    Ok(parsed)
}

/// Number of hashes at tree level `8 * tile_level` in a tree of `size` leaves.
fn hashes_at_tile_level(size: u64, tile_level: u8) -> u64 {
    size.checked_shr(u32::from(tile_level) * TILE_HEIGHT)
        .unwrap_or(0)
}

/// Tiles that a tree of `new_size` has and a tree of `old_size` did not
/// (new full tiles, and new or wider partial tiles), by level then index.
/// These are the tiles a log writes after growing from `old_size`.
pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in 0..TREE_TILE_LEVELS {
        let count_new = hashes_at_tile_level(new_size, level);
        if count_new == 0 {
            break;
        }
        let count_old = hashes_at_tile_level(old_size.min(new_size), level);
        let (full_new, width_new) = (count_new >> 8, (count_new & 0xff) as u16);
        let (full_old, width_old) = (count_old >> 8, (count_old & 0xff) as u16);
        for index in full_old..full_new {
            out.push(TileId {
                level,
                index,
                width: TILE_WIDTH,
            });
        }
        if width_new > 0 && (full_new > full_old || width_new != width_old) {
            out.push(TileId {
                level,
                index: full_new,
                width: width_new,
            });
        }
    }
    out
}

/// Entry bundles that a tree of `new_size` has and one of `old_size` did not.
pub fn new_bundles(old_size: u64, new_size: u64) -> Vec<BundleId> {
    new_tiles(old_size, new_size)
        .into_iter()
        .filter(|t| t.level == 0)
        .map(|t| BundleId {
            index: t.index,
            width: t.width,
        })
        .collect()
}

/// The tile, as published for a tree of `size` leaves, that contains
/// everything needed to compute perfect subtree `node`; `None` if the node
/// is not complete in that tree.
pub fn tile_for_node(node: NodeId, size: u64) -> Option<TileId> {
    let end = node
        .index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(u32::from(node.level))?)?;
    if end > size {
        return None;
    }
    let tile_level = (u32::from(node.level) / TILE_HEIGHT) as u8;
    let r = u32::from(node.level) % TILE_HEIGHT;
    let first = node.index.checked_mul(1u64 << r)?;
    let index = first >> 8;
    let count = hashes_at_tile_level(size, tile_level);
    let width = if index < (count >> 8) {
        TILE_WIDTH
    } else {
        (count & 0xff) as u16
    };
    Some(TileId {
        level: tile_level,
        index,
        width,
    })
}

/// Records which nodes a computation reads, answering with zero hashes.
struct Recorder(std::cell::RefCell<Vec<NodeId>>);

impl HashReader for Recorder {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        self.0.borrow_mut().push(id);
        Ok([0u8; 32])
    }
}

fn tiles_for<F>(size: u64, f: F) -> Result<Vec<TileId>, TreeError>
where
    F: FnOnce(&Recorder) -> Result<(), TreeError>,
{
    let rec = Recorder(std::cell::RefCell::new(Vec::new()));
    f(&rec)?;
    let mut tiles: Vec<TileId> = rec
        .0
        .into_inner()
        .into_iter()
        .map(|n| tile_for_node(n, size).ok_or(TreeError::Store(StoreError::Missing { node: n })))
        .collect::<Result<_, _>>()?;
    tiles.sort();
    tiles.dedup();
    Ok(tiles)
}

/// Tiles needed to compute the root of the tree of `size` leaves.
pub fn tiles_for_root(size: u64) -> Result<Vec<TileId>, TreeError> {
    tiles_for(size, |r| root_at(r, size).map(|_| ()))
}

/// Tiles needed for the inclusion proof of leaf `index` in tree `size`
/// (plus the level-0 tile holding the leaf hash itself).
pub fn tiles_for_inclusion(index: u64, size: u64) -> Result<Vec<TileId>, TreeError> {
    tiles_for(size, |r| {
        inclusion_proof(r, index, size)?;
        r.node(NodeId::new(0, index))?;
        Ok(())
    })
}

/// Tiles needed for the consistency proof from `old_size` to `new_size`,
/// as published for `new_size`.
pub fn tiles_for_consistency(old_size: u64, new_size: u64) -> Result<Vec<TileId>, TreeError> {
    tiles_for(new_size, |r| {
        consistency_proof(r, old_size, new_size).map(|_| ())
    })
}

/// Build a tile's bytes (concatenated hashes) from a hash store.
pub fn read_tile<R: HashReader + ?Sized>(reader: &R, tile: TileId) -> Result<Vec<u8>, TreeError> {
    let level = u8::try_from(tile.tree_level())
        .ok()
        .filter(|l| *l < 64)
        .ok_or(TreeError::Store(StoreError::Missing {
            node: NodeId::new(u8::MAX, tile.index),
        }))?;
    let mut out = Vec::with_capacity(usize::from(tile.width) * HASH_LEN);
    for i in 0..u64::from(tile.width) {
        let idx = tile
            .index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|x| x.checked_add(i))
            .ok_or(TreeError::Store(StoreError::Missing {
                node: NodeId::new(level, u64::MAX),
            }))?;
        out.extend_from_slice(&reader.node(NodeId::new(level, idx))?);
    }
    Ok(out)
}

/// A [`HashReader`] backed only by tiles, for clients and auditors: insert
/// the tiles named by [`tiles_for_inclusion`] / [`tiles_for_consistency`] /
/// [`tiles_for_root`], then generate proofs or roots with
/// [`crate::inclusion_proof`] etc.
///
/// Tiles are untrusted input: whatever this reader returns must be checked
/// against a verified checkpoint (verify the proof against its root, or
/// compare [`crate::root_at`] with it), which is what makes them safe to use.
#[derive(Debug, Clone, Default)]
pub struct TileHashReader {
    tiles: BTreeMap<(u8, u64), Vec<Hash>>,
}

impl TileHashReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a fetched tile. The data must be exactly `32 * width` bytes. If a
    /// wider version of the same tile is already present it is kept.
    pub fn insert(&mut self, tile: TileId, data: &[u8]) -> Result<(), TileError> {
        check_width(tile.width)?;
        let expected = usize::from(tile.width) * HASH_LEN;
        if data.len() != expected {
            return Err(TileError::BadTileLength {
                path: tile.path(),
                len: data.len(),
                expected,
                width: tile.width,
            });
        }
        let hashes: Vec<Hash> = data
            .chunks_exact(HASH_LEN)
            .map(|c| {
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect();
        let slot = self.tiles.entry((tile.level, tile.index)).or_default();
        if hashes.len() > slot.len() {
            *slot = hashes;
        }
        Ok(())
    }

    /// Number of tiles held.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// True if no tile is held.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }
}

impl HashReader for TileHashReader {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        let missing = StoreError::Missing { node: id };
        let tile_level = (u32::from(id.level) / TILE_HEIGHT) as u8;
        let r = u32::from(id.level) % TILE_HEIGHT;
        let first = id
            .index
            .checked_mul(1u64 << r)
            .ok_or_else(|| StoreError::Missing { node: id })?;
        let tile = self.tiles.get(&(tile_level, first >> 8)).ok_or(missing)?;
        let off = (first & 0xff) as usize;
        let span = 1usize << r;
        let Some(slice) = tile.get(off..off + span) else {
            return Err(StoreError::Missing { node: id });
        };
        let mut layer: Vec<Hash> = slice.to_vec();
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        layer.pop().ok_or(StoreError::Missing { node: id })
    }
}

/// Encode entries as an entry bundle (big-endian u16 length prefixes).
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    if entries.len() > usize::from(TILE_WIDTH) {
        return Err(TileError::BundleTooManyEntries {
            max: usize::from(TILE_WIDTH),
        });
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLong {
            entry: i,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Parse an entry bundle into its entries (at most 256).
pub fn parse_entry_bundle(data: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut entries = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        if entries.len() == usize::from(TILE_WIDTH) {
            return Err(TileError::BundleTooManyEntries {
                max: usize::from(TILE_WIDTH),
            });
        }
        let Some((len_bytes, after)) = rest.split_first_chunk::<2>() else {
            return Err(TileError::BundleTruncated {
                offset,
                entry: entries.len(),
                needed: 2,
                available: rest.len(),
            });
        };
        let len = usize::from(u16::from_be_bytes(*len_bytes));
        if after.len() < len {
            return Err(TileError::BundleTruncated {
                offset,
                entry: entries.len(),
                needed: len,
                available: after.len(),
            });
        }
        let (entry, tail) = after.split_at(len);
        entries.push(entry);
        rest = tail;
    }
    Ok(entries)
}

/// Check that bundle entries hash to the hashes of the matching level-0
/// tile (as raw tile bytes), in count and in order.
pub fn check_bundle_against_tile(entries: &[&[u8]], level0_tile: &[u8]) -> Result<(), TileError> {
    let want = level0_tile.len() / HASH_LEN;
    if !level0_tile.len().is_multiple_of(HASH_LEN) || entries.len() != want {
        return Err(TileError::BundleCount {
            got: entries.len(),
            want,
        });
    }
    for (i, (e, h)) in entries
        .iter()
        .zip(level0_tile.chunks_exact(HASH_LEN))
        .enumerate()
    {
        if leaf_hash(e) != h {
            return Err(TileError::BundleMismatch { entry: i });
        }
    }
    Ok(())
}
