//! Director check-in benchmark (issue #5): `custody serve`'s director with
//! N enrolled devices on the embedded SQLite store, driven over loopback
//! HTTP by a load generator in a second process.
//!
//! A check-in is the real route `POST /device/v1/checkin?root=1`: verify the
//! signed request and the device's signed manifest (Ed25519), check and
//! advance the report counter, compute the assignment (one active rollout
//! covering every device, so a target is signed each time), sign targets,
//! snapshot and timestamp for that device, commit (group commit, SQLite WAL,
//! synchronous=FULL) and answer.
//!
//! Before the window every device checks in once (not measured), so the
//! measured check-ins are the steady state of a polling fleet: the
//! assignment is re-signed and served, its delivery is already in the
//! transparency log. `--no-warmup` measures first deliveries instead (each
//! also appends an `assignment_delivered` log entry and marks it).
//!
//! Reported: wall-clock check-ins/s, and the server's CPU time per check-in
//! (getrusage of the server process over the load window), whose inverse
//! times 2 is the capacity of 2 cores: the machine is shared, so wall-clock
//! figures measure the other jobs too. The same run measures the raw
//! Ed25519 sign and verify rates of ring (the ceiling: a check-in does 2
//! verifies and 3 signs).
//!
//! ```text
//! cargo run --release -p custody-bench --bin director-checkin-bench -- \
//!     --devices 100000 --seconds 20 --clients 32
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use custody_director::policy::{Gate, Release, Selector, Stage};
use custody_director::registry::{DeviceRecord, DeviceStatus, EnrolledWith};
use custody_director::request::{fresh_nonce, sign_request};
use custody_director::wire::{
    headers as h, DeviceAttributes, InstalledTarget, ManifestBody, SignedManifest, TYPE_MANIFEST,
    WIRE_VERSION,
};
use custody_keys::MemorySigner;
use custody_keys::{KeyType, Signer};

/// The `custody` binary's allocator when it serves (crates/custody).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// enrolled devices
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// length of the load window
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// concurrent client connections (threads of the load generator)
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// server worker threads
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// skip the warm-up pass (every device checks in once before the
    /// window, as a fleet that polls does): then every measured check-in
    /// is the device's first delivery of its assignment, which also
    /// appends an `assignment_delivered` entry to the transparency log
    #[arg(long)]
    no_warmup: bool,
    /// internal: run as the load generator against this base URL
    #[arg(long, hide = true)]
    client: Option<String>,
}

/// Deterministic device key `i` (the client process derives the same).
fn device_key(i: usize) -> Result<MemorySigner> {
    let mut der = hex::decode("302e020100300506032b657004220420")?;
    der.extend_from_slice(
        ring::digest::digest(
            &ring::digest::SHA256,
            format!("bench-device-{i}").as_bytes(),
        )
        .as_ref(),
    );
    MemorySigner::from_pkcs8(KeyType::Ed25519, &der).context("device key")
}

fn cpu_secs() -> Result<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF)?;
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    Ok(t(u.user_time()) + t(u.system_time()))
}

/// Raw ring Ed25519 costs, one thread, for `dur` each: (sign, verify) in
/// CPU µs per operation (process CPU time: only this thread runs now, and
/// CPU time is robust to the other jobs on a shared machine).
fn raw_costs(dur: Duration) -> Result<(f64, f64)> {
    let k = device_key(0)?;
    let msg = vec![7u8; 600];
    let (start, cpu0) = (Instant::now(), cpu_secs()?);
    let mut n = 0u64;
    let mut sig = Vec::new();
    while start.elapsed() < dur {
        sig = k.sign(&msg)?;
        n += 1;
    }
    let sign_us = (cpu_secs()? - cpu0) / n.max(1) as f64 * 1e6;
    let pk = custody_director::keys::device_public_key(k.key())?;
    let (start, cpu0) = (Instant::now(), cpu_secs()?);
    let mut m = 0u64;
    while start.elapsed() < dur {
        if !pk.verify(&msg, &sig) {
            bail!("verify failed");
        }
        m += 1;
    }
    let verify_us = (cpu_secs()? - cpu0) / m.max(1) as f64 * 1e6;
    Ok((sign_us, verify_us))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(url) = args.client.clone() {
        return client(&args, &url);
    }
    server(&args)
}

// ------------------------------------------------------------------ server

