//! A hosted repository's life over the admin API: create it with offline
//! root and targets keys, upload and stage targets, sign the drafts the
//! server prepares, publish. The server decides everything (keys, versions,
//! thresholds, provenance, the transparency log entry); these functions
//! move bytes, sign locally with keys that never leave this machine, and
//! hand back the server's answers.

use std::path::Path;

use anyhow::{Context, Result};
use custody_keys::TufPublicKey;
use custody_repo::keyring::KeyRing;
use custody_repo::repository::sign_metadata_bytes;
use serde_json::{json, Value};

use crate::api_client::{sha256_file, Api, ApiFailure, Body};

/// The largest role draft fetched for signing (custody-repo's own bound on
/// a metadata file).
const MAX_ROLE_BYTES: u64 = 64 << 20;

/// An offline role of a new repository: its keys and threshold.
pub(crate) struct OfflineRole<'a> {
    pub keys: &'a [TufPublicKey],
    pub threshold: u32,
}

/// `POST /api/v1/repos/<repo>`: the server makes its online keys; root and
/// targets wait for the offline signatures (`unsigned_roles`).
pub(crate) fn create_repo(
    api: &Api,
    root: OfflineRole<'_>,
    targets: OfflineRole<'_>,
    hash_bins: Option<u32>,
) -> Result<Value> {
    let role = |r: &OfflineRole<'_>| json!({ "keys": r.keys, "threshold": r.threshold });
    let mut body = json!({ "root": role(&root), "targets": role(&targets) });
    if let Some(bins) = hash_bins {
        body["hash_bins"] = json!(bins);
    }
    api.send(
        "POST",
        &api.repo_path(&[]),
        "application/json",
        Body::json(&body)?,
    )
    .with_context(|| format!("creating repository {:?}", api.repo()))
}

/// What one upload did.
pub(crate) struct Uploaded {
    pub sha256: String,
    pub size: u64,
    /// the provenance envelope's sha256, when one was sent
    pub provenance_sha256: Option<String>,
    /// the server's answer to staging
    pub staged: Value,
}

/// Upload `file` as a blob (and its provenance envelope), then stage it as
/// target `name` with `custom`. The server checks the envelope against the
/// repository's provenance policy; a refusal stages nothing.
pub(crate) fn upload(
    api: &Api,
    file: &Path,
    name: &str,
    custom: Option<Value>,
    provenance: Option<(&Path, Vec<u8>)>,
) -> Result<Uploaded> {
    let (sha256, size) = sha256_file(file)?;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    api.send(
        "PUT",
        &api.repo_path(&["blobs", &sha256]),
        "application/octet-stream",
        Body::File(f),
    )
    .with_context(|| format!("uploading {} ({size} bytes)", file.display()))?;
    let mut stage = json!({ "blob_sha256": sha256 });
    if let Some(c) = custom {
        stage["custom"] = c;
    }
    let mut provenance_sha256 = None;
    if let Some((p, env)) = provenance {
        let env_sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &env));
        api.send(
            "PUT",
            &api.repo_path(&["provenance", &env_sha]),
            "application/json",
            Body::Bytes(env),
        )
        .with_context(|| format!("uploading provenance {}", p.display()))?;
        stage["provenance_sha256"] = json!(env_sha);
        provenance_sha256 = Some(env_sha);
    }
    let mut segs = vec!["targets"];
    segs.extend(name.split('/'));
    let staged = api
        .send(
            "PUT",
            &api.repo_path(&segs),
            "application/json",
            Body::json(&stage)?,
        )
        .with_context(|| format!("staging target {name:?} in {:?}", api.repo()))?;
    Ok(Uploaded {
        sha256,
        size,
        provenance_sha256,
        staged,
    })
}

/// Fetch the draft of `role`, sign it here with the loaded keys `keyids`
/// (their private halves never leave `ring`), and send the signed copy.
/// The answer names the merged key ids and, when this completed the draft,
/// the publish that went live.
pub(crate) fn sign_role(api: &Api, role: &str, keyids: &[String], ring: &KeyRing) -> Result<Value> {
    let draft = api
        .get_bytes(&api.repo_path(&["roles", role]), MAX_ROLE_BYTES)
        .with_context(|| format!("fetching the {role} draft of {:?}", api.repo()))?;
    let from = Path::new(role);
    let (_, signed) = sign_metadata_bytes(&draft, from, keyids, ring)
        .with_context(|| format!("signing the {role} draft of {:?}", api.repo()))?;
    api.send(
        "POST",
        &api.repo_path(&["roles", role, "signatures"]),
        "application/json",
        Body::Bytes(signed),
    )
    .with_context(|| format!("sending the {role} signatures of {:?}", api.repo()))
}

/// What `POST …/publish` did.
pub(crate) enum Publish {
    /// the new generation is live: the server's answer (version, added, …)
    Live(Value),
    /// the draft waits for offline signatures; the message names the keys
    NeedsSignatures(String),
}

/// `POST /api/v1/repos/<repo>/publish`.
pub(crate) fn publish(api: &Api) -> Result<Publish> {
    match api.send("POST", &api.repo_path(&["publish"]), "", Body::Empty) {
        Ok(v) => Ok(Publish::Live(v)),
        Err(e) => match e.downcast_ref::<ApiFailure>() {
            Some(f) if f.code == "signatures_missing" => {
                Ok(Publish::NeedsSignatures(f.message.clone()))
            }
            _ => Err(e.context(format!("publishing {:?}", api.repo()))),
        },
    }
}
