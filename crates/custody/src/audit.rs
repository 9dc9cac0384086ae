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

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use custody_log::entry::{EntryBody, LogEntry};
use custody_log::tile::{
    check_bundle_against_tile, new_bundles, new_tiles, parse_entry_bundle, read_tile,
};
use custody_log::{
    inclusion_proof, leaf_hash, root_at, verify_inclusion, Appender, Hash, LogVerifier,
    MemoryStore, VerifierKey, WitnessPolicy,
};
use serde_json::{json, Value};

use crate::witness::{agent, get, get_required, log_key, EXIT_ALARM};

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
    /// The log's verifier key (vkey string or file). Without it the key
    /// served by the log is used, which only proves self-consistency.
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
    /// A trusted witness key (cosignature/v1 vkey string or file); repeat.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// Cosignatures required among --witness keys (default: all of them).
    #[arg(long, value_name = "K")]
    pub witness_threshold: Option<usize>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

struct Replayed {
    size: u64,
    root: Hash,
    entries: Vec<Vec<u8>>,
    /// `entries` parsed once (`None`: does not parse, listed in `problems`)
    parsed: Vec<Option<LogEntry>>,
    store: MemoryStore,
    problems: Vec<String>,
    cosigners: Vec<String>,
    key_pinned: bool,
    /// install reports by what the auditor could check (`verified`,
    /// `digest_only`, `no_device_key`, `bad`)
    reports: std::collections::BTreeMap<&'static str, u64>,
}

fn parse_vkey(s: &str) -> Result<VerifierKey> {
    let text = if std::path::Path::new(s).is_file() {
        std::fs::read_to_string(s).with_context(|| format!("reading key file {s}"))?
    } else {
        s.to_owned()
    };
    VerifierKey::parse(text.trim()).with_context(|| format!("witness key {s:?}"))
}

fn replay(c: &Common) -> Result<Replayed> {
    let base = c.log.trim_end_matches('/');
    let agent = agent();
    let key = log_key(&agent, base, c.log_key.as_deref(), None)?;
    let verifier =
        LogVerifier::new(key.name(), key.clone()).map_err(|e| anyhow!("log key: {e}"))?;
    let mut problems = Vec::new();
    let cp_bytes = get_required(&agent, &format!("{base}/log/v1/checkpoint"))?;
    let vc = verifier
        .verify(&cp_bytes)
        .map_err(|e| anyhow!("checkpoint at {base}/log/v1/checkpoint: {e}"))?;
    let (size, root) = (vc.checkpoint.size, vc.checkpoint.root);

    // Entries, bundle by bundle, each checked against its level-0 tile.
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    for b in new_bundles(0, size) {
        let bpath = b.path();
        let bundle = get(&agent, &format!("{base}/log/v1/{bpath}"))?;
        let tile = get(&agent, &format!("{base}/log/v1/{}", b.tile().path()))?;
        let (Some(bundle), Some(tile)) = (bundle, tile) else {
            problems.push(format!("{bpath} or its level-0 tile is missing (HTTP 404)"));
            continue;
        };
        let parsed = match parse_entry_bundle(&bundle) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{bpath}: {e}"));
                continue;
            }
        };
        if let Err(e) = check_bundle_against_tile(&parsed, &tile) {
            problems.push(format!("{bpath} vs {}: {e}", b.tile().path()));
        }
        for e in parsed {
            leaves.push(leaf_hash(e));
            entries.push(e.to_vec());
        }
    }
    let mut app = Appender::open(MemoryStore::new()).map_err(|e| anyhow!("{e}"))?;
    app.append_leaf_hashes(&leaves)
        .map_err(|e| anyhow!("rebuilding the tree: {e}"))?;
    if leaves.len() as u64 != size {
        problems.push(format!(
            "bundles hold {} entries, the checkpoint says {size}",
            leaves.len()
        ));
    } else if app.root() != root {
        problems.push(format!(
            "recomputed root {} differs from the signed checkpoint root {} at size {size}",
            hex::encode(app.root()),
            hex::encode(root)
        ));
    }
    let store = app.into_store();
    // Higher tiles must be what the entries imply.
    if leaves.len() as u64 == size {
        for t in new_tiles(0, size).into_iter().filter(|t| t.level > 0) {
            let want = read_tile(&store, t).map_err(|e| anyhow!("{e}"))?;
            match get(&agent, &format!("{base}/log/v1/{}", t.path()))? {
                Some(got) if got == want => {}
                Some(_) => problems.push(format!(
                    "{}: differs from the hashes the entries imply",
                    t.path()
                )),
                None => problems.push(format!("{}: missing (HTTP 404)", t.path())),
            }
        }
    }

    // Witnesses.
    let mut cosigners = Vec::new();
    if !c.witnesses.is_empty() {
        let keys: Vec<VerifierKey> = c
            .witnesses
            .iter()
            .map(|w| parse_vkey(w))
            .collect::<Result<_>>()?;
        let k = c.witness_threshold.unwrap_or(keys.len());
        let policy = WitnessPolicy::new(keys, k).map_err(|e| anyhow!("{e}"))?;
        let with = verifier.clone().with_witness_policy(policy);
        let cosigned = match get(&agent, &format!("{base}/log/v1/checkpoint/cosigned"))? {
            Some(b) => b,
            None => cp_bytes.clone(),
        };
        match with.verify(&cosigned) {
            Ok(v) => {
                cosigners = v.cosignatures.iter().map(|s| s.name.clone()).collect();
                let s = v.checkpoint.size;
                if s > size {
                    problems.push(format!(
                        "cosigned checkpoint size {s} is beyond the latest checkpoint size {size}"
                    ));
                } else if leaves.len() as u64 == size {
                    match root_at(&store, s) {
                        Ok(r) if r == v.checkpoint.root => {}
                        _ => problems.push(format!(
                            "cosigned checkpoint of size {s} has a root the replayed tree never had (fork)"
                        )),
                    }
                }
            }
            Err(e) => problems.push(format!("witness cosignatures: {e}")),
        }
    }

    // Entries and their inner signatures.
    let mut reports = std::collections::BTreeMap::<&'static str, u64>::new();
    let mut parsed = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let entry = match LogEntry::from_bytes(e) {
            Ok(entry) => entry,
            Err(why) => {
                problems.push(format!("entry {i}: {why}"));
                parsed.push(None);
                continue;
            }
        };
        match check_inner_signatures(&entry) {
            Ok(Some(c)) => *reports.entry(c.name()).or_default() += 1,
            Ok(None) => {}
            Err(why) => {
                *reports.entry("bad").or_default() += 1;
                problems.push(format!("entry {i}: {why}"));
            }
        }
        parsed.push(Some(entry));
    }
    Ok(Replayed {
        size,
        root,
        entries,
        parsed,
        store,
        problems,
        cosigners,
        key_pinned: c.log_key.is_some(),
        reports,
    })
}

