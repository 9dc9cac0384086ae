//! `custody audit`: replay a custody transparency log from its tiles.
//!
//! - `verify`: fetch every entry bundle and tile, check each bundle against
//!   its level-0 tile, recompute the whole tree and compare with the signed
//!   checkpoint (and every higher tile), check the checkpoint signature and
//!   the cosignatures against the configured witness keys, parse every
//!   entry and check the inner signatures entries carry (device-signed
//!   install manifests). Any inconsistency is listed; exit code 2.
//! - `who-has TARGET`: deliveries and install reports of TARGET, each with
//!   an inclusion proof against the verified checkpoint.
//! - `device ID`: every entry about device ID (deliveries, install
//!   reports, decommission, admin actions on it), with inclusion proofs.
//!
//! `--json` prints one JSON document.
//!
//! The fetching is custody-client's [`custody_client::audit`], the replay
//! and fork check custody-log's [`custody_log::audit`], the install-report
//! check custody-director's [`custody_director::check_logged_install_report`];
//! this module parses arguments and prints.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use custody_client::audit::{AuditOptions, AuditedLog};
use custody_director::{check_logged_install_report, LoggedInstallReport, LoggedReportCheck};
use custody_log::entry::{EntryBody, LogEntry};
use serde_json::{json, Value};

use crate::witness::EXIT_ALARM;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Fetch every tile, recompute the tree, check every signature.
    Verify(Common),
    /// Devices that received or installed TARGET, when, with inclusion proofs.
    WhoHas {
        /// Target name (as published).
        target: String,
        #[command(flatten)]
        common: Common,
    },
    /// Everything the log holds about one device, with inclusion proofs.
    Device {
        /// Device id.
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub struct Common {
    /// Base URL of the custody server (the log is under /log/v1).
    #[arg(long, value_name = "URL")]
    pub log: String,
    #[command(flatten)]
    pub trust: LogTrustArgs,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Which log to trust: its key and the witnesses whose cosignatures count
/// (`custody audit`, `custody fleet device`).
#[derive(Args, Debug, Clone, Default)]
pub struct LogTrustArgs {
    /// The log's verifier key (vkey string or file; env CUSTODY_LOG_KEY).
    /// Without it the key served by the log is used, which only proves
    /// self-consistency.
    #[arg(long, env = "CUSTODY_LOG_KEY", value_name = "VKEY")]
    pub log_key: Option<String>,
    /// A trusted witness key (cosignature/v1 vkey string or file); repeat.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// Cosignatures required among --witness keys (default: all of them).
    #[arg(long, value_name = "K")]
    pub witness_threshold: Option<usize>,
}

struct Replayed {
    audited: AuditedLog,
    /// install reports by what the auditor could check (`verified`,
    /// `digest_only`, `no_device_key`, `bad`)
    reports: BTreeMap<&'static str, u64>,
}

fn replay(c: &Common) -> Result<Replayed> {
    let opts = AuditOptions {
        log: c.log.clone(),
        log_key: c.trust.log_key.clone(),
        witnesses: c.trust.witnesses.clone(),
        witness_threshold: c.trust.witness_threshold,
    };
    let mut reports = BTreeMap::<&'static str, u64>::new();
    let audited = custody_client::audit::replay(&opts, |entry| match install_report(entry) {
        Ok(Some(c)) => {
            *reports.entry(c.name()).or_default() += 1;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(why) => {
            *reports.entry("bad").or_default() += 1;
            Err(why)
        }
    })?;
    Ok(Replayed { audited, reports })
}

/// custody-director's check of an install report against the
/// device-signed manifest it carries; `Ok(None)`: not an install report.
pub(crate) fn install_report(
    entry: &LogEntry,
) -> std::result::Result<Option<LoggedReportCheck>, String> {
    let EntryBody::InstallReport {
        device_id,
        target,
        outcome,
        manifest_sha256,
        manifest,
        device_key,
    } = &entry.body
    else {
        return Ok(None);
    };
    check_logged_install_report(&LoggedInstallReport {
        device_id,
        target,
        outcome,
        manifest_sha256,
        manifest: manifest.as_deref(),
        device_key: device_key.as_ref(),
    })
    .map(Some)
    .map_err(|e| e.to_string())
}

fn proof_json(r: &Replayed, index: u64) -> Result<Value> {
    let log = &r.audited.log;
    let proof = log.inclusion(index)?;
    Ok(json!({
        "index": index,
        "size": log.size(),
        "root": B64.encode(log.root()),
        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    }))
}

fn entry_json(r: &Replayed, index: u64, e: &LogEntry) -> Result<Value> {
    let mut v = serde_json::to_value(e).map_err(|e| anyhow!("{e}"))?;
    if let Some(o) = v.as_object_mut() {
        // The manifest bytes are long; the auditor gets them from the bundle.
        o.remove("manifest");
        match install_report(e) {
            Ok(Some(c)) => {
                o.insert("manifest_check".into(), json!(c.name()));
            }
            Ok(None) => {}
            Err(why) => {
                o.insert("manifest_check".into(), json!("bad"));
                o.insert("manifest_problem".into(), json!(why));
            }
        }
        o.insert("index".into(), json!(index));
        o.insert("inclusion".into(), proof_json(r, index)?);
    }
    Ok(v)
}

fn finish(json_out: bool, doc: Value, human: String, problems: &[String]) -> Result<ExitCode> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| anyhow!("{e}"))?
        );
    } else {
        print!("{human}");
        for p in problems {
            println!("PROBLEM: {p}");
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("ALARM: the log has {} inconsistencies", problems.len());
        Ok(ExitCode::from(EXIT_ALARM))
    }
}

