//! The server's transparency log (issue #7): every release, delivery,
//! install report, yank, key change, decommission and admin action is an
//! entry of an RFC 6962 log in C2SP tlog-tiles layout, stored durably by
//! custody-log's file-system store (group commit: an append returns once
//! the checkpoint covering it is on disk).
//!
//! - Data: `<data-dir>/log/` (tiles, entry bundles, `checkpoint`,
//!   `cosigned`, optional `witnesses` allow-list). Key:
//!   `<data-dir>/keys/log/log.key` (note private key, mode 0600) and
//!   `log.vkey` (its verifier key).
//! - Entry format: [`LogEntry`] (JSON, version [`ENTRY_FORMAT_VERSION`]),
//!   documented in `docs/LOG.md`.
//! - HTTP ([`router`]): `GET /log/v1/checkpoint`, `/log/v1/checkpoint/cosigned`,
//!   `/log/v1/key`, `/log/v1/tile/...` (full tiles immutable),
//!   `/log/v1/proof/inclusion?index=&size=`,
//!   `/log/v1/proof/consistency?old=&new=`, `POST /log/v1/cosign`,
//!   `/log/v1/evidence?repo=&target=&sha256=&old=` (everything a device
//!   needs to check one target: entry, checkpoint, proofs).
//!
//! Other modules append with [`ServerLog::append`]:
//! ```ignore
//! let index = state.log.append(EntryBody::AssignmentDelivered { .. }).await?;
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_log::cosign::{accept_cosignature, CosignError, CosignatureSet};
use custody_log::fs::{FsError, FsLog, LogWriter, WriterOptions};
use custody_log::tile::{parse_tile_path, TilePath, TILE_WIDTH};
use custody_log::{
    consistency_proof, inclusion_proof, root_at, KeyType, LogVerifier, NoteSigner, VerifierKey,
};
use serde::{Deserialize, Serialize};

/// The log's HTTP documents are custody-log's (`custody_log::wire`), shared
/// with clients, witnesses and auditors.
pub use custody_log::wire::{
    ConsistencyProofAnswer, CosignRequest, CosignResponse, Evidence, EvidenceConsistency,
    InclusionProofAnswer,
};

use crate::error::ApiError;
use crate::state::AppState;

/// Environment variable naming the log origin on first start (default
/// [`DEFAULT_ORIGIN`]); afterwards the origin is the key's name.
pub const ORIGIN_ENV: &str = "CUSTODY_LOG_ORIGIN";
/// Default checkpoint origin.
pub const DEFAULT_ORIGIN: &str = "custody.local/log";
/// Most cosignatures kept per checkpoint (custody-log's rule).
pub use custody_log::cosign::MAX_COSIGNATURES;

/// Errors of the server log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The store failed.
    #[error("transparency log: {0}")]
    Store(#[from] FsError),
    /// A file of the log key or state.
    #[error("transparency log: {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The log key file does not parse.
    #[error("transparency log key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    /// An entry could not be encoded.
    #[error("transparency log entry: {0}")]
    Encode(String),
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        tracing::error!(error = %e, "transparency log append failed");
        ApiError::internal(format!("the transparency log refused the entry: {e}"))
    }
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

// ------------------------------------------------------------ entry format

/// The entry format lives in custody-log (`custody_log::entry`) so
/// agents, witnesses and auditors parse it without the server.
pub use custody_log::entry::{EntryBody, LogEntry, ENTRY_FORMAT_VERSION, MAX_EMBEDDED_MANIFEST};

/// A version-1 entry stamped with the server clock.
pub fn stamp(body: EntryBody) -> LogEntry {
    LogEntry::new(crate::state::now(), body)
}

// ------------------------------------------------------------ the log

/// The server's log handle (held in [`AppState::log`]).
pub struct ServerLog {
    writer: LogWriter,
    origin: String,
    verifier: VerifierKey,
    dir: PathBuf,
    /// Newest cosigned checkpoints, by size (at most 16 kept).
    cosigned: Mutex<BTreeMap<u64, CosignatureSet>>,
    witnesses: Option<Vec<VerifierKey>>,
    /// Where each target's `target_publish` entry is (see [`PublishIndex`]).
    publishes: Mutex<PublishIndex>,
}

