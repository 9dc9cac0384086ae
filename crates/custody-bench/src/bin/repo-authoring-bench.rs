//! `repo-authoring-bench`: create, sign and publish a hash-binned TUF
//! repository with custody's library API, then add one target, against
//! python-tuf's Metadata API doing the same (scripts/bench/py_repo_authoring.py,
//! run first in the same invocation).
//!
//! Same inputs on both sides: python generates and hashes N target contents
//! (untimed) and writes (name, length, sha256) to `entries.jsonl`; custody
//! reads those lines (untimed). Neither side hashes target files in the
//! timed part: at this scale the digests come from the upload.
//!
//! custody side (in-memory Ed25519 keys, `custody_keys::MemorySigner`: key
//! file decryption is a one-off cost that says nothing about authoring):
//! 1. create: `init` + `hash_bins` (2^bit_length bins) +
//!    `add_target_entries` (sign every changed role) + `save` (strict
//!    parse-back, staged write, one syncfs);
//! 2. publish: custody-tuf's client workflow over every published file,
//!    new generation, symlink switch;
//! 3. add one target, stateless like a CI job: `open`, add one entry,
//!    re-sign, `save`, `publish`, reporting the bytes rewritten.
//!
//! Goals: create + sign + publish >= 10x faster than python-tuf's create;
//! add-one-target bytes rewritten O(one bin). Wall and CPU time are printed
//! (the machine is shared).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Parser;
use custody_bench::{python, workspace_root, Machine};
use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use custody_repo::keyring::{KeyLocation, KeyRing};
use custody_repo::policy::ExpiryPolicy;
use custody_repo::repository::{InitOptions, RoleInit, TargetEntry};
use custody_repo::Repository;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    about = "custody repository authoring (create/sign/publish, add one target) vs python-tuf"
)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    targets: usize,
    #[arg(long, default_value_t = 8)]
    bit_length: u32,
    /// Parent of the temporary work directory (default: system temp).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Python with python-tuf (default CUSTODY_PYTHON or <workspace>/.venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Do not run the python-tuf baseline.
    #[arg(long)]
    skip_python: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Custody {
    keys: &'static str,
    init_and_bins_seconds: f64,
    add_targets_seconds: f64,
    save_seconds: f64,
    publish_seconds: f64,
    create_sign_publish_seconds: f64,
    create_cpu_seconds: f64,
    create_files_written: usize,
    create_bytes_written: u64,
    add_one: AddOne,
}

#[derive(Serialize)]
struct AddOne {
    role: String,
    open_seconds: f64,
    add_and_sign_seconds: f64,
    save_seconds: f64,
    publish_seconds: f64,
    total_seconds: f64,
    cpu_seconds: f64,
    staged_files_written: Vec<String>,
    staged_bytes_written: u64,
    publish_new_files: Vec<String>,
    publish_bytes_written: u64,
    publish_new_bytes: u64,
    publish_files_linked: usize,
    bin_bytes: u64,
}

#[derive(Serialize)]
struct Report {
    bench: &'static str,
    machine: Machine,
    targets: usize,
    bins: usize,
    custody: Custody,
    python_tuf: Option<serde_json::Value>,
    create_speedup_vs_python: Option<f64>,
}

/// CPU time of this process so far (user + system, all threads).
fn cpu_now() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

fn secs(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

type KeyEntry = (custody_tuf::Key, String, KeyLocation);

fn keys(ring: &mut KeyRing) -> Result<(BTreeMap<String, RoleInit>, Vec<KeyEntry>)> {
    let mut entry = || -> Result<KeyEntry> {
        let s = MemorySigner::generate_ed25519()?;
        let e = (s.key().clone(), s.keyid().to_owned(), KeyLocation::Offline);
        ring.add(Box::new(s));
        Ok(e)
    };
    let mut roles = BTreeMap::new();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        roles.insert(
            role.to_owned(),
            RoleInit {
                keys: vec![entry()?],
                threshold: 1,
            },
        );
    }
    let bins = vec![entry()?];
    Ok((roles, bins))
}

fn staged_mtimes(dir: &Path) -> Result<BTreeMap<String, std::time::SystemTime>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("metadata"))? {
        let e = e?;
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            e.metadata()?.modified()?,
        );
    }
    Ok(out)
}

