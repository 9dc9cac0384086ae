//! Shared by the agent end-to-end tests: a real `custody serve` process,
//! the deployment's identities, and agent processes.
#![allow(dead_code, unused_imports)]

#[path = "../common/mod.rs"]
pub mod common;
pub mod proxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use custody_repo::keyring::KeyRing;
use serde_json::{json, Value};

pub use common::cli::tree;
pub use common::custody;
use common::serve::{start_serve, ServeProcess};

pub const REPO: &str = "main";

pub struct Server {
    process: ServeProcess,
    pub url: String,
    pub credential: Option<String>,
    pub data: PathBuf,
}

impl Server {
    /// `kill -9` the server process (a crash, no shutdown path).
    pub fn kill9(&mut self) {
        self.process.kill9();
    }
}

pub fn start(data: &Path) -> Server {
    start_on(data, "127.0.0.1:0")
}

/// `custody serve` on `data`, listening on `listen` (a restart on the
/// address agents enrolled with).
pub fn start_on(data: &Path, listen: &str) -> Server {
    let process = start_serve(
        None,
        listen,
        &["--data-dir", data.to_str().unwrap()],
        &[("CUSTODY_KEY_PASSPHRASE", "test passphrase for online keys")],
    );
    Server {
        url: process.url.clone(),
        credential: process.credential.clone(),
        process,
        data: data.to_owned(),
    }
}

pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} not JSON ({e}): {}", self.status, self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a raw socket (Connection: close).
pub fn http(url: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
    let addr = url.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    sock.write_all(body).unwrap();
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "helper reads only Content-Length bodies: {head}"
    );
    Resp {
        status,
        body: resp[split + 4..].to_vec(),
    }
}

pub fn api(s: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
    let b = body
        .map(|v| serde_json::to_vec(&v).unwrap())
        .unwrap_or_default();
    http(&s.url, method, path, Some(token), &b)
}

thread_local! {
    static TOKENS: std::cell::RefCell<std::collections::HashMap<String, String>> =
        std::cell::RefCell::default();
}

