//! `custody serve` end to end with publishing wired to custody-repo, and
//! crash safety: a CI identity uploads and stages, a separate publisher
//! publishes, an offline targets key signs through the API, and
//! `custody client` downloads and verifies the target from the server.
//! Then `kill -9` during a large upload and during publishes: after a
//! restart nothing published is lost, no partial blob is kept, and the
//! repository still verifies with `custody client`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use custody_repo::keyring::KeyRing;
use custody_repo::memsigner::MemorySigner;
use custody_repo::passphrase::SecretSource;
use custody_repo::Signer;
use serde_json::{json, Value};

struct Server {
    child: Child,
    url: String,
    credential: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .env_remove("CUSTODY_DATABASE_URL")
        .env_remove("CUSTODY_CONFIG")
        .env_remove("CUSTODY_LISTEN")
        .env_remove("CUSTODY_DATA_DIR")
        .env("CUSTODY_KEY_PASSPHRASE", "test passphrase for online keys")
        // This test mints dozens of tokens from 127.0.0.1 in seconds.
        .env("CUSTODY_TOKEN_REQUESTS_PER_MINUTE", "100000")
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("banner").expect("utf-8 banner");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in banner {first:?}"))
        .to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut credential = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(1000)) {
        if let Some(c) = line.trim().strip_prefix("cst1.") {
            credential = Some(format!("cst1.{c}"));
        }
    }
    Server {
        child,
        url,
        credential,
    }
}

