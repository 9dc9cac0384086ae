//! What the director (and the publish path, for root key changes) writes
//! into the transparency log (issue #7 part 2; docs/LOG.md "What is logged
//! when"). Kept apart from the check-in code so the hot path carries only
//! a call line per hook:
//!
//! - [`log_install_reports`]: every install report a device-signed
//!   manifest carries becomes an `install_report` entry, with the manifest
//!   bytes, their sha256 and the device key, **before** the check-in is
//!   committed and answered (the device drops its queued reports once the
//!   answer acknowledges the counter, so they must be in the log first). A
//!   manifest without reports appends nothing.
//! - [`log_delivery`]: an `assignment_delivered` entry the first time a
//!   check-in answer carries an assignment (target, release counter,
//!   hashes) to a device, after the check-in committed and before the
//!   answer is sent. The director's store remembers the assignment whose
//!   delivery is durably logged (`director_devices.log_delivery`), written
//!   after the append: a check-in that re-serves the same assignment
//!   appends nothing, a restart does not log again, a crash between the
//!   append and the mark logs it twice, never zero times.
//! - [`record_root_rotation`]: after a publish went live, a `key_change`
//!   entry per top-level role whose keys changed between consecutive live
//!   root versions (a marker file per repository remembers the last root
//!   version processed, written after the appends).
//! - [`log_bundle_delivery`]: director metadata exported for an offline
//!   bundle is an `assignment_delivered` entry per target it assigns.
//! - [`log_suspensions`]: devices the re-attestation sweep suspended, as
//!   `admin_action` entries by `director`.
//!
//! Decommissions are logged by the fleet API (`fleet.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_director::director::DirectorTarget;
use custody_director::wire::ManifestBody;
use futures_util::future::try_join_all;
use serde_json::Value;

use super::store::DeviceRow;
use super::Director;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tlog::{EntryBody, LogError, MAX_EMBEDDED_MANIFEST};

/// Why a log hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The log refused or could not make the entry durable.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The device key could not be encoded into the entry.
    #[error("install report of device {device}: encoding the device key: {reason}")]
    Encode { device: String, reason: String },
}

// ------------------------------------------------------------ install reports

/// The `install_report` entries for the reports a verified manifest
/// carries: `manifest` are the signed manifest bytes exactly as the device
/// sent them (embedded as base64 when the entry stays within the entry
/// size limit and they are at most [`MAX_EMBEDDED_MANIFEST`] bytes; the
/// digest is always there), `device_key` the device's public key.
pub fn install_report_entries(
    device_id: &str,
    device_key: &custody_tuf::schema::Key,
    manifest: &[u8],
    body: &ManifestBody,
) -> Result<Vec<EntryBody>, HookError> {
    if body.install_reports.is_empty() {
        return Ok(Vec::new());
    }
    let key = serde_json::to_value(device_key).map_err(|e| HookError::Encode {
        device: device_id.to_owned(),
        reason: e.to_string(),
    })?;
    let sha = custody_tuf::crypto::sha256_hex(manifest);
    let embedded = (manifest.len() <= MAX_EMBEDDED_MANIFEST).then(|| B64.encode(manifest));
    let mut out = Vec::with_capacity(body.install_reports.len());
    for r in &body.install_reports {
        let entry = |manifest: Option<String>| EntryBody::InstallReport {
            device_id: device_id.to_owned(),
            target: r.target.clone(),
            outcome: r.outcome.clone(),
            manifest_sha256: sha.clone(),
            manifest,
            device_key: Some(key.clone()),
        };
        let with = entry(embedded.clone());
        // The entry (with `v`, `time`, `type`) must fit a 16-bit bundle
        // length; base64 of 48 KiB alone is 64 KiB. Digest only otherwise.
        let fits = embedded.is_some()
            && crate::tlog::stamp(with.clone())
                .to_bytes()
                .is_ok_and(|b| b.len() <= custody_log::fs::MAX_ENTRY_LEN);
        out.push(if fits { with } else { entry(None) });
    }
    Ok(out)
}

/// Appends an `install_report` entry per report in `body` (the verified
/// manifest whose signed bytes are `manifest`); returns once all are
/// durable. Nothing to do (and no await on the log) without reports.
pub async fn log_install_reports(
    st: &AppState,
    row: &DeviceRow,
    manifest: &[u8],
    body: &ManifestBody,
) -> Result<(), HookError> {
    if body.install_reports.is_empty() {
        return Ok(());
    }
    let entries = install_report_entries(&row.record.id, &row.record.key, manifest, body)?;
    // Concurrent appends share one group commit.
    try_join_all(entries.into_iter().map(|e| st.log.append(e))).await?;
    Ok(())
}

