//! A hosted repository with offline root/targets keys held by the test:
//! create it, sign drafts through the API, and look at it as a client.

use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use custody_repo::keyring::KeyRing;
use serde_json::{json, Value};

use super::TestServer;

pub struct Offline {
    pub ring: KeyRing,
    pub root: String,
    pub targets: String,
    pub stranger: String,
}

pub fn offline_keys() -> (Offline, Value, Value) {
    let ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
    let root = MemorySigner::generate_ed25519().unwrap();
    let targets = MemorySigner::generate_ed25519().unwrap();
    let stranger = MemorySigner::generate_ed25519().unwrap();
    let (rk, tk) = (
        serde_json::to_value(root.key()).unwrap(),
        serde_json::to_value(targets.key()).unwrap(),
    );
    let o = Offline {
        root: root.keyid().to_string(),
        targets: targets.keyid().to_string(),
        stranger: stranger.keyid().to_string(),
        ring,
    };
    let mut o = o;
    o.ring.add(Box::new(root));
    o.ring.add(Box::new(targets));
    o.ring.add(Box::new(stranger));
    (o, rk, tk)
}

/// GET the draft of `role`, sign it with `keyid`, POST it back.
pub async fn sign(
    s: &TestServer,
    token: &str,
    o: &Offline,
    role: &str,
    keyid: &str,
) -> super::Resp {
    let draft = s
        .api(
            "GET",
            &format!("/api/v1/repos/app/roles/{role}"),
            token,
            None,
        )
        .await;
    assert_eq!(draft.status, 200, "{}", draft.text());
    let (_, signed) = custody_repo::repository::sign_metadata_bytes(
        &draft.body,
        std::path::Path::new("draft.json"),
        &[keyid.to_string()],
        &o.ring,
    )
    .unwrap();
    super::http(
        "POST",
        &format!("{}/api/v1/repos/app/roles/{role}/signatures", s.url),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        Some(signed),
    )
    .await
}

/// Everything a client would do, with custody-tuf: root 1, timestamp,
/// snapshot, targets, then the target bytes by their consistent name.
pub async fn client_view(s: &TestServer) -> (custody_tuf::TrustedMetadata, Vec<(String, Vec<u8>)>) {
    let now = chrono::Utc::now();
    let get = |p: String| async move {
        let r = s.get(&format!("/repos/app/{p}"), &[]).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text());
        r.body
    };
    let root = get("metadata/1.root.json".into()).await;
    let mut t = custody_tuf::TrustedMetadata::new(&root).unwrap();
    let ts = get("metadata/timestamp.json".into()).await;
    t.update_timestamp(&ts, now).unwrap();
    let sn = t.remote_filename("snapshot").unwrap();
    let snap = get(format!("metadata/{sn}")).await;
    t.update_snapshot(&snap, now, false).unwrap();
    let tn = t.remote_filename("targets").unwrap();
    let tg = get(format!("metadata/{tn}")).await;
    t.update_targets(&tg, now).unwrap();
    let mut files = Vec::new();
    let list: Vec<(String, custody_tuf::TargetFile)> = t
        .targets()
        .unwrap()
        .targets
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, tf) in list {
        let remote = t.target_remote_path(&name, &tf);
        let bytes = get(format!("targets/{remote}")).await;
        let mut v = custody_tuf::TargetVerifier::new(&name, &tf).unwrap();
        v.update(&bytes).unwrap();
        v.finish().unwrap();
        files.push((name, bytes));
    }
    (t, files)
}

/// Create repository `repo` with fresh offline keys and sign its drafts
/// (root, then targets) so it is live and empty; returns the offline keys.
pub async fn create_live_repo(s: &TestServer, repo: &str) -> Offline {
    assert_eq!(repo, "app", "the signing helpers address repository `app`");
    let (o, root_key, targets_key) = offline_keys();
    let admin = s.token(&s.bootstrap, None).await;
    let body = serde_json::json!({
        "root": {"keys": [root_key], "threshold": 1},
        "targets": {"keys": [targets_key], "threshold": 1},
    });
    let r = s
        .api("POST", &format!("/api/v1/repos/{repo}"), &admin, Some(body))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let signer = s
        .credential(
            "offline signer",
            &["role:sign:root@app", "role:sign:targets@app"],
        )
        .await;
    let st = s.token(&signer, None).await;
    for (role, key) in [("root", &o.root), ("targets", &o.targets)] {
        let r = sign(s, &st, &o, role, key).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    o
}

/// Upload `data` as a blob of repository `app` and stage it as `name`.
pub async fn upload_and_stage(s: &TestServer, token: &str, name: &str, data: &[u8]) {
    let sha = super::sha256_hex(data);
    let r = super::http(
        "PUT",
        &format!("{}/api/v1/repos/app/blobs/{sha}", s.url),
        &[("authorization", &format!("Bearer {token}"))],
        Some(data.to_vec()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .api(
            "PUT",
            &format!("/api/v1/repos/app/targets/{name}"),
            token,
            Some(json!({ "blob_sha256": sha })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
