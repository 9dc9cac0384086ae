//! The director's view of the hosted image repository: a target is looked
//! up by custody-tuf's refresh driver (`Refresh`) — the same TUF client
//! workflow a device runs (root chain, timestamp, snapshot, targets, then
//! delegations in pre-order with each delegated role verified against its
//! delegator) — fed the published files directly, so the director never
//! assigns what a device would refuse, and targets in delegated roles or
//! TAP 15 hash bins can be assigned like top-level ones.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use custody_tuf::{Limits, Refresh, Source, Step, TargetFile};

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
    /// The published metadata does not verify (custody-tuf names the role
    /// and the rule).
    #[error("image repository {repo:?} does not verify: {file}: {source}")]
    Invalid {
        /// Repository name.
        repo: String,
        /// The file whose bytes were refused (or the directory).
        file: String,
        /// custody-tuf's refusal.
        #[source]
        source: Box<custody_tuf::Error>,
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
/// `1.root.json`; nothing is written. Returns the role that lists the
/// target and its signed description.
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
    let invalid = |file: &Path| {
        let (repo, file) = (repo.to_owned(), file.display().to_string());
        move |e| ImageLookupError::Invalid {
            repo,
            file,
            source: Box::new(e),
        }
    };
    let dir = std::fs::canonicalize(metadata_dir).map_err(unreadable(metadata_dir))?;
    let limits = Limits::default();
    let first_root = dir.join("1.root.json");
    let root = read_bounded(&first_root, limits.max_root_bytes)
        .map_err(unreadable(&first_root))?
        .ok_or_else(|| {
            unreadable(&first_root)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        })?;
    let mut refresh = Refresh::new(&root, limits, now).map_err(invalid(&first_root))?;
    refresh.lookup(target);
    loop {
        let fetch = match refresh.step().map_err(invalid(&dir))? {
            Step::Fetch(f) => f,
            Step::Found { role, target } => return Ok((role, target)),
            Step::NotFound { .. } | Step::Refreshed => {
                return Err(ImageLookupError::NotFound {
                    repo: repo.to_owned(),
                    target: target.to_owned(),
                })
            }
        };
        // No local trusted store: every refresh starts from the first root.
        let (bytes, file) = match fetch.source {
            Source::Local => (None, dir.clone()),
            Source::Remote => {
                // custody-tuf's file names are percent-encoded: one plain
                // file name inside the directory, as the publisher wrote it.
                let file = dir.join(&fetch.file_name);
                let bytes = read_bounded(&file, fetch.max_bytes.saturating_add(1))
                    .map_err(unreadable(&file))?;
                (bytes, file)
            }
        };
        refresh.provide(bytes.as_deref()).map_err(invalid(&file))?;
    }
}

/// A whole file of at most `bound` bytes (more is read only up to
/// `bound`, which custody-tuf then refuses as too large); `None` if absent.
fn read_bounded(path: &Path, bound: u64) -> Result<Option<Vec<u8>>, std::io::Error> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    file.take(bound).read_to_end(&mut out)?;
    Ok(Some(out))
}