impl Replayed {
    fn problems(&self) -> Vec<String> {
        self.audited
            .log
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
    fn size(&self) -> u64 {
        self.audited.log.size()
    }
    fn root(&self) -> String {
        B64.encode(self.audited.log.root())
    }
    fn parsed(&self) -> impl Iterator<Item = (u64, &LogEntry)> {
        self.audited
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i as u64, e.as_ref()?)))
    }
}

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify(c) => {
            let r = replay(&c)?;
            let problems = r.problems();
            let mut counts = BTreeMap::<String, u64>::new();
            for (_, entry) in r.parsed() {
                *counts.entry(entry.type_name().to_owned()).or_default() += 1;
            }
            let cosigners = &r.audited.cosigners;
            let key_pinned = r.audited.key_pinned;
            let doc = json!({
                "ok": problems.is_empty(),
                "size": r.size(),
                "root": r.root(),
                "log_key_pinned": key_pinned,
                "entries_by_type": counts,
                "install_reports": r.reports,
                "cosigned_by": cosigners,
                "problems": problems,
            });
            let mut human = format!(
                "log of size {} (root {}) replayed from its tiles: {} problems\n",
                r.size(),
                r.root(),
                problems.len()
            );
            for (t, n) in &counts {
                human.push_str(&format!("  {t}: {n}\n"));
            }
            if !r.reports.is_empty() {
                let parts: Vec<String> =
                    r.reports.iter().map(|(k, n)| format!("{k} {n}")).collect();
                human.push_str(&format!(
                    "  install report manifests: {}\n",
                    parts.join(", ")
                ));
            }
            if !cosigners.is_empty() {
                human.push_str(&format!("  cosigned by: {}\n", cosigners.join(", ")));
            }
            if !key_pinned {
                human.push_str("  note: no --log-key given; the log's own key was used\n");
            }
            finish(c.json, doc, human, &problems)
        }
        AuditCommand::WhoHas { target, common } => {
            let r = replay(&common)?;
            let problems = r.problems();
            let mut rows = Vec::new();
            // device id → what the log says it received and reported
            let mut devices = serde_json::Map::new();
            let mut human = String::new();
            for (index, entry) in r.parsed() {
                let relevant = matches!(
                    entry.body,
                    EntryBody::AssignmentDelivered { .. } | EntryBody::InstallReport { .. }
                );
                if !relevant || entry.target() != Some(target.as_str()) {
                    continue;
                }
                human.push_str(&format!(
                    "{} {} at {} (entry {index})\n",
                    entry.device_id().unwrap_or("-"),
                    describe(entry),
                    entry.time
                ));
                let dev = devices
                    .entry(entry.device_id().unwrap_or("-").to_owned())
                    .or_insert_with(|| json!({"received": [], "reports": []}));
                match &entry.body {
                    EntryBody::AssignmentDelivered { delivered_at, .. } => {
                        if let Some(a) = dev["received"].as_array_mut() {
                            a.push(json!({"at": delivered_at, "index": index}));
                        }
                    }
                    EntryBody::InstallReport { outcome, .. } => {
                        if let Some(a) = dev["reports"].as_array_mut() {
                            a.push(json!({"outcome": outcome, "at": entry.time, "index": index}));
                        }
                    }
                    _ => {}
                }
                rows.push(entry_json(&r, index, entry)?);
            }
            if rows.is_empty() {
                human.push_str(&format!("no device received or installed {target:?}\n"));
            }
            let doc = json!({"target": target, "size": r.size(), "root": r.root(),
                             "devices": devices, "entries": rows, "problems": problems});
            finish(common.json, doc, human, &problems)
        }
        AuditCommand::Device { id, common } => {
            let r = replay(&common)?;
            let problems = r.problems();
            let mut rows = Vec::new();
            let mut human = String::new();
            for (index, entry) in r.parsed() {
                if !about_device(entry, &id) {
                    continue;
                }
                human.push_str(&format!(
                    "{} {} {} (entry {index})\n",
                    entry.time,
                    describe(entry),
                    entry.target().filter(|t| *t != id).unwrap_or("")
                ));
                rows.push(entry_json(&r, index, entry)?);
            }
            if rows.is_empty() {
                human.push_str(&format!("the log has no entry about device {id:?}\n"));
            }
            let doc = json!({"device_id": id, "size": r.size(), "root": r.root(),
                             "entries": rows, "problems": problems});
            finish(common.json, doc, human, &problems)
        }
    }
}

/// Entries about device `id`: deliveries, install reports and its
/// decommission, plus the admin actions whose target is the device
/// (enrolment, suspend / resume, pins, bundle exports, refused requests,
/// re-attestation suspensions by the director).
fn about_device(e: &LogEntry, id: &str) -> bool {
    match &e.body {
        EntryBody::AdminAction {
            target: Some(t), ..
        } => t == id,
        _ => e.device_id() == Some(id),
    }
}

fn describe(e: &LogEntry) -> String {
    match &e.body {
        EntryBody::AssignmentDelivered { .. } => "received".into(),
        EntryBody::InstallReport { outcome, .. } => format!("reported {outcome}"),
        EntryBody::Decommission { reason, by, .. } => format!("decommissioned by {by}: {reason}"),
        EntryBody::AdminAction {
            identity,
            action,
            outcome,
            ..
        } => format!("{action} by {identity} ({outcome})"),
        _ => e.type_name().into(),
    }
}
