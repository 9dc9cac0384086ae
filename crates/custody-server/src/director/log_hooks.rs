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

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_director::director::DirectorTarget;
use custody_director::wire::ManifestBody;
use futures_util::future::try_join_all;

use super::store::DeviceRow;
use super::Director;
use super::DirectorState;
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
///
/// Returns each report's entry index, in the manifest's report order (the
/// check-in stores them with the reports).
pub async fn log_install_reports(
    st: &DirectorState,
    row: &DeviceRow,
    manifest: &[u8],
    body: &ManifestBody,
) -> Result<Vec<u64>, HookError> {
    if body.install_reports.is_empty() {
        return Ok(Vec::new());
    }
    let entries = install_report_entries(&row.record.id, &row.record.key, manifest, body)?;
    // Concurrent appends share one group commit.
    Ok(try_join_all(entries.into_iter().map(|e| st.log.append(e))).await?)
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
    st: &DirectorState,
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
    st: &DirectorState,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
