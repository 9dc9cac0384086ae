//! `scan-bench`: `custody scan` of a ~1 GiB rootfs tar against `tar -tvf`
//! of the same file, in the same run: throughput (MB/s of the tar file)
//! and the peak RSS of the scan.
//!
//! 1. Generates (once, cached by size) a rootfs tar: many files of mixed
//!    sizes under usr/, a CA bundle (etc/ssl/certs/ca-certificates.crt,
//!    the host's if present) and one file per certificate under
//!    usr/share/ca-certificates/, a dpkg status of 600 packages.
//!    `--compressed` also writes .tar.gz and .tar.zst of it.
//! 2. One unmeasured read of each file (page cache warm).
//! 3. `custody scan FILE` N times (best and median) for each format, and
//!    `custody scan -` with the plain tar on standard input (streamed, no
//!    seeks over data), then the peak RSS of those child processes
//!    (getrusage(RUSAGE_CHILDREN).ru_maxrss, read before any other child runs).
//! 4. `tar -tvf FILE` (and `tar -tzvf`, `tar --zstd -tvf`) N times.
//!
//! Goal (issue #15): peak RSS <= 64 MiB.
#![forbid(unsafe_code)]

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use custody_bench::{
    check_output, custody_bin, default_data_dir, run_timed, workspace_root, Machine,
};

const MIB: u64 = 1024 * 1024;

#[derive(Parser, Debug)]
#[command(about = "custody scan throughput and peak RSS vs tar -tvf on a rootfs tar")]
struct Args {
    /// Size of the rootfs tar in MiB (approximately).
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Measured runs of each tool.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure .tar.gz and .tar.zst of the same tar.
    #[arg(long)]
    compressed: bool,
    /// Where the generated images live (default <target dir>/bench-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    workspace: Option<PathBuf>,
    #[arg(long)]
    custody: Option<PathBuf>,
}

/// xorshift64*: fast filler bytes, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8], text: bool) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            for (b, r) in chunk.iter_mut().zip(v) {
                *b = if text { b'a' + r % 26 } else { r };
            }
        }
    }
}

fn ca_bundle() -> Vec<u8> {
    std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_else(|_| {
        include_bytes!("../../../custody-scan/tests/data/isrg-root-x1.pem").to_vec()
    })
}

fn dpkg_status() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..600 {
        s.push_str(&format!(
            "Package: pkg{i}\nStatus: install ok installed\nPriority: optional\nSection: libs\n\
             Installed-Size: {}\nMaintainer: Bench <bench@example.invalid>\nArchitecture: amd64\n\
             Version: 1.{i}.0-1\nDescription: package {i}\n filler line one\n filler line two\n\n",
            100 + i
        ));
    }
    s.push_str(
        "Package: libssl3\nStatus: install ok installed\nVersion: 3.0.15-1~deb12u1\n\n\
         Package: libgnutls30\nStatus: install ok installed\nVersion: 3.7.9-2+deb12u3\n\n",
    );
    s.into_bytes()
}

fn append(b: &mut tar::Builder<impl Write>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, data)
        .with_context(|| format!("writing {path}"))
}

/// A rootfs tar of about `size` bytes; returns (files, bytes).
fn generate(path: &Path, size: u64) -> Result<(u64, u64)> {
    let tmp = path.with_extension("partial");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bundle = ca_bundle();
    append(&mut b, "etc/ssl/certs/ca-certificates.crt", &bundle)?;
    // one file per certificate, as Debian's usr/share/ca-certificates/mozilla
    let text = String::from_utf8_lossy(&bundle).into_owned();
    let mut files = 2u64;
    for (i, block) in text.split("-----END CERTIFICATE-----").enumerate() {
        if let Some(start) = block.find("-----BEGIN CERTIFICATE-----") {
            let pem = format!("{}-----END CERTIFICATE-----\n", &block[start..]);
            append(
                &mut b,
                &format!("usr/share/ca-certificates/mozilla/cert{i}.crt"),
                pem.as_bytes(),
            )?;
            files += 1;
        }
    }
    append(&mut b, "var/lib/dpkg/status", &dpkg_status())?;
    let mut written = 0u64;
    let mut buf = vec![0u8; 8 << 20];
    let mut i = 0u64;
    while written < size {
        // sizes: mostly small files, as a distribution rootfs (~45 KB mean)
        let r = rng.next() % 1000;
        let len = match r {
            0..=849 => 256 + rng.next() % 8192,
            850..=979 => 16_384 + rng.next() % 131_072,
            980..=998 => 262_144 + rng.next() % (2 * MIB),
            _ => 2 * MIB + rng.next() % (6 * MIB),
        } as usize;
        // text files, and binaries that compress about 2:1 (half zeros)
        let text = r < 850;
        rng.fill(&mut buf[..len], text);
        if !text {
            for chunk in buf[..len].chunks_mut(4096).skip(1).step_by(2) {
                chunk.fill(0);
            }
        }
        let dir = match i % 5 {
            0 => "usr/bin",
            1 => "usr/lib/x86_64-linux-gnu",
            2 => "usr/share/doc",
            3 => "usr/share/locale/de/LC_MESSAGES",
            _ => "opt/app/lib",
        };
        append(
            &mut b,
            &format!("{dir}/{:03}/file{i}", i % 997),
            &buf[..len],
        )?;
        written += len as u64;
        files += 1;
        i += 1;
    }
    let mut w = b.into_inner().context("finishing the tar")?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)?;
    let bytes = std::fs::metadata(path)?.len();
    Ok((files, bytes))
}