// ------------------------------------------------------------ deliveries

/// Marker of an assignment (what `director_devices.log_delivery` holds):
/// sha256 over the delivered targets' names, release counters and hashes.
/// `None` when nothing is assigned (nothing to log).
pub fn delivery_marker(targets: &[DirectorTarget]) -> Option<String> {
    if targets.is_empty() {
        return None;
    }
    let parts: Vec<_> = targets
        .iter()
        .map(|t| (&t.name, t.release_counter, t.length, &t.hashes))
        .collect();
    let bytes = serde_json::to_vec(&parts).ok()?;
    Some(custody_tuf::crypto::sha256_hex(&bytes))
}

/// The `assignment_delivered` entries of one delivery.
pub fn delivery_entries(device_id: &str, targets: &[DirectorTarget], at: i64) -> Vec<EntryBody> {
    targets
        .iter()
        .map(|t| EntryBody::AssignmentDelivered {
            device_id: device_id.to_owned(),
            target: t.name.clone(),
            hashes: t.hashes.clone(),
            release_counter: Some(t.release_counter),
            delivered_at: at,
        })
        .collect()
}

/// Logs the delivery of `targets` (the director targets a committed
/// check-in answer carries) unless the store says this assignment's
/// delivery is already in the log; then marks it. Called after the
/// check-in committed and before the answer is sent. A failed mark is
/// only a warning: the delivery is in the log, the next check-in logs it
/// once more.
pub async fn log_delivery(
    st: &AppState,
    d: &Director,
    row: &DeviceRow,
    targets: &[DirectorTarget],
    at: i64,
) -> Result<(), HookError> {
    let Some(marker) = delivery_marker(targets) else {
        return Ok(());
    };
    if row.log_delivery.as_deref() == Some(marker.as_str()) {
        return Ok(());
    }
    let id = &row.record.id;
    try_join_all(
        delivery_entries(id, targets, at)
            .into_iter()
            .map(|e| st.log.append(e)),
    )
    .await?;
    d.writer.mark_delivery(d.db.as_ref(), id, &marker).await;
    Ok(())
}

