//! The agent's install driver: the persisted state machine around an
//! [`Installer`], the report queue and the recovery on start.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::command::{kill_orphaned_hook, HookCommand};
use crate::error::{io_err, AgentError};
use crate::fsutil::{
    digest_and_verify, ensure_dir, read_json, remove_temp_files, write_json, Probe,
};
use crate::installer::{InstallPlan, Installer, StepCtx};
use crate::report::{report_id, Outcome, Report, ReportQueue, ReportSink};
use crate::state::{
    recovery_step, AgentState, Attempt, Committed, Phase, RecoveryStep, RollbackEnd,
    MAX_STAGE_TRIES, STATE_FORMAT,
};
use crate::target::TargetMeta;

/// Agent configuration (device-local part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// the agent's directory: `state.json`, `lock`, `downloads/`, `reports/`
    pub root: PathBuf,
    /// run after activation; must exit 0 within its timeout for the new
    /// version to be committed. `None`: activation alone decides.
    #[serde(default)]
    pub health_check: Option<HookCommand>,
    /// bytes that must stay free on every filesystem after the download
    /// and the install have taken their space
    #[serde(default = "default_reserve")]
    pub reserve_bytes: u64,
}

fn default_reserve() -> u64 {
    1024 * 1024
}

impl AgentConfig {
    /// A configuration with no health check and a 1 MiB reserve.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        AgentConfig {
            root: root.into(),
            health_check: None,
            reserve_bytes: default_reserve(),
        }
    }
}

/// The device-local agent. Holds an exclusive lock on its directory.
pub struct Agent {
    config: AgentConfig,
    installer: Box<dyn Installer + Send>,
    queue: ReportQueue,
    state: AgentState,
    probe: Probe,
    _lock: File,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("root", &self.config.root)
            .field("installer", &self.installer.kind())
            .field("state", &self.state.describe())
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// normal forward progress
    Run,
    /// first step after reading the state at start
    Recover,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Agent {
    /// Open the agent directory (created if missing), take its lock and
    /// load `state.json`. Call [`recover`](Self::recover) next.
    pub fn open(
        config: AgentConfig,
        installer: Box<dyn Installer + Send>,
        probe: Probe,
    ) -> Result<Self, AgentError> {
        ensure_dir(&config.root)?;
        ensure_dir(&config.root.join("downloads"))?;
        let lock_path = config.root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "open lock file"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| AgentError::Io {
                path: lock_path.clone(),
                action: "lock (is another agent running on this directory?)",
                source: e.into(),
            },
        )?;
        let queue = ReportQueue::open(config.root.join("reports"))?;
        let state_path = config.root.join("state.json");
        let state = read_json::<AgentState>(&state_path, "agent state")?.unwrap_or_default();
        if state.format != STATE_FORMAT {
            return Err(AgentError::WrongState {
                state: format!("format {}", state.format),
                operation: "open",
                rule: "state.json format is not the one this agent understands (1)",
            });
        }
        Ok(Agent {
            config,
            installer,
            queue,
            state,
            probe,
            _lock: lock,
        })
    }

    /// The persisted state.
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// The report queue.
    pub fn queue(&self) -> &ReportQueue {
        &self.queue
    }

    /// The installer.
    pub fn installer(&self) -> &dyn Installer {
        self.installer.as_ref()
    }

    fn hook_file(&self) -> PathBuf {
        self.config.root.join("hook.json")
    }

    fn state_path(&self) -> PathBuf {
        self.config.root.join("state.json")
    }

    /// Where the network half should write the payload of `attempt`.
    pub fn download_path(&self, attempt: u64) -> PathBuf {
        self.config
            .root
            .join("downloads")
            .join(format!("attempt-{attempt}"))
    }

    /// Persist `self.state`, with probes right before and after.
    fn persist(&mut self, label: &str) -> Result<(), AgentError> {
        self.probe.hit(&format!("persist-before:{label}"));
        write_json(&self.state_path(), &self.state)?;
        self.probe.hit(&format!("persist-after:{label}"));
        Ok(())
    }

