//! `custody agent`: the device side. A thin layer over custody-agent's
//! `device` (enrolment, check-in, bundles) and `daemon` (the poll loop).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use custody_agent::daemon::{self, Stop};
use custody_agent::device::{
    enroll, factory_credential, Action, CheckReport, Credential, Device, EnrollOptions,
    LocalConfig, LogPinOptions, RollbackKeysConfig,
};
use custody_agent::keystore::DeviceKeyType;
use custody_director::wire::DeviceAttributes;

/// Device agent: enrol, check in, verify both repositories, install with
/// health check and rollback, report.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  custody agent enroll --server https://updates.example --token cet_… \\
      --hardware-id board-a --state-dir /var/lib/custody-agent
  custody agent check --once --json --state-dir /var/lib/custody-agent
  custody agent run --state-dir /var/lib/custody-agent
  custody agent install-bundle /media/usb/update.cbundle --state-dir /var/lib/custody-agent")]
pub struct AgentArgs {
    /// The device's state directory (key, pinned roots, trusted metadata,
    /// install state, report queue).
    #[arg(
        long,
        global = true,
        env = "CUSTODY_AGENT_STATE",
        default_value = "/var/lib/custody-agent",
        value_name = "DIR"
    )]
    state_dir: PathBuf,
    /// Local configuration (installer, health check, poll interval); JSON.
    /// Default: `<state-dir>/agent.json` if present, else A/B slots in
    /// `<state-dir>/slots` and no health check.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AgentCommand {
    /// Generate the device key, enrol with the server, pin the director
    /// and image roots.
    Enroll(Box<EnrollArgs>),
    /// Check in once: report, verify, download, install, report the outcome.
    Check(CheckArgs),
    /// Check in forever (jittered poll interval, back-off on errors); stops
    /// cleanly on SIGTERM or SIGINT.
    Run,
    /// Verify and install an offline bundle (same verification as online).
    InstallBundle(BundleArgs),
    /// Show what is installed and queued (no network).
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct EnrollArgs {
    /// Server base URL.
    #[arg(long)]
    server: String,
    /// One-time enrolment token.
    #[arg(long, conflicts_with_all = ["factory_cert", "factory_key"], required_unless_present = "factory_cert")]
    token: Option<String>,
    /// Factory certificate chain (PEM, leaf first).
    #[arg(long, requires = "factory_key", value_name = "CERT")]
    factory_cert: Option<PathBuf>,
    /// The factory certificate's private key (PKCS#8 PEM, P-256 or Ed25519).
    #[arg(long, requires = "factory_cert", value_name = "KEY")]
    factory_key: Option<PathBuf>,
    /// Hardware id (board / model the images are built for).
    #[arg(long)]
    hardware_id: String,
    /// Fleet environment.
    #[arg(long, default_value = "production")]
    environment: String,
    /// Tags (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Fleet group.
    #[arg(long)]
    group: Option<String>,
    /// Device key algorithm.
    #[arg(long, value_enum, default_value_t = KeyTypeArg::Ed25519)]
    key_type: KeyTypeArg,
    /// Director root supplied out of band (else the server's is pinned on
    /// first use).
    #[arg(long, value_name = "FILE")]
    director_root: Option<PathBuf>,
    /// Image repository root supplied out of band.
    #[arg(long, value_name = "FILE")]
    image_root: Option<PathBuf>,
    /// Rollback keys (`{"threshold": n, "keys": {keyid: key}}`); without
    /// them the device never accepts a lower release counter.
    #[arg(long, value_name = "FILE")]
    rollback_keys: Option<PathBuf>,
    /// Pin the transparency log's verifier key (note vkey,
    /// `name+hash+base64`, as served at /log/v1/key) out of band. Without
    /// it the key the server offers is pinned on first use; with it, a
    /// server offering another key is refused.
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// A witness verifier key (cosignature/v1) whose cosignature counts
    /// (repeatable). Overrides the server's witness policy, which must
    /// then agree.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the --witness keys must cosign a checkpoint before a
    /// target it proves is installed (default: all of them).
    #[arg(long, value_name = "K")]
    witness_threshold: Option<usize>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum KeyTypeArg {
    Ed25519,
    EcdsaP256,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Check in once and exit (the only mode of `check`; `run` polls).
    #[arg(long)]
    once: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct BundleArgs {
    /// The bundle file.
    file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn local_config(args: &AgentArgs) -> Result<Option<LocalConfig>> {
    let Some(p) = &args.config else {
        return Ok(None);
    };
    let bytes = read(p)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("{}: not a valid agent configuration", p.display()))
}

pub fn run(args: AgentArgs) -> Result<ExitCode> {
    match &args.command {
        AgentCommand::Enroll(e) => cmd_enroll(&args, e),
        AgentCommand::Check(c) => {
            let mut dev = open(&args)?;
            let r = dev.check_once().context("check-in")?;
            print_report(&r, c.json)
        }
        AgentCommand::Run => cmd_run(&args),
        AgentCommand::InstallBundle(b) => {
            let mut dev = open(&args)?;
            let r = dev
                .install_bundle(&b.file)
                .with_context(|| format!("installing bundle {}", b.file.display()))?;
            print_report(&r, b.json)
        }
        AgentCommand::Status(s) => {
            let dev = open(&args)?;
            let st = dev.status()?;
            if s.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("device    {}", st.device.device_id);
                println!("hardware  {}", st.device.hardware_id);
                println!("server    {}", st.device.server);
                match &st.installed {
                    Some(t) => println!(
                        "installed {} (release counter {})",
                        t.name, t.release_counter
                    ),
                    None => println!("installed nothing yet"),
                }
                println!("state     {}", st.state);
                match (&st.device.log, st.log_size) {
                    (Some(p), size) => println!(
                        "log       {} ({} of {} witnesses), stored checkpoint size {}",
                        p.origin,
                        p.witness_threshold,
                        p.witnesses.len(),
                        size.map_or_else(|| "none yet".to_owned(), |s| s.to_string())
                    ),
                    (None, _) => println!("log       not pinned"),
                }
                println!(
                    "queued    {} install report(s), {} attack report(s)",
                    st.queued_reports,
                    st.pending_attacks.len()
                );
                for g in &st.given_up {
                    println!(
                        "given up  {} (sha256 {}): not retried until the director assigns something else",
                        g.target, g.sha256
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(args: &AgentArgs) -> Result<Device> {
    Device::open(&args.state_dir, local_config(args)?)
        .with_context(|| format!("opening the agent in {}", args.state_dir.display()))
}

fn cmd_enroll(args: &AgentArgs, e: &EnrollArgs) -> Result<ExitCode> {
    let credential = match (&e.token, &e.factory_cert, &e.factory_key) {
        (Some(t), None, None) => Credential::Token(t.clone()),
        (None, Some(c), Some(k)) => factory_credential(&read(c)?, &read(k)?)
            .map_err(anyhow::Error::msg)
            .context("loading the factory credential")?,
        _ => bail!("give --token, or --factory-cert with --factory-key"),
    };
    let rollback_keys = match &e.rollback_keys {
        Some(p) => Some(
            serde_json::from_slice::<RollbackKeysConfig>(&read(p)?)
                .with_context(|| format!("{}: not a rollback key set", p.display()))?,
        ),
        None => None,
    };
    let opts = EnrollOptions {
        server: e.server.clone(),
        credential,
        hardware_id: e.hardware_id.clone(),
        attributes: DeviceAttributes {
            environment: e.environment.clone(),
            tags: e.tags.iter().cloned().collect(),
            group: e.group.clone(),
        },
        state_dir: args.state_dir.clone(),
        key_type: match e.key_type {
            KeyTypeArg::Ed25519 => DeviceKeyType::Ed25519,
            KeyTypeArg::EcdsaP256 => DeviceKeyType::EcdsaP256,
        },
        director_root: e.director_root.as_deref().map(read).transpose()?,
        image_root: e.image_root.as_deref().map(read).transpose()?,
        rollback_keys,
        log: LogPinOptions {
            log_key: e.log_key.clone(),
            witnesses: e.witnesses.clone(),
            witness_threshold: e.witness_threshold,
        },
    };
    let cfg = enroll(&opts).context("enrolment")?;
    println!("{}", cfg.device_id);
    eprintln!(
        "enrolled as device {} (hardware {}); director and image roots pinned in {}",
        cfg.device_id,
        cfg.hardware_id,
        args.state_dir.display()
    );
    match &cfg.log {
        Some(p) => eprintln!(
            "transparency log pinned: {} (key {}), {} of {} witness(es) must cosign",
            p.origin,
            p.log_key,
            p.witness_threshold,
            p.witnesses.len()
        ),
        None => eprintln!(
            "warning: no transparency log pinned (the server offers none and no --log-key was given): targets are not checked against a log"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(args: &AgentArgs) -> Result<ExitCode> {
    let stop = Stop::new();
    // before any other thread exists, so every thread inherits the mask
    stop.on_signals()
        .context("installing the SIGTERM handler")?;
    let mut dev = open(args)?;
    eprintln!(
        "custody agent: device {} checking in to {} every ~{}s",
        dev.config().device_id,
        dev.config().server,
        dev.poll_interval().as_secs()
    );
    daemon::run(&mut dev, &stop, |r| match r {
        Ok(rep) => eprintln!("{}", summary(rep)),
        Err(e) => eprintln!("check-in failed: {e:#}"),
    });
    eprintln!("custody agent: stopped");
    Ok(ExitCode::SUCCESS)
}

fn summary(r: &CheckReport) -> String {
    match &r.action {
        Action::UpToDate { installed } => format!(
            "up to date ({})",
            installed.as_deref().unwrap_or("nothing installed")
        ),
        Action::Installed {
            target,
            release_counter,
        } => format!("installed {target} (release counter {release_counter})"),
        Action::Refused { subject, reason } => format!("REFUSED {subject}: {reason}"),
        Action::Failed { target, reason } => format!("FAILED {target}: {reason}"),
        Action::RolledBack { target, reason } => format!("ROLLED BACK {target}: {reason}"),
        Action::Skipped { target } => {
            format!("{target} failed before on this device: not retried")
        }
        Action::Deferred { target, reason } => {
            format!("DEFERRED {target} (retried at the next check-in): {reason}")
        }
    }
}

/// Exit 0: up to date or installed; 2: the update was refused, failed,
/// rolled back or deferred by the log check (the check itself worked; the
/// reason is printed); 1: error.
fn print_report(r: &CheckReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!("{}", summary(r));
    }
    Ok(match r.action {
        Action::UpToDate { .. } | Action::Installed { .. } | Action::Skipped { .. } => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(2),
    })
}