/// The N inputs: (name, length, sha256) as python's script hashed them
/// (`--entries-out`), or, with --skip-python, the same names with synthetic
/// digests (same metadata shape and size).
fn load_entries(path: Option<&Path>, n: usize) -> Result<Vec<TargetEntry>> {
    if let Some(p) = path {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return text
            .lines()
            .map(|l| serde_json::from_str::<TargetEntry>(l).context("entry line"))
            .collect();
    }
    Ok((0..n)
        .map(|i| {
            let name = format!(
                "packages/pkg-{i:06}/pkg-{i:06}-1.{}.{}.tar.gz",
                i % 7,
                i % 13
            );
            let sha = custody_tuf::crypto::sha256_hex(name.as_bytes());
            TargetEntry {
                length: 1024 + (i as u64 * 7919) % (15 * 1024 + 1),
                hashes: [("sha256".to_owned(), sha)].into(),
                custom: None,
                provenance: None,
                name,
            }
        })
        .collect())
}

fn staged_sizes(dir: &Path, names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join("metadata").join(n)).ok())
        .map(|m| m.len())
        .sum()
}

fn run_custody(args: &Args, work: &Path, entries: Vec<TargetEntry>) -> Result<Custody> {
    let dir = work.join("repo");
    let out = work.join("published");
    let mut ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
    let (roles, bin_keys) = keys(&mut ring)?;
    let now = Utc::now();
    let extra = extra_entry();
    let cpu0 = cpu_now();
    let total = Instant::now();
    let t = Instant::now();
    let opts = InitOptions {
        roles,
        expiry: ExpiryPolicy::default(),
        consistent_snapshot: true,
        allow_shared_keys: false,
    };
    let mut repo = Repository::init(&dir, opts, &mut ring, now)?;
    repo.save()?;
    repo.hash_bins(
        "targets",
        "bin",
        args.bit_length,
        &bin_keys,
        1,
        &mut ring,
        now,
    )?;
    let init_and_bins_seconds = secs(t);
    let t = Instant::now();
    repo.add_target_entries(entries, &mut ring, now)?;
    let add_targets_seconds = secs(t);
    let t = Instant::now();
    repo.save()?;
    let save_seconds = secs(t);
    let t = Instant::now();
    let first = repo.publish_with_stats(&out, now)?;
    let publish_seconds = secs(t);
    let create_sign_publish_seconds = secs(total);
    let create_cpu_seconds = ((cpu_now() - cpu0) * 1000.0).round() / 1000.0;
    drop(repo);

    // Add one target, stateless (a CI job: open, add, sign, save, publish).
    let before = staged_mtimes(&dir)?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let cpu1 = cpu_now();
    let total = Instant::now();
    let t = Instant::now();
    let mut repo = Repository::open(&dir)?;
    let open_seconds = secs(t);
    let t = Instant::now();
    let added = repo.add_target_entries(vec![extra], &mut ring, now)?;
    let add_and_sign_seconds = secs(t);
    let t = Instant::now();
    repo.save()?;
    let save1 = secs(t);
    let t = Instant::now();
    let second = repo.publish_with_stats(&out, now)?;
    let publish1 = secs(t);
    let total1 = secs(total);
    let cpu_seconds = ((cpu_now() - cpu1) * 1000.0).round() / 1000.0;
    let staged_files_written: Vec<String> = staged_mtimes(&dir)?
        .into_iter()
        .filter(|(n, m)| before.get(n) != Some(m))
        .map(|(n, _)| n)
        .collect();
    let staged_bytes_written = staged_sizes(&dir, &staged_files_written);
    let role = added
        .first()
        .map(|(_, r)| r.clone())
        .context("add_target_entries added nothing")?;
    let bin_version = repo
        .targets_role(&role)
        .context("bin role missing")?
        .signed
        .version;
    let bin_bytes = std::fs::metadata(out.join(format!("{bin_version}.{role}.json")))?.len();
    Ok(Custody {
        keys: "in-memory Ed25519 (custody_keys::MemorySigner, ring)",
        init_and_bins_seconds,
        add_targets_seconds,
        save_seconds,
        publish_seconds,
        create_sign_publish_seconds,
        create_cpu_seconds,
        create_files_written: first.files_written.len() + first.linked_from_staging.len(),
        create_bytes_written: first.bytes_written + first.bytes_linked_from_staging,
        add_one: AddOne {
            role,
            open_seconds,
            add_and_sign_seconds,
            save_seconds: save1,
            publish_seconds: publish1,
            total_seconds: total1,
            cpu_seconds,
            staged_files_written,
            staged_bytes_written,
            publish_new_files: second
                .files_written
                .iter()
                .chain(&second.linked_from_staging)
                .cloned()
                .collect(),
            publish_bytes_written: second.bytes_written,
            publish_new_bytes: second.bytes_written + second.bytes_linked_from_staging,
            publish_files_linked: second.files_linked,
            bin_bytes,
        },
    })
}

