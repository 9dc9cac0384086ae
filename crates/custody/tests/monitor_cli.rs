//! `custody monitor` against a real server's transparency log: alerts for
//! the entries that raise them, exactly once across steps, the position
//! kept across runs, and a halt (exit 2, state untouched) when the log no
//! longer extends the tree the monitor saw.

mod common;

use std::collections::BTreeMap;
use std::process::Output;

use common::custody_async as custody;
use common::serve::start_in_process;
use custody_log::entry::EntryBody;
use serde_json::Value;

fn alerts(o: &Output) -> Vec<Value> {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn publish(name: &str, sha: &str) -> EntryBody {
    EntryBody::TargetPublish {
        repo: "fw".into(),
        name: name.into(),
        hashes: BTreeMap::from([("sha256".to_owned(), sha.to_owned())]),
        length: 10,
        release_counter: None,
        signing_keyids: vec![],
        provenance_sha256: None,
        targets_version: None,
    }
}

/// A real server's log and a monitor state directory beside it.
struct Followed {
    _dir: tempfile::TempDir,
    _server: custody_server::RunningServer,
    log: std::sync::Arc<custody_server::testing::ServerLog>,
    url: String,
    key: String,
    state: std::path::PathBuf,
}

impl Followed {
    async fn new() -> Followed {
        let dir = tempfile::tempdir().unwrap();
        let server = start_in_process(&dir.path().join("data")).await;
        let log = custody_server::testing::log(&server).clone();
        Followed {
            url: server.url(),
            key: log.verifier_key().to_vkey(),
            state: dir.path().join("monitor"),
            log,
            _server: server,
            _dir: dir,
        }
    }

    /// One `custody monitor --once --json` step, with `extra` arguments.
    async fn step(&self, extra: &[&str]) -> Output {
        let state = self.state.to_str().unwrap();
        let mut args = vec![
            "monitor",
            "--log",
            &self.url,
            "--log-key",
            &self.key,
            "--state",
            state,
            "--once",
            "--json",
        ];
        args.extend_from_slice(extra);
        custody(&args).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_follows_the_log_alerts_once_and_halts_on_a_fork() {
    let f = Followed::new().await;
    let (log, state) = (&f.log, &f.state);
    let step = || f.step(&[]);

    // A quiet log: nothing.
    log.append(publish("a.bin", &"aa".repeat(32)))
        .await
        .unwrap();
    assert_eq!(alerts(&step().await), Vec::<Value>::new());

    // The same name with other bytes, and a device running what nobody
    // published: two alerts naming their entries.
    let republished = log
        .append(publish("a.bin", &"bb".repeat(32)))
        .await
        .unwrap();
    let unknown = log
        .append(EntryBody::InstallReport {
            device_id: "dev1".into(),
            target: "evil.bin".into(),
            outcome: "installed".into(),
            manifest_sha256: "00".repeat(32),
            manifest: None,
            device_key: None,
        })
        .await
        .unwrap();
    let a = alerts(&step().await);
    let rules: Vec<&str> = a.iter().map(|x| x["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        vec!["republished_with_other_bytes", "unpublished_installed"],
        "{a:?}"
    );
    assert_eq!(a[0]["entries"][1], republished);
    assert_eq!(a[1]["entries"][0], unknown);
    assert_eq!(a[1]["subject"], "dev1");

    // The next step starts where the last one ended: no alert twice.
    assert_eq!(alerts(&step().await), Vec::<Value>::new());

    // A state whose tree is not the log's (as if the log had been forked
    // or rewritten since): exit 2, log_fork, and the state is left as it
    // was.
    let path = state.join("monitor-state.json");
    let mut saved: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let roots = saved["frontier"]["roots"].as_array_mut().unwrap();
    roots[0] = Value::String(base64_of(&[7u8; 32]));
    std::fs::write(&path, serde_json::to_vec(&saved).unwrap()).unwrap();
    log.append(publish("b.bin", &"cc".repeat(32)))
        .await
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let o = step().await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["rule"], "log_fork", "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ALARM"),
        "{o:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "state untouched");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A one-thread HTTP receiver on loopback: answers each POST with
/// `status` and records (headers, body).
fn receiver(status: u16) -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if tx.send((head, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_signed_webhook_at_least_once() {
    let f = Followed::new().await;
    let log = &f.log;
    const SECRET: &str = "a webhook secret of some length";
    std::env::set_var("CUSTODY_TEST_HOOK_SECRET", SECRET);
    let f = &f;
    let step = |hook: String| async move {
        let env = ["--webhook-secret-env", "CUSTODY_TEST_HOOK_SECRET"];
        f.step(&["--webhook", &hook, env[0], env[1]]).await
    };
    log.append(publish("a.bin", &"aa".repeat(32)))
        .await
        .unwrap();
    log.append(publish("a.bin", &"bb".repeat(32)))
        .await
        .unwrap();

    // The endpoint refuses: exit 1, the alert stays in the outbox.
    let (refusing, _seen) = receiver(503);
    let o = step(refusing).await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("outbox"),
        "{o:?}"
    );

    // The endpoint takes it: the same alert (same id), signed over its body.
    let (taking, seen) = receiver(200);
    let o = step(taking.clone()).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let (head, body) = seen
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["rule"], "republished_with_other_bytes");
    let want = custody_client::monitor::webhook_signature(SECRET.as_bytes(), &body);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("x-custody-signature: {want}")),
        "{head}"
    );
    assert!(head.contains(alert["id"].as_str().unwrap()), "{head}");
    // Delivered: the next step sends nothing.
    let o = step(taking).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(seen
        .recv_timeout(std::time::Duration::from_millis(300))
        .is_err());
}