fn server(args: &Args) -> Result<()> {
    println!("# director check-in benchmark");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let (sign_us, verify_us) = raw_costs(Duration::from_secs(2))?;
    let (sign_rate, verify_rate) = (1e6 / sign_us, 1e6 / verify_us);
    let ceiling_us = 2.0 * verify_us + 3.0 * sign_us;
    println!(
        "raw Ed25519 (ring, 1 thread, CPU time): sign {sign_us:.1} µs ({sign_rate:.0}/s), \
         verify {verify_us:.1} µs ({verify_rate:.0}/s); a check-in's crypto (2 verify + 3 sign) \
         = {ceiling_us:.1} µs → ceiling {:.0}/s on 2 cores",
        2.0e6 / ceiling_us
    );

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let pass = dir.path().join("passphrase");
    std::fs::write(&pass, "bench passphrase\n")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .enable_all()
        .build()?;

    // Enrol N devices straight into the store (the enrolment route is not
    // what is measured), plus one rollout covering all of them.
    let t = Instant::now();
    let now = chrono::Utc::now();
    let devices = (0..args.devices)
        .map(|i| {
            let k = device_key(i)?;
            Ok(DeviceRecord {
                id: k.keyid().to_owned(),
                key: k.key().clone(),
                hardware_id: "board-a".into(),
                group: "fleet".into(),
                attributes: DeviceAttributes {
                    environment: "production".into(),
                    tags: Default::default(),
                    group: Some("fleet".into()),
                },
                enrolled_at: now,
                enrolled_with: EnrolledWith::Token {
                    token_hash_prefix: "bench".into(),
                },
                status: DeviceStatus::Active,
                last_attestation: now,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let release = Release {
        name: "fw/2.0.bin".into(),
        length: 1 << 20,
        hashes: [("sha256".to_string(), "ab".repeat(32))].into(),
        release_counter: 2,
        hardware_ids: Default::default(),
    };
    let spec = custody_server::bench_support::RolloutSpec {
        release,
        selector: Selector::default(),
        stages: vec![Stage {
            share_bp: 10_000,
            gate: Gate::default(),
        }],
        windows: vec![],
        seed: "bench".into(),
    };
    rt.block_on(custody_server::bench_support::seed_director(
        &data,
        devices,
        "bench",
        &spec,
        "bench",
        now.timestamp(),
    ))?;
    println!(
        "enrolled {} devices into SQLite in {:.1} s",
        args.devices,
        t.elapsed().as_secs_f64()
    );

    let cfg = custody_server::ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data.clone(),
        key_passphrase_file: Some(pass.clone()),
        ..Default::default()
    };
    let server = rt
        .block_on(custody_server::start(cfg))
        .map_err(|e| anyhow::anyhow!("start server: {e}"))?;
    let url = server.url();

    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--client",
            &url,
            "--devices",
            &args.devices.to_string(),
            "--seconds",
            &args.seconds.to_string(),
            "--clients",
            &args.clients.to_string(),
        ])
        .args(args.no_warmup.then_some("--no-warmup"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the load generator")?;
    let mut out = BufReader::new(child.stdout.take().context("child stdout")?);
    let mut line = String::new();
    let t_warm = Instant::now();
    out.read_line(&mut line)?;
    if !args.no_warmup {
        println!(
            "warm-up: each of the {} devices checked in once ({:.1} s, not measured)",
            args.devices,
            t_warm.elapsed().as_secs_f64()
        );
    }
    if line.trim() != "ready" {
        bail!("load generator: {line}");
    }
    let cpu0 = cpu_secs()?;
    let t0 = Instant::now();
    child
        .stdin
        .take()
        .context("child stdin")?
        .write_all(b"go\n")?;
    line.clear();
    out.read_line(&mut line)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs()? - cpu0;
    child.wait()?;
    let r: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("load generator result: {line}"))?;
    let ok = r["ok"].as_u64().unwrap_or(0);
    let errors = r["errors"].as_u64().unwrap_or(0);
    let client_cpu = r["cpu_secs"].as_f64().unwrap_or(0.0);
    if ok == 0 {
        bail!("no successful check-in: {r}");
    }
    let per = cpu / ok as f64 * 1e6;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end of the window: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let client_per = client_cpu / ok as f64 * 1e6;
    println!(
        "load: {} client connections for {} s; {ok} check-ins ok, {errors} errors (first: {}); {}",
        args.clients,
        args.seconds,
        r["first_error"],
        if args.no_warmup {
            "no warm-up: every check-in is a first delivery (+ a transparency log append)"
        } else {
            "after warm-up: assignment already delivered (steady-state poll)"
        }
    );
    println!("| figure | value |");
    println!("| --- | ---: |");
    println!("| enrolled devices (SQLite) | {} |", args.devices);
    println!(
        "| check-ins/s, wall clock (server and load generator share the machine) | {:.0} |",
        ok as f64 / wall
    );
    println!("| server CPU per check-in (HTTP + SQL + crypto) | {per:.1} µs |");
    println!(
        "| server capacity on 2 cores (2 s of CPU per s / CPU per check-in) | {:.0}/s |",
        2.0e6 / per
    );
    println!("| load generator CPU per check-in (2 signs + HTTP client) | {client_per:.1} µs |");
    println!("| raw Ed25519 sign / verify, 1 thread (CPU) | {sign_us:.1} µs / {verify_us:.1} µs ({sign_rate:.0}/s / {verify_rate:.0}/s) |");
    println!(
        "| crypto ceiling on 2 cores (2 verify + 3 sign per check-in) | {:.0}/s |",
        2.0e6 / ceiling_us
    );
    rt.block_on(server.shutdown())?;
    Ok(())
}

// ------------------------------------------------------------------ client

fn client(args: &Args, url: &str) -> Result<()> {
    // Derive the device keys before the window (not measured).
    let keys: Vec<MemorySigner> = (0..args.devices).map(device_key).collect::<Result<_>>()?;
    let keys = Arc::new(keys);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(String::new()));
    // warmed up (or not) / window opens
    let warmed = Arc::new(std::sync::Barrier::new(args.clients + 1));
    let go = Arc::new(std::sync::Barrier::new(args.clients + 1));
    let mut threads = Vec::new();
    for t in 0..args.clients {
        let (keys, stop, ok, errors, first_error, warmed, go) = (
            keys.clone(),
            stop.clone(),
            ok.clone(),
            errors.clone(),
            first_error.clone(),
            warmed.clone(),
            go.clone(),
        );
        let url = format!("{url}/device/v1/checkin?root=1");
        let clients = args.clients;
        let warmup = !args.no_warmup;
        threads.push(std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .new_agent();
            // This thread owns devices t, t + clients, …: one manifest at a
            // time per device, counters strictly increasing.
            let mine: Vec<usize> = (t..keys.len()).step_by(clients).collect();
            let mut counters = vec![0u64; mine.len()];
            let mut warm_errors = 0u64;
            if warmup {
                for (slot, &i) in mine.iter().enumerate() {
                    counters[slot] += 1;
                    if checkin_once(&agent, &url, &keys[i], counters[slot]).is_err() {
                        warm_errors += 1;
                    }
                }
            }
            warmed.wait();
            go.wait();
            if warm_errors > 0 {
                errors.fetch_add(warm_errors, Ordering::Relaxed);
                if let Ok(mut g) = first_error.lock() {
                    if g.is_empty() {
                        *g = format!("{warm_errors} warm-up check-ins failed");
                    }
                }
            }
            let mut j = 0usize;
            while !stop.load(Ordering::Relaxed) && !mine.is_empty() {
                let slot = j % mine.len();
                j += 1;
                let key = &keys[mine[slot]];
                counters[slot] += 1;
                let result = checkin_once(&agent, &url, key, counters[slot]);
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            if let Ok(mut g) = first_error.lock() {
                                *g = e.to_string();
                            }
                        }
                    }
                }
            }
        }));
    }
    warmed.wait();
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let cpu0 = cpu_secs()?;
    go.wait();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let cpu = cpu_secs()? - cpu0;
    let fe = first_error.lock().map(|g| g.clone()).unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "ok": ok.load(Ordering::Relaxed),
            "errors": errors.load(Ordering::Relaxed),
            "first_error": fe,
            "cpu_secs": cpu,
        })
    );
    Ok(())
}

