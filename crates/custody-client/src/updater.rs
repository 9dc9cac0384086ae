//! The TUF client workflow (spec §5): a short IO loop around custody-tuf's
//! [`Refresh`] step machine.
//!
//! The request pattern is python-tuf ngclient's (tuf-conformance asserts on
//! it), and it is [`Refresh`]'s: `N+1.root.json`… until 404/403, local then
//! remote `timestamp.json`, local snapshot (no fetch while it is still
//! final) else `[V.]snapshot.json`, the same for `targets` and for
//! delegated roles on demand. Like python-tuf, every verified file is
//! persisted as soon as it is accepted ([`Refresh::take_writes`] after each
//! step), and a rotation that changed the timestamp or snapshot keys
//! deletes the local timestamp and snapshot.
//!
//! Every verdict comes from custody-tuf; this module reads the files the
//! machine asks for (local store or transport, bounded by the machine's
//! length) and applies the writes it returns.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{Fetch, Limits, Refresh, Source, Step, StoreWrite, TargetFile};
use url::Url;

use crate::encoding::{escape_url_path, join_url, target_file_name};
use crate::error::ClientError;
use crate::store::{MetadataStore, StoreError};
use crate::target::{download_verified, is_cached, DownloadedTarget};
use crate::transport::Transport;

/// Updater settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdaterConfig {
    /// Length bounds, root rotation and delegation caps (python-tuf defaults).
    pub limits: Limits,
}

/// One client session against one repository.
pub struct Updater<T: Transport> {
    store: MetadataStore,
    metadata_url: Url,
    transport: T,
    limits: Limits,
    now: DateTime<Utc>,
    refresh: Refresh,
}

impl<T: Transport> std::fmt::Debug for Updater<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("metadata_dir", &self.store.dir())
            .field("metadata_url", &self.metadata_url.as_str())
            .field("now", &self.now)
            .field("refreshed", &self.refresh.is_refreshed())
            .finish_non_exhaustive()
    }
}

