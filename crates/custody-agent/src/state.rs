//! The persisted install state and the recovery table.
//!
//! `state.json` holds what is committed and the attempt in progress. It is
//! rewritten atomically (temp, fsync, rename, dir fsync) BEFORE the side
//! effect each phase announces, so after a crash the phase on disk says what
//! may have half happened, and [`recovery_step`] says what to do about it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::report::{CommittedRef, Outcome};
use crate::target::TargetMeta;

/// Format version of `state.json`.
pub const STATE_FORMAT: u32 = 1;

/// How often an interrupted install step is re-run before the attempt is
/// given up (a payload that kills the device while being written must not
/// loop forever).
pub const MAX_STAGE_TRIES: u32 = 3;

/// Contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// [`STATE_FORMAT`]
    pub format: u32,
    /// the committed version, `None` on a device never updated by custody
    pub committed: Option<Committed>,
    /// the next attempt number (attempt numbers are never reused)
    pub next_attempt: u64,
    /// the attempt in progress; `None` means idle
    pub attempt: Option<Attempt>,
    /// the last attempt whose report was queued
    pub last_reported: Option<u64>,
}

impl Default for AgentState {
    fn default() -> Self {
        AgentState {
            format: STATE_FORMAT,
            committed: None,
            next_attempt: 1,
            attempt: None,
            last_reported: None,
        }
    }
}

impl AgentState {
    /// Short description of where the state machine is (for errors).
    pub fn describe(&self) -> String {
        match &self.attempt {
            None => "idle".to_owned(),
            Some(a) => format!("attempt {} {}", a.id, a.phase.name()),
        }
    }
}

/// An A/B slot name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// `slots/a`
    A,
    /// `slots/b`
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `"a"` or `"b"`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

/// Where an attempt's version goes, fixed (and persisted) before staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "installer", rename_all = "snake_case")]
pub enum InstallPlan {
    /// A/B: write `new`, switch `current` from `old` (none on a fresh
    /// device) to `new`
    Slot {
        /// the inactive slot that receives the payload
        new: Slot,
        /// the slot active when the attempt started
        old: Option<Slot>,
    },
    /// an external command installs; it knows where things go
    Command,
}

/// The committed version and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// the target
    pub target: TargetMeta,
    /// where the installer put it (the slot, for A/B)
    pub plan: InstallPlan,
    /// the attempt that committed it
    pub attempt: u64,
}

impl Committed {
    /// Name and release counter.
    pub fn as_ref(&self) -> CommittedRef {
        CommittedRef {
            name: self.target.name.clone(),
            release_counter: self.target.release_counter,
        }
    }
}

/// One try to install one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// attempt number; the report id is derived from it
    pub id: u64,
    /// what is being installed
    pub target: TargetMeta,
    /// where the installer puts it; fixed when `Installing` is entered
    pub plan: Option<InstallPlan>,
    /// where the attempt is
    pub phase: Phase,
}

/// Which terminal phase a rollback ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackEnd {
    /// the new version never became active: `Failed`
    Failed,
    /// the new version was (or may have been) active: `RolledBack`
    RolledBack,
}

/// The phases. Each is persisted before the side effect it announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// the network half is downloading and verifying the payload
    Downloading,
    /// the payload at `payload` was verified against the target
    Downloaded {
        /// the verified file
        payload: PathBuf,
    },
    /// the installer is staging the payload (writing the inactive slot /
    /// running the install command); `tries` counts starts of this step
    Installing {
        /// the verified file
        payload: PathBuf,
        /// how many times staging was started
        tries: u32,
    },
    /// the new version is being activated and health-checked
    Trial {
        /// when the trial started, seconds since the Unix epoch
        since: u64,
    },
    /// the old version is being restored
    RollingBack {
        /// the terminal phase this ends in
        end: RollbackEnd,
        /// why
        reason: String,
    },
    /// terminal: the new version is committed
    Committed,
    /// terminal: old version active again after a trial
    RolledBack {
        /// why
        reason: String,
    },
    /// terminal: nothing installed
    Failed {
        /// why
        reason: String,
    },
    /// terminal: verification found an attack, nothing installed
    AttackDetected {
        /// why
        reason: String,
    },
}

impl Phase {
    /// The phase name as in `state.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Downloading => "downloading",
            Phase::Downloaded { .. } => "downloaded",
            Phase::Installing { .. } => "installing",
            Phase::Trial { .. } => "trial",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::Committed => "committed",
            Phase::RolledBack { .. } => "rolled_back",
            Phase::Failed { .. } => "failed",
            Phase::AttackDetected { .. } => "attack_detected",
        }
    }

    /// The outcome of a terminal phase, `None` for the others.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Phase::Committed => Some(Outcome::Installed),
            Phase::RolledBack { reason } => Some(Outcome::RolledBack {
                reason: reason.clone(),
            }),
            Phase::Failed { reason } => Some(Outcome::Failed {
                reason: reason.clone(),
            }),
            Phase::AttackDetected { reason } => Some(Outcome::AttackDetected {
                reason: reason.clone(),
            }),
            _ => None,
        }
    }
}

