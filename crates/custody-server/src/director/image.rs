//! The director's view of the hosted image repository: a target looked up
//! the way a device will look it up (custody-tuf's client checks: root
//! chain, timestamp, snapshot, targets, then delegations in pre-order with
//! each delegated role verified against its delegator), so the director
//! never assigns what a device would refuse, and targets in delegated roles
//! or TAP 15 hash bins can be assigned like top-level ones.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_tuf::{Limits, SearchStep, TargetFile, TargetSearch, TrustedMetadata};

/// Why a target of the image repository cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageLookupError {
    /// A metadata file the walk needs is missing or unreadable (typically:
    /// the repository was never published).
    #[error("image repository {repo:?}: {file}: {source} (is it published?)")]
    Unreadable {
        /// Repository name.
        repo: String,
        /// The file.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not verify (custody-tuf names the role and the rule).
    #[error("image repository {repo:?} does not verify: {file}: {source}")]
    Invalid {
        /// Repository name.
        repo: String,
        /// The file.
        file: String,
        /// custody-tuf's refusal.
        #[source]
        source: Box<custody_tuf::Error>,
    },
    /// No role on the delegation path lists the target.
    #[error("target {target:?} is not in image repository {repo:?} (searched {searched} role(s){limit})")]
    NotFound {
        /// Repository name.
        repo: String,
        /// The target path.
        target: String,
        /// How many roles were searched.
        searched: usize,
        /// Whether the delegation limit ended the search.
        limit: &'static str,
    },
}

/// Look `target` up in the published image repository whose live metadata
/// directory is `metadata_dir` (the `current/metadata` of the hosting
/// tree). The directory is resolved once so that a publish swapping
/// `current` mid-walk cannot mix two generations. Returns the role that
/// lists the target and its signed description.
pub fn lookup_target(
    repo: &str,
    metadata_dir: &Path,
    target: &str,
    now: DateTime<Utc>,
) -> Result<(String, TargetFile), ImageLookupError> {
    let dir: PathBuf =
        std::fs::canonicalize(metadata_dir).map_err(|e| ImageLookupError::Unreadable {
            repo: repo.to_owned(),
            file: metadata_dir.display().to_string(),
            source: e,
        })?;
    let limits = Limits::default();
    let read = |file: &str, max: u64| -> Result<Vec<u8>, ImageLookupError> {
        let path = dir.join(file);
        let unreadable = |e| ImageLookupError::Unreadable {
            repo: repo.to_owned(),
            file: file.to_owned(),
            source: e,
        };
        let meta = std::fs::metadata(&path).map_err(unreadable)?;
        if meta.len() > max {
            return Err(ImageLookupError::Unreadable {
                repo: repo.to_owned(),
                file: file.to_owned(),
                source: std::io::Error::other(format!(
                    "{} bytes, over the {max}-byte limit for this role",
                    meta.len()
                )),
            });
        }
        std::fs::read(&path).map_err(|e| ImageLookupError::Unreadable {
            repo: repo.to_owned(),
            file: file.to_owned(),
            source: e,
        })
    };
    let bad = |file: &str| {
        let (repo, file) = (repo.to_owned(), file.to_owned());
        move |e| ImageLookupError::Invalid {
            repo: repo.clone(),
            file: file.clone(),
            source: Box::new(e),
        }
    };

    let first = "1.root.json";
    let mut t = TrustedMetadata::with_limits(&read(first, limits.max_root_bytes)?, limits)
        .map_err(bad(first))?;
    // Walk the root chain as far as it is published.
    loop {
        let next = t.next_root_filename();
        match read(&next, limits.max_root_bytes) {
            Ok(b) => {
                t.update_root(&b).map_err(bad(&next))?;
            }
            Err(ImageLookupError::Unreadable { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    let ts = "timestamp.json";
    t.update_timestamp(&read(ts, limits.max_timestamp_bytes)?, now)
        .map_err(bad(ts))?;
    let sn = t.remote_filename("snapshot").map_err(bad("snapshot"))?;
    t.update_snapshot(&read(&sn, t.max_length("snapshot"))?, now, false)
        .map_err(bad(&sn))?;
    let tn = t.remote_filename("targets").map_err(bad("targets"))?;
    t.update_targets(&read(&tn, t.max_length("targets"))?, now)
        .map_err(bad(&tn))?;

    let mut search = TargetSearch::new(target, limits.max_delegations);
    let mut searched = 1usize;
    loop {
        match search.next(&t).map_err(bad("delegation search"))? {
            SearchStep::Found { role, target } => return Ok((role, target)),
            SearchStep::NotFound => {
                return Err(ImageLookupError::NotFound {
                    repo: repo.to_owned(),
                    target: target.to_owned(),
                    searched,
                    limit: if search.limit_reached() {
                        "; the delegation limit stopped the search"
                    } else {
                        ""
                    },
                })
            }
            SearchStep::Load { role, delegator } => {
                let file = t.remote_filename(&role).map_err(bad(&role))?;
                let bytes = read(&file, t.max_length(&role))?;
                t.update_delegated_targets(&bytes, &role, &delegator, now)
                    .map_err(bad(&file))?;
                searched += 1;
            }
        }
    }
}
