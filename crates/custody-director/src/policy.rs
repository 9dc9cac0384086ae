//! Assignment policy: pure functions over a fleet snapshot and a time.
//!
//! Decision order for one device ([`assign`]):
//! 1. the device must be usable (status, re-attestation): else nothing;
//! 2. a **pin** holds the device at one release, whatever rollouts say;
//! 3. else, if the installed target is **yanked**: the yank's replacement
//!    (remediation; ignores maintenance windows and stages: it is a fix);
//! 4. else the highest-counter release among **rollouts** that are active or
//!    completed, whose selector matches, whose release supports the
//!    hardware id, which is not yanked, and whose current stage covers the
//!    device's bucket; then the rollout's **maintenance windows**: outside
//!    all of them the device gets nothing (now);
//! 5. **anti-rollback** on the result: a release counter lower than the
//!    highest installed one is refused unless a rollback authorisation
//!    signed by the rollback keys names this device, this target and
//!    counter, and has not expired.
//!
//! Buckets: `bucket(seed, device) = u64_be(sha256(seed ‖ 0x00 ‖ device)[0..8]) mod 10000`,
//! stable per (rollout seed, device) and uniform (the modulo bias of 2^64
//! mod 10^4 is below 10^-15). A stage with share `s` basis points covers
//! buckets `< s`, so stages are nested: a device in stage 1 stays in stage 2.
//!
//! Canary gates ([`Rollout::evaluate`]): with at least `min_sample`
//! reports from devices covered so far, the rollout pauses itself when the
//! failure rate exceeds `max_failure_bp`, and advances to the next stage when
//! the success rate is at least `min_success_bp`; otherwise it holds.
//!
//! Maintenance windows: a cron expression (the `croner` crate: maintained,
//! chrono-native, 5 or 6 fields with `L`, `W`, `#`) evaluated in an IANA
//! time zone (`chrono-tz`, compiled-in tz database, so DST is handled and the
//! answer does not depend on the server's zone), plus a duration. The window
//! is open at `now` iff some start `s` has `now - duration < s <= now`:
//! computed as the next start after `now - duration`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use custody_tuf::{Hashes, TargetFile};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::image::{ImageCustom, ImageCustomError};
use crate::registry::{DeviceRecord, EffectiveStatus, ReattestationPolicy};
pub use crate::rollback::{
    RollbackAuthorization, RollbackBody, RollbackKeys, MAX_ROLLBACK_AUTH_BYTES, TYPE_ROLLBACK,
};
use crate::wire::{ManifestBody, WireError};

/// Number of buckets (basis points).
pub const BUCKETS: u32 = 10_000;

/// The stable bucket of `device_id` in the rollout seeded with `seed`.
pub fn bucket(seed: &str, device_id: &str) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(seed.as_bytes());
    ctx.update(&[0]);
    ctx.update(device_id.as_bytes());
    let d = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(d.as_ref().get(..8).unwrap_or(&[0; 8]));
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// Policy errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// bad cron expression or time zone
    #[error("maintenance window {field}: {detail}")]
    Window {
        /// `cron`, `time_zone`, `duration`
        field: &'static str,
        /// why
        detail: String,
    },
    /// a stage list is not increasing or out of range
    #[error("rollout {rollout}: stages: {detail}")]
    Stages {
        /// rollout id
        rollout: String,
        /// why
        detail: String,
    },
    /// downgrade without authorisation
    #[error("anti-rollback: device {device} has release counter {installed}; {target} has {offered}: a downgrade needs a rollback authorisation{detail}")]
    Downgrade {
        /// device
        device: String,
        /// installed counter
        installed: u64,
        /// target offered
        target: String,
        /// its counter
        offered: u64,
        /// why no authorisation applied (empty if none was present)
        detail: String,
    },
    /// a rollback authorisation was refused
    #[error(transparent)]
    Authorization(#[from] crate::rollback::RollbackError),
    /// malformed authorisation
    #[error(transparent)]
    Wire(#[from] WireError),
}

// ------------------------------------------------------------------ fleet

/// What is installed, as far as assignment cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// running target
    pub name: String,
    /// its release counter
    pub release_counter: u64,
    /// highest counter in any slot (the anti-rollback floor)
    pub max_release_counter: u64,
}

