//! log-bench: the transparency log's embedded durable store.
//!
//! 1. Durable appends per second: `LogWriter` (group commit: one
//!    temp+fsync+rename per tile/bundle, one checkpoint rename per batch)
//!    under C concurrent appenders (tokio tasks on a 2-worker runtime, each
//!    awaiting its own append before sending the next), entries of
//!    `--entry-bytes` bytes. Reports appends/s, batches, mean batch size,
//!    p50/p99 append latency, and bytes per entry on disk.
//! 2. Inclusion proofs at `--big` entries (default 10,000,000): the tree is
//!    built with `FsLog::append_batch` (64 Ki entries per batch, 16-byte
//!    entries to save disk), then proofs for random indices are generated
//!    from the tiles on disk (`TileStore`, cold and warm tile cache) and
//!    verified; median and p99 of each.
//!
//! ```text
//! cargo build --release -p custody-bench --bin log-bench
//! target/release/log-bench --dir /path/on/the/disk/to/measure
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use custody_log::fs::{FsLog, LogWriter, TileStore, WriterOptions};
use custody_log::{inclusion_proof, leaf_hash, root_at, verify_inclusion, NoteSigner};

#[derive(Parser, Debug)]
struct Args {
    /// Directory for the logs (on the disk to measure; emptied first).
    #[arg(long)]
    dir: PathBuf,
    /// Concurrency levels for the append benchmark.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024")]
    concurrency: Vec<usize>,
    /// Seconds of appending per concurrency level.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Entry size for the append benchmark (a typical JSON entry).
    #[arg(long, default_value_t = 200)]
    entry_bytes: usize,
    /// Tree size for the proof benchmark (0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    big: u64,
    /// Proofs sampled.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Writer: most entries per batch.
    #[arg(long, default_value_t = 4096)]
    max_batch: usize,
    /// Writer: microseconds to wait for more entries after the first.
    #[arg(long, default_value_t = 1000)]
    max_delay_us: u64,
}

const ORIGIN: &str = "bench.custody/log";

fn signer() -> Result<NoteSigner> {
    NoteSigner::from_seed(ORIGIN, [42; 32]).map_err(|e| anyhow::anyhow!("{e}"))
}

fn disk_bytes(dir: &Path) -> Result<(u64, u64)> {
    let (mut bytes, mut files) = (0u64, 0u64);
    for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let e = e?;
        let md = e.metadata()?;
        if md.is_dir() {
            let (b, f) = disk_bytes(&e.path())?;
            bytes += b;
            files += f;
        } else {
            // Allocated size (st_blocks), what the disk really holds.
            use std::os::unix::fs::MetadataExt as _;
            bytes += md.blocks() * 512;
            files += 1;
        }
    }
    Ok((bytes, files))
}

fn apparent_bytes(dir: &Path) -> Result<u64> {
    let mut bytes = 0u64;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        bytes += if md.is_dir() {
            apparent_bytes(&e.path())?
        } else {
            md.len()
        };
    }
    Ok(bytes)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) % n
    }
}

