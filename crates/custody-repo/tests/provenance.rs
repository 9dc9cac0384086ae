//! The provenance gate on adding targets (issue #7 item 5, authoring side),
//! through the library API: a stored policy refuses an untrusted builder, a
//! wrong subject digest, an envelope signed by an unknown key and a missing
//! envelope, naming the rule, and changes nothing on disk; an accepted
//! envelope is stored in the repository and its sha256 lands in the
//! target's `custom.custody.provenance.sha256` in the published metadata.
use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use chrono::{TimeZone, Utc};
use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use custody_repo::keyring::{KeyLocation, KeyRing};
use custody_repo::policy::ExpiryPolicy;
use custody_repo::repository::{InitOptions, ProvenanceInput, RoleInit, TargetEntry};
use custody_repo::{RepoError, Repository};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const GHA: &str = "https://actions.github.io/buildtypes/workflow/v1";
const SOURCE: &str = "https://github.com/org/firmware";

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn ed25519() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// A SLSA v1 statement (GitHub Actions shape) about an artifact.
fn statement(digest: &str, builder: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "fw.bin", "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": GHA,
                "externalParameters": {
                    "workflow": {"ref": "refs/heads/main", "repository": SOURCE, "path": ".github/workflows/release.yml"}
                },
                "resolvedDependencies": [
                    {"uri": format!("git+{SOURCE}@refs/heads/main"), "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"}}
                ]
            },
            "runDetails": {"builder": {"id": builder}}
        }
    })
}

/// DSSE envelope over `st`, signed with `key` (PAE as in the DSSE spec).
fn envelope(st: &Value, key: &Ed25519KeyPair) -> Vec<u8> {
    let payload = serde_json::to_vec(st).unwrap();
    let ty = "application/vnd.in-toto+json";
    let pae = custody_repo::custody_provenance::pae(ty, &payload);
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&json!({
        "payloadType": ty,
        "payload": b64.encode(&payload),
        "signatures": [{"keyid": "ci", "sig": b64.encode(key.sign(&pae).as_ref())}],
    }))
    .unwrap()
}

fn policy_toml(ci: &Ed25519KeyPair) -> String {
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
        hex::encode(ci.public_key().as_ref())
    )
}

fn repo(dir: &Path) -> (Repository, KeyRing) {
    let mut ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
    let mut roles = BTreeMap::new();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let s = MemorySigner::generate_ed25519().unwrap();
        let e = (s.key().clone(), s.keyid().to_owned(), KeyLocation::Offline);
        ring.add(Box::new(s));
        roles.insert(
            role.to_owned(),
            RoleInit {
                keys: vec![e],
                threshold: 1,
            },
        );
    }
    let opts = InitOptions {
        roles,
        expiry: ExpiryPolicy::default(),
        consistent_snapshot: true,
        allow_shared_keys: false,
    };
    let mut r = Repository::init(dir, opts, &mut ring, now()).unwrap();
    r.save().unwrap();
    (r, ring)
}

/// Every file under `dir` with its bytes (the whole repository state).
fn snapshot_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    fw: std::path::PathBuf,
    fw_sha: String,
    ci: Ed25519KeyPair,
    repo: Repository,
    ring: KeyRing,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let (mut repo, ring) = repo(&dir);
    let ci = ed25519();
    repo.set_provenance_policy("policy.toml", policy_toml(&ci).as_bytes(), now())
        .unwrap();
    repo.save().unwrap();
    let fw = tmp.path().join("fw.bin");
    std::fs::write(&fw, b"firmware image 1.0").unwrap();
    let fw_sha = sha256_hex(b"firmware image 1.0");
    Setup {
        out: tmp.path().join("out"),
        _tmp: tmp,
        dir,
        fw,
        fw_sha,
        ci,
        repo,
        ring,
    }
}

fn with_envelope(env: Vec<u8>) -> ProvenanceInput {
    ProvenanceInput {
        envelope: Some(env),
        policy: None,
    }
}

fn refused(s: &mut Setup, input: &ProvenanceInput, want: &[&str]) {
    let before = snapshot_tree(&s.dir);
    let err = s
        .repo
        .add_targets_with_provenance(
            &s.fw,
            Some("firmware/fw.bin"),
            None,
            input,
            &mut s.ring,
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Provenance { .. }),
        "not a provenance refusal: {err}"
    );
    let msg = err.to_string();
    for w in want {
        assert!(msg.contains(w), "{msg:?} does not mention {w:?}");
    }
    // the command failed before anything was written; save writes nothing new
    assert_eq!(
        snapshot_tree(&s.dir),
        before,
        "refusal changed the repository"
    );
}

#[test]
fn untrusted_builder_is_refused_naming_the_rule_and_nothing_changes() {
    let mut s = setup();
    let env = envelope(
        &statement(&s.fw_sha, "https://evil.example/self-hosted"),
        &s.ci,
    );
    refused(
        &mut s,
        &with_envelope(env),
        &["rule 'firmware'", "builder id", "evil.example"],
    );
}

#[test]
fn wrong_subject_digest_is_refused() {
    let mut s = setup();
    let other = sha256_hex(b"some other file");
    let env = envelope(&statement(&other, BUILDER), &s.ci);
    refused(
        &mut s,
        &with_envelope(env),
        &[
            "rule 'firmware'",
            "no statement subject has the digest",
            &other,
        ],
    );
}

