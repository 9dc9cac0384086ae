//! Rows read back: `sqlx::FromRow` structs for the tables whose columns
//! are not the public types as they are (a device row carries JSON
//! columns and a status in three columns; a token row is custody-director's
//! `TokenRecord`), and the counter columns the public row types read.

use custody_director::director::DeviceDirectorState;
use custody_director::enrol::TokenRecord;
use custody_director::policy::Installed;
use custody_director::registry::{DeviceRecord, DeviceStatus, EnrolledWith};
use custody_director::wire::DeviceAttributes;

use super::{corrupt, to_u64, ts, DeviceRow};
use crate::storage::StorageError;

/// A BIGINT counter column read as `u64`: counters are written with
/// [`super::to_i64`]; a negative value reads as 0.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub struct Counter(i64);

impl From<Counter> for u64 {
    fn from(c: Counter) -> u64 {
        to_u64(c.0)
    }
}

/// A nullable [`Counter`].
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub struct OptCounter(Option<i64>);

impl From<OptCounter> for Option<u64> {
    fn from(c: OptCounter) -> Option<u64> {
        c.0.map(to_u64)
    }
}

/// Status column values.
const ACTIVE: &str = "active";
const SUSPENDED: &str = "suspended";
const DECOMMISSIONED: &str = "decommissioned";

/// A status as its columns: `status`, `status_reason`, `status_since`.
pub(super) fn status_text(s: &DeviceStatus) -> (&'static str, Option<String>, Option<i64>) {
    match s {
        DeviceStatus::Active => (ACTIVE, None, None),
        DeviceStatus::Suspended { reason, since } => {
            (SUSPENDED, Some(reason.clone()), Some(since.timestamp()))
        }
        DeviceStatus::Decommissioned { since } => (DECOMMISSIONED, None, Some(since.timestamp())),
    }
}

/// `director_devices` as stored (`environment` and `tags` are indexes
/// over `attributes` and are not read back).
#[derive(sqlx::FromRow)]
pub(super) struct DeviceCols {
    id: String,
    key_json: String,
    hardware_id: String,
    grp: String,
    attributes: String,
    enrolled_at: i64,
    enrolled_with: String,
    status: String,
    status_reason: Option<String>,
    status_since: Option<i64>,
    last_attestation: i64,
    /// -1 before the first accepted manifest
    last_counter: i64,
    last_checkin: Option<i64>,
    installed: Option<String>,
    running_target: Option<String>,
    running_counter: Option<i64>,
    max_counter: Option<i64>,
    assigned_target: Option<String>,
    assigned_counter: Option<i64>,
    assignment_note: Option<String>,
    d_targets: i64,
    d_snapshot: i64,
    d_timestamp: i64,
    log_delivery: Option<String>,
}

impl TryFrom<DeviceCols> for DeviceRow {
    type Error = StorageError;

    fn try_from(c: DeviceCols) -> Result<DeviceRow, StorageError> {
        let since = ts(c.status_since.unwrap_or(0));
        let status = match c.status.as_str() {
            ACTIVE => DeviceStatus::Active,
            SUSPENDED => DeviceStatus::Suspended {
                reason: c.status_reason.unwrap_or_default(),
                since,
            },
            DECOMMISSIONED => DeviceStatus::Decommissioned { since },
            other => return Err(corrupt("device", format!("status {other:?}"))),
        };
        let record = DeviceRecord {
            id: c.id,
            key: serde_json::from_str(&c.key_json).map_err(|x| corrupt("device key", x))?,
            hardware_id: c.hardware_id,
            group: c.grp,
            attributes: serde_json::from_str::<DeviceAttributes>(&c.attributes)
                .map_err(|x| corrupt("device attributes", x))?,
            enrolled_at: ts(c.enrolled_at),
            enrolled_with: serde_json::from_str::<EnrolledWith>(&c.enrolled_with)
                .map_err(|x| corrupt("device enrolled_with", x))?,
            status,
            last_attestation: ts(c.last_attestation),
        };
        Ok(DeviceRow {
            record,
            last_counter: (c.last_counter >= 0).then(|| to_u64(c.last_counter)),
            last_checkin: c.last_checkin,
            installed: c
                .installed
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|x| corrupt("device installed state", x))?,
            running: c.running_target.map(|name| Installed {
                name,
                release_counter: to_u64(c.running_counter.unwrap_or(0)),
                max_release_counter: to_u64(c.max_counter.unwrap_or(0)),
            }),
            assigned: c
                .assigned_target
                .map(|t| (t, to_u64(c.assigned_counter.unwrap_or(0)))),
            assignment_note: c.assignment_note,
            director: DeviceDirectorState {
                targets_version: to_u64(c.d_targets),
                snapshot_version: to_u64(c.d_snapshot),
                timestamp_version: to_u64(c.d_timestamp),
            },
            log_delivery: c.log_delivery,
        })
    }
}

/// `director_tokens` as stored (`created_by` is not read back).
#[derive(sqlx::FromRow)]
pub(super) struct TokenCols {
    hash: String,
    grp: String,
    environment: Option<String>,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl From<TokenCols> for TokenRecord {
    fn from(c: TokenCols) -> TokenRecord {
        TokenRecord {
            hash: c.hash,
            group: c.grp,
            environment: c.environment,
            created_at: ts(c.created_at),
            expires_at: ts(c.expires_at),
            used_at: c.used_at.map(ts),
        }
    }
}