/// One device in a fleet snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// device id
    pub id: String,
    /// hardware id
    pub hardware_id: String,
    /// environment
    pub environment: String,
    /// group
    pub group: String,
    /// tags
    pub tags: BTreeSet<String>,
    /// usable now (active and not overdue)
    pub usable: bool,
    /// from the last accepted manifest
    pub installed: Option<Installed>,
}

impl DeviceView {
    /// Build from the record and the last accepted manifest.
    pub fn new(
        rec: &DeviceRecord,
        manifest: Option<&ManifestBody>,
        now: DateTime<Utc>,
        reattest: &ReattestationPolicy,
    ) -> Self {
        DeviceView {
            id: rec.id.clone(),
            hardware_id: rec.hardware_id.clone(),
            environment: rec.attributes.environment.clone(),
            group: rec.group.clone(),
            tags: rec.attributes.tags.clone(),
            usable: rec.effective_status(now, reattest) == EffectiveStatus::Active,
            installed: manifest.and_then(|m| {
                m.running().map(|t| Installed {
                    name: t.name.clone(),
                    release_counter: t.release_counter,
                    max_release_counter: m.max_release_counter(),
                })
            }),
        }
    }
}

/// A releasable target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// target path
    pub name: String,
    /// length
    pub length: u64,
    /// hashes
    pub hashes: Hashes,
    /// release counter
    pub release_counter: u64,
    /// hardware ids it is built for (empty: any)
    #[serde(default)]
    pub hardware_ids: BTreeSet<String>,
}

impl Release {
    /// Is the release built for hardware id `hw` (an empty set: any)?
    pub fn supports(&self, hw: &str) -> bool {
        self.hardware_ids.is_empty() || self.hardware_ids.contains(hw)
    }

    /// The release an image repository target `name` describes: its signed
    /// length and hashes, and the release counter and hardware ids read from
    /// its signed `custom` ([`ImageCustom`], the reader the device checks
    /// the same fields with).
    ///
    /// `counter` and `hardware_ids` are the operator's: a counter must equal
    /// the image's `custom.release_counter` when it names one (and is needed
    /// when it does not); hardware ids must be among those the image's
    /// `custom` allows when it restricts them (default: exactly those). The
    /// director thus never assigns a release a device would refuse on these
    /// fields.
    pub fn from_image(
        name: &str,
        entry: &TargetFile,
        counter: Option<u64>,
        hardware_ids: Option<BTreeSet<String>>,
    ) -> Result<Release, ReleaseError> {
        let custom = ImageCustom::of_target(name, entry)?;
        let target = || name.to_owned();
        let release_counter = match (custom.release_counter, counter) {
            (Some(image), Some(given)) if image != given => {
                return Err(ReleaseError::CounterDiffers {
                    target: target(),
                    given,
                    image,
                })
            }
            (Some(image), _) => image,
            (None, Some(given)) => given,
            (None, None) => return Err(ReleaseError::NoCounter { target: target() }),
        };
        let signed = custom.hardware();
        if signed.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(ReleaseError::NoHardware { target: target() });
        }
        let hardware_ids = match (hardware_ids.filter(|h| !h.is_empty()), signed) {
            (Some(given), Some(signed)) => {
                if let Some(hw) = given.iter().find(|h| !signed.contains(*h)) {
                    return Err(ReleaseError::HardwareNotSigned {
                        target: target(),
                        hardware_id: hw.clone(),
                        signed: signed.into_iter().collect::<Vec<_>>().join(", "),
                    });
                }
                given
            }
            (Some(given), None) => given,
            (None, signed) => signed.unwrap_or_default(),
        };
        Ok(Release {
            name: name.to_owned(),
            length: entry.length,
            hashes: entry.hashes.clone(),
            release_counter,
            hardware_ids,
        })
    }
}

/// Why an image repository target cannot be a release
/// ([`Release::from_image`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// a signed `custom` field has the wrong type
    #[error(transparent)]
    Custom(#[from] ImageCustomError),
    /// the operator's counter contradicts the signed one
    #[error("target {target:?}: release_counter {given} differs from the image repository's custom.release_counter {image}")]
    CounterDiffers {
        /// target path
        target: String,
        /// the operator's counter
        given: u64,
        /// the image repository's
        image: u64,
    },
    /// neither the image nor the operator names a counter
    #[error("target {target:?} has no custom.release_counter in the image repository; give release_counter")]
    NoCounter {
        /// target path
        target: String,
    },
    /// the signed hardware restrictions exclude every hardware id
    #[error("target {target:?}: the image repository's custom.hardware_id / custom.hardware_ids allow no hardware id together; no device would accept it")]
    NoHardware {
        /// target path
        target: String,
    },
    /// the operator names hardware the image is not signed for
    #[error("target {target:?}: hardware id {hardware_id:?} is not among those the image repository's custom allows ({signed}); such a device would refuse it")]
    HardwareNotSigned {
        /// target path
        target: String,
        /// the operator's hardware id
        hardware_id: String,
        /// the signed ones
        signed: String,
    },
}

