//! `repo-authoring-bench`: create, sign and publish a hash-binned TUF
//! repository with custody's library API, then add one target, against
//! python-tuf's Metadata API doing the same (scripts/bench/py_repo_authoring.py),
//! at two sizes in one run:
//!
//! - 100,000 targets in 256 bins (`--targets`, `--bit-length`): python
//!   generates and hashes the contents (untimed) and writes (name, length,
//!   sha256) to `entries.jsonl`; custody reads those lines (untimed);
//! - 2,500,000 targets in 16,384 bins (`--large-targets`,
//!   `--large-bit-length`; `--skip-large` to leave it out): the same
//!   (name, length, sha256) lines for both sides, written by this bench
//!   (digests of the names: generating 20 GB of contents says nothing about
//!   authoring). python-tuf is stopped after `--python-timeout` seconds and
//!   the size it reached is reported.
//!
//! Neither side hashes target files in the timed part: at this scale the
//! digests come from the upload.
//!
//! custody side (in-memory Ed25519 keys, `custody_keys::MemorySigner`: key
//! file decryption is a one-off cost that says nothing about authoring;
//! the system allocator: with mimalloc, the `custody` binary's allocator,
//! create+sign+publish of 100k targets took ~40% more CPU, most of it in
//! publish), each size in its own child process so that its peak RSS is
//! its own:
//! 1. create: `init` + `hash_bins` (2^bit_length bins) +
//!    `add_target_entries` (sign every changed role) + `save` (staged
//!    write, one syncfs);
//! 2. publish: custody-tuf's client workflow over every published file,
//!    new generation, symlink switch;
//! 3. add one target, stateless like a CI job: `open`, add one entry,
//!    re-sign, `save`, `publish`, reporting the bytes rewritten.
//!
//! Wall and CPU time are printed (the machine is shared), and peak RSS.
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
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(
    about = "custody repository authoring (create/sign/publish, add one target) vs python-tuf"
)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    targets: usize,
    #[arg(long, default_value_t = 8)]
    bit_length: u32,
    /// Targets of the large repository.
    #[arg(long, default_value_t = 2_500_000)]
    large_targets: usize,
    /// Bins of the large repository: 2^N.
    #[arg(long, default_value_t = 14)]
    large_bit_length: u32,
    /// Leave out the large repository.
    #[arg(long)]
    skip_large: bool,
    /// Stop python-tuf after this many seconds (large repository) and
    /// report how far it got.
    #[arg(long, default_value_t = 600)]
    python_timeout: u64,
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
    /// (internal) run custody's side only, on these entries, in this work
    /// directory, and print its JSON report.
    #[arg(long, hide = true)]
    child_entries: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Custody {
    keys: String,
    init_and_bins_seconds: f64,
    add_targets_seconds: f64,
    save_seconds: f64,
    publish_seconds: f64,
    create_sign_publish_seconds: f64,
    create_cpu_seconds: f64,
    create_files_written: usize,
    create_bytes_written: u64,
    /// peak resident set of the child process that did all of it
    peak_rss_mib: f64,
    add_one: AddOne,
}

#[derive(Serialize, Deserialize)]
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
struct Size {
    targets: usize,
    bins: usize,
    custody: Custody,
    python_tuf: Option<serde_json::Value>,
    create_speedup_vs_python: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    bench: &'static str,
    machine: Machine,
    sizes: Vec<Size>,
}

/// Peak resident set size of this process (MiB).
fn peak_rss_mib() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| (u.max_rss() as f64 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
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

/// The N inputs, as `entries.jsonl` lines of (name, length, sha256).
fn load_entries(p: &Path) -> Result<Vec<TargetEntry>> {
    use std::io::BufRead;
    let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    std::io::BufReader::new(f)
        .lines()
        .map(|l| serde_json::from_str::<TargetEntry>(&l?).context("entry line"))
        .collect()
}

/// Write N synthetic inputs (package-like names, the sha256 of the name as
/// digest, lengths between 1 KiB and 16 KiB): the same metadata shape and
/// size as hashed contents, for both sides.
fn write_synthetic_entries(p: &Path, n: usize) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(p)?);
    for i in 0..n {
        let name = format!(
            "packages/pkg-{i:06}/pkg-{i:06}-1.{}.{}.tar.gz",
            i % 7,
            i % 13
        );
        let sha = custody_tuf::crypto::sha256_hex(name.as_bytes());
        let length = 1024 + (i as u64 * 7919) % (15 * 1024 + 1);
        writeln!(
            w,
            "{{\"name\":\"{name}\",\"length\":{length},\"hashes\":{{\"sha256\":\"{sha}\"}}}}"
        )?;
    }
    w.flush()?;
    Ok(())
}

