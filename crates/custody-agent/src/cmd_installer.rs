//! The command installer: hands the verified file to an external tool
//! (RAUC, SWUpdate, OSTree, a package manager, a script).
//!
//! Environment of every command: `CUSTODY_PAYLOAD` (the verified file),
//! `CUSTODY_TARGET_NAME`, `CUSTODY_TARGET_LENGTH`, `CUSTODY_TARGET_SHA256`
//! and `CUSTODY_TARGET_SHA512` (when signed), `CUSTODY_RELEASE_COUNTER`,
//! `CUSTODY_TARGET_CUSTOM` (the target's custom JSON, when present),
//! `CUSTODY_ATTEMPT`.
//!
//! Install exits 0 → trial (health check, then the optional commit command,
//! e.g. `rauc status mark-good`); nonzero exit or timeout → the rollback
//! command runs and the attempt ends `Failed`. A failed health check or
//! commit command → rollback command, `RolledBack`. The rollback command
//! must be idempotent: after a crash it may run twice.

use std::path::{Path, PathBuf};

use crate::command::HookCommand;
use crate::error::AgentError;
use crate::fsutil::Probe;
use crate::installer::{InstallPlan, Installer, StepCtx};
use crate::state::Committed;
use crate::target::TargetMeta;

/// Configuration of a [`CommandInstaller`].
#[derive(Debug, Clone)]
pub struct CommandInstaller {
    /// installs the payload (not yet active / or active until rollback)
    pub install: HookCommand,
    /// makes the new version permanent after the health check
    pub commit: Option<HookCommand>,
    /// restores the previous version; idempotent
    pub rollback: Option<HookCommand>,
    /// may `install` be re-run after a crash interrupted it? (false: the
    /// rollback command runs and the attempt ends `Failed`)
    pub rerun_after_crash: bool,
    /// directories the install command writes to; each needs the payload
    /// length free before the download starts
    pub space: Vec<PathBuf>,
}

impl CommandInstaller {
    /// An installer that runs `install`, with no commit or rollback command.
    pub fn new(install: HookCommand) -> Self {
        CommandInstaller {
            install,
            commit: None,
            rollback: None,
            rerun_after_crash: false,
            space: Vec::new(),
        }
    }

    /// Set the rollback command.
    pub fn with_rollback(mut self, rollback: HookCommand) -> Self {
        self.rollback = Some(rollback);
        self
    }

    /// Set the commit command.
    pub fn with_commit(mut self, commit: HookCommand) -> Self {
        self.commit = Some(commit);
        self
    }

    fn env(ctx: StepCtx<'_>, payload: Option<&Path>) -> Vec<(String, String)> {
        let mut env = ctx.base_env();
        if let Some(p) = payload {
            env.push((
                "CUSTODY_PAYLOAD".to_owned(),
                p.to_string_lossy().into_owned(),
            ));
        }
        env
    }
}

impl Installer for CommandInstaller {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn plan(&self, _committed: Option<&Committed>) -> Result<InstallPlan, AgentError> {
        if self.install.argv.is_empty() {
            return Err(AgentError::Installer {
                installer: "command",
                detail: "install command argv is empty".to_owned(),
            });
        }
        Ok(InstallPlan::Command)
    }

    fn space_needed(&self, target: &TargetMeta) -> Vec<(PathBuf, u64)> {
        self.space
            .iter()
            .map(|d| (d.clone(), target.length))
            .collect()
    }

    fn stage(&self, ctx: StepCtx<'_>, payload: &Path) -> Result<Result<(), String>, AgentError> {
        ctx.probe.hit("command:install-start");
        let r = self
            .install
            .run_tracked(
                &Self::env(ctx, Some(payload)),
                ctx.probe,
                Some(ctx.hook_file),
            )
            .map_err(|e| format!("install command {e}"));
        ctx.probe.hit("command:install-done");
        Ok(r)
    }

    fn restage_after_crash(&self) -> bool {
        self.rerun_after_crash
    }

    fn activate(&self, _ctx: StepCtx<'_>) -> Result<Result<(), String>, AgentError> {
        Ok(Ok(()))
    }

    fn health_env(&self, _ctx: StepCtx<'_>) -> Vec<(String, String)> {
        Vec::new()
    }

    fn commit(&self, ctx: StepCtx<'_>) -> Result<Result<(), String>, AgentError> {
        let Some(cmd) = &self.commit else {
            return Ok(Ok(()));
        };
        Ok(cmd
            .run_tracked(&Self::env(ctx, None), ctx.probe, Some(ctx.hook_file))
            .map_err(|e| format!("commit command {e}")))
    }

    fn rollback(&self, ctx: StepCtx<'_>) -> Result<Option<String>, AgentError> {
        let Some(cmd) = &self.rollback else {
            return Ok(None);
        };
        ctx.probe.hit("command:rollback-start");
        let r = cmd.run_tracked(&Self::env(ctx, None), ctx.probe, Some(ctx.hook_file));
        ctx.probe.hit("command:rollback-done");
        Ok(r.err().map(|e| format!("rollback command {e}")))
    }

    fn converge(&self, _committed: Option<&Committed>, _probe: &Probe) -> Result<(), AgentError> {
        Ok(())
    }
}
