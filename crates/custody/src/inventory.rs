//! `custody inventory`: every role and key of local repositories and of a
//! running server (`GET /api/v1/inventory`), with its expiry and renewal
//! window, sorted by urgency; `--fail-on` makes it a CI gate. The statuses
//! are custody-inventory's, computed here for local and server items alike
//! (the same `--at` and `--window`); this module reads and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use custody_inventory::{
    assess, counts, gate, repository_items, Assessed, FailOn, Status, Windows,
};
use custody_repo::Repository;

use crate::api_client::{ApiAuth, Body};
use serde_json::json;

#[derive(Args, Debug)]
#[command(
    after_help = "Statuses, most urgent first: expired (past its expiry at --at), drift (under its \
signature threshold), renew (inside its kind's renewal window, or a key older than a year), ok.

Default renewal windows: root 60d, targets 30d, delegation 30d, hash_bins 7d, snapshot 2d, \
timestamp 12h, key 30d (and a 365-day maximum age), certificate 30d, credential 30d.

Exit status: 0 when nothing fails the gate (always, without --fail-on); 1 when --fail-on \
names something that failed it (listed on stderr); 2 when a repository cannot be read or an \
option is wrong.

Examples:
  custody inventory --repo ./repo
  CUSTODY_CREDENTIAL=cst1.… custody inventory --server https://updates.example.com --fail-on expired
  custody inventory --repo ./repo --at 2027-03-01T00:00:00Z --fail-on renew
  custody inventory --repo ./repo --window targets=45d --window app:timestamp=6h --json"
)]
pub struct InventoryArgs {
    /// A local repository directory (`custody repo init`); repeat for several.
    #[arg(long = "repo", value_name = "DIR", required_unless_present = "server")]
    repos: Vec<PathBuf>,
    /// A running custody server: its hosted repositories and credentials
    /// (needs a credential or token with inventory:read).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    auth: ApiAuth,
    /// The reference time (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    at: Option<DateTime<Utc>>,
    /// Renewal window: KIND=DURATION or SCOPE:KIND=DURATION (units d, h, m;
    /// the scope is the repository directory's name). Repeat.
    #[arg(long = "window", value_name = "SPEC")]
    windows: Vec<String>,
    /// Exit 1 when an item is at least this urgent: `renew` (anything not
    /// ok) or `expired` (expired or drift).
    #[arg(long, value_name = "LEVEL")]
    fail_on: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InventoryArgs) -> Result<ExitCode> {
    match inventory(&args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn inventory(args: &InventoryArgs) -> Result<ExitCode> {
    let at = args.at.unwrap_or_else(Utc::now);
    let mut windows = Windows::default();
    for w in &args.windows {
        windows.apply(w)?;
    }
    let fail_on: Option<FailOn> = args.fail_on.as_deref().map(str::parse).transpose()?;
    let mut items = Vec::new();
    for dir in &args.repos {
        items.extend(repo_items(dir, at).with_context(|| format!("{}", dir.display()))?);
    }
    if let Some(server) = &args.server {
        items.extend(server_items(&args.auth, server, at)?);
    }
    let assessed = assess(&items, &windows, at);
    let failed = fail_on.map(|f| gate(&assessed, f)).unwrap_or_default();
    if args.json {
        let doc = json!({
            "at": at,
            "items": assessed,
            "counts": counts(&assessed)
                .into_iter()
                .map(|(s, n)| (s.name(), n))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "fail_on": args.fail_on,
            "failed": failed.len(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_table(&assessed, at);
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for a in &failed {
        eprintln!(
            "inventory gate: {} {} {} is {}: {}",
            a.item.scope,
            a.item.kind,
            a.item.name,
            a.status.name(),
            a.why
        );
    }
    Ok(ExitCode::from(1))
}

/// The items of one local repository (its directory name is the scope).
fn repo_items(dir: &Path, at: DateTime<Utc>) -> Result<Vec<custody_inventory::Item>> {
    let repo = Repository::open(dir)?;
    let scope = (dir.canonicalize().ok())
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let roles = repo.inventory_facts(at)?;
    Ok(repository_items(&scope, &roles))
}

/// The items a server reports (its statuses are recomputed here with this
/// command's `--at` and `--window`).
fn server_items(
    auth: &ApiAuth,
    server: &str,
    at: DateTime<Utc>,
) -> Result<Vec<custody_inventory::Item>> {
    let api = auth.connect(server, "")?;
    let mut url = api.url(&["api", "v1", "inventory"]);
    url.query_pairs_mut()
        .append_pair("at", &at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let v = api.send("GET", &url, "", Body::Empty)?;
    let items = v
        .get("items")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{url}: the answer has no items"))?;
    serde_json::from_value(items).with_context(|| format!("{url}: items"))
}

fn print_table(assessed: &[Assessed], at: DateTime<Utc>) {
    println!(
        "trust-stack inventory at {} ({} items)",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        assessed.len()
    );
    let rows: Vec<[String; 7]> = assessed
        .iter()
        .map(|a| {
            let i = &a.item;
            [
                a.status.name().to_uppercase(),
                i.kind.to_string(),
                i.scope.clone(),
                short(&i.name),
                i.version.map_or("-".into(), |v| format!("v{v}")),
                i.expires.map_or("-".into(), |e| {
                    e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
                if a.why.is_empty() {
                    let sigs = i
                        .signatures
                        .map(|s| format!("{}/{} signatures", s.present, s.needed));
                    let detail = Some(i.detail.clone()).filter(|d| !d.is_empty());
                    sigs.into_iter()
                        .chain(detail)
                        .collect::<Vec<_>>()
                        .join("; ")
                } else {
                    a.why.clone()
                },
            ]
        })
        .collect();
    let head = [
        "STATUS", "KIND", "SCOPE", "NAME", "VERSION", "EXPIRES", "WHY",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(width) {
            s.push_str(&format!("{c:<w$}  "));
        }
        println!("{}", s.trim_end());
    };
    line(&head.map(str::to_owned));
    for r in &rows {
        line(r);
    }
    let c = counts(assessed);
    let n = |s| c.get(&s).copied().unwrap_or(0);
    println!(
        "\n{} expired, {} drift, {} to renew, {} ok",
        n(Status::Expired),
        n(Status::Drift),
        n(Status::Renew),
        n(Status::Ok)
    );
}

/// Key ids are 64 hex digits: the first 16 are enough in a table.
fn short(name: &str) -> String {
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}…", name.get(..16).unwrap_or(name))
    } else {
        name.to_owned()
    }
}