fn staged_sizes(dir: &Path, names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join("metadata").join(n)).ok())
        .map(|m| m.len())
        .sum()
}

fn run_custody(bit_length: u32, work: &Path, entries: Vec<TargetEntry>) -> Result<Custody> {
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
    repo.hash_bins("targets", "bin", bit_length, &bin_keys, 1, &mut ring, now)?;
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
        keys: "in-memory Ed25519 (custody_keys::MemorySigner, ring)".into(),
        init_and_bins_seconds,
        add_targets_seconds,
        save_seconds,
        publish_seconds,
        create_sign_publish_seconds,
        create_cpu_seconds,
        create_files_written: first.files_written.len() + first.linked_from_staging.len(),
        create_bytes_written: first.bytes_written + first.bytes_linked_from_staging,
        peak_rss_mib: peak_rss_mib(),
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

/// python-tuf's run: `entries` is read (`Some(true)`: written by this
/// bench) or written by the script from the contents it hashes. Stopped
/// after `timeout`: then the JSON says how far it got (its last progress
/// line) and its peak RSS so far.
fn run_python(
    args: &Args,
    targets: usize,
    bit_length: u32,
    work: &Path,
    entries: &Path,
    entries_given: bool,
    timeout: Option<std::time::Duration>,
) -> Result<serde_json::Value> {
    use std::io::Read;
    let ws = workspace_root(args.workspace.as_deref());
    let py = python(args.python.as_deref(), &ws)?;
    let script = ws.join("scripts/bench/py_repo_authoring.py");
    let mut cmd = Command::new(&py);
    cmd.arg(&script)
        .args(["--targets", &targets.to_string()])
        .args(["--bit-length", &bit_length.to_string()])
        .arg("--work-dir")
        .arg(work)
        .arg(if entries_given {
            "--entries-in"
        } else {
            "--entries-out"
        })
        .arg(entries);
    let stdout_path = work.join("python.out");
    let stderr_path = work.join("python.err");
    cmd.stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {} {}", py.display(), script.display()))?;
    let started = Instant::now();
    let mut hwm_kib = 0u64;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        // peak RSS so far, read while it runs (for a run that is stopped)
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(v) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                hwm_kib = hwm_kib.max(v);
            }
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let mut err = String::new();
    std::fs::File::open(&stderr_path)?.read_to_string(&mut err)?;
    match status {
        None => {
            let last = err
                .lines()
                .rev()
                .find(|l| l.starts_with("progress"))
                .unwrap_or("no progress line")
                .to_owned();
            Ok(serde_json::json!({
                "stopped_after_seconds": started.elapsed().as_secs(),
                "reached": last,
                "peak_rss_mib": (hwm_kib as f64 / 1024.0).round(),
            }))
        }
        Some(st) if !st.success() => bail!("{} failed: {err}", script.display()),
        Some(_) => {
            let out = std::fs::read(&stdout_path)?;
            serde_json::from_slice(&out).context("py_repo_authoring.py printed no JSON")
        }
    }
}

