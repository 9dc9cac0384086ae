//! `stream-verify-bench`: throughput and peak memory of custody's streaming
//! download + SHA-256 verification of a large target, against `sha256sum`.
//!
//! 1. Creates (once, cached) a file of pseudo-random bytes (default 1 GiB).
//! 2. `sha256sum` on it, best of N, the file in the page cache (one unmeasured
//!    warm-up read first).
//! 3. Reference: read + SHA-256 (ring) of the same file inside this process.
//! 4. A one-target TUF repository whose target is that file (make_repo.py
//!    --target-file, target hashes: sha256), served on loopback; cold
//!    `custody client ... download` of it, best of N, under `/usr/bin/time -f %M`
//!    for the peak RSS of the custody process.
//! 5. If custody accepts file:// URLs, the same download from file:// (no HTTP).
//!
//! Goals: custody throughput >= 90% of sha256sum's, peak RSS <= 32 MiB.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use custody_bench::{
    check_output, make_repo, run_measured, run_timed, Machine, Manifest, PeerArgs, Peers, Server,
    Stats, Traffic,
};
use serde::Serialize;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: u64 = 1024 * 1024;

#[derive(Parser, Debug)]
#[command(about = "custody streaming download + verification throughput and peak RSS vs sha256sum")]
struct Args {
    /// Size of the target file in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Measured runs of each tool (best and median reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Parent of the custody target dirs (default /dev/shm if present, so that the
    /// 1 GiB write measures verification, not disk writeback).
    #[arg(long)]
    target_dir_parent: Option<PathBuf>,
    #[command(flatten)]
    peers: PeerArgs,
    /// Only measure sha256sum and the in-process reference (custody pending).
    #[arg(long)]
    baseline_only: bool,
    /// Skip the file:// variant.
    #[arg(long)]
    skip_file_url: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Throughput {
    seconds: Stats,
    /// user + system CPU seconds of the measured process (None for the
    /// in-process reference).
    cpu_seconds: Option<Stats>,
    best_gib_per_s: f64,
    median_gib_per_s: f64,
}

impl Throughput {
    fn of(bytes: u64, secs: &[f64], cpu: &[f64]) -> Option<Throughput> {
        let s = Stats::of(secs)?;
        Some(Throughput {
            cpu_seconds: Stats::of(cpu),
            best_gib_per_s: bytes as f64 / GIB / s.min,
            median_gib_per_s: bytes as f64 / GIB / s.median,
            seconds: s,
        })
    }
}

#[derive(Debug, Serialize)]
struct CustodyResult {
    transport: String,
    throughput: Throughput,
    peak_rss_kib: Option<u64>,
    peak_rss_method: String,
    relative_to_sha256sum_best: f64,
    traffic: Option<Traffic>,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    machine: Machine,
    file: String,
    bytes: u64,
    sha256: String,
    sha256sum: Throughput,
    ring_in_process: Throughput,
    custody_http: Option<CustodyResult>,
    custody_file_url: Option<CustodyResult>,
    file_url_note: Option<String>,
    custody_pending_reason: Option<String>,
    goal_throughput_met: Option<bool>,
    goal_rss_met: Option<bool>,
}

/// splitmix64: a tiny deterministic generator, plenty for incompressible bytes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Creates `path` with `bytes` pseudo-random bytes unless it already has that size.
fn ensure_random_file(path: &Path, bytes: u64) -> Result<()> {
    if std::fs::metadata(path)
        .map(|m| m.len() == bytes)
        .unwrap_or(false)
    {
        return Ok(());
    }
    eprintln!(
        "creating {} ({} MiB of pseudo-random bytes)",
        path.display(),
        bytes / MIB
    );
    let parent = path.parent().context("random file has no parent dir")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let mut rng = SplitMix(0x6375_7374_6f64_7921);
    let mut buf = vec![0u8; MIB as usize];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        let n = usize::try_from(left.min(MIB)).unwrap_or(MIB as usize);
        f.write_all(buf.get(..n).unwrap_or_default())
            .with_context(|| format!("writing {}", tmp.display()))?;
        left -= n as u64;
    }
    f.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

fn ring_hash_file(path: &Path) -> Result<(Duration, String)> {
    let start = Instant::now();
    let hash = custody_bench::sha256_file(path)?;
    Ok((start.elapsed(), hash))
}

fn sha256sum_once(path: &Path) -> Result<(Duration, Duration, String)> {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let m = run_measured(&mut cmd).context("running sha256sum (coreutils)")?;
    let (wall, out) = (m.wall, m.output);
    check_output("sha256sum", &out)?;
    let digest = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((wall, m.cpu, digest))
}

struct CustodyRun {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: Option<u64>,
    traffic: Option<Traffic>,
}

/// Everything one custody download run needs.
struct Job<'a> {
    custody: &'a Path,
    repo: &'a Path,
    target_parent: &'a Path,
    target_name: &'a str,
    sha256: &'a str,
    bytes: u64,
    metadata_url: String,
    target_url: String,
}

