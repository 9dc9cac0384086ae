//! The network half: enrolment, check-in, verification, download, install,
//! reports, bundles. Thin IO around [`crate::verify::verify_update`] (every
//! trust decision) and [`crate::Agent`] (every install step).
//!
//! # State directory
//!
//! ```text
//! <state>/device.json        DeviceConfig: server, device id, hardware id, image repository
//! <state>/device-key.json    the device key (FileKeyBackend, 0600)
//! <state>/director/          trusted director metadata (root pinned at enrolment)
//! <state>/image/             trusted image repository metadata (root pinned at enrolment)
//! <state>/net.json           NetState: report counter, attacks not yet acknowledged
//! <state>/log-checkpoint     last transparency-log checkpoint accepted (signed note)
//! <state>/agent/             the device-local Agent (state.json, downloads/, reports/)
//! <state>/slots/             default A/B slots (unless the local config names an installer)
//! ```
//!
//! # One check-in ([`Device::check_once`])
//!
//! 1. `recover()` whatever a crash interrupted;
//! 2. sign a manifest (committed target per slot, a fresh report counter,
//!    queued install reports, unacknowledged attack reports) and POST it as a
//!    signed request to `/device/v1/checkin?root=N`;
//! 3. if the server answered `accepted_counter` = this manifest's counter,
//!    drop exactly the reports that manifest carried (never before);
//! 4. [`verify_update`] the director metadata of the answer and the image
//!    repository (HTTP); a broken rule becomes an attack report;
//! 5. the transparency-log check ([`custody_client::log`]): the target's
//!    `target_publish` entry, included in a checkpoint signed by the pinned
//!    log key, cosigned by k of the pinned witnesses, consistent with the
//!    stored checkpoint; the checkpoint is stored durably before anything
//!    is installed; a fork, rollback, missing inclusion or a target not in
//!    the log is refused and reported as an attack;
//! 6. download (verified while streaming, `Range` resume), install,
//!    health-check, commit or roll back; the outcome is queued;
//! 7. a second check-in carries the outcome at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use custody_client::log::{
    check_offline_target, check_target, fetch_evidence, trust_from_keys, CheckpointStore,
    ExpectedPublish, LogCheckError, LogTrust,
};
use custody_director::request::{fresh_nonce, sign_request};
use custody_director::rollback::RollbackKeys;
use custody_director::wire::{
    headers, AttackReport, CheckinResponse, DeviceAttributes, DirectorMetadataSet, EnrolResponse,
    EnrolmentClaims, EnrolmentCredential, EnrolmentRequest, ErrorBody, FactorySign, InstallReport,
    InstalledTarget, LogPin, ManifestBody, SignedManifest, MAX_REPORTS, MAX_RESPONSE_BYTES,
    TYPE_ENROLMENT, TYPE_MANIFEST, WIRE_VERSION,
};
use custody_tuf::Key;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::bundle::{Bundle, BundleError};
use crate::download::{copy_payload, download_payload, http_agent, DownloadConfig, DownloadError};
use crate::fsutil::{ensure_dir, read_json, write_json};
use crate::installer::{InstallPlan, InstallerConfig};
use crate::keystore::{DeviceKeyType, DeviceSigner, FileKeyBackend, KeyBackend};
use crate::report::{Outcome, Report};
use crate::verify::{
    trusted_root_version, verify_update, BundleImageMetadata, DeviceTrust, HttpImageMetadata,
    ImageMetadata, TrustedWrites, VerifiedTarget,
};
use crate::{Agent, AgentConfig, AgentError, HookCommand, Probe};

mod enroll;
mod given_up;
mod status;

pub use enroll::{
    enroll, factory_credential, pin_trust, resolve_log_pin, Credential, EnrollOptions,
    LogPinOptions,
};
use given_up::given_up_key;
#[cfg(test)]
use given_up::recovered_gives_up;
pub use status::{GivenUp, Status};

/// Format of `device.json`.
pub const DEVICE_FORMAT: u32 = 1;
/// Most attack reports kept while the server is unreachable (oldest are
/// dropped first, and the drop itself is recorded in the next one).
pub const MAX_PENDING_ATTACKS: usize = 256;

