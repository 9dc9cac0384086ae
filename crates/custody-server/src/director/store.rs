//! Director state in SQL: devices, enrolment tokens, nonces, manifests
//! (last counter + installed state), install reports, install history,
//! rollouts, pins, yanks, rollback authorisations, attack records.
//!
//! Same statements for SQLite (embedded default, WAL, the server's
//! database file) and PostgreSQL, instantiated per driver by a macro as in
//! `storage/sql.rs`; the pools are the server's own. Ids are text, so the
//! schema is identical on both backends.
//!
//! Check-ins are written by [`CheckinWriter`]: one task groups concurrent
//! check-ins into one transaction (group commit, one fsync for many). Each
//! check-in inside it is still all-or-nothing in the sense that matters:
//! nonce insert, the compare-and-set of the report counter (`WHERE
//! last_counter = old AND status = 'active'`), installed state, director
//! versions and reports land together or the check-in is answered with a
//! refusal; two racing manifests of one device cannot both pass.

use std::collections::BTreeMap;

use async_trait::async_trait;
use custody_director::director::DeviceDirectorState;
use custody_director::policy::Installed;
use custody_director::registry::{DeviceRecord, DeviceStatus, EnrolledWith};
use custody_director::wire::DeviceAttributes;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::storage::{StorageError, StorageResult};

fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |source| StorageError::Db { operation, source }
}

