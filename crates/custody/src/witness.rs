//! `custody witness`: an independent process that watches a custody log,
//! checks that each new checkpoint extends the last one it cosigned
//! (consistency proof), cosigns it (C2SP tlog-cosignature) and posts the
//! cosignature back to the log. On a fork, a rollback or an unproven
//! extension it refuses, keeps its state, and raises an alarm: a line on
//! stderr starting with `ALARM`, a JSON event with `--json`, the evidence
//! saved in the state directory and exit code 2.
//!
//! State directory: `checkpoint` (the last cosigned checkpoint note),
//! `log.vkey` (the log key, pinned on first use unless `--log-key` is
//! given), `alarm-<unix time>.txt` (evidence).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use custody_log::client::decode_proof_hashes;
use custody_log::{
    Checkpoint, Cosigner, Hash, LogVerifier, Update, VerifierKey, Witness, WitnessError,
};
use serde_json::json;

/// Exit code of a witness or auditor that detected an attack.
pub const EXIT_ALARM: u8 = 2;

/// Largest response the witness or auditor reads (a tile is 8 KiB, a bundle
/// at most 256 x 64 KiB).
const MAX_BODY: u64 = 17 * 1024 * 1024;

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

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// GET `url`; the body of a 200, `None` for 404, an error otherwise.
pub(crate) fn get(agent: &ureq::Agent, url: &str) -> Result<Option<Vec<u8>>> {
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .with_context(|| format!("GET {url}: reading the body"))?;
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        s => bail!(
            "GET {url}: HTTP {s}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ),
    }
}

pub(crate) fn get_required(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>> {
    get(agent, url)?.ok_or_else(|| anyhow!("GET {url}: HTTP 404"))
}

pub(crate) fn decode_proof(v: &serde_json::Value, what: &str) -> Result<Vec<Hash>> {
    let arr = v
        .get("proof")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| anyhow!("{what}: field proof (array of base64 hashes) missing"))?;
    let strs = arr
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.as_str()
                .ok_or_else(|| anyhow!("{what}: proof[{i}] is not a string (base64 hash)"))
        })
        .collect::<Result<Vec<&str>>>()?;
    Ok(decode_proof_hashes(&format!("{what}: proof"), &strs)?)
}