/// Everything that can stop a check-in, an enrolment or a bundle install.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Device-local step failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The server could not be reached or answered garbage.
    #[error("{url}: {reason}")]
    Http {
        /// URL
        url: String,
        /// what went wrong
        reason: String,
    },
    /// The server refused the request.
    #[error("{url}: server answered HTTP {status} {code}: {message}")]
    Server {
        /// URL
        url: String,
        /// status
        status: u16,
        /// stable error code
        code: String,
        /// server's message
        message: String,
    },
    /// The enrolment answer is not acceptable.
    #[error("enrolment: {0}")]
    Enrol(String),
    /// The device's configuration is missing or unusable.
    #[error("{}: {detail}", path.display())]
    Config {
        /// file
        path: PathBuf,
        /// what is wrong
        detail: String,
    },
    /// The bundle cannot be read.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Local TUF metadata store failure.
    #[error(transparent)]
    Client(#[from] custody_client::ClientError),
}

/// Rollback keys as stored in `device.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackKeysConfig {
    /// key id → TUF key
    pub keys: BTreeMap<String, Key>,
    /// distinct signatures needed
    pub threshold: u64,
}

/// `device.json`: who this device is and where its server is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// [`DEVICE_FORMAT`]
    pub format: u32,
    /// server base URL (`https://updates.example`)
    pub server: String,
    /// this device's id (key id of its key)
    pub device_id: String,
    /// hardware id
    pub hardware_id: String,
    /// key algorithm
    pub key_type: DeviceKeyType,
    /// image repository name
    pub image_repository: String,
    /// image metadata path on the server (`/repos/main/metadata/`)
    pub image_metadata_path: String,
    /// image targets path on the server
    pub image_targets_path: String,
    /// keys that may authorise a rollback; none: never downgrade
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_keys: Option<RollbackKeysConfig>,
    /// the transparency log every target must be in (pinned at enrolment);
    /// none: no log check (enrolled with a server without a log and no
    /// `--log-key`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogPin>,
}

/// Device-local settings (`agent.json` in the state directory, or a file
/// given with `--config`):
///
/// ```json
/// {"installer": {"kind": "slot", "root": "/var/lib/custody/slots"},
///  "health_check": {"argv": ["/usr/bin/selftest"], "timeout_secs": 60},
///  "reserve_bytes": 1048576, "poll_secs": 300}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// installer; default: A/B slots in `<state>/slots`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<InstallerConfig>,
    /// health check after activation
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HookCommand>,
    /// free space kept after download and install
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_bytes: Option<u64>,
    /// seconds between check-ins (daemon), before jitter
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secs: Option<u64>,
}

/// `net.json`: the network half's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// last manifest counter used (strictly increasing; persisted before use)
    pub report_counter: u64,
    /// attacks detected and not yet acknowledged by the server
    #[serde(default)]
    pub attacks: Vec<AttackReport>,
    /// targets whose attempt ended without being committed (name, sha256):
    /// not retried until the director assigns something else
    #[serde(default)]
    pub given_up: Vec<(String, String)>,
}

/// Signs with a factory certificate's private key.
pub type FactorySigner = std::sync::Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// What one check-in (or bundle install) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Action {
    /// nothing to install
    UpToDate {
        /// committed target, if any
        installed: Option<String>,
    },
    /// a new version is committed
    Installed {
        /// target
        target: String,
        /// counter
        release_counter: u64,
    },
    /// the update was refused by verification (attack report queued)
    Refused {
        /// what
        subject: String,
        /// why
        reason: String,
    },
    /// the attempt failed (nothing installed)
    Failed {
        /// target
        target: String,
        /// why
        reason: String,
    },
    /// the new version did not pass its trial
    RolledBack {
        /// target
        target: String,
        /// why
        reason: String,
    },
    /// a target that failed before is assigned again: not retried
    Skipped {
        /// target
        target: String,
    },
    /// not installed yet: the transparency-log check could not complete
    /// (log unreachable, too few witness cosignatures so far, offline
    /// evidence made for other devices); retried at the next check-in
    Deferred {
        /// target
        target: String,
        /// why
        reason: String,
    },
}

/// Report of one check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// device id
    pub device_id: String,
    /// what happened
    pub action: Action,
    /// manifest counters the server acknowledged
    pub accepted_counters: Vec<u64>,
    /// install reports delivered and dropped from the queue
    pub reports_delivered: usize,
    /// attack reports delivered
    pub attacks_delivered: usize,
    /// director targets version trusted now
    pub director_targets_version: Option<u64>,
    /// suggested seconds to the next check-in
    pub next_checkin_secs: Option<u64>,
    /// committed target after the check-in
    pub installed: Option<String>,
}