fn corrupt(what: &'static str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Counters travel as u64 and are stored as BIGINT.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn ts(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS director_devices (
    id TEXT PRIMARY KEY,
    key_json TEXT NOT NULL,
    hardware_id TEXT NOT NULL,
    grp TEXT NOT NULL,
    environment TEXT NOT NULL,
    tags TEXT NOT NULL,
    attributes TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    enrolled_with TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    status_since BIGINT,
    last_attestation BIGINT NOT NULL,
    last_counter BIGINT NOT NULL,
    last_checkin BIGINT,
    installed TEXT,
    running_target TEXT,
    running_counter BIGINT,
    max_counter BIGINT,
    assigned_target TEXT,
    assigned_counter BIGINT,
    assignment_note TEXT,
    d_targets BIGINT NOT NULL,
    d_snapshot BIGINT NOT NULL,
    d_timestamp BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS director_devices_hw ON director_devices (hardware_id);
CREATE INDEX IF NOT EXISTS director_devices_grp ON director_devices (grp);
CREATE INDEX IF NOT EXISTS director_devices_running ON director_devices (running_target);
CREATE INDEX IF NOT EXISTS director_devices_attest ON director_devices (status, last_attestation);
CREATE TABLE IF NOT EXISTS director_tokens (
    hash TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    environment TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS director_nonces (
    device_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX IF NOT EXISTS director_nonces_exp ON director_nonces (expires_at);
CREATE TABLE IF NOT EXISTS director_reports (
    device_id TEXT NOT NULL,
    report_id TEXT NOT NULL,
    target TEXT NOT NULL,
    release_counter BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    device_time BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    rollout_id TEXT,
    stage BIGINT,
    PRIMARY KEY (device_id, report_id)
);
CREATE INDEX IF NOT EXISTS director_reports_rollout ON director_reports (rollout_id, stage);
CREATE TABLE IF NOT EXISTS director_installs (
    device_id TEXT NOT NULL,
    target TEXT NOT NULL,
    release_counter BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    report_counter BIGINT NOT NULL,
    PRIMARY KEY (device_id, target)
);
CREATE INDEX IF NOT EXISTS director_installs_target ON director_installs (target);
CREATE TABLE IF NOT EXISTS director_rollouts (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    stage BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS director_pins (
    device_id TEXT PRIMARY KEY,
    release_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS director_yanks (
    target TEXT PRIMARY KEY,
    replacement_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS director_rollback_auths (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    target TEXT NOT NULL,
    release_counter BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS director_attacks (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    device_id TEXT,
    code TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS director_attacks_at ON director_attacks (at);
CREATE INDEX IF NOT EXISTS director_attacks_device ON director_attacks (device_id, at)
"#;

/// Status column values.
const ACTIVE: &str = "active";
const SUSPENDED: &str = "suspended";
const DECOMMISSIONED: &str = "decommissioned";

/// A device with its director-side state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// registry record (custody-director's type)
    pub record: DeviceRecord,
    /// last accepted report counter (`None` before the first manifest)
    pub last_counter: Option<u64>,
    /// last accepted check-in (unix seconds)
    pub last_checkin: Option<i64>,
    /// installed state of the last accepted manifest (`{installed, active_slot}`)
    pub installed: Option<serde_json::Value>,
    /// running target / counters of the last accepted manifest
    pub running: Option<Installed>,
    /// last assignment (target, release counter)
    pub assigned: Option<(String, u64)>,
    /// why it was assigned or not
    pub assignment_note: Option<String>,
    /// per-device director metadata versions
    pub director: DeviceDirectorState,
    /// transparency log (log_hooks.rs): marker of the last assignment whose
    /// delivery is durably in the log (`None`: none logged yet)
    pub log_delivery: Option<String>,
}

/// Device list filter (all present criteria must match).
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub hardware_id: Option<String>,
    pub group: Option<String>,
    pub environment: Option<String>,
    pub tag: Option<String>,
    pub status: Option<String>,
    pub running_target: Option<String>,
    /// paging: ids greater than this
    pub after: Option<String>,
    pub limit: i64,
}

/// A stored enrolment token (hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub rec: custody_director::enrol::TokenRecord,
    pub created_by: String,
}

/// One install report as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportRow {
    pub device_id: String,
    pub report_id: String,
    pub target: String,
    pub release_counter: u64,
    pub outcome: String,
    pub reason: Option<String>,
    pub device_time: i64,
    pub received_at: i64,
    /// the rollout whose release this report is about, at receipt
    pub rollout_id: Option<String>,
    /// its stage at receipt
    pub stage: Option<u64>,
}

/// An attack record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttackRow {
    pub id: String,
    pub at: i64,
    /// the device concerned (claimed or authenticated), if known
    pub device_id: Option<String>,
    /// the ErrorBody code (`replayed_counter`, …) or `device_reported`
    pub code: String,
    /// `server` (a refused request) or `device` (reported in a manifest)
    pub source: String,
    pub detail: String,
}

/// Who installed a target, and when it was first seen running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstallRow {
    pub device_id: String,
    pub target: String,
    pub release_counter: u64,
    /// server time of the first manifest that showed it running
    pub first_seen: i64,
    /// that manifest's report counter
    pub report_counter: u64,
}

/// A stored rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub id: String,
    pub spec: String,
    pub stage: u64,
    pub state: String,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
}

/// A stored pin / yank / rollback authorisation (JSON bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    pub device_id: String,
    pub release_json: String,
    pub reason: String,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YankRow {
    pub target: String,
    pub replacement_json: String,
    pub reason: String,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRow {
    pub id: String,
    pub body: String,
    pub target: String,
    pub release_counter: u64,
    pub expires: i64,
    pub uploaded_at: i64,
    pub uploaded_by: String,
}

/// Everything one accepted check-in writes.
#[derive(Debug, Clone)]
pub struct CheckinWrite {
    pub device_id: String,
    pub nonce: String,
    pub nonce_expires: i64,
    /// the counter the manifest was verified against
    pub old_counter: Option<u64>,
    pub new_counter: u64,
    pub at: i64,
    pub installed_json: String,
    pub running: Option<Installed>,
    /// the running target differs from the last accepted manifest's: add
    /// it to the install history (skips a statement on most check-ins)
    pub running_changed: bool,
    pub director: DeviceDirectorState,
    pub assigned: Option<(String, u64)>,
    pub assignment_note: String,
    pub reports: Vec<ReportRow>,
    /// attacks the device reported (stored with source `device`)
    pub attacks: Vec<AttackRow>,
}

/// What became of one check-in write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// committed; the rollouts that got new reports
    Committed {
        rollouts_with_new_reports: Vec<String>,
    },
    /// the nonce was already used
    ReplayedNonce,
    /// the counter moved or the device stopped being active since it was read
    Conflict,
}

fn status_text(s: &DeviceStatus) -> (&'static str, Option<String>, Option<i64>) {
    match s {
        DeviceStatus::Active => (ACTIVE, None, None),
        DeviceStatus::Suspended { reason, since } => {
            (SUSPENDED, Some(reason.clone()), Some(since.timestamp()))
        }
        DeviceStatus::Decommissioned { since } => (DECOMMISSIONED, None, Some(since.timestamp())),
    }
}

/// Device records and everything the director persists.
#[async_trait]
pub trait DirectorDb: Send + Sync + 'static {
    async fn migrate(&self) -> StorageResult<()>;

    async fn insert_device(&self, rec: &DeviceRecord) -> StorageResult<()>;
    /// Many devices in one transaction (bulk provisioning, benchmarks).
    async fn insert_devices(&self, recs: &[DeviceRecord]) -> StorageResult<()>;
    async fn device_exists(&self, id: &str) -> StorageResult<bool>;
    async fn get_device(&self, id: &str) -> StorageResult<Option<DeviceRow>>;
    async fn list_devices(&self, f: &DeviceFilter) -> StorageResult<Vec<DeviceRow>>;
    async fn count_devices(&self) -> StorageResult<i64>;
    /// Sets the status; `attested_at` also resets the attestation clock
    /// (an administrator resuming a device vouches for it). False if the
    /// device is unknown or decommissioned (decommissioning is final).
    async fn set_device_status(
        &self,
        id: &str,
        status: &DeviceStatus,
        attested_at: Option<i64>,
    ) -> StorageResult<bool>;
    /// Persistently suspends active devices whose last attestation is
    /// before `cutoff`; returns their ids.
    async fn suspend_overdue(&self, cutoff: i64, now: i64) -> StorageResult<Vec<String>>;
    /// Records the assignment computed for a device outside a check-in.
    async fn set_assignment(
        &self,
        id: &str,
        assigned: Option<(String, u64)>,
        note: &str,
    ) -> StorageResult<()>;
    /// Records director metadata versions issued outside a check-in
    /// (offline bundle export): compare-and-set on the versions `old`, and
    /// only while the device is active; false otherwise.
    async fn set_director_state(
        &self,
        id: &str,
        old: &DeviceDirectorState,
        new: &DeviceDirectorState,
    ) -> StorageResult<bool>;

    async fn insert_token(&self, t: &TokenRow) -> StorageResult<()>;
    /// Atomic: mark used if unused and unexpired; else the reason.
    async fn consume_token(
        &self,
        hash: &str,
        now: i64,
    ) -> StorageResult<
        Result<custody_director::enrol::TokenRecord, custody_director::enrol::TokenRefusal>,
    >;

    /// Atomic insert-or-conflict: true if the nonce is new.
    async fn insert_nonce(&self, device: &str, nonce: &str, expires_at: i64)
        -> StorageResult<bool>;
    async fn purge_nonces(&self, now: i64) -> StorageResult<u64>;

    /// One transaction for a group of check-ins (see the module docs).
    async fn apply_checkins(&self, jobs: &[CheckinWrite]) -> StorageResult<Vec<WriteOutcome>>;

    /// A synchronous connection of its own for the check-in group commit,
    /// if this store has one (the embedded SQLite file: see
    /// [`SqliteCheckinConnection`]); the check-in writer then runs it on a
    /// dedicated thread. `None`: check-ins go through [`Self::apply_checkins`].
    fn checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
        Ok(None)
    }

    /// Called by the check-in writer after a batch went through
    /// [`Self::checkin_connection`], before any caller is answered: the
    /// upkeep `apply_checkins` does after its own write (device-row cache).
    fn checkins_written(&self, _jobs: &[CheckinWrite], _result: &StorageResult<Vec<WriteOutcome>>) {
    }

    /// The check-in writer took a delivery mark for `id` (written with its
    /// next batch): what the store caches sees it now, so the device's
    /// next check-in does not log the same delivery again.
    fn delivery_marked(&self, _id: &str, _marker: &str) {}

    /// (stage, outcome) → count for a rollout's reports.
    async fn report_counts(&self, rollout: &str) -> StorageResult<Vec<(Option<u64>, String, i64)>>;
    async fn list_reports(&self, device: &str, limit: i64) -> StorageResult<Vec<ReportRow>>;
    async fn who_installed(&self, target: &str) -> StorageResult<Vec<InstallRow>>;

    async fn insert_rollout(&self, r: &RolloutRow) -> StorageResult<()>;
    /// Compare-and-set on (stage, state): false if another writer moved it.
    async fn update_rollout(
        &self,
        id: &str,
        old: (u64, &str),
        new: (u64, &str),
        at: i64,
    ) -> StorageResult<bool>;
    async fn list_rollouts(&self) -> StorageResult<Vec<RolloutRow>>;

    async fn upsert_pin(&self, p: &PinRow) -> StorageResult<()>;
    async fn delete_pin(&self, device: &str) -> StorageResult<bool>;
    async fn list_pins(&self) -> StorageResult<Vec<PinRow>>;

    async fn insert_yank(&self, y: &YankRow) -> StorageResult<()>;
    async fn list_yanks(&self) -> StorageResult<Vec<YankRow>>;

    async fn insert_rollback(&self, r: &RollbackRow) -> StorageResult<()>;
    async fn list_rollbacks(&self) -> StorageResult<Vec<RollbackRow>>;

    async fn insert_attack(&self, a: &AttackRow) -> StorageResult<()>;
    async fn list_attacks(&self, device: Option<&str>, limit: i64)
        -> StorageResult<Vec<AttackRow>>;

    // ---- transparency log marks (log_hooks.rs; column `log_delivery`) ----
    /// Records that the delivery of the assignment `marker` to device `id`
    /// is durably in the transparency log (written after the append, so a
    /// crash in between logs it twice, never zero times).
    async fn mark_delivery_logged(&self, id: &str, marker: &str) -> StorageResult<()>;
}

/// Column added for the transparency log marks (log_hooks.rs): added by
/// `migrate` to tables created before it existed.
const LOG_DELIVERY_COLUMN: &str = "log_delivery";

/// SQLite (the server's database file).
#[derive(Debug, Clone)]
pub struct SqliteDirectorDb {
    pool: sqlx::SqlitePool,
}

/// PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgDirectorDb {
    pool: sqlx::PgPool,
}

impl SqliteDirectorDb {
    pub fn new(pool: sqlx::SqlitePool) -> Self {
        SqliteDirectorDb { pool }
    }
}

impl PgDirectorDb {
    pub fn new(pool: sqlx::PgPool) -> Self {
        PgDirectorDb { pool }
    }
}

