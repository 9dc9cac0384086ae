//! `custody repo add-target --provenance` and `custody repo
//! provenance-policy` through the real binary. The DSSE envelopes and the
//! signer key come from an independent producer (python's `cryptography`,
//! the PAE written from the DSSE spec), as a CI system would make them.
mod common;

use std::process::Command;

use common::cli::{tree, Cli};
use common::python;

const PW: &str = "test passphrase";

/// Writes policy.toml and three envelopes for the file whose sha256 is
/// argv[2], into directory argv[1]: good.dsse.json, evil-builder.dsse.json,
/// wrong-digest.dsse.json.
const PRODUCER: &str = r#"
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
out, digest = sys.argv[1], sys.argv[2]
key = Ed25519PrivateKey.generate()
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
BUILDER = "https://github.com/actions/runner/github-hosted"
GHA = "https://actions.github.io/buildtypes/workflow/v1"
SRC = "https://github.com/org/firmware"
def statement(d, builder):
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "fw.bin", "digest": {"sha256": d}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {"buildType": GHA,
                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": SRC, "path": ".github/workflows/release.yml"}}},
                "runDetails": {"builder": {"id": builder}}}}
def envelope(st):
    ty = "application/vnd.in-toto+json"
    payload = json.dumps(st).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ty), ty.encode(), len(payload), payload)
    sig = key.sign(pae)
    return json.dumps({"payloadType": ty, "payload": base64.b64encode(payload).decode(),
                       "signatures": [{"keyid": "ci", "sig": base64.b64encode(sig).decode()}]})
open(f"{out}/good.dsse.json", "w").write(envelope(statement(digest, BUILDER)))
open(f"{out}/evil-builder.dsse.json", "w").write(envelope(statement(digest, "https://evil.example/runner")))
open(f"{out}/wrong-digest.dsse.json", "w").write(envelope(statement(hashlib.sha256(b"other").hexdigest(), BUILDER)))
open(f"{out}/policy.toml", "w").write(f'''
[[rule]]
name = "firmware"
paths = ["firmware/*"]
builders = ["{BUILDER}"]
build_types = ["{GHA}"]
[[rule.sources]]
repository = "{SRC}"
refs = ["refs/heads/main"]
[rule.signers]
threshold = 1
[rule.signers.keys.ci]
keytype = "ed25519"
scheme = "ed25519"
keyval = {{ public = "{pub}" }}
''')
"#;

#[test]
fn stored_policy_gates_add_target_and_records_the_envelope_digest() {
    let env = Cli::new(PW);
    env.init_standard_repo();
    let fw = b"firmware image 2.0";
    std::fs::write(env.p("fw.bin"), fw).unwrap();
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, fw));
    let st = Command::new(python())
        .args(["-c", PRODUCER])
        .arg(env.dir.path())
        .arg(&digest)
        .status()
        .unwrap();
    assert!(st.success(), "envelope producer failed");

    let out = env.ok(&["repo", "provenance-policy", "set", "repo", "policy.toml"]);
    assert!(out.contains("firmware"), "{out}");
    assert!(env
        .ok(&["repo", "provenance-policy", "show", "repo"])
        .contains("github-hosted"));

    let add = |prov: Option<&str>| -> Vec<String> {
        let mut a: Vec<String> = [
            "repo",
            "add-target",
            "repo",
            "fw.bin",
            "--name",
            "firmware/fw.bin",
            "--passphrase-env",
            "KP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(p) = prov {
            a.push("--provenance".into());
            a.push(p.into());
        }
        a
    };
    // refusals: rule named, the reason with its values, nothing changed
    for (prov, want) in [
        (None, "needs a provenance envelope"),
        (Some("evil-builder.dsse.json"), "evil.example"),
        (
            Some("wrong-digest.dsse.json"),
            "no statement subject has the digest",
        ),
    ] {
        let before = tree(&env.p("repo"));
        let args = add(prov);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = env.fail(&args);
        assert!(err.contains("rule 'firmware'"), "{err}");
        assert!(err.contains(want), "{err}");
        assert_eq!(
            tree(&env.p("repo")),
            before,
            "refusal changed the repository"
        );
    }
    // accepted: envelope stored, digest in the target's custom metadata
    let args = add(Some("good.dsse.json"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&args);
    let envelope = std::fs::read(env.p("good.dsse.json")).unwrap();
    let env_sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &envelope));
    assert_eq!(
        std::fs::read(env.p(&format!("repo/provenance/{env_sha}.dsse.json"))).unwrap(),
        envelope
    );
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.p("repo/metadata/targets.json")).unwrap())
            .unwrap();
    assert_eq!(
        targets["signed"]["targets"]["firmware/fw.bin"]["custom"]["custody"]["provenance"]
            ["sha256"],
        serde_json::json!(env_sha)
    );
    env.ok(&["repo", "publish", "repo", "out"]);
    // clearing the policy is logged and lifts the gate
    env.ok(&["repo", "provenance-policy", "clear", "repo"]);
    let log = std::fs::read_to_string(env.p("repo/custody-log.jsonl")).unwrap();
    assert!(log.contains("provenance-policy-set") && log.contains("provenance-policy-clear"));
    assert!(
        log.contains(&env_sha),
        "accepted envelope digest not in the custody log"
    );
}
