//! `custody server provenance-policy` and `custody server upload
//! --provenance` against a real `custody serve` on loopback: the policy is
//! set by the security credential (and refused to the CI one), an upload
//! with a good envelope is staged with the digest in its custom metadata,
//! and uploads without or with bad provenance fail with the server's
//! message naming the rule.

mod agent_support;

use std::process::Output;

use agent_support::{api, credential, custody, server_cli, sha256_hex, start, token};
use base64::Engine;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const GHA: &str = "https://actions.github.io/buildtypes/workflow/v1";
const SOURCE: &str = "https://github.com/org/firmware";

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
    let bootstrap = s
        .credential
        .clone()
        .expect("bootstrap credential on first start");
    let admin = token(&s, &bootstrap);
    let root = MemorySigner::generate_ed25519().unwrap();
    let targets = MemorySigner::generate_ed25519().unwrap();
    let r = api(
        &s,
        "POST",
        "/api/v1/repos/app",
        &admin,
        Some(json!({
            "root": {"keys": [root.key()], "threshold": 1},
            "targets": {"keys": [targets.key()], "threshold": 1},
        })),
    );
    assert_eq!(r.status, 201, "{}", r.text());
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
    let o = server_cli(&s, &ci, &["provenance-policy", "set", "--repo", "app", p]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("provenance:admin@app"),
        "{}",
        stderr(&o)
    );
    let o = server_cli(
        &s,
        &security,
        &["provenance-policy", "set", "--repo", "app", p],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = server_cli(&s, &ci, &["provenance-policy", "show", "--repo", "app"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["rules"], json!(["firmware"]));

    let fw = dir.join("fw.bin");
    std::fs::write(&fw, b"firmware from CI").unwrap();
    let digest = sha256_hex(b"firmware from CI");
    let good = dir.join("fw.intoto.json");
    let env = envelope(&digest, BUILDER, &key);
    std::fs::write(&good, &env).unwrap();
    let bad = dir.join("evil.intoto.json");
    std::fs::write(&bad, envelope(&digest, "https://evil.example/ci", &key)).unwrap();
    let fwp = fw.to_str().unwrap();

    // Without provenance: refused, naming the rule and its path pattern.
    let o = server_cli(
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
    let o = server_cli(
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
    // Neither refusal staged anything.
    let ci_token = token(&s, &ci);
    let r = api(&s, "GET", "/api/v1/repos/app/targets", &ci_token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!([]), "refused uploads staged something");
    // Accepted: staged with the envelope's digest in custom.
    let o = server_cli(
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
    let env_sha = sha256_hex(&env);
    assert_eq!(
        staged["custom"]["custody"]["provenance"]["sha256"],
        json!(env_sha)
    );
    assert_eq!(staged["blob_sha256"], json!(digest));

    // --help teaches the flags and the scopes.
    let o = custody(&["server", "upload", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for p in [
        "--provenance",
        "target:upload@REPO",
        "custom.custody.provenance.sha256",
    ] {
        assert!(help.contains(p), "{p} missing in {help}");
    }
}
