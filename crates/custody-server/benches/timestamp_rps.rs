//! Throughput of `GET /repos/<repo>/metadata/timestamp.json` on loopback.
//!
//! Goal: ≥ 20,000 requests/s on 2 cores. The load generator is a second
//! process (this binary re-executed with `CUSTODY_BENCH_CLIENT_ADDR`, one
//! tokio thread); client and server share the machine's cores, so the
//! printed figure is a lower bound for the server.
//! Bounded: runs for `CUSTODY_BENCH_SECONDS` (default 5) with
//! `CUSTODY_BENCH_CONNECTIONS` (default 32) keep-alive connections.
//!
//! cargo bench -p custody-server --bench timestamp_rps

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One keep-alive connection issuing GETs back to back; returns how many
/// complete 200 responses it read.
async fn client(addr: SocketAddr, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let req = b"GET /repos/bench/metadata/timestamp.json HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0usize;
    while !stop.load(Ordering::Relaxed) {
        sock.write_all(req).await.expect("write");
        // read one response: head, then Content-Length bytes
        loop {
            if let Some(head_end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..head_end]).expect("ascii head");
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("content-length");
                let total = head_end + 4 + len;
                if filled >= total {
                    buf.copy_within(total..filled, 0);
                    filled -= total;
                    break;
                }
            }
            let n = sock.read(&mut buf[filled..]).await.expect("read");
            assert!(n > 0, "server closed the connection");
            filled += n;
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Client mode: `connections` keep-alive connections against `addr` for a
/// warm-up second and `seconds` measured; prints `done elapsed_secs`.
fn run_client(addr: SocketAddr, seconds: u64, connections: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            tasks.push(tokio::spawn(client(addr, stop.clone(), count.clone())));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start_count = count.load(Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let done = count.load(Ordering::Relaxed) - start_count;
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        println!("{done} {elapsed}");
    });
}

fn main() {
    let seconds = env_u64("CUSTODY_BENCH_SECONDS", 5).min(60);
    let connections = env_u64("CUSTODY_BENCH_CONNECTIONS", 32).clamp(1, 512);
    if let Ok(addr) = std::env::var("CUSTODY_BENCH_CLIENT_ADDR") {
        run_client(addr.parse().expect("client address"), seconds, connections);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = custody_server::ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let server = custody_server::start(cfg).await.expect("server");
        let hosting = custody_server::testing::hosting(&server);
        let g = hosting.begin_generation("bench").expect("generation");
        let ts = br#"{"signatures":[{"keyid":"0000000000000000000000000000000000000000000000000000000000000000","sig":"00"}],"signed":{"_type":"timestamp","expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}},"spec_version":"1.0.31","version":1}}"#;
        g.write_metadata("timestamp.json", ts).expect("write");
        g.commit(hosting).expect("commit");
        let addr = server.addr;
        // The load generator: this binary again, in client mode, as a
        // second process.
        let exe = std::env::current_exe().expect("own executable");
        let out = tokio::process::Command::new(exe)
            .env("CUSTODY_BENCH_CLIENT_ADDR", addr.to_string())
            .env("CUSTODY_BENCH_SECONDS", seconds.to_string())
            .env("CUSTODY_BENCH_CONNECTIONS", connections.to_string())
            .output()
            .await
            .expect("run the load generator");
        assert!(out.status.success(), "load generator failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        let done: u64 = it.next().and_then(|v| v.parse().ok()).expect("count");
        let elapsed: f64 = it.next().and_then(|v| v.parse().ok()).expect("seconds");
        println!(
            "GET timestamp.json: {:.0} requests/s ({done} in {elapsed:.2} s, {connections} keep-alive connections from a second process; server 2 worker threads, {} cores shared)",
            done as f64 / elapsed,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        let _ = server.shutdown().await;
    });
}
