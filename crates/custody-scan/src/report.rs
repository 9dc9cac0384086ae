//! The scan report: verdict, findings, inventory, and the inventory digest
//! (SHA-256 of the canonical JSON of findings and inventory) that the
//! server's gate records in the target's `custom`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::policy::{Finding, Inventory};
use crate::{Compression, ImageFormat, Scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No finding.
    Pass,
    /// At least one finding.
    Refuse,
}

/// What `custody scan --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: String,
    pub format: ImageFormat,
    pub compression: Compression,
    /// The reference time, RFC 3339.
    pub at: String,
    pub window_days: i64,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub inventory: Inventory,
    /// `sha256:<hex>` of the canonical JSON (OLPC) of
    /// `{"findings": ..., "inventory": ...}`.
    pub inventory_digest: String,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Serialize)]
struct Digested<'a> {
    findings: &'a [Finding],
    inventory: &'a Inventory,
}

impl Report {
    pub fn new(
        image: &str,
        scan: Scan,
        findings: Vec<Finding>,
        at: DateTime<Utc>,
        window_days: i64,
    ) -> Self {
        let digest = inventory_digest(&findings, &scan.inventory);
        Report {
            image: image.to_owned(),
            format: scan.format,
            compression: scan.compression,
            at: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            window_days,
            verdict: if findings.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Refuse
            },
            findings,
            inventory: scan.inventory,
            inventory_digest: digest,
            entries: scan.entries,
            bytes: scan.bytes,
        }
    }
}

/// `sha256:<hex>` of the canonical JSON of findings and inventory.
pub fn inventory_digest(findings: &[Finding], inventory: &Inventory) -> String {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    // Serialising plain structs of strings, integers and enums cannot fail.
    if Serialize::serialize(
        &Digested {
            findings,
            inventory,
        },
        &mut ser,
    )
    .is_err()
    {
        buf.clear();
    }
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &buf))
    )
}