macro_rules! director_sql {
    ($ty:ident, $db:ty, migrate_lock = $lock:expr, begin_write = $begin:expr) => {
        impl $ty {
            fn device(row: &<$db as sqlx::Database>::Row) -> StorageResult<DeviceRow> {
                let e = || db("read device row");
                let key: String = row.try_get("key_json").map_err(e())?;
                let attributes: String = row.try_get("attributes").map_err(e())?;
                let with: String = row.try_get("enrolled_with").map_err(e())?;
                let status: String = row.try_get("status").map_err(e())?;
                let reason: Option<String> = row.try_get("status_reason").map_err(e())?;
                let since: Option<i64> = row.try_get("status_since").map_err(e())?;
                let since = ts(since.unwrap_or(0));
                let status = match status.as_str() {
                    ACTIVE => DeviceStatus::Active,
                    SUSPENDED => DeviceStatus::Suspended {
                        reason: reason.unwrap_or_default(),
                        since,
                    },
                    DECOMMISSIONED => DeviceStatus::Decommissioned { since },
                    other => return Err(corrupt("device", format!("status {other:?}"))),
                };
                let record = DeviceRecord {
                    id: row.try_get("id").map_err(e())?,
                    key: serde_json::from_str(&key).map_err(|x| corrupt("device key", x))?,
                    hardware_id: row.try_get("hardware_id").map_err(e())?,
                    group: row.try_get("grp").map_err(e())?,
                    attributes: serde_json::from_str::<DeviceAttributes>(&attributes)
                        .map_err(|x| corrupt("device attributes", x))?,
                    enrolled_at: ts(row.try_get("enrolled_at").map_err(e())?),
                    enrolled_with: serde_json::from_str::<EnrolledWith>(&with)
                        .map_err(|x| corrupt("device enrolled_with", x))?,
                    status,
                    last_attestation: ts(row.try_get("last_attestation").map_err(e())?),
                };
                let last_counter: i64 = row.try_get("last_counter").map_err(e())?;
                let installed: Option<String> = row.try_get("installed").map_err(e())?;
                let running_target: Option<String> = row.try_get("running_target").map_err(e())?;
                let running_counter: Option<i64> = row.try_get("running_counter").map_err(e())?;
                let max_counter: Option<i64> = row.try_get("max_counter").map_err(e())?;
                let assigned_target: Option<String> =
                    row.try_get("assigned_target").map_err(e())?;
                let assigned_counter: Option<i64> = row.try_get("assigned_counter").map_err(e())?;
                Ok(DeviceRow {
                    record,
                    last_counter: (last_counter >= 0).then(|| to_u64(last_counter)),
                    last_checkin: row.try_get("last_checkin").map_err(e())?,
                    installed: installed
                        .map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|x| corrupt("device installed state", x))?,
                    running: running_target.map(|name| Installed {
                        name,
                        release_counter: to_u64(running_counter.unwrap_or(0)),
                        max_release_counter: to_u64(max_counter.unwrap_or(0)),
                    }),
                    assigned: assigned_target.map(|t| (t, to_u64(assigned_counter.unwrap_or(0)))),
                    assignment_note: row.try_get("assignment_note").map_err(e())?,
                    director: DeviceDirectorState {
                        targets_version: to_u64(row.try_get("d_targets").map_err(e())?),
                        snapshot_version: to_u64(row.try_get("d_snapshot").map_err(e())?),
                        timestamp_version: to_u64(row.try_get("d_timestamp").map_err(e())?),
                    },
                    log_delivery: row.try_get(LOG_DELIVERY_COLUMN).map_err(e())?,
                })
            }

            fn report(row: &<$db as sqlx::Database>::Row) -> StorageResult<ReportRow> {
                let e = || db("read report row");
                let stage: Option<i64> = row.try_get("stage").map_err(e())?;
                Ok(ReportRow {
                    device_id: row.try_get("device_id").map_err(e())?,
                    report_id: row.try_get("report_id").map_err(e())?,
                    target: row.try_get("target").map_err(e())?,
                    release_counter: to_u64(row.try_get("release_counter").map_err(e())?),
                    outcome: row.try_get("outcome").map_err(e())?,
                    reason: row.try_get("reason").map_err(e())?,
                    device_time: row.try_get("device_time").map_err(e())?,
                    received_at: row.try_get("received_at").map_err(e())?,
                    rollout_id: row.try_get("rollout_id").map_err(e())?,
                    stage: stage.map(to_u64),
                })
            }

            fn attack(row: &<$db as sqlx::Database>::Row) -> StorageResult<AttackRow> {
                let e = || db("read attack row");
                Ok(AttackRow {
                    id: row.try_get("id").map_err(e())?,
                    at: row.try_get("at").map_err(e())?,
                    device_id: row.try_get("device_id").map_err(e())?,
                    code: row.try_get("code").map_err(e())?,
                    source: row.try_get("source").map_err(e())?,
                    detail: row.try_get("detail").map_err(e())?,
                })
            }

            fn token_rec(
                row: &<$db as sqlx::Database>::Row,
            ) -> StorageResult<custody_director::enrol::TokenRecord> {
                let e = || db("read enrolment token row");
                let used: Option<i64> = row.try_get("used_at").map_err(e())?;
                Ok(custody_director::enrol::TokenRecord {
                    hash: row.try_get("hash").map_err(e())?,
                    group: row.try_get("grp").map_err(e())?,
                    environment: row.try_get("environment").map_err(e())?,
                    created_at: ts(row.try_get("created_at").map_err(e())?),
                    expires_at: ts(row.try_get("expires_at").map_err(e())?),
                    used_at: used.map(ts),
                })
            }

            async fn insert_device_in<'c, E>(ex: E, rec: &DeviceRecord) -> Result<(), sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                let (status, reason, since) = status_text(&rec.status);
                sqlx::query(
                    "INSERT INTO director_devices (id, key_json, hardware_id, grp, environment, tags, \
                     attributes, enrolled_at, enrolled_with, status, status_reason, status_since, \
                     last_attestation, last_counter, d_targets, d_snapshot, d_timestamp) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, -1, 0, 0, 0)",
                )
                .bind(&rec.id)
                .bind(json(&rec.key))
                .bind(&rec.hardware_id)
                .bind(&rec.group)
                .bind(&rec.attributes.environment)
                .bind(json(&rec.attributes.tags))
                .bind(json(&rec.attributes))
                .bind(rec.enrolled_at.timestamp())
                .bind(json(&rec.enrolled_with))
                .bind(status)
                .bind(reason)
                .bind(since)
                .bind(rec.last_attestation.timestamp())
                .execute(ex)
                .await
                .map(|_| ())
            }
        }

        #[async_trait]
        impl DirectorDb for $ty {
            async fn migrate(&self) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(db("begin director migration"))?;
                sqlx::query($lock)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("lock for director migration"))?;
                for stmt in SCHEMA.split(';') {
                    if stmt.trim().is_empty() {
                        continue;
                    }
                    sqlx::query(stmt)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("create director schema"))?;
                }
                // ---- transparency log marks (log_hooks.rs) ----
                // Tables created before the column existed get it here (no
                // IF NOT EXISTS for columns on SQLite: look first).
                let has_mark = {
                    use sqlx::{Column as _, Executor as _};
                    (&mut *tx)
                        .describe("SELECT * FROM director_devices")
                        .await
                        .map_err(db("describe director_devices"))?
                        .columns()
                        .iter()
                        .any(|c| c.name() == LOG_DELIVERY_COLUMN)
                };
                if !has_mark {
                    sqlx::query("ALTER TABLE director_devices ADD COLUMN log_delivery TEXT")
                        .execute(&mut *tx)
                        .await
                        .map_err(db("add column director_devices.log_delivery"))?;
                }
                tx.commit().await.map_err(db("commit director migration"))
            }

            async fn insert_device(&self, rec: &DeviceRecord) -> StorageResult<()> {
                match Self::insert_device_in(&self.pool, rec).await {
                    Ok(()) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict {
                        what: "device",
                        key: rec.id.clone(),
                    }),
                    Err(e) => Err(db("insert device")(e)),
                }
            }

            async fn insert_devices(&self, recs: &[DeviceRecord]) -> StorageResult<()> {
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(db("begin bulk device insert"))?;
                for rec in recs {
                    Self::insert_device_in(&mut *tx, rec)
                        .await
                        .map_err(db("bulk insert device"))?;
                }
                tx.commit().await.map_err(db("commit bulk device insert"))
            }

            async fn device_exists(&self, id: &str) -> StorageResult<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM director_devices WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("look up device"))?;
                Ok(row.is_some())
            }

            async fn get_device(&self, id: &str) -> StorageResult<Option<DeviceRow>> {
                let row = sqlx::query("SELECT * FROM director_devices WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read device"))?;
                row.as_ref().map(Self::device).transpose()
            }

            async fn list_devices(&self, f: &DeviceFilter) -> StorageResult<Vec<DeviceRow>> {
                let tag_like = f.tag.as_ref().map(|t| {
                    format!("%{}%", serde_json::to_string(t).unwrap_or_default())
                });
                let rows = sqlx::query(
                    "SELECT * FROM director_devices WHERE \
                     ($1 IS NULL OR hardware_id = $1) AND ($2 IS NULL OR grp = $2) AND \
                     ($3 IS NULL OR environment = $3) AND ($4 IS NULL OR tags LIKE $4) AND \
                     ($5 IS NULL OR status = $5) AND ($6 IS NULL OR running_target = $6) AND \
                     ($7 IS NULL OR id > $7) ORDER BY id LIMIT $8",
                )
                .bind(&f.hardware_id)
                .bind(&f.group)
                .bind(&f.environment)
                .bind(&tag_like)
                .bind(&f.status)
                .bind(&f.running_target)
                .bind(&f.after)
                .bind(f.limit.clamp(1, 100_000))
                .fetch_all(&self.pool)
                .await
                .map_err(db("list devices"))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let d = Self::device(r)?;
                    // LIKE is a prefilter (a tag may contain % or _).
                    if let Some(t) = &f.tag {
                        if !d.record.attributes.tags.contains(t) {
                            continue;
                        }
                    }
                    out.push(d);
                }
                Ok(out)
            }

            async fn count_devices(&self) -> StorageResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM director_devices")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("count devices"))?;
                row.try_get("n").map_err(db("count devices"))
            }

            async fn set_device_status(
                &self,
                id: &str,
                status: &DeviceStatus,
                attested_at: Option<i64>,
            ) -> StorageResult<bool> {
                let (s, reason, since) = status_text(status);
                let res = sqlx::query(
                    "UPDATE director_devices SET status = $2, status_reason = $3, status_since = $4, \
                     last_attestation = COALESCE($5, last_attestation) \
                     WHERE id = $1 AND status <> 'decommissioned'",
                )
                .bind(id)
                .bind(s)
                .bind(reason)
                .bind(since)
                .bind(attested_at)
                .execute(&self.pool)
                .await
                .map_err(db("set device status"))?;
                Ok(res.rows_affected() == 1)
            }

            async fn suspend_overdue(&self, cutoff: i64, now: i64) -> StorageResult<Vec<String>> {
                let rows = sqlx::query(
                    "UPDATE director_devices SET status = 'suspended', status_since = $2, \
                     status_reason = 're-attestation overdue: no proof of key possession since ' || \
                     CAST(last_attestation AS TEXT) \
                     WHERE status = 'active' AND last_attestation < $1 RETURNING id",
                )
                .bind(cutoff)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db("suspend overdue devices"))?;
                rows.iter()
                    .map(|r| r.try_get("id").map_err(db("suspend overdue devices")))
                    .collect()
            }

            async fn set_assignment(
                &self,
                id: &str,
                assigned: Option<(String, u64)>,
                note: &str,
            ) -> StorageResult<()> {
                let (t, c) = match assigned {
                    Some((t, c)) => (Some(t), Some(to_i64(c))),
                    None => (None, None),
                };
                sqlx::query(
                    "UPDATE director_devices SET assigned_target = $2, assigned_counter = $3, \
                     assignment_note = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(t)
                .bind(c)
                .bind(note)
                .execute(&self.pool)
                .await
                .map_err(db("record assignment"))?;
                Ok(())
            }

            async fn set_director_state(
                &self,
                id: &str,
                old: &DeviceDirectorState,
                new: &DeviceDirectorState,
            ) -> StorageResult<bool> {
                let res = sqlx::query(
                    "UPDATE director_devices SET d_targets = $5, d_snapshot = $6, d_timestamp = $7 \
                     WHERE id = $1 AND d_targets = $2 AND d_snapshot = $3 AND d_timestamp = $4 \
                     AND status = 'active'",
                )
                .bind(id)
                .bind(to_i64(old.targets_version))
                .bind(to_i64(old.snapshot_version))
                .bind(to_i64(old.timestamp_version))
                .bind(to_i64(new.targets_version))
                .bind(to_i64(new.snapshot_version))
                .bind(to_i64(new.timestamp_version))
                .execute(&self.pool)
                .await
                .map_err(db("record director metadata versions"))?;
                Ok(res.rows_affected() == 1)
            }

            async fn insert_token(&self, t: &TokenRow) -> StorageResult<()> {
                let r = &t.rec;
                sqlx::query(
                    "INSERT INTO director_tokens (hash, grp, environment, created_at, expires_at, used_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, NULL, $6)",
                )
                .bind(&r.hash)
                .bind(&r.group)
                .bind(&r.environment)
                .bind(r.created_at.timestamp())
                .bind(r.expires_at.timestamp())
                .bind(&t.created_by)
                .execute(&self.pool)
                .await
                .map_err(db("store enrolment token"))?;
                Ok(())
            }

            async fn consume_token(
                &self,
                hash: &str,
                now: i64,
            ) -> StorageResult<
                Result<custody_director::enrol::TokenRecord, custody_director::enrol::TokenRefusal>,
            > {
                use custody_director::enrol::TokenRefusal;
                let row = sqlx::query(
                    "UPDATE director_tokens SET used_at = $2 \
                     WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING *",
                )
                .bind(hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("consume enrolment token"))?;
                if let Some(row) = row {
                    return Ok(Ok(Self::token_rec(&row)?));
                }
                let row = sqlx::query("SELECT * FROM director_tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read enrolment token"))?;
                let Some(row) = row else {
                    return Ok(Err(TokenRefusal::Unknown {
                        hash_prefix: hash.chars().take(16).collect(),
                    }));
                };
                let rec = Self::token_rec(&row)?;
                Ok(Err(match rec.used_at {
                    Some(used_at) => TokenRefusal::AlreadyUsed { used_at },
                    None => TokenRefusal::Expired {
                        expired_at: rec.expires_at,
                        now: ts(now),
                    },
                }))
            }

            async fn insert_nonce(
                &self,
                device: &str,
                nonce: &str,
                expires_at: i64,
            ) -> StorageResult<bool> {
                let res = sqlx::query(
                    "INSERT INTO director_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (device_id, nonce) DO NOTHING",
                )
                .bind(device)
                .bind(nonce)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(db("record nonce"))?;
                Ok(res.rows_affected() == 1)
            }

            async fn purge_nonces(&self, now: i64) -> StorageResult<u64> {
                let res = sqlx::query("DELETE FROM director_nonces WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(db("purge nonces"))?;
                Ok(res.rows_affected())
            }

            fn checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
                self.own_checkin_connection()
            }

            async fn apply_checkins(&self, jobs: &[CheckinWrite]) -> StorageResult<Vec<WriteOutcome>> {
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(db("begin check-in transaction"))?;
                let mut out = Vec::with_capacity(jobs.len());
                for j in jobs {
                    let res = sqlx::query(
                        "INSERT INTO director_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (device_id, nonce) DO NOTHING",
                    )
                    .bind(&j.device_id)
                    .bind(&j.nonce)
                    .bind(j.nonce_expires)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("record nonce"))?;
                    if res.rows_affected() != 1 {
                        out.push(WriteOutcome::ReplayedNonce);
                        continue;
                    }
                    let (at, ac) = match &j.assigned {
                        Some((t, c)) => (Some(t.clone()), Some(to_i64(*c))),
                        None => (None, None),
                    };
                    let (rt, rc, mc) = match &j.running {
                        Some(r) => (
                            Some(r.name.clone()),
                            Some(to_i64(r.release_counter)),
                            Some(to_i64(r.max_release_counter)),
                        ),
                        None => (None, None, None),
                    };
                    let old = j.old_counter.map_or(-1, to_i64);
                    // A signed check-in proves possession of the key: it
                    // re-attests the device (last_attestation = now).
                    let res = sqlx::query(
                        "UPDATE director_devices SET last_counter = $3, last_checkin = $4, \
                         last_attestation = $4, installed = $5, running_target = $6, \
                         running_counter = $7, max_counter = $8, assigned_target = $9, \
                         assigned_counter = $10, assignment_note = $11, d_targets = $12, \
                         d_snapshot = $13, d_timestamp = $14 \
                         WHERE id = $1 AND last_counter = $2 AND status = 'active'",
                    )
                    .bind(&j.device_id)
                    .bind(old)
                    .bind(to_i64(j.new_counter))
                    .bind(j.at)
                    .bind(&j.installed_json)
                    .bind(rt)
                    .bind(rc)
                    .bind(mc)
                    .bind(at)
                    .bind(ac)
                    .bind(&j.assignment_note)
                    .bind(to_i64(j.director.targets_version))
                    .bind(to_i64(j.director.snapshot_version))
                    .bind(to_i64(j.director.timestamp_version))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("record manifest"))?;
                    if res.rows_affected() != 1 {
                        out.push(WriteOutcome::Conflict);
                        continue;
                    }
                    if let Some(r) = j.running.as_ref().filter(|_| j.running_changed) {
                        sqlx::query(
                            "INSERT INTO director_installs (device_id, target, release_counter, first_seen, report_counter) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, target) DO NOTHING",
                        )
                        .bind(&j.device_id)
                        .bind(&r.name)
                        .bind(to_i64(r.release_counter))
                        .bind(j.at)
                        .bind(to_i64(j.new_counter))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("record install history"))?;
                    }
                    let mut rollouts = Vec::new();
                    for r in &j.reports {
                        let res = sqlx::query(
                            "INSERT INTO director_reports (device_id, report_id, target, release_counter, \
                             outcome, reason, device_time, received_at, rollout_id, stage) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                             ON CONFLICT (device_id, report_id) DO NOTHING",
                        )
                        .bind(&r.device_id)
                        .bind(&r.report_id)
                        .bind(&r.target)
                        .bind(to_i64(r.release_counter))
                        .bind(&r.outcome)
                        .bind(&r.reason)
                        .bind(r.device_time)
                        .bind(r.received_at)
                        .bind(&r.rollout_id)
                        .bind(r.stage.map(to_i64))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("record install report"))?;
                        if res.rows_affected() == 1 {
                            if let Some(id) = &r.rollout_id {
                                if !rollouts.contains(id) {
                                    rollouts.push(id.clone());
                                }
                            }
                        }
                    }
                    for a in &j.attacks {
                        sqlx::query(
                            "INSERT INTO director_attacks (id, at, device_id, code, source, detail) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&a.id)
                        .bind(a.at)
                        .bind(&a.device_id)
                        .bind(&a.code)
                        .bind(&a.source)
                        .bind(&a.detail)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("record reported attack"))?;
                    }
                    out.push(WriteOutcome::Committed {
                        rollouts_with_new_reports: rollouts,
                    });
                }
                tx.commit().await.map_err(db("commit check-ins"))?;
                Ok(out)
            }

            async fn report_counts(
                &self,
                rollout: &str,
            ) -> StorageResult<Vec<(Option<u64>, String, i64)>> {
                let rows = sqlx::query(
                    "SELECT stage, outcome, COUNT(*) AS n FROM director_reports \
                     WHERE rollout_id = $1 GROUP BY stage, outcome",
                )
                .bind(rollout)
                .fetch_all(&self.pool)
                .await
                .map_err(db("count rollout reports"))?;
                rows.iter()
                    .map(|r| {
                        let e = || db("count rollout reports");
                        let stage: Option<i64> = r.try_get("stage").map_err(e())?;
                        Ok((
                            stage.map(to_u64),
                            r.try_get("outcome").map_err(e())?,
                            r.try_get("n").map_err(e())?,
                        ))
                    })
                    .collect()
            }

            async fn list_reports(&self, device: &str, limit: i64) -> StorageResult<Vec<ReportRow>> {
                let rows = sqlx::query(
                    "SELECT * FROM director_reports WHERE device_id = $1 \
                     ORDER BY received_at DESC, report_id LIMIT $2",
                )
                .bind(device)
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await
                .map_err(db("list install reports"))?;
                rows.iter().map(Self::report).collect()
            }

            async fn who_installed(&self, target: &str) -> StorageResult<Vec<InstallRow>> {
                let rows = sqlx::query(
                    "SELECT * FROM director_installs WHERE target = $1 ORDER BY first_seen, device_id",
                )
                .bind(target)
                .fetch_all(&self.pool)
                .await
                .map_err(db("list installs"))?;
                rows.iter()
                    .map(|r| {
                        let e = || db("read install row");
                        Ok(InstallRow {
                            device_id: r.try_get("device_id").map_err(e())?,
                            target: r.try_get("target").map_err(e())?,
                            release_counter: to_u64(r.try_get("release_counter").map_err(e())?),
                            first_seen: r.try_get("first_seen").map_err(e())?,
                            report_counter: to_u64(r.try_get("report_counter").map_err(e())?),
                        })
                    })
                    .collect()
            }

            async fn insert_rollout(&self, r: &RolloutRow) -> StorageResult<()> {
                let res = sqlx::query(
                    "INSERT INTO director_rollouts (id, spec, stage, state, created_at, created_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&r.id)
                .bind(&r.spec)
                .bind(to_i64(r.stage))
                .bind(&r.state)
                .bind(r.created_at)
                .bind(&r.created_by)
                .bind(r.updated_at)
                .execute(&self.pool)
                .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict {
                        what: "rollout",
                        key: r.id.clone(),
                    }),
                    Err(e) => Err(db("insert rollout")(e)),
                }
            }

            async fn update_rollout(
                &self,
                id: &str,
                old: (u64, &str),
                new: (u64, &str),
                at: i64,
            ) -> StorageResult<bool> {
                let res = sqlx::query(
                    "UPDATE director_rollouts SET stage = $4, state = $5, updated_at = $6 \
                     WHERE id = $1 AND stage = $2 AND state = $3",
                )
                .bind(id)
                .bind(to_i64(old.0))
                .bind(old.1)
                .bind(to_i64(new.0))
                .bind(new.1)
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err(db("update rollout"))?;
                Ok(res.rows_affected() == 1)
            }

            async fn list_rollouts(&self) -> StorageResult<Vec<RolloutRow>> {
                let rows = sqlx::query("SELECT * FROM director_rollouts ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list rollouts"))?;
                rows.iter()
                    .map(|r| {
                        let e = || db("read rollout row");
                        Ok(RolloutRow {
                            id: r.try_get("id").map_err(e())?,
                            spec: r.try_get("spec").map_err(e())?,
                            stage: to_u64(r.try_get("stage").map_err(e())?),
                            state: r.try_get("state").map_err(e())?,
                            created_at: r.try_get("created_at").map_err(e())?,
                            created_by: r.try_get("created_by").map_err(e())?,
                            updated_at: r.try_get("updated_at").map_err(e())?,
                        })
                    })
                    .collect()
            }

            async fn upsert_pin(&self, p: &PinRow) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO director_pins (device_id, release_json, reason, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id) DO UPDATE SET \
                     release_json = excluded.release_json, reason = excluded.reason, \
                     created_at = excluded.created_at, created_by = excluded.created_by",
                )
                .bind(&p.device_id)
                .bind(&p.release_json)
                .bind(&p.reason)
                .bind(p.created_at)
                .bind(&p.created_by)
                .execute(&self.pool)
                .await
                .map_err(db("store pin"))?;
                Ok(())
            }

            async fn delete_pin(&self, device: &str) -> StorageResult<bool> {
                let res = sqlx::query("DELETE FROM director_pins WHERE device_id = $1")
                    .bind(device)
                    .execute(&self.pool)
                    .await
                    .map_err(db("delete pin"))?;
                Ok(res.rows_affected() == 1)
            }

            async fn list_pins(&self) -> StorageResult<Vec<PinRow>> {
                let rows = sqlx::query("SELECT * FROM director_pins ORDER BY device_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list pins"))?;
                rows.iter()
                    .map(|r| {
                        let e = || db("read pin row");
                        Ok(PinRow {
                            device_id: r.try_get("device_id").map_err(e())?,
                            release_json: r.try_get("release_json").map_err(e())?,
                            reason: r.try_get("reason").map_err(e())?,
                            created_at: r.try_get("created_at").map_err(e())?,
                            created_by: r.try_get("created_by").map_err(e())?,
                        })
                    })
                    .collect()
            }

            async fn insert_yank(&self, y: &YankRow) -> StorageResult<()> {
                let res = sqlx::query(
                    "INSERT INTO director_yanks (target, replacement_json, reason, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&y.target)
                .bind(&y.replacement_json)
                .bind(&y.reason)
                .bind(y.created_at)
                .bind(&y.created_by)
                .execute(&self.pool)
                .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict {
                        what: "yank",
                        key: y.target.clone(),
                    }),
                    Err(e) => Err(db("insert yank")(e)),
                }
            }

            async fn list_yanks(&self) -> StorageResult<Vec<YankRow>> {
                let rows = sqlx::query("SELECT * FROM director_yanks ORDER BY created_at, target")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list yanks"))?;
                rows.iter()
                    .map(|r| {
                        let e = || db("read yank row");
                        Ok(YankRow {
                            target: r.try_get("target").map_err(e())?,
                            replacement_json: r.try_get("replacement_json").map_err(e())?,
                            reason: r.try_get("reason").map_err(e())?,
                            created_at: r.try_get("created_at").map_err(e())?,
                            created_by: r.try_get("created_by").map_err(e())?,
                        })
                    })
                    .collect()
            }

            async fn insert_rollback(&self, r: &RollbackRow) -> StorageResult<()> {
                let res = sqlx::query(
                    "INSERT INTO director_rollback_auths (id, body, target, release_counter, expires, \
                     uploaded_at, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&r.id)
                .bind(&r.body)
                .bind(&r.target)
                .bind(to_i64(r.release_counter))
                .bind(r.expires)
                .bind(r.uploaded_at)
                .bind(&r.uploaded_by)
                .execute(&self.pool)
                .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict {
                        what: "rollback authorisation",
                        key: r.id.clone(),
                    }),
                    Err(e) => Err(db("insert rollback authorisation")(e)),
                }
            }

            async fn list_rollbacks(&self) -> StorageResult<Vec<RollbackRow>> {
                let rows = sqlx::query("SELECT * FROM director_rollback_auths ORDER BY uploaded_at, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list rollback authorisations"))?;
                rows.iter()
                    .map(|r| {
                        let e = || db("read rollback authorisation row");
                        Ok(RollbackRow {
                            id: r.try_get("id").map_err(e())?,
                            body: r.try_get("body").map_err(e())?,
                            target: r.try_get("target").map_err(e())?,
                            release_counter: to_u64(r.try_get("release_counter").map_err(e())?),
                            expires: r.try_get("expires").map_err(e())?,
                            uploaded_at: r.try_get("uploaded_at").map_err(e())?,
                            uploaded_by: r.try_get("uploaded_by").map_err(e())?,
                        })
                    })
                    .collect()
            }

            async fn insert_attack(&self, a: &AttackRow) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO director_attacks (id, at, device_id, code, source, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&a.id)
                .bind(a.at)
                .bind(&a.device_id)
                .bind(&a.code)
                .bind(&a.source)
                .bind(&a.detail)
                .execute(&self.pool)
                .await
                .map_err(db("record attack"))?;
                Ok(())
            }

            async fn list_attacks(
                &self,
                device: Option<&str>,
                limit: i64,
            ) -> StorageResult<Vec<AttackRow>> {
                let rows = sqlx::query(
                    "SELECT * FROM director_attacks WHERE ($1 IS NULL OR device_id = $1) \
                     ORDER BY at DESC, id LIMIT $2",
                )
                .bind(device)
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await
                .map_err(db("list attacks"))?;
                rows.iter().map(Self::attack).collect()
            }

            // ---- transparency log marks (log_hooks.rs) ----
            async fn mark_delivery_logged(&self, id: &str, marker: &str) -> StorageResult<()> {
                sqlx::query("UPDATE director_devices SET log_delivery = $2 WHERE id = $1")
                    .bind(id)
                    .bind(marker)
                    .execute(&self.pool)
                    .await
                    .map_err(db("record logged delivery"))?;
                Ok(())
            }
        }
    };
}

