//! `tuf-client-bench`: cold refresh + download of one hash-binned target by
//! python-tuf's ngclient and by `custody client`, over a loopback HTTP server.
//!
//! Each round runs both clients with a fresh metadata dir holding only the
//! trusted root.json and a fresh target dir (alternating which goes first), and
//! records wall time (spawn to exit, i.e. including process start-up), HTTP
//! requests and response body bytes. Prints a table (or `--json`).
//!
//! Goal (TUF-client issue): custody >= 10x faster wall time than python-tuf,
//! bytes fetched <= python-tuf's.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use custody_bench::{
    check_output, find_downloaded, make_repo, run_measured, run_timed, Machine, Manifest, PeerArgs,
    Peers, Server, Stats, StoredTarget, Traffic,
};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "custody client vs python-tuf ngclient: cold refresh + download of one target")]
struct Args {
    /// Measured rounds per client.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Unmeasured warm-up rounds per client (page cache, python bytecode cache).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Number of targets listed in the repository.
    #[arg(long, default_value_t = 100_000)]
    targets: u64,
    /// Hash-bin bit length (8 = 256 bins).
    #[arg(long, default_value_t = 8)]
    bit_length: u32,
    /// Determinism seed of the generated repository.
    #[arg(long, default_value = "custody")]
    seed: String,
    /// Which of the stored targets (manifest order) to download.
    #[arg(long, default_value_t = 0)]
    target_index: usize,
    /// Where the per-run metadata and target dirs are created (default
    /// <data dir>/runs, on disk; e.g. /dev/shm to take fsync cost out).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    #[command(flatten)]
    peers: PeerArgs,
    /// Measure python-tuf only (custody's figures reported as pending).
    #[arg(long)]
    python_only: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    wall_seconds: f64,
    /// user + system CPU time of the client process (and its children).
    cpu_seconds: f64,
    /// python only: Updater construction to download end, as printed by ngclient.py.
    in_process_seconds: Option<f64>,
    traffic: Traffic,
}

#[derive(Debug, Serialize)]
struct ClientResult {
    client: String,
    command: String,
    wall: Option<Stats>,
    cpu: Option<Stats>,
    in_process: Option<Stats>,
    requests: u64,
    body_bytes: u64,
    not_found: u64,
    fetched_paths: Vec<String>,
    runs: Vec<Run>,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    machine: Machine,
    repository: serde_json::Value,
    metadata_bytes_total: u64,
    runs_dir: String,
    target: StoredTarget,
    rounds: usize,
    python_tuf: ClientResult,
    custody: Option<ClientResult>,
    custody_pending_reason: Option<String>,
    speedup_median_wall: Option<f64>,
    speedup_min_wall: Option<f64>,
    speedup_median_cpu: Option<f64>,
    bytes_ratio_custody_over_python: Option<f64>,
    goal_speedup_met: Option<bool>,
    goal_bytes_met: Option<bool>,
}

struct Ctx {
    python: PathBuf,
    ngclient: PathBuf,
    custody: Option<PathBuf>,
    repo: PathBuf,
    runs_dir: PathBuf,
    target: StoredTarget,
}

/// A fresh (metadata dir, target dir) pair for one cold run.
fn fresh_dirs(runs_dir: &Path, label: &str) -> Result<(tempfile::TempDir, PathBuf, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{label}-"))
        .tempdir_in(runs_dir)
        .with_context(|| format!("creating a run dir in {}", runs_dir.display()))?;
    let md = tmp.path().join("metadata");
    let td = tmp.path().join("targets");
    std::fs::create_dir_all(&md).with_context(|| format!("creating {}", md.display()))?;
    std::fs::create_dir_all(&td).with_context(|| format!("creating {}", td.display()))?;
    Ok((tmp, md, td))
}

