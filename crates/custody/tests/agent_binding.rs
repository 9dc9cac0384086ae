//! Issue 13, defect 1, end to end: another device's director metadata,
//! swapped into a check-in answer on the path (a relay or a TLS-terminating
//! proxy), must change nothing this device trusts.
//!
//! A real `custody serve`, two agents A (board-a) and B (board-b), and a
//! tampering proxy on loopback in front of the server. A checks in a dozen
//! times, so its director versions run far ahead of B's. Then the proxy
//! replaces the `director` field of one answer to B with A's latest
//! director metadata (validly signed by the director, bound to A). B must
//! refuse it and report an attack, keep its trusted director directory
//! byte-identical, and its next honest check-in must succeed with no new
//! attack report (before the fix, B persisted A's timestamp/snapshot/targets
//! and every honest answer after that was refused as a rollback).

mod agent_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_support::*;
use serde_json::{json, Value};

/// What the proxy remembers and does to check-in answers.
#[derive(Default)]
struct Tamper {
    /// device id of A (its answers are remembered)
    a: String,
    /// device id of B (one answer is rewritten when armed)
    b: String,
    /// A's latest director metadata set
    latest_a: Option<Value>,
    /// swap the next answer to B
    armed: bool,
    swapped: usize,
}

/// A forwarding HTTP proxy that may rewrite check-in answers.
struct Proxy {
    url: String,
    tamper: Arc<Mutex<Tamper>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let tamper = Arc::new(Mutex::new(Tamper::default()));
        let (t, up) = (tamper.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for s in l.incoming().map_while(Result::ok) {
                let (t, up) = (t.clone(), up.clone());
                std::thread::spawn(move || serve(s, &up, &t));
            }
        });
        Proxy { url, tamper }
    }
}

fn serve(mut s: TcpStream, upstream: &str, tamper: &Mutex<Tamper>) {
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = Vec::new();
    let mut len = 0usize;
    let mut device = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            let lower = k.to_ascii_lowercase();
            if lower == "content-length" {
                len = v.parse().unwrap_or(0);
            }
            if lower == custody_director::wire::headers::DEVICE {
                device = v.clone();
            }
            if !["host", "connection", "content-length", "accept-encoding"]
                .contains(&lower.as_str())
            {
                headers.push((k, v));
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut b = ureq::http::Request::builder()
        .method(method.as_str())
        .uri(format!("{upstream}{path}"));
    for (k, v) in &headers {
        b = b.header(k, v);
    }
    let mut resp = agent.run(b.body(body).unwrap()).unwrap();
    let out_headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !["transfer-encoding", "connection", "content-length"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let status = resp.status().as_u16();
    let mut out = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    if method == "POST" && path.starts_with("/device/v1/checkin") && status == 200 {
        let mut t = tamper.lock().unwrap();
        let mut answer: Value = serde_json::from_slice(&out).unwrap();
        if device == t.a {
            t.latest_a = Some(answer["director"].clone());
        } else if device == t.b && t.armed {
            t.armed = false;
            t.swapped += 1;
            answer["director"] = t.latest_a.clone().expect("A checked in");
            out = serde_json::to_vec(&answer).unwrap();
        }
    }
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in out_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        out.len()
    ));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&out);
}

fn enroll_at(url: &str, dir: &Path, name: &str, hw: &str, token: &str) -> Agent {
    let state = dir.join(name);
    let config = dir.join(format!("{name}.json"));
    std::fs::write(
        &config,
        serde_json::to_vec(&json!({
            "installer": {"kind": "slot", "root": state.join("slots")},
            "health_check": {"argv": ["sh", "-c", "test -s \"$CUSTODY_PAYLOAD\""], "timeout_secs": 20},
            "reserve_bytes": 0,
        }))
        .unwrap(),
    )
    .unwrap();
    let o = custody(&[
        "agent",
        "--state-dir",
        state.to_str().unwrap(),
        "enroll",
        "--server",
        url,
        "--token",
        token,
        "--hardware-id",
        hw,
    ]);
    assert!(
        o.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let id = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    Agent { state, config, id }
}

/// Every file of a directory tree, by relative path.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn director_version(dir: &Path, role: &str) -> u64 {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{role}.json"))).unwrap()).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

fn attack_count(setup: &Setup, s: &Server, id: &str) -> usize {
    let v = setup.fleet(
        s,
        "GET",
        &format!("/api/v1/fleet/attacks?device={id}"),
        None,
    );
    v.as_array()
        .unwrap_or_else(|| panic!("attacks list: {v}"))
        .len()
}

#[test]
fn another_devices_director_metadata_changes_nothing_this_device_trusts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let proxy = Proxy::start(&s.url);
    let setup = Setup::new(&s);
    let fw = payload("bind-fw-1", 16 * 1024);
    setup.stage_release(&s, "board-a/fw-1.img", &fw, "board-a", 1);
    setup.publish(&s);
    let tokens = setup.enrolment_tokens(&s, "lab", 2);
    let a = enroll_at(&proxy.url, tmp.path(), "a", "board-a", &tokens[0]);
    let b = enroll_at(&proxy.url, tmp.path(), "b", "board-b", &tokens[1]);
    {
        let mut t = proxy.tamper.lock().unwrap();
        t.a = a.id.clone();
        t.b = b.id.clone();
    }
    rollout(
        &setup,
        &s,
        "v1",
        "board-a/fw-1.img",
        "board-a",
        json!([{"percent": 100.0}]),
        "s",
    );

    // B checks in once, honestly.
    let (c, v) = b.check();
    assert_eq!(
        (c, &v["action"]["result"]),
        (0, &json!("up_to_date")),
        "{v}"
    );
    // A checks in a dozen times: its director versions run ahead.
    for i in 0..12 {
        let (c, v) = a.check();
        assert_eq!(c, 0, "A check-in {i}: {v}");
    }
    assert_eq!(a.installed(), Some(("board-a/fw-1.img".to_owned(), 1)));
    let b_dir = b.state.join("director");
    let a_ts = director_version(&a.state.join("director"), "timestamp");
    let b_ts = director_version(&b_dir, "timestamp");
    assert!(a_ts > b_ts + 5, "A {a_ts} must be well ahead of B {b_ts}");
    let before = snapshot_dir(&b_dir);
    let attacks_before = attack_count(&setup, &s, &b.id);

    // One answer to B carries A's latest director metadata.
    proxy.tamper.lock().unwrap().armed = true;
    let (c, v) = b.check();
    assert_eq!(proxy.tamper.lock().unwrap().swapped, 1);
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "refused", "{v}");
    assert_eq!(v["action"]["subject"], "director", "{v}");
    let reason = v["action"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&a.id) || reason.contains("board-a"),
        "{reason}"
    );
    assert_eq!(v["attacks_delivered"], 1, "reported at once: {v}");
    assert_eq!(attack_count(&setup, &s, &b.id), attacks_before + 1);
    assert_eq!(b.installed(), None);
    // Nothing B trusts changed: not a single byte of its director store.
    assert_eq!(
        snapshot_dir(&b_dir),
        before,
        "B's trusted director directory changed"
    );

    // B's next honest answer (its own, lower versions) is accepted.
    let (c, v) = b.check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "up_to_date", "{v}");
    assert_eq!(v["attacks_delivered"], 0, "{v}");
    assert_eq!(attack_count(&setup, &s, &b.id), attacks_before + 1);
    assert!(director_version(&b_dir, "timestamp") < a_ts);
    let st = b.run(&["status", "--json"]).1;
    assert_eq!(st["pending_attacks"], json!([]), "{st}");
}
