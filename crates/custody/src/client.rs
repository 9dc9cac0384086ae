//! `custody client …`: the TUF client on the command line.
//!
//! The syntax is the tuf-conformance client CLI protocol (init / refresh /
//! download with `--metadata-dir`, `--metadata-url`, `--target-name`,
//! `--target-base-url`, `--target-dir` before or after the command), plus a
//! few extras (`--reference-time`, `--json`, bounds and timeouts).
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use custody_client::{
    AnyTransport, ClientError, DownloadedTarget, HttpTransport, Timeouts, Updater, UpdaterConfig,
};
use serde_json::json;
use url::Url;

const EXAMPLES: &str = "\
Examples:
  # Trust a root you obtained out of band (copied into the metadata dir, no network):
  custody client --metadata-dir ./tuf init ./root.json

  # Update root (walking every rotation), timestamp, snapshot and targets:
  custody client --metadata-dir ./tuf --metadata-url https://repo.example/metadata refresh

  # Download verified targets (one updater, argument order, stop at the first failure):
  custody client --metadata-dir ./tuf --metadata-url https://repo.example/metadata \\
      --target-base-url https://repo.example/targets --target-dir ./out \\
      --target-name app/v2.tar.gz --target-name app/v2.sig download

  # Refuse any target the transparency log does not hold (k-of-n witnesses optional):
  custody client --metadata-dir ./tuf --metadata-url https://repo.example/repos/main/metadata \\
      --target-base-url https://repo.example/repos/main/targets --target-dir ./out \\
      --log https://repo.example/log/v1/ --log-key \"$LOG_VKEY\" \\
      --witness \"$W1\" --witness \"$W2\" --witness-threshold 1 --target-name app/v2.tar.gz download

  # Audit an old repository state (all expiry decisions use this instant):
  custody client --metadata-dir ./tuf --metadata-url file:///srv/mirror/metadata \\
      --reference-time 2026-08-22T00:00:00Z refresh

Exit status: 0 on full success, 1 on any failure; the one-line error on stderr
names the role or file, the rule that was broken and the values.
Metadata in --metadata-dir is only ever replaced by verified metadata, atomically.
Targets are stored in --target-dir under their percent-encoded target path and
are not downloaded again while their hashes still match.";

/// TUF client: initialise trust, refresh metadata, download verified targets.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ClientArgs {
    // Boxed: the options are large and this struct sits in the top-level
    // command enum.
    #[command(flatten)]
    opts: Box<ClientOptions>,

    #[command(subcommand)]
    command: ClientCommand,
}

/// Options of `custody client` (accepted before or after the command).
#[derive(Args, Debug)]
struct ClientOptions {
    /// Directory of trusted metadata (root.json, timestamp.json, ...).
    #[arg(long, global = true, value_name = "DIR")]
    metadata_dir: Option<PathBuf>,

    /// Base URL of the repository metadata (http, https or file).
    #[arg(long, global = true, value_name = "URL")]
    metadata_url: Option<Url>,

    /// Target path to download (repeatable; downloaded in this order).
    #[arg(long, global = true, value_name = "PATH")]
    target_name: Vec<String>,

    /// Base URL of the repository targets (http, https or file).
    #[arg(long, global = true, value_name = "URL")]
    target_base_url: Option<Url>,

    /// Directory to store verified targets in.
    #[arg(long, global = true, value_name = "DIR")]
    target_dir: Option<PathBuf>,

    /// Instant used for every expiry decision, RFC 3339 (default: now).
    #[arg(long, global = true, value_name = "RFC3339", value_parser = parse_time)]
    reference_time: Option<DateTime<Utc>>,

