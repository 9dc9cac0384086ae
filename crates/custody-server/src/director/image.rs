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
/// tree). Returns the role that lists the target and its signed
/// description.
pub fn lookup_target(
    repo: &str,
    metadata_dir: &Path,
    target: &str,
    now: DateTime<Utc>,
) -> Result<(String, TargetFile), ImageLookupError> {
    PublishedImage::open(repo, metadata_dir, now)?.find(target)
}

/// A published generation's metadata, verified from `1.root.json` up to
/// the top-level targets role; delegated roles are loaded (each verified
/// against its delegator) as lookups need them.
pub struct PublishedImage {
    repo: String,
    dir: PathBuf,
    trusted: TrustedMetadata,
    limits: Limits,
    now: DateTime<Utc>,
}

impl std::fmt::Debug for PublishedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedImage")
            .field("repo", &self.repo)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn read_in(repo: &str, dir: &Path, file: &str, max: u64) -> Result<Vec<u8>, ImageLookupError> {
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
}

fn invalid(repo: &str, file: &str) -> impl Fn(custody_tuf::Error) -> ImageLookupError {
    let (repo, file) = (repo.to_owned(), file.to_owned());
    move |e| ImageLookupError::Invalid {
        repo: repo.clone(),
        file: file.clone(),
        source: Box::new(e),
    }
}

impl PublishedImage {
    /// Verify the metadata in `metadata_dir` (resolved once, so a publish
    /// swapping `current` mid-walk cannot mix two generations): the root
    /// chain as far as it is published, timestamp, snapshot, targets.
    pub fn open(
        repo: &str,
        metadata_dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<Self, ImageLookupError> {
        let dir: PathBuf =
            std::fs::canonicalize(metadata_dir).map_err(|e| ImageLookupError::Unreadable {
                repo: repo.to_owned(),
                file: metadata_dir.display().to_string(),
                source: e,
            })?;
        let limits = Limits::default();
        let first = "1.root.json";
        let mut t = TrustedMetadata::with_limits(
            &read_in(repo, &dir, first, limits.max_root_bytes)?,
            limits,
        )
        .map_err(invalid(repo, first))?;
        loop {
            let next = t.next_root_filename();
            match read_in(repo, &dir, &next, limits.max_root_bytes) {
                Ok(b) => {
                    t.update_root(&b).map_err(invalid(repo, &next))?;
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
        t.update_timestamp(&read_in(repo, &dir, ts, limits.max_timestamp_bytes)?, now)
            .map_err(invalid(repo, ts))?;
        let sn = t
            .remote_filename("snapshot")
            .map_err(invalid(repo, "snapshot"))?;
        t.update_snapshot(
            &read_in(repo, &dir, &sn, t.max_length("snapshot"))?,
            now,
            false,
        )
        .map_err(invalid(repo, &sn))?;
        let tn = t
            .remote_filename("targets")
            .map_err(invalid(repo, "targets"))?;
        t.update_targets(&read_in(repo, &dir, &tn, t.max_length("targets"))?, now)
            .map_err(invalid(repo, &tn))?;
        Ok(PublishedImage {
            repo: repo.to_owned(),
            dir,
            trusted: t,
            limits,
            now,
        })
    }

    /// The role that lists `target` and its signed description, searched
    /// in pre-order through delegations as a device searches.
    pub fn find(&mut self, target: &str) -> Result<(String, TargetFile), ImageLookupError> {
        let repo = self.repo.clone();
        let mut search = TargetSearch::new(target, self.limits.max_delegations);
        let mut searched = 1usize;
        loop {
            match search
                .next(&self.trusted)
                .map_err(invalid(&repo, "delegation search"))?
            {
                SearchStep::Found { role, target } => return Ok((role, target)),
                SearchStep::NotFound => {
                    return Err(ImageLookupError::NotFound {
                        repo,
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
                    let file = self
                        .trusted
                        .remote_filename(&role)
                        .map_err(invalid(&repo, &role))?;
                    let bytes = read_in(&repo, &self.dir, &file, self.trusted.max_length(&role))?;
                    self.trusted
                        .update_delegated_targets(&bytes, &role, &delegator, self.now)
                        .map_err(invalid(&repo, &file))?;
                    searched += 1;
                }
            }
        }
    }
}