/// One cold `custody client download`, wrapped in `/usr/bin/time -f %M` when
/// available. The downloaded file is checked and deleted afterwards.
fn custody_once(job: &Job<'_>, server: Option<&Server>) -> Result<CustodyRun> {
    let Job {
        custody,
        repo,
        target_parent,
        target_name,
        sha256,
        bytes,
        ..
    } = *job;
    let (metadata_url, target_url) = (&job.metadata_url, &job.target_url);
    let tmp = tempfile::Builder::new()
        .prefix("custody-stream-")
        .tempdir_in(target_parent)
        .with_context(|| format!("creating a run dir in {}", target_parent.display()))?;
    let md = tmp.path().join("metadata");
    let td = tmp.path().join("targets");
    std::fs::create_dir_all(&md)?;
    std::fs::create_dir_all(&td)?;
    let mut init = Command::new(custody);
    init.args(["client", "--metadata-dir"])
        .arg(&md)
        .arg("init")
        .arg(repo.join("root.json"));
    let (_, out) = run_timed(&mut init)?;
    check_output("`custody client init`", &out)?;

    let time_bin = Path::new("/usr/bin/time");
    let rss_file = tmp.path().join("rss");
    let mut cmd = if time_bin.is_file() {
        let mut c = Command::new(time_bin);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(custody);
        c
    } else {
        Command::new(custody)
    };
    cmd.arg("client")
        .arg("--metadata-dir")
        .arg(&md)
        .arg("--metadata-url")
        .arg(metadata_url)
        .arg("--target-name")
        .arg(target_name)
        .arg("--target-base-url")
        .arg(target_url)
        .arg("--target-dir")
        .arg(&td)
        .arg("download");
    if let Some(s) = server {
        s.reset();
    }
    let m = run_measured(&mut cmd)?;
    let (wall, cpu, out) = (m.wall, m.cpu, m.output);
    let traffic = server.map(Server::reset);
    check_output("`custody client download`", &out)?;
    let peak_rss_kib = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
    // Cheap check (size) here; the content was verified by custody, and the
    // full re-hash would double the run time. Size mismatch = bench failure.
    let found = walk_files(&td)?;
    if !found.iter().any(|(_, len)| *len == bytes) {
        bail!(
            "custody reported success but no {bytes}-byte file is in {} (found {found:?}); expected sha256 {sha256}",
            td.display()
        );
    }
    Ok(CustodyRun {
        wall,
        cpu,
        peak_rss_kib,
        traffic,
    })
}

fn walk_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push((e.path(), e.metadata()?.len()));
            }
        }
    }
    Ok(out)
}

