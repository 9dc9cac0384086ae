//! Crash-test driver for custody-agent (used by `tests/crash.rs`; not
//! shipped). Runs one step of the device-local install flow in this process
//! with a probe that SIGKILLs the process at the n-th probe point.
//!
//! ```text
//! custody-agent-crashtest install DIR PAYLOAD NAME COUNTER HEALTH INSTALLER
//! custody-agent-crashtest recover DIR HEALTH INSTALLER
//! ```
//! `DIR/agent` is the agent directory, `DIR/device` the device: A/B slot
//! root for INSTALLER `slot`; for `command`, a file `DIR/device/installed`
//! written by a shell install command (copy payload, 0.3 s pause, rename: a killed
//! agent leaves it running) and restored by a rollback command from a
//! per-attempt backup. HEALTH is `pass`, `fail` or `hang`. Environment: `CUSTODY_CRASH_AT=<n>`
//! kills the process with SIGKILL at the n-th probe (1-based);
//! `CUSTODY_CRASH_TRACE=<file>` appends `<n> <label>` for every probe.
//! The outcome is printed as JSON on stdout.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use custody_agent::fsutil::copy_hashed;
use custody_agent::{
    Agent, AgentConfig, CommandInstaller, HookCommand, Installer, Probe, SlotInstaller, TargetMeta,
};

fn probe_from_env() -> Result<Probe> {
    let crash_at = match std::env::var("CUSTODY_CRASH_AT") {
        Ok(v) => Some(
            v.parse::<u64>()
                .with_context(|| format!("CUSTODY_CRASH_AT={v:?} is not a number"))?,
        ),
        Err(_) => None,
    };
    let trace = std::env::var_os("CUSTODY_CRASH_TRACE").map(PathBuf::from);
    if crash_at.is_none() && trace.is_none() {
        return Ok(Probe::none());
    }
    let counter = AtomicU64::new(0);
    Ok(Probe::new(move |label| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(t) = &trace {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(t)
            {
                let _ = writeln!(f, "{n} {label}");
            }
        }
        if crash_at == Some(n) {
            // SIGKILL, not abort(): no destructors, no flush, no unwinding,
            // exactly what a power cut or the OOM killer does to the agent.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // kill(2) to ourselves with SIGKILL does not return.
            std::process::exit(99);
        }
    }))
}

fn health(kind: &str, installer: &str) -> Result<HookCommand> {
    let script = match (kind, installer) {
        ("pass", "slot") => {
            r#"test -f "$CUSTODY_PAYLOAD" && test -n "$CUSTODY_SLOT_NAME" && test -n "$CUSTODY_TARGET_NAME""#
        }
        ("pass", _) => r#"test -n "$CUSTODY_TARGET_NAME""#,
        ("fail", _) => "echo unhealthy >&2; exit 3",
        ("hang", _) => "sleep 30",
        (other, _) => bail!("health {other:?}: expected pass, fail or hang"),
    };
    Ok(HookCommand::new(
        ["/bin/sh", "-c", script],
        Duration::from_millis(if kind == "hang" { 300 } else { 10_000 }),
    ))
}

fn command_installer(device: &Path) -> Result<CommandInstaller> {
    std::fs::create_dir_all(device)?;
    let d = device
        .to_str()
        .filter(|d| !d.contains('\''))
        .context("device path must be UTF-8 without single quotes")?;
    let install = format!(
        "set -e; cd '{d}'; \
         if [ -f installed ]; then cp installed b.tmp; mv b.tmp backup-$CUSTODY_ATTEMPT; fi; \
         cp \"$CUSTODY_PAYLOAD\" i.tmp; sleep 0.3; mv i.tmp installed"
    );
    let rollback = format!(
        "set -e; cd '{d}'; \
         if [ -f backup-$CUSTODY_ATTEMPT ]; then cp backup-$CUSTODY_ATTEMPT r.tmp; mv r.tmp installed; fi"
    );
    let t = Duration::from_secs(10);
    Ok(
        CommandInstaller::new(HookCommand::new(["/bin/sh", "-c", &install], t))
            .with_rollback(HookCommand::new(["/bin/sh", "-c", &rollback], t)),
    )
}

fn open(dir: &Path, health_kind: &str, installer: &str, probe: Probe) -> Result<Agent> {
    let mut config = AgentConfig::new(dir.join("agent"));
    config.health_check = Some(health(health_kind, installer)?);
    config.reserve_bytes = 0;
    let installer: Box<dyn Installer + Send> = match installer {
        "slot" => Box::new(SlotInstaller::open(dir.join("device"))?),
        "command" => Box::new(command_installer(&dir.join("device"))?),
        other => bail!("installer {other:?}: expected slot or command"),
    };
    Ok(Agent::open(config, installer, probe)?)
}

fn main() -> Result<()> {
    let probe = probe_from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["install", dir, payload, name, counter, health_kind, installer] => {
            let dir = Path::new(dir);
            let mut agent = open(dir, health_kind, installer, probe.clone())?;
            agent.recover().context("recover before install")?;
            let digest = custody_agent::fsutil::digest_file(Path::new(payload))?;
            let target = TargetMeta {
                name: (*name).to_owned(),
                length: digest.length,
                hashes: [
                    ("sha256".to_owned(), digest.sha256),
                    ("sha512".to_owned(), digest.sha512),
                ]
                .into_iter()
                .collect(),
                release_counter: counter.parse().context("COUNTER")?,
                custom: Some(serde_json::json!({"crashtest": true})),
            };
            let attempt = agent.begin(target).context("begin")?;
            // Stand-in for the network half's verified download.
            let dest = agent.download_path(attempt);
            copy_hashed(Path::new(payload), &dest, &probe)?;
            agent.downloaded(attempt, &dest).context("downloaded")?;
            Some(agent.install(attempt).context("install")?)
        }
        ["recover", dir, health_kind, installer] => {
            let mut agent = open(Path::new(dir), health_kind, installer, probe)?;
            agent.recover().context("recover")?
        }
        _ => bail!("usage: install DIR PAYLOAD NAME COUNTER HEALTH INSTALLER | recover DIR HEALTH INSTALLER"),
    };
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}
