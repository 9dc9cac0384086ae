//! `custody fleet device ID`: each install report's transparency-log
//! entry, proved. For every report the server recorded a log index for,
//! the entry is fetched with its inclusion proof (`GET /log/v1/entry`) and
//! checked as a device checks a publish (custody-client's
//! `check_entry_evidence`: log signature, witness quorum, inclusion); the
//! entry must be this device's `install_report` of that target and
//! outcome, and its embedded manifest must carry the device's signature
//! (custody-director's `check_logged_install_report`, the auditor's rule).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use custody_client::log::{check_entry_evidence, trust_from_keys, LogTrust};
use custody_log::entry::LogEntry;
use custody_log::wire::{EntryEvidence, MAX_EVIDENCE_BYTES};
use serde_json::{json, Value};

use crate::api_client::Api;
use crate::audit::LogTrustArgs;

/// Largest key answer or key file read.
const MAX_KEY_BYTES: u64 = 4096;

#[derive(Args, Debug, Clone, Default)]
pub struct ProofArgs {
    #[command(flatten)]
    pub trust: LogTrustArgs,
    /// Do not fetch and check the log entries of the reports.
    #[arg(long)]
    pub no_proofs: bool,
}

/// A vkey given as a string or as the path of a file holding one.
fn key_text(given: &str) -> Result<String> {
    let p = Path::new(given);
    if p.is_file() {
        let bytes = custody_fs::read_bounded(p, MAX_KEY_BYTES)?
            .ok_or_else(|| anyhow!("{}: no such file", p.display()))?;
        return Ok(String::from_utf8_lossy(&bytes).trim().to_owned());
    }
    Ok(given.trim().to_owned())
}

/// The log trust to check against, and whether the log key was given
/// (pinned) rather than taken from the server.
fn trust(api: &Api, args: &LogTrustArgs) -> Result<(LogTrust, bool)> {
    let (key, pinned) = match &args.log_key {
        Some(k) => (key_text(k).context("--log-key")?, true),
        None => {
            let url = api.url(&["log", "v1", "key"]);
            let bytes = api.get_bytes(&url, MAX_KEY_BYTES)?;
            (String::from_utf8_lossy(&bytes).trim().to_owned(), false)
        }
    };
    let witnesses = (args.witnesses.iter())
        .map(|w| key_text(w).context("--witness"))
        .collect::<Result<Vec<_>>>()?;
    let k = args.witness_threshold.unwrap_or(witnesses.len());
    let trust = trust_from_keys(None, &key, &witnesses, k).map_err(|e| anyhow!(e))?;
    Ok((trust, pinned))
}

/// One report's proof, as `--json` shows it (`verified`, or `error`).
fn prove(api: &Api, trust: &LogTrust, device: &str, report: &Value, index: u64) -> Value {
    match prove_inner(api, trust, device, report, index) {
        Ok((size, cosigned, manifest)) => json!({
            "log_index": index,
            "verified": true,
            "checkpoint_size": size,
            "cosignatures": cosigned,
            "manifest": manifest,
        }),
        Err(e) => json!({"log_index": index, "verified": false, "error": format!("{e:#}")}),
    }
}

fn prove_inner(
    api: &Api,
    trust: &LogTrust,
    device: &str,
    report: &Value,
    index: u64,
) -> Result<(u64, usize, &'static str)> {
    let mut url = api.url(&["log", "v1", "entry"]);
    url.query_pairs_mut()
        .append_pair("index", &index.to_string());
    let bytes = api.get_bytes(&url, MAX_EVIDENCE_BYTES as u64)?;
    let ev = EntryEvidence::parse_for(&bytes, index)?;
    let (accepted, entry) = check_entry_evidence(trust, None, &ev)?;
    let entry = LogEntry::from_bytes(&entry)
        .map_err(|e| anyhow!("log entry {index} does not parse: {e}"))?;
    let (target, outcome) = (report["target"].as_str(), report["outcome"].as_str());
    entry
        .check_is_report_of(device, target.unwrap_or(""), outcome.unwrap_or(""))
        .map_err(|e| anyhow!("log entry {index} is not this report: {e}"))?;
    let manifest = crate::audit::install_report(&entry)
        .map_err(|e| anyhow!("log entry {index}: {e}"))?
        .map_or("none", |c| c.name());
    let vc = &accepted.checkpoint;
    Ok((vc.checkpoint.size, vc.cosignatures.len(), manifest))
}

/// Proves every report of `detail` (a device detail answer) that carries a
/// log index, adding `proof` to each and `log_key_pinned` to the detail.
/// Returns how many proofs failed.
pub(super) fn prove_reports(api: &Api, args: &ProofArgs, detail: &mut Value) -> Result<usize> {
    let device = detail["id"].as_str().unwrap_or_default().to_owned();
    let Some(reports) = detail["reports"].as_array_mut() else {
        return Ok(0);
    };
    if args.no_proofs || reports.iter().all(|r| r["log_index"].as_u64().is_none()) {
        return Ok(0);
    }
    let (trust, pinned) = trust(api, &args.trust)?;
    let mut failed = 0;
    for r in reports.iter_mut() {
        if let Some(index) = r["log_index"].as_u64() {
            let proof = prove(api, &trust, &device, r, index);
            failed += usize::from(proof["verified"] != true);
            r["proof"] = proof;
        }
    }
    detail["log_key_pinned"] = json!(pinned);
    Ok(failed)
}

/// The report table's LOG cell.
pub(super) fn cell(r: &Value) -> String {
    let p = &r["proof"];
    match (r["log_index"].as_u64(), p["verified"].as_bool()) {
        (None, _) => "-".into(),
        (Some(i), None) => format!("#{i}"),
        (Some(i), Some(true)) => format!(
            "#{i} ✓ in checkpoint {} ({} cosig.; manifest {})",
            p["checkpoint_size"],
            p["cosignatures"],
            p["manifest"].as_str().unwrap_or("?")
        ),
        (Some(i), Some(false)) => format!("#{i} ✗ {}", p["error"].as_str().unwrap_or("?")),
    }
}