/// What recovery does with a phase found on disk at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryStep {
    /// idle: make the active version match the committed one, clean
    /// leftover downloads
    Converge,
    /// a download was interrupted: end the attempt `Failed` (the network
    /// half starts a new attempt on its next poll)
    FailInterruptedDownload,
    /// the verified payload is there: re-verify it and install it
    ContinueInstall,
    /// staging was interrupted and the installer can redo it from scratch:
    /// count the try and stage again
    RestageFromScratch,
    /// staging was interrupted and cannot be redone (installer says so, or
    /// [`MAX_STAGE_TRIES`] reached): roll back, end `Failed`
    AbandonStaging,
    /// the agent died during the trial, before commit: roll back, end
    /// `RolledBack`
    RollBackTrial,
    /// a rollback was interrupted: run it again (rollbacks are idempotent)
    FinishRollback,
    /// a terminal phase: make the active version match the committed one,
    /// queue the report (idempotent on the report id), go idle
    QueueReportAndIdle,
}

/// The recovery table: the step taken for each persisted phase.
/// `restage_allowed` is the installer's answer to "can staging be redone
/// from scratch after a crash?".
pub fn recovery_step(attempt: Option<&Attempt>, restage_allowed: bool) -> RecoveryStep {
    let Some(attempt) = attempt else {
        return RecoveryStep::Converge;
    };
    match &attempt.phase {
        Phase::Downloading => RecoveryStep::FailInterruptedDownload,
        Phase::Downloaded { .. } => RecoveryStep::ContinueInstall,
        Phase::Installing { tries, .. } => {
            if restage_allowed && *tries < MAX_STAGE_TRIES {
                RecoveryStep::RestageFromScratch
            } else {
                RecoveryStep::AbandonStaging
            }
        }
        Phase::Trial { .. } => RecoveryStep::RollBackTrial,
        Phase::RollingBack { .. } => RecoveryStep::FinishRollback,
        Phase::Committed
        | Phase::RolledBack { .. }
        | Phase::Failed { .. }
        | Phase::AttackDetected { .. } => RecoveryStep::QueueReportAndIdle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(phase: Phase) -> Attempt {
        Attempt {
            id: 7,
            target: TargetMeta {
                name: "t".to_owned(),
                length: 1,
                hashes: Default::default(),
                release_counter: 1,
                custom: None,
            },
            plan: None,
            phase,
        }
    }

    #[test]
    fn recovery_table() {
        use RecoveryStep::*;
        let p = PathBuf::from("p");
        let reason = || "r".to_owned();
        let cases = [
            (Phase::Downloading, true, FailInterruptedDownload),
            (
                Phase::Downloaded { payload: p.clone() },
                true,
                ContinueInstall,
            ),
            (
                Phase::Installing {
                    payload: p.clone(),
                    tries: 1,
                },
                true,
                RestageFromScratch,
            ),
            (
                Phase::Installing {
                    payload: p.clone(),
                    tries: 2,
                },
                true,
                RestageFromScratch,
            ),
            (
                Phase::Installing {
                    payload: p.clone(),
                    tries: MAX_STAGE_TRIES,
                },
                true,
                AbandonStaging,
            ),
            (
                Phase::Installing {
                    payload: p.clone(),
                    tries: 1,
                },
                false,
                AbandonStaging,
            ),
            (Phase::Trial { since: 0 }, true, RollBackTrial),
            (
                Phase::RollingBack {
                    end: RollbackEnd::Failed,
                    reason: reason(),
                },
                true,
                FinishRollback,
            ),
            (Phase::Committed, true, QueueReportAndIdle),
            (
                Phase::RolledBack { reason: reason() },
                true,
                QueueReportAndIdle,
            ),
            (Phase::Failed { reason: reason() }, true, QueueReportAndIdle),
            (
                Phase::AttackDetected { reason: reason() },
                true,
                QueueReportAndIdle,
            ),
        ];
        for (phase, restage, want) in cases {
            assert_eq!(
                recovery_step(Some(&attempt(phase.clone())), restage),
                want,
                "{phase:?}"
            );
        }
        assert_eq!(recovery_step(None, true), Converge);
    }

    #[test]
    fn state_json_round_trips_and_names_phases() {
        let s = AgentState {
            attempt: Some(attempt(Phase::Trial { since: 5 })),
            ..AgentState::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"phase\":\"trial\""), "{json}");
        let back: AgentState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.describe(), "attempt 7 trial");
    }
}