/// Logs the assignment in director metadata exported for an offline
/// bundle (`fleet.device.bundle_export`): one `assignment_delivered` per
/// target, every export (an explicit administrator action; the check-in
/// marker is left alone, a later check-in delivery is logged on its own).
pub async fn log_bundle_delivery(
    st: &AppState,
    device_id: &str,
    targets: &[DirectorTarget],
) -> Result<(), LogError> {
    try_join_all(
        delivery_entries(device_id, targets, crate::storage::now())
            .into_iter()
            .map(|e| st.log.append(e)),
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------ suspensions

/// Logs devices the re-attestation sweep suspended (`admin_action` by
/// `director`, action `fleet.device.suspend`, target the device id).
pub async fn log_suspensions(
    log: &crate::tlog::ServerLog,
    ids: &[String],
    reason: &str,
) -> Result<(), LogError> {
    try_join_all(ids.iter().map(|id| {
        log.append(EntryBody::AdminAction {
            identity: "director".into(),
            action: "fleet.device.suspend".into(),
            repo: None,
            target: Some(id.clone()),
            outcome: "ok".into(),
            detail: reason.to_owned(),
        })
    }))
    .await?;
    Ok(())
}

// ------------------------------------------------------------ root keys

/// One role's key change between two root versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeyChange {
    pub role: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

fn role_keyids(root: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    if let Some(roles) = root
        .get("signed")
        .and_then(|s| s.get("roles"))
        .and_then(Value::as_object)
    {
        for (role, r) in roles {
            let ids = r
                .get("keyids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            out.insert(role.clone(), ids);
        }
    }
    out
}

/// Roles whose key ids differ between root `old` and root `new` (signed
/// TUF root envelopes), with the ids added and removed.
pub fn root_key_changes(old: &Value, new: &Value) -> Vec<RoleKeyChange> {
    let (o, n) = (role_keyids(old), role_keyids(new));
    let empty = BTreeSet::new();
    let roles: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    roles
        .into_iter()
        .filter_map(|role| {
            let (a, b) = (o.get(role).unwrap_or(&empty), n.get(role).unwrap_or(&empty));
            let added: Vec<String> = b.difference(a).cloned().collect();
            let removed: Vec<String> = a.difference(b).cloned().collect();
            (!added.is_empty() || !removed.is_empty()).then(|| RoleKeyChange {
                role: role.clone(),
                added,
                removed,
            })
        })
        .collect()
}

/// `<data-dir>/log-marks/root-<sha256(repo)>`: the newest root version of
/// `repo` whose key changes are in the log.
fn root_mark_path(data_dir: &Path, repo: &str) -> PathBuf {
    data_dir.join("log-marks").join(format!(
        "root-{}",
        custody_tuf::crypto::sha256_hex(repo.as_bytes())
    ))
}

fn newest_root_version(metadata: &Path) -> std::io::Result<u64> {
    let mut best = 0;
    for e in std::fs::read_dir(metadata)? {
        let e = e?;
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".root.json"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            best = best.max(n);
        }
    }
    Ok(best)
}

/// What a live publish of `repo` changed in its root keys: the changes of
/// every root version after `marked` up to the newest live one. Blocking
/// file IO.
fn pending_root_changes(
    data_dir: &Path,
    metadata: &Path,
    repo: &str,
) -> Result<(u64, Vec<(u64, RoleKeyChange)>), String> {
    let mark = root_mark_path(data_dir, repo);
    let marked = match std::fs::read_to_string(&mark) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            format!(
                "{}: root version mark {:?} is not a number: {e}",
                mark.display(),
                s.trim()
            )
        })?,
        // Version 1 is the initial key set, not a rotation.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
        Err(e) => return Err(format!("{}: {e}", mark.display())),
    };
    let newest = newest_root_version(metadata)
        .map_err(|e| format!("{}: listing root versions: {e}", metadata.display()))?;
    let read = |v: u64| -> Result<Value, String> {
        let p = metadata.join(format!("{v}.root.json"));
        let b = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut changes = Vec::new();
    let mut v = marked.max(1);
    while v < newest {
        let (old, new) = (read(v)?, read(v + 1)?);
        changes.extend(root_key_changes(&old, &new).into_iter().map(|c| (v + 1, c)));
        v += 1;
    }
    Ok((newest.max(marked), changes))
}

/// After a publish of `repo` went live: a `key_change` entry per
/// top-level role whose keys a newly live root version changed (`rotate`,
/// or `revoke` when keys only left), by `by`. Durable before it returns;
/// then the repository's root mark moves on.
pub async fn record_root_rotation(
    st: &Arc<AppState>,
    repo: &str,
    by: &str,
) -> Result<(), ApiError> {
    let Some(gen) = st.hosting.current_generation_dir(repo) else {
        return Ok(());
    };
    let data_dir = st.config.data_dir.clone();
    let r = repo.to_owned();
    let metadata = gen.join("metadata");
    let (newest, changes) = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || pending_root_changes(&data_dir, &metadata, &r)
    })
    .await
    .map_err(|e| ApiError::internal(format!("log: root key changes task: {e}")))?
    .map_err(|e| ApiError::internal(format!("log: root key changes of {repo:?}: {e}")))?;
    let entries = changes.into_iter().map(|(_, c)| EntryBody::KeyChange {
        repo: Some(repo.to_owned()),
        role: c.role,
        action: if c.added.is_empty() {
            "revoke"
        } else {
            "rotate"
        }
        .into(),
        added_keyids: c.added,
        removed_keyids: c.removed,
        by: by.to_owned(),
    });
    try_join_all(entries.map(|e| st.log.append(e))).await?;
    let mark = root_mark_path(&data_dir, repo);
    let current = std::fs::read_to_string(&mark).ok();
    if current.as_deref().map(str::trim) != Some(newest.to_string().as_str()) {
        tokio::task::spawn_blocking(move || write_mark(&mark, newest))
            .await
            .map_err(|e| ApiError::internal(format!("log: root mark task: {e}")))?
            .map_err(|e| ApiError::internal(format!("log: root mark: {e}")))?;
    }
    Ok(())
}

