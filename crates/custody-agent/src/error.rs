//! Typed errors of the agent. Every message names the file or field, the
//! rule that was broken and the values involved.

use std::io;
use std::path::PathBuf;

use custody_client::StoreError;

/// custody-fs errors keep the texts they had when the agent went through
/// custody-client's store wrappers (the same `StoreError` messages).
impl From<custody_fs::FsError> for AgentError {
    fn from(e: custody_fs::FsError) -> Self {
        AgentError::Store(StoreError::from(e))
    }
}

/// Everything that can stop the agent from taking a step.
///
/// An `AgentError` means the step did not happen; the persisted state is
/// unchanged or names the step still to do, so calling
/// [`Agent::recover`](crate::Agent::recover) later continues from there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A local file operation failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// the file or directory
        path: PathBuf,
        /// what was being done
        action: &'static str,
        /// the OS error
        #[source]
        source: io::Error,
    },
    /// Atomic write / bounded read through custody-client's store helpers.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A persisted JSON file (state, manifest, report) does not parse.
    #[error("{}: not a valid {what}: {source}", path.display())]
    Corrupt {
        /// the file
        path: PathBuf,
        /// what it should hold
        what: &'static str,
        /// the parse error
        #[source]
        source: serde_json::Error,
    },
    /// The caller asked for a step the state machine does not allow now.
    #[error("install state {state}: {operation} is not allowed: {rule}")]
    WrongState {
        /// the persisted phase (or "idle")
        state: String,
        /// the requested operation
        operation: &'static str,
        /// why not
        rule: &'static str,
    },
    /// The attempt id given does not match the one in progress.
    #[error("attempt {given} is not the attempt in progress ({current})")]
    UnknownAttempt {
        /// what the caller passed
        given: u64,
        /// what is in progress ("none" when idle)
        current: String,
    },
    /// Target metadata the agent was handed is not usable.
    #[error("target {target:?}: field {field}: {rule}")]
    InvalidTarget {
        /// the target name
        target: String,
        /// the offending field
        field: &'static str,
        /// the rule it broke, with values
        rule: String,
    },
    /// The release counter would go backwards (rollback attack or
    /// misconfigured director).
    #[error("target {target:?}: release counter {offered} is lower than the installed {installed}: refusing a downgrade")]
    Downgrade {
        /// the target name
        target: String,
        /// its release counter
        offered: u64,
        /// the committed release counter
        installed: u64,
    },
    /// Not enough free space for the download or the slot. The attempt is
    /// ended as `Failed` and its report is queued before this is returned.
    #[error("{}: needs {needed} bytes free for {purpose}, only {available} available", path.display())]
    InsufficientSpace {
        /// the directory checked
        path: PathBuf,
        /// what the space is for
        purpose: &'static str,
        /// bytes needed
        needed: u64,
        /// bytes available to unprivileged users (statvfs f_bavail * f_frsize)
        available: u64,
    },
    /// The installer's configuration or on-disk layout is not usable.
    #[error("installer {installer}: {detail}")]
    Installer {
        /// installer kind
        installer: &'static str,
        /// what is wrong
        detail: String,
    },
    /// The device key backend failed or holds an unusable key.
    #[error("device key ({backend}): {detail}")]
    Key {
        /// backend description
        backend: String,
        /// what is wrong
        detail: String,
    },
    /// A report sink refused or failed; the report stays queued.
    #[error("report {seq} ({id}): upload failed: {reason}")]
    Upload {
        /// queue sequence number
        seq: u64,
        /// report id
        id: String,
        /// the sink's reason
        reason: String,
    },
}

pub(crate) fn io_err(
    path: impl Into<PathBuf>,
    action: &'static str,
) -> impl FnOnce(io::Error) -> AgentError {
    let path = path.into();
    move |source| AgentError::Io {
        path,
        action,
        source,
    }
}
