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
//! - Entry format: [`LogEntry`] (JSON, custody-log's `ENTRY_FORMAT_VERSION`),
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
use std::sync::Mutex;

use custody_log::cosign::CosignatureSet;
use custody_log::fs::{FsError, FsLog, LogWriter, WriterOptions};
use custody_log::{LogVerifier, NoteSigner, VerifierKey};

/// The log's HTTP documents are custody-log's (`custody_log::wire`), shared
/// with clients, witnesses and auditors.
pub use custody_log::wire::{
    ConsistencyProofAnswer, CosignRequest, CosignResponse, Evidence, InclusionProofAnswer,
};

use crate::error::ApiError;

mod evidence;
mod publish_index;
mod routes;
mod settings;

pub use evidence::EvidenceQuery;
use publish_index::{PublishIndex, PUBLISH_INDEX_FILE};
pub(crate) use routes::router;
pub use settings::LogSettings;

/// Environment variable naming the log origin on first start (default
/// [`DEFAULT_ORIGIN`]); afterwards the origin is the key's name.
pub const ORIGIN_ENV: &str = "CUSTODY_LOG_ORIGIN";
/// Default checkpoint origin.
pub const DEFAULT_ORIGIN: &str = "custody.local/log";

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
pub use custody_log::entry::{EntryBody, LogEntry, MAX_EMBEDDED_MANIFEST};

/// A version-1 entry stamped with the server clock.
pub fn stamp(body: EntryBody) -> LogEntry {
    LogEntry::new(crate::storage::now(), body)
}

// ------------------------------------------------------------ the log

/// The server's log handle, shared (`Arc`) by every slice that appends.
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
    /// The `[log]` witness policy devices pin at enrolment.
    device_pin: LogSettings,
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
    /// `device_pin` is the `[log]` witness policy handed to enrolling
    /// devices ([`ServerLog::enrol_pin`]).
    pub fn open(data_dir: &Path, device_pin: LogSettings) -> Result<ServerLog, LogError> {
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
            device_pin,
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

    /// The log pin a device gets at enrolment: this log's origin and key, and
    /// the `[log]` witness policy.
    pub fn enrol_pin(&self) -> custody_director::wire::LogPin {
        let s = &self.device_pin;
        custody_director::wire::LogPin {
            origin: self.origin().to_owned(),
            log_key: self.verifier_key().to_vkey(),
            witnesses: s
                .device_witnesses
                .iter()
                .map(|k| k.trim().to_owned())
                .collect(),
            witness_threshold: s.device_witness_threshold,
            log_path: "/log/v1/".to_owned(),
        }
    }
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
