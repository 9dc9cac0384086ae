//! Build provenance on the server's upload path, over real HTTP on
//! loopback: the repository's policy set through the admin API (its own
//! scope, audited), DSSE envelopes uploaded next to the targets, the gate
//! at staging (each attack refused with the rule named), the digest signed
//! into the published target's custom metadata and carried by the log's
//! target_publish entry, the envelope served back byte for byte, and an
//! envelope made by an independent tool (securesystemslib) accepted.

mod common;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use common::repo::{client_view, create_live_repo, sign, Offline};
use common::{sha256_hex, start_with, TestServer};
use custody_log::entry::{EntryBody, LogEntry};
use custody_log::tile::parse_entry_bundle;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const GHA: &str = "https://actions.github.io/buildtypes/workflow/v1";
const SOURCE: &str = "https://github.com/org/firmware";

struct CiKey(Ed25519KeyPair);

impl CiKey {
    fn new() -> CiKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        CiKey(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }
    fn tuf_key(&self) -> Value {
        json!({"keytype": "ed25519", "scheme": "ed25519",
               "keyval": {"public": hex::encode(self.0.public_key().as_ref())}})
    }
}

/// A GitHub Actions style SLSA v1 statement about `digest`.
fn statement(digest: &str, builder: &str, git_ref: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app.bin", "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": GHA,
                "externalParameters": {
                    "workflow": {"ref": git_ref, "repository": SOURCE, "path": ".github/workflows/release.yml"}
                },
                "resolvedDependencies": [
                    {"uri": format!("git+{SOURCE}@{git_ref}"), "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"}}
                ]
            },
            "runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "run-1"}}
        }
    })
}

fn envelope(st: &Value, key: &CiKey) -> Vec<u8> {
    let payload = serde_json::to_vec(st).unwrap();
    let payload_type = "application/vnd.in-toto+json";
    let pae = custody_repo::custody_provenance::pae(payload_type, &payload);
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&json!({
        "payloadType": payload_type,
        "payload": b64.encode(&payload),
        "signatures": [{"keyid": "ci", "sig": b64.encode(key.0.sign(&pae).as_ref())}],
    }))
    .unwrap()
}

/// One rule for firmware/* (and firmware/*/*) signed by `keys` (k of n);
/// docs/* may come without provenance.
fn policy(keys: Value, threshold: u64) -> Value {
    json!({
        "allow_unattested": ["docs/*"],
        "rules": [{
            "name": "firmware",
            "paths": ["firmware/*", "firmware/*/*"],
            "builders": [BUILDER],
            "build_types": [GHA],
            "sources": [{"repository": SOURCE, "refs": ["refs/heads/main", "refs/tags/v*"]}],
            "signers": {"threshold": threshold, "keys": keys}
        }]
    })
}

struct Setup {
    s: TestServer,
    offline: Offline,
    /// target:upload@app + target:stage@app
    ci: String,
    /// provenance:admin@app
    policy_admin: String,
    /// repo:publish@app
    publisher: String,
    /// role:sign:targets@app
    signer: String,
    _keydir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let keydir = tempfile::tempdir().unwrap();
    let pass = keydir.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let s = start_with(|c| c.key_passphrase_file = Some(pass.clone())).await;
    let offline = create_live_repo(&s, "app").await;
    let ci = s
        .credential("ci", &["target:upload@app", "target:stage@app"])
        .await;
    let ci = s.token(&ci, None).await;
    let pa = s.credential("security", &["provenance:admin@app"]).await;
    let policy_admin = s.token(&pa, None).await;
    let p = s.credential("release", &["repo:publish@app"]).await;
    let publisher = s.token(&p, None).await;
    let sg = s.credential("signer", &["role:sign:targets@app"]).await;
    let signer = s.token(&sg, None).await;
    Setup {
        s,
        offline,
        ci,
        policy_admin,
        publisher,
        signer,
        _keydir: keydir,
    }
}

impl Setup {
    async fn set_policy(&self, token: &str, policy: &Value) -> common::Resp {
        self.s
            .api(
                "PUT",
                "/api/v1/repos/app/provenance-policy",
                token,
                Some(policy.clone()),
            )
            .await
    }