    fn set_phase(&mut self, phase: Phase) -> Result<(), AgentError> {
        let label = phase.name();
        if let Some(a) = self.state.attempt.as_mut() {
            a.phase = phase;
        }
        self.persist(label)
    }

    /// `operation` is refused in the current state: `rule` says why.
    fn wrong_state(&self, operation: &'static str, rule: &'static str) -> AgentError {
        AgentError::WrongState {
            state: self.state.describe(),
            operation,
            rule,
        }
    }

    /// The current attempt `id`, if its phase is one `operation` takes
    /// (`takes`); otherwise refused with `rule`.
    fn attempt_for(
        &self,
        id: u64,
        operation: &'static str,
        takes: fn(&Phase) -> bool,
        rule: &'static str,
    ) -> Result<Attempt, AgentError> {
        let a = self.current_attempt(id)?;
        if takes(&a.phase) {
            Ok(a)
        } else {
            Err(self.wrong_state(operation, rule))
        }
    }

    fn current_attempt(&self, id: u64) -> Result<Attempt, AgentError> {
        match &self.state.attempt {
            Some(a) if a.id == id => Ok(a.clone()),
            Some(a) => Err(AgentError::UnknownAttempt {
                given: id,
                current: a.id.to_string(),
            }),
            None => Err(AgentError::UnknownAttempt {
                given: id,
                current: "none".to_owned(),
            }),
        }
    }

    /// Run at start, before anything else: finish or undo whatever a crash
    /// interrupted (see [`recovery_step`] for the table). Returns the
    /// outcome if an attempt was finished, `None` when the agent was idle.
    pub fn recover(&mut self) -> Result<Option<Outcome>, AgentError> {
        // A hook command (install, rollback, health check) that outlived a
        // killed agent must not keep changing the device while recovery
        // decides: kill it first.
        kill_orphaned_hook(&self.hook_file(), Duration::from_secs(10))?;
        if self.state.attempt.is_none() {
            self.installer
                .converge(self.state.committed.as_ref(), &self.probe)?;
            self.clean_downloads()?;
            return Ok(None);
        }
        self.drive(Mode::Recover).map(Some)
    }

    /// Start an attempt for `target` (already verified by the network
    /// half). Checks the target fields, refuses a release counter lower
    /// than the committed one, and checks free space for the download and
    /// the install. Returns the attempt number; the payload is expected at
    /// [`download_path`](Self::download_path).
    ///
    /// A downgrade ends the attempt `AttackDetected` and too little space
    /// ends it `Failed`; in both cases the report is queued before the
    /// error is returned.
    pub fn begin(&mut self, target: TargetMeta) -> Result<u64, AgentError> {
        self.begin_with(target, false)
    }

    /// [`begin`](Self::begin), except that with `rollback_authorized` a
    /// lower release counter is accepted: only for a target whose rollback
    /// authorisation the network half verified with the device's rollback
    /// keys (`verify::verify_update` decides that, never the caller's whim).
    pub fn begin_with(
        &mut self,
        target: TargetMeta,
        rollback_authorized: bool,
    ) -> Result<u64, AgentError> {
        if self.state.attempt.is_some() {
            let rule = "an attempt is in progress: call recover() first";
            return Err(self.wrong_state("begin", rule));
        }
        target.validate()?;
        let id = self.state.next_attempt;
        let refusal = self.refusal(&target, id, rollback_authorized);
        self.state.next_attempt = id.saturating_add(1);
        self.state.attempt = Some(Attempt {
            id,
            target,
            plan: None,
            phase: match &refusal {
                None => Phase::Downloading,
                Some(e @ AgentError::Downgrade { .. }) => Phase::AttackDetected {
                    reason: e.to_string(),
                },
                Some(e) => Phase::Failed {
                    reason: e.to_string(),
                },
            },
        });
        self.persist("begin")?;
        match refusal {
            None => Ok(id),
            Some(e) => {
                self.drive(Mode::Run)?;
                Err(e)
            }
        }
    }

