//! The TUF client workflow (spec §5) as IO around custody-tuf's
//! [`TrustedMetadata`] and [`TargetSearch`].
//!
//! The request pattern is python-tuf ngclient's (tuf-conformance asserts on
//! it):
//! 1. load local `root.json`; fetch `N+1.root.json`, `N+2.root.json`, … until
//!    HTTP 404/403 or `max_root_rotations` attempts, persisting each verified
//!    root; when a rotation changes the timestamp or snapshot keys, delete the
//!    local timestamp and snapshot (fast-forward attack recovery);
//! 2. load local `timestamp.json` (only as rollback reference), fetch
//!    `timestamp.json`, persist it unless its version is unchanged;
//! 3. use local `snapshot.json` if custody-tuf accepts it as final, else
//!    fetch `[V.]snapshot.json` bounded by the timestamp's length (or the
//!    limit) and persist it;
//! 4. the same for `targets`, and for delegated roles on demand while
//!    [`TargetSearch`] walks the delegation graph.
//!
//! Every verdict comes from custody-tuf; this module decides only which
//! bytes to read, where from, how many at most, and where to keep them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{Limits, SearchStep, TargetFile, TargetSearch, TimestampUpdate, TrustedMetadata};
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
    trusted: TrustedMetadata,
    refreshed: bool,
    delegated_loaded: Vec<String>,
}