    /// Print the result (or the error) as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// Most root versions to walk in one refresh.
    #[arg(long, global = true, value_name = "N",
          default_value_t = custody_tuf::limits::MAX_ROOT_ROTATIONS)]
    max_root_rotations: u32,

    /// Most delegated roles to visit for one target lookup.
    #[arg(long, global = true, value_name = "N",
          default_value_t = custody_tuf::limits::MAX_DELEGATIONS)]
    max_delegations: usize,

    /// Byte bound for a root file.
    #[arg(long, global = true, value_name = "BYTES",
          default_value_t = custody_tuf::limits::MAX_ROOT_BYTES)]
    max_root_bytes: u64,

    /// Byte bound for timestamp.json.
    #[arg(long, global = true, value_name = "BYTES",
          default_value_t = custody_tuf::limits::MAX_TIMESTAMP_BYTES)]
    max_timestamp_bytes: u64,

    /// Byte bound for snapshot metadata when the timestamp gives no length.
    #[arg(long, global = true, value_name = "BYTES",
          default_value_t = custody_tuf::limits::MAX_SNAPSHOT_BYTES)]
    max_snapshot_bytes: u64,

    /// Byte bound for targets metadata when the snapshot gives no length.
    #[arg(long, global = true, value_name = "BYTES",
          default_value_t = custody_tuf::limits::MAX_TARGETS_BYTES)]
    max_targets_bytes: u64,

    /// Overall time budget for one request, in seconds (slow retrieval).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 600)]
    timeout: u64,

    /// Connect timeout in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    connect_timeout: u64,

    /// PEM file of CA certificates to trust for https instead of the Mozilla
    /// roots (a private repository's CA).
    #[arg(long, global = true, value_name = "PEM")]
    ca_cert: Option<PathBuf>,

    /// Longest wait for any single read, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    read_timeout: u64,

    /// Transparency log to check every target against before it is
    /// written (`https://server/log/v1/`); needs --log-key. The last
    /// accepted checkpoint is kept in `<metadata-dir>/log-checkpoint`.
    #[arg(long, global = true, value_name = "URL", requires = "log_key")]
    log: Option<Url>,

    /// The log's verifier key (note vkey `name+hash+base64`, pinned out of
    /// band).
    #[arg(long, global = true, value_name = "VKEY", requires = "log")]
    log_key: Option<String>,

    /// A witness verifier key whose cosignature counts (repeatable).
    #[arg(long = "witness", global = true, value_name = "VKEY", requires = "log")]
    witnesses: Vec<String>,

    /// How many --witness keys must cosign (default: all given).
    #[arg(long, global = true, value_name = "K", requires = "log")]
    witness_threshold: Option<usize>,

    /// Repository name the log records targets under (default: NAME from a
    /// --metadata-url ending in /repos/NAME/metadata).
    #[arg(long, global = true, value_name = "NAME", requires = "log")]
    log_repo: Option<String>,
}

/// The log check of `custody client download` (custody-client's `log`).
struct LogCheck {
    base: Url,
    trust: custody_client::log::LogTrust,
    store: custody_client::log::CheckpointStore,
    repo: String,
}

impl LogCheck {
    fn from_opts(opts: &ClientOptions, metadata_dir: &Path) -> anyhow::Result<Option<LogCheck>> {
        let (Some(url), Some(key)) = (&opts.log, &opts.log_key) else {
            return Ok(None);
        };
        let mut base = url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let k = opts.witness_threshold.unwrap_or(opts.witnesses.len());
        let trust = custody_client::log::trust_from_keys(None, key, &opts.witnesses, k)
            .map_err(anyhow::Error::msg)
            .context("--log-key / --witness")?;
        let repo = match &opts.log_repo {
            Some(r) => r.clone(),
            None => opts
                .metadata_url
                .as_ref()
                .and_then(|u| {
                    let segs: Vec<&str> = u.path_segments()?.filter(|s| !s.is_empty()).collect();
                    match segs.as_slice() {
                        [.., "repos", name, "metadata"] => Some((*name).to_owned()),
                        _ => None,
                    }
                })
                .context("--log needs --log-repo NAME (the --metadata-url does not end in /repos/NAME/metadata)")?,
        };
        Ok(Some(LogCheck {
            base,
            trust,
            store: custody_client::log::CheckpointStore::new(metadata_dir.join("log-checkpoint")),
            repo,
        }))
    }

    /// Check `target` before it is downloaded and written; stores the
    /// accepted checkpoint first. Returns (entry index, checkpoint size).
    fn check(
        &self,
        transport: &AnyTransport,
        target: &str,
        info: &custody_tuf::TargetFile,
    ) -> anyhow::Result<(u64, u64)> {
        let expect = custody_client::log::ExpectedPublish {
            repo: self.repo.clone(),
            name: target.to_owned(),
            length: info.length,
            hashes: info.hashes.clone().into_iter().collect(),
        };
        let stored = self.store.load(&self.trust)?;
        let ev = custody_client::log::fetch_evidence(
            transport,
            &self.base,
            &expect,
            stored.as_ref().map_or(0, |c| c.size),
        )?;
        let accepted =
            custody_client::log::check_target(&self.trust, stored.as_ref(), &ev, &expect)?;
        self.store.save(&accepted)?;
        Ok((ev.index, accepted.checkpoint.checkpoint.size))
    }
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Trust ROOT_FILE: copy it into --metadata-dir as root.json (no network).
    Init {
        /// Root metadata obtained out of band.
        root_file: PathBuf,
    },
    /// Update root, timestamp, snapshot and targets from --metadata-url.
    Refresh,
    /// Refresh, then download each --target-name into --target-dir.
    Download,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 date-time (e.g. 2026-08-22T00:00:00Z): {e}"))
}

fn required<'a, T>(v: &'a Option<T>, flag: &str, cmd: &str) -> anyhow::Result<&'a T> {
    v.as_ref()
        .with_context(|| format!("`custody client {cmd}` needs {flag}"))
}