fn python_run(ctx: &Ctx, server: &Server) -> Result<Run> {
    let (_tmp, md, td) = fresh_dirs(&ctx.runs_dir, "py")?;
    std::fs::copy(ctx.repo.join("root.json"), md.join("root.json"))
        .context("copying root.json into the python-tuf metadata dir")?;
    let mut cmd = Command::new(&ctx.python);
    cmd.arg(&ctx.ngclient)
        .arg("--metadata-dir")
        .arg(&md)
        .arg("--metadata-url")
        .arg(server.url("metadata"))
        .arg("--target-base-url")
        .arg(server.url("targets"))
        .arg("--target-dir")
        .arg(&td)
        .arg("--target-name")
        .arg(&ctx.target.name);
    server.reset();
    let m = run_measured(&mut cmd)?;
    let (wall, out) = (m.wall, m.output);
    let traffic = server.reset();
    check_output("python-tuf ngclient download", &out)?;
    find_downloaded(&td, &ctx.target.sha256, ctx.target.length)
        .context("python-tuf reported success but the target is not in its target dir")?;
    let in_process = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v.get("in_process_seconds").and_then(|x| x.as_f64()));
    Ok(Run {
        wall_seconds: wall.as_secs_f64(),
        cpu_seconds: m.cpu.as_secs_f64(),
        in_process_seconds: in_process,
        traffic,
    })
}

fn custody_run(ctx: &Ctx, custody: &Path, server: &Server) -> Result<Run> {
    let (_tmp, md, td) = fresh_dirs(&ctx.runs_dir, "custody")?;
    // `init` stores the trusted root, like copying root.json for python-tuf:
    // not part of the measured cold refresh + download.
    let mut init = Command::new(custody);
    init.arg("client")
        .arg("--metadata-dir")
        .arg(&md)
        .arg("init")
        .arg(ctx.repo.join("root.json"));
    let (_, out) = run_timed(&mut init)?;
    check_output("`custody client init`", &out)?;
    let mut cmd = Command::new(custody);
    cmd.arg("client")
        .arg("--metadata-dir")
        .arg(&md)
        .arg("--metadata-url")
        .arg(server.url("metadata"))
        .arg("--target-name")
        .arg(&ctx.target.name)
        .arg("--target-base-url")
        .arg(server.url("targets"))
        .arg("--target-dir")
        .arg(&td)
        .arg("download");
    server.reset();
    let m = run_measured(&mut cmd)?;
    let (wall, out) = (m.wall, m.output);
    let traffic = server.reset();
    check_output("`custody client download`", &out)?;
    find_downloaded(&td, &ctx.target.sha256, ctx.target.length)
        .context("custody reported success but the target is not in its target dir")?;
    Ok(Run {
        wall_seconds: wall.as_secs_f64(),
        cpu_seconds: m.cpu.as_secs_f64(),
        in_process_seconds: None,
        traffic,
    })
}

fn summarize(client: &str, command: String, runs: Vec<Run>) -> ClientResult {
    let walls: Vec<f64> = runs.iter().map(|r| r.wall_seconds).collect();
    let cpus: Vec<f64> = runs.iter().map(|r| r.cpu_seconds).collect();
    let inproc: Vec<f64> = runs.iter().filter_map(|r| r.in_process_seconds).collect();
    let first = runs.first().map(|r| r.traffic.clone()).unwrap_or_default();
    ClientResult {
        client: client.into(),
        command,
        wall: Stats::of(&walls),
        cpu: Stats::of(&cpus),
        in_process: Stats::of(&inproc),
        // Cold runs of a fixed repository fetch the same files every time;
        // report the largest seen to stay conservative.
        requests: runs.iter().map(|r| r.traffic.requests).max().unwrap_or(0),
        body_bytes: runs.iter().map(|r| r.traffic.body_bytes).max().unwrap_or(0),
        not_found: runs.iter().map(|r| r.traffic.not_found).max().unwrap_or(0),
        fetched_paths: first.paths,
        runs,
    }
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1000.0)
}