/// Which devices a rollout is for. Absent criteria match everything;
/// present ones must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// any of these hardware ids
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_ids: Option<BTreeSet<String>>,
    /// any of these environments
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<BTreeSet<String>>,
    /// any of these groups
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeSet<String>>,
    /// all of these tags
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// only these devices
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<BTreeSet<String>>,
}

impl Selector {
    /// Does `d` match?
    pub fn matches(&self, d: &DeviceView) -> bool {
        let any =
            |set: &Option<BTreeSet<String>>, v: &str| set.as_ref().is_none_or(|s| s.contains(v));
        any(&self.hardware_ids, &d.hardware_id)
            && any(&self.environments, &d.environment)
            && any(&self.groups, &d.group)
            && any(&self.device_ids, &d.id)
            && self.tags.is_subset(&d.tags)
    }
}

// ------------------------------------------------------------------ windows

/// A recurring maintenance window.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    cron_text: String,
    cron: croner::Cron,
    tz: chrono_tz::Tz,
    duration: Duration,
}

impl MaintenanceWindow {
    /// `cron`: 5 fields (or 6 with seconds) e.g. `0 2 * * SAT,SUN`;
    /// `time_zone`: IANA name e.g. `Europe/Berlin`; `duration` > 0.
    pub fn new(cron: &str, time_zone: &str, duration: Duration) -> Result<Self, PolicyError> {
        let parsed = croner::Cron::new(cron)
            .with_seconds_optional()
            .parse()
            .map_err(|e| PolicyError::Window {
                field: "cron",
                detail: format!("{cron:?}: {e}"),
            })?;
        let tz = chrono_tz::Tz::from_str(time_zone).map_err(|e| PolicyError::Window {
            field: "time_zone",
            detail: format!("{time_zone:?}: {e}"),
        })?;
        if duration <= Duration::zero() || duration > Duration::days(31) {
            return Err(PolicyError::Window {
                field: "duration",
                detail: format!("must be in (0, 31 days], got {} s", duration.num_seconds()),
            });
        }
        // A pattern that never fires (e.g. 31 February) would make every
        // evaluation search to croner's year limit: refuse it up front.
        let reference = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&tz);
        let fires = parsed
            .find_next_occurrence(&reference, false)
            .is_ok_and(|t| {
                t.with_timezone(&Utc) < DateTime::<Utc>::UNIX_EPOCH + Duration::days(9 * 366)
            });
        if !fires {
            return Err(PolicyError::Window {
                field: "cron",
                detail: format!("{cron:?} never fires (no occurrence within 9 years)"),
            });
        }
        Ok(MaintenanceWindow {
            cron_text: cron.to_owned(),
            cron: parsed,
            tz,
            duration,
        })
    }

    /// The cron expression.
    pub fn cron(&self) -> &str {
        &self.cron_text
    }

    /// Is the window open at `now`?
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let Some(from) = now.checked_sub_signed(self.duration) else {
            return false;
        };
        let from = from.with_timezone(&self.tz);
        match self.cron.find_next_occurrence(&from, false) {
            Ok(start) => start.with_timezone(&Utc) <= now,
            Err(_) => false,
        }
    }
}

// ------------------------------------------------------------------ rollouts

/// A canary gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// advance when successes / reports ≥ this (basis points)
    pub min_success_bp: u32,
    /// pause when failures / reports > this (basis points)
    pub max_failure_bp: u32,
    /// decide only with at least this many reports
    pub min_sample: u64,
}

impl Default for Gate {
    /// 95% success to advance, pause above 5% failures, 20 reports.
    fn default() -> Self {
        Gate {
            min_success_bp: 9_500,
            max_failure_bp: 500,
            min_sample: 20,
        }
    }
}

/// One stage: a share of the selected devices and the gate to leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// cumulative share of the selected fleet, basis points (10000 = all)
    pub share_bp: u32,
    /// gate evaluated on this stage's reports
    pub gate: Gate,
}