impl std::fmt::Debug for ServerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLog")
            .field("origin", &self.origin)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Crash-safe write through custody-fs (unique temp file next to `path`,
/// fsync, rename, directory fsync), with the file mode `mode`.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), LogError> {
    let opts = custody_fs::WriteOptions {
        mode: Some(mode),
        create_new: false,
    };
    custody_fs::write_atomic_with(path, data, opts).map_err(|e| match e {
        custody_fs::FsError::Io {
            path,
            action,
            error,
        } => LogError::Io {
            path,
            op: action,
            source: error,
        },
        e => io(path, "write")(e.into()),
    })
}

/// Load `<data-dir>/keys/log/log.key`, creating it on first start.
fn load_or_create_key(data_dir: &Path) -> Result<NoteSigner, LogError> {
    let kdir = data_dir.join("keys").join("log");
    std::fs::create_dir_all(&kdir).map_err(io(&kdir, "create directory"))?;
    let path = kdir.join("log.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => NoteSigner::parse_private_key(s.trim()).map_err(|e| LogError::Key {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let origin = std::env::var(ORIGIN_ENV).unwrap_or_else(|_| DEFAULT_ORIGIN.to_owned());
            let signer = NoteSigner::generate(&origin).map_err(|e| LogError::Key {
                path: path.clone(),
                reason: format!("{ORIGIN_ENV}={origin:?}: {e}"),
            })?;
            write_atomic(
                &path,
                format!("{}\n", signer.to_private_key()).as_bytes(),
                0o600,
            )?;
            write_atomic(
                &kdir.join("log.vkey"),
                format!("{}\n", signer.verifier_key().to_vkey()).as_bytes(),
                0o644,
            )?;
            Ok(signer)
        }
        Err(e) => Err(io(&path, "read")(e)),
    }
}

