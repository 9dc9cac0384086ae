//! `custody scan IMAGE`: the image trust-stack gate, locally (for CI).
//!
//! The scanning and the policy are custody-scan's ([`custody_scan::scan_path`],
//! [`custody_scan::evaluate`]); this module reads the policy file, parses
//! arguments and prints.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use custody_scan::{evaluate, scan_path, Limits, Policy, PolicyFile, Report, Verdict};

/// Exit code: the image carries no finding.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: findings; the gate refuses the image.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage error, unreadable policy or image, malformed or hostile image.
pub const EXIT_UNSCANNABLE: u8 = 2;

/// Policy files are small; a larger one is a mistake.
const MAX_POLICY: u64 = 1 << 20;
/// A trusted-roots bundle (Mozilla's is ~250 KiB).
const MAX_ROOTS: u64 = 16 << 20;

#[derive(Args, Debug)]
#[command(after_long_help = "\
What is read: CA bundles and certificate directories (etc/ssl/certs, etc/pki/tls/certs,
etc/pki/ca-trust, usr/share/ca-certificates, usr/local/share/ca-certificates, etc/ssl/cert.pem)
and package databases (var/lib/dpkg/status, var/lib/dpkg/status.d/*, lib/apk/db/installed).
Everything else is streamed past. OCI layers are applied in order, whiteouts included.

Rules: certificate-expired, certificate-expiring (within --window days of --at),
certificate-not-yet-valid, root-not-trusted (a self-signed root whose subject and key are not
in Mozilla's set or the policy's trusted_roots bundle), certificate-distrusted (policy distrust
list, SHA-256 of the certificate), certificate-unparseable, package-forbidden (OpenSSL 1.x by
default), package-below-minimum (Debian or apk version order).

Policy file (TOML, or JSON when it starts with '{'):
  window_days = 30
  distrust = [\"<sha256 hex of a certificate>\"]
  trusted_roots = \"roots.pem\"   # relative to the policy file; added to Mozilla's set
  mozilla_roots = true           # false: only trusted_roots
  default_packages = true        # false: only the rules below
  [[packages]]
  name = \"libssl3*\"             # '*' matches any run of characters
  db = \"dpkg\"                   # or \"apk\"; absent: both
  min = \"3.0.15-1~deb12u1\"      # or: forbidden = true

Exit codes:
  0  clean: no finding
  1  findings: the image is refused
  2  usage error, unreadable policy or image, malformed or hostile image (a typed error
     naming the layer, offset, entry and rule)")]
pub struct ScanArgs {
    /// The image: a rootfs tar (plain, .gz or .zst, told by content), an
    /// OCI image layout tar or directory, or a `docker save` archive;
    /// `-` reads the image from standard input (`docker save x | custody scan -`).
    pub image: PathBuf,
    /// Reference time (RFC 3339) for expiry; default now.
    #[arg(long, value_parser = parse_at)]
    pub at: Option<DateTime<Utc>>,
    /// Policy file (TOML or JSON).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Renewal window in days: certificates expiring within it are
    /// reported (default 30, or the policy's window_days).
    #[arg(long)]
    pub window: Option<u32>,
    /// Print the report as JSON (findings, inventory, inventory_digest).
    #[arg(long)]
    pub json: bool,
}

fn parse_at(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn load_policy(path: Option<&Path>) -> Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let bytes = custody_fs::read_bounded(path, MAX_POLICY)?
        .ok_or_else(|| anyhow!("policy {}: no such file", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("policy {}: not UTF-8", path.display()))?;
    let file = PolicyFile::parse(&text).map_err(|e| anyhow!("policy {}: {e}", path.display()))?;
    let roots = match &file.trusted_roots {
        Some(r) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(r);
            Some(
                custody_fs::read_bounded(&p, MAX_ROOTS)?
                    .ok_or_else(|| anyhow!("policy trusted_roots {}: no such file", p.display()))?,
            )
        }
        None => None,
    };
    file.into_policy(roots.as_deref())
        .map_err(|e| anyhow!("policy {}: {e}", path.display()))
}

pub fn run(args: ScanArgs) -> Result<ExitCode> {
    match scan(&args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_UNSCANNABLE))
        }
    }
}

fn scan(args: &ScanArgs) -> Result<u8> {
    let mut policy = load_policy(args.policy.as_deref())?;
    if let Some(days) = args.window {
        policy.window = chrono::Duration::days(i64::from(days));
    }
    let at = args.at.unwrap_or_else(Utc::now);
    let limits = Limits::default();
    let scan = if args.image.as_os_str() == "-" {
        let mut stdin = BufReader::with_capacity(256 * 1024, std::io::stdin().lock());
        custody_scan::scan_reader(&mut stdin, &limits).context("image on standard input")?
    } else {
        scan_path(&args.image, &limits)
            .with_context(|| format!("image {}", args.image.display()))?
    };
    let findings = evaluate(&scan.inventory, &policy, at);
    let report = Report::new(
        &args.image.display().to_string(),
        scan,
        findings,
        at,
        policy.window.num_days(),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(match report.verdict {
        Verdict::Pass => EXIT_CLEAN,
        Verdict::Refuse => EXIT_FINDINGS,
    })
}

fn print_table(r: &Report) {
    let rows: Vec<[String; 5]> = r
        .findings
        .iter()
        .map(|f| {
            [
                serde_json::to_value(f.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                f.path.clone(),
                f.item.clone(),
                f.rule.as_str().to_owned(),
                f.detail.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let head = ["SEVERITY", "PATH", "ITEM", "RULE", "DETAIL"];
        let mut w = head.map(str::len);
        for row in &rows {
            for (i, c) in row.iter().enumerate().take(4) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |c: &[String; 5]| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            )
        };
        println!("{}", line(&head.map(str::to_owned)));
        for row in &rows {
            println!("{}", line(row));
        }
        println!();
    }
    let verdict = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Refuse => "refuse",
    };
    println!(
        "{verdict}: {} finding(s) in {} ({:?}, {:?}; {} entries, {} certificates, {} packages) at {}",
        r.findings.len(),
        r.image,
        r.format,
        r.compression,
        r.entries,
        r.inventory.certificates.len(),
        r.inventory.packages.len(),
        r.at
    );
    println!("inventory {}", r.inventory_digest);
}