/// custody's side of one size, in a child process (its own peak RSS).
fn run_custody_child(bit_length: u32, work: &Path, entries: &Path) -> Result<Custody> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["--bit-length", &bit_length.to_string()])
        .arg("--work-dir")
        .arg(work)
        .arg("--child-entries")
        .arg(entries)
        .output()?;
    if !out.status.success() {
        bail!(
            "custody side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("custody side printed no JSON")
}

fn speedup(py: Option<&serde_json::Value>, ptr: &str, custody: f64) -> Option<f64> {
    py.and_then(|p| p.pointer(ptr))
        .and_then(|v| v.as_f64())
        .map(|py| (py / custody.max(1e-6) * 10.0).round() / 10.0)
}

fn run_size(
    args: &Args,
    work: &Path,
    targets: usize,
    bit_length: u32,
    large: bool,
) -> Result<Size> {
    let dir = work.join(format!("size-{targets}"));
    std::fs::create_dir_all(&dir)?;
    let entries = dir.join("entries.jsonl");
    // 100k: python hashes real contents and hands over the inputs; large:
    // synthetic inputs written here, read by both.
    let given = large || args.skip_python;
    if given {
        write_synthetic_entries(&entries, targets)?;
    }
    let python_tuf = if args.skip_python {
        None
    } else {
        let timeout = large.then(|| std::time::Duration::from_secs(args.python_timeout));
        Some(run_python(
            args, targets, bit_length, &dir, &entries, given, timeout,
        )?)
    };
    let custody_dir = dir.join("custody");
    std::fs::create_dir_all(&custody_dir)?;
    let custody = run_custody_child(bit_length, &custody_dir, &entries)?;
    let _ = std::fs::remove_dir_all(&custody_dir);
    let create_speedup_vs_python = speedup(
        python_tuf.as_ref(),
        "/create/total_seconds_excluding_contents",
        custody.create_sign_publish_seconds,
    );
    Ok(Size {
        targets,
        bins: 1usize << bit_length,
        custody,
        python_tuf,
        create_speedup_vs_python,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(entries) = &args.child_entries {
        let work = args.work_dir.clone().context("--work-dir")?;
        let entries = load_entries(entries)?;
        let c = run_custody(args.bit_length, &work, entries)?;
        println!("{}", serde_json::to_string(&c)?);
        return Ok(());
    }
    let machine = Machine::probe();
    let tmp = match &args.work_dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let mut sizes = vec![run_size(
        &args,
        tmp.path(),
        args.targets,
        args.bit_length,
        false,
    )?];
    if !args.skip_large {
        sizes.push(run_size(
            &args,
            tmp.path(),
            args.large_targets,
            args.large_bit_length,
            true,
        )?);
    }
    let report = Report {
        bench: "repo-authoring-bench",
        machine,
        sizes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "repo-authoring-bench, load average {}",
        report.machine.load_average
    );
    for size in &report.sizes {
        print_size(size);
    }
    Ok(())
}

fn print_size(size: &Size) {
    let c = &size.custody;
    let p = size.python_tuf.as_ref();
    let g = |ptr: &str| {
        p.and_then(|p| p.pointer(ptr))
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!();
    println!(
        "== {} targets in {} bins ({}) ==",
        size.targets, size.bins, c.keys
    );
    println!("{:<44} {:>22} {:>22}", "", "custody", "python-tuf");
    println!(
        "{:<44} {:>22} {:>22}",
        "create+sign+publish wall s",
        format!("{:.3}", c.create_sign_publish_seconds),
        g("/create/total_seconds_excluding_contents")
    );
    println!(
        "{:<44} {:>22} {:>22}",
        "create+sign+publish cpu s",
        format!("{:.3}", c.create_cpu_seconds),
        g("/create/cpu_seconds_excluding_contents")
    );
    println!(
        "{:<44} {:>22} {:>22}",
        "peak RSS MiB (whole run)",
        format!("{:.1}", c.peak_rss_mib),
        g("/peak_rss_mib")
    );
    println!(
        "{:<44} {:>22} {:>22}",
        "bytes written by create",
        c.create_bytes_written,
        g("/create/bytes_written")
    );
    let a = &c.add_one;
    println!(
        "{:<44} {:>22} {:>22}",
        "add one target from disk wall s",
        format!("{:.4}", a.total_seconds),
        g("/add_one_target_from_disk/total_seconds")
    );
    println!(
        "{:<44} {:>22} {:>22}",
        "add one target from disk cpu s",
        format!("{:.4}", a.cpu_seconds),
        g("/add_one_target_from_disk/cpu_seconds")
    );
    println!(
        "{:<44} {:>22} {:>22}",
        "add one: bytes of new metadata files",
        a.publish_new_bytes,
        g("/add_one_target_from_disk/bytes_written")
    );
    if let Some(r) = p.and_then(|p| p.get("reached")) {
        println!(
            "python-tuf stopped after {} s: {}",
            g("/stopped_after_seconds"),
            r
        );
    }
    println!(
        "custody create: init+bins {:.3} s, add entries+sign {:.3} s, save {:.3} s, publish {:.3} s",
        c.init_and_bins_seconds, c.add_targets_seconds, c.save_seconds, c.publish_seconds
    );
    println!(
        "custody add one: open {:.4} + add/sign {:.4} + save {:.4} + publish {:.4} s",
        a.open_seconds, a.add_and_sign_seconds, a.save_seconds, a.publish_seconds
    );
    println!(
        "  save rewrote {:?} = {} bytes",
        a.staged_files_written, a.staged_bytes_written
    );
    println!(
        "  publish: new files {:?} = {} bytes ({} written, the rest linked from staging; bin {} is {} bytes), {} files linked in all",
        a.publish_new_files,
        a.publish_new_bytes,
        a.publish_bytes_written,
        a.role,
        a.bin_bytes,
        a.publish_files_linked
    );
    if let Some(s) = size.create_speedup_vs_python {
        println!("create+sign+publish speedup vs python-tuf: {s}x wall (goal >= 10x)");
    }
    if let Some(s) = speedup(
        p,
        "/add_one_target_from_disk/total_seconds",
        a.total_seconds,
    ) {
        println!("add-one speedup vs python-tuf: {s}x wall (goal >= 10x)");
    }
}
