//! The entry format of custody's transparency log, version 1 (see
//! `docs/LOG.md`): one JSON object per entry,
//! `{"v": 1, "time": <unix seconds>, "type": "<kind>", ...fields}`.
//!
//! Here (not in the server) so that agents, witnesses and auditors parse
//! entries with the same types the server writes them with. Readers refuse
//! versions they do not know rather than guess.
#![allow(missing_docs)] // the fields are documented in docs/LOG.md

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the entry format (field `v`).
pub const ENTRY_FORMAT_VERSION: u32 = 1;

/// One log entry: `{"v": 1, "time": <unix seconds>, "type": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Entry format version ([`ENTRY_FORMAT_VERSION`]).
    pub v: u32,
    /// Server time of the append, seconds since the epoch.
    pub time: i64,
    /// What happened.
    #[serde(flatten)]
    pub body: EntryBody,
}

/// The kinds of entries. Field names are part of the format (docs/LOG.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryBody {
    /// A target went live in a published repository.
    TargetPublish {
        repo: String,
        name: String,
        /// algorithm → lowercase hex
        hashes: BTreeMap<String, String>,
        length: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_counter: Option<u64>,
        /// key ids whose signatures are on the targets role that lists it
        signing_keyids: Vec<String>,
        /// sha256 of the DSSE provenance envelope, if the target has one
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provenance_sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        targets_version: Option<u64>,
    },
    /// The director delivered an assignment (director targets) to a device.
    AssignmentDelivered {
        device_id: String,
        target: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        hashes: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_counter: Option<u64>,
        /// when it was delivered (seconds since the epoch)
        delivered_at: i64,
    },
    /// A device's signed install report (its version manifest).
    InstallReport {
        device_id: String,
        target: String,
        /// `installed`, `failed`, `rolled_back`, `attack_detected`
        outcome: String,
        /// sha256 of the signed manifest bytes
        manifest_sha256: String,
        /// the signed manifest bytes, base64 (omitted above 48 KiB)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest: Option<String>,
        /// the device's public key (TUF key JSON), so auditors can check
        /// the manifest signature without the server
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_key: Option<serde_json::Value>,
    },
    /// A target was yanked (removed from the next publish).
    Yank {
        repo: String,
        target: String,
        reason: String,
        by: String,
    },
    /// A signing key was rotated in or revoked.
    KeyChange {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
        role: String,
        /// `rotate` or `revoke`
        action: String,
        #[serde(default)]
        added_keyids: Vec<String>,
        #[serde(default)]
        removed_keyids: Vec<String>,
        by: String,
    },
    /// A device was decommissioned.
    Decommission {
        device_id: String,
        reason: String,
        by: String,
    },
    /// An administrative action (every admin audit record).
    AdminAction {
        identity: String,
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        outcome: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
}

/// Largest manifest embedded in an install report entry.
pub const MAX_EMBEDDED_MANIFEST: usize = 48 * 1024;

impl LogEntry {
    /// A version-[`ENTRY_FORMAT_VERSION`] entry at `time` (seconds since
    /// the epoch).
    pub fn new(time: i64, body: EntryBody) -> Self {
        LogEntry {
            v: ENTRY_FORMAT_VERSION,
            time,
            body,
        }
    }

    /// The bytes appended to the log (JSON, fields in declaration order).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parse entry bytes (from a bundle).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("v").and_then(serde_json::Value::as_u64) {
            Some(1) => {}
            Some(other) => {
                return Err(format!(
                    "entry format version {other} is not supported (this build reads {ENTRY_FORMAT_VERSION})"
                ))
            }
            None => return Err("field v (entry format version) is missing".into()),
        }
        serde_json::from_value(v).map_err(|e| format!("entry: {e}"))
    }

    /// The device this entry is about, if any.
    pub fn device_id(&self) -> Option<&str> {
        match &self.body {
            EntryBody::AssignmentDelivered { device_id, .. }
            | EntryBody::InstallReport { device_id, .. }
            | EntryBody::Decommission { device_id, .. } => Some(device_id),
            _ => None,
        }
    }

    /// The target this entry is about, if any.
    pub fn target(&self) -> Option<&str> {
        match &self.body {
            EntryBody::TargetPublish { name, .. } => Some(name),
            EntryBody::AssignmentDelivered { target, .. }
            | EntryBody::InstallReport { target, .. }
            | EntryBody::Yank { target, .. } => Some(target),
            EntryBody::AdminAction { target, .. } => target.as_deref(),
            _ => None,
        }
    }

    /// The entry type name (`target_publish`, ...).
    pub fn type_name(&self) -> &'static str {
        match &self.body {
            EntryBody::TargetPublish { .. } => "target_publish",
            EntryBody::AssignmentDelivered { .. } => "assignment_delivered",
            EntryBody::InstallReport { .. } => "install_report",
            EntryBody::Yank { .. } => "yank",
            EntryBody::KeyChange { .. } => "key_change",
            EntryBody::Decommission { .. } => "decommission",
            EntryBody::AdminAction { .. } => "admin_action",
        }
    }
}