/// A bearer token for `credential` (cached: the server rate-limits token
/// requests per address).
pub fn token(s: &Server, credential: &str) -> String {
    if let Some(t) = TOKENS.with(|m| m.borrow().get(credential).cloned()) {
        return t;
    }
    let r = http(
        &s.url,
        "POST",
        "/api/v1/token",
        None,
        &serde_json::to_vec(&json!({ "credential": credential })).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json()["token"].as_str().unwrap().to_string();
    TOKENS.with(|m| m.borrow_mut().insert(credential.to_owned(), t.clone()));
    t
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// The identities of a deployment: CI, publisher, offline signer, fleet admin.
pub struct Setup {
    pub ci: String,
    pub publisher: String,
    pub signer: String,
    pub fleet: String,
    pub ring: KeyRing,
    pub targets_key: String,
}

/// A new API credential with `scopes`, made with the `admin` token; its
/// secret.
pub fn credential(s: &Server, admin: &str, name: &str, scopes: &[&str]) -> String {
    let r = api(
        s,
        "POST",
        "/api/v1/credentials",
        admin,
        Some(json!({"name": name, "scopes": scopes})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["secret"].as_str().unwrap().to_owned()
}

/// `custody server ARGS` against `s`, as an operator runs it with
/// `credential`.
pub fn server_cli(s: &Server, credential: &str, args: &[&str]) -> std::process::Output {
    common::cli::command()
        .env("CUSTODY_SERVER", &s.url)
        .env("CUSTODY_CREDENTIAL", credential)
        .env_remove("CUSTODY_TOKEN")
        .arg("server")
        .args(args)
        .output()
        .unwrap()
}

impl Setup {
    pub fn new(s: &Server) -> Setup {
        let admin = token(s, s.credential.as_deref().expect("first start"));
        let cred = |name: &str, scopes: &[&str]| credential(s, &admin, name, scopes);
        let ci = cred("ci", &["target:upload@main", "target:stage@main"]);
        let publisher = cred("release manager", &["repo:publish@main"]);
        let signer = cred(
            "offline signer",
            &["role:sign:root@main", "role:sign:targets@main"],
        );
        let fleet = cred("fleet operator", &["fleet:admin"]);
        let root = MemorySigner::generate_ed25519().unwrap();
        let targets = MemorySigner::generate_ed25519().unwrap();
        let body = json!({
            "root": {"keys": [root.key()], "threshold": 1},
            "targets": {"keys": [targets.key()], "threshold": 1},
        });
        let r = api(
            s,
            "POST",
            &format!("/api/v1/repos/{REPO}"),
            &admin,
            Some(body),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let root_key = root.keyid().to_string();
        let targets_key = targets.keyid().to_string();
        let mut ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
        ring.add(Box::new(root));
        ring.add(Box::new(targets));
        let setup = Setup {
            ci,
            publisher,
            signer,
            fleet,
            ring,
            targets_key,
        };
        setup.sign(s, "root", &root_key);
        setup.sign(s, "targets", &setup.targets_key.clone());
        setup
    }

    pub fn sign(&self, s: &Server, role: &str, keyid: &str) -> Value {
        let t = token(s, &self.signer);
        let draft = api(
            s,
            "GET",
            &format!("/api/v1/repos/{REPO}/roles/{role}"),
            &t,
            None,
        );
        assert_eq!(draft.status, 200, "{}", draft.text());
        let (_, signed) = custody_repo::repository::sign_metadata_bytes(
            &draft.body,
            Path::new("draft.json"),
            &[keyid.to_string()],
            &self.ring,
        )
        .unwrap();
        let r = http(
            &s.url,
            "POST",
            &format!("/api/v1/repos/{REPO}/roles/{role}/signatures"),
            Some(&t),
            &signed,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn stage(&self, s: &Server, name: &str, data: &[u8], custom: Value) {
        let t = token(s, &self.ci);
        let sha = sha256_hex(data);
        let r = http(
            &s.url,
            "PUT",
            &format!("/api/v1/repos/{REPO}/blobs/{sha}"),
            Some(&t),
            data,
        );
        assert!(r.status == 201 || r.status == 200, "{}", r.text());
        let r = api(
            s,
            "PUT",
            &format!("/api/v1/repos/{REPO}/targets/{name}"),
            &t,
            Some(json!({ "blob_sha256": sha, "custom": custom })),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// Stage a release for one hardware id (`custom.hardware_ids`,
    /// `custom.release_counter`).
    pub fn stage_release(&self, s: &Server, name: &str, data: &[u8], hw: &str, counter: u64) {
        self.stage(
            s,
            name,
            data,
            json!({"hardware_ids": [hw], "release_counter": counter}),
        );
    }

    /// `count` one-time enrolment tokens for `group`.
    pub fn enrolment_tokens(&self, s: &Server, group: &str, count: usize) -> Vec<String> {
        let r = self.fleet(
            s,
            "POST",
            "/api/v1/fleet/enrolment-tokens",
            Some(json!({"group": group, "count": count})),
        );
        let tokens: Vec<String> = r["tokens"]
            .as_array()
            .expect("tokens array")
            .iter()
            .map(|t| t.as_str().expect("token string").to_owned())
            .collect();
        assert_eq!(tokens.len(), count, "{r}");
        tokens
    }

    pub fn publish(&self, s: &Server) {
        let t = token(s, &self.publisher);
        let r = api(
            s,
            "POST",
            &format!("/api/v1/repos/{REPO}/publish"),
            &t,
            None,
        );
        if r.status == 409 {
            // The refusal names what is missing: the offline targets key.
            assert_eq!(r.json()["error"], "signatures_missing", "{}", r.text());
            assert!(r.text().contains(&self.targets_key), "{}", r.text());
            let r = self.sign(s, "targets", &self.targets_key);
            assert!(r["published"]["version"].is_i64(), "{r}");
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }

    pub fn fleet(&self, s: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
        let t = token(s, &self.fleet);
        let r = api(s, method, path, &t, body);
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }
}

/// A health check that passes when the installed payload is not empty.
pub const PAYLOAD_NOT_EMPTY: &str = r#"test -s "$CUSTODY_PAYLOAD""#;

pub struct Agent {
    pub state: PathBuf,
    pub config: PathBuf,
    pub id: String,
}

impl Agent {
    pub fn enroll(
        s: &Server,
        dir: &Path,
        name: &str,
        hw: &str,
        token: &str,
        health: &str,
    ) -> Agent {
        Self::enroll_at(&s.url, dir, name, hw, token, health, &[])
    }

    /// Enrol through `url` (the server, or a proxy in front of it); the
    /// agent's health check is `sh -c HEALTH`.
    pub fn enroll_at(
        url: &str,
        dir: &Path,
        name: &str,
        hw: &str,
        token: &str,
        health: &str,
        extra: &[&str],
    ) -> Agent {
        let state = dir.join(name);
        let config = dir.join(format!("{name}.json"));
        std::fs::write(
            &config,
            serde_json::to_vec(&json!({
                "installer": {"kind": "slot", "root": state.join("slots")},
                "health_check": {"argv": ["sh", "-c", health], "timeout_secs": 20},
                "reserve_bytes": 0,
            }))
            .unwrap(),
        )
        .unwrap();
        let mut args = vec![
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
        ];
        args.extend_from_slice(extra);
        let o = custody(&args);
        assert!(
            o.status.success(),
            "enroll: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let id = String::from_utf8(o.stdout).unwrap().trim().to_owned();
        assert_eq!(id.len(), 64, "{id}");
        Agent { state, config, id }
    }

    pub fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let mut full = vec![
            "agent",
            "--state-dir",
            self.state.to_str().unwrap(),
            "--config",
            self.config.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        let o = custody(&full);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "agent {args:?}: exit {:?}, stdout not JSON ({e}): {}\n{stderr}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout)
            )
        });
        (o.status.code().unwrap_or(-1), v, stderr)
    }

    pub fn check(&self) -> (i32, Value) {
        let (c, v, _) = self.run(&["check", "--once", "--json"]);
        (c, v)
    }

    pub fn installed(&self) -> Option<(String, u64)> {
        let (c, v, e) = self.run(&["status", "--json"]);
        assert_eq!(c, 0, "{e}");
        v.get("installed").filter(|i| !i.is_null()).map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["release_counter"].as_u64().unwrap(),
            )
        })
    }

    pub fn current_payload(&self) -> Vec<u8> {
        std::fs::read(self.state.join("slots/current/payload")).unwrap_or_default()
    }
}

pub fn payload(name: &str, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    let mut x: u64 = name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}

pub fn rollout(
    setup: &Setup,
    s: &Server,
    id: &str,
    target: &str,
    hw: &str,
    stages: Value,
    seed: &str,
) {
    setup.fleet(
        s,
        "POST",
        "/api/v1/fleet/rollouts",
        Some(json!({
            "id": id,
            "target": target,
            "selector": {"hardware_ids": [hw]},
            "stages": stages,
            "seed": seed,
        })),
    );
}
