//! `custody server provenance-policy` and `custody server upload
//! --provenance` against a real `custody serve` on loopback: the policy is
//! set by the security credential (and refused to the CI one), an upload
//! with a good envelope is staged with the digest in its custom metadata,
//! and uploads without or with bad provenance fail with the server's
//! message naming the rule.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use custody_repo::memsigner::MemorySigner;
use custody_repo::Signer;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const GHA: &str = "https://actions.github.io/buildtypes/workflow/v1";
const SOURCE: &str = "https://github.com/org/firmware";

struct Server {
    child: Child,
    url: String,
    bootstrap: String,
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
        .env("CUSTODY_TOKEN_REQUESTS_PER_MINUTE", "100000")
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
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
    let mut bootstrap = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(1000)) {
        if let Some(c) = line.trim().strip_prefix("cst1.") {
            bootstrap = Some(format!("cst1.{c}"));
        }
    }
    Server {
        child,
        url,
        bootstrap: bootstrap.expect("bootstrap credential on first start"),
    }
}

fn call(url: &str, method: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req = req.header("content-type", "application/json");
    let body = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let resp = http.run(req.body(body).unwrap()).unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn token(s: &Server, credential: &str) -> String {
    let (st, v) = call(
        &format!("{}/api/v1/token", s.url),
        "POST",
        None,
        Some(json!({ "credential": credential })),
    );
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

fn credential(s: &Server, admin: &str, name: &str, scopes: &[&str]) -> String {
    let (st, v) = call(
        &format!("{}/api/v1/credentials", s.url),
        "POST",
        Some(admin),
        Some(json!({"name": name, "scopes": scopes})),
    );
    assert_eq!(st, 201, "{v}");
    v["secret"].as_str().unwrap().to_owned()
}

fn custody(s: &Server, credential: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody"))
        .env("CUSTODY_SERVER", &s.url)
        .env("CUSTODY_CREDENTIAL", credential)
        .env_remove("CUSTODY_TOKEN")
        .arg("server")
        .args(args)
        .output()
        .unwrap()
}

fn envelope(digest: &str, builder: &str, key: &Ed25519KeyPair) -> Vec<u8> {
    let st = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "fw.bin", "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": GHA,
                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": SOURCE, "path": "release.yml"}}
            },
            "runDetails": {"builder": {"id": builder}}
        }
    });
    let payload = serde_json::to_vec(&st).unwrap();
    let pae = custody_repo::custody_provenance::pae("application/vnd.in-toto+json", &payload);
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": b64.encode(&payload),
        "signatures": [{"sig": b64.encode(key.sign(&pae).as_ref())}],
    }))
    .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn policy_and_upload_with_provenance_through_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let s = start(&data.path().join("server"));
    let admin = token(&s, &s.bootstrap);
    let root = MemorySigner::generate().unwrap();
    let targets = MemorySigner::generate().unwrap();
    let (st, v) = call(
        &format!("{}/api/v1/repos/app", s.url),
        "POST",
        Some(&admin),
        Some(json!({
            "root": {"keys": [root.key()], "threshold": 1},
            "targets": {"keys": [targets.key()], "threshold": 1},
        })),
    );
    assert_eq!(st, 201, "{v}");
    let ci = credential(&s, &admin, "ci", &["target:upload@app", "target:stage@app"]);
    let security = credential(&s, &admin, "security", &["provenance:admin@app"]);

    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let dir = data.path();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"allow_unattested = ["docs/*"]
[[rule]]
name = "firmware"
paths = ["firmware/*"]
builders = ["{BUILDER}"]
build_types = ["{GHA}"]
[[rule.sources]]
repository = "{SOURCE}"
refs = ["refs/heads/main"]
[rule.signers]
threshold = 1
[rule.signers.keys.ci]
keytype = "ed25519"
scheme = "ed25519"
keyval = {{ public = "{}" }}
"#,
            hex::encode(key.public_key().as_ref())
        ),
    )
    .unwrap();
    let p = policy.to_str().unwrap();

    // The CI credential may not set the policy.
    let o = custody(&s, &ci, &["provenance-policy", "set", "--repo", "app", p]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("provenance:admin@app"),
        "{}",
        stderr(&o)
    );
    let o = custody(
        &s,
        &security,
        &["provenance-policy", "set", "--repo", "app", p],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = custody(&s, &ci, &["provenance-policy", "show", "--repo", "app"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["rules"], json!(["firmware"]));

    let fw = dir.join("fw.bin");
    std::fs::write(&fw, b"firmware from CI").unwrap();
    let digest = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        b"firmware from CI",
    ));
    let good = dir.join("fw.intoto.json");
    let env = envelope(&digest, BUILDER, &key);
    std::fs::write(&good, &env).unwrap();
    let bad = dir.join("evil.intoto.json");
    std::fs::write(&bad, envelope(&digest, "https://evil.example/ci", &key)).unwrap();
    let fwp = fw.to_str().unwrap();

    // Without provenance: refused, naming the rule and its path pattern.
    let o = custody(
        &s,
        &ci,
        &["upload", "--repo", "app", fwp, "--name", "firmware/fw.bin"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("422 provenance_refused"), "{e}");
    assert!(
        e.contains("rule \"firmware\" (path pattern \"firmware/*\")"),
        "{e}"
    );
    // From an untrusted builder: refused, naming the builder rule.
    let o = custody(
        &s,
        &ci,
        &[
            "upload",
            "--repo",
            "app",
            fwp,
            "--name",
            "firmware/fw.bin",
            "--provenance",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("builder id \"https://evil.example/ci\" is not accepted"),
        "{e}"
    );
    // Accepted: staged with the envelope's digest in custom.
    let o = custody(
        &s,
        &ci,
        &[
            "upload",
            "--repo",
            "app",
            fwp,
            "--name",
            "firmware/fw.bin",
            "--provenance",
            good.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let staged: Value = serde_json::from_slice(&o.stdout).unwrap();
    let env_sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &env));
    assert_eq!(
        staged["custom"]["custody"]["provenance"]["sha256"],
        json!(env_sha)
    );
    assert_eq!(staged["blob_sha256"], json!(digest));

    // --help teaches the flags and the scopes.
    let o = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["server", "upload", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for p in [
        "--provenance",
        "target:upload@REPO",
        "custom.custody.provenance.sha256",
    ] {
        assert!(help.contains(p), "{p} missing in {help}");
    }
}