    /// Why `target` must not be attempted, if it must not.
    fn refusal(
        &self,
        target: &TargetMeta,
        id: u64,
        rollback_authorized: bool,
    ) -> Option<AgentError> {
        if let Some(c) = &self.state.committed {
            if target.release_counter < c.target.release_counter && !rollback_authorized {
                return Some(AgentError::Downgrade {
                    target: target.name.clone(),
                    offered: target.release_counter,
                    installed: c.target.release_counter,
                });
            }
        }
        self.check_space(target, id).err()
    }

    /// Free space: the download plus the installer's needs, summed per
    /// filesystem (statvfs f_fsid), plus the reserve, must be available.
    fn check_space(&self, target: &TargetMeta, id: u64) -> Result<(), AgentError> {
        let download_dir = self
            .download_path(id)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.config.root.clone());
        let mut needs = vec![(download_dir, target.length)];
        needs.extend(self.installer.space_needed(target));
        let mut per_fs: BTreeMap<u64, (PathBuf, u64, u64)> = BTreeMap::new();
        for (dir, bytes) in needs {
            let st = rustix::fs::statvfs(&dir).map_err(|e| AgentError::Io {
                path: dir.clone(),
                action: "statvfs",
                source: e.into(),
            })?;
            let available = st.f_bavail.saturating_mul(st.f_frsize);
            let entry = per_fs
                .entry(st.f_fsid)
                .or_insert((dir.clone(), 0, available));
            entry.1 = entry.1.saturating_add(bytes);
        }
        for (_, (dir, needed, available)) in per_fs {
            let needed = needed.saturating_add(self.config.reserve_bytes);
            if available < needed {
                return Err(AgentError::InsufficientSpace {
                    path: dir,
                    purpose: "download and install plus reserve",
                    needed,
                    available,
                });
            }
        }
        Ok(())
    }

    /// The network half downloaded and verified the payload of `attempt`
    /// into `payload` (normally [`download_path`](Self::download_path)).
    pub fn downloaded(&mut self, attempt: u64, payload: &Path) -> Result<(), AgentError> {
        let downloading = |p: &Phase| *p == Phase::Downloading;
        let rule = "only a downloading attempt can be marked downloaded";
        self.attempt_for(attempt, "downloaded", downloading, rule)?;
        self.set_phase(Phase::Downloaded {
            payload: payload.to_owned(),
        })
    }

    /// End a downloading attempt with `Failed` or `AttackDetected` (the
    /// network half's verification rejected something). Queues the report.
    pub fn abort(&mut self, attempt: u64, outcome: Outcome) -> Result<Outcome, AgentError> {
        let downloading = |p: &Phase| *p == Phase::Downloading;
        let rule = "only a downloading attempt can be aborted";
        self.attempt_for(attempt, "abort", downloading, rule)?;
        let phase = match outcome {
            Outcome::Failed { reason } => Phase::Failed { reason },
            Outcome::AttackDetected { reason } => Phase::AttackDetected { reason },
            Outcome::Installed | Outcome::RolledBack { .. } => {
                let rule = "abort takes a Failed or AttackDetected outcome";
                return Err(self.wrong_state("abort", rule));
            }
        };
        self.set_phase(phase)?;
        self.drive(Mode::Run)
    }

    /// Install a downloaded attempt: stage, activate, health check, commit
    /// or roll back, queue the report. Returns the outcome.
    pub fn install(&mut self, attempt: u64) -> Result<Outcome, AgentError> {
        let downloaded = |p: &Phase| matches!(p, Phase::Downloaded { .. });
        let rule = "only a downloaded attempt can be installed";
        self.attempt_for(attempt, "install", downloaded, rule)?;
        self.drive(Mode::Run)
    }

    /// Hand queued reports to `sink`, oldest first (see
    /// [`ReportQueue::upload`]). Refused while an attempt is in progress.
    pub fn upload_reports(&mut self, sink: &mut dyn ReportSink) -> Result<usize, AgentError> {
        if self.state.attempt.is_some() {
            let rule = "finish or recover the attempt first, so its report is queued exactly once";
            return Err(self.wrong_state("upload_reports", rule));
        }
        self.queue.upload(sink)
    }

    /// Advance the attempt until it reaches a terminal phase, its report is
    /// queued and the agent is idle again.
    fn drive(&mut self, mut mode: Mode) -> Result<Outcome, AgentError> {
        let hook_file = self.hook_file();
        loop {
            let Some(attempt) = self.state.attempt.clone() else {
                return Err(AgentError::WrongState {
                    state: "idle".to_owned(),
                    operation: "drive",
                    rule: "no attempt in progress",
                });
            };
            let recovering = mode == Mode::Recover;
            mode = Mode::Run;
            match (&attempt.phase, recovering) {
                (Phase::Downloading, true) => {
                    self.set_phase(Phase::Failed {
                        reason: "the agent stopped while the payload was being downloaded"
                            .to_owned(),
                    })?;
                }
                (Phase::Downloading, false) => {
                    return Err(self.wrong_state("install", "the payload is not downloaded yet"))
                }
                (Phase::Downloaded { payload }, _) => {
                    let verified = digest_and_verify(payload, &attempt.target)
                        .map_err(|e| e.to_string())
                        .and_then(|(_, v)| v);
                    match verified {
                        Err(e) => self.set_phase(Phase::Failed {
                            reason: format!(
                                "{}: payload no longer matches the verified target: {e}",
                                payload.display()
                            ),
                        })?,
                        Ok(()) => {
                            // Plan from a device that matches the state file.
                            self.installer
                                .converge(self.state.committed.as_ref(), &self.probe)?;
                            let plan = self.installer.plan(self.state.committed.as_ref())?;
                            if let Some(a) = self.state.attempt.as_mut() {
                                a.plan = Some(plan);
                            }
                            self.set_phase(Phase::Installing {
                                payload: payload.clone(),
                                tries: 1,
                            })?;
                        }
                    }
                }
                (Phase::Installing { payload, tries }, _) => {
                    if recovering {
                        let step =
                            recovery_step(Some(&attempt), self.installer.restage_after_crash());
                        if step == RecoveryStep::AbandonStaging {
                            self.set_phase(Phase::RollingBack {
                                end: RollbackEnd::Failed,
                                reason: if self.installer.restage_after_crash() {
                                    format!(
                                        "the agent stopped while installing {tries} times (limit {MAX_STAGE_TRIES}): giving up on this target"
                                    )
                                } else {
                                    format!(
                                        "the agent stopped while installing (try {tries}) and the {} installer cannot redo it",
                                        self.installer.kind()
                                    )
                                },
                            })?;
                            continue;
                        }
                        self.set_phase(Phase::Installing {
                            payload: payload.clone(),
                            tries: tries.saturating_add(1),
                        })?;
                    }
                    let plan = self.plan_of(&attempt)?;
                    let ctx = self.step_ctx(&attempt, &plan, &hook_file);
                    match self.installer.stage(ctx, payload)? {
                        Ok(()) => self.set_phase(Phase::Trial { since: now_secs() })?,
                        Err(reason) => self.set_phase(Phase::RollingBack {
                            end: RollbackEnd::Failed,
                            reason,
                        })?,
                    }
                }
                (Phase::Trial { since }, true) => {
                    self.set_phase(Phase::RollingBack {
                        end: RollbackEnd::RolledBack,
                        reason: format!(
                            "the agent stopped during the trial that started at {since} (Unix time), before commit"
                        ),
                    })?;
                }
                (Phase::Trial { .. }, false) => {
                    let plan = self.plan_of(&attempt)?;
                    match self.trial(&attempt, &plan)? {
                        Ok(()) => {
                            self.state.committed = Some(Committed {
                                target: attempt.target.clone(),
                                plan,
                                attempt: attempt.id,
                            });
                            self.set_phase(Phase::Committed)?;
                        }
                        Err(reason) => self.set_phase(Phase::RollingBack {
                            end: RollbackEnd::RolledBack,
                            reason,
                        })?,
                    }
                }
                (Phase::RollingBack { end, reason }, _) => {
                    let mut reason = reason.clone();
                    if let Some(plan) = attempt.plan.clone() {
                        let ctx = self.step_ctx(&attempt, &plan, &hook_file);
                        if let Some(note) = self.installer.rollback(ctx)? {
                            reason = format!("{reason}; {note}");
                        }
                    }
                    self.installer
                        .converge(self.state.committed.as_ref(), &self.probe)?;
                    self.set_phase(match end {
                        RollbackEnd::Failed => Phase::Failed { reason },
                        RollbackEnd::RolledBack => Phase::RolledBack { reason },
                    })?;
                }
                (phase, _) => {
                    let Some(outcome) = phase.outcome() else {
                        return Err(self.wrong_state("drive", "unhandled phase"));
                    };
                    return self.finish(&attempt, outcome);
                }
            }
        }
    }

    /// What an installer step of `attempt` gets.
    fn step_ctx<'a>(
        &'a self,
        attempt: &'a Attempt,
        plan: &'a InstallPlan,
        hook_file: &'a Path,
    ) -> StepCtx<'a> {
        StepCtx {
            attempt: attempt.id,
            target: &attempt.target,
            plan,
            probe: &self.probe,
            hook_file,
        }
    }

    fn plan_of(&self, attempt: &Attempt) -> Result<InstallPlan, AgentError> {
        let rule = "the attempt has no install plan (state.json edited by hand?)";
        (attempt.plan.clone()).ok_or_else(|| self.wrong_state("install", rule))
    }

    /// Activate, health-check, commit. `Ok(Err(reason))` means roll back.
    fn trial(
        &self,
        attempt: &Attempt,
        plan: &InstallPlan,
    ) -> Result<Result<(), String>, AgentError> {
        let hook_file = self.hook_file();
        let ctx = self.step_ctx(attempt, plan, &hook_file);
        if let Err(e) = self.installer.activate(ctx)? {
            return Ok(Err(e));
        }
        self.probe.hit("trial:activated");
        if let Some(hc) = &self.config.health_check {
            let mut env = ctx.base_env();
            env.extend(self.installer.health_env(ctx));
            self.probe.hit("trial:health-start");
            let r = hc.run_tracked(&env, &self.probe, Some(&hook_file));
            self.probe.hit("trial:health-done");
            if let Err(e) = r {
                return Ok(Err(format!("health check {e}")));
            }
        }
        let r = self.installer.commit(ctx)?;
        self.probe.hit("trial:installer-committed");
        Ok(r)
    }

    /// Terminal phase: make the active version match the committed one,
    /// queue the report (idempotent on its id), go idle, clean downloads.
    fn finish(&mut self, attempt: &Attempt, outcome: Outcome) -> Result<Outcome, AgentError> {
        self.installer
            .converge(self.state.committed.as_ref(), &self.probe)?;
        let report = Report {
            id: report_id(attempt.id),
            attempt: attempt.id,
            target: attempt.target.clone(),
            outcome: outcome.clone(),
            committed: self.state.committed.as_ref().map(Committed::as_ref),
            decided_at: now_secs(),
        };
        self.probe.hit("report:before-enqueue");
        self.queue.enqueue(&report)?;
        self.probe.hit("report:enqueued");
        self.state.attempt = None;
        self.state.last_reported = Some(attempt.id);
        self.persist("idle")?;
        self.clean_downloads()?;
        tracing::info!(attempt = attempt.id, outcome = outcome.kind(), target = %attempt.target.name, "attempt finished");
        Ok(outcome)
    }

    /// Remove leftover downloads and temp files of interrupted atomic
    /// writes (only called when idle).
    fn clean_downloads(&self) -> Result<(), AgentError> {
        remove_temp_files(&self.config.root)?;
        remove_temp_files(self.queue.dir())?;
        let dir = self.config.root.join("downloads");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir, "list downloads")(e)),
        };
        for entry in rd {
            let entry = entry.map_err(io_err(&dir, "list downloads"))?;
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                fs::remove_file(&path).map_err(io_err(&path, "remove old download"))?;
            }
        }
        Ok(())
    }
}
