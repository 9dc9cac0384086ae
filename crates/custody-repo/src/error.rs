//! Typed errors of repository authoring. The signer backends' error is
//! custody-keys' [`SignerError`], re-exported here.
use std::path::PathBuf;

pub use custody_keys::SignerError;

/// Errors of repository authoring. Every variant names the file, role or
/// field, the rule and the values.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error(transparent)]
    Tuf(#[from] custody_tuf::Error),
    #[error("target path {path:?} rejected: {rule}")]
    BadTargetPath { path: String, rule: String },
    #[error("role {role:?}: {detail}")]
    Role { role: String, detail: String },
    #[error("{0}")]
    Invalid(String),
    #[error("publish refused: {0}")]
    Publish(String),
    #[error("target {target:?} refused by the {policy}: {detail}")]
    Provenance {
        target: String,
        /// which policy refused (the repository's stored one or the one
        /// given for this command)
        policy: String,
        detail: String,
    },
}