/// What the auditor could establish about one install report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportCheck {
    /// manifest embedded, device key present, every check passed
    Verified,
    /// only the manifest digest (the manifest was too large to embed)
    DigestOnly,
    /// manifest embedded but no device key: the signature cannot be checked
    NoKey,
}

impl ReportCheck {
    fn name(self) -> &'static str {
        match self {
            ReportCheck::Verified => "verified",
            ReportCheck::DigestOnly => "digest_only",
            ReportCheck::NoKey => "no_device_key",
        }
    }
}

/// Install reports carry the device-signed manifest and the device key.
/// Checked: the manifest bytes hash to `manifest_sha256`; the key's TUF id
/// is the device id; the bytes are a custody device manifest
/// (custody-director's strict parser) of that device; the device key's
/// signature verifies over its canonical `signed` part (custody-director's
/// `verify_manifest_signature`, the check-in rule); and the manifest
/// itself carries an install report of the entry's target with the
/// entry's outcome (so the server cannot attach a genuine manifest to a
/// claim the device never made). `Ok(None)`: not an install report.
fn check_inner_signatures(entry: &LogEntry) -> std::result::Result<Option<ReportCheck>, String> {
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
    let Some(m) = manifest else {
        return Ok(Some(ReportCheck::DigestOnly));
    };
    let bytes = B64
        .decode(m)
        .map_err(|e| format!("install report: manifest is not base64: {e}"))?;
    let digest = custody_tuf::crypto::sha256_hex(&bytes);
    if &digest != manifest_sha256 {
        return Err(format!(
            "install report: manifest sha256 is {digest}, the entry says {manifest_sha256}"
        ));
    }
    let Some(k) = device_key else {
        return Ok(Some(ReportCheck::NoKey));
    };
    let key: custody_tuf::schema::Key = serde_json::from_value(k.clone())
        .map_err(|e| format!("install report: device_key: {e}"))?;
    let keyid = custody_director::keys::device_id_for_key(&key)
        .map_err(|e| format!("install report: device_key: {e}"))?;
    if &keyid != device_id {
        return Err(format!(
            "install report: device_key has key id {keyid}, the device id is {device_id}"
        ));
    }
    let sm = custody_director::wire::SignedManifest::from_bytes(&bytes).map_err(|e| {
        format!("install report of device {device_id}: the manifest is not a custody device manifest: {e}")
    })?;
    if &sm.signed.device_id != device_id {
        return Err(format!(
            "install report: the manifest is device {}'s, the entry says device {device_id}",
            sm.signed.device_id
        ));
    }
    custody_director::verify_manifest_signature(&sm, device_id, &key)
        .map_err(|e| format!("install report: {e}"))?;
    if !sm
        .signed
        .install_reports
        .iter()
        .any(|r| &r.target == target && &r.outcome == outcome)
    {
        return Err(format!(
            "install report: the entry says device {device_id} reported {outcome:?} for {target:?}, \
             but the device-signed manifest (report counter {}) carries no such report",
            sm.signed.report_counter
        ));
    }
    Ok(Some(ReportCheck::Verified))
}

