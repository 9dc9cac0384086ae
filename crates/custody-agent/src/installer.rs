//! The [`Installer`] trait: how a verified payload becomes the running
//! version, and how the old one comes back.
//!
//! The agent drives an installer through `plan → stage → activate →
//! (health check) → commit`, or `rollback`. It persists its state before
//! each call, so every method may be interrupted by a crash and must be
//! safe to call again from the start (idempotent) — except `stage`, which is
//! re-run only if [`Installer::restage_after_crash`] says so.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::fsutil::Probe;
use crate::state::Committed;
use crate::target::TargetMeta;

// The slot names and the plan are persisted install state (state.rs owns
// them, so state needs nothing of the installers); installers use them.
pub use crate::state::{InstallPlan, Slot};

/// What the installer's methods get to know about the attempt.
#[derive(Debug, Clone, Copy)]
pub struct StepCtx<'a> {
    /// attempt number
    pub attempt: u64,
    /// the target being installed
    pub target: &'a TargetMeta,
    /// where it goes
    pub plan: &'a InstallPlan,
    /// crash-test probe
    pub probe: &'a Probe,
    /// where hook commands record their process group while they run
    /// (see [`HookCommand::run_tracked`](crate::HookCommand::run_tracked))
    pub hook_file: &'a Path,
}

impl StepCtx<'_> {
    /// Target environment plus `CUSTODY_ATTEMPT`.
    pub fn base_env(&self) -> Vec<(String, String)> {
        let mut env = self.target.env();
        env.push(("CUSTODY_ATTEMPT".to_owned(), self.attempt.to_string()));
        env
    }
}

/// A way to install a verified payload. See the module docs for the
/// crash-safety contract.
pub trait Installer {
    /// Short name for logs and errors (`"slot"`, `"command"`).
    fn kind(&self) -> &'static str;

    /// Decide where the new version goes, without side effects.
    fn plan(&self, committed: Option<&Committed>) -> Result<InstallPlan, AgentError>;

    /// Directories that need free space for `target`, with the bytes
    /// needed in each (checked before the download starts).
    fn space_needed(&self, target: &TargetMeta) -> Vec<(PathBuf, u64)>;

    /// Put the payload in place without making it active. `Err(reason)`
    /// ends the attempt `Failed` (after [`rollback`](Self::rollback)).
    /// `Ok(Err(_))` vs `Err(_)`: an [`AgentError`] is a local fault that
    /// leaves the state as it is for a later retry.
    fn stage(&self, ctx: StepCtx<'_>, payload: &Path) -> Result<Result<(), String>, AgentError>;

    /// May staging be redone from scratch after a crash interrupted it?
    fn restage_after_crash(&self) -> bool;

    /// Make the staged version the active one. `Ok(Err(reason))` rolls back.
    fn activate(&self, ctx: StepCtx<'_>) -> Result<Result<(), String>, AgentError>;

    /// Environment for the health check (on top of the target's).
    fn health_env(&self, ctx: StepCtx<'_>) -> Vec<(String, String)>;

    /// Make the new version permanent after the health check passed.
    /// `Ok(Err(reason))` rolls back.
    fn commit(&self, ctx: StepCtx<'_>) -> Result<Result<(), String>, AgentError>;

    /// Restore the version that was active before the attempt.
    /// Idempotent. `Ok(Some(note))` means it was done but something is
    /// worth adding to the report (e.g. a rollback command failed).
    fn rollback(&self, ctx: StepCtx<'_>) -> Result<Option<String>, AgentError>;

    /// When idle: make the active version match `committed` (repairs a
    /// state that only a bug or manual meddling could cause). Idempotent.
    fn converge(&self, committed: Option<&Committed>, probe: &Probe) -> Result<(), AgentError>;
}

/// Installer selection as it appears in a configuration file:
///
/// ```json
/// {"kind": "slot", "root": "/var/lib/custody/device"}
/// {"kind": "command",
///  "install":  {"argv": ["rauc", "install", "--"], "timeout_secs": 1800},
///  "commit":   {"argv": ["rauc", "status", "mark-good"], "timeout_secs": 60},
///  "rollback": {"argv": ["rauc", "status", "mark-active", "other"], "timeout_secs": 60}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InstallerConfig {
    /// [`SlotInstaller`](crate::SlotInstaller) under `root`
    Slot {
        /// holds `slots/a`, `slots/b`, `current`
        root: PathBuf,
    },
    /// [`CommandInstaller`](crate::CommandInstaller)
    Command {
        /// install command (payload in `CUSTODY_PAYLOAD`)
        install: crate::HookCommand,
        /// run after the health check passed
        #[serde(default)]
        commit: Option<crate::HookCommand>,
        /// restores the previous version; idempotent
        #[serde(default)]
        rollback: Option<crate::HookCommand>,
        /// may `install` be re-run after a crash interrupted it
        #[serde(default)]
        rerun_after_crash: bool,
        /// directories that need the payload length free
        #[serde(default)]
        space: Vec<PathBuf>,
    },
}

impl InstallerConfig {
    /// Build the installer (the slot installer creates its directories).
    pub fn build(&self) -> Result<Box<dyn Installer + Send>, AgentError> {
        Ok(match self {
            InstallerConfig::Slot { root } => Box::new(crate::SlotInstaller::open(root.clone())?),
            InstallerConfig::Command {
                install,
                commit,
                rollback,
                rerun_after_crash,
                space,
            } => Box::new(crate::CommandInstaller {
                install: install.clone(),
                commit: commit.clone(),
                rollback: rollback.clone(),
                rerun_after_crash: *rerun_after_crash,
                space: space.clone(),
            }),
        })
    }
}