fn print_table(r: &Report) {
    println!("tuf-client-bench: cold refresh + download of one hash-binned target");
    println!(
        "machine: {} CPUs, {} (load average at start: {})",
        r.machine.cpus, r.machine.cpu_model, r.machine.load_average
    );
    println!(
        "repository: {} targets, {} bins, {} metadata bytes in total; target {} ({} bytes, in {})",
        r.repository.get("targets").cloned().unwrap_or_default(),
        2u64.pow(
            r.repository
                .get("bit_length")
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as u32
        ),
        r.metadata_bytes_total,
        r.target.name,
        r.target.length,
        r.target.role
    );
    println!(
        "rounds: {}; client metadata/target dirs under {}\n",
        r.rounds, r.runs_dir
    );
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>6} {:>11}",
        "client",
        "wall median",
        "wall min",
        "wall max",
        "CPU median",
        "CPU min",
        "requests",
        "404s",
        "body bytes"
    );
    let row = |c: &ClientResult| {
        if let Some(w) = c.wall {
            let cpu = |f: fn(&Stats) -> f64| c.cpu.as_ref().map(f).map(ms).unwrap_or_default();
            println!(
                "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>6} {:>11}",
                c.client,
                ms(w.median),
                ms(w.min),
                ms(w.max),
                cpu(|s| s.median),
                cpu(|s| s.min),
                c.requests,
                c.not_found,
                c.body_bytes
            );
        }
    };
    row(&r.python_tuf);
    if let Some(c) = &r.custody {
        row(c);
    }
    if let Some(ip) = r.python_tuf.in_process {
        println!(
            "\npython-tuf in-process time (Updater() to download end, no interpreter start-up/imports): median {}, min {}",
            ms(ip.median),
            ms(ip.min)
        );
    }
    println!(
        "python-tuf fetched: {}",
        r.python_tuf.fetched_paths.join(" ")
    );
    if let Some(c) = &r.custody {
        println!("custody fetched:    {}", c.fetched_paths.join(" "));
    }
    println!();
    match (&r.custody_pending_reason, r.speedup_median_wall) {
        (Some(reason), _) => println!("custody: PENDING ({reason})"),
        (None, Some(s)) => {
            println!(
                "speedup (python median / custody median wall): {s:.1}x (min/min: {:.1}x)  goal >= 10x: {}",
                r.speedup_min_wall.unwrap_or(f64::NAN),
                if r.goal_speedup_met == Some(true) { "MET" } else { "NOT MET" }
            );
            println!(
                "CPU time speedup (python median / custody median, user+sys): {:.1}x",
                r.speedup_median_cpu.unwrap_or(f64::NAN)
            );
            println!(
                "bytes custody / python: {:.3}  goal <= 1: {}",
                r.bytes_ratio_custody_over_python.unwrap_or(f64::NAN),
                if r.goal_bytes_met == Some(true) {
                    "MET"
                } else {
                    "NOT MET"
                }
            );
        }
        (None, None) => println!("custody: no figures"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let Peers {
        workspace,
        python,
        custody,
        data_dir,
    } = args.peers.resolve(!args.python_only)?;
    let repo = data_dir.join(format!(
        "tuf-client-repo-{}t-{}b-{}",
        args.targets, args.bit_length, args.seed
    ));
    eprintln!(
        "generating (or reusing) the repository at {}",
        repo.display()
    );
    let manifest: Manifest = make_repo(
        &python,
        &workspace,
        &repo,
        &[
            "--targets".into(),
            args.targets.to_string(),
            "--bit-length".into(),
            args.bit_length.to_string(),
            "--seed".into(),
            args.seed.clone(),
        ],
    )?;
    eprintln!(
        "repository {} ({:.1} s to generate)",
        if manifest.cached {
            "reused from cache"
        } else {
            "generated"
        },
        manifest.generation_seconds
    );
    let target = manifest
        .stored_targets
        .get(args.target_index)
        .cloned()
        .with_context(|| {
            format!(
                "--target-index {} out of range: the repository stores {} target files",
                args.target_index,
                manifest.stored_targets.len()
            )
        })?;
    let runs_dir = args
        .runs_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("runs"));
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("creating {}", runs_dir.display()))?;
    let ctx = Ctx {
        python: python.clone(),
        ngclient: workspace.join("scripts/bench/ngclient.py"),
        custody,
        repo: repo.clone(),
        runs_dir,
        target: target.clone(),
    };
    let machine = Machine::probe();
    let server = Server::start(&repo)?;
    eprintln!("serving {} at {}", repo.display(), server.url(""));

    let mut py_runs = Vec::new();
    let mut cu_runs = Vec::new();
    let mut custody_error: Option<String> = None;
    let total = args.warmup + args.rounds;
    for round in 0..total {
        let measured = round >= args.warmup;
        let custody_first = round % 2 == 1;
        let mut do_custody = |cu_runs: &mut Vec<Run>| -> Result<()> {
            if let (Some(c), None) = (&ctx.custody, &custody_error) {
                match custody_run(&ctx, c, &server) {
                    Ok(run) if measured => cu_runs.push(run),
                    Ok(_) => {}
                    Err(e) => custody_error = Some(format!("{e:#}")),
                }
            }
            Ok(())
        };
        if custody_first {
            do_custody(&mut cu_runs)?;
        }
        let run = python_run(&ctx, &server).context("python-tuf baseline run")?;
        if measured {
            py_runs.push(run);
        }
        if !custody_first {
            do_custody(&mut cu_runs)?;
        }
        eprintln!(
            "round {}/{}{} done",
            round + 1,
            total,
            if measured { "" } else { " (warm-up)" }
        );
    }
    drop(server);

    let python_tuf = summarize(
        "python-tuf",
        format!("{} scripts/bench/ngclient.py ...", python.display()),
        py_runs,
    );
    let (custody, pending) = match (&ctx.custody, custody_error) {
        (None, _) => (None, Some("--python-only".to_string())),
        (Some(_), Some(e)) => (None, Some(format!("custody client failed: {e}"))),
        (Some(c), None) => (
            Some(summarize(
                "custody",
                format!("{} client ... download", c.display()),
                cu_runs,
            )),
            None,
        ),
    };
    let speed = |f: fn(&Stats) -> f64| -> Option<f64> {
        let p = python_tuf.wall.as_ref().map(f)?;
        let c = custody.as_ref()?.wall.as_ref().map(f)?;
        (c > 0.0).then_some(p / c)
    };
    let speedup_median_wall = speed(|s| s.median);
    let speedup_min_wall = speed(|s| s.min);
    let speedup_median_cpu = (|| {
        let p = python_tuf.cpu.as_ref()?.median;
        let c = custody.as_ref()?.cpu.as_ref()?.median;
        (c > 0.0).then_some(p / c)
    })();
    let bytes_ratio = custody
        .as_ref()
        .filter(|_| python_tuf.body_bytes > 0)
        .map(|c| c.body_bytes as f64 / python_tuf.body_bytes as f64);
    let report = Report {
        bench: "tuf-client-bench",
        machine,
        repository: manifest.params.clone(),
        metadata_bytes_total: manifest.metadata_bytes.values().sum(),
        runs_dir: ctx.runs_dir.display().to_string(),
        target,
        rounds: args.rounds,
        goal_speedup_met: speedup_median_wall.map(|s| s >= 10.0),
        goal_bytes_met: custody
            .as_ref()
            .map(|c| c.body_bytes <= python_tuf.body_bytes),
        python_tuf,
        custody,
        custody_pending_reason: pending.clone(),
        speedup_median_wall,
        speedup_min_wall,
        speedup_median_cpu,
        bytes_ratio_custody_over_python: bytes_ratio,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    // A broken custody client is a failure of the bench, not a figure; the
    // report above still carries the python-tuf baseline.
    if let (false, Some(reason)) = (args.python_only, pending) {
        bail!("{reason}");
    }
    Ok(())
}