/// Rollout state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// assigning at the current stage
    Active,
    /// assigning nothing new; resumable
    Paused {
        /// why (gate or operator)
        reason: String,
    },
    /// stopped for good
    Aborted {
        /// why
        reason: String,
    },
    /// every stage passed: all selected devices
    Completed,
}

/// Install outcomes counted for a rollout's devices covered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageStats {
    /// `installed`
    pub successes: u64,
    /// `failed`, `rolled_back`, `attack_detected`
    pub failures: u64,
}

/// What the gate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// not enough data or in between
    Hold {
        /// why
        reason: String,
    },
    /// move to stage `to`
    Advance {
        /// next stage index
        to: usize,
    },
    /// last stage passed
    Complete,
    /// failure rate over the limit
    Pause {
        /// with values
        reason: String,
    },
}

/// A staged rollout of one release.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// id
    pub id: String,
    /// bucket seed (fixed at creation; a new seed reshuffles devices)
    pub seed: String,
    /// what is rolled out
    pub release: Release,
    /// to whom
    pub selector: Selector,
    /// stages, shares strictly increasing, last = 10000
    pub stages: Vec<Stage>,
    /// current stage index
    pub stage: usize,
    /// state
    pub state: RolloutState,
    /// maintenance windows (empty: always)
    pub windows: Vec<MaintenanceWindow>,
}

impl Rollout {
    /// A new active rollout at stage 0. Checks the stage list.
    pub fn new(
        id: &str,
        seed: &str,
        release: Release,
        selector: Selector,
        stages: Vec<Stage>,
        windows: Vec<MaintenanceWindow>,
    ) -> Result<Self, PolicyError> {
        let bad = |detail: String| PolicyError::Stages {
            rollout: id.to_owned(),
            detail,
        };
        if stages.is_empty() {
            return Err(bad("at least one stage is needed".into()));
        }
        let mut prev = 0;
        for (i, s) in stages.iter().enumerate() {
            if s.share_bp <= prev || s.share_bp > BUCKETS {
                return Err(bad(format!(
                    "stage {i} share {} bp must be above the previous {prev} bp and at most {BUCKETS}",
                    s.share_bp
                )));
            }
            prev = s.share_bp;
        }
        if prev != BUCKETS {
            return Err(bad(format!(
                "the last stage must cover {BUCKETS} bp (everyone), got {prev}"
            )));
        }
        Ok(Rollout {
            id: id.to_owned(),
            seed: seed.to_owned(),
            release,
            selector,
            stages,
            stage: 0,
            state: RolloutState::Active,
            windows,
        })
    }

    /// The share in force (0 when not assigning).
    pub fn current_share(&self) -> u32 {
        match self.state {
            RolloutState::Active => self.stages.get(self.stage).map_or(0, |s| s.share_bp),
            RolloutState::Completed => BUCKETS,
            _ => 0,
        }
    }

    /// Is `d` one of the rollout's devices at all: its selector matches and
    /// the release is built for its hardware (whatever the stage or state)?
    pub fn selects(&self, d: &DeviceView) -> bool {
        self.selector.matches(d) && self.release.supports(&d.hardware_id)
    }

    /// The stage a device belongs to: the first whose cumulative share
    /// covers its bucket. Stages are nested, so the device is covered from
    /// this stage on. Install reports count for the gate of this stage,
    /// not of the rollout's current one: a canary device's late report must
    /// not count for a later stage. `None` only for a stage list
    /// [`Rollout::new`] refuses (the last stage covers everyone).
    pub fn device_stage(&self, device_id: &str) -> Option<usize> {
        let b = bucket(&self.seed, device_id);
        self.stages.iter().position(|s| b < s.share_bp)
    }

    /// Is `d` covered by the rollout right now (ignoring windows)?
    pub fn covers(&self, d: &DeviceView) -> bool {
        self.selects(d) && bucket(&self.seed, &d.id) < self.current_share()
    }

