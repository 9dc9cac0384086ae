//! `custody witness`: an independent process that watches a custody log,
//! checks that each new checkpoint extends the last one it cosigned
//! (consistency proof), cosigns it (C2SP tlog-cosignature) and posts the
//! cosignature back to the log. On a fork, a rollback or an unproven
//! extension it refuses, keeps its state, and raises an alarm: a line on
//! stderr starting with `ALARM`, a JSON event with `--json`, the evidence
//! saved in the state directory and exit code 2.
//!
//! The loop is custody-client's [`custody_client::witness`] (the rules are
//! custody-log's); this module parses arguments and prints.
//!
//! State directory: `checkpoint` (the last cosigned checkpoint note),
//! `log.vkey` (the log key, pinned on first use unless `--log-key` is
//! given), `alarm-<unix time>.txt` (evidence).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use custody_client::witness::{LogWitness, Progress, WitnessEvent, WitnessOptions};
use custody_log::Cosigner;
use serde_json::json;

/// Exit code of a witness or auditor that detected an attack.
pub const EXIT_ALARM: u8 = 2;

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// Base URL of the custody server (the log is under /log/v1).
    #[arg(long, value_name = "URL", required_unless_present = "new_key")]
    pub log: Option<String>,
    /// The witness's private key (note format: PRIVATE+KEY+name+hash+base64).
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// Where the witness keeps the last checkpoint it cosigned.
    #[arg(long, value_name = "DIR", required_unless_present = "new_key")]
    pub state: Option<PathBuf>,
    /// Check and cosign once, then exit.
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Seconds between checks (default 60).
    #[arg(long, value_name = "S")]
    pub interval: Option<u64>,
    /// The log's verifier key (vkey string or a file holding it). Without
    /// it the key served at /log/v1/key is pinned on first use.
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
    /// One JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
    /// Create KEYFILE with a new witness key named NAME, print its verifier
    /// key and exit.
    #[arg(long, value_name = "NAME")]
    pub new_key: Option<String>,
}

pub fn run(args: WitnessArgs) -> Result<ExitCode> {
    if let Some(name) = &args.new_key {
        if args.key.exists() {
            bail!(
                "{} exists; refusing to overwrite a witness key",
                args.key.display()
            );
        }
        let c = Cosigner::generate(name).map_err(|e| anyhow!("witness key {name:?}: {e}"))?;
        write_private(&args.key, &c.to_private_key())?;
        println!("{}", c.verifier_key().to_vkey());
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(log), Some(state)) = (args.log, args.state) else {
        bail!("--log and --state are required");
    };
    let skey = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading witness key {}", args.key.display()))?;
    let cosigner = Cosigner::parse_private_key(skey.trim())
        .map_err(|e| anyhow!("witness key {}: {e}", args.key.display()))?;
    let witness = LogWitness::open(
        WitnessOptions {
            log,
            state,
            log_key: args.log_key,
        },
        cosigner,
    )?;
    if let Some(key) = witness.pinned_on_first_use() {
        eprintln!(
            "witness: pinned the log key {} (trust on first use; pass --log-key to pin it yourself)",
            key.to_vkey()
        );
    }
    let interval = Duration::from_secs(args.interval.unwrap_or(60).max(1));
    let json_out = args.json;
    let alarm = witness.run(interval, args.once, |p| match p {
        Progress::Event(WitnessEvent::Unchanged { size }) => {
            if json_out {
                println!("{}", json!({"event": "unchanged", "size": size}));
            }
        }
        Progress::Event(WitnessEvent::Cosigned { size, update, from }) => {
            if json_out {
                println!(
                    "{}",
                    json!({"event": "cosigned", "size": size, "update": update, "from": from})
                );
            } else {
                eprintln!("witness: cosigned size {size} ({update})");
            }
        }
        Progress::Failed(e) => eprintln!("witness: {e}"),
    })?;
    let Some(a) = alarm else {
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "ALARM: witness refuses to cosign: {} ({})",
        a.error,
        a.evidence_note()
    );
    if json_out {
        println!(
            "{}",
            json!({"event": "alarm", "kind": a.kind, "message": a.error.to_string(),
                   "evidence": a.evidence.display().to_string()})
        );
    }
    Ok(ExitCode::from(EXIT_ALARM))
}

/// A new 0600 file that must not exist yet, written crash-safely (temp
/// file, fsync, no-clobber move into place, directory fsync).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let opts = custody_fs::WriteOptions {
        mode: Some(0o600),
        create_new: true,
    };
    custody_fs::write_atomic_with(path, format!("{text}\n").as_bytes(), opts)
        .with_context(|| format!("creating {}", path.display()))
}