impl ServerLog {
    /// Open (or create) the log of a server data directory.
    pub fn open(data_dir: &Path) -> Result<ServerLog, LogError> {
        let signer = load_or_create_key(data_dir)?;
        let origin = signer.name().to_owned();
        let verifier = signer.verifier_key();
        let dir = data_dir.join("log");
        let log = FsLog::open(&dir, &origin, signer)?;
        let writer = LogWriter::spawn(log, WriterOptions::default())?;
        let witnesses = match std::fs::read_to_string(dir.join("witnesses")) {
            Ok(s) => {
                let mut keys = Vec::new();
                for line in s
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    keys.push(VerifierKey::parse(line).map_err(|e| LogError::Key {
                        path: dir.join("witnesses"),
                        reason: e.to_string(),
                    })?);
                }
                Some(keys)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&dir.join("witnesses"), "read")(e)),
        };
        let publishes = Mutex::new(PublishIndex::load(dir.join(PUBLISH_INDEX_FILE)));
        let me = ServerLog {
            writer,
            origin,
            verifier,
            dir,
            cosigned: Mutex::new(BTreeMap::new()),
            witnesses,
            publishes,
        };
        me.load_cosigned();
        Ok(me)
    }

    /// Append an entry stamped now; returns its index once durable.
    pub async fn append(&self, body: EntryBody) -> Result<u64, LogError> {
        self.append_entry(&stamp(body)).await
    }

    /// Append a prepared entry; returns its index once durable.
    pub async fn append_entry(&self, entry: &LogEntry) -> Result<u64, LogError> {
        let bytes = entry
            .to_bytes()
            .map_err(|e| LogError::Encode(e.to_string()))?;
        Ok(self.writer.append(bytes).await?)
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log's verifier key (note format).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Current durable size.
    pub fn size(&self) -> u64 {
        self.writer.committed().size
    }

    /// The writer (read side, stats).
    pub fn writer(&self) -> &LogWriter {
        &self.writer
    }

    fn verifier(&self) -> Result<LogVerifier, ApiError> {
        LogVerifier::new(&self.origin, self.verifier.clone())
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// The latest checkpoint, with the cosignatures collected for it.
    pub fn checkpoint(&self) -> Vec<u8> {
        let c = self.writer.committed();
        let Ok(map) = self.cosigned.lock() else {
            return c.checkpoint.clone();
        };
        match map.get(&c.size) {
            Some(cs) if !cs.is_empty() => cs.render(),
            _ => c.checkpoint.clone(),
        }
    }

    /// The newest checkpoint that has cosignatures, with them.
    pub fn cosigned_checkpoint(&self) -> Option<Vec<u8>> {
        let map = self.cosigned.lock().ok()?;
        map.values()
            .rev()
            .find(|c| !c.is_empty())
            .map(CosignatureSet::render)
    }

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
        let committed = self.writer.committed();
        let old = q.old.unwrap_or(0);
        let (checkpoint, size) = self.checkpoint_covering(&committed, index, old);
        let tiles = self.writer.tiles();
        let reader = tiles.at(committed.size);
        let entry = tiles
            .entry(index, size)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::internal(format!("entry {index} is missing below size {size}"))
            })?;
        let inclusion =
            inclusion_proof(&reader, index, size).map_err(|e| ApiError::internal(e.to_string()))?;
        // A client that stored a larger tree than this log has is shown the
        // latest checkpoint with no proof: it detects the rollback itself
        // (refusing to answer would hide the rollback as an outage).
        let mut consistency = Vec::new();
        if old > 0 && old < size {
            let proof = consistency_proof(&reader, old, size)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            consistency.push((old, proof));
        }
        let mut ev = Evidence {
            repo: q.repo.clone(),
            target: q.target.clone(),
            sha256: q.sha256.clone(),
            index,
            entry: B64.encode(&entry),
            checkpoint: String::from_utf8_lossy(&checkpoint).into_owned(),
            inclusion_proof: inclusion.iter().map(|h| B64.encode(h)).collect(),
            consistency: Vec::new(),
        };
        for (old, proof) in consistency {
            ev.push_consistency(old, &proof);
        }
        Ok(Some(ev))
    }

    fn load_cosigned(&self) {
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

// ------------------------------------------------------------ publish index

/// File of the publish index inside the log directory.
pub const PUBLISH_INDEX_FILE: &str = "publish-index";
/// Entries scanned since the last persisted marker before a new marker is
/// written (bounds the re-scan after a restart).
const INDEX_MARKER_EVERY: u64 = 4096;

/// Where each `target_publish` entry is: `(repo, name, sha256) → index`.
///
/// Derived data, rebuilt from the log itself: the index tails the committed
/// log in order (on each lookup it parses the entries committed since the
/// last one), so it sees every `target_publish` whichever code path
/// appended it, never depends on an append and an index write both
/// surviving a crash, and can be deleted at any time (the next lookup
/// rescans). Persisted as JSON lines in `<log>/publish-index`:
/// `{"i":N,"repo":..,"name":..,"sha256":..}` per publish and
/// `{"upto":N}` markers ("every entry below N is indexed"); lines that do
/// not parse (a torn tail) are ignored. Why a file in the log directory and
/// not a database table: it is a function of the log alone, lives and is
/// backed up with it, and needs no schema or cross-store consistency.
#[derive(Debug, Default)]
struct PublishIndex {
    path: PathBuf,
    map: std::collections::HashMap<(String, String, String), u64>,
    /// every entry below this index has been indexed
    upto: u64,
    /// the last `upto` marker written to the file
    persisted_upto: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum IndexLine {
    Publish {
        i: u64,
        repo: String,
        name: String,
        sha256: String,
    },
    Upto {
        upto: u64,
    },
}

impl PublishIndex {
    fn load(path: PathBuf) -> Self {
        let mut me = PublishIndex {
            path,
            ..PublishIndex::default()
        };
        let Ok(text) = std::fs::read_to_string(&me.path) else {
            return me;
        };
        let mut publishes = Vec::new();
        for line in text.lines() {
            match serde_json::from_str::<IndexLine>(line) {
                Ok(IndexLine::Upto { upto }) => me.upto = me.upto.max(upto),
                Ok(IndexLine::Publish {
                    i,
                    repo,
                    name,
                    sha256,
                }) => publishes.push((i, repo, name, sha256)),
                Err(_) => {}
            }
        }
        // Only what a marker covers is trusted as complete; publishes at or
        // beyond it are found again by the next scan.
        for (i, repo, name, sha256) in publishes {
            if i < me.upto {
                me.map.entry((repo, name, sha256)).or_insert(i);
            }
        }
        me.persisted_upto = me.upto;
        me
    }

    fn get(&self, repo: &str, name: &str, sha256: &str) -> Option<u64> {
        self.map
            .get(&(repo.to_owned(), name.to_owned(), sha256.to_owned()))
            .copied()
    }

    /// Index the committed entries `[upto, size)`.
    fn catch_up(&mut self, tiles: &custody_log::fs::TileStore, size: u64) -> Result<(), LogError> {
        if self.upto >= size {
            return Ok(());
        }
        let mut lines = String::new();
        let mut bundle = self.upto >> 8;
        while bundle << 8 < size {
            let width = if bundle < size >> 8 {
                TILE_WIDTH
            } else {
                u16::try_from(size & 0xff).unwrap_or(TILE_WIDTH)
            };
            let bytes = tiles
                .bundle_bytes(custody_log::BundleId {
                    index: bundle,
                    width,
                })?
                .ok_or_else(|| {
                    LogError::Encode(format!("entry bundle {bundle} missing below size {size}"))
                })?;
            let entries = custody_log::tile::parse_entry_bundle(&bytes)
                .map_err(|e| LogError::Encode(format!("entry bundle {bundle}: {e}")))?;
            for (k, e) in entries.iter().enumerate() {
                let i = (bundle << 8) + k as u64;
                if i < self.upto {
                    continue;
                }
                let Ok(LogEntry {
                    body:
                        EntryBody::TargetPublish {
                            repo, name, hashes, ..
                        },
                    ..
                }) = LogEntry::from_bytes(e)
                else {
                    continue;
                };
                let Some(sha) = hashes.get("sha256") else {
                    continue;
                };
                let key = (repo, name, sha.to_ascii_lowercase());
                if self.map.contains_key(&key) {
                    continue;
                }
                let line = IndexLine::Publish {
                    i,
                    repo: key.0.clone(),
                    name: key.1.clone(),
                    sha256: key.2.clone(),
                };
                if let Ok(l) = serde_json::to_string(&line) {
                    lines.push_str(&l);
                    lines.push('\n');
                }
                self.map.insert(key, i);
            }
            bundle += 1;
        }
        self.upto = size;
        if !lines.is_empty() || self.upto - self.persisted_upto >= INDEX_MARKER_EVERY {
            lines.push_str(&format!("{{\"upto\":{}}}\n", self.upto));
            self.persist(&lines);
        }
        Ok(())
    }

    /// Append lines (fsynced: a marker must never outlive the publish lines
    /// before it). A failure is logged, not fatal: the index is rebuilt
    /// from the log on the next start.
    fn persist(&mut self, lines: &str) {
        use std::io::Write as _;
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(lines.as_bytes())?;
                f.sync_data()
            });
        match res {
            Ok(()) => self.persisted_upto = self.upto,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "publish index not persisted; it is rebuilt from the log at the next start")
            }
        }
    }
}

