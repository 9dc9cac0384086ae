//! `custody monitor`: follow a custody server's transparency log and raise
//! alerts on the shape of its releases (custody-monitor's rules), with a
//! crash-safe position (custody-client's `monitor` loop); this module
//! parses arguments and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use custody_client::monitor::{
    deliver, delivered, step_http, Halt, MonitorOptions, Stepped, Webhook,
};
use custody_monitor::{Alert, Config};

use crate::witness::EXIT_ALARM;

#[derive(Args, Debug)]
#[command(
    after_help = "Alerts: release_outside_window, release_unusual_time, publish_burst, \
new_publisher, key_added, privileged_credential, provenance_relaxed, \
republished_with_other_bytes, unpublished_installed, yanked_still_installed; log_fork and \
log_rollback halt the monitor.

Each alert has a stable id (the rule and the log entries that raised it): after a crash the \
monitor delivers alerts it raised but did not hand on again, never a new id for the same entries.

Exit status: 0 after a step or a loop (alerts printed, if any); 1 when the log or the state \
cannot be read, or (with --once) the webhook did not take every alert; 2 when the log forked or rolled back (nothing saved: the monitor stays at the \
last tree it trusted).

Examples:
  custody monitor --log https://updates.example.com --state /var/lib/custody-monitor --once --json
  custody monitor --log URL --state DIR --config monitor.json --interval 30"
)]
pub struct MonitorArgs {
    /// Base URL of the custody server (the log is under /log/v1).
    #[arg(long, value_name = "URL")]
    log: String,
    /// Where the monitor keeps its position, rules' state and outbox.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// The log's verifier key (vkey string or file). Without it the key
    /// served at /log/v1/key is pinned in the state directory on first use.
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// Rules' configuration, JSON: {"windows": {"REPO": [{"weekdays": [0..6],
    /// "hours": [0..23]}]}, "min_history": 8, "burst_count": 5,
    /// "burst_seconds": 3600, "yank_grace_seconds": 86400}.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// One step, then exit.
    #[arg(long, conflicts_with = "interval")]
    once: bool,
    /// Seconds between steps (default 60).
    #[arg(long, value_name = "S")]
    interval: Option<u64>,
    /// One JSON object per alert on stdout.
    #[arg(long)]
    json: bool,
    /// Also POST each alert (JSON) to this URL, signed: header
    /// X-Custody-Signature: sha256=<hex HMAC-SHA256 of the body>, and
    /// X-Custody-Alert-Id for de-duplication. Alerts the endpoint does not
    /// accept (2xx) stay in the outbox and are sent again at the next step.
    #[arg(long, value_name = "URL", requires = "webhook_secret_env")]
    webhook: Option<String>,
    /// Environment variable holding the webhook's HMAC secret.
    #[arg(long, value_name = "VAR")]
    webhook_secret_env: Option<String>,
}

pub fn run(args: MonitorArgs) -> Result<ExitCode> {
    let config = match &args.config {
        None => Config::default(),
        Some(p) => {
            let bytes = custody_fs::read_bounded(p, 1 << 20)?
                .with_context(|| format!("{}: no such file", p.display()))?;
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a monitor configuration", p.display()))?
        }
    };
    let opts = MonitorOptions {
        log: args.log.clone(),
        log_key: args.log_key.clone(),
        state_dir: args.state.clone(),
        config,
    };
    let webhook = match (&args.webhook, &args.webhook_secret_env) {
        (Some(url), Some(var)) => {
            let secret = std::env::var(var)
                .with_context(|| format!("--webhook-secret-env {var}: the variable is not set"))?;
            if secret.len() < 16 {
                anyhow::bail!("--webhook-secret-env {var}: the secret must be at least 16 bytes");
            }
            Some(Webhook {
                url: url::Url::parse(url).with_context(|| format!("--webhook {url}"))?,
                secret: secret.into_bytes(),
            })
        }
        _ => None,
    };
    let interval = Duration::from_secs(args.interval.unwrap_or(60).max(1));
    loop {
        let now = chrono::Utc::now().timestamp();
        match step_http(&opts, now)? {
            Ok(stepped) => {
                report(&stepped, args.json);
                let sent = match &webhook {
                    Some(hook) if !stepped.alerts.is_empty() => deliver(hook, &stepped.alerts),
                    _ => Ok(()),
                };
                match sent {
                    Ok(()) => delivered(&opts)?,
                    Err(e) => {
                        eprintln!(
                            "error: {e}; {} alert(s) stay in the outbox for the next step",
                            stepped.alerts.len()
                        );
                        if args.once {
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
            }
            Err(Halt(alert)) => {
                print_alert(&alert, args.json);
                eprintln!("ALARM: {}: processing of this log halted", alert.message);
                return Ok(ExitCode::from(EXIT_ALARM));
            }
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

fn report(s: &Stepped, json: bool) {
    for a in &s.alerts {
        print_alert(a, json);
    }
    if !s.unreadable.is_empty() {
        eprintln!(
            "warning: {} log entries this build cannot read were skipped: {:?}",
            s.unreadable.len(),
            s.unreadable
        );
    }
    if !json {
        eprintln!(
            "log size {}: {} new entries, {} alert(s)",
            s.size,
            s.observed,
            s.alerts.len()
        );
    }
}

fn print_alert(a: &Alert, json: bool) {
    if json {
        println!("{}", serde_json::to_string(a).unwrap_or_default());
    } else {
        println!(
            "ALERT {} [{}] {} (entries {:?}, id {})",
            a.rule.name(),
            a.subject,
            a.message,
            a.entries,
            a.id
        );
    }
}
