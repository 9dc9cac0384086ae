//! Footprint of `custody agent` (figures for docs/BENCHMARKS.md, not a
//! pass/fail timing test; ignored by default, run by hand):
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/tgt/agent cargo build --release -p custody \
//!     --no-default-features --features agent
//! CUSTODY_AGENT_BIN=/work/tgt/agent/release/custody CUSTODY_FOOTPRINT_MIB=1024 \
//!     cargo test -p custody --test agent_footprint -- --ignored --nocapture
//! ```
//!
//! Measures, for the agent binary given in `CUSTODY_AGENT_BIN`:
//! - its size, and its size after `strip`;
//! - peak RSS (`/usr/bin/time -v`, "Maximum resident set size") of one
//!   `custody agent check --once` that downloads, verifies and installs a
//!   payload of `CUSTODY_FOOTPRINT_MIB` MiB from a real `custody serve`;
//! - RSS of `custody agent run` idling after its first check-in
//!   (`/proc/PID/status` VmRSS and VmHWM), then that SIGTERM stops it.

mod agent_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::*;
use serde_json::json;

/// PUT a file as the request body, streamed (the payload is large).
fn put_file(url: &str, path: &str, token: &str, file: &Path) -> u16 {
    let addr = url.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    let len = std::fs::metadata(file).unwrap().len();
    write!(
        sock,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    std::io::copy(&mut std::fs::File::open(file).unwrap(), &mut sock).unwrap();
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).unwrap();
    String::from_utf8_lossy(&resp)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn write_payload(path: &Path, mib: usize) -> (u64, String) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        ctx.update(&chunk);
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    ((mib as u64) << 20, hex::encode(ctx.finish()))
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "footprint figures: needs CUSTODY_AGENT_BIN (a release build) and ~4 GiB of disk"]
fn agent_footprint() {
    let bin = std::env::var("CUSTODY_AGENT_BIN").expect("CUSTODY_AGENT_BIN");
    let mib: usize = std::env::var("CUSTODY_FOOTPRINT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let tmp =
        tempfile::tempdir_in(std::env::var("CUSTODY_FOOTPRINT_DIR").unwrap_or(".".into())).unwrap();

    // binary size
    let size = std::fs::metadata(&bin).unwrap().len();
    let stripped = tmp.path().join("custody-stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&bin)
        .status()
        .unwrap();
    assert!(ok.success());
    let ssize = std::fs::metadata(&stripped).unwrap().len();
    println!(
        "binary: {size} bytes ({:.2} MiB), stripped {ssize} bytes ({:.2} MiB)",
        size as f64 / 1048576.0,
        ssize as f64 / 1048576.0
    );

    // server with one payload
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let file = tmp.path().join("payload.img");
    let (len, sha) = write_payload(&file, mib);
    let t = token(&s, &setup.ci);
    let st = put_file(
        &s.url,
        &format!("/api/v1/repos/{REPO}/blobs/{sha}"),
        &t,
        &file,
    );
    assert!(st == 201 || st == 200, "upload: HTTP {st}");
    std::fs::remove_file(&file).unwrap();
    let r = api(
        &s,
        "PUT",
        &format!("/api/v1/repos/{REPO}/targets/board/big.img"),
        &t,
        Some(
            json!({"blob_sha256": sha, "custom": {"hardware_ids": ["board"], "release_counter": 1}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    setup.publish(&s);
    let tokens = setup.fleet(
        &s,
        "POST",
        "/api/v1/fleet/enrolment-tokens",
        Some(json!({"group": "lab", "count": 1})),
    );
    let state = tmp.path().join("dev");
    let o = Command::new(&bin)
        .args(["agent", "--state-dir"])
        .arg(&state)
        .args([
            "enroll",
            "--server",
            &s.url,
            "--hardware-id",
            "board",
            "--token",
        ])
        .arg(tokens["tokens"][0].as_str().unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(
        state.join("agent.json"),
        serde_json::to_vec(&json!({"reserve_bytes": 0, "poll_secs": 3600})).unwrap(),
    )
    .unwrap();
    setup.fleet(
        &s,
        "POST",
        "/api/v1/fleet/rollouts",
        Some(json!({"id": "big", "target": "board/big.img", "selector": {"hardware_ids": ["board"]}})),
    );

    // peak RSS of a check-in that installs the payload
    let started = Instant::now();
    let o = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&bin)
        .args(["agent", "--state-dir"])
        .arg(&state)
        .args(["check", "--once", "--json"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["action"]["result"], "installed", "{v}");
    let peak = stderr
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .and_then(|l| l.rsplit(':').next())
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    println!(
        "check --once installing {mib} MiB ({len} bytes): {:.1} s, peak RSS {peak} KiB",
        took.as_secs_f64()
    );

    // idle RSS of the daemon, and SIGTERM
    let mut child = Command::new(&bin)
        .args(["agent", "--state-dir"])
        .arg(&state)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut all = String::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(all.clone());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        if seen.contains("up to date") {
            break;
        }
        assert!(Instant::now() < deadline, "{seen}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let rss = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    println!("agent run idle after one check-in: VmRSS {rss} KiB, VmHWM {hwm} KiB");
    let t0 = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    println!(
        "SIGTERM: exited {status} after {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    assert!(status.success());
}