// ------------------------------------------------------------ device pin

/// `[log]` server settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Witness verifier keys (cosignature/v1, `name+hash+base64`) that
    /// devices enrolled here pin (`EnrolResponse.log.witnesses`).
    pub device_witnesses: Vec<String>,
    /// How many of them must cosign a checkpoint before a device installs
    /// a target it proves (0: the log signature alone).
    pub device_witness_threshold: usize,
}

impl LogSettings {
    /// Every key parses as a cosignature/v1 key, `threshold ≤ keys`.
    pub fn validate(&self) -> Result<(), String> {
        for (i, k) in self.device_witnesses.iter().enumerate() {
            let key =
                VerifierKey::parse(k.trim()).map_err(|e| format!("device_witnesses[{i}]: {e}"))?;
            if key.key_type() != KeyType::CosignatureV1 {
                return Err(format!(
                    "device_witnesses[{i}] ({}): must be a cosignature/v1 witness key",
                    key.name()
                ));
            }
        }
        if self.device_witness_threshold > self.device_witnesses.len() {
            return Err(format!(
                "device_witness_threshold {} is more than the {} device_witnesses",
                self.device_witness_threshold,
                self.device_witnesses.len()
            ));
        }
        if self.device_witnesses.len() > custody_director::wire::MAX_LOG_WITNESSES {
            return Err(format!(
                "at most {} device_witnesses, got {}",
                custody_director::wire::MAX_LOG_WITNESSES,
                self.device_witnesses.len()
            ));
        }
        Ok(())
    }
}