/// `serde_json::to_string` for the JSON columns (the types serialise
/// infallibly: strings, sets and plain structs).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

director_sql!(
    SqliteDirectorDb,
    sqlx::Sqlite,
    migrate_lock = "SELECT 1",
    begin_write = "BEGIN IMMEDIATE"
);

director_sql!(
    PgDirectorDb,
    sqlx::Postgres,
    migrate_lock = "SELECT pg_advisory_xact_lock(7263757375)",
    begin_write = "BEGIN"
);

/// Counts of a rollout's reports: stage → (successes, failures).
pub fn stage_counts(rows: &[(Option<u64>, String, i64)]) -> BTreeMap<u64, (u64, u64)> {
    let mut m: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (stage, outcome, n) in rows {
        let e = m.entry(stage.unwrap_or(0)).or_default();
        let n = to_u64(*n);
        if outcome == "installed" {
            e.0 = e.0.saturating_add(n);
        } else {
            e.1 = e.1.saturating_add(n);
        }
    }
    m
}

// ------------------------------------------- check-in writer connection

/// A synchronous connection for the check-in group commit (see
/// [`DirectorDb::checkin_connection`]).
pub trait CheckinConnection: Send {
    /// The same contract as [`DirectorDb::apply_checkins`]: one
    /// transaction, committed (durably) before it returns; per check-in
    /// the nonce insert-or-conflict, then the compare-and-set of the
    /// report counter on an active device, then the rest.
    ///
    /// `marks` (device id, delivery marker) are written in the same
    /// transaction: `director_devices.log_delivery`, the transparency-log
    /// hooks' note that a device's assignment delivery is in the log
    /// (log_hooks.rs). Batched here so a rollout's first deliveries do not
    /// each pay a transaction and an fsync of their own.
    fn apply(
        &mut self,
        jobs: &[CheckinWrite],
        marks: &[(String, String)],
    ) -> StorageResult<Vec<WriteOutcome>>;
}