    /// Is any maintenance window open (or none configured)?
    pub fn window_open(&self, now: DateTime<Utc>) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.is_open(now))
    }

    /// Evaluate the current stage's gate.
    pub fn evaluate(&self, stats: &StageStats) -> GateDecision {
        if self.state != RolloutState::Active {
            return GateDecision::Hold {
                reason: format!("rollout is {:?}", self.state),
            };
        }
        let Some(stage) = self.stages.get(self.stage) else {
            return GateDecision::Complete;
        };
        let g = stage.gate;
        let total = stats.successes.saturating_add(stats.failures);
        if total < g.min_sample.max(1) {
            return GateDecision::Hold {
                reason: format!(
                    "stage {}: {total} reports, gate needs {}",
                    self.stage, g.min_sample
                ),
            };
        }
        let fail_bp = stats.failures.saturating_mul(u64::from(BUCKETS)) / total;
        if fail_bp > u64::from(g.max_failure_bp) {
            return GateDecision::Pause {
                reason: format!(
                    "stage {}: failure rate {fail_bp} bp ({} of {total}) exceeds the limit {} bp",
                    self.stage, stats.failures, g.max_failure_bp
                ),
            };
        }
        let ok_bp = stats.successes.saturating_mul(u64::from(BUCKETS)) / total;
        if ok_bp < u64::from(g.min_success_bp) {
            return GateDecision::Hold {
                reason: format!(
                    "stage {}: success rate {ok_bp} bp below the gate {} bp",
                    self.stage, g.min_success_bp
                ),
            };
        }
        if self.stage + 1 < self.stages.len() {
            GateDecision::Advance { to: self.stage + 1 }
        } else {
            GateDecision::Complete
        }
    }

    /// Apply a gate decision.
    pub fn apply(&mut self, d: &GateDecision) {
        if self.state != RolloutState::Active {
            return;
        }
        match d {
            GateDecision::Hold { .. } => {}
            GateDecision::Advance { to } => {
                self.stage = (*to).min(self.stages.len().saturating_sub(1))
            }
            GateDecision::Complete => self.state = RolloutState::Completed,
            GateDecision::Pause { reason } => {
                self.state = RolloutState::Paused {
                    reason: reason.clone(),
                }
            }
        }
    }

    /// Operator pause.
    pub fn pause(&mut self, reason: &str) {
        if matches!(self.state, RolloutState::Active | RolloutState::Completed) {
            self.state = RolloutState::Paused {
                reason: reason.to_owned(),
            };
        }
    }

    /// Resume a paused rollout at its stage. False if it is not paused.
    pub fn resume(&mut self) -> bool {
        if matches!(self.state, RolloutState::Paused { .. }) {
            self.state = RolloutState::Active;
            true
        } else {
            false
        }
    }

    /// Abort for good.
    pub fn abort(&mut self, reason: &str) {
        self.state = RolloutState::Aborted {
            reason: reason.to_owned(),
        };
    }
}

// ------------------------------------------------------------------ assignment

/// Hold a device at one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// the release
    pub release: Release,
    /// why (audit)
    pub reason: String,
}

/// A yanked target and what replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yank {
    /// the yanked target path
    pub target: String,
    /// the remediation release
    pub replacement: Release,
}

/// Everything assignment reads.
#[derive(Debug, Clone)]
pub struct FleetPolicy {
    /// rollouts, any state
    pub rollouts: Vec<Rollout>,
    /// device id → pin
    pub pins: BTreeMap<String, Pin>,
    /// yanks
    pub yanks: Vec<Yank>,
    /// rollback authorisations on file
    pub rollback_authorizations: Vec<RollbackAuthorization>,
    /// rollback keys
    pub rollback_keys: RollbackKeys,
}

/// Why a release was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// a pin
    Pin,
    /// remediation of a yanked target
    Remediation {
        /// the yanked target
        yanked: String,
    },
    /// a rollout
    Rollout {
        /// rollout id
        id: String,
        /// its stage index
        stage: usize,
    },
}

/// The outcome for one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    /// install (or keep) this release
    Install {
        /// the release
        release: Release,
        /// why
        via: Via,
        /// the verified authorisation, for a downgrade
        rollback_authorization: Option<Value>,
    },
    /// nothing now
    Nothing {
        /// why
        reason: String,
    },
    /// a candidate was refused (anti-rollback)
    Refused(PolicyError),
}

impl Assignment {
    /// The director target for this assignment, if any.
    pub fn director_target(&self) -> Option<crate::director::DirectorTarget> {
        match self {
            Assignment::Install {
                release,
                rollback_authorization,
                ..
            } => Some(crate::director::DirectorTarget {
                name: release.name.clone(),
                length: release.length,
                hashes: release.hashes.clone(),
                release_counter: release.release_counter,
                rollback_authorization: rollback_authorization.clone(),
            }),
            _ => None,
        }
    }
}