/// Run `custody client`.
pub fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let json_out = args.opts.json;
    match execute(&args.opts, &args.command) {
        Ok(value) => {
            if json_out {
                println!("{value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let message = format!("{err:#}");
            if json_out {
                let kind = err
                    .downcast_ref::<ClientError>()
                    .map(ClientError::kind_name)
                    .or_else(|| {
                        err.downcast_ref::<custody_client::log::LogCheckError>()
                            .map(custody_client::log::LogCheckError::kind)
                    })
                    .unwrap_or("error");
                println!("{}", json!({"ok": false, "kind": kind, "error": message}));
            }
            eprintln!("error: {message}");
            Ok(ExitCode::from(1))
        }
    }
}

fn execute(opts: &ClientOptions, command: &ClientCommand) -> anyhow::Result<serde_json::Value> {
    let name = match command {
        ClientCommand::Init { .. } => "init",
        ClientCommand::Refresh => "refresh",
        ClientCommand::Download => "download",
    };
    let metadata_dir = required(&opts.metadata_dir, "--metadata-dir", name)?;
    if let ClientCommand::Init { root_file } = command {
        return init(metadata_dir, root_file);
    }
    // Check the download arguments before any request is made.
    let download = match command {
        ClientCommand::Download => {
            let base = required(&opts.target_base_url, "--target-base-url", name)?;
            let dir = required(&opts.target_dir, "--target-dir", name)?;
            if opts.target_name.is_empty() {
                anyhow::bail!("`custody client download` needs at least one --target-name");
            }
            Some((base, dir))
        }
        _ => None,
    };
    let log = LogCheck::from_opts(opts, metadata_dir)?;
    let mut updater = build_updater(opts, metadata_dir, name)?;
    updater.refresh()?;
    let mut targets = Vec::new();
    if let Some((base, dir)) = download {
        let log_transport = AnyTransport::with_http(http_transport(opts)?);
        // One updater, argument order, stop at the first failure.
        for target in &opts.target_name {
            let mut logged = None;
            if let Some(log) = &log {
                // Before anything is written: the TUF entry, then the log.
                let (_, info) = updater.get_target_info(target)?.ok_or_else(|| {
                    ClientError::TargetNotFound {
                        path: target.clone(),
                        searched: "the delegation graph".into(),
                    }
                })?;
                logged = Some(
                    log.check(&log_transport, target, &info)
                        .with_context(|| format!("target {target:?}: refused"))?,
                );
            }
            let got = updater.fetch_target(target, base, dir)?;
            tracing::info!(target = %target, cached = got.cached, "target verified");
            let mut j = target_json(&got);
            if let Some((index, size)) = logged {
                j["log"] = json!({"index": index, "checkpoint_size": size});
            }
            targets.push(j);
        }
    }
    let mut out = json!({"ok": true, "command": name, "roles": roles_json(&updater)});
    if let ClientCommand::Download = command {
        out["targets"] = serde_json::Value::Array(targets);
    }
    Ok(out)
}

fn build_updater(
    opts: &ClientOptions,
    metadata_dir: &Path,
    name: &str,
) -> anyhow::Result<Updater<AnyTransport>> {
    let metadata_url = required(&opts.metadata_url, "--metadata-url", name)?;
    // The system clock unless told otherwise (read now, never cached, so
    // faketime and --reference-time both work).
    let now = opts.reference_time.unwrap_or_else(Utc::now);
    let config = UpdaterConfig {
        limits: custody_tuf::Limits {
            max_root_rotations: opts.max_root_rotations,
            max_delegations: opts.max_delegations,
            max_root_bytes: opts.max_root_bytes,
            max_timestamp_bytes: opts.max_timestamp_bytes,
            max_snapshot_bytes: opts.max_snapshot_bytes,
            max_targets_bytes: opts.max_targets_bytes,
        },
    };
    let transport = AnyTransport::with_http(http_transport(opts)?);
    Ok(Updater::new(
        metadata_dir,
        metadata_url.clone(),
        transport,
        config,
        now,
    )?)
}

fn http_transport(opts: &ClientOptions) -> anyhow::Result<HttpTransport> {
    let timeouts = Timeouts {
        connect: Duration::from_secs(opts.connect_timeout),
        per_read: Duration::from_secs(opts.read_timeout),
        overall: Duration::from_secs(opts.timeout),
    };
    Ok(match &opts.ca_cert {
        None => HttpTransport::new(timeouts),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("{}: cannot read --ca-cert", path.display()))?;
            HttpTransport::with_ca_certs(timeouts, &pem)
                .with_context(|| format!("{}: --ca-cert", path.display()))?
        }
    })
}

fn roles_json<T: custody_client::Transport>(updater: &Updater<T>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (role, version) in updater.trusted_versions() {
        map.insert(role, json!(version));
    }
    serde_json::Value::Object(map)
}

fn target_json(t: &DownloadedTarget) -> serde_json::Value {
    json!({
        "path": t.path,
        "role": t.role,
        "file": t.file.display().to_string(),
        "length": t.length,
        "hashes": t.hashes,
        "cached": t.cached,
    })
}

fn init(metadata_dir: &Path, root_file: &Path) -> anyhow::Result<serde_json::Value> {
    let version = custody_client::init_trusted_root(metadata_dir, root_file)?;
    Ok(json!({
        "ok": true,
        "command": "init",
        "roles": {"root": version},
        "metadata_dir": metadata_dir.display().to_string(),
    }))
}