    async fn put_bytes(&self, path: &str, token: &str, data: Vec<u8>) -> common::Resp {
        common::http(
            "PUT",
            &format!("{}{path}", self.s.url),
            &[("authorization", &format!("Bearer {token}"))],
            Some(data),
        )
        .await
    }

    /// PUT `data` to `/api/v1/repos/app/{kind}/{sha256}` as CI; 201.
    async fn upload(&self, kind: &str, data: &[u8]) -> String {
        let sha = sha256_hex(data);
        let r = self
            .put_bytes(
                &format!("/api/v1/repos/app/{kind}/{sha}"),
                &self.ci,
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, 201, "{kind}: {}", r.text());
        sha
    }

    async fn upload_blob(&self, data: &[u8]) -> String {
        self.upload("blobs", data).await
    }

    async fn upload_envelope(&self, env: &[u8]) -> String {
        self.upload("provenance", env).await
    }

    /// A refused upload left no blob row behind (nothing to stage with).
    async fn assert_not_stored(&self, sha: &str) {
        let r = self
            .s
            .api(
                "GET",
                &format!("/api/v1/repos/app/blobs/{sha}"),
                &self.ci,
                None,
            )
            .await;
        assert_eq!(r.status, 404, "{sha} was stored: {}", r.text());
    }

    async fn stage(&self, name: &str, blob: &str, provenance: Option<&str>) -> common::Resp {
        let mut body = json!({ "blob_sha256": blob });
        if let Some(p) = provenance {
            body["provenance_sha256"] = json!(p);
        }
        self.s
            .api(
                "PUT",
                &format!("/api/v1/repos/app/targets/{name}"),
                &self.ci,
                Some(body),
            )
            .await
    }

    /// Publish (409: the offline targets key must sign), then sign: live.
    async fn publish_and_sign(&self) {
        let r = self
            .s
            .api("POST", "/api/v1/repos/app/publish", &self.publisher, None)
            .await;
        assert_eq!(r.status, 409, "{}", r.text());
        let r = sign(
            &self.s,
            &self.signer,
            &self.offline,
            "targets",
            &self.offline.targets,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["published"]["version"].is_i64(), "{}", r.text());
    }

    async fn log_entries(&self) -> Vec<LogEntry> {
        let size = custody_server::testing::log(&self.s.server).size();
        let b = self
            .s
            .get(&format!("/log/v1/tile/entries/000.p/{size}"), &[])
            .await;
        assert_eq!(b.status, 200, "{}", b.text());
        parse_entry_bundle(&b.body)
            .unwrap()
            .into_iter()
            .map(|e| LogEntry::from_bytes(e).unwrap())
            .collect()
    }
}