/// Decide what `d` should run at `now` (order in the module docs).
pub fn assign(d: &DeviceView, p: &FleetPolicy, now: DateTime<Utc>) -> Assignment {
    if !d.usable {
        return Assignment::Nothing {
            reason: format!("device {} is not active", d.id),
        };
    }
    let yanked: BTreeSet<&str> = p.yanks.iter().map(|y| y.target.as_str()).collect();
    let (release, via) = if let Some(pin) = p.pins.get(&d.id) {
        (pin.release.clone(), Via::Pin)
    } else if let Some(y) = d
        .installed
        .as_ref()
        .and_then(|i| p.yanks.iter().find(|y| y.target == i.name))
    {
        (
            y.replacement.clone(),
            Via::Remediation {
                yanked: y.target.clone(),
            },
        )
    } else {
        let best = p
            .rollouts
            .iter()
            .filter(|r| !yanked.contains(r.release.name.as_str()) && r.covers(d))
            .max_by_key(|r| r.release.release_counter);
        let Some(r) = best else {
            return Assignment::Nothing {
                reason: "no active rollout covers this device".into(),
            };
        };
        if !r.window_open(now) {
            return Assignment::Nothing {
                reason: format!(
                    "rollout {}: outside every maintenance window ({})",
                    r.id,
                    r.windows
                        .iter()
                        .map(MaintenanceWindow::cron)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
        }
        (
            r.release.clone(),
            Via::Rollout {
                id: r.id.clone(),
                stage: r.stage,
            },
        )
    };
    let floor = d.installed.as_ref().map_or(0, |i| i.max_release_counter);
    if release.release_counter >= floor {
        return Assignment::Install {
            release,
            via,
            rollback_authorization: None,
        };
    }
    let mut detail = String::new();
    for a in &p.rollback_authorizations {
        match a.verify(
            &p.rollback_keys,
            &d.id,
            &release.name,
            release.release_counter,
            now,
        ) {
            Ok(()) => {
                return Assignment::Install {
                    rollback_authorization: Some(a.to_value()),
                    release,
                    via,
                }
            }
            Err(e) => {
                if a.signed.device_ids.contains(&d.id) {
                    detail.push_str(&format!("; {e}"));
                }
            }
        }
    }
    Assignment::Refused(PolicyError::Downgrade {
        device: d.id.clone(),
        installed: floor,
        target: release.name.clone(),
        offered: release.release_counter,
        detail,
    })
}

/// Devices that run a yanked target (the remediation set).
pub fn remediation_set<'a>(fleet: &'a [DeviceView], yank: &Yank) -> Vec<&'a str> {
    fleet
        .iter()
        .filter(|d| d.installed.as_ref().is_some_and(|i| i.name == yank.target))
        .map(|d| d.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn release(hw: &[&str]) -> Release {
        Release {
            name: "app-2".into(),
            length: 3,
            hashes: [("sha256".to_owned(), "ab".repeat(32))].into(),
            release_counter: 2,
            hardware_ids: hw.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    fn device(id: &str, hw: &str) -> DeviceView {
        DeviceView {
            id: id.into(),
            hardware_id: hw.into(),
            environment: "prod".into(),
            group: "g".into(),
            tags: Default::default(),
            usable: true,
            installed: None,
        }
    }

    fn rollout(shares: &[u32], hw: &[&str]) -> Rollout {
        let stages = shares
            .iter()
            .map(|&share_bp| Stage {
                share_bp,
                gate: Gate::default(),
            })
            .collect();
        Rollout::new(
            "r1",
            "seed",
            release(hw),
            Selector::default(),
            stages,
            vec![],
        )
        .unwrap()
    }

    /// A device whose bucket in `seed` is in `lo..hi`.
    fn device_in(seed: &str, lo: u32, hi: u32) -> String {
        (0..1_000_000)
            .map(|i| format!("dev-{i}"))
            .find(|d| (lo..hi).contains(&bucket(seed, d)))
            .unwrap()
    }

    /// A canary's report must count for the canary stage's gate even after
    /// the rollout moved on: its stage is its own, not the current one.
    #[test]
    fn a_device_keeps_its_stage_when_the_rollout_advances() {
        let mut r = rollout(&[1_000, 5_000, BUCKETS], &[]);
        let canary = device_in("seed", 0, 1_000);
        let second = device_in("seed", 1_000, 5_000);
        let last = device_in("seed", 5_000, BUCKETS);
        assert_eq!(r.device_stage(&canary), Some(0));
        assert_eq!(r.device_stage(&second), Some(1));
        assert_eq!(r.device_stage(&last), Some(2));
        r.apply(&GateDecision::Advance { to: 2 });
        assert_eq!(r.device_stage(&canary), Some(0));
        // nested: covered from its stage on, never before
        for (d, stage) in [(&canary, 0), (&second, 1), (&last, 2)] {
            for at in 0..3 {
                r.stage = at;
                assert_eq!(r.covers(&device(d, "hw")), at >= stage, "{d} at {at}");
            }
        }
    }

    /// A stage list `Rollout::new` refuses (nobody covered at the end) has
    /// no stage for an uncovered device rather than a made-up one.
    #[test]
    fn no_stage_outside_every_share() {
        let mut r = rollout(&[BUCKETS], &[]);
        r.stages = vec![Stage {
            share_bp: 1,
            gate: Gate::default(),
        }];
        let outside = device_in("seed", 1, BUCKETS);
        assert_eq!(r.device_stage(&outside), None);
    }

    /// A release built for other hardware does not select the device, at
    /// any stage.
    #[test]
    fn selects_needs_the_release_built_for_the_hardware() {
        let r = rollout(&[BUCKETS], &["hw-a"]);
        assert!(r.selects(&device("d", "hw-a")));
        assert!(!r.selects(&device("d", "hw-b")));
        assert!(!r.covers(&device("d", "hw-b")));
        assert!(rollout(&[BUCKETS], &[]).selects(&device("d", "hw-b")));
    }

    fn image(custom: Value) -> TargetFile {
        serde_json::from_value(json!({
            "length": 3, "hashes": {"sha256": "ab".repeat(32)}, "custom": custom,
        }))
        .unwrap()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_release_reads_counter_and_hardware_from_the_image() {
        let r = Release::from_image(
            "app-2",
            &image(json!({"release_counter": 2, "hardware_ids": ["hw-a", "hw-b"]})),
            None,
            None,
        )
        .unwrap();
        assert_eq!(r, release(&["hw-a", "hw-b"]));
        // a single hardware_id restricts as well (the device checks it)
        let r = Release::from_image(
            "app-2",
            &image(json!({"release_counter": 2, "hardware_id": "hw-a"})),
            None,
            None,
        )
        .unwrap();
        assert_eq!(r.hardware_ids, set(&["hw-a"]));
        // the operator may narrow, and name the counter when the image does not
        let r = Release::from_image(
            "app-2",
            &image(json!({"hardware_ids": ["hw-a", "hw-b"]})),
            Some(2),
            Some(set(&["hw-b"])),
        )
        .unwrap();
        assert_eq!(r, release(&["hw-b"]));
        let r = Release::from_image("app-2", &image(json!({})), Some(2), None).unwrap();
        assert_eq!(r, release(&[]));
    }

    /// What the device would refuse is refused when the release is made:
    /// a counter other than the signed one, hardware the image is not
    /// signed for, a mistyped restriction (which must not read as "any").
    #[test]
    fn a_release_the_device_would_refuse_is_refused() {
        let e = Release::from_image(
            "app-2",
            &image(json!({"release_counter": 3})),
            Some(2),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ReleaseError::CounterDiffers {
                    given: 2,
                    image: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = Release::from_image("app-2", &image(json!({})), None, None).unwrap_err();
        assert!(matches!(e, ReleaseError::NoCounter { .. }), "{e}");
        let e = Release::from_image(
            "app-2",
            &image(json!({"release_counter": 2, "hardware_ids": ["hw-a"]})),
            None,
            Some(set(&["hw-a", "hw-c"])),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ReleaseError::HardwareNotSigned { hardware_id, .. } if hardware_id == "hw-c"),
            "{e}"
        );
        for none in [
            json!({"release_counter": 2, "hardware_ids": []}),
            json!({"release_counter": 2, "hardware_id": "hw-a", "hardware_ids": ["hw-b"]}),
        ] {
            let e = Release::from_image("app-2", &image(none.clone()), None, None).unwrap_err();
            assert!(matches!(e, ReleaseError::NoHardware { .. }), "{none}: {e}");
        }
        let e = Release::from_image(
            "app-2",
            &image(json!({"release_counter": 2, "hardware_ids": "hw-a"})),
            None,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ReleaseError::Custom(c) if c.field == "hardware_ids"),
            "{e}"
        );
    }
}
