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
        /// What devices running the target get instead (a target of the
        /// director's image repository), when the yank names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replacement: Option<String>,
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

/// The target a `target_publish` entry must be about: what the signed
/// targets metadata says of the target about to be installed, written or
/// audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPublish {
    /// hosted repository name (`main`)
    pub repo: String,
    /// target path
    pub name: String,
    /// signed length
    pub length: u64,
    /// signed hashes, algorithm → hex
    pub hashes: BTreeMap<String, String>,
}

impl ExpectedPublish {
    /// The sha256 the entry is looked up by (lowercase).
    pub fn sha256(&self) -> Option<String> {
        self.hashes.get("sha256").map(|h| h.to_ascii_lowercase())
    }
}

/// Why an entry is not the `target_publish` entry of the expected target.
/// Each variant names the field and both values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishMismatch {
    /// The bytes are not an entry this build reads.
    #[error("entry: {0}")]
    Unreadable(String),
    /// The entry is of another type.
    #[error("it is a {got} entry, not target_publish")]
    NotPublish {
        /// the entry's type name
        got: &'static str,
    },
    /// Field `repo` differs.
    #[error("repo is {got:?}, expected {want:?}")]
    Repo {
        /// in the entry
        got: String,
        /// expected
        want: String,
    },
    /// Field `name` differs.
    #[error("target name is {got:?}, expected {want:?}")]
    Name {
        /// in the entry
        got: String,
        /// expected
        want: String,
    },
    /// Field `length` differs.
    #[error("length is {got}, the signed target's is {want}")]
    Length {
        /// in the entry
        got: u64,
        /// the signed target's
        want: u64,
    },
    /// Field `hashes` differs (an algorithm missing on either side, or a
    /// different value; hex compared case-insensitively).
    #[error("hashes are {got:?}, the signed target's are {want:?}")]
    Hashes {
        /// in the entry (lowercased)
        got: BTreeMap<String, String>,
        /// the signed target's (lowercased)
        want: BTreeMap<String, String>,
    },
}

/// The rule "the log entry must be a `target_publish` of exactly this
/// repository, name, length and hashes (every algorithm either side
/// names, equal)", shared by agents, `custody client`, witnesses and
/// auditors so a valid entry for another target never counts.
pub fn check_publish_entry(entry: &[u8], expect: &ExpectedPublish) -> Result<(), PublishMismatch> {
    let parsed = LogEntry::from_bytes(entry).map_err(PublishMismatch::Unreadable)?;
    parsed.check_is_publish_of(expect)
}

/// Why an entry is not the install report a device event names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportMismatch {
    /// The entry is of another type.
    #[error("it is a {got} entry, not install_report")]
    NotReport {
        /// the entry's type name
        got: &'static str,
    },
    /// A field differs from the report.
    #[error("{field} is {got:?}, the report says {want:?}")]
    Field {
        /// `device_id`, `target` or `outcome`
        field: &'static str,
        /// in the entry
        got: String,
        /// in the report
        want: String,
    },
}

impl LogEntry {
    /// The rule for a device event's entry (what `custody fleet device`
    /// checks for each install report): it is `device`'s
    /// `install_report` of `target` with `outcome`.
    pub fn check_is_report_of(
        &self,
        device: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), ReportMismatch> {
        let EntryBody::InstallReport {
            device_id,
            target: t,
            outcome: o,
            ..
        } = &self.body
        else {
            return Err(ReportMismatch::NotReport {
                got: self.type_name(),
            });
        };
        for (field, got, want) in [
            ("device_id", device_id, device),
            ("target", t, target),
            ("outcome", o, outcome),
        ] {
            if got != want {
                return Err(ReportMismatch::Field {
                    field,
                    got: got.clone(),
                    want: want.to_owned(),
                });
            }
        }
        Ok(())
    }
}

impl LogEntry {
    /// [`check_publish_entry`] on a parsed entry.
    pub fn check_is_publish_of(&self, expect: &ExpectedPublish) -> Result<(), PublishMismatch> {
        let EntryBody::TargetPublish {
            repo,
            name,
            hashes,
            length,
            ..
        } = &self.body
        else {
            return Err(PublishMismatch::NotPublish {
                got: self.type_name(),
            });
        };
        if repo != &expect.repo {
            return Err(PublishMismatch::Repo {
                got: repo.clone(),
                want: expect.repo.clone(),
            });
        }
        if name != &expect.name {
            return Err(PublishMismatch::Name {
                got: name.clone(),
                want: expect.name.clone(),
            });
        }
        if *length != expect.length {
            return Err(PublishMismatch::Length {
                got: *length,
                want: expect.length,
            });
        }
        let (got, want) = (lowercase_values(hashes), lowercase_values(&expect.hashes));
        if got != want {
            return Err(PublishMismatch::Hashes { got, want });
        }
        Ok(())
    }
}