impl PgDirectorDb {
    /// PostgreSQL goes through its pool (several replicas may write).
    fn own_checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
        Ok(None)
    }
}

impl SqliteDirectorDb {
    /// A second connection to the same database file, owned by the
    /// check-in writer thread (`None` for an in-memory database, which a
    /// second connection would not see).
    fn own_checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
        let opts = self.pool.connect_options();
        let path = opts.get_filename();
        let name = path.to_string_lossy();
        if name.is_empty() || name.contains(":memory:") || name.starts_with("file:") {
            return Ok(None);
        }
        Ok(Some(Box::new(SqliteCheckinConnection::open(path)?)))
    }
}

fn lite(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError {
    // StorageError carries sqlx errors; keep rusqlite's as the source.
    move |e| StorageError::Db {
        operation,
        source: sqlx::Error::Io(std::io::Error::other(e)),
    }
}

/// The embedded store's check-in writes through libsqlite3 directly
/// (rusqlite on the same `libsqlite3-sys` that sqlx links, so one SQLite
/// in the process), on a connection of their own with cached prepared
/// statements. The statements and their order are those of
/// [`DirectorDb::apply_checkins`]; what changes is the cost per
/// statement: sqlx hands every statement to its connection's worker
/// thread and awaits the answer, two thread wake-ups per statement, two
/// statements per check-in.
///
/// Durability is the same: the database file is in WAL mode (set by the
/// pool that created it, checked here), this connection runs with
/// `synchronous = FULL`, and [`CheckinConnection::apply`] returns only
/// after `COMMIT`, i.e. after the WAL fsync.
pub struct SqliteCheckinConnection {
    conn: rusqlite::Connection,
}

impl std::fmt::Debug for SqliteCheckinConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckinConnection")
            .field("path", &self.conn.path())
            .finish()
    }
}