#[test]
fn envelope_signed_by_an_unknown_key_and_missing_envelope_are_refused() {
    let mut s = setup();
    let env = envelope(&statement(&s.fw_sha, BUILDER), &ed25519());
    refused(
        &mut s,
        &with_envelope(env),
        &["rule 'firmware'", "signatures"],
    );
    refused(
        &mut s,
        &ProvenanceInput::default(),
        &["rule 'firmware'", "needs a provenance envelope"],
    );
    // the bulk path cannot bypass the stored policy either
    let err = s
        .repo
        .add_target_entries(
            vec![TargetEntry {
                name: "firmware/other.bin".into(),
                length: 3,
                hashes: [("sha256".to_owned(), sha256_hex(b"abc"))].into(),
                custom: None,
                provenance: None,
            }],
            &mut s.ring,
            now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("rule 'firmware'"), "{err}");
}

#[test]
fn accepted_provenance_is_stored_and_its_digest_published() {
    let mut s = setup();
    let env = envelope(&statement(&s.fw_sha, BUILDER), &s.ci);
    let env_sha = sha256_hex(&env);
    s.repo
        .add_targets_with_provenance(
            &s.fw,
            Some("firmware/fw.bin"),
            Some(json!({"hwid": "x1"})),
            &with_envelope(env.clone()),
            &mut s.ring,
            now(),
        )
        .unwrap();
    s.repo.save().unwrap();
    // the envelope is kept, byte for byte, under its digest
    let stored = std::fs::read(s.dir.join(format!("provenance/{env_sha}.dsse.json"))).unwrap();
    assert_eq!(stored, env);
    // the digest is in the target's custom metadata, next to the user's
    s.repo.publish(&s.out, now()).unwrap();
    let top: Value = serde_json::from_slice(
        &std::fs::read(s.out.join(format!(
            "{}.targets.json",
            s.repo.targets_role("targets").unwrap().signed.version
        )))
        .unwrap(),
    )
    .unwrap();
    let custom = &top["signed"]["targets"]["firmware/fw.bin"]["custom"];
    assert_eq!(custom["custody"]["provenance"]["sha256"], json!(env_sha));
    assert_eq!(custom["hwid"], json!("x1"));
    // a path under allow_unattested needs no envelope
    let doc = s.fw.with_file_name("readme.txt");
    std::fs::write(&doc, b"docs").unwrap();
    s.repo
        .add_targets_with_provenance(
            &doc,
            Some("docs/readme.txt"),
            None,
            &ProvenanceInput::default(),
            &mut s.ring,
            now(),
        )
        .unwrap();
}

#[test]
fn an_envelope_without_any_policy_is_refused_not_recorded_unchecked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let (mut repo, mut ring) = repo(&dir);
    let fw = tmp.path().join("fw.bin");
    std::fs::write(&fw, b"x").unwrap();
    let ci = ed25519();
    let env = envelope(&statement(&sha256_hex(b"x"), BUILDER), &ci);
    let err = repo
        .add_targets_with_provenance(
            &fw,
            Some("firmware/fw.bin"),
            None,
            &with_envelope(env.clone()),
            &mut ring,
            now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("no provenance policy"), "{err}");
    // with a policy given for this command only, it is accepted
    let input = ProvenanceInput::from_files(
        Some(env),
        Some(("policy.toml", policy_toml(&ci).as_bytes())),
    )
    .unwrap();
    repo.add_targets_with_provenance(&fw, Some("firmware/fw.bin"), None, &input, &mut ring, now())
        .unwrap();
}

#[test]
fn bulk_entries_with_one_envelope_for_two_artifacts_are_accepted() {
    let mut s = setup();
    let (a, b) = (sha256_hex(b"image a"), sha256_hex(b"image b"));
    let mut st = statement(&a, BUILDER);
    st["subject"] = json!([
        {"name": "a.bin", "digest": {"sha256": a}},
        {"name": "b.bin", "digest": {"sha256": b}},
    ]);
    let env = envelope(&st, &s.ci);
    let env_sha = sha256_hex(&env);
    let entry = |name: &str, digest: &str| TargetEntry {
        name: name.into(),
        length: 7,
        hashes: [("sha256".to_owned(), digest.to_owned())].into(),
        custom: None,
        provenance: Some(env.clone()),
    };
    s.repo
        .add_target_entries(
            vec![entry("firmware/a.bin", &a), entry("firmware/b.bin", &b)],
            &mut s.ring,
            now(),
        )
        .unwrap();
    s.repo.save().unwrap();
    let top = s.repo.targets_role("targets").unwrap();
    for name in ["firmware/a.bin", "firmware/b.bin"] {
        let custom = top.signed.targets[name].custom.as_ref().unwrap();
        assert_eq!(custom["custody"]["provenance"]["sha256"], json!(env_sha));
    }
    assert_eq!(
        std::fs::read_dir(s.dir.join("provenance")).unwrap().count(),
        1,
        "one envelope file for both entries"
    );
    // contents-less targets publish as metadata only
    s.repo.publish(&s.out, now()).unwrap();
    assert!(!s.out.join("targets").exists());
}
