//! custody-agent: the device side of custody.
//!
//! **Network half** ([`device`], [`verify`], [`download`], [`bundle`],
//! [`daemon`], [`keystore`]): enrolment, signed check-ins, the one
//! verification function [`verify::verify_update`] (director + image
//! repository, used online and for bundles), ranged verified downloads,
//! offline bundles, the poll loop. See `README.md`.
//!
//! **Device-local half** (below): takes a payload the network half has
//! downloaded and verified, installs it crash-safely, health-checks it,
//! commits or rolls back, and queues exactly one durable report per attempt.
//!
//! # Public API
//!
//! * [`Agent`] — the driver. [`Agent::open`] takes an [`AgentConfig`] (agent
//!   directory, optional health-check [`HookCommand`], free-space reserve), a
//!   boxed [`Installer`] and a [`Probe`] (crash-test hook, [`Probe::none`] in
//!   production), locks the directory and loads `state.json`.
//!   * [`Agent::recover`] — call first, every start: finishes or undoes what
//!     a crash interrupted (table below).
//!   * [`Agent::begin`]`(TargetMeta) -> attempt` — checks fields, release
//!     counter (lower than the committed one: `AttackDetected`; equal is
//!     allowed, a re-install) and free space (statvfs, summed per
//!     filesystem: `Failed`), persists `Downloading`. Refusals are reported
//!     like any outcome; invalid target fields are an error without an
//!     attempt. The network half writes the payload to
//!     [`Agent::download_path`].
//!   * [`Agent::downloaded`]`(attempt, path)` — the payload is verified.
//!   * [`Agent::abort`]`(attempt, Outcome::AttackDetected{..} | Failed{..})`
//!     — verification failed; ends the attempt with a report.
//!   * [`Agent::install`]`(attempt) -> Outcome` — stage, activate, health
//!     check, commit or roll back, queue the report.
//!   * [`Agent::upload_reports`]`(&mut dyn ReportSink)` — deliver queued
//!     reports in order, delete each only after the sink acknowledged it.
//!   * After any [`AgentError`] from these calls the persisted state names
//!     the step still to do: call [`Agent::recover`] (e.g. on the next
//!     poll) to finish or undo it.
//! * [`AgentConfig`] and [`InstallerConfig`] deserialize from a
//!   configuration file (JSON shape in their docs);
//!   [`InstallerConfig::build`] makes the boxed installer.
//! * [`Installer`] — `plan / stage / activate / health_env / commit /
//!   rollback / converge`, each idempotent. Implementations:
//!   [`SlotInstaller`] (A/B slot directories and an atomically switched
//!   `current` symlink) and [`CommandInstaller`] (install / commit /
//!   rollback commands with the target in their environment, for RAUC,
//!   SWUpdate, OSTree, package managers).
//! * [`ReportQueue`], [`Report`], [`Outcome`], [`ReportSink`],
//!   [`MemorySink`] — the durable on-disk queue.
//! * [`state`] — [`AgentState`], [`Phase`], [`recovery_step`] (the recovery
//!   table as a pure function).
//! * [`fsutil`] — atomic JSON write (via custody-client's `write_atomic`),
//!   atomic symlink switch, hashed durable copy, free space.
//!
//! # Files
//!
//! ```text
//! <agent root>/state.json     AgentState: committed version + attempt in progress
//! <agent root>/lock           flock: one agent per directory
//! <agent root>/hook.json      the hook command running right now (pgid, start time)
//! <agent root>/downloads/     attempt-<n> payloads; emptied whenever idle
//! <agent root>/reports/       <seq:020>-attempt-<n>.json, acked (highest acked seq)
//! <slot root>/slots/{a,b}/    payload + manifest.json (written last)
//! <slot root>/current         -> slots/a | slots/b
//! ```
//!
//! # States
//!
//! ```text
//! Idle ─begin─▶ Downloading ─downloaded─▶ Downloaded ─▶ Installing{tries}
//!                   │ abort                                  │ stage ok      │ stage failed
//!                   ▼                                        ▼               ▼
//!        Failed / AttackDetected                         Trial{since}   RollingBack{Failed}
//!                                       activate+health+commit ok │ │ not ok
//!                                                                ▼ ▼
//!                                                  Committed   RollingBack{RolledBack}
//!                                                                   │ rollback
//!                                                                   ▼
//!                                                  Failed / RolledBack
//! terminal (Committed, RolledBack, Failed, AttackDetected)
//!   ─▶ converge `current` ─▶ queue report (idempotent) ─▶ Idle
//! ```
//! Each phase is persisted (temp file, fsync, rename, dir fsync) BEFORE the
//! side effect it announces: `Installing` before the inactive slot is
//! written, `Trial` before `current` is switched, `RollingBack` before it is
//! switched back, `Committed` (together with the new committed version)
//! before the report is queued.
//!
//! # Recovery table (what [`Agent::recover`] does with the phase on disk)
//!
//! Before any row: if `hook.json` names a hook command (install, commit,
//! rollback, health check) that a killed agent left running, its process
//! group is SIGKILLed (start time checked against pid reuse), so it cannot
//! change the device after recovery decided.
//!
//! | phase on disk | step | ends |
//! |---|---|---|
//! | idle | converge `current` to the committed slot, clean `downloads/` | unchanged |
//! | Downloading | `Failed` ("stopped while downloading"); the next poll starts a new attempt | old |
//! | Downloaded | re-verify the payload's length and hashes, then install | new, or old if it fails |
//! | Installing{tries} | installer can restage and tries < 3: tries+1, stage again from scratch; else RollingBack{Failed} | new or old |
//! | Trial | RollingBack{RolledBack}: a trial the agent did not see through is never committed | old |
//! | RollingBack | run the (idempotent) rollback again | old |
//! | Committed / RolledBack / Failed / AttackDetected | converge, queue the report unless a report with its id is queued, go idle | as recorded |
//!
//! So after `kill -9` at any point, the next `recover()` ends with the old
//! version committed or the new one committed, and exactly one report for
//! the attempt in the queue (report id `attempt-<n>`); a kill before
//! `begin`'s state write leaves no attempt and nothing to report. The test
//! `tests/crash.rs` checks this for every probe point, for both installers.
#![forbid(unsafe_code)]
// Untrusted bytes (check-in answers, bundles, payloads) flow through the
// network half: no panicking shortcuts outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::indexing_slicing)]

mod agent;
pub mod bundle;
pub mod cmd_installer;
pub mod command;
pub mod daemon;
pub mod device;
pub mod download;
mod error;
pub mod fsutil;
pub mod installer;
pub mod keystore;
pub mod report;
pub mod slot;
pub mod state;
pub mod target;
pub mod verify;

pub use agent::{Agent, AgentConfig};
pub use cmd_installer::CommandInstaller;
pub use command::HookCommand;
pub use error::AgentError;
pub use fsutil::Probe;
pub use installer::{InstallPlan, Installer, InstallerConfig, Slot, StepCtx};
pub use report::{MemorySink, Outcome, Report, ReportQueue, ReportSink};
pub use slot::{SlotInstaller, SlotManifest};
pub use state::{recovery_step, AgentState, Attempt, Committed, Phase, RecoveryStep};
pub use target::TargetMeta;