/// The log pin a device gets at enrolment: this log's origin and key, and
/// the `[log]` witness policy.
pub fn enrol_pin(st: &AppState) -> custody_director::wire::LogPin {
    let s = &st.config.log;
    custody_director::wire::LogPin {
        origin: st.log.origin().to_owned(),
        log_key: st.log.verifier_key().to_vkey(),
        witnesses: s
            .device_witnesses
            .iter()
            .map(|k| k.trim().to_owned())
            .collect(),
        witness_threshold: s.device_witness_threshold,
        log_path: "/log/v1/".to_owned(),
    }
}

// ------------------------------------------------------------ wiring helpers

/// Append `body`; maps a failure to a 500 for API handlers.
pub async fn record(st: &AppState, body: EntryBody) -> Result<u64, ApiError> {
    Ok(st.log.append(body).await?)
}

/// Log every target a publish made live (a publish, or the signature that
/// completed a draft). Reads the role that lists each target as published
/// (the top-level targets role or the delegated role, e.g. a hash bin):
/// hashes, length, custom (`release_counter`, `custody.provenance.sha256`)
/// and the key ids of that role's signatures.
pub async fn record_publish(
    st: &Arc<AppState>,
    repo: &str,
    outcome: &crate::authoring::PublishOutcome,
) -> Result<(), ApiError> {
    if outcome.generation.is_none() || outcome.added.is_empty() {
        return Ok(());
    }
    // Each target is listed by the role the delegations give it (the
    // top-level targets role, or a delegated role such as a hash bin):
    // read each such role once.
    let (st2, r, names) = (st.clone(), repo.to_owned(), outcome.added.clone());
    let roles: Vec<(Vec<String>, serde_json::Value)> = tokio::task::spawn_blocking(move || {
        let mut by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in names {
            let role = st2
                .authoring
                .role_for_path(&r, &n)
                .unwrap_or_else(|_| "targets".to_owned());
            by_role.entry(role).or_default().push(n);
        }
        by_role
            .into_iter()
            .map(|(role, names)| {
                let bytes = st2.authoring.export_role(&r, &role).map_err(|e| {
                    ApiError::internal(format!("log: reading published role {role}: {e}"))
                })?;
                let v = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::internal(format!("log: role {role}: {e}")))?;
                Ok((names, v))
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    for (names, role) in &roles {
        log_targets(&st.log, repo, role, names, Some(outcome.targets_version)).await?;
    }
    Ok(())
}

/// Append a `target_publish` entry for each of `names` listed in the
/// targets role `targets` (parsed JSON of the signed file): hashes, length,
/// custom (`release_counter`, `custody.provenance.sha256`) and the key ids
/// of its signatures (each listed entry parsed as custody-tuf's
/// `TargetFile`, not dug out field by field with defaults; one that does not
/// parse is refused rather than logged with length 0). Names the role does
/// not list are skipped. For
/// [`record_publish`], and for tools that publish a repository into
/// [`crate::hosting`] themselves (`custody demo`).
pub async fn log_targets(
    log: &ServerLog,
    repo: &str,
    targets: &serde_json::Value,
    names: &[String],
    targets_version: Option<u64>,
) -> Result<(), LogError> {
    let keyids: Vec<String> = targets
        .get("signatures")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("keyid")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for name in names {
        let Some(t) = targets
            .get("signed")
            .and_then(|s| s.get("targets"))
            .and_then(|t| t.get(name))
        else {
            continue;
        };
        let t: custody_tuf::schema::TargetFile =
            serde_json::from_value(t.clone()).map_err(|e| {
                LogError::Encode(format!(
                    "repo {repo}: target {name:?} in the signed targets role is not a TUF target entry (length, hashes, custom): {e}"
                ))
            })?;
        let custom = t.custom.as_ref();
        log.append(EntryBody::TargetPublish {
            repo: repo.to_owned(),
            name: name.clone(),
            hashes: t.hashes,
            length: t.length,
            // custody-director's reader (none when the custom is mistyped:
            // no device accepts such a target)
            release_counter: custody_director::image::ImageCustom::read(name, custom)
                .ok()
                .and_then(|c| c.release_counter),
            signing_keyids: keyids.clone(),
            provenance_sha256: custody_repo::custody_provenance::provenance_digest(custom)
                .map(str::to_owned),
            targets_version,
        })
        .await?;
    }
    Ok(())
}

// ------------------------------------------------------------ HTTP

type St = State<Arc<AppState>>;

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
    fn validate(&self) -> Result<(), ApiError> {
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

#[derive(Debug, Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

/// The log's HTTP surface (merged into the server router).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/log/v1/checkpoint", get(get_checkpoint))
        .route("/log/v1/checkpoint/cosigned", get(get_cosigned))
        .route("/log/v1/key", get(get_key))
        .route("/log/v1/tile/{*path}", get(get_tile))
        .route("/log/v1/proof/inclusion", get(get_inclusion))
        .route("/log/v1/proof/consistency", get(get_consistency))
        .route("/log/v1/cosign", post(post_cosign))
        .route("/log/v1/evidence", get(get_evidence))
}

fn text(body: Vec<u8>, cache: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    (StatusCode::OK, h, body).into_response()
}

async fn get_checkpoint(State(st): St) -> Response {
    text(st.log.checkpoint(), "no-cache")
}

async fn get_cosigned(State(st): St) -> Result<Response, ApiError> {
    st.log
        .cosigned_checkpoint()
        .map(|b| text(b, "no-cache"))
        .ok_or_else(|| ApiError::not_found("no checkpoint of this log has been cosigned yet"))
}

async fn get_key(State(st): St) -> Response {
    text(
        format!("{}\n", st.log.verifier_key().to_vkey()).into_bytes(),
        "public, max-age=3600",
    )
}

async fn get_tile(State(st): St, UrlPath(path): UrlPath<String>) -> Result<Response, ApiError> {
    let full_path = format!("tile/{path}");
    let parsed = parse_tile_path(&full_path).map_err(|e| ApiError::not_found(e.to_string()))?;
    let size = st.log.size();
    let tiles = st.log.writer().tiles().clone();
    let not_found = || ApiError::not_found(format!("{full_path}: not in the tree of size {size}"));
    // What exists at this size: full tiles below count>>8, and the partial
    // of width count&255 (and every narrower one, same bytes).
    let (count, width, index) = match parsed {
        TilePath::Tile(t) => (
            size.checked_shr(u32::from(t.level) * 8).unwrap_or(0),
            t.width,
            t.index,
        ),
        TilePath::Entries(b) => (size, b.width, b.index),
    };
    let ok = if width == TILE_WIDTH {
        index < count >> 8
    } else {
        index < count >> 8 || (index == count >> 8 && u64::from(width) <= count & 0xff)
    };
    if !ok {
        return Err(not_found());
    }
    let bytes = tokio::task::spawn_blocking(move || match parsed {
        TilePath::Tile(t) => tiles.tile_bytes(t),
        TilePath::Entries(b) => tiles.bundle_bytes(b),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?
    .ok_or_else(not_found)?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Every tile path names fixed bytes (a partial of width W is the same
    // forever too), but partials are short-lived: let caches drop them.
    let cache = if width == TILE_WIDTH {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok((StatusCode::OK, h, bytes).into_response())
}

async fn get_inclusion(
    State(st): St,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionProofAnswer>, ApiError> {
    let cur = st.log.size();
    let size = q.size.unwrap_or(cur);
    if size > cur || q.index >= size {
        return Err(ApiError::bad_request(format!(
            "inclusion proof: need index < size <= {cur} (current size), got index {} size {size}",
            q.index
        )));
    }
    let tiles = st.log.writer().tiles().clone();
    let index = q.index;
    let proof = tokio::task::spawn_blocking(move || inclusion_proof(&tiles.at(cur), index, size))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(InclusionProofAnswer::new(index, size, &proof)))
}

async fn get_consistency(
    State(st): St,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofAnswer>, ApiError> {
    let cur = st.log.size();
    let new = q.new.unwrap_or(cur);
    if new > cur || q.old > new {
        return Err(ApiError::bad_request(format!(
            "consistency proof: need old <= new <= {cur} (current size), got old {} new {new}",
            q.old
        )));
    }
    let tiles = st.log.writer().tiles().clone();
    let old = q.old;
    let proof = tokio::task::spawn_blocking(move || consistency_proof(&tiles.at(cur), old, new))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(ConsistencyProofAnswer::new(old, new, &proof)))
}

async fn get_evidence(
    State(st): St,
    q: Result<Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("evidence: {}", e.body_text())))?;
    q.validate()?;
    let st2 = st.clone();
    let q2 = q.clone();
    let found = tokio::task::spawn_blocking(move || st2.log.evidence(&q2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let Some(ev) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_logged",
            format!(
                "no target_publish entry in this log for repo {:?} target {:?} sha256 {}: the target was not published through the log",
                q.repo, q.target, q.sha256
            ),
        ));
    };
    let mut resp = Json(ev).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

async fn post_cosign(
    State(st): St,
    body: Result<Json<CosignRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CosignResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    req.check_bounds()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || st2.log.add_cosignature(&req))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_witness_settings_are_checked() {
        let w = custody_log::Cosigner::from_seed("w.test/1", [1; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let log_key = NoteSigner::from_seed("log.test/log", [2; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let ok = LogSettings {
            device_witnesses: vec![w.clone()],
            device_witness_threshold: 1,
        };
        ok.validate().unwrap();
        LogSettings::default().validate().unwrap();
        for (bad, rule) in [
            (
                LogSettings {
                    device_witnesses: vec![w.clone()],
                    device_witness_threshold: 2,
                },
                "more than the 1",
            ),
            (
                LogSettings {
                    device_witnesses: vec![log_key],
                    device_witness_threshold: 1,
                },
                "cosignature/v1",
            ),
            (
                LogSettings {
                    device_witnesses: vec!["garbage".into()],
                    device_witness_threshold: 0,
                },
                "device_witnesses[0]",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(rule), "{rule}: {e}");
        }
    }

    #[test]
    fn publish_index_ignores_torn_lines_and_trusts_only_marked_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUBLISH_INDEX_FILE);
        std::fs::write(
            &p,
            concat!(
                "{\"i\":3,\"repo\":\"main\",\"name\":\"a\",\"sha256\":\"aa\"}\n",
                "{\"upto\":10}\n",
                "{\"i\":12,\"repo\":\"main\",\"name\":\"b\",\"sha256\":\"bb\"}\n",
                "{\"i\":14,\"re"
            ),
        )
        .unwrap();
        let idx = PublishIndex::load(p);
        assert_eq!(idx.get("main", "a", "aa"), Some(3));
        // beyond the marker: found again by the next scan, not trusted now
        assert_eq!(idx.get("main", "b", "bb"), None);
        assert_eq!(idx.upto, 10);
    }
}