fn assert_refused(r: &common::Resp, status: u16, parts: &[&str]) {
    assert_eq!(r.status, status, "{}", r.text());
    let text = r.text();
    for p in parts {
        assert!(text.contains(p), "{p:?} missing in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_provenance_is_published_served_and_logged() {
    let t = setup().await;
    let ci = CiKey::new();
    let r = t
        .set_policy(&t.policy_admin, &policy(json!({"ci": ci.tuf_key()}), 1))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rules"], json!(["firmware"]));
    // Stored where custody-repo keeps it (survives restarts with the
    // repository), and readable by any scope of the repository.
    assert!(t
        .s
        .dir
        .path()
        .join("authoring/app/provenance-policy.json")
        .is_file());
    let r =
        t.s.api("GET", "/api/v1/repos/app/provenance-policy", &t.ci, None)
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["policy"]["rule"][0]["builders"], json!([BUILDER]));

    let artifact = b"firmware 1.0 built by CI".to_vec();
    let blob = t.upload_blob(&artifact).await;
    let env = envelope(&statement(&blob, BUILDER, "refs/heads/main"), &ci);
    let env_sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&env_sha)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["custom"]["custody"]["provenance"]["sha256"],
        json!(env_sha)
    );
    // allow_unattested: no envelope needed.
    let doc = t.upload_blob(b"release notes").await;
    let r = t.stage("docs/notes.txt", &doc, None).await;
    assert_eq!(r.status, 200, "{}", r.text());

    t.publish_and_sign().await;

    // The published, signed targets metadata carries the digest.
    let (trusted, files) = client_view(&t.s).await;
    assert_eq!(files.len(), 2);
    let targets = trusted.targets().unwrap();
    let fw = targets.targets.get("firmware/app.bin").expect("published");
    assert_eq!(
        fw.custom.as_ref().unwrap()["custody"]["provenance"]["sha256"],
        json!(env_sha)
    );
    assert!(targets.targets["docs/notes.txt"].custom.is_none());

    // The envelope is served next to the target, byte for byte.
    let r =
        t.s.api(
            "GET",
            &format!("/api/v1/repos/app/provenance/{env_sha}"),
            &t.publisher,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, env);
    // Only envelopes a target names; not any blob of the repository.
    let r =
        t.s.api(
            "GET",
            &format!("/api/v1/repos/app/provenance/{blob}"),
            &t.publisher,
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // The log's target_publish entries carry the digest (and none for docs).
    let entries = t.log_entries().await;
    let published: Vec<(&str, Option<&str>)> = entries
        .iter()
        .filter_map(|e| match &e.body {
            EntryBody::TargetPublish {
                name,
                provenance_sha256,
                ..
            } => Some((name.as_str(), provenance_sha256.as_deref())),
            _ => None,
        })
        .collect();
    assert!(
        published.contains(&("firmware/app.bin", Some(env_sha.as_str()))),
        "{published:?}"
    );
    assert!(
        published.contains(&("docs/notes.txt", None)),
        "{published:?}"
    );
    // Setting the policy is an audited admin action (and so a log entry).
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.body {
            EntryBody::AdminAction { action, .. } => Some(action.as_str()),
            _ => None,
        })
        .collect();
    assert!(actions.contains(&"provenance.policy.set"), "{actions:?}");
    assert!(actions.contains(&"provenance.upload"), "{actions:?}");

    // After a restart the policy still gates staging and the envelope is
    // still served (both are on disk: authoring directory, blob store).
    let Setup {
        s,
        ci: ci_token,
        _keydir,
        ..
    } = t;
    let dir_path = s.dir.path().to_path_buf();
    let common::TestServer { server, dir, .. } = s;
    server.shutdown().await.unwrap();
    let mut cfg = common::config(&dir_path);
    cfg.key_passphrase_file = Some(_keydir.path().join("passphrase"));
    let again = custody_server::start(cfg).await.unwrap();
    let url = again.url();
    let auth = format!("Bearer {ci_token}");
    let r = common::http(
        "GET",
        &format!("{url}/api/v1/repos/app/provenance-policy"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rules"], json!(["firmware"]));
    let r = common::http(
        "GET",
        &format!("{url}/api/v1/repos/app/provenance/{env_sha}"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, env);
    let r = common::http(
        "PUT",
        &format!("{url}/api/v1/repos/app/targets/firmware/app.bin"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(serde_json::to_vec(&json!({ "blob_sha256": blob })).unwrap()),
    )
    .await;
    assert_refused(&r, 422, &["needs a provenance envelope"]);
    again.shutdown().await.unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_rule() {
    let t = setup().await;
    let ci = CiKey::new();
    let artifact = b"firmware 2.0".to_vec();
    let blob = t.upload_blob(&artifact).await;
    let good = envelope(&statement(&blob, BUILDER, "refs/heads/main"), &ci);
    let good_sha = t.upload_envelope(&good).await;

    // No policy yet: an envelope nobody can check is not recorded.
    let r = t.stage("firmware/app.bin", &blob, Some(&good_sha)).await;
    assert_refused(&r, 422, &["provenance_refused", "has no provenance policy"]);

    // Setting the policy needs provenance:admin: not the uploader, not
    // fleet:admin; the denial is audited.
    let policy_v = policy(json!({"ci": ci.tuf_key()}), 1);
    let r = t.set_policy(&t.ci, &policy_v).await;
    assert_refused(&r, 403, &["provenance:admin@app"]);
    let admin = t.s.token(&t.s.bootstrap, None).await;
    let r = t.set_policy(&admin, &policy_v).await;
    assert_refused(&r, 403, &["provenance:admin@app"]);
    let r =
        t.s.api("DELETE", "/api/v1/repos/app/provenance-policy", &t.ci, None)
            .await;
    assert_refused(&r, 403, &["provenance:admin@app"]);
    let r =
        t.s.api("GET", "/api/v1/audit?repo=app&limit=1000", &admin, None)
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let denied = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "provenance.policy.set" && a["outcome"] == "denied")
        .count();
    assert_eq!(denied, 2, "{}", r.text());
    // One credential may not both set the policy and upload (separation of duties).
    let r =
        t.s.api(
            "POST",
            "/api/v1/credentials",
            &admin,
            Some(json!({"name": "both", "scopes": ["provenance:admin@app", "target:upload@app"]})),
        )
        .await;
    assert_refused(&r, 403, &["separation of duties", "provenance policy"]);
    // A broken policy is refused with custody-provenance's reason.
    let mut bad = policy_v.clone();
    bad["rules"][0]["builders"] = json!([]);
    let r = t.set_policy(&t.policy_admin, &bad).await;
    assert_refused(&r, 400, &["firmware", "builders"]);
    let r = t.set_policy(&t.policy_admin, &policy_v).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Missing provenance where a rule covers the path.
    let r = t.stage("firmware/app.bin", &blob, None).await;
    assert_refused(
        &r,
        422,
        &[
            "provenance_refused",
            "rule \\\"firmware\\\"",
            "path pattern \\\"firmware/*\\\"",
            "needs a provenance envelope",
        ],
    );
    // Untrusted builder.
    let evil = "https://evil.example/builder";
    let env = envelope(&statement(&blob, evil, "refs/heads/main"), &ci);
    let sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&sha)).await;
    assert_refused(
        &r,
        422,
        &["rule \\\"firmware\\\"", "builder id", evil, "not accepted"],
    );
    // Provenance for another artifact.
    let other = sha256_hex(b"some other firmware");
    let env = envelope(&statement(&other, BUILDER, "refs/heads/main"), &ci);
    let sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&sha)).await;
    assert_refused(
        &r,
        422,
        &[
            "rule \\\"firmware\\\"",
            "no statement subject has the digest",
            &other,
        ],
    );
    // Built from a branch the policy does not accept.
    let env = envelope(&statement(&blob, BUILDER, "refs/heads/dev"), &ci);
    let sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&sha)).await;
    assert_refused(&r, 422, &["source ref", "refs/heads/dev"]);
    // A build type the policy does not accept.
    let mut st = statement(&blob, BUILDER, "refs/heads/main");
    st["predicate"]["buildDefinition"]["buildType"] = json!("https://example.com/laptop-make");
    let sha = t.upload_envelope(&envelope(&st, &ci)).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&sha)).await;
    assert_refused(&r, 422, &["buildType", "laptop-make", "not accepted"]);
    // Built from another source repository.
    let mut st = statement(&blob, BUILDER, "refs/heads/main");
    st["predicate"]["buildDefinition"]["externalParameters"]["workflow"]["repository"] =
        json!("https://github.com/evil/firmware");
    let sha = t.upload_envelope(&envelope(&st, &ci)).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&sha)).await;
    assert_refused(&r, 422, &["source repository", "evil/firmware"]);
    // Signed by a key the policy does not list.
    let stranger = CiKey::new();
    let env = envelope(&statement(&blob, BUILDER, "refs/heads/main"), &stranger);
    let sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&sha)).await;
    assert_refused(&r, 422, &["signatures", "0 of the required 1"]);
    // A path no rule covers and allow_unattested does not list.
    let r = t.stage("other/app.bin", &blob, None).await;
    assert_refused(&r, 422, &["no rule", "allow_unattested"]);
    // The stager cannot write the digest itself.
    let r =
        t.s.api(
            "PUT",
            "/api/v1/repos/app/targets/firmware/app.bin",
            &t.ci,
            Some(json!({"blob_sha256": blob,
                        "custom": {"custody": {"provenance": {"sha256": good_sha}}}})),
        )
        .await;
    assert_refused(&r, 400, &["set by the server"]);
    // An envelope never uploaded.
    let r = t.stage("firmware/app.bin", &blob, Some(&other)).await;
    assert_refused(&r, 409, &["has not been uploaded"]);

    // Oversized envelope: refused at upload, nothing stored.
    let mut big = b"{\"payloadType\":\"x\",\"payload\":\"".to_vec();
    big.resize((1 << 20) + 1, b'A');
    let big_sha = sha256_hex(&big);
    let r = t
        .put_bytes(
            &format!("/api/v1/repos/app/provenance/{big_sha}"),
            &t.ci,
            big,
        )
        .await;
    assert_refused(&r, 413, &["1048576"]);
    t.assert_not_stored(&big_sha).await;
    // Not DSSE.
    let junk = b"{\"hello\": 1}".to_vec();
    let junk_sha = sha256_hex(&junk);
    let r = t
        .put_bytes(
            &format!("/api/v1/repos/app/provenance/{junk_sha}"),
            &t.ci,
            junk,
        )
        .await;
    assert_refused(&r, 422, &["not a DSSE envelope"]);
    t.assert_not_stored(&junk_sha).await;
    // Declared digest does not match the bytes.
    let declared = sha256_hex(b"x");
    let r = t
        .put_bytes(
            &format!("/api/v1/repos/app/provenance/{declared}"),
            &t.ci,
            good.clone(),
        )
        .await;
    assert_refused(&r, 422, &["hash mismatch", &declared, &good_sha]);
    t.assert_not_stored(&declared).await;

    // Nothing refused was staged; the good envelope still is accepted.
    let r =
        t.s.api("GET", "/api/v1/repos/app/targets", &t.ci, None)
            .await;
    assert_eq!(r.json(), json!([]), "{}", r.text());
    let r = t.stage("firmware/app.bin", &blob, Some(&good_sha)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The policy is checked again at publish (custody-repo's own gate): a
/// policy tightened after staging refuses the staged target, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rechecks_against_the_policy_in_force() {
    let t = setup().await;
    let ci = CiKey::new();
    let r = t
        .set_policy(&t.policy_admin, &policy(json!({"ci": ci.tuf_key()}), 1))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let blob = t.upload_blob(b"firmware 3.0").await;
    let env = envelope(&statement(&blob, BUILDER, "refs/heads/main"), &ci);
    let env_sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&env_sha)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Tightened: only tags now (TOML this time, the CLI's format).
    let toml = format!(
        r#"[[rule]]
name = "firmware-tags"
paths = ["firmware/*"]
builders = ["{BUILDER}"]
build_types = ["{GHA}"]
[[rule.sources]]
repository = "{SOURCE}"
refs = ["refs/tags/v*"]
[rule.signers]
threshold = 1
[rule.signers.keys.ci]
keytype = "ed25519"
scheme = "ed25519"
keyval = {{ public = "{}" }}
"#,
        hex::encode(ci.0.public_key().as_ref())
    );
    let r = common::http(
        "PUT",
        &format!("{}/api/v1/repos/app/provenance-policy", t.s.url),
        &[
            ("authorization", &format!("Bearer {}", t.policy_admin)),
            ("content-type", "application/toml"),
        ],
        Some(toml.into_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rules"], json!(["firmware-tags"]));
    let r =
        t.s.api("POST", "/api/v1/repos/app/publish", &t.publisher, None)
            .await;
    assert_refused(
        &r,
        422,
        &[
            "firmware/app.bin",
            "firmware-tags",
            "source ref",
            "refs/heads/main",
        ],
    );
    // Removing the policy (audited) lets the target staged under the old
    // one publish with the digest that was checked then.
    let r =
        t.s.api(
            "DELETE",
            "/api/v1/repos/app/provenance-policy",
            &t.policy_admin,
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r =
        t.s.api("GET", "/api/v1/repos/app/provenance-policy", &t.ci, None)
            .await;
    assert_eq!(r.status, 404, "{}", r.text());
    t.publish_and_sign().await;
    let (trusted, _) = client_view(&t.s).await;
    let fw = &trusted.targets().unwrap().targets["firmware/app.bin"];
    assert_eq!(
        fw.custom.as_ref().unwrap()["custody"]["provenance"]["sha256"],
        json!(env_sha)
    );
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CUSTODY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "securesystemslib not found: set CUSTODY_PYTHON or run ./scripts/test to create {}",
        venv.display()
    );
    venv
}

/// An envelope signed by securesystemslib (ed25519 and ECDSA P-256, 2 of
/// 2), with the recipe of custody-provenance's interop test, goes through
/// the server's upload and stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn securesystemslib_envelope_accepted_through_the_server() {
    let t = setup().await;
    let artifact = b"firmware signed by securesystemslib".to_vec();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../custody-provenance/tests/interop/sign_dsse.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(sha256_hex(&artifact))
        .args(["ed25519", "ecdsa"])
        .output()
        .expect("run python (./scripts/test sets up the venv)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let env = serde_json::to_vec(&v["envelope"]).unwrap();
    let r = t
        .set_policy(&t.policy_admin, &policy(v["keys"].clone(), 2))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let blob = t.upload_blob(&artifact).await;
    let env_sha = t.upload_envelope(&env).await;
    let r = t.stage("firmware/app.bin", &blob, Some(&env_sha)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["custom"]["custody"]["provenance"]["sha256"],
        json!(env_sha)
    );
    // The audit record names the builder, the source and both signers.
    let admin = t.s.token(&t.s.bootstrap, None).await;
    let r =
        t.s.api("GET", "/api/v1/audit?repo=app&limit=1000", &admin, None)
            .await;
    let stage = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "target.stage" && a["outcome"] == "ok")
        .cloned()
        .expect("stage audited");
    let detail = stage["detail"].as_str().unwrap();
    for p in [BUILDER, SOURCE, "ecdsa", "ed25519", &env_sha] {
        assert!(detail.contains(p), "{p} missing in {detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_the_provenance_routes() {
    let s = common::start().await;
    let doc = s.get("/openapi.json", &[]).await.json();
    for p in [
        "/api/v1/repos/{repo}/provenance-policy",
        "/api/v1/repos/{repo}/provenance/{sha256}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    let stage = &doc["components"]["schemas"]["StageTarget"]["properties"];
    assert!(stage.get("provenance_sha256").is_some(), "{stage}");
}

/// A rule by delegated role applies through the role that will list the
/// target (here the top-level `targets` role of a flat repository).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_rules_use_the_role_that_lists_the_target() {
    let t = setup().await;
    let ci = CiKey::new();
    let mut p = policy(json!({"ci": ci.tuf_key()}), 1);
    p["rules"][0]["name"] = json!("everything-in-targets");
    p["rules"][0]["paths"] = json!([]);
    p["rules"][0]["roles"] = json!(["targets"]);
    let r = t.set_policy(&t.policy_admin, &p).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let blob = t.upload_blob(b"any file").await;
    let r = t.stage("tools/flash.sh", &blob, None).await;
    assert_refused(
        &r,
        422,
        &[
            "everything-in-targets",
            "role \\\"targets\\\" matches role pattern \\\"targets\\\"",
            "needs a provenance envelope",
        ],
    );
    let env = envelope(&statement(&blob, BUILDER, "refs/tags/v2.0"), &ci);
    let sha = t.upload_envelope(&env).await;
    let r = t.stage("tools/flash.sh", &blob, Some(&sha)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    t.publish_and_sign().await;
    let (trusted, _) = client_view(&t.s).await;
    let tf = &trusted.targets().unwrap().targets["tools/flash.sh"];
    assert_eq!(
        tf.custom.as_ref().unwrap()["custody"]["provenance"]["sha256"],
        json!(sha)
    );
}