fn write_mark(path: &Path, v: u64) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    custody_repo::fsutil::write_replace(path, format!("{v}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root(roles: &[(&str, &[&str])]) -> Value {
        let mut r = serde_json::Map::new();
        for (name, ids) in roles {
            r.insert((*name).into(), json!({"keyids": ids, "threshold": 1}));
        }
        json!({"signed": {"_type": "root", "roles": r}, "signatures": []})
    }

    #[test]
    fn root_key_changes_name_added_and_removed_ids_per_role() {
        let old = root(&[
            ("root", &["a"]),
            ("targets", &["t1", "t2"]),
            ("timestamp", &["s"]),
        ]);
        let new = root(&[
            ("root", &["a", "b"]),
            ("targets", &["t1"]),
            ("timestamp", &["s"]),
        ]);
        let c = root_key_changes(&old, &new);
        assert_eq!(
            c,
            vec![
                RoleKeyChange {
                    role: "root".into(),
                    added: vec!["b".into()],
                    removed: vec![]
                },
                RoleKeyChange {
                    role: "targets".into(),
                    added: vec![],
                    removed: vec!["t2".into()]
                },
            ]
        );
        assert!(root_key_changes(&old, &old).is_empty());
        // Garbage has no roles: nothing to report, no panic.
        assert!(root_key_changes(&json!(1), &json!("x")).is_empty());
    }

    fn body(n: usize) -> ManifestBody {
        ManifestBody {
            type_: custody_director::wire::TYPE_MANIFEST.into(),
            wire_version: custody_director::wire::WIRE_VERSION,
            device_id: "d".repeat(64),
            hardware_id: "board".into(),
            report_counter: 1,
            device_time: 0,
            installed: Default::default(),
            active_slot: None,
            attacks_detected: vec![],
            install_reports: (0..n)
                .map(|i| custody_director::wire::InstallReport {
                    id: format!("attempt-{i}"),
                    target: format!("fw/{i}.bin"),
                    release_counter: 1,
                    outcome: "installed".into(),
                    reason: None,
                    time: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn install_report_entries_embed_the_manifest_only_while_the_entry_fits() {
        let key: custody_tuf::schema::Key = serde_json::from_value(json!({
            "keytype": "ed25519", "scheme": "ed25519",
            "keyval": {"public": "ab".repeat(32)}}))
        .unwrap();
        assert!(install_report_entries("d", &key, b"{}", &body(0))
            .unwrap()
            .is_empty());
        let entries =
            |len: usize| install_report_entries("d", &key, &vec![b'x'; len], &body(2)).unwrap();
        let embedded = |e: &EntryBody| match e {
            EntryBody::InstallReport { manifest, .. } => manifest.is_some(),
            _ => panic!("{e:?}"),
        };
        let small = entries(1000);
        assert_eq!(small.len(), 2);
        assert!(small.iter().all(embedded));
        assert!(
            matches!(&small[1], EntryBody::InstallReport { target, .. } if target == "fw/1.bin")
        );
        // 48 KiB would make a 64 KiB base64 string: digest only, and every
        // entry fits the 16-bit bundle length.
        for len in [47 * 1024, 48 * 1024, 48 * 1024 + 1, 200 * 1024] {
            for e in entries(len) {
                let bytes = crate::tlog::stamp(e.clone()).to_bytes().unwrap();
                assert!(bytes.len() <= custody_log::fs::MAX_ENTRY_LEN, "{len}");
                if len > 48 * 1024 - 1024 {
                    assert!(!embedded(&e), "{len}");
                }
                let EntryBody::InstallReport {
                    manifest_sha256, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(
                    manifest_sha256,
                    &custody_tuf::crypto::sha256_hex(&vec![b'x'; len])
                );
            }
        }
        assert!(entries(30 * 1024).iter().all(embedded));
    }

    #[test]
    fn delivery_marker_changes_with_the_assignment_only() {
        let t = |name: &str, c: u64, h: &str| DirectorTarget {
            name: name.into(),
            length: 3,
            hashes: [("sha256".to_string(), h.to_string())].into(),
            release_counter: c,
            rollback_authorization: None,
        };
        assert_eq!(delivery_marker(&[]), None);
        let a = delivery_marker(&[t("fw", 1, "aa")]).unwrap();
        assert_eq!(Some(a.clone()), delivery_marker(&[t("fw", 1, "aa")]));
        assert_ne!(Some(a.clone()), delivery_marker(&[t("fw", 2, "aa")]));
        assert_ne!(Some(a.clone()), delivery_marker(&[t("fw", 1, "bb")]));
        assert_ne!(Some(a), delivery_marker(&[t("fw2", 1, "aa")]));
    }
}
