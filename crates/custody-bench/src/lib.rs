//! Shared pieces of the custody benchmark binaries.
//!
//! * locating the workspace, python-tuf's interpreter and the `custody` binary,
//! * generating (cached) benchmark repositories with `scripts/bench/make_repo.py`,
//! * a loopback static HTTP server (axum + tower-http `ServeDir`) running on its
//!   own thread and tokio runtime, counting requests and response body bytes,
//! * timing child processes and small statistics helpers.
//!
//! The benchmarks treat both clients as black boxes (child processes), so the
//! figures include process start-up: that is what a device or CI job pays.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use http_body::Frame;
use serde::{Deserialize, Serialize};
use tower_http::services::ServeDir;

/// The workspace root: `--workspace`, else `CUSTODY_WORKSPACE`, else the
/// directory two levels above this crate's manifest (compile time).
pub fn workspace_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("CUSTODY_WORKSPACE") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The python interpreter that has python-tuf: `--python`, else
/// `CUSTODY_PYTHON`, else `<workspace>/.venv/bin/python`.
pub fn python(explicit: Option<&Path>, workspace: &Path) -> Result<PathBuf> {
    let candidate = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CUSTODY_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| workspace.join(".venv/bin/python"));
    if !candidate.exists() {
        bail!(
            "python with python-tuf not found at {} (set CUSTODY_PYTHON or pass --python; \
             ./scripts/test creates <workspace>/.venv with python-tuf)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Directory of the running executable's cargo profile (e.g. `<target>/release`).
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Default data directory: `<cargo target dir>/bench-data`, derived from this
/// executable's location so it follows `CARGO_TARGET_DIR`.
pub fn default_data_dir(workspace: &Path) -> PathBuf {
    exe_dir()
        .and_then(|d| d.parent().map(|t| t.join("bench-data")))
        .unwrap_or_else(|| workspace.join("target/bench-data"))
}

/// The `custody` binary: `--custody`, else `CUSTODY_BIN`, else the `custody`
/// executable next to this one (same target dir and profile). Fails with a
/// message saying how to build it.
pub fn custody_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidate = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CUSTODY_BIN").map(PathBuf::from))
        .or_else(|| exe_dir().map(|d| d.join("custody")))
        .ok_or_else(|| anyhow!("cannot locate the custody binary; pass --custody PATH"))?;
    if !candidate.is_file() {
        bail!(
            "custody binary not found at {}: build it with `cargo build --release -p custody` \
             (same CARGO_TARGET_DIR as this bench) or pass --custody PATH / set CUSTODY_BIN",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// The options every bench that runs python-tuf and the `custody` binary
/// takes (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Where generated repositories and run dirs live (default <target dir>/bench-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Workspace root (default: from the build, or CUSTODY_WORKSPACE).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Python with python-tuf (default CUSTODY_PYTHON or <workspace>/.venv/bin/python).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// custody binary (default CUSTODY_BIN or `custody` next to this executable).
    #[arg(long)]
    pub custody: Option<PathBuf>,
}

/// [`PeerArgs`] resolved: every path exists (the custody binary only when
/// `custody` was asked for), so a missing one fails before minutes of work.
#[derive(Debug, Clone)]
pub struct Peers {
    pub workspace: PathBuf,
    pub python: PathBuf,
    pub custody: Option<PathBuf>,
    pub data_dir: PathBuf,
}

impl PeerArgs {
    pub fn resolve(&self, custody: bool) -> Result<Peers> {
        let workspace = workspace_root(self.workspace.as_deref());
        let python = python(self.python.as_deref(), &workspace)?;
        let custody = if custody {
            Some(custody_bin(self.custody.as_deref())?)
        } else {
            None
        };
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| default_data_dir(&workspace));
        Ok(Peers {
            workspace,
            python,
            custody,
            data_dir,
        })
    }
}

/// One target file that make_repo.py wrote to disk.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StoredTarget {
    pub index: u64,
    pub name: String,
    pub length: u64,
    pub sha256: String,
    pub role: String,
}

/// `manifest.json` of a generated repository (the fields the benches use).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Manifest {
    pub params: serde_json::Value,
    pub stored_targets: Vec<StoredTarget>,
    pub metadata_bytes: std::collections::BTreeMap<String, u64>,
    pub bins: u64,
    pub generation_seconds: f64,
    #[serde(default)]
    pub cached: bool,
}