fn lowercase_values(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), v.to_ascii_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(repo: &str, name: &str, length: u64, hashes: &[(&str, &str)]) -> Vec<u8> {
        LogEntry::new(
            1,
            EntryBody::TargetPublish {
                repo: repo.into(),
                name: name.into(),
                hashes: hashes
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                length,
                release_counter: None,
                signing_keyids: vec![],
                provenance_sha256: None,
                targets_version: None,
            },
        )
        .to_bytes()
        .unwrap()
    }

    fn expect(hashes: &[(&str, &str)]) -> ExpectedPublish {
        ExpectedPublish {
            repo: "main".into(),
            name: "fw.img".into(),
            length: 10,
            hashes: hashes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_publish_entry_must_name_exactly_the_expected_target() {
        let a = "aa".repeat(32);
        let b = "bb".repeat(32);
        let c = "cc".repeat(64);
        let want = expect(&[("sha256", &a)]);
        check_publish_entry(&publish("main", "fw.img", 10, &[("sha256", &a)]), &want).unwrap();
        // hex case does not matter
        let upper = a.to_ascii_uppercase();
        check_publish_entry(&publish("main", "fw.img", 10, &[("sha256", &upper)]), &want).unwrap();

        let err = |e: &[u8], x: &ExpectedPublish| check_publish_entry(e, x).unwrap_err();
        assert_eq!(
            err(&publish("other", "fw.img", 10, &[("sha256", &a)]), &want),
            PublishMismatch::Repo {
                got: "other".into(),
                want: "main".into()
            }
        );
        assert_eq!(
            err(&publish("main", "fw2.img", 10, &[("sha256", &a)]), &want),
            PublishMismatch::Name {
                got: "fw2.img".into(),
                want: "fw.img".into()
            }
        );
        assert_eq!(
            err(&publish("main", "fw.img", 11, &[("sha256", &a)]), &want),
            PublishMismatch::Length { got: 11, want: 10 }
        );
        // a differing hash
        let e = err(&publish("main", "fw.img", 10, &[("sha256", &b)]), &want);
        assert!(
            matches!(&e, PublishMismatch::Hashes { got, want }
                if got.get("sha256") == Some(&b) && want.get("sha256") == Some(&a)),
            "{e:?}"
        );
        // a hash the signed target has and the entry lacks
        let more = expect(&[("sha256", &a), ("sha512", &c)]);
        let e = err(&publish("main", "fw.img", 10, &[("sha256", &a)]), &more);
        assert!(
            matches!(&e, PublishMismatch::Hashes { got, want }
                if !got.contains_key("sha512") && want.contains_key("sha512")),
            "{e:?}"
        );
        // a hash the entry has and the signed target lacks
        let e = err(
            &publish("main", "fw.img", 10, &[("sha256", &a), ("sha512", &c)]),
            &want,
        );
        assert!(matches!(e, PublishMismatch::Hashes { .. }), "{e:?}");
        // not a publish entry
        let yank = LogEntry::new(
            1,
            EntryBody::Yank {
                repo: "main".into(),
                target: "fw.img".into(),
                reason: "x".into(),
                by: "y".into(),
                replacement: None,
            },
        )
        .to_bytes()
        .unwrap();
        assert_eq!(
            err(&yank, &want),
            PublishMismatch::NotPublish { got: "yank" }
        );
        assert!(
            matches!(err(b"{\"v\":2}", &want), PublishMismatch::Unreadable(m) if m.contains("version 2"))
        );
        assert!(
            matches!(err(b"not json", &want), PublishMismatch::Unreadable(m) if m.contains("not JSON"))
        );
        // messages name the field and both values
        let m = err(&publish("main", "fw.img", 11, &[("sha256", &a)]), &want).to_string();
        assert!(m.contains("length is 11") && m.contains("is 10"), "{m}");
    }

    #[test]
    fn a_device_event_entry_must_be_that_devices_report() {
        let e = LogEntry::new(
            1,
            EntryBody::InstallReport {
                device_id: "d1".into(),
                target: "fw.img".into(),
                outcome: "installed".into(),
                manifest_sha256: "00".repeat(32),
                manifest: None,
                device_key: None,
            },
        );
        assert_eq!(e.check_is_report_of("d1", "fw.img", "installed"), Ok(()));
        for (d, t, o, field) in [
            ("d2", "fw.img", "installed", "device_id"),
            ("d1", "other.img", "installed", "target"),
            ("d1", "fw.img", "rolled_back", "outcome"),
        ] {
            assert!(matches!(
                e.check_is_report_of(d, t, o),
                Err(ReportMismatch::Field { field: f, .. }) if f == field
            ));
        }
        let yank = LogEntry::new(
            1,
            EntryBody::Decommission {
                device_id: "d1".into(),
                reason: "x".into(),
                by: "y".into(),
            },
        );
        assert_eq!(
            yank.check_is_report_of("d1", "fw.img", "installed"),
            Err(ReportMismatch::NotReport {
                got: "decommission"
            })
        );
    }
}