fn compress(src: &Path, dst: &Path, gz: bool) -> Result<()> {
    let mut input = std::fs::File::open(src)?;
    let tmp = dst.with_extension("partial");
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    if gz {
        let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        std::io::copy(&mut input, &mut e)?;
        e.finish()?.flush()?;
    } else {
        let mut e = zstd::stream::write::Encoder::new(out, 3)?;
        std::io::copy(&mut input, &mut e)?;
        e.finish()?.flush()?;
    }
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

fn warm(path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

fn max_rss_children_kib() -> Result<i64> {
    use nix::sys::resource::{getrusage, UsageWho};
    Ok(getrusage(UsageWho::RUSAGE_CHILDREN)
        .context("getrusage")?
        .max_rss())
}

struct Timing {
    best: Duration,
    median: Duration,
}

fn time_n(
    rounds: usize,
    what: &str,
    mut make: impl FnMut() -> Command,
    ok_codes: &[i32],
) -> Result<Timing> {
    let mut t = Vec::new();
    for _ in 0..rounds.max(1) {
        let (d, out) = run_timed(&mut make())?;
        if !out.status.code().is_some_and(|c| ok_codes.contains(&c)) {
            check_output(what, &out)?;
        }
        t.push(d);
    }
    t.sort();
    Ok(Timing {
        best: t[0],
        median: t[t.len() / 2],
    })
}

fn mbs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ws = workspace_root(args.workspace.as_deref());
    let custody = custody_bin(args.custody.as_deref())?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(&ws));
    std::fs::create_dir_all(&dir)?;
    let tar_path = dir.join(format!("rootfs-v2-{}m.tar", args.size_mib));
    if !tar_path.exists() {
        eprintln!("generating {} ...", tar_path.display());
        let (files, bytes) = generate(&tar_path, args.size_mib * MIB)?;
        eprintln!("  {files} files, {bytes} bytes");
    }
    let mut images = vec![(tar_path.clone(), "tar", vec!["-tvf"])];
    if args.compressed {
        for (ext, gz, flags) in [
            ("tar.gz", true, vec!["-tzvf"]),
            ("tar.zst", false, vec!["--zstd", "-tvf"]),
        ] {
            let p = dir.join(format!("rootfs-v2-{}m.{ext}", args.size_mib));
            if !p.exists() {
                eprintln!("compressing {} ...", p.display());
                compress(&tar_path, &p, gz)?;
            }
            images.push((p, ext, flags));
        }
    }
    let m = Machine::probe();
    println!(
        "machine: {} CPUs, {} (load {})",
        m.cpus, m.cpu_model, m.load_average
    );
    let tar_bytes = std::fs::metadata(&tar_path)?.len();
    let at = "2026-12-07T00:00:00Z";

    // custody scans first: the children's max RSS is then theirs alone.
    let mut scans = Vec::new();
    for (p, kind, _) in &images {
        warm(p)?;
        let out = Command::new(&custody)
            .args(["scan", "--json", "--at", at])
            .arg(p)
            .output()?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "custody scan {}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let certs = report["inventory"]["certificates"]
            .as_array()
            .map_or(0, Vec::len);
        let pkgs = report["inventory"]["packages"]
            .as_array()
            .map_or(0, Vec::len);
        if certs == 0 || pkgs == 0 {
            bail!(
                "custody scan {} found {certs} certificates and {pkgs} packages",
                p.display()
            );
        }
        println!(
            "{kind}: {} entries, {certs} certificates, {pkgs} packages, verdict {}",
            report["entries"], report["verdict"]
        );
        let t = time_n(
            args.rounds,
            "custody scan",
            || {
                let mut c = Command::new(&custody);
                c.args(["scan", "--at", at]).arg(p);
                c
            },
            &[0, 1],
        )?;
        scans.push(t);
    }
    // the plain tar again, streamed from standard input (no seeks)
    let stdin_scan = time_n(
        args.rounds,
        "custody scan -",
        || {
            // (run_timed gives the child a null stdin: the shell redirects)
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("exec \"$0\" scan --at \"$1\" - < \"$2\"")
                .arg(&custody)
                .arg(at)
                .arg(&tar_path);
            c
        },
        &[0, 1],
    )?;
    let rss_kib = max_rss_children_kib()?;
    let mut tars = Vec::new();
    for (p, _, flags) in &images {
        let t = time_n(
            args.rounds,
            "tar -t",
            || {
                let mut c = Command::new("tar");
                c.args(flags).arg(p);
                c
            },
            &[0],
        )?;
        tars.push(t);
    }
    println!();
    println!(
        "{:<8} {:>12} {:>16} {:>16} {:>16} {:>16}",
        "image", "file MB", "custody MB/s", "(median)", "tar -t MB/s", "(median)"
    );
    for ((p, kind, _), (s, t)) in images.iter().zip(scans.iter().zip(&tars)) {
        let file = std::fs::metadata(p)?.len();
        // throughput over the uncompressed tar bytes, for every format
        println!(
            "{:<8} {:>12.1} {:>16.1} {:>16.1} {:>16.1} {:>16.1}",
            kind,
            file as f64 / 1e6,
            mbs(tar_bytes, s.best),
            mbs(tar_bytes, s.median),
            mbs(tar_bytes, t.best),
            mbs(tar_bytes, t.median),
        );
    }
    println!(
        "{:<8} {:>12.1} {:>16.1} {:>16.1} {:>16} {:>16}",
        "tar (stdin, streamed)",
        tar_bytes as f64 / 1e6,
        mbs(tar_bytes, stdin_scan.best),
        mbs(tar_bytes, stdin_scan.median),
        "-",
        "-"
    );
    println!();
    println!(
        "throughput is uncompressed tar bytes ({:.1} MB) per second, best of {}; \
         peak RSS of custody scan (max over all its runs): {:.1} MiB (goal <= 64 MiB)",
        tar_bytes as f64 / 1e6,
        args.rounds,
        rss_kib as f64 / 1024.0
    );
    Ok(())
}