/// The one target of the add-one step.
fn extra_entry() -> TargetEntry {
    let name = "packages/extra/extra-1.0.0.tar.gz".to_owned();
    TargetEntry {
        length: 4242,
        hashes: [(
            "sha256".to_owned(),
            custody_tuf::crypto::sha256_hex(name.as_bytes()),
        )]
        .into(),
        custom: None,
        provenance: None,
        name,
    }
}

fn run_python(args: &Args, work: &Path, entries_out: &Path) -> Result<serde_json::Value> {
    let ws = workspace_root(args.workspace.as_deref());
    let py = python(args.python.as_deref(), &ws)?;
    let script = ws.join("scripts/bench/py_repo_authoring.py");
    let out = Command::new(&py)
        .arg(&script)
        .args(["--targets", &args.targets.to_string()])
        .args(["--bit-length", &args.bit_length.to_string()])
        .arg("--work-dir")
        .arg(work)
        .arg("--entries-out")
        .arg(entries_out)
        .output()
        .with_context(|| format!("running {} {}", py.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("py_repo_authoring.py printed no JSON")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let machine = Machine::probe();
    let tmp = match &args.work_dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    // python-tuf first: it hashes the N contents (untimed) and hands the
    // same (name, length, sha256) inputs to custody.
    let entries_file = tmp.path().join("entries.jsonl");
    let python_tuf = if args.skip_python {
        None
    } else {
        Some(run_python(&args, tmp.path(), &entries_file)?)
    };
    let entries = load_entries(
        (!args.skip_python).then_some(entries_file.as_path()),
        args.targets,
    )?;
    let custody = run_custody(&args, tmp.path(), entries)?;
    let create_speedup_vs_python = python_tuf
        .as_ref()
        .and_then(|p| p.pointer("/create/total_seconds_excluding_contents"))
        .and_then(|v| v.as_f64())
        .map(|py| (py / custody.create_sign_publish_seconds.max(1e-6) * 10.0).round() / 10.0);
    let report = Report {
        bench: "repo-authoring-bench",
        machine,
        targets: args.targets,
        bins: 1usize << args.bit_length,
        custody,
        python_tuf,
        create_speedup_vs_python,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let c = &report.custody;
    println!(
        "repo-authoring-bench: {} targets, {} bins, load average {}",
        report.targets, report.bins, report.machine.load_average
    );
    println!("custody ({})", c.keys);
    println!(
        "  init + hash bins                         {:>8.3} s",
        c.init_and_bins_seconds
    );
    println!(
        "  add target entries + sign bins, snapshot, timestamp {:>8.3} s",
        c.add_targets_seconds
    );
    println!(
        "  save                                     {:>8.3} s",
        c.save_seconds
    );
    println!(
        "  publish (client workflow over all, new generation) {:>8.3} s",
        c.publish_seconds
    );
    println!(
        "  create + sign + publish                  {:>8.3} s, cpu {:.3} s ({} files, {} bytes)",
        c.create_sign_publish_seconds,
        c.create_cpu_seconds,
        c.create_files_written,
        c.create_bytes_written
    );
    let a = &c.add_one;
    println!(
        "  add one target (open {:.3} + add/sign {:.3} + save {:.3} + publish {:.3}) {:.3} s, cpu {:.3} s",
        a.open_seconds,
        a.add_and_sign_seconds,
        a.save_seconds,
        a.publish_seconds,
        a.total_seconds,
        a.cpu_seconds
    );
    println!(
        "    save rewrote {:?} = {} bytes",
        a.staged_files_written, a.staged_bytes_written
    );
    println!(
        "    publish: new files {:?} = {} bytes ({} written, the rest linked from staging; bin {} is {} bytes), {} files linked in all",
        a.publish_new_files,
        a.publish_new_bytes,
        a.publish_bytes_written,
        a.role,
        a.bin_bytes,
        a.publish_files_linked
    );
    if let Some(p) = &report.python_tuf {
        let g = |ptr: &str| p.pointer(ptr).cloned().unwrap_or(serde_json::Value::Null);
        println!("python-tuf {}", g("/python_tuf"));
        println!(
            "  create (build+sign+write, excluding contents) {} s, cpu {} s, {} bytes",
            g("/create/total_seconds_excluding_contents"),
            g("/create/cpu_seconds_excluding_contents"),
            g("/create/bytes_written")
        );
        println!(
            "  add one target from disk {} s, cpu {} s, {} bytes",
            g("/add_one_target_from_disk/total_seconds"),
            g("/add_one_target_from_disk/cpu_seconds"),
            g("/add_one_target_from_disk/bytes_written")
        );
    }
    if let Some(s) = report.create_speedup_vs_python {
        println!("create+sign+publish speedup vs python-tuf: {s}x (goal >= 10x)");
    }
    Ok(())
}