impl<T: Transport> std::fmt::Debug for Updater<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("metadata_dir", &self.store.dir())
            .field("metadata_url", &self.metadata_url.as_str())
            .field("now", &self.now)
            .field("refreshed", &self.refreshed)
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
    let trusted = TrustedMetadata::with_limits(&bytes, limits)
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
        let trusted = TrustedMetadata::with_limits(&bytes, limits)
            .map_err(|e| ClientError::rejected(root_path.display().to_string(), e))?;
        crate::store::sweep_stale_temp_files(store.dir(), crate::store::STALE_TEMP_AGE);
        Ok(Updater {
            store,
            metadata_url,
            transport,
            limits,
            now,
            trusted,
            refreshed: false,
            delegated_loaded: Vec::new(),
        })
    }

    /// The trusted metadata (read-only).
    pub fn trusted(&self) -> &TrustedMetadata {
        &self.trusted
    }

    /// Roles currently trusted and their versions, top-level first.
    pub fn trusted_versions(&self) -> Vec<(String, u64)> {
        let mut out = vec![("root".to_owned(), self.trusted.root().version)];
        if let Some(t) = self.trusted.timestamp() {
            out.push(("timestamp".to_owned(), t.version));
        }
        if let Some(s) = self.trusted.snapshot() {
            out.push(("snapshot".to_owned(), s.version));
        }
        if let Some(t) = self.trusted.targets() {
            out.push(("targets".to_owned(), t.version));
        }
        for role in &self.delegated_loaded {
            if let Some(t) = self.trusted.targets_role(role) {
                out.push((role.clone(), t.version));
            }
        }
        out
    }

    /// Update root, timestamp, snapshot and targets (once per updater).
    pub fn refresh(&mut self) -> Result<(), ClientError> {
        if self.refreshed {
            return Ok(());
        }
        self.load_root()?;
        self.load_timestamp()?;
        self.load_snapshot()?;
        self.load_targets("targets", "root")?;
        self.refreshed = true;
        Ok(())
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
    fn load_local(&self, role: &str, bound: u64) -> Option<Vec<u8>> {
        match self.store.load(role, bound) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(role, error = %e, "local metadata not usable");
                None
            }
        }
    }

    fn load_root(&mut self) -> Result<(), ClientError> {
        for _ in 0..self.limits.max_root_rotations {
            let url = self.url_for(&self.trusted.next_root_filename())?;
            let bytes = match self.fetch_metadata(&url, self.limits.max_root_bytes) {
                Ok(b) => b,
                // 404/403: the trusted root is the newest (spec 5.3.3).
                Err(ClientError::Fetch(e)) if e.is_not_found() => break,
                Err(e) => return Err(e),
            };
            let update = self
                .trusted
                .update_root(&bytes)
                .map_err(|e| ClientError::rejected(url.as_str(), e))?;
            self.store.persist("root", &bytes)?;
            tracing::info!(version = update.version, "root rotated");
            if update.discard_timestamp_and_snapshot {
                // Fast-forward attack recovery (spec 5.3.11).
                self.store.remove("timestamp")?;
                self.store.remove("snapshot")?;
            }
        }
        Ok(())
    }

    fn load_timestamp(&mut self) -> Result<(), ClientError> {
        if !self.trusted.must_discard_timestamp_and_snapshot() {
            if let Some(local) = self.load_local("timestamp", self.limits.max_timestamp_bytes) {
                // Only a rollback reference: its verdict does not matter.
                if let Err(e) = self.trusted.update_timestamp(&local, self.now) {
                    tracing::debug!(error = %e, "local timestamp not usable as final");
                }
            }
        }
        let name = self
            .trusted
            .remote_filename("timestamp")
            .map_err(|e| ClientError::rejected(self.metadata_url.as_str(), e))?;
        let url = self.url_for(&name)?;
        let bytes = self.fetch_metadata(&url, self.trusted.max_length("timestamp"))?;
        match self
            .trusted
            .update_timestamp(&bytes, self.now)
            .map_err(|e| ClientError::rejected(url.as_str(), e))?
        {
            TimestampUpdate::Updated => self.store.persist("timestamp", &bytes)?,
            TimestampUpdate::Unchanged => {}
        }
        Ok(())
    }

    fn load_snapshot(&mut self) -> Result<(), ClientError> {
        if !self.trusted.must_discard_timestamp_and_snapshot() {
            if let Some(local) = self.load_local("snapshot", self.limits.max_snapshot_bytes) {
                match self.trusted.update_snapshot(&local, self.now, true) {
                    Ok(()) => return Ok(()),
                    Err(e) => tracing::debug!(error = %e, "local snapshot not usable as final"),
                }
            }
        }
        let name = self
            .trusted
            .remote_filename("snapshot")
            .map_err(|e| ClientError::rejected(self.metadata_url.as_str(), e))?;
        let url = self.url_for(&name)?;
        let bytes = self.fetch_metadata(&url, self.trusted.max_length("snapshot"))?;
        self.trusted
            .update_snapshot(&bytes, self.now, false)
            .map_err(|e| ClientError::rejected(url.as_str(), e))?;
        self.store.persist("snapshot", &bytes)?;
        Ok(())
    }

    fn load_targets(&mut self, role: &str, delegator: &str) -> Result<(), ClientError> {
        if self.trusted.is_verified_by(role, delegator) {
            return Ok(());
        }
        if let Some(local) = self.load_local(role, self.limits.max_targets_bytes) {
            match self
                .trusted
                .update_delegated_targets(&local, role, delegator, self.now)
            {
                Ok(()) => {
                    self.note_loaded(role);
                    return Ok(());
                }
                Err(e) => tracing::debug!(role, error = %e, "local targets metadata not usable"),
            }
        }
        // Like python-tuf: no request for a role the snapshot does not list
        // (custody-tuf answers MissingMeta, naming the role and the file).
        self.trusted
            .meta_for(role)
            .map_err(|e| ClientError::rejected("snapshot", e))?;
        let name = self
            .trusted
            .remote_filename(role)
            .map_err(|e| ClientError::rejected(self.metadata_url.as_str(), e))?;
        let url = self.url_for(&name)?;
        let bytes = self.fetch_metadata(&url, self.trusted.max_length(role))?;
        self.trusted
            .update_delegated_targets(&bytes, role, delegator, self.now)
            .map_err(|e| ClientError::rejected(url.as_str(), e))?;
        self.store.persist(role, &bytes)?;
        self.note_loaded(role);
        Ok(())
    }

    fn note_loaded(&mut self, role: &str) {
        if role != "targets" && !self.delegated_loaded.iter().any(|r| r == role) {
            self.delegated_loaded.push(role.to_owned());
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
        let mut search = TargetSearch::new(target_path, self.limits.max_delegations);
        loop {
            let step = search
                .next(&self.trusted)
                .map_err(|e| ClientError::rejected("delegation search", e))?;
            match step {
                SearchStep::Found { role, target } => return Ok(Some((role, target))),
                SearchStep::NotFound => {
                    if search.limit_reached() {
                        tracing::warn!(
                            target = target_path,
                            max = self.limits.max_delegations,
                            "delegation search stopped at the role limit"
                        );
                    }
                    return Ok(None);
                }
                SearchStep::Load { role, delegator } => self.load_targets(&role, &delegator)?,
            }
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
                .delegated_loaded
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
        let remote = self.trusted.target_remote_path(target_path, &info);
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
