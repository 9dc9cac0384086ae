//! What `custody agent status` shows: enrolment, installed target, given-up
//! targets and the stored log checkpoint.

use super::*;

/// Status of an enrolled device without touching the network.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// configuration
    pub device: DeviceConfig,
    /// committed target
    pub installed: Option<crate::TargetMeta>,
    /// attempt in progress
    pub state: String,
    /// install reports queued
    pub queued_reports: usize,
    /// attack reports not yet acknowledged
    pub pending_attacks: Vec<AttackReport>,
    /// last manifest counter
    pub report_counter: u64,
    /// trusted director root version
    pub director_root_version: Option<u64>,
    /// size of the last accepted transparency-log checkpoint
    pub log_size: Option<u64>,
    /// targets a poll will not install again until the director assigns
    /// something else
    pub given_up: Vec<GivenUp>,
}

/// A target given up on this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GivenUp {
    /// target name
    pub target: String,
    /// its SHA-256 (hex)
    pub sha256: String,
}

impl Device {
    /// Local status.
    pub fn status(&self) -> Result<Status, DeviceError> {
        let net = self.net()?;
        Ok(Status {
            device: self.config.clone(),
            installed: self.installed().cloned(),
            state: self.agent.state().describe(),
            queued_reports: self.agent.queue().pending()?.len(),
            pending_attacks: net.attacks,
            report_counter: net.report_counter,
            given_up: net
                .given_up
                .into_iter()
                .map(|(target, sha256)| GivenUp { target, sha256 })
                .collect(),
            director_root_version: trusted_root_version(&self.state_dir.join("director")).ok(),
            log_size: self.log_size(),
        })
    }
}