/// The log key: `--log-key` (string or file), else the state's pinned
/// copy, else fetched and pinned (trust on first use).
pub(crate) fn log_key(
    agent: &ureq::Agent,
    base: &str,
    given: Option<&str>,
    pin: Option<&Path>,
) -> Result<VerifierKey> {
    if let Some(g) = given {
        let text = if Path::new(g).is_file() {
            std::fs::read_to_string(g).with_context(|| format!("reading log key file {g}"))?
        } else {
            g.to_owned()
        };
        return VerifierKey::parse(text.trim()).with_context(|| format!("--log-key {g:?}"));
    }
    if let Some(p) = pin {
        if let Ok(text) = std::fs::read_to_string(p) {
            return VerifierKey::parse(text.trim())
                .with_context(|| format!("pinned log key {}", p.display()));
        }
    }
    let text = get_required(agent, &format!("{base}/log/v1/key"))?;
    let key = VerifierKey::parse(String::from_utf8_lossy(&text).trim())
        .context("the key served at /log/v1/key")?;
    if let Some(p) = pin {
        write_atomic(p, format!("{}\n", key.to_vkey()).as_bytes())?;
        eprintln!(
            "witness: pinned the log key {} (trust on first use; pass --log-key to pin it yourself)",
            key.to_vkey()
        );
    }
    Ok(key)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    custody_client::store::write_atomic(path, data)
        .with_context(|| format!("writing {}", path.display()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    let (Some(log), Some(state)) = (args.log.as_deref(), args.state.as_deref()) else {
        bail!("--log and --state are required");
    };
    let base = log.trim_end_matches('/');
    let skey = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading witness key {}", args.key.display()))?;
    let cosigner = Cosigner::parse_private_key(skey.trim())
        .map_err(|e| anyhow!("witness key {}: {e}", args.key.display()))?;
    std::fs::create_dir_all(state)
        .with_context(|| format!("creating state directory {}", state.display()))?;
    let agent = agent();
    let key = log_key(
        &agent,
        base,
        args.log_key.as_deref(),
        Some(&state.join("log.vkey")),
    )?;
    let verifier =
        LogVerifier::new(key.name(), key.clone()).map_err(|e| anyhow!("log key: {e}"))?;
    let witness = Witness::new(cosigner);
    let interval = Duration::from_secs(args.interval.unwrap_or(60).max(1));
    loop {
        match step(&agent, base, state, &verifier, &witness, args.json) {
            Ok(()) => {}
            Err(Step::Alarm) => return Ok(ExitCode::from(EXIT_ALARM)),
            Err(Step::Failed(e)) => {
                if args.once {
                    return Err(e);
                }
                eprintln!("witness: {e:#}");
            }
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{text}").with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))
}

enum Step {
    Alarm,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Step {
    fn from(e: anyhow::Error) -> Self {
        Step::Failed(e)
    }
}

fn step(
    agent: &ureq::Agent,
    base: &str,
    state: &Path,
    verifier: &LogVerifier,
    witness: &Witness,
    json_out: bool,
) -> std::result::Result<(), Step> {
    let signed = get_required(agent, &format!("{base}/log/v1/checkpoint"))?;
    let last_path = state.join("checkpoint");
    let last_note = std::fs::read(&last_path).ok();
    let last: Option<Checkpoint> = match &last_note {
        Some(b) => Some(
            verifier
                .verify(b)
                .map_err(|e| anyhow!("stored checkpoint {}: {e}", last_path.display()))?
                .checkpoint,
        ),
        None => None,
    };
    // Parse first (signature checked again inside add_checkpoint) to learn
    // the size for the consistency proof.
    let new = verifier
        .verify(&signed)
        .map_err(|e| anyhow!("checkpoint from {base}: {e}"))?
        .checkpoint;
    let proof = match &last {
        Some(l) if new.size > l.size => {
            let url = format!(
                "{base}/log/v1/proof/consistency?old={}&new={}",
                l.size, new.size
            );
            let body = get_required(agent, &url)?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| anyhow!("{url}: {e}"))?;
            decode_proof(&v, &url)?
        }
        _ => Vec::new(),
    };
    match witness.add_checkpoint(verifier, last.as_ref(), &signed, &proof, now()) {
        Ok(c) => {
            let me = witness.cosigner().verifier_key();
            let note = custody_log::Note::parse(&signed).map_err(|e| anyhow!("{e}"))?;
            let already = note
                .signatures()
                .iter()
                .any(|s| s.name == me.name() && s.key_id == me.key_id());
            if c.update == Update::Unchanged && already {
                if json_out {
                    println!(
                        "{}",
                        json!({"event": "unchanged", "size": c.checkpoint.size})
                    );
                }
                return Ok(());
            }
            // The new state is durable before the cosignature leaves.
            write_atomic(&last_path, &signed)?;
            let body = json!({
                "key": me.to_vkey(),
                "checkpoint": String::from_utf8_lossy(&signed),
                "signature": c.cosignature.to_line(),
            });
            let url = format!("{base}/log/v1/cosign");
            let mut resp = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(serde_json::to_vec(&body).map_err(|e| anyhow!("{e}"))?)
                .map_err(|e| anyhow!("POST {url}: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            if status != 200 {
                return Err(anyhow!("POST {url}: HTTP {status}: {text}").into());
            }
            let (update, from) = match c.update {
                Update::First => ("first", None),
                Update::Unchanged => ("unchanged", None),
                Update::Advanced { from, .. } => ("advanced", Some(from)),
            };
            if json_out {
                println!(
                    "{}",
                    json!({"event": "cosigned", "size": c.checkpoint.size, "update": update, "from": from})
                );
            } else {
                eprintln!("witness: cosigned size {} ({update})", c.checkpoint.size);
            }
            Ok(())
        }
        Err(e) => {
            let kind = match &e {
                WitnessError::Fork { .. } => "fork",
                WitnessError::Rollback { .. } => "rollback",
                WitnessError::Inconsistent { .. } => "inconsistent",
                WitnessError::OriginMismatch { .. } => "origin_mismatch",
                WitnessError::Checkpoint(_) | WitnessError::Note(_) => {
                    return Err(anyhow!("checkpoint from {base} refused: {e}").into())
                }
            };
            let evidence = state.join(format!("alarm-{}.txt", now()));
            let mut text = format!("{e}\n\n--- stored checkpoint ---\n");
            text.push_str(&String::from_utf8_lossy(
                last_note.as_deref().unwrap_or(b""),
            ));
            text.push_str("\n--- served checkpoint ---\n");
            text.push_str(&String::from_utf8_lossy(&signed));
            // The alarm itself must not be lost because its evidence file
            // could not be written: say so, and still raise it.
            let evidence_note = match std::fs::write(&evidence, &text) {
                Ok(()) => format!("evidence in {}", evidence.display()),
                Err(err) => format!(
                    "evidence NOT written to {}: {err}; it follows on stderr\n{text}",
                    evidence.display()
                ),
            };
            eprintln!("ALARM: witness refuses to cosign: {e} ({evidence_note})");
            if json_out {
                println!(
                    "{}",
                    json!({"event": "alarm", "kind": kind, "message": e.to_string(),
                           "evidence": evidence.display().to_string()})
                );
            }
            Err(Step::Alarm)
        }
    }
}