/// Runs `scripts/bench/make_repo.py --out OUT ARGS...` (cached by the script)
/// and returns its manifest.
pub fn make_repo(python: &Path, workspace: &Path, out: &Path, args: &[String]) -> Result<Manifest> {
    let script = workspace.join("scripts/bench/make_repo.py");
    let output = Command::new(python)
        .arg(&script)
        .arg("--out")
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| {
        format!(
            "parsing the manifest printed by {}: {last:?}",
            script.display()
        )
    })
}

/// Request / byte counters of the loopback server.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    body_bytes: AtomicU64,
    not_found: AtomicU64,
    paths: Mutex<Vec<String>>,
}

/// What the server saw between two [`Server::reset`] calls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    pub requests: u64,
    pub body_bytes: u64,
    pub not_found: u64,
    pub paths: Vec<String>,
}

/// A response body that adds the length of every data frame it yields to a
/// counter, i.e. counts the bytes actually handed to hyper for sending.
struct CountingBody {
    inner: Body,
    counters: Arc<Counters>,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counters
                    .body_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn count(State(counters): State<Arc<Counters>>, req: Request, next: Next) -> Response {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut paths) = counters.paths.lock() {
        paths.push(req.uri().path().to_string());
    }
    let resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::NOT_FOUND {
        counters.not_found.fetch_add(1, Ordering::Relaxed);
    }
    let (parts, body) = resp.into_parts();
    let body = Body::new(CountingBody {
        inner: body,
        counters: counters.clone(),
    });
    Response::from_parts(parts, body)
}