/// An enrolled device: identity, key, local agent.
pub struct Device {
    state_dir: PathBuf,
    config: DeviceConfig,
    signer: DeviceSigner,
    agent: Agent,
    http: ureq::Agent,
    dl: DownloadConfig,
    local: LocalConfig,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("state_dir", &self.state_dir)
            .field("device_id", &self.config.device_id)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// Paths inside the state directory.
pub fn device_json(state: &Path) -> PathBuf {
    state.join("device.json")
}
fn key_path(state: &Path) -> PathBuf {
    state.join("device-key.json")
}
fn net_json(state: &Path) -> PathBuf {
    state.join("net.json")
}
/// The last accepted transparency-log checkpoint.
pub fn log_checkpoint_path(state: &Path) -> PathBuf {
    state.join("log-checkpoint")
}

fn read_body(
    url: &str,
    resp: ureq::http::Response<ureq::Body>,
) -> Result<(u16, Vec<u8>), DeviceError> {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .with_config()
        .limit(MAX_RESPONSE_BYTES as u64)
        .read_to_vec()
        .map_err(|e| DeviceError::Http {
            url: url.to_owned(),
            reason: format!("reading the answer (limit {MAX_RESPONSE_BYTES} bytes): {e}"),
        })?;
    Ok((status, body))
}

fn server_error(url: &str, status: u16, body: &[u8]) -> DeviceError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(b) => (b.error, b.message),
        None => (
            "unknown".to_owned(),
            String::from_utf8_lossy(body.get(..512).unwrap_or(body)).into_owned(),
        ),
    };
    DeviceError::Server {
        url: url.to_owned(),
        status,
        code,
        message,
    }
}

fn join(server: &str, path: &str) -> String {
    format!("{}{}", server.trim_end_matches('/'), path)
}

fn installed_target(t: &crate::TargetMeta) -> InstalledTarget {
    InstalledTarget {
        name: t.name.clone(),
        length: t.length,
        hashes: t.hashes.clone(),
        release_counter: t.release_counter,
    }
}

fn install_report(r: &Report) -> InstallReport {
    let reason = match &r.outcome {
        Outcome::Installed => None,
        Outcome::Failed { reason }
        | Outcome::RolledBack { reason }
        | Outcome::AttackDetected { reason } => Some(truncate_text(reason)),
    };
    InstallReport {
        id: r.id.clone(),
        target: r.target.name.clone(),
        release_counter: r.target.release_counter,
        outcome: r.outcome.kind().to_owned(),
        reason,
        time: i64::try_from(r.decided_at).unwrap_or(i64::MAX),
    }
}

fn truncate_text(s: &str) -> String {
    let max = custody_director::wire::MAX_TEXT;
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}