fn proof_json(r: &Replayed, index: u64) -> Result<Value> {
    let proof = inclusion_proof(&r.store, index, r.size).map_err(|e| anyhow!("{e}"))?;
    let entry = r
        .entries
        .get(usize::try_from(index).unwrap_or(usize::MAX))
        .ok_or_else(|| anyhow!("entry {index} missing"))?;
    verify_inclusion(&leaf_hash(entry), index, r.size, &proof, &r.root)
        .map_err(|e| anyhow!("inclusion proof of entry {index}: {e}"))?;
    Ok(json!({
        "index": index,
        "size": r.size,
        "root": B64.encode(r.root),
        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    }))
}

fn entry_json(r: &Replayed, index: u64, e: &LogEntry) -> Result<Value> {
    let mut v = serde_json::to_value(e).map_err(|e| anyhow!("{e}"))?;
    if let Some(o) = v.as_object_mut() {
        // The manifest bytes are long; the auditor gets them from the bundle.
        o.remove("manifest");
        match check_inner_signatures(e) {
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

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify(c) => {
            let r = replay(&c)?;
            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            for e in &r.entries {
                if let Ok(entry) = LogEntry::from_bytes(e) {
                    *counts.entry(entry.type_name().to_owned()).or_default() += 1;
                }
            }
            let doc = json!({
                "ok": r.problems.is_empty(),
                "size": r.size,
                "root": B64.encode(r.root),
                "log_key_pinned": r.key_pinned,
                "entries_by_type": counts,
                "install_reports": r.reports,
                "cosigned_by": r.cosigners,
                "problems": r.problems,
            });
            let mut human = format!(
                "log of size {} (root {}) replayed from its tiles: {} problems\n",
                r.size,
                B64.encode(r.root),
                r.problems.len()
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
            if !r.cosigners.is_empty() {
                human.push_str(&format!("  cosigned by: {}\n", r.cosigners.join(", ")));
            }
            if !r.key_pinned {
                human.push_str("  note: no --log-key given; the log's own key was used\n");
            }
            finish(c.json, doc, human, &r.problems)
        }
        AuditCommand::WhoHas { target, common } => {
            let r = replay(&common)?;
            let mut rows = Vec::new();
            // device id → what the log says it received and reported
            let mut devices = serde_json::Map::new();
            let mut human = String::new();
            for (i, entry) in r.parsed.iter().enumerate() {
                let Some(entry) = entry else { continue };
                let relevant = matches!(
                    entry.body,
                    EntryBody::AssignmentDelivered { .. } | EntryBody::InstallReport { .. }
                );
                if !relevant || entry.target() != Some(target.as_str()) {
                    continue;
                }
                let index = i as u64;
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
            let doc = json!({"target": target, "size": r.size, "root": B64.encode(r.root),
                             "devices": devices, "entries": rows, "problems": r.problems});
            finish(common.json, doc, human, &r.problems)
        }
        AuditCommand::Device { id, common } => {
            let r = replay(&common)?;
            let mut rows = Vec::new();
            let mut human = String::new();
            for (i, entry) in r.parsed.iter().enumerate() {
                let Some(entry) = entry else { continue };
                if !about_device(entry, &id) {
                    continue;
                }
                let index = i as u64;
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
            let doc = json!({"device_id": id, "size": r.size, "root": B64.encode(r.root),
                             "entries": rows, "problems": r.problems});
            finish(common.json, doc, human, &r.problems)
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