/// Loopback static file server on its own thread and tokio runtime, so that
/// serving never competes with the bench's own (blocking) control flow.
pub struct Server {
    addr: SocketAddr,
    counters: Arc<Counters>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Server {
    /// Serves `root` at `http://127.0.0.1:<port>/`.
    pub fn start(root: &Path) -> Result<Server> {
        let root = root.to_path_buf();
        let counters = Arc::new(Counters::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("bench-http".into())
            .spawn(move || -> Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .context("building the server's tokio runtime")?;
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(anyhow!("binding 127.0.0.1:0: {e}")));
                            return Ok(());
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr().context("local_addr"));
                    let app = Router::new()
                        .fallback_service(ServeDir::new(&root))
                        .layer(middleware::from_fn_with_state(c.clone(), count));
                    // TCP_NODELAY as custody-server sets it: otherwise Nagle +
                    // delayed ACK add up to 40 ms to each small response and
                    // the bench measures the server, not the clients.
                    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = shutdown_rx.await;
                        })
                        .await
                        .context("serving HTTP")
                })
            })
            .context("spawning the server thread")?;
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .context("server thread did not report its address")??;
        Ok(Server {
            addr,
            counters,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/<path>/` (with a trailing slash).
    pub fn url(&self, path: &str) -> String {
        let path = path.trim_matches('/');
        if path.is_empty() {
            format!("http://{}/", self.addr)
        } else {
            format!("http://{}/{}/", self.addr, path)
        }
    }

    /// Returns the traffic since the last reset and zeroes the counters.
    pub fn reset(&self) -> Traffic {
        let paths = self
            .counters
            .paths
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        Traffic {
            requests: self.counters.requests.swap(0, Ordering::Relaxed),
            body_bytes: self.counters.body_bytes.swap(0, Ordering::Relaxed),
            not_found: self.counters.not_found.swap(0, Ordering::Relaxed),
            paths,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A finished child process: wall time from spawn to exit, CPU time (user +
/// system) of the child and its waited-for descendants, and its output.
#[derive(Debug)]
pub struct Measured {
    pub wall: Duration,
    pub cpu: Duration,
    pub output: Output,
}

fn children_cpu() -> Result<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(tv(u.user_time()) + tv(u.system_time()))
}

/// Runs `cmd` to completion, capturing output. CPU time is the difference of
/// getrusage(RUSAGE_CHILDREN) around the wait, which is exact as long as this
/// process waits for one child at a time (the benches do).
pub fn run_measured(cmd: &mut Command) -> Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu_before = children_cpu()?;
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    let wall = start.elapsed();
    let cpu = children_cpu()?.saturating_sub(cpu_before);
    Ok(Measured { wall, cpu, output })
}

/// Runs `cmd` to completion, capturing output; returns the wall time from
/// spawn to exit.
pub fn run_timed(cmd: &mut Command) -> Result<(Duration, Output)> {
    let m = run_measured(cmd)?;
    Ok((m.wall, m.output))
}

/// Fails with the command, its exit status and stderr if it did not succeed.
pub fn check_output(what: &str, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    bail!(
        "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
        output.status,
        tail(&stderr, 40),
        tail(&stdout, 10)
    )
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    let from = all.len().saturating_sub(lines);
    all.get(from..).unwrap_or_default().join("\n")
}

/// SHA-256 of a file (streamed), lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    custody_fs::for_each_chunk(path, ("open", "read"), |chunk| {
        ctx.update(chunk);
        Ok::<_, custody_fs::FsError>(())
    })?;
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// Finds the single regular file under `dir` (recursively) whose SHA-256 is
/// `sha256`; clients differ in how they name downloaded targets.
pub fn find_downloaded(dir: &Path, sha256: &str, length: u64) -> Result<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry.with_context(|| format!("listing {}", d.display()))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .with_context(|| format!("stat {}", path.display()))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if len == length && sha256_file(&path)? == sha256 {
                    return Ok(path);
                }
                seen.push(format!("{} ({len} bytes)", path.display()));
            }
        }
    }
    bail!(
        "no file of {length} bytes with sha256 {sha256} under {} (found: {})",
        dir.display(),
        if seen.is_empty() {
            "nothing".to_string()
        } else {
            seen.join(", ")
        }
    )
}

/// Summary statistics of a sample of durations, in seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mid = n / 2;
        let median = if n % 2 == 1 {
            s.get(mid).copied()?
        } else {
            (s.get(mid - 1).copied()? + s.get(mid).copied()?) / 2.0
        };
        Some(Stats {
            n,
            median,
            min: s.first().copied()?,
            max: s.last().copied()?,
        })
    }
}

/// The machine the figures were taken on (for the report).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub load_average: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpus,
            cpu_model,
            load_average,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(server: &Server, path: &str) -> (u16, Vec<u8>) {
        let addr = server.addr;
        let mut s = TcpStream::connect(addr).expect("connect to the test server");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header terminator");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        (status, raw[split + 4..].to_vec())
    }

    #[test]
    fn server_counts_requests_body_bytes_and_404s() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("metadata")).expect("mkdir");
        std::fs::write(dir.path().join("metadata/a.json"), vec![b'x'; 1000]).expect("write");
        let server = Server::start(dir.path()).expect("start server");
        assert!(server.url("metadata").ends_with("/metadata/"));

        let (status, body) = get(&server, "/metadata/a.json");
        assert_eq!(status, 200);
        assert_eq!(body.len(), 1000);
        let (status, _) = get(&server, "/metadata/2.root.json");
        assert_eq!(status, 404);

        let t = server.reset();
        assert_eq!(t.requests, 2);
        assert_eq!(t.not_found, 1);
        assert_eq!(
            t.body_bytes, 1000,
            "404 bodies are empty, the file is 1000 bytes"
        );
        assert_eq!(t.paths, vec!["/metadata/a.json", "/metadata/2.root.json"]);
        // reset zeroes the counters
        let t = server.reset();
        assert_eq!((t.requests, t.body_bytes, t.not_found), (0, 0, 0));
    }

    #[test]
    fn stats_median_min_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).expect("stats");
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        let s = Stats::of(&[4.0, 1.0, 2.0, 3.0]).expect("stats");
        assert_eq!(s.median, 2.5);
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn find_downloaded_checks_length_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/b/t"), b"abc").expect("write");
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(find_downloaded(dir.path(), sha, 3).is_ok());
        assert!(find_downloaded(dir.path(), sha, 4).is_err());
        assert!(find_downloaded(dir.path(), &"0".repeat(64), 3).is_err());
    }
}