fn appends(args: &Args, rt: &tokio::runtime::Runtime) -> Result<()> {
    println!(
        "== durable appends: {} s per level, entries of {} bytes, writer max_batch {} max_delay {} us",
        args.seconds, args.entry_bytes, args.max_batch, args.max_delay_us
    );
    println!("concurrency  appends/s   batches  mean_batch  p50_ms  p99_ms  disk_B/entry  apparent_B/entry  files");
    for &c in &args.concurrency {
        let dir = args.dir.join(format!("append-c{c}"));
        let _ = std::fs::remove_dir_all(&dir);
        let log = FsLog::open(&dir, ORIGIN, signer()?).map_err(|e| anyhow::anyhow!("{e}"))?;
        let w = LogWriter::spawn(
            log,
            WriterOptions {
                max_batch: args.max_batch,
                max_delay: Duration::from_micros(args.max_delay_us),
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let eb = args.entry_bytes;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(args.seconds);
        let lat = rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..c {
                let w = w.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        i += 1;
                        let mut e =
                            format!("{{\"v\":1,\"t\":{t},\"i\":{i},\"pad\":\"").into_bytes();
                        e.resize(eb.saturating_sub(2), b'x');
                        e.extend_from_slice(b"\"}");
                        let t0 = Instant::now();
                        w.append(e).await.expect("append");
                        lat.push(t0.elapsed());
                    }
                    lat
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all
        });
        let elapsed = start.elapsed();
        let mut lat = lat;
        let n = lat.len();
        let s = w.stats();
        drop(w);
        let (disk, files) = disk_bytes(&dir)?;
        let apparent = apparent_bytes(&dir)?;
        println!(
            "{c:>11}  {:>9.0}  {:>8}  {:>10.1}  {:>6.2}  {:>6.2}  {:>12.1}  {:>16.1}  {files}",
            n as f64 / elapsed.as_secs_f64(),
            s.batches,
            s.entries as f64 / s.batches.max(1) as f64,
            pct(&mut lat, 0.5).as_secs_f64() * 1e3,
            pct(&mut lat, 0.99).as_secs_f64() * 1e3,
            disk as f64 / n as f64,
            apparent as f64 / n as f64,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn proofs(args: &Args) -> Result<()> {
    let n = args.big;
    let dir = args.dir.join("big");
    let _ = std::fs::remove_dir_all(&dir);
    println!("== inclusion proofs at {n} entries (16-byte entries)");
    let t = Instant::now();
    let mut log = FsLog::open(&dir, ORIGIN, signer()?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = 65_536u64;
    let mut i = 0u64;
    while i < n {
        let m = batch.min(n - i);
        let entries: Vec<[u8; 16]> = (i..i + m)
            .map(|k| {
                let mut e = [0u8; 16];
                e[..8].copy_from_slice(&k.to_be_bytes());
                e
            })
            .collect();
        log.append_batch(&entries)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        i += m;
    }
    let root = log.committed().root;
    println!(
        "built in {:.1} s ({:.0} entries/s in 64 Ki batches)",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    drop(log);
    let (disk, files) = disk_bytes(&dir)?;
    println!(
        "disk: {:.1} MB in {files} files, {:.1} bytes/entry (16-byte entries)",
        disk as f64 / 1e6,
        disk as f64 / n as f64
    );
    for (label, warm) in [("cold tile cache", false), ("warm tile cache", true)] {
        let store = Arc::new(TileStore::new(&dir));
        let reader = store.at(n);
        if warm {
            for _ in 0..args.samples {
                let _ = inclusion_proof(&reader, 0, n);
            }
        }
        assert_eq!(
            root_at(&reader, n).map_err(|e| anyhow::anyhow!("{e}"))?,
            root
        );
        let mut rng = Lcg(7);
        let mut gen = Vec::with_capacity(args.samples);
        let mut ver = Vec::with_capacity(args.samples);
        for _ in 0..args.samples {
            let idx = if warm { rng.below(4096) } else { rng.below(n) };
            let t0 = Instant::now();
            let p = inclusion_proof(&reader, idx, n).map_err(|e| anyhow::anyhow!("{e}"))?;
            gen.push(t0.elapsed());
            let mut e = [0u8; 16];
            e[..8].copy_from_slice(&idx.to_be_bytes());
            let lh = leaf_hash(&e);
            let t1 = Instant::now();
            verify_inclusion(&lh, idx, n, &p, &root).map_err(|e| anyhow::anyhow!("{e}"))?;
            ver.push(t1.elapsed());
        }
        println!(
            "{label}: generate p50 {:.1} us p99 {:.1} us; verify p50 {:.1} us p99 {:.1} us ({} samples{})",
            pct(&mut gen, 0.5).as_secs_f64() * 1e6,
            pct(&mut gen, 0.99).as_secs_f64() * 1e6,
            pct(&mut ver, 0.5).as_secs_f64() * 1e6,
            pct(&mut ver, 0.99).as_secs_f64() * 1e6,
            args.samples,
            if warm { ", indices in the first 16 tiles" } else { ", uniform indices" }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    println!(
        "log-bench: {} CPUs available, dir {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    appends(&args, &rt)?;
    if args.big > 0 {
        proofs(&args)?;
    }
    Ok(())
}
