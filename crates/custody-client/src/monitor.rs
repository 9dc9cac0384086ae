//! The release monitor's IO loop: follow a custody server's transparency
//! log the way a witness does, feed each new entry exactly once to
//! custody-monitor's rules, and keep crash-safe state.
//!
//! One [`step`]:
//! 1. the log key: given, else pinned in the state directory on first use;
//! 2. the checkpoint, verified with it;
//! 3. the entries from the last size reached to the checkpoint's, fetched
//!    bundle by bundle and appended to the stored [`Frontier`]; the
//!    frontier's root must equal the signed root, which proves the new tree
//!    extends the old one and holds exactly those entries. A smaller tree
//!    is a rollback, another root a fork: the step halts with a
//!    [`Halt`] alert and leaves the state as it was;
//! 4. the entries through [`Monitor::observe`] as they arrive (kept only
//!    if step 3 holds);
//! 5. the new state, with the alerts added to its outbox, written
//!    atomically before anything is delivered. [`delivered`] empties the
//!    outbox once the caller has passed the alerts on, so every alert is
//!    delivered at least once (ids are stable for de-duplication).

use std::path::{Path, PathBuf};

use custody_log::entry::LogEntry;
use custody_log::frontier::{check_grows, Frontier};
use custody_log::tile::{parse_entry_bundle, BundleId, TILE_WIDTH};
use custody_log::wire::MAX_CHECKPOINT_BYTES;
use custody_log::LogVerifier;
use custody_monitor::{Alert, Config, Monitor, Rule, State};
use serde::{Deserialize, Serialize};

use crate::logtool::{get_required, log_url, resolve_log_key, LogToolError, MAX_BUNDLE_BYTES};
use crate::store::{read_bounded, write_atomic};
use crate::transport::Transport;

/// Largest state file (the rules' state grows with repositories, targets
/// and publishers, not with entries).
const MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;

/// What a monitor is told.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Base URL of the custody server (the log is under `/log/v1`).
    pub log: String,
    /// The log's verifier key (vkey string or file); `None`: pinned in the
    /// state directory on first use.
    pub log_key: Option<String>,
    /// Where the state lives (`monitor-state.json`, `log-key`).
    pub state_dir: PathBuf,
    /// The rules' configuration.
    pub config: Config,
}

/// Everything the monitor keeps between steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Saved {
    frontier: Frontier,
    rules: State,
    /// alerts raised and not yet handed on
    outbox: Vec<Alert>,
}

/// Why a step stopped without taking the log's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt(pub Alert);

/// What one step did.
#[derive(Debug, Clone)]
pub struct Stepped {
    /// entries observed in this step
    pub observed: u64,
    /// the log size reached
    pub size: u64,
    /// alerts to deliver: this step's and any an earlier run raised but
    /// did not hand on
    pub alerts: Vec<Alert>,
    /// entries that do not parse (observed as nothing), by index
    pub unreadable: Vec<u64>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("monitor-state.json")
}

fn load(dir: &Path) -> Result<Saved, LogToolError> {
    let path = state_path(dir);
    let Some(bytes) = read_bounded(&path, MAX_STATE_BYTES)? else {
        return Ok(Saved::default());
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| LogToolError::Checkpoint {
        what: format!("monitor state {}", path.display()),
        reason: format!("not a monitor state: {e}"),
    })?;
    if !saved.frontier.is_well_formed() || saved.rules.next_index != saved.frontier.size() {
        return Err(LogToolError::Checkpoint {
            what: format!("monitor state {}", path.display()),
            reason: "the stored tree and the rules' position disagree (edited by hand?)".into(),
        });
    }
    Ok(saved)
}

fn save(dir: &Path, saved: &Saved) -> Result<(), LogToolError> {
    let bytes = serde_json::to_vec(saved).map_err(|e| LogToolError::Checkpoint {
        what: "monitor state".into(),
        reason: e.to_string(),
    })?;
    Ok(write_atomic(&state_path(dir), &bytes)?)
}

