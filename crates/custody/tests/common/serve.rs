//! One harness for a real custody server: `custody serve` as a process
//! (what an operator runs), or `custody_server::start` in-process for a
//! test that must reach the server's own state.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use super::cli::command;

/// A running `custody serve` process; killed when dropped.
pub struct ServeProcess {
    child: Child,
    /// `http://…` or `https://…` from the banner
    pub url: String,
    /// the bootstrap credential, printed on a first start only
    pub credential: Option<String>,
}

/// `custody serve --listen LISTEN ARGS` in `cwd` (or this process's
/// working directory), every other setting from the environment cleared;
/// `env` set. Reads the banner's URL and, on a first start, the bootstrap
/// credential printed after it.
pub fn start_serve(
    cwd: Option<&Path>,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> ServeProcess {
    let mut c = command();
    c.arg("serve").args(["--listen", listen]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("banner line").expect("banner is UTF-8");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in banner {first:?}"))
        .to_string();
    // The credential block follows only on a first start: read what is
    // there without blocking forever (the thread keeps draining stdout).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut credential = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(1500)) {
        if let Some(c) = line.trim().strip_prefix("cst1.") {
            credential = Some(format!("cst1.{c}"));
            break;
        }
    }
    ServeProcess {
        child,
        url,
        credential,
    }
}

impl ServeProcess {
    /// SIGTERM, then wait (at most 10 s) for the exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal("-TERM");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("custody serve did not stop within 10 s of SIGTERM");
    }

    /// `kill -9` (a crash, no shutdown path).
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `custody_server::start` on loopback with its data in `data_dir`, every
/// other setting default.
pub async fn start_in_process(data_dir: &Path) -> custody_server::RunningServer {
    let cfg = custody_server::ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.to_owned(),
        ..Default::default()
    };
    custody_server::start(cfg).await.unwrap()
}
