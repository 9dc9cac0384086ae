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
//!
//! Layout:
//! - this file: the row types and the [`DirectorDb`] trait;
//! - `rows`: decoding (`sqlx::FromRow`) of the rows that are not
//!   stored as they are read (devices, tokens, counters);
//! - `writes`: every statement that writes, built once for both
//!   backends and the synchronous check-in connection, and the check-in
//!   rule they all run (`writes::apply_jobs`);
//! - `sql`: the schema and the two pool-backed stores;
//! - `sqlite_checkin`: [`SqliteCheckinConnection`].
//!
//! [`CheckinWriter`]: super::CheckinWriter

mod rows;
mod sql;
mod sqlite_checkin;
mod writes;

use std::collections::BTreeMap;

use async_trait::async_trait;
use custody_director::director::DeviceDirectorState;
use custody_director::policy::Installed;
use custody_director::registry::{DeviceRecord, DeviceStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use sql::{PgDirectorDb, SqliteDirectorDb};
pub use sqlite_checkin::SqliteCheckinConnection;

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
    /// this hardware id exactly
    pub hardware_id: Option<String>,
    /// this group exactly
    pub group: Option<String>,
    /// this environment exactly
    pub environment: Option<String>,
    /// carrying this tag (a `LIKE` over the JSON tags, then checked exactly)
    pub tag: Option<String>,
    /// `active`, `suspended` or `decommissioned`
    pub status: Option<String>,
    /// running this target (as of the last accepted manifest)
    pub running_target: Option<String>,
    /// paging: ids greater than this (the list is in id order)
    pub after: Option<String>,
    /// at most this many (clamped to 1..=100,000)
    pub limit: i64,
}

/// A stored enrolment token (hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub rec: custody_director::enrol::TokenRecord,
    pub created_by: String,
}

/// One install report as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ReportRow {
    pub device_id: String,
    pub report_id: String,
    pub target: String,
    #[sqlx(try_from = "rows::Counter")]
    pub release_counter: u64,
    pub outcome: String,
    pub reason: Option<String>,
    pub device_time: i64,
    pub received_at: i64,
    /// the rollout whose release this report is about, at receipt
    pub rollout_id: Option<String>,
    /// its stage at receipt
    #[sqlx(try_from = "rows::OptCounter")]
    pub stage: Option<u64>,
    /// index of the report's `install_report` entry in the transparency
    /// log (`GET /log/v1/entry?index=` proves it); absent for reports
    /// received before the server recorded it
    #[sqlx(try_from = "rows::OptCounter")]
    pub log_index: Option<u64>,
}

/// An attack record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct InstallRow {
    pub device_id: String,
    pub target: String,
    #[sqlx(try_from = "rows::Counter")]
    pub release_counter: u64,
    /// server time of the first manifest that showed it running
    pub first_seen: i64,
    /// that manifest's report counter
    #[sqlx(try_from = "rows::Counter")]
    pub report_counter: u64,
}

/// A stored rollout.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RolloutRow {
    pub id: String,
    pub spec: String,
    #[sqlx(try_from = "rows::Counter")]
    pub stage: u64,
    pub state: String,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
}

/// A stored pin / yank / rollback authorisation (JSON bodies).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PinRow {
    pub device_id: String,
    pub release_json: String,
    pub reason: String,
    pub created_at: i64,
    pub created_by: String,
}

/// A yank with a replacement, as the fleet policy reads it from the one
/// `yanks` table (`storage`; recorded by `crate::yanks`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct YankRow {
    pub target: String,
    pub replacement_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RollbackRow {
    pub id: String,
    pub body: String,
    pub target: String,
    #[sqlx(try_from = "rows::Counter")]
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

    /// The yanks of `repo` (the image repository) that carry a
    /// replacement, oldest first. Recorded through `Storage::insert_yank`.
    async fn list_remediations(&self, repo: &str) -> StorageResult<Vec<YankRow>>;
    /// Moves the rows of the table the fleet API's yanks had before there
    /// was one yank (`director_yanks`) into `yanks` under `repo`, and drops
    /// it; 0 when there is none. Storage must be migrated first.
    async fn adopt_fleet_yanks(&self, repo: &str) -> StorageResult<u64>;

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