/// One step (see the module documentation). `Ok(Err(halt))`: the log
/// forked or rolled back; nothing was saved.
pub fn step<T: Transport + ?Sized>(
    t: &T,
    opts: &MonitorOptions,
    now: i64,
) -> Result<Result<Stepped, Halt>, LogToolError> {
    std::fs::create_dir_all(&opts.state_dir).map_err(|error| LogToolError::File {
        path: opts.state_dir.clone(),
        op: "create state directory",
        error,
    })?;
    let base = opts.log.trim_end_matches('/');
    let pin = opts.state_dir.join("log-key");
    let (key, _) = resolve_log_key(t, base, opts.log_key.as_deref(), Some(&pin))?;
    let verifier = LogVerifier::new(key.name(), key.clone()).map_err(|e| LogToolError::Key {
        what: "log key".into(),
        reason: e.to_string(),
    })?;
    let url = log_url(base, "checkpoint")?;
    let note = get_required(t, &url, MAX_CHECKPOINT_BYTES as u64)?;
    let cp = verifier
        .verify(&note)
        .map_err(|e| LogToolError::Checkpoint {
            what: format!("checkpoint at {url}"),
            reason: e.to_string(),
        })?
        .checkpoint;
    let mut saved = load(&opts.state_dir)?;
    let old = saved.frontier.size();
    if let Err(e) = check_grows(old, &cp) {
        let alert = Alert::log_health(
            Rule::LogRollback,
            cp.size,
            now,
            base,
            format!("{base}: {e}"),
        );
        return Ok(Err(Halt(alert)));
    }
    // Entries are observed as they arrive, bundle by bundle (memory stays
    // at one bundle); nothing is kept unless the root checks out below.
    let mut frontier = saved.frontier.clone();
    let mut monitor = Monitor::new(opts.config.clone(), saved.rules.clone());
    let mut alerts = Vec::new();
    let mut unreadable = Vec::new();
    let mut index = old;
    while index < cp.size {
        let bundle_index = index / u64::from(TILE_WIDTH);
        let start = bundle_index * u64::from(TILE_WIDTH);
        let width = (cp.size - start).min(u64::from(TILE_WIDTH));
        let b =
            BundleId::new(bundle_index, width as u16).map_err(|e| LogToolError::Checkpoint {
                what: format!("entry bundle {bundle_index}"),
                reason: e.to_string(),
            })?;
        let bytes = get_required(t, &log_url(base, &b.path())?, MAX_BUNDLE_BYTES)?;
        let parsed = parse_entry_bundle(&bytes).map_err(|e| LogToolError::Checkpoint {
            what: format!("entry bundle {} at {base}", b.path()),
            reason: e.to_string(),
        })?;
        if parsed.len() as u64 != width {
            return Err(LogToolError::Checkpoint {
                what: format!("entry bundle {} at {base}", b.path()),
                reason: format!("{} entries, the checkpoint implies {width}", parsed.len()),
            });
        }
        for (i, entry) in parsed.into_iter().enumerate() {
            let at = start + i as u64;
            if at < index {
                continue;
            }
            frontier.push_entry(entry);
            match LogEntry::from_bytes(entry) {
                Ok(e) => alerts.extend(monitor.observe(at, &e)),
                Err(_) => {
                    // An entry this build cannot read still takes its place.
                    unreadable.push(at);
                    monitor.state.next_index = at + 1;
                }
            }
        }
        index = start + width;
    }
    if let Err(e) = frontier.check_extends_to(&cp) {
        let alert = Alert::log_health(
            Rule::LogFork,
            cp.size,
            now,
            base,
            format!("{base}: {e} (this monitor saw {old} entries)"),
        );
        return Ok(Err(Halt(alert)));
    }
    saved.frontier = frontier;
    saved.rules = monitor.state;
    saved.outbox.extend(alerts);
    save(&opts.state_dir, &saved)?;
    Ok(Ok(Stepped {
        observed: cp.size - old,
        size: cp.size,
        alerts: saved.outbox,
        unreadable,
    }))
}

/// The alerts of the last step were handed on: empty the outbox.
pub fn delivered(opts: &MonitorOptions) -> Result<(), LogToolError> {
    let mut saved = load(&opts.state_dir)?;
    if saved.outbox.is_empty() {
        return Ok(());
    }
    saved.outbox.clear();
    save(&opts.state_dir, &saved)
}

/// [`step`] over HTTP with the log tools' timeouts.
pub fn step_http(opts: &MonitorOptions, now: i64) -> Result<Result<Stepped, Halt>, LogToolError> {
    step(&crate::witness::tool_transport(), opts, now)
}

/// Where alerts are delivered besides stdout: an HTTP endpoint, each alert
/// POSTed as JSON and signed with HMAC-SHA256 over the body.
#[derive(Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// The `X-Custody-Signature` of `body`: `sha256=<hex HMAC-SHA256>`.
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// POST each alert to `hook` (headers `X-Custody-Signature` and
/// `X-Custody-Alert-Id`; the receiver de-duplicates by id). Stops at the
/// first alert that is not accepted with a 2xx answer: the caller keeps
/// the outbox and tries again later, so delivery is at least once.
pub fn deliver(hook: &Webhook, alerts: &[Alert]) -> Result<(), String> {
    let t = crate::witness::tool_transport();
    for a in alerts {
        let body = serde_json::to_vec(a).map_err(|e| e.to_string())?;
        let signature = webhook_signature(&hook.secret, &body);
        let headers = [
            ("x-custody-signature", signature.as_str()),
            ("x-custody-alert-id", a.id.as_str()),
        ];
        match t.post_json_with(&hook.url, &body, &headers, 64 * 1024) {
            Ok((status, _)) if (200..300).contains(&status) => {}
            Ok((status, answer)) => {
                return Err(format!(
                    "webhook {} answered {status} for alert {}: {}",
                    hook.url,
                    a.id,
                    String::from_utf8_lossy(answer.get(..200).unwrap_or(&answer))
                ))
            }
            Err(e) => return Err(format!("webhook {}: {e}", hook.url)),
        }
    }
    Ok(())
}