fn kill9(s: &mut Server) {
    let ok = Command::new("kill")
        .args(["-KILL", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let _ = s.child.wait();
}

struct Resp {
    status: u16,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} not JSON ({e}): {}", self.status, self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a raw socket (Connection: close).
fn http(url: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
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

fn api(s: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
    let b = body
        .map(|v| serde_json::to_vec(&v).unwrap())
        .unwrap_or_default();
    http(&s.url, method, path, Some(token), &b)
}

fn token(s: &Server, credential: &str) -> String {
    let r = http(
        &s.url,
        "POST",
        "/api/v1/token",
        None,
        &serde_json::to_vec(&json!({ "credential": credential })).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// The identities of a deployment: admin, CI, publisher, offline signer.
struct Setup {
    ci: String,
    publisher: String,
    signer: String,
    ring: KeyRing,
    targets_key: String,
}

impl Setup {
    fn new(s: &Server) -> Setup {
        let admin = token(s, s.credential.as_deref().expect("first start"));
        let cred = |name: &str, scopes: &[&str]| {
            let r = api(
                s,
                "POST",
                "/api/v1/credentials",
                &admin,
                Some(json!({"name": name, "scopes": scopes})),
            );
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()["secret"].as_str().unwrap().to_string()
        };
        let ci = cred("ci", &["target:upload@app", "target:stage@app"]);
        let publisher = cred("release manager", &["repo:publish@app"]);
        let signer = cred(
            "offline signer",
            &["role:sign:root@app", "role:sign:targets@app"],
        );
        let root = MemorySigner::generate().unwrap();
        let targets = MemorySigner::generate().unwrap();
        let body = json!({
            "root": {"keys": [root.key()], "threshold": 1},
            "targets": {"keys": [targets.key()], "threshold": 1},
        });
        let r = api(s, "POST", "/api/v1/repos/app", &admin, Some(body));
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
            ring,
            targets_key,
        };
        setup.sign(s, "root", &root_key);
        let r = setup.sign(s, "targets", &setup.targets_key.clone());
        assert!(r["published"]["version"].is_i64(), "{r}");
        setup
    }

    fn sign(&self, s: &Server, role: &str, keyid: &str) -> Value {
        let t = token(s, &self.signer);
        let draft = api(
            s,
            "GET",
            &format!("/api/v1/repos/app/roles/{role}"),
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
            &format!("/api/v1/repos/app/roles/{role}/signatures"),
            Some(&t),
            &signed,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    fn upload_and_stage(&self, s: &Server, name: &str, data: &[u8]) {
        let t = token(s, &self.ci);
        let sha = sha256_hex(data);
        let r = http(
            &s.url,
            "PUT",
            &format!("/api/v1/repos/app/blobs/{sha}"),
            Some(&t),
            data,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let r = api(
            s,
            "PUT",
            &format!("/api/v1/repos/app/targets/{name}"),
            &t,
            Some(json!({ "blob_sha256": sha })),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// Publish (409: the offline targets key must sign), then sign: live.
    fn publish_and_sign(&self, s: &Server) {
        let t = token(s, &self.publisher);
        let r = api(s, "POST", "/api/v1/repos/app/publish", &t, None);
        if r.status == 409 {
            assert_eq!(r.json()["error"], "signatures_missing", "{}", r.text());
            assert!(r.text().contains(&self.targets_key), "{}", r.text());
            let r = self.sign(s, "targets", &self.targets_key);
            assert!(r["published"]["version"].is_i64(), "{r}");
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
}

/// `custody client`: trust root 1 from the server (test only; real clients
/// get it out of band), refresh, download `names`; returns their bytes.
fn client_download(s: &Server, work: &Path, names: &[String]) -> Vec<Vec<u8>> {
    let md = work.join("tuf");
    let out = work.join("out");
    let _ = std::fs::remove_dir_all(&md);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&md).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let root = http(&s.url, "GET", "/repos/app/metadata/1.root.json", None, b"");
    assert_eq!(root.status, 200);
    let root_file = work.join("root.json");
    std::fs::write(&root_file, &root.body).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_custody"))
            .arg("client")
            .arg("--metadata-dir")
            .arg(&md)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "custody client {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["init", root_file.to_str().unwrap()]);
    let mut args = vec![
        "--metadata-url".to_string(),
        format!("{}/repos/app/metadata/", s.url),
        "--target-base-url".to_string(),
        format!("{}/repos/app/targets/", s.url),
        "--target-dir".to_string(),
        out.to_str().unwrap().to_string(),
    ];
    for n in names {
        args.push("--target-name".into());
        args.push(n.clone());
    }
    args.push(
        if names.is_empty() {
            "refresh"
        } else {
            "download"
        }
        .into(),
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&a);
    names
        .iter()
        .map(|n| std::fs::read(out.join(n.replace('/', "%2F"))).unwrap())
        .collect()
}

#[test]
fn ci_uploads_publisher_publishes_client_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"));
    let setup = Setup::new(&s);
    let data = b"release 1.2.3 ".repeat(5000);
    setup.upload_and_stage(&s, "fw/app.bin", &data);
    // CI may not publish (separation of duties).
    let ci = token(&s, &setup.ci);
    assert_eq!(
        api(&s, "POST", "/api/v1/repos/app/publish", &ci, None).status,
        403
    );
    setup.publish_and_sign(&s);
    let got = client_download(&s, dir.path(), &["fw/app.bin".to_string()]);
    assert_eq!(got, vec![data]);
}

/// Pseudo-random delays without a dependency (xorshift on the clock).
fn jitter_ms(seed: &mut u64, max: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % max
}

#[test]
fn kill_9_during_upload_and_publish_loses_nothing_published() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut s = start(&data_dir);
    let setup = Setup::new(&s);
    let mut published: Vec<(String, Vec<u8>)> = Vec::new();
    let first = b"first published target".to_vec();
    setup.upload_and_stage(&s, "base.bin", &first);
    setup.publish_and_sign(&s);
    published.push(("base.bin".into(), first));

    // 1. kill -9 in the middle of a large upload.
    let big_len: usize = 64 << 20;
    let big_sha = sha256_hex(&vec![7u8; big_len]);
    let t = token(&s, &setup.ci);
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "PUT /api/v1/repos/app/blobs/{big_sha} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {t}\r\nContent-Length: {big_len}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..20 {
        sock.write_all(&chunk).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    kill9(&mut s);
    drop(sock);
    s = start(&data_dir);
    let t = token(&s, &setup.ci);
    let r = api(
        &s,
        "GET",
        &format!("/api/v1/repos/app/blobs/{big_sha}"),
        &t,
        None,
    );
    assert_eq!(
        r.status,
        404,
        "partial upload must not be kept: {}",
        r.text()
    );
    let blob = data_dir
        .join("blobs/sha256")
        .join(&big_sha[..2])
        .join(&big_sha);
    assert!(!blob.exists(), "no partial blob file");
    let names: Vec<String> = published.iter().map(|(n, _)| n.clone()).collect();
    let got = client_download(&s, dir.path(), &names);
    assert_eq!(
        got,
        published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>()
    );

    // 2. kill -9 at random points of publishes of many targets.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    for round in 0..3 {
        let mut batch = Vec::new();
        for i in 0..40 {
            let name = format!("r{round}/t{i}.bin");
            let bytes = format!("round {round} target {i} ")
                .repeat(200)
                .into_bytes();
            setup.upload_and_stage(&s, &name, &bytes);
            batch.push((name, bytes));
        }
        let url = s.url.clone();
        let pt = token(&s, &setup.publisher);
        let publishing = std::thread::spawn(move || {
            // The connection dies with the server; any outcome is fine.
            let addr = url.trim_start_matches("http://").to_string();
            if let Ok(mut sock) = TcpStream::connect(&addr) {
                let _ = write!(
                    sock,
                    "POST /api/v1/repos/app/publish HTTP/1.1\r\nHost: {addr}\r\n\
                     Authorization: Bearer {pt}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut sink = Vec::new();
                let _ = sock.read_to_end(&mut sink);
            }
        });
        std::thread::sleep(Duration::from_millis(jitter_ms(&mut seed, 400)));
        kill9(&mut s);
        let _ = publishing.join();
        s = start(&data_dir);
        // Unfinished generations of the killed publish are gone.
        for e in std::fs::read_dir(data_dir.join("repos/app/generations")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "leftover {name} after restart");
        }
        // Everything published before the crash is still served and verifies.
        let names: Vec<String> = published.iter().map(|(n, _)| n.clone()).collect();
        let got = client_download(&s, dir.path(), &names);
        assert_eq!(
            got,
            published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            "round {round}: published targets lost after kill -9"
        );
        // The interrupted publish completes after the restart.
        setup.publish_and_sign(&s);
        published.extend(batch);
        let names: Vec<String> = published.iter().map(|(n, _)| n.clone()).collect();
        let got = client_download(&s, dir.path(), &names);
        assert_eq!(
            got,
            published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            "round {round}: publish after restart"
        );
    }
}
