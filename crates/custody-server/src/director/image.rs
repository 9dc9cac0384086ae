//! The director's view of the hosted image repository: a target is looked
//! up by custody-client's `Updater` — the same TUF client workflow a device
//! runs (root chain, timestamp, snapshot, targets, then delegations in
//! pre-order with each delegated role verified against its delegator) —
//! over the published files, so the director never assigns what a device
//! would refuse, and targets in delegated roles or TAP 15 hash bins can be
//! assigned like top-level ones.

use std::path::Path;

use chrono::{DateTime, Utc};
use custody_client::{init_trusted_root, ClientError, FileTransport, Updater, UpdaterConfig};
use custody_tuf::TargetFile;

/// Why a target of the image repository cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageLookupError {
    /// The published metadata is missing or unreadable (typically: the
    /// repository was never published).
    #[error("image repository {repo:?}: {file}: {source} (is it published?)")]
    Unreadable {
        /// Repository name.
        repo: String,
        /// The file or directory.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The published metadata does not verify (custody-client names the
    /// file, the role and the rule).
    #[error("image repository {repo:?} does not verify: {source}")]
    Invalid {
        /// Repository name.
        repo: String,
        /// The client's refusal.
        #[source]
        source: Box<ClientError>,
    },
    /// No role on the target's delegation path lists it.
    #[error("target {target:?} is not in image repository {repo:?}: no role on its delegation path lists it")]
    NotFound {
        /// Repository name.
        repo: String,
        /// The target path.
        target: String,
    },
}

/// Look `target` up in the published image repository whose live metadata
/// directory is `metadata_dir` (the `current/metadata` of the hosting
/// tree). The directory is resolved once, so a publish swapping `current`
/// mid-walk cannot mix two generations. Trust starts from the published
/// `1.root.json` in a throw-away client metadata directory. Returns the
/// role that lists the target and its signed description.
pub fn lookup_target(
    repo: &str,
    metadata_dir: &Path,
    target: &str,
    now: DateTime<Utc>,
) -> Result<(String, TargetFile), ImageLookupError> {
    let unreadable = |file: &Path| {
        let (repo, file) = (repo.to_owned(), file.display().to_string());
        move |source| ImageLookupError::Unreadable { repo, file, source }
    };
    let invalid = |e: ClientError| ImageLookupError::Invalid {
        repo: repo.to_owned(),
        source: Box::new(e),
    };
    let dir = std::fs::canonicalize(metadata_dir).map_err(unreadable(metadata_dir))?;
    let first_root = dir.join("1.root.json");
    std::fs::metadata(&first_root).map_err(unreadable(&first_root))?;
    let trust =
        tempfile::tempdir().map_err(unreadable(Path::new("temporary metadata directory")))?;
    init_trusted_root(trust.path(), &first_root).map_err(invalid)?;
    let url = url::Url::from_directory_path(&dir).map_err(|()| ImageLookupError::Unreadable {
        repo: repo.to_owned(),
        file: dir.display().to_string(),
        source: std::io::Error::other("not an absolute directory path"),
    })?;
    let mut client = Updater::new(
        trust.path(),
        url,
        FileTransport,
        UpdaterConfig::default(),
        now,
    )
    .map_err(invalid)?;
    client
        .get_target_info(target)
        .map_err(invalid)?
        .ok_or_else(|| ImageLookupError::NotFound {
            repo: repo.to_owned(),
            target: target.to_owned(),
        })
}