/// `init`: check that `root_file` is root metadata signed by a threshold of
/// its own root keys, then store it as `root.json` in `metadata_dir`
/// (atomically; the directory is created if needed). Returns its version.
/// No network.
pub fn init_trusted_root(metadata_dir: &Path, root_file: &Path) -> Result<u64, ClientError> {
    let limits = Limits::default();
    let bytes = crate::store::read_bounded(root_file, limits.max_root_bytes)?.ok_or_else(|| {
        StoreError::Io {
            path: root_file.to_owned(),
            action: "open",
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
    })?;
    let trusted = custody_tuf::TrustedMetadata::with_limits(&bytes, limits)
        .map_err(|e| ClientError::rejected(root_file.display().to_string(), e))?;
    let store = MetadataStore::create(metadata_dir)?;
    store.persist("root", &bytes)?;
    Ok(trusted.root().version)
}

impl<T: Transport> Updater<T> {
    /// Load the trusted root from `metadata_dir/root.json`. `now` is the
    /// reference time for every expiry decision.
    pub fn new(
        metadata_dir: impl Into<PathBuf>,
        metadata_url: Url,
        transport: T,
        config: UpdaterConfig,
        now: DateTime<Utc>,
    ) -> Result<Self, ClientError> {
        let store = MetadataStore::new(metadata_dir);
        let limits = config.limits;
        let root_path = store.path("root");
        let bytes = store.load("root", limits.max_root_bytes)?.ok_or_else(|| {
            ClientError::NoTrustedRoot {
                path: root_path.clone(),
            }
        })?;
        let refresh = Refresh::new(&bytes, limits, now)
            .map_err(|e| ClientError::rejected(root_path.display().to_string(), e))?;
        crate::store::sweep_stale_temp_files(store.dir(), crate::store::STALE_TEMP_AGE);
        Ok(Updater {
            store,
            metadata_url,
            transport,
            limits,
            now,
            refresh,
        })
    }

    /// The trusted metadata (read-only).
    pub fn trusted(&self) -> &custody_tuf::TrustedMetadata {
        self.refresh.trusted()
    }

    /// Roles currently trusted and their versions, top-level first.
    pub fn trusted_versions(&self) -> Vec<(String, u64)> {
        let trusted = self.refresh.trusted();
        let mut out = vec![("root".to_owned(), trusted.root().version)];
        if let Some(t) = trusted.timestamp() {
            out.push(("timestamp".to_owned(), t.version));
        }
        if let Some(s) = trusted.snapshot() {
            out.push(("snapshot".to_owned(), s.version));
        }
        if let Some(t) = trusted.targets() {
            out.push(("targets".to_owned(), t.version));
        }
        for role in self.refresh.delegated_roles() {
            if let Some(t) = trusted.targets_role(role) {
                out.push((role.clone(), t.version));
            }
        }
        out
    }

    /// Update root, timestamp, snapshot and targets (once per updater).
    pub fn refresh(&mut self) -> Result<(), ClientError> {
        match self.drive(false)? {
            Step::Refreshed => Ok(()),
            other => Err(ClientError::Usage(format!(
                "refresh ended with a lookup answer: {other:?}"
            ))),
        }
    }

    /// Run the machine until it stops asking for files.
    fn drive(&mut self, lookup: bool) -> Result<Step, ClientError> {
        loop {
            let step = self
                .refresh
                .step()
                .map_err(|e| self.rejected_before_fetch(e, lookup))?;
            let Step::Fetch(fetch) = step else {
                return Ok(step);
            };
            let (bytes, from) = match fetch.source {
                Source::Local => (self.load_local(&fetch), self.store.path(&fetch.role)),
                Source::Remote => {
                    let url = self.url_for(&fetch.file_name)?;
                    let bytes = match self.fetch_metadata(&url, fetch.max_bytes) {
                        Ok(b) => Some(b),
                        // 404/403 for the next root: the trusted root is the newest (spec 5.3.3).
                        Err(ClientError::Fetch(e)) if e.is_not_found() && fetch.role == "root" => {
                            None
                        }
                        Err(e) => return Err(e),
                    };
                    (bytes, PathBuf::from(url.as_str()))
                }
            };
            self.refresh
                .provide(bytes.as_deref())
                .map_err(|e| ClientError::rejected(from.display().to_string(), e))?;
            for write in self.refresh.take_writes() {
                match write {
                    StoreWrite::Persist { role, bytes } => {
                        self.store.persist(&role, &bytes)?;
                        if role == "root" {
                            tracing::info!(version = self.trusted().root().version, "root rotated");
                        }
                    }
                    // Fast-forward attack recovery (spec 5.3.11).
                    StoreWrite::Remove { role } => self.store.remove(&role)?,
                }
            }
        }
    }

    fn rejected_before_fetch(&self, e: custody_tuf::Error, lookup: bool) -> ClientError {
        match e {
            e @ custody_tuf::Error::MissingMeta { .. } => ClientError::rejected("snapshot", e),
            e if lookup => ClientError::rejected("delegation search", e),
            e => ClientError::rejected(self.metadata_url.as_str(), e),
        }
    }

    fn url_for(&self, file_name: &str) -> Result<Url, ClientError> {
        join_url(&self.metadata_url, file_name).map_err(|e| ClientError::Url {
            base: self.metadata_url.to_string(),
            relative: file_name.to_owned(),
            reason: e.to_string(),
        })
    }

    fn fetch_metadata(&self, url: &Url, bound: u64) -> Result<Vec<u8>, ClientError> {
        tracing::debug!(url = %url, bound, "fetching metadata");
        let body = self.transport.fetch(url, bound)?;
        Ok(body.read_all()?)
    }

    /// Local bytes of a role, or `None` when absent or unreadable (a broken
    /// local file is simply not used; it is replaced by a verified one).
    fn load_local(&self, fetch: &Fetch) -> Option<Vec<u8>> {
        match self.store.load(&fetch.role, fetch.max_bytes) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(role = %fetch.role, error = %e, "local metadata not usable");
                None
            }
        }
    }

    /// Find the signed description of `target_path`, walking delegations
    /// (loading delegated metadata on demand). Refreshes first if needed.
    /// Returns the role that lists it and its target info.
    pub fn get_target_info(
        &mut self,
        target_path: &str,
    ) -> Result<Option<(String, TargetFile)>, ClientError> {
        self.refresh()?;
        self.refresh.lookup(target_path);
        match self.drive(true)? {
            Step::Found { role, target } => Ok(Some((role, target))),
            Step::NotFound { limit_reached } => {
                if limit_reached {
                    tracing::warn!(
                        target = target_path,
                        max = self.limits.max_delegations,
                        "delegation search stopped at the role limit"
                    );
                }
                Ok(None)
            }
            Step::Refreshed | Step::Fetch(_) => Err(ClientError::Usage(
                "the lookup ended without an answer".to_owned(),
            )),
        }
    }

    /// The local file `target_path` is stored under in `target_dir`.
    pub fn target_file(target_dir: &Path, target_path: &str) -> Result<PathBuf, ClientError> {
        let name = target_file_name(target_path).ok_or_else(|| ClientError::BadTargetPath {
            path: target_path.to_owned(),
            reason: "the empty path names no file".to_owned(),
        })?;
        Ok(target_dir.join(name))
    }

    /// Look up `target_path`, and unless a verified copy is already in
    /// `target_dir`, download it from `target_base_url`, verifying length
    /// and hashes while streaming; the file appears under its final name
    /// only once verified.
    pub fn fetch_target(
        &mut self,
        target_path: &str,
        target_base_url: &Url,
        target_dir: &Path,
    ) -> Result<DownloadedTarget, ClientError> {
        let Some((role, info)) = self.get_target_info(target_path)? else {
            let searched = self
                .refresh
                .delegated_roles()
                .iter()
                .fold("targets".to_owned(), |acc, r| format!("{acc}, {r}"));
            return Err(ClientError::TargetNotFound {
                path: target_path.to_owned(),
                searched,
            });
        };
        tracing::debug!(target = target_path, role = %role, "target found");
        let dest = Self::target_file(target_dir, target_path)?;
        std::fs::create_dir_all(target_dir).map_err(|error| StoreError::Io {
            path: target_dir.to_owned(),
            action: "create directory",
            error,
        })?;
        crate::store::sweep_stale_temp_files(target_dir, crate::store::STALE_TEMP_AGE);
        let mut result = DownloadedTarget {
            path: target_path.to_owned(),
            role,
            file: dest.clone(),
            length: info.length,
            hashes: info.hashes.clone(),
            cached: true,
        };
        if is_cached(target_path, &info, &dest) {
            return Ok(result);
        }
        let remote = self.trusted().target_remote_path(target_path, &info);
        let relative = escape_url_path(&remote);
        let url = join_url(target_base_url, &relative).map_err(|e| ClientError::Url {
            base: target_base_url.to_string(),
            relative: relative.clone(),
            reason: e.to_string(),
        })?;
        download_verified(&self.transport, &url, target_path, &info, &dest)?;
        result.cached = false;
        Ok(result)
    }
}
