//! `custody fleet`: the fleet operator's admin API on the command line.
//!
//! Every subcommand is one or two calls of `/api/v1` (the same client as
//! `custody server`); the server decides and audits, this module prints.
//! Tables for people, `--json` for scripts (the server's answer as is).

mod proofs;
mod rollout;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::api_client::{Api, Body, Endpoint};
use table::{ago, deployed, short, text, when, Table};

/// Devices, rollouts, yanks and credentials of a running `custody serve`.
#[derive(Args, Debug)]
#[command(after_long_help = "\
Authenticate with an API credential (exchanged for a short-lived token) or a
token; prefer the environment, since command lines are visible to other users
of the machine. Most commands need scope fleet:admin.

Examples:
  export CUSTODY_SERVER=https://updates.example.com CUSTODY_CREDENTIAL=cst1.…
  custody fleet tokens --group lab --count 10
  custody fleet devices --hardware-id board-a --drift
  custody fleet rollout create --id fw-2.5 --target fw/a-2.5.img --hardware-id board-a --stages 1,10,100
  custody fleet rollout watch fw-2.5
  custody fleet yank --target fw/a-2.5.img --replacement fw/a-2.4.img --reason 'boot loop'")]
pub struct FleetArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: FleetCmd,
}

#[derive(Subcommand, Debug)]
enum FleetCmd {
    /// The hosted repositories you hold a scope for, with their newest
    /// publish (create one with `custody server create-repo`).
    Repos,
    /// Issue single-use enrolment tokens for a group (shown once).
    Tokens {
        /// Fleet group the enrolled devices join.
        #[arg(long)]
        group: String,
        /// Environment the devices must claim (default: any).
        #[arg(long)]
        environment: Option<String>,
        /// Lifetime in seconds (default 1 day).
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// How many tokens (1..=1000).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// List devices, filtered; sorted by id, 100 per page.
    Devices(DeviceFilter),
    /// One device: identity, status, what runs and what is assigned, the
    /// director's decision now, install reports and attacks.
    ///
    /// Each install report's transparency-log entry is fetched and checked
    /// (signature, inclusion, and the device's signature on the manifest it
    /// carries); exit 1 when one does not verify. Give --log-key to check
    /// against the log you trust rather than the key the server serves.
    Device {
        /// Device id.
        id: String,
        #[command(flatten)]
        proofs: proofs::ProofArgs,
    },
    /// Stop assigning updates to a device (it keeps what it runs).
    Suspend(IdReason),
    /// Resume a suspended device.
    Resume(IdReason),
    /// Retire a device for good: its key is refused from now on.
    Decommission(IdReason),
    /// Pin a device to one release, over any rollout.
    Pin {
        id: String,
        /// Target path in the image repository.
        #[arg(long)]
        target: String,
        /// Its release counter (default: the target's custom.release_counter).
        #[arg(long)]
        release_counter: Option<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Remove a device's pin.
    Unpin { id: String },
    /// Staged rollouts: create, list, status, pause, resume, abort, watch.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Yank a target: the next publish of the repository leaves it out
    /// (until it is staged again), and with --replacement the devices
    /// running it get the replacement at their next check-in.
    ///
    /// Without --replacement this needs target:revoke on the repository;
    /// with one, fleet:admin.
    Yank {
        /// The yanked target path.
        #[arg(long)]
        target: String,
        /// The repository (the director's image repository for a yank with
        /// a replacement).
        #[arg(long, default_value = "main")]
        repo: String,
        /// What devices running it get instead (a target of the image
        /// repository).
        #[arg(long)]
        replacement: Option<String>,
        /// The replacement's release counter (default: its custom.release_counter).
        #[arg(long)]
        replacement_release_counter: Option<u64>,
        #[arg(long)]
        reason: String,
    },
    /// A repository's yanks, oldest first.
    Yanks {
        /// The repository.
        #[arg(long, default_value = "main")]
        repo: String,
    },
    /// Who ever ran a target, and since when.
    Installs {
        #[arg(long)]
        target: String,
    },
    /// Refused requests and attacks devices reported, newest first.
    Attacks {
        /// Only about this device.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Rollback authorisations: signed permissions to install a lower
    /// release counter.
    #[command(subcommand)]
    RollbackAuth(RollbackCmd),
    /// API credentials: create, list, rotate, revoke.
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// The audit trail of admin actions, newest first.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Records with an id below this (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// Only records about this repository.
        #[arg(long)]
        repo: Option<String>,
    },
    /// Who the credential or token is, and its scopes.
    Whoami,
}

/// A device or rollout id, and why (recorded in the audit trail).
#[derive(Args, Debug)]
struct IdReason {
    id: String,
    /// Why (audited).
    #[arg(long)]
    reason: Option<String>,
}

impl IdReason {
    fn body(&self) -> Option<Value> {
        self.reason.as_ref().map(|r| json!({ "reason": r }))
    }
}

#[derive(Args, Debug)]
struct DeviceFilter {
    #[arg(long)]
    hardware_id: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    environment: Option<String>,
    /// Devices carrying this tag.
    #[arg(long)]
    tag: Option<String>,
    /// active, suspended or decommissioned.
    #[arg(long)]
    status: Option<String>,
    /// Devices running this target.
    #[arg(long)]
    target: Option<String>,
    /// Only devices whose installed release differs from the assigned one.
    #[arg(long)]
    drift: bool,
    /// Devices per page (1..=1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Ids after this one (the next page).
    #[arg(long)]
    after: Option<String>,
    /// Every page, not just the first.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand, Debug)]
enum RolloutCmd {
    /// Create a rollout.
    Create(Box<rollout::CreateArgs>),
    /// Every rollout with its state.
    List,
    /// A rollout's stages, gates and progress.
    Status { id: String },
    /// Stop assigning the release (resumable).
    Pause(IdReason),
    /// Resume a paused rollout.
    Resume(IdReason),
    /// Stop for good.
    Abort(IdReason),
    /// A live bar per stage until the rollout completes (exit 0) or is
    /// aborted (exit 1).
    Watch {
        id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// End when the rollout pauses too (exit 2), e.g. in CI.
        #[arg(long)]
        exit_on_pause: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RollbackCmd {
    /// File a signed rollback authorisation (JSON envelope).
    File { file: PathBuf },
    /// The authorisations on file.
    List,
}

#[derive(Subcommand, Debug)]
enum CredentialCmd {
    /// A new credential with scopes; its secret is shown once.
    Create {
        #[arg(long)]
        name: String,
        /// A scope, e.g. fleet:admin or target:upload@app (repeatable).
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
    },
    /// Every credential (never the secrets).
    List,
    /// A new secret for a credential; tokens of the old one stop working.
    Rotate { id: String },
    /// Revoke a credential; its tokens stop working at once.
    Revoke { id: String },
}

pub fn run(args: FleetArgs) -> Result<ExitCode> {
    let api = args.endpoint.connect("")?;
    let f = Fleet {
        api,
        json: args.json,
    };
    f.run(args.cmd)
}

struct Fleet {
    api: Api,
    json: bool,
}

impl Fleet {
    fn call(&self, method: &str, segs: &[&str], body: Option<Value>) -> Result<Value> {
        self.call_url(method, self.api.url(segs), body)
    }

    fn call_url(&self, method: &str, url: url::Url, body: Option<Value>) -> Result<Value> {
        let (ct, b) = match body {
            Some(v) => ("application/json", Body::json(&v)?),
            None => ("", Body::Empty),
        };
        self.api.send(method, &url, ct, b)
    }

    fn fleet(&self, method: &str, segs: &[&str], body: Option<Value>) -> Result<Value> {
        let mut all = vec!["api", "v1", "fleet"];
        all.extend_from_slice(segs);
        self.call(method, &all, body)
    }

    /// `--json`: the answer as is; else `human`.
    fn show(&self, v: &Value, human: impl FnOnce(&Value)) -> Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v)?);
        } else {
            human(v);
        }
        Ok(ExitCode::SUCCESS)
    }

    fn run(&self, cmd: FleetCmd) -> Result<ExitCode> {
        match cmd {
            FleetCmd::Repos => {
                let v = self.call("GET", &["api", "v1", "repos"], None)?;
                self.show(&v, |v| {
                    table_of(
                        v,
                        &["REPOSITORY", "VERSION", "PUBLISHED", "BY"],
                        |r| {
                            let p = &r["last_publish"];
                            vec![
                                text(&r["name"]),
                                text(&p["version"]),
                                when(&p["published_at"]),
                                text(&p["published_by"]),
                            ]
                        },
                        "no repositories (or none your scopes name)",
                    )
                })
            }
            FleetCmd::Tokens {
                group,
                environment,
                ttl,
                count,
            } => {
                let v = self.fleet(
                    "POST",
                    &["enrolment-tokens"],
                    Some(json!({"group": group, "environment": environment,
                                "ttl_seconds": ttl, "count": count})),
                )?;
                self.show(&v, |v| {
                    for t in v["tokens"].as_array().into_iter().flatten() {
                        println!("{}", text(t));
                    }
                    eprintln!(
                        "{} token(s) for group {}, valid until {}; shown once, single use",
                        v["tokens"].as_array().map_or(0, Vec::len),
                        text(&v["group"]),
                        when(&v["expires_at"])
                    );
                })
            }
            FleetCmd::Devices(f) => self.devices(&f),
            FleetCmd::Device { id, proofs: p } => {
                let mut v = self.fleet("GET", &["devices", &id], None)?;
                let failed = proofs::prove_reports(&self.api, &p, &mut v)?;
                self.show(&v, print_device)?;
                if failed > 0 {
                    eprintln!(
                        "error: {failed} install report(s) of device {id} did not verify against the log"
                    );
                    return Ok(ExitCode::from(1));
                }
                Ok(ExitCode::SUCCESS)
            }
            FleetCmd::Suspend(a) => self.device_action(&a, "suspend", "suspended"),
            FleetCmd::Resume(a) => self.device_action(&a, "resume", "resumed"),
            FleetCmd::Decommission(a) => self.device_action(&a, "decommission", "decommissioned"),
            FleetCmd::Pin {
                id,
                target,
                release_counter,
                reason,
            } => {
                let v = self.fleet(
                    "PUT",
                    &["devices", &id, "pin"],
                    Some(json!({"target": target, "release_counter": release_counter, "reason": reason})),
                )?;
                self.show(&v, |v| println!("device {id} pinned to {}", deployed(v)))
            }
            FleetCmd::Unpin { id } => {
                let v = self.fleet("DELETE", &["devices", &id, "pin"], None)?;
                self.show(&v, |_| println!("device {id} unpinned"))
            }
            FleetCmd::Rollout(r) => self.rollout(r),
            FleetCmd::Yank {
                target,
                repo,
                replacement,
                replacement_release_counter,
                reason,
            } => {
                let v = self.call(
                    "POST",
                    &["api", "v1", "repos", &repo, "yanks"],
                    Some(json!({"target": target, "replacement": replacement,
                        "replacement_release_counter": replacement_release_counter,
                        "reason": reason})),
                )?;
                self.show(&v, |v| {
                    println!(
                        "yanked {} from {}: the next publish leaves it out",
                        text(&v["target"]),
                        text(&v["repo"])
                    );
                    if v["replacement"].is_object() {
                        let remediate = v["remediation"].as_array().map_or(0, Vec::len);
                        println!(
                            "replacement {}: {remediate} device(s) running it get it at their next check-in; {} device(s) ever ran the yanked target",
                            deployed(&v["replacement"]),
                            v["installed"].as_array().map_or(0, Vec::len)
                        );
                    }
                })
            }
            FleetCmd::Yanks { repo } => {
                let v = self.call("GET", &["api", "v1", "repos", &repo, "yanks"], None)?;
                self.show(&v, |v| {
                    table_of(
                        v,
                        &["ID", "TARGET", "REPLACEMENT", "WHEN", "BY", "REASON"],
                        |y| {
                            vec![
                                text(&y["id"]),
                                text(&y["target"]),
                                if y["replacement"].is_object() {
                                    deployed(&y["replacement"])
                                } else {
                                    "-".into()
                                },
                                when(&y["requested_at"]),
                                text(&y["requested_by"]),
                                text(&y["reason"]),
                            ]
                        },
                        "no yanks",
                    )
                })
            }
            FleetCmd::Installs { target } => {
                let mut url = self.api.url(&["api", "v1", "fleet", "installs"]);
                url.query_pairs_mut().append_pair("target", &target);
                let v = self.call_url("GET", url, None)?;
                self.show(&v, |v| {
                    table_of(
                        v,
                        &["DEVICE", "TARGET", "FIRST SEEN", "REPORT"],
                        |r| {
                            vec![
                                text(&r["device_id"]),
                                deployed(r),
                                when(&r["first_seen"]),
                                text(&r["report_counter"]),
                            ]
                        },
                        "no device ever ran it",
                    )
                })
            }
            FleetCmd::Attacks { device, limit } => {
                let mut url = self.api.url(&["api", "v1", "fleet", "attacks"]);
                url.query_pairs_mut()
                    .append_pair("limit", &limit.to_string());
                if let Some(d) = &device {
                    url.query_pairs_mut().append_pair("device", d);
                }
                let v = self.call_url("GET", url, None)?;
                self.show(&v, |v| {
                    table_of(
                        v,
                        &["WHEN", "DEVICE", "SOURCE", "CODE", "DETAIL"],
                        |a| {
                            vec![
                                when(&a["at"]),
                                a["device_id"].as_str().map_or("-".into(), short),
                                text(&a["source"]),
                                text(&a["code"]),
                                text(&a["detail"]),
                            ]
                        },
                        "no attacks recorded",
                    )
                })
            }
            FleetCmd::RollbackAuth(RollbackCmd::File { file }) => {
                let bytes = crate::repo::read_limited(&file, 1 << 20)?;
                let body: Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: not JSON", file.display()))?;
                let v = self.fleet("POST", &["rollback-authorizations"], Some(body))?;
                self.show(&v, |v| {
                    println!(
                        "rollback authorisation filed: {} may go back to release {} on {} device(s) until {}",
                        text(&v["target"]),
                        text(&v["release_counter"]),
                        text(&v["devices"]),
                        when(&v["expires"])
                    )
                })
            }
            FleetCmd::RollbackAuth(RollbackCmd::List) => {
                let v = self.fleet("GET", &["rollback-authorizations"], None)?;
                self.show(&v, |v| println!("{}", pretty(v)))
            }
            FleetCmd::Credential(c) => self.credential(c),
            FleetCmd::Audit {
                limit,
                before,
                repo,
            } => {
                let mut url = self.api.url(&["api", "v1", "audit"]);
                url.query_pairs_mut()
                    .append_pair("limit", &limit.to_string());
                if let Some(b) = before {
                    url.query_pairs_mut().append_pair("before", &b.to_string());
                }
                if let Some(r) = &repo {
                    url.query_pairs_mut().append_pair("repo", r);
                }
                let v = self.call_url("GET", url, None)?;
                self.show(&v, |v| {
                    table_of(
                        v,
                        &["ID", "WHEN", "WHO", "ACTION", "ABOUT", "OUTCOME", "DETAIL"],
                        |r| {
                            let about = [&r["repo"], &r["target"]]
                                .iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(" ");
                            vec![
                                text(&r["id"]),
                                when(&r["at"]),
                                text(&r["identity"]),
                                text(&r["action"]),
                                if about.is_empty() { "-".into() } else { about },
                                text(&r["outcome"]),
                                text(&r["detail"]),
                            ]
                        },
                        "no audit records",
                    )
                })
            }
            FleetCmd::Whoami => {
                let v = self.call("GET", &["api", "v1", "whoami"], None)?;
                self.show(&v, |v| println!("{}", pretty(v)))
            }
        }
    }

    fn devices(&self, f: &DeviceFilter) -> Result<ExitCode> {
        let mut all = Vec::new();
        let mut after = f.after.clone();
        loop {
            let mut url = self.api.url(&["api", "v1", "fleet", "devices"]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &f.limit.to_string());
                for (k, v) in [
                    ("hardware_id", &f.hardware_id),
                    ("group", &f.group),
                    ("environment", &f.environment),
                    ("tag", &f.tag),
                    ("status", &f.status),
                    ("target", &f.target),
                    ("after", &after),
                ] {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
                if f.drift {
                    q.append_pair("drift", "true");
                }
            }
            let page = self.call_url("GET", url, None)?;
            let rows = page.as_array().cloned().unwrap_or_default();
            let full = rows.len() as u64 >= u64::from(f.limit);
            after = rows
                .last()
                .and_then(|r| r["id"].as_str())
                .map(str::to_owned);
            all.extend(rows);
            if !f.all || !full || after.is_none() {
                break;
            }
        }
        let now = chrono::Utc::now().timestamp();
        let v = Value::Array(all);
        self.show(&v, |v| {
            table_of(
                v,
                &[
                    "DEVICE",
                    "HARDWARE",
                    "GROUP",
                    "ENV",
                    "STATUS",
                    "INSTALLED",
                    "ASSIGNED",
                    "DRIFT",
                    "LAST SEEN",
                ],
                |d| {
                    vec![
                        short(d["id"].as_str().unwrap_or("?")),
                        text(&d["hardware_id"]),
                        text(&d["group"]),
                        text(&d["environment"]),
                        text(&d["effective_status"]),
                        deployed(&d["installed"]),
                        deployed(&d["assigned"]),
                        if d["drift"].as_bool() == Some(true) {
                            "yes".into()
                        } else {
                            String::new()
                        },
                        ago(&d["last_checkin"], now),
                    ]
                },
                "no devices match",
            );
            if !f.all
                && v.as_array()
                    .is_some_and(|a| a.len() as u64 >= u64::from(f.limit))
            {
                eprintln!("(first {} shown; --all for every page)", f.limit);
            }
        })
    }

    fn device_action(&self, a: &IdReason, action: &str, done: &str) -> Result<ExitCode> {
        let id = &a.id;
        let v = self.fleet("POST", &["devices", id, action], a.body())?;
        self.show(&v, |v| {
            println!(
                "device {id} {done}; status now {}",
                text(&v["effective_status"])
            )
        })
    }

    fn rollout(&self, cmd: RolloutCmd) -> Result<ExitCode> {
        let (a, action) = match cmd {
            RolloutCmd::Create(a) => {
                let v = self.fleet("POST", &["rollouts"], Some(a.body()?))?;
                return self.show(&v, rollout::print_status);
            }
            RolloutCmd::List => {
                let v = self.fleet("GET", &["rollouts"], None)?;
                return self.show(&v, |v| {
                    table_of(
                        v,
                        &[
                            "ROLLOUT",
                            "TARGET",
                            "STATE",
                            "STAGE",
                            "INSTALLED",
                            "CREATED",
                        ],
                        |r| {
                            vec![
                                text(&r["id"]),
                                format!("{}@{}", text(&r["target"]), text(&r["release_counter"])),
                                text(&r["state"]),
                                format!(
                                    "{}/{}",
                                    r["stage"].as_u64().unwrap_or(0) + 1,
                                    r["stages"].as_array().map_or(0, Vec::len)
                                ),
                                format!(
                                    "{}/{}",
                                    text(&r["installed_devices"]),
                                    text(&r["selected_devices"])
                                ),
                                when(&r["created_at"]),
                            ]
                        },
                        "no rollouts",
                    )
                });
            }
            RolloutCmd::Status { id } => {
                let v = self.fleet("GET", &["rollouts", &id], None)?;
                return self.show(&v, rollout::print_status);
            }
            RolloutCmd::Watch {
                id,
                interval,
                exit_on_pause,
            } => {
                return rollout::watch(
                    || self.fleet("GET", &["rollouts", &id], None),
                    Duration::from_secs(interval.max(1)),
                    exit_on_pause,
                );
            }
            RolloutCmd::Pause(a) => (a, "pause"),
            RolloutCmd::Resume(a) => (a, "resume"),
            RolloutCmd::Abort(a) => (a, "abort"),
        };
        let v = self.fleet("POST", &["rollouts", &a.id, action], a.body())?;
        self.show(&v, rollout::print_status)
    }

    fn credential(&self, cmd: CredentialCmd) -> Result<ExitCode> {
        let secret = |v: &Value| {
            println!("{}", text(&v["secret"]));
            eprintln!(
                "credential {} ({}), scopes {}; the secret above is shown once",
                text(&v["id"]),
                text(&v["name"]),
                v["scopes"]
            );
        };
        match cmd {
            CredentialCmd::Create { name, scopes } => {
                let v = self.call(
                    "POST",
                    &["api", "v1", "credentials"],
                    Some(json!({"name": name, "scopes": scopes})),
                )?;
                self.show(&v, secret)
            }
            CredentialCmd::List => {
                let v = self.call("GET", &["api", "v1", "credentials"], None)?;
                self.show(&v, |v| {
                    table_of(
                        v,
                        &["ID", "NAME", "GENERATION", "CREATED", "REVOKED", "SCOPES"],
                        |c| {
                            vec![
                                text(&c["id"]),
                                text(&c["name"]),
                                text(&c["generation"]),
                                when(&c["created_at"]),
                                when(&c["revoked_at"]),
                                c["scopes"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(text)
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ]
                        },
                        "no credentials",
                    )
                })
            }
            CredentialCmd::Rotate { id } => {
                let v = self.call("POST", &["api", "v1", "credentials", &id, "rotate"], None)?;
                self.show(&v, secret)
            }
            CredentialCmd::Revoke { id } => {
                let v = self.call("POST", &["api", "v1", "credentials", &id, "revoke"], None)?;
                self.show(&v, |_| {
                    println!("credential {id} revoked; its tokens stop working at once")
                })
            }
        }
    }
}

/// A table of the array `v`, one row per element; `empty` when it has none.
fn table_of(v: &Value, header: &[&'static str], row: impl Fn(&Value) -> Vec<String>, empty: &str) {
    let mut t = Table::new(header);
    for x in v.as_array().into_iter().flatten() {
        t.row(row(x));
    }
    if t.is_empty() {
        println!("{empty}");
    } else {
        t.print();
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// One device as text.
fn print_device(v: &Value) {
    let now = chrono::Utc::now().timestamp();
    println!("device {}", text(&v["id"]));
    let status = match v["status_reason"].as_str() {
        Some(r) => format!("{} ({r})", text(&v["effective_status"])),
        None => text(&v["effective_status"]),
    };
    for (k, val) in [
        ("hardware", text(&v["hardware_id"])),
        ("group", text(&v["group"])),
        ("environment", text(&v["environment"])),
        ("status", status),
        ("enrolled", when(&v["enrolled_at"])),
        ("last seen", ago(&v["last_checkin"], now)),
        ("installed", deployed(&v["installed"])),
        ("assigned", deployed(&v["assigned"])),
        ("pinned to", deployed(&v["pinned_to"])),
        ("decision now", text(&v["assignment_now"])),
    ] {
        println!("  {k:<13}{val}");
    }
    let key = match v["log_key_pinned"].as_bool() {
        Some(true) => " (log entries checked against --log-key)",
        Some(false) => " (log entries checked against the key the server serves)",
        None => "",
    };
    println!("\ninstall reports (newest first){key}:");
    table_of(
        &v["reports"],
        &[
            "DEVICE TIME",
            "OUTCOME",
            "TARGET",
            "ROLLOUT",
            "REASON",
            "LOG",
        ],
        |r| {
            vec![
                when(&r["device_time"]),
                text(&r["outcome"]),
                format!("{}@{}", text(&r["target"]), text(&r["release_counter"])),
                text(&r["rollout_id"]),
                text(&r["reason"]),
                proofs::cell(r),
            ]
        },
        "  none",
    );
    println!("\nattacks (newest first):");
    table_of(
        &v["attacks"],
        &["WHEN", "SOURCE", "CODE", "DETAIL"],
        |a| {
            vec![
                when(&a["at"]),
                text(&a["source"]),
                text(&a["code"]),
                text(&a["detail"]),
            ]
        },
        "  none",
    );
}