fn custody_series(
    transport: &str,
    rounds: usize,
    job: &Job<'_>,
    server: Option<&Server>,
    sha256sum_best: f64,
) -> Result<CustodyResult> {
    let bytes = job.bytes;
    let mut secs = Vec::new();
    let mut cpus = Vec::new();
    let mut rss = Vec::new();
    let mut traffic = None;
    for i in 0..rounds {
        let r = custody_once(job, server)?;
        eprintln!(
            "custody ({transport}) run {}/{}: {:.3} s, peak RSS {} KiB",
            i + 1,
            rounds,
            r.wall.as_secs_f64(),
            r.peak_rss_kib
                .map(|k| k.to_string())
                .unwrap_or_else(|| "?".into())
        );
        secs.push(r.wall.as_secs_f64());
        cpus.push(r.cpu.as_secs_f64());
        rss.extend(r.peak_rss_kib);
        traffic = r.traffic;
    }
    let throughput = Throughput::of(bytes, &secs, &cpus).context("no custody timings")?;
    let rel = throughput.best_gib_per_s / sha256sum_best;
    Ok(CustodyResult {
        transport: transport.into(),
        relative_to_sha256sum_best: rel,
        throughput,
        peak_rss_kib: rss.iter().copied().max(),
        peak_rss_method: if Path::new("/usr/bin/time").is_file() {
            "/usr/bin/time -f %M (getrusage of the child: ru_maxrss), max over runs".into()
        } else {
            "unavailable (/usr/bin/time not installed)".into()
        },
        traffic,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.rounds == 0 || args.size_mib == 0 {
        bail!("--rounds and --size-mib must be at least 1");
    }
    let Peers {
        workspace,
        python,
        custody,
        data_dir,
    } = args.peers.resolve(!args.baseline_only)?;
    let bytes = args.size_mib * MIB;
    let dir = data_dir.join("stream");
    let file = dir.join(format!("random-{}MiB.bin", args.size_mib));
    ensure_random_file(&file, bytes)?;
    let target_name = format!("blobs/random-{}MiB.bin", args.size_mib);
    let repo = dir.join(format!("repo-{}MiB", args.size_mib));
    eprintln!(
        "generating (or reusing) the one-target repository at {}",
        repo.display()
    );
    let manifest: Manifest = make_repo(
        &python,
        &workspace,
        &repo,
        &[
            "--target-file".into(),
            file.display().to_string(),
            "--target-name".into(),
            target_name.clone(),
        ],
    )?;
    let sha256 = manifest
        .stored_targets
        .first()
        .map(|t| t.sha256.clone())
        .context("make_repo.py listed no target")?;
    let machine = Machine::probe();

    // Page cache warm-up, unmeasured.
    let (_, _, warm) = sha256sum_once(&file)?;
    if warm != sha256 {
        bail!(
            "sha256sum of {} is {warm}, the repository lists {sha256}",
            file.display()
        );
    }
    let mut sum_secs = Vec::new();
    let mut sum_cpu = Vec::new();
    for _ in 0..args.rounds {
        let (wall, cpu, _) = sha256sum_once(&file)?;
        sum_secs.push(wall.as_secs_f64());
        sum_cpu.push(cpu.as_secs_f64());
    }
    let sha256sum = Throughput::of(bytes, &sum_secs, &sum_cpu).context("no sha256sum timings")?;
    eprintln!("sha256sum best {:.3} GiB/s", sha256sum.best_gib_per_s);
    let mut ring_secs = Vec::new();
    for _ in 0..args.rounds {
        let (d, h) = ring_hash_file(&file)?;
        if h != sha256 {
            bail!(
                "ring SHA-256 of {} is {h}, expected {sha256}",
                file.display()
            );
        }
        ring_secs.push(d.as_secs_f64());
    }
    let ring_in_process = Throughput::of(bytes, &ring_secs, &[]).context("no ring timings")?;
    eprintln!(
        "ring in-process best {:.3} GiB/s",
        ring_in_process.best_gib_per_s
    );

    let mut custody_http = None;
    let mut custody_file_url = None;
    let mut file_url_note = None;
    let mut pending = None;
    if let Some(custody) = &custody {
        let target_parent = args.target_dir_parent.clone().unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                data_dir.join("runs")
            }
        });
        std::fs::create_dir_all(&target_parent)?;
        let server = Server::start(&repo)?;
        let mut job = Job {
            custody,
            repo: &repo,
            target_parent: &target_parent,
            target_name: &target_name,
            sha256: &sha256,
            bytes,
            metadata_url: server.url("metadata"),
            target_url: server.url("targets"),
        };
        custody_http = Some(custody_series(
            "http-loopback",
            args.rounds,
            &job,
            Some(&server),
            sha256sum.best_gib_per_s,
        )?);
        drop(server);
        if !args.skip_file_url {
            let abs = std::fs::canonicalize(&repo)?;
            job.metadata_url = format!("file://{}/metadata/", abs.display());
            job.target_url = format!("file://{}/targets/", abs.display());
            match custody_series(
                "file-url",
                args.rounds,
                &job,
                None,
                sha256sum.best_gib_per_s,
            ) {
                Ok(r) => custody_file_url = Some(r),
                Err(e) => {
                    let msg = format!("{e:#}");
                    let first = msg.lines().take(6).collect::<Vec<_>>().join(" | ");
                    file_url_note = Some(format!("file:// variant failed: {first}"));
                }
            }
        }
    } else {
        pending = Some("--baseline-only".to_string());
    }

    let goal_throughput_met = custody_http
        .as_ref()
        .map(|c| c.relative_to_sha256sum_best >= 0.9);
    let goal_rss_met = custody_http
        .as_ref()
        .and_then(|c| c.peak_rss_kib)
        .map(|k| k <= 32 * 1024);
    let report = Report {
        bench: "stream-verify-bench",
        machine,
        file: file.display().to_string(),
        bytes,
        sha256,
        sha256sum,
        ring_in_process,
        custody_http,
        custody_file_url,
        file_url_note,
        custody_pending_reason: pending,
        goal_throughput_met,
        goal_rss_met,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!("stream-verify-bench: streaming download + SHA-256 verification of a large target");
    println!(
        "machine: {} CPUs, {} (load average at start: {})",
        r.machine.cpus, r.machine.cpu_model, r.machine.load_average
    );
    println!(
        "file: {} ({} bytes, sha256 {})\n",
        r.file, r.bytes, r.sha256
    );
    println!(
        "{:<34} {:>8} {:>9} {:>11} {:>13} {:>11} {:>11}",
        "measurement", "best s", "median s", "best GiB/s", "vs sha256sum", "min CPU s", "peak RSS"
    );
    let row = |label: &str, t: &Throughput, rss: Option<u64>| {
        println!(
            "{:<34} {:>8.3} {:>9.3} {:>11.3} {:>12.0}% {:>11} {:>11}",
            label,
            t.seconds.min,
            t.seconds.median,
            t.best_gib_per_s,
            100.0 * t.best_gib_per_s / r.sha256sum.best_gib_per_s,
            t.cpu_seconds
                .map(|c| format!("{:.3}", c.min))
                .unwrap_or_else(|| "-".into()),
            rss.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into())
        );
    };
    row("sha256sum (coreutils)", &r.sha256sum, None);
    row("ring SHA-256 in-process (ref)", &r.ring_in_process, None);
    if let Some(c) = &r.custody_http {
        row(
            "custody download, HTTP loopback",
            &c.throughput,
            c.peak_rss_kib,
        );
    }
    if let Some(c) = &r.custody_file_url {
        row(
            "custody download, file:// URLs",
            &c.throughput,
            c.peak_rss_kib,
        );
    }
    if let Some(n) = &r.file_url_note {
        println!("{n}");
    }
    println!();
    match (&r.custody_pending_reason, r.goal_throughput_met) {
        (Some(p), _) => println!("custody: PENDING ({p})"),
        (None, Some(t)) => {
            println!(
                "goal throughput >= 90% of sha256sum (HTTP loopback, best vs best): {}",
                if t { "MET" } else { "NOT MET" }
            );
            println!(
                "goal peak RSS <= 32 MiB: {}",
                match r.goal_rss_met {
                    Some(true) => "MET",
                    Some(false) => "NOT MET",
                    None => "not measured",
                }
            );
        }
        (None, None) => {}
    }
}