fn checkin_once(agent: &ureq::Agent, url: &str, key: &MemorySigner, counter: u64) -> Result<()> {
    let body = ManifestBody {
        type_: TYPE_MANIFEST.into(),
        wire_version: WIRE_VERSION,
        device_id: key.keyid().to_owned(),
        hardware_id: "board-a".into(),
        report_counter: counter,
        device_time: chrono::Utc::now().timestamp(),
        installed: [(
            "a".to_owned(),
            InstalledTarget {
                name: "fw/1.0.bin".into(),
                length: 1 << 20,
                hashes: [("sha256".to_owned(), "cd".repeat(32))].into(),
                release_counter: 1,
            },
        )]
        .into(),
        active_slot: Some("a".into()),
        attacks_detected: vec![],
        install_reports: vec![],
    };
    let manifest = SignedManifest::sign(body, key)?.to_bytes()?;
    let req = sign_request(
        key,
        "POST",
        "/device/v1/checkin?root=1",
        manifest.clone(),
        chrono::Utc::now(),
        fresh_nonce()?,
    )?;
    let mut resp = agent
        .post(url)
        .header(h::DEVICE, &req.device_id)
        .header(h::TIMESTAMP, &req.timestamp.to_string())
        .header(h::NONCE, &req.nonce)
        .header(h::SIGNATURE, &req.signature)
        .header("content-type", "application/json")
        .send(&manifest[..])?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_vec()?;
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    // The answer must carry a signed target for this device.
    if !body.windows(10).any(|w| w == b"\"targets\":") {
        bail!("answer without director targets");
    }
    Ok(())
}
