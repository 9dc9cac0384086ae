//! A transparency-log auditor (the IO of `custody audit`): fetch a log's
//! checkpoint, every entry bundle and every tile, and feed them to
//! custody-log's sans-IO replay ([`custody_log::audit::Replay`]): bundles
//! against their level-0 tiles, the recomputed root against the signed
//! checkpoint, higher tiles against the entries, the cosigned checkpoint
//! against the auditor's witness policy and the replayed tree (the fork
//! check). Every entry is parsed once and given to the caller's inner
//! check (custody's binary passes custody-director's
//! `check_logged_install_report`).

use custody_log::audit::{AuditProblem, Replay, ReplayedLog};
use custody_log::entry::LogEntry;
use custody_log::wire::MAX_CHECKPOINT_BYTES;
use custody_log::{LogVerifier, VerifierKey, WitnessPolicy};

use crate::logtool::{
    get, get_required, log_url, resolve_log_key, MAX_BUNDLE_BYTES, MAX_TILE_BYTES,
};
pub use crate::logtool::{parse_vkey_arg, LogToolError};
use crate::transport::Transport;

/// What to audit.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// Base URL of the custody server (the log is under `/log/v1`).
    pub log: String,
    /// The log's verifier key (vkey string or file); `None`: the key the
    /// log serves, which only proves self-consistency.
    pub log_key: Option<String>,
    /// Trusted witness keys (cosignature/v1 vkey strings or files).
    pub witnesses: Vec<String>,
    /// Cosignatures required among them (`None`: all of them).
    pub witness_threshold: Option<usize>,
}

/// A replayed log.
#[derive(Debug)]
pub struct AuditedLog {
    /// the tree, the entry bytes, the problems found
    pub log: ReplayedLog,
    /// each entry parsed once (`None`: did not parse, listed as a problem)
    pub entries: Vec<Option<LogEntry>>,
    /// the witnesses whose cosignatures counted
    pub cosigners: Vec<String>,
    /// whether the log key was given (not taken from the log)
    pub key_pinned: bool,
}

/// Replay the log over HTTP(S) with the tools' time budgets.
pub fn replay(
    opts: &AuditOptions,
    inner: impl FnMut(&LogEntry) -> Result<(), String>,
) -> Result<AuditedLog, LogToolError> {
    replay_with(&crate::witness::tool_transport(), opts, inner)
}

/// Replay the log through `t`. `inner` is the check of each parsed entry
/// (its error is a problem of that entry). Errors are failures of the
/// audit itself (unreachable log, a checkpoint that does not verify with
/// the log key, unusable witness keys); inconsistencies of the log are
/// problems in the result.
pub fn replay_with<T: Transport + ?Sized>(
    t: &T,
    opts: &AuditOptions,
    inner: impl FnMut(&LogEntry) -> Result<(), String>,
) -> Result<AuditedLog, LogToolError> {
    let base = opts.log.trim_end_matches('/');
    let (key, _) = resolve_log_key(t, base, opts.log_key.as_deref(), None)?;
    let verifier = LogVerifier::new(key.name(), key.clone()).map_err(|e| LogToolError::Key {
        what: "log key".into(),
        reason: e.to_string(),
    })?;
    let cp_bytes = get_required(
        t,
        &log_url(base, "checkpoint")?,
        MAX_CHECKPOINT_BYTES as u64,
    )?;
    let vc = verifier
        .verify(&cp_bytes)
        .map_err(|e| LogToolError::Checkpoint {
            what: format!("checkpoint at {base}/log/v1/checkpoint"),
            reason: e.to_string(),
        })?;

    // Entries, bundle by bundle, each checked against its level-0 tile.
    let mut replay = Replay::new(vc.checkpoint);
    for b in replay.bundles() {
        let bundle = get(t, &log_url(base, &b.path())?, MAX_BUNDLE_BYTES)?;
        let tile = get(t, &log_url(base, &b.tile().path())?, MAX_TILE_BYTES)?;
        replay.add_bundle(b, bundle.as_deref(), tile.as_deref());
    }
    let mut log = replay.finish()?;
    // Higher tiles must be what the entries imply.
    for tile in log.tiles_to_check() {
        let served = get(t, &log_url(base, &tile.path())?, MAX_TILE_BYTES)?;
        log.check_tile(tile, served.as_deref())?;
    }

    // Witnesses: the newest cosigned checkpoint meets the policy and is a
    // tree the replayed log had.
    let mut cosigners = Vec::new();
    if !opts.witnesses.is_empty() {
        let keys: Vec<VerifierKey> = opts
            .witnesses
            .iter()
            .map(|w| parse_vkey_arg(w, "witness key"))
            .collect::<Result<_, _>>()?;
        let k = opts.witness_threshold.unwrap_or(keys.len());
        let policy = WitnessPolicy::new(keys, k).map_err(|e| LogToolError::Key {
            what: "witness policy".into(),
            reason: e.to_string(),
        })?;
        let with = verifier.with_witness_policy(policy);
        let cosigned = get(
            t,
            &log_url(base, "checkpoint/cosigned")?,
            MAX_CHECKPOINT_BYTES as u64,
        )?
        .unwrap_or_else(|| cp_bytes.clone());
        match with.verify(&cosigned) {
            Ok(v) => {
                cosigners = v.cosignatures.iter().map(|s| s.name.clone()).collect();
                log.check_cosigned(&v.checkpoint);
            }
            Err(e) => log.push_problem(AuditProblem::Cosignatures(e.to_string())),
        }
    }

    let entries = log.parse_entries(inner);
    Ok(AuditedLog {
        log,
        entries,
        cosigners,
        key_pinned: opts.log_key.is_some(),
    })
}