impl Device {
    /// Open an enrolled device: load `device.json`, the key, the local
    /// agent (and run its crash recovery).
    pub fn open(state_dir: &Path, local: Option<LocalConfig>) -> Result<Self, DeviceError> {
        let config: DeviceConfig = read_json(&device_json(state_dir), "device configuration")?
            .ok_or_else(|| DeviceError::Config {
                path: device_json(state_dir),
                detail: "missing: enrol first (`custody agent enroll`)".into(),
            })?;
        if config.format != DEVICE_FORMAT {
            return Err(DeviceError::Config {
                path: device_json(state_dir),
                detail: format!("format {} is not {DEVICE_FORMAT}", config.format),
            });
        }
        let local = match local {
            Some(l) => l,
            None => {
                read_json(&state_dir.join("agent.json"), "agent configuration")?.unwrap_or_default()
            }
        };
        let signer = FileKeyBackend::new(key_path(state_dir)).load()?;
        if signer.keyid() != config.device_id {
            return Err(DeviceError::Config {
                path: key_path(state_dir),
                detail: format!(
                    "key id {} is not the enrolled device id {}",
                    signer.keyid(),
                    config.device_id
                ),
            });
        }
        let installer = local
            .installer
            .clone()
            .unwrap_or(InstallerConfig::Slot {
                root: state_dir.join("slots"),
            })
            .build()?;
        let mut ac = AgentConfig::new(state_dir.join("agent"));
        ac.health_check = local.health_check.clone();
        if let Some(r) = local.reserve_bytes {
            ac.reserve_bytes = r;
        }
        let mut agent = Agent::open(ac, installer, Probe::none())?;
        let interrupted = agent.state().attempt.clone();
        let recovered = agent.recover()?;
        let dl = DownloadConfig::default();
        let device = Device {
            state_dir: state_dir.to_owned(),
            http: http_agent(&dl),
            dl,
            config,
            signer,
            agent,
            local,
        };
        device.settle_recovery(interrupted.as_ref(), recovered.as_ref())?;
        Ok(device)
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The local configuration.
    pub fn local(&self) -> &LocalConfig {
        &self.local
    }

    /// The device-local agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The committed target.
    pub fn installed(&self) -> Option<&crate::TargetMeta> {
        self.agent.state().committed.as_ref().map(|c| &c.target)
    }

    fn net(&self) -> Result<NetState, DeviceError> {
        Ok(read_json(&net_json(&self.state_dir), "network state")?.unwrap_or_default())
    }

    fn save_net(&self, n: &NetState) -> Result<(), DeviceError> {
        write_json(&net_json(&self.state_dir), n)?;
        Ok(())
    }

    /// Record an attack for the next manifest.
    pub fn record_attack(&self, subject: &str, reason: &str) -> Result<(), DeviceError> {
        let mut n = self.net()?;
        if n.attacks.len() >= MAX_PENDING_ATTACKS {
            n.attacks.remove(0);
        }
        n.attacks.push(AttackReport {
            subject: truncate_text(subject).chars().take(1000).collect(),
            reason: truncate_text(reason),
            time: now_secs(),
        });
        self.save_net(&n)
    }

    fn rollback_keys(&self) -> Option<RollbackKeys> {
        self.config.rollback_keys.as_ref().map(|k| RollbackKeys {
            keys: k.keys.clone(),
            threshold: k.threshold,
        })
    }

    /// One check-in round trip: sign and send the manifest, drop what the
    /// server acknowledged. Returns the answer and (reports, attacks)
    /// delivered.
    fn send_manifest(&mut self) -> Result<(CheckinResponse, usize, usize), DeviceError> {
        let mut net = self.net()?;
        net.report_counter = net.report_counter.saturating_add(1);
        // Persist the counter before it leaves the device: a crash after
        // sending can never make the device reuse it.
        self.save_net(&net)?;
        let counter = net.report_counter;
        let pending = self.agent.queue().pending()?;
        let carried: Vec<_> = pending.into_iter().take(MAX_REPORTS).collect();
        let attacks: Vec<AttackReport> = net.attacks.iter().take(MAX_REPORTS).cloned().collect();
        let mut installed = BTreeMap::new();
        let mut active = None;
        if let Some(c) = &self.agent.state().committed {
            let slot = match &c.plan {
                InstallPlan::Slot { new, .. } => new.name().to_owned(),
                InstallPlan::Command => "main".to_owned(),
            };
            installed.insert(slot.clone(), installed_target(&c.target));
            active = Some(slot);
        }
        let body = ManifestBody {
            type_: TYPE_MANIFEST.to_owned(),
            wire_version: WIRE_VERSION,
            device_id: self.config.device_id.clone(),
            hardware_id: self.config.hardware_id.clone(),
            report_counter: counter,
            device_time: now_secs(),
            installed,
            active_slot: active,
            attacks_detected: attacks.clone(),
            install_reports: carried.iter().map(|q| install_report(&q.report)).collect(),
        };
        let manifest = SignedManifest::sign(body, self.signer.as_ref())
            .and_then(|m| m.to_bytes())
            .map_err(|e| DeviceError::Config {
                path: key_path(&self.state_dir),
                detail: format!("signing the manifest: {e}"),
            })?;
        let root = trusted_root_version(&self.state_dir.join("director"))?;
        let path = format!("/device/v1/checkin?root={root}");
        let url = join(&self.config.server, &path);
        let nonce = fresh_nonce().map_err(|e| DeviceError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let req = sign_request(
            self.signer.as_ref(),
            "POST",
            &path,
            manifest,
            Utc::now(),
            nonce,
        )
        .map_err(|e| DeviceError::Config {
            path: key_path(&self.state_dir),
            detail: format!("signing the request: {e}"),
        })?;
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(headers::DEVICE, &req.device_id)
            .header(headers::TIMESTAMP, req.timestamp.to_string())
            .header(headers::NONCE, &req.nonce)
            .header(headers::SIGNATURE, &req.signature)
            .send(&req.body[..])
            .map_err(|e| DeviceError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let (status, bytes) = read_body(&url, resp)?;
        if status != 200 {
            return Err(server_error(&url, status, &bytes));
        }
        let answer = CheckinResponse::from_bytes(&bytes).map_err(|e| DeviceError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let (mut reports, mut attacks_n) = (0, 0);
        if answer.accepted_counter == counter {
            for q in &carried {
                self.agent.queue().ack(q)?;
                reports += 1;
            }
            let mut net = self.net()?;
            let n = attacks.len().min(net.attacks.len());
            // the carried ones are the oldest; new ones may have been added
            if net.attacks.get(..n) == attacks.get(..n) {
                net.attacks.drain(..n);
                attacks_n = n;
            }
            self.save_net(&net)?;
        } else {
            tracing::warn!(
                sent = counter,
                accepted = answer.accepted_counter,
                "server acknowledged another counter; reports stay queued"
            );
        }
        Ok((answer, reports, attacks_n))
    }

    fn report(&self, action: Action) -> CheckReport {
        CheckReport {
            device_id: self.config.device_id.clone(),
            action,
            accepted_counters: Vec::new(),
            reports_delivered: 0,
            attacks_delivered: 0,
            director_targets_version: None,
            next_checkin_secs: None,
            installed: self.installed().map(|t| t.name.clone()),
        }
    }

    /// Check in once: report, verify, download, install, report the outcome.
    pub fn check_once(&mut self) -> Result<CheckReport, DeviceError> {
        let (answer, r, a) = self.send_manifest()?;
        let image_url = Url::parse(&join(&self.config.server, &self.config.image_metadata_path))
            .map_err(|e| DeviceError::Config {
                path: device_json(&self.state_dir),
                detail: format!("image_metadata_path: {e}"),
            })?;
        let transport = custody_client::AnyTransport::new(custody_client::Timeouts::default());
        let targets_base = join(&self.config.server, &self.config.image_targets_path);
        let image = HttpImageMetadata {
            url: image_url,
            transport,
        };
        let mut report =
            self.apply(&answer.director, &image, &PayloadSource::Http(targets_base))?;
        report.accepted_counters.push(answer.accepted_counter);
        report.reports_delivered += r;
        report.attacks_delivered += a;
        report.next_checkin_secs = answer.next_checkin_secs;
        let queued = !self.agent.queue().pending()?.is_empty() || !self.net()?.attacks.is_empty();
        if queued {
            // carry the outcome to the server now, not a poll interval later
            match self.send_manifest() {
                Ok((answer2, r2, a2)) => {
                    report.accepted_counters.push(answer2.accepted_counter);
                    report.reports_delivered += r2;
                    report.attacks_delivered += a2;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reporting the outcome failed; it stays queued")
                }
            }
        }
        report.installed = self.installed().map(|t| t.name.clone());
        Ok(report)
    }

    /// Install from an offline bundle, through the same verification.
    pub fn install_bundle(&mut self, path: &Path) -> Result<CheckReport, DeviceError> {
        let bundle = Bundle::open(path)?;
        let Some(set) = bundle.header.director.get(&self.config.device_id).cloned() else {
            let listed: Vec<&str> = bundle.header.director.keys().map(String::as_str).collect();
            let reason = format!(
                "bundle {} carries director metadata for device(s) [{}], not for this device {}: refusing it",
                path.display(),
                listed.join(", "),
                self.config.device_id
            );
            self.record_attack("bundle", &reason)?;
            return Ok(self.report(Action::Refused {
                subject: "bundle".into(),
                reason,
            }));
        };
        let image = BundleImageMetadata {
            files: bundle.image_files()?,
        };
        let mut report = self.apply(&set, &image, &PayloadSource::Bundle(&bundle))?;
        if let Action::Refused { reason, .. } = &mut report.action {
            *reason = format!(
                "bundle {} (created {}): {reason}",
                path.display(),
                DateTime::<Utc>::from_timestamp(bundle.header.created, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            );
        }
        Ok(report)
    }

    /// Verify and act on one director metadata set (online or bundle).
    /// The verified director and image metadata are persisted only once the
    /// update is accepted: when nothing is to be installed, or when the
    /// target to install also passed the transparency-log check. A refusal
    /// leaves both trusted stores unchanged.
    fn apply(
        &mut self,
        set: &DirectorMetadataSet,
        image: &dyn ImageMetadata,
        source: &PayloadSource<'_>,
    ) -> Result<CheckReport, DeviceError> {
        let rollback_keys = self.rollback_keys();
        let director_dir = self.state_dir.join("director");
        let image_dir = self.state_dir.join("image");
        let trust = DeviceTrust {
            director_dir: &director_dir,
            image_dir: &image_dir,
            device_id: &self.config.device_id,
            hardware_id: &self.config.hardware_id,
            rollback_keys: rollback_keys.as_ref(),
        };
        let installed = self.installed().cloned();
        let verified = match verify_update(&trust, set, image, installed.as_ref(), Utc::now()) {
            Ok(v) => v,
            Err(e) if e.is_attack() => {
                let (subject, reason) = (e.subject(), e.to_string());
                tracing::warn!(%subject, %reason, "update refused");
                self.record_attack(&subject, &reason)?;
                return Ok(self.report(Action::Refused { subject, reason }));
            }
            Err(e) => {
                return Err(DeviceError::Http {
                    url: "verification".into(),
                    reason: e.to_string(),
                })
            }
        };
        let writes = &verified.trusted_writes;
        let persist = |w: &TrustedWrites| {
            let trust = DeviceTrust {
                director_dir: &director_dir,
                image_dir: &image_dir,
                device_id: "",
                hardware_id: "",
                rollback_keys: None,
            };
            w.persist(&trust)
                .map_err(|e| DeviceError::Client(custody_client::ClientError::Store(e)))
        };
        let mut report = match &verified.install {
            None => {
                persist(writes)?;
                // Verified and accepted: the director assigns nothing new,
                // so given-up marks go (a refused answer never clears one).
                self.assignment_seen(None)?;
                self.report(Action::UpToDate {
                    installed: installed.map(|t| t.name),
                })
            }
            Some(t) => self.install_target(t, source, || persist(writes))?,
        };
        report.director_targets_version = Some(verified.director_targets_version);
        Ok(report)
    }

    /// `accept` persists the verified metadata: called once the target is
    /// known not to be refused (given up earlier, or past the log check).
    fn install_target(
        &mut self,
        t: &VerifiedTarget,
        source: &PayloadSource<'_>,
        accept: impl FnOnce() -> Result<(), DeviceError>,
    ) -> Result<CheckReport, DeviceError> {
        let key = given_up_key(&t.meta);
        // A poll does not retry a target that already failed here; an
        // operator installing a bundle explicitly does.
        let explicit = matches!(source, PayloadSource::Bundle(_));
        if !explicit && self.net()?.given_up.contains(&key) {
            accept()?;
            return Ok(self.report(Action::Skipped {
                target: t.meta.name.clone(),
            }));
        }
        let name = t.meta.name.clone();
        // The transparency log, before anything is downloaded or installed.
        if let Err(e) = self.check_log(t, source) {
            let reason = e.to_string();
            if e.is_attack() {
                tracing::warn!(target = %name, kind = e.kind(), %reason, "target refused by the log check");
                self.record_attack(&name, &format!("{}: {reason}", e.kind()))?;
                return Ok(self.report(Action::Refused {
                    subject: name,
                    reason,
                }));
            }
            tracing::warn!(target = %name, kind = e.kind(), %reason, "log check incomplete; target deferred");
            return Ok(self.report(Action::Deferred {
                target: name,
                reason,
            }));
        }
        accept()?;
        // Assigned, verified and logged: marks of other targets go (a
        // refused answer never clears one).
        self.assignment_seen(Some(t))?;
        let attempt = match self.agent.begin_with(t.meta.clone(), t.rollback_authorized) {
            Ok(a) => a,
            Err(e @ (AgentError::Downgrade { .. } | AgentError::InsufficientSpace { .. })) => {
                // the attempt ended and its report is queued
                self.give_up(key)?;
                let reason = e.to_string();
                return Ok(self.report(match e {
                    AgentError::Downgrade { .. } => Action::Refused {
                        subject: name,
                        reason,
                    },
                    _ => Action::Failed {
                        target: name,
                        reason,
                    },
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let dest = self.agent.download_path(attempt);
        let got = match source {
            PayloadSource::Http(base) => {
                let rel = custody_client::encoding::escape_url_path(&t.remote_path);
                let url = format!("{}/{}", base.trim_end_matches('/'), rel);
                download_payload(&self.http, &url, &name, &t.image, &dest, &self.dl)
            }
            PayloadSource::Bundle(b) => match b.payload(&name) {
                Ok(r) => copy_payload(r, &b.path().display().to_string(), &name, &t.image, &dest),
                Err(e) => Err(DownloadError::Rejected {
                    url: b.path().display().to_string(),
                    reason: e.to_string(),
                }),
            },
        };
        let outcome = match got {
            Ok(()) => {
                self.agent.downloaded(attempt, &dest)?;
                // Given up before the install step runs, taken back only
                // after a commit: a crash anywhere in between (even after
                // the agent queued a rollback, before this returns) cannot
                // let the next poll install the target again.
                self.give_up(key.clone())?;
                self.agent.install(attempt)?
            }
            Err(e) if e.is_attack() => self.agent.abort(
                attempt,
                Outcome::AttackDetected {
                    reason: e.to_string(),
                },
            )?,
            Err(e) => {
                // transient: the next check-in starts a new attempt
                let o = self.agent.abort(
                    attempt,
                    Outcome::Failed {
                        reason: e.to_string(),
                    },
                )?;
                return Ok(self.report(match o {
                    Outcome::Failed { reason } => Action::Failed {
                        target: name,
                        reason,
                    },
                    _ => Action::Failed {
                        target: name,
                        reason: e.to_string(),
                    },
                }));
            }
        };
        let action = match outcome {
            Outcome::Installed => {
                self.forget_given_up(&key)?;
                Action::Installed {
                    target: name,
                    release_counter: t.meta.release_counter,
                }
            }
            Outcome::Failed { reason } => {
                self.give_up(key)?;
                Action::Failed {
                    target: name,
                    reason,
                }
            }
            Outcome::RolledBack { reason } => {
                self.give_up(key)?;
                Action::RolledBack {
                    target: name,
                    reason,
                }
            }
            Outcome::AttackDetected { reason } => {
                self.give_up(key)?;
                Action::Refused {
                    subject: name,
                    reason,
                }
            }
        };
        Ok(self.report(action))
    }

    /// The transparency-log check of `t` (no-op without a pinned log).
    /// On success the accepted checkpoint is stored durably before this
    /// returns, so it is stored before anything is installed.
    fn check_log(
        &self,
        t: &VerifiedTarget,
        source: &PayloadSource<'_>,
    ) -> Result<(), LogCheckError> {
        let Some(pin) = &self.config.log else {
            return Ok(());
        };
        let trust = pin_trust(pin).map_err(|e| {
            LogCheckError::Local(format!(
                "{}: log pin: {e}",
                device_json(&self.state_dir).display()
            ))
        })?;
        let store = CheckpointStore::new(log_checkpoint_path(&self.state_dir));
        let stored = store.load(&trust)?;
        let expect = ExpectedPublish {
            repo: self.config.image_repository.clone(),
            name: t.meta.name.clone(),
            length: t.image.length,
            hashes: t.image.hashes.clone().into_iter().collect(),
        };
        let accepted = match source {
            PayloadSource::Http(_) => {
                let base = Url::parse(&join(&self.config.server, &pin.log_path)).map_err(|e| {
                    LogCheckError::Local(format!(
                        "log URL {}{}: {e}",
                        self.config.server, pin.log_path
                    ))
                })?;
                let transport =
                    custody_client::AnyTransport::new(custody_client::Timeouts::default());
                let ev = fetch_evidence(
                    &transport,
                    &base,
                    &expect,
                    stored.as_ref().map_or(0, |c| c.size),
                )?;
                check_target(&trust, stored.as_ref(), &ev, &expect)?
            }
            PayloadSource::Bundle(b) => {
                let Some(ev) = b.header.log.get(&expect.name) else {
                    return Err(LogCheckError::NotLogged {
                        repo: expect.repo.clone(),
                        target: expect.name.clone(),
                        sha256: expect.sha256().unwrap_or_default(),
                        detail: format!(
                            "bundle {} carries no log evidence for it",
                            b.path().display()
                        ),
                    });
                };
                if ev.repo != expect.repo || ev.target != expect.name {
                    return Err(LogCheckError::WrongEntry {
                        index: ev.index,
                        target: expect.name.clone(),
                        reason: format!(
                            "the bundle's evidence is for {:?} in repo {:?}",
                            ev.target, ev.repo
                        ),
                    });
                }
                check_offline_target(&trust, stored.as_ref(), ev, &expect)?
            }
        };
        store.save(&accepted)?;
        Ok(())
    }

    /// The stored transparency-log checkpoint's size, if any.
    pub fn log_size(&self) -> Option<u64> {
        let pin = self.config.log.as_ref()?;
        let trust = pin_trust(pin).ok()?;
        CheckpointStore::new(log_checkpoint_path(&self.state_dir))
            .load(&trust)
            .ok()
            .flatten()
            .map(|c| c.size)
    }

    /// Poll interval from the local configuration (default 300 s).
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.local.poll_secs.unwrap_or(300).max(1))
    }
}

/// Where payloads come from.
enum PayloadSource<'a> {
    /// the image repository's targets URL
    Http(String),
    /// an offline bundle
    Bundle(&'a Bundle),
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_log::{Cosigner, NoteSigner};

    fn offer(key: &str, ws: &[String], k: usize) -> LogPin {
        LogPin {
            origin: "log.test/log".into(),
            log_key: key.into(),
            witnesses: ws.to_vec(),
            witness_threshold: k,
            log_path: "/log/v1/".into(),
        }
    }

    #[test]
    fn recovered_outcomes_give_up_like_the_same_outcome_in_an_install() {
        use crate::state::{Attempt, Phase};
        use crate::{InstallPlan, TargetMeta};
        let target: TargetMeta = serde_json::from_value(serde_json::json!({
            "name": "fw-2.img", "length": 3, "release_counter": 2,
            "hashes": {"sha256": "ab".repeat(32)}
        }))
        .unwrap();
        let attempt = |phase: Phase, plan: Option<InstallPlan>| Attempt {
            id: 7,
            target: target.clone(),
            plan,
            phase,
        };
        let failed = Outcome::Failed { reason: "x".into() };
        let rolled = Outcome::RolledBack { reason: "x".into() };
        let attack = Outcome::AttackDetected { reason: "x".into() };
        let trial = attempt(Phase::Trial { since: 1 }, Some(InstallPlan::Command));
        // killed in the trial: rolled back at restart, given up
        assert!(recovered_gives_up(&trial, &rolled));
        // killed while staging (restage limit): failed, given up
        let staging = attempt(
            Phase::Installing {
                payload: "p".into(),
                tries: 3,
            },
            Some(InstallPlan::Command),
        );
        assert!(recovered_gives_up(&staging, &failed));
        // killed after the download verified: the install's failure counts
        let downloaded = attempt(
            Phase::Downloaded {
                payload: "p".into(),
            },
            None,
        );
        assert!(recovered_gives_up(&downloaded, &failed));
        // killed while downloading: a failed download, retried
        let downloading = attempt(Phase::Downloading, None);
        assert!(!recovered_gives_up(&downloading, &failed));
        // a refusal finished at restart (downgrade, attack while downloading)
        assert!(recovered_gives_up(
            &attempt(Phase::AttackDetected { reason: "x".into() }, None),
            &attack
        ));
        // committed before the crash: never given up
        let committed = attempt(Phase::Committed, Some(InstallPlan::Command));
        assert!(!recovered_gives_up(&committed, &Outcome::Installed));
    }

    #[test]
    fn log_pin_resolution() {
        let key = NoteSigner::from_seed("log.test/log", [1; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let other = NoteSigner::from_seed("log.test/log", [2; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let w1 = Cosigner::from_seed("w.test/1", [3; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let w2 = Cosigner::from_seed("w.test/2", [4; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let none = LogPinOptions::default();
        // nothing offered, nothing pinned: no log check
        assert_eq!(resolve_log_pin(None, &none).unwrap(), None);
        // the offer is pinned on first use
        let o = offer(&key, std::slice::from_ref(&w1), 1);
        assert_eq!(resolve_log_pin(Some(&o), &none).unwrap(), Some(o.clone()));
        // an explicit key that agrees
        let pinned = LogPinOptions {
            log_key: Some(key.clone()),
            ..Default::default()
        };
        assert_eq!(resolve_log_pin(Some(&o), &pinned).unwrap(), Some(o.clone()));
        // an offer with another key: refused
        let e = resolve_log_pin(Some(&offer(&other, &[], 0)), &pinned).unwrap_err();
        assert!(e.to_string().contains("offers log key"), "{e}");
        // pinned without an offer: origin from the key name
        let p = resolve_log_pin(None, &pinned).unwrap().unwrap();
        assert_eq!(p.origin, "log.test/log");
        assert_eq!(p.witness_threshold, 0);
        // witnesses pinned: threshold defaults to all of them
        let ws = LogPinOptions {
            witnesses: vec![w1.clone(), w2.clone()],
            ..pinned.clone()
        };
        let p = resolve_log_pin(Some(&offer(&key, &[], 0)), &ws)
            .unwrap()
            .unwrap();
        assert_eq!(p.witness_threshold, 2);
        // an offer with another witness set: refused
        let e = resolve_log_pin(Some(&o), &ws).unwrap_err();
        assert!(e.to_string().contains("witness policy"), "{e}");
        // a threshold above the keys, a log key that is not a key: refused
        let bad = LogPinOptions {
            witness_threshold: Some(3),
            ..ws.clone()
        };
        assert!(resolve_log_pin(None, &bad).is_err());
        let bad = LogPinOptions {
            log_key: Some("not a key".into()),
            ..Default::default()
        };
        assert!(resolve_log_pin(None, &bad).is_err());
        // witnesses without any log
        let bad = LogPinOptions {
            witnesses: vec![w1],
            ..Default::default()
        };
        assert!(resolve_log_pin(None, &bad).is_err());
    }
}
