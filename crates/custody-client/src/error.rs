//! The client's error type: what failed, where (URL or local path), and
//! custody-tuf's verdict when a trust rule was broken.

use std::path::PathBuf;

use crate::store::StoreError;
use crate::transport::FetchError;

/// Everything that can stop a refresh or a download.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Network or transport failure, endless data, slow retrieval.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Local metadata or target directory failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// custody-tuf rejected bytes from `source_name` (a URL or local path).
    #[error("{source_name}: {error}")]
    Rejected {
        /// where the rejected bytes came from
        source_name: String,
        /// the broken rule, role and values (shown in the message, so not
        /// also reported as `source()`)
        error: custody_tuf::Error,
    },
    /// No trusted root in the metadata directory.
    #[error("{}: no trusted root: run `custody client --metadata-dir DIR init ROOT_FILE` first", path.display())]
    NoTrustedRoot {
        /// expected location of root.json
        path: PathBuf,
    },
    /// The target is not listed by any trusted targets role reachable by
    /// the delegation rules.
    #[error("target {path:?}: not listed by targets or by any role delegated that path (searched {searched})")]
    TargetNotFound {
        /// target path
        path: String,
        /// roles searched, in order
        searched: String,
    },
    /// A target path that cannot be stored or requested.
    #[error("target {path:?}: {reason}")]
    BadTargetPath {
        /// target path
        path: String,
        /// why
        reason: String,
    },
    /// A URL could not be built.
    #[error("{base}: cannot form the URL for {relative:?}: {reason}")]
    Url {
        /// base URL
        base: String,
        /// relative part
        relative: String,
        /// parser message
        reason: String,
    },
    /// The workflow was used out of order (e.g. download before refresh).
    #[error("client misuse: {0}")]
    Usage(String),
}

impl ClientError {
    /// A short stable name for machine-readable output.
    pub fn kind_name(&self) -> &'static str {
        use custody_tuf::error::ErrorKind as K;
        match self {
            ClientError::Fetch(FetchError::EndlessData { .. }) => "endless-data",
            ClientError::Fetch(FetchError::Timeout { .. }) => "slow-retrieval",
            ClientError::Fetch(FetchError::NotFound { .. }) => "not-found",
            ClientError::Fetch(_) => "transport",
            ClientError::Store(_) => "local-io",
            ClientError::Rejected { error, .. } => match error.kind() {
                K::Malformed => "malformed",
                K::WrongType => "wrong-type",
                K::UnsupportedSpecVersion => "unsupported-spec-version",
                K::Signature => "signature",
                K::Rollback => "rollback",
                K::RootVersionSkip => "root-version-skip",
                K::Expired => "expired",
                K::MixAndMatch => "mix-and-match",
                K::TooLarge => "endless-data",
                K::NoSupportedHash => "no-supported-hash",
                K::Delegation => "delegation",
                K::Order => "order",
                _ => "rejected",
            },
            ClientError::NoTrustedRoot { .. } => "no-trusted-root",
            ClientError::TargetNotFound { .. } => "target-not-found",
            ClientError::BadTargetPath { .. } => "bad-target-path",
            ClientError::Url { .. } => "bad-url",
            ClientError::Usage(_) => "usage",
        }
    }

    /// custody-tuf's verdict, when a trust rule was broken.
    pub fn tuf_error(&self) -> Option<&custody_tuf::Error> {
        match self {
            ClientError::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    pub(crate) fn rejected(source_name: impl Into<String>, error: custody_tuf::Error) -> Self {
        ClientError::Rejected {
            source_name: source_name.into(),
            error,
        }
    }
}