const LITE_NONCE: &str = "INSERT INTO director_nonces (device_id, nonce, expires_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (device_id, nonce) DO NOTHING";
const LITE_MANIFEST: &str = "UPDATE director_devices SET last_counter = ?3, last_checkin = ?4, \
     last_attestation = ?4, installed = ?5, running_target = ?6, \
     running_counter = ?7, max_counter = ?8, assigned_target = ?9, \
     assigned_counter = ?10, assignment_note = ?11, d_targets = ?12, \
     d_snapshot = ?13, d_timestamp = ?14 \
     WHERE id = ?1 AND last_counter = ?2 AND status = 'active'";
const LITE_INSTALL: &str = "INSERT INTO director_installs (device_id, target, release_counter, \
     first_seen, report_counter) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (device_id, target) DO NOTHING";
const LITE_REPORT: &str = "INSERT INTO director_reports (device_id, report_id, target, \
     release_counter, outcome, reason, device_time, received_at, rollout_id, stage) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (device_id, report_id) DO NOTHING";
const LITE_MARK: &str = "UPDATE director_devices SET log_delivery = ?2 WHERE id = ?1";
const LITE_ATTACK: &str = "INSERT INTO director_attacks (id, at, device_id, code, source, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING";

impl SqliteCheckinConnection {
    /// Opens `path` (which must exist, in WAL mode, with the director
    /// schema migrated).
    pub fn open(path: &std::path::Path) -> StorageResult<Self> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(lite("open the check-in writer connection"))?;
        // The pool's busy timeout: other writers (enrolment, fleet API,
        // audit) share the file.
        conn.busy_timeout(std::time::Duration::from_secs(15))
            .map_err(lite("check-in writer: busy_timeout"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(lite("check-in writer: synchronous = FULL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(lite("check-in writer: foreign_keys"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(lite("check-in writer: journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Corrupt {
                what: "database journal mode",
                reason: format!(
                    "{}: journal_mode is {mode:?}, the check-in writer needs WAL",
                    path.display()
                ),
            });
        }
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(lite("check-in writer: synchronous"))?;
        if sync < 2 {
            return Err(StorageError::Corrupt {
                what: "database synchronous mode",
                reason: format!("synchronous is {sync}, the check-in writer needs FULL (2)"),
            });
        }
        Ok(SqliteCheckinConnection { conn })
    }
}

impl CheckinConnection for SqliteCheckinConnection {
    fn apply(
        &mut self,
        jobs: &[CheckinWrite],
        marks: &[(String, String)],
    ) -> StorageResult<Vec<WriteOutcome>> {
        use rusqlite::params;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(lite("begin check-in transaction"))?;
        let mut out = Vec::with_capacity(jobs.len());
        {
            let mut nonce = tx
                .prepare_cached(LITE_NONCE)
                .map_err(lite("record nonce"))?;
            let mut manifest = tx
                .prepare_cached(LITE_MANIFEST)
                .map_err(lite("record manifest"))?;
            for j in jobs {
                let n = nonce
                    .execute(params![j.device_id, j.nonce, j.nonce_expires])
                    .map_err(lite("record nonce"))?;
                if n != 1 {
                    out.push(WriteOutcome::ReplayedNonce);
                    continue;
                }
                let (at, ac) = match &j.assigned {
                    Some((t, c)) => (Some(t.as_str()), Some(to_i64(*c))),
                    None => (None, None),
                };
                let (rt, rc, mc) = match &j.running {
                    Some(r) => (
                        Some(r.name.as_str()),
                        Some(to_i64(r.release_counter)),
                        Some(to_i64(r.max_release_counter)),
                    ),
                    None => (None, None, None),
                };
                let old = j.old_counter.map_or(-1, to_i64);
                // A signed check-in proves possession of the key: it
                // re-attests the device (last_attestation = now).
                let n = manifest
                    .execute(params![
                        j.device_id,
                        old,
                        to_i64(j.new_counter),
                        j.at,
                        j.installed_json,
                        rt,
                        rc,
                        mc,
                        at,
                        ac,
                        j.assignment_note,
                        to_i64(j.director.targets_version),
                        to_i64(j.director.snapshot_version),
                        to_i64(j.director.timestamp_version),
                    ])
                    .map_err(lite("record manifest"))?;
                if n != 1 {
                    out.push(WriteOutcome::Conflict);
                    continue;
                }
                if let Some(r) = j.running.as_ref().filter(|_| j.running_changed) {
                    tx.prepare_cached(LITE_INSTALL)
                        .and_then(|mut s| {
                            s.execute(params![
                                j.device_id,
                                r.name,
                                to_i64(r.release_counter),
                                j.at,
                                to_i64(j.new_counter),
                            ])
                        })
                        .map_err(lite("record install history"))?;
                }
                let mut rollouts = Vec::new();
                for r in &j.reports {
                    let n = tx
                        .prepare_cached(LITE_REPORT)
                        .and_then(|mut s| {
                            s.execute(params![
                                r.device_id,
                                r.report_id,
                                r.target,
                                to_i64(r.release_counter),
                                r.outcome,
                                r.reason,
                                r.device_time,
                                r.received_at,
                                r.rollout_id,
                                r.stage.map(to_i64),
                            ])
                        })
                        .map_err(lite("record install report"))?;
                    if n == 1 {
                        if let Some(id) = &r.rollout_id {
                            if !rollouts.contains(id) {
                                rollouts.push(id.clone());
                            }
                        }
                    }
                }
                for a in &j.attacks {
                    tx.prepare_cached(LITE_ATTACK)
                        .and_then(|mut s| {
                            s.execute(params![a.id, a.at, a.device_id, a.code, a.source, a.detail])
                        })
                        .map_err(lite("record reported attack"))?;
                }
                out.push(WriteOutcome::Committed {
                    rollouts_with_new_reports: rollouts,
                });
            }
            if !marks.is_empty() {
                let mut mark = tx
                    .prepare_cached(LITE_MARK)
                    .map_err(lite("record log delivery mark"))?;
                for (id, marker) in marks {
                    mark.execute(params![id, marker])
                        .map_err(lite("record log delivery mark"))?;
                }
            }
        }
        tx.commit().map_err(lite("commit check-ins"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod checkin_connection_tests {
    //! The synchronous check-in connection keeps `apply_checkins`' rules:
    //! nonce insert-or-conflict first, counter compare-and-set on an
    //! active device, reports idempotent, all committed before it returns.
    use super::*;
    use custody_keys::MemorySigner;
    use custody_keys::Signer;

    fn record() -> DeviceRecord {
        let k = MemorySigner::generate_ed25519().unwrap();
        let now = chrono::Utc::now();
        DeviceRecord {
            id: k.keyid().to_owned(),
            key: k.key().clone(),
            hardware_id: "board-a".into(),
            group: "g".into(),
            attributes: DeviceAttributes {
                environment: "production".into(),
                tags: Default::default(),
                group: Some("g".into()),
            },
            enrolled_at: now,
            enrolled_with: EnrolledWith::Token {
                token_hash_prefix: "x".into(),
            },
            status: DeviceStatus::Active,
            last_attestation: now,
        }
    }

    fn write(id: &str, nonce: &str, old: Option<u64>, new: u64, report: bool) -> CheckinWrite {
        let at = chrono::Utc::now().timestamp();
        CheckinWrite {
            device_id: id.into(),
            nonce: nonce.into(),
            nonce_expires: at + 600,
            old_counter: old,
            new_counter: new,
            at,
            installed_json: "{}".into(),
            running: Some(Installed {
                name: "fw/1".into(),
                release_counter: 1,
                max_release_counter: 1,
            }),
            running_changed: true,
            director: DeviceDirectorState {
                targets_version: new,
                snapshot_version: new,
                timestamp_version: new,
            },
            assigned: Some(("fw/2".into(), 2)),
            assignment_note: "install".into(),
            reports: report
                .then(|| ReportRow {
                    device_id: id.into(),
                    report_id: format!("r-{new}"),
                    target: "fw/1".into(),
                    release_counter: 1,
                    outcome: "installed".into(),
                    reason: None,
                    device_time: 0,
                    received_at: at,
                    rollout_id: Some("r1".into()),
                    stage: Some(0),
                })
                .into_iter()
                .collect(),
            attacks: vec![],
        }
    }

    #[tokio::test]
    async fn same_rules_as_apply_checkins() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::SqliteStorage::open(&dir.path().join("c.db"))
            .await
            .unwrap();
        let db = SqliteDirectorDb::new(storage.pool().clone());
        db.migrate().await.unwrap();
        let (a, b) = (record(), record());
        db.insert_devices(&[a.clone(), b.clone()]).await.unwrap();
        let mut conn = db
            .checkin_connection()
            .unwrap()
            .expect("a file database has a check-in connection");

        let out = conn
            .apply(
                &[
                    write(&a.id, "n1", None, 1, true),
                    // same nonce again in the same batch: replay
                    write(&a.id, "n1", Some(1), 2, false),
                    // b has no accepted manifest yet: the compare-and-set fails
                    write(&b.id, "m1", Some(5), 6, false),
                    write(&a.id, "n2", Some(1), 2, true),
                    // a counter that lost the race with the one above
                    write(&a.id, "n3", Some(1), 3, false),
                ],
                // a delivery mark rides in the same transaction
                &[(a.id.clone(), "marker-1".to_owned())],
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                WriteOutcome::Committed {
                    rollouts_with_new_reports: vec!["r1".into()]
                },
                WriteOutcome::ReplayedNonce,
                WriteOutcome::Conflict,
                WriteOutcome::Committed {
                    rollouts_with_new_reports: vec!["r1".into()]
                },
                WriteOutcome::Conflict,
            ]
        );
        // Committed and visible to the pool's connections.
        let row = db.get_device(&a.id).await.unwrap().unwrap();
        assert_eq!(row.log_delivery.as_deref(), Some("marker-1"));
        assert_eq!(row.last_counter, Some(2));
        assert_eq!(row.director.timestamp_version, 2);
        assert_eq!(row.assigned, Some(("fw/2".into(), 2)));
        assert_eq!(
            row.record.last_attestation.timestamp(),
            row.last_checkin.unwrap()
        );
        assert_eq!(db.list_reports(&a.id, 10).await.unwrap().len(), 2);
        assert_eq!(db.who_installed("fw/1").await.unwrap().len(), 1);
        // The nonce is in the table the other routes check.
        assert!(!db.insert_nonce(&a.id, "n2", i64::MAX).await.unwrap());

        // A suspended device's manifest cannot be committed.
        assert!(db
            .set_device_status(
                &b.id,
                &DeviceStatus::Suspended {
                    reason: "test".into(),
                    since: chrono::Utc::now(),
                },
                None,
            )
            .await
            .unwrap());
        let out = conn
            .apply(&[write(&b.id, "m2", None, 1, false)], &[])
            .unwrap();
        assert_eq!(out, vec![WriteOutcome::Conflict]);
        let row = db.get_device(&b.id).await.unwrap().unwrap();
        assert_eq!(row.last_counter, None);
        // A re-sent report is not counted twice.
        let out = conn
            .apply(
                &[{
                    let mut w = write(&a.id, "n4", Some(2), 3, true);
                    w.reports[0].report_id = "r-2".into();
                    w
                }],
                &[],
            )
            .unwrap();
        assert_eq!(
            out,
            vec![WriteOutcome::Committed {
                rollouts_with_new_reports: vec![]
            }]
        );
    }
}
