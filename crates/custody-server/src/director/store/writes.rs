//! Every statement that writes, built in one place for both pool-backed
//! stores and for the embedded store's synchronous check-in connection:
//! its SQL (`$n` parameters, which PostgreSQL, sqlx's SQLite driver and
//! rusqlite, by parameter name, all bind by number), the operation its
//! errors name, and its arguments. And the check-in rule itself,
//! [`apply_jobs`], which both check-in paths run.

use std::borrow::Cow;

use custody_director::director::DeviceDirectorState;
use custody_director::registry::{DeviceRecord, DeviceStatus};
use serde::Serialize;

use super::rows::status_text;
use super::{
    to_i64, AttackRow, CheckinWrite, PinRow, ReportRow, RollbackRow, RolloutRow, TokenRow,
    WriteOutcome,
};
use crate::storage::StorageResult;

/// One bound parameter: the director's columns are BIGINT or TEXT.
#[derive(Debug, Clone)]
pub(super) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

/// Counters travel as u64 and are stored with [`to_i64`].
impl From<u64> for Arg<'_> {
    fn from(v: u64) -> Self {
        Arg::Int(Some(to_i64(v)))
    }
}

impl From<Option<u64>> for Arg<'_> {
    fn from(v: Option<u64>) -> Self {
        Arg::Int(v.map(to_i64))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref().map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

/// The arguments of a [`Stmt`], in `$1, $2, …` order.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        vec![$(Arg::from($v)),*]
    };
}

/// A statement, what its errors name, and its arguments (`args[n - 1]`
/// binds `$n`).
#[derive(Debug, Clone)]
pub(super) struct Stmt<'a> {
    pub sql: &'static str,
    pub op: &'static str,
    pub args: Vec<Arg<'a>>,
}

impl<'a> Stmt<'a> {
    pub(super) fn new(sql: &'static str, op: &'static str, args: Vec<Arg<'a>>) -> Self {
        Stmt { sql, op, args }
    }

    /// The same statement, its errors naming `op`.
    pub fn named(self, op: &'static str) -> Self {
        Stmt { op, ..self }
    }
}

/// `serde_json::to_string` for the JSON columns (the types serialise
/// infallibly: strings, sets and plain structs).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

// ---- devices

pub(super) fn insert_device(rec: &DeviceRecord) -> Stmt<'_> {
    let (status, reason, since) = status_text(&rec.status);
    Stmt::new(
        "INSERT INTO director_devices (id, key_json, hardware_id, grp, environment, tags, \
         attributes, enrolled_at, enrolled_with, status, status_reason, status_since, \
         last_attestation, last_counter, d_targets, d_snapshot, d_timestamp) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, -1, 0, 0, 0)",
        "insert device",
        args![
            &rec.id,
            json(&rec.key),
            &rec.hardware_id,
            &rec.group,
            &rec.attributes.environment,
            json(&rec.attributes.tags),
            json(&rec.attributes),
            rec.enrolled_at.timestamp(),
            json(&rec.enrolled_with),
            status,
            reason,
            since,
            rec.last_attestation.timestamp()
        ],
    )
}

pub(super) fn set_device_status<'a>(
    id: &'a str,
    status: &DeviceStatus,
    attested_at: Option<i64>,
) -> Stmt<'a> {
    let (s, reason, since) = status_text(status);
    Stmt::new(
        "UPDATE director_devices SET status = $2, status_reason = $3, status_since = $4, \
         last_attestation = COALESCE($5, last_attestation) \
         WHERE id = $1 AND status <> 'decommissioned'",
        "set device status",
        args![id, s, reason, since, attested_at],
    )
}

pub(super) fn set_assignment<'a>(
    id: &'a str,
    assigned: Option<(String, u64)>,
    note: &'a str,
) -> Stmt<'a> {
    let (t, c) = assigned.unzip();
    Stmt::new(
        "UPDATE director_devices SET assigned_target = $2, assigned_counter = $3, \
         assignment_note = $4 WHERE id = $1",
        "record assignment",
        args![id, t, c, note],
    )
}

pub(super) fn set_director_state<'a>(
    id: &'a str,
    old: &DeviceDirectorState,
    new: &DeviceDirectorState,
) -> Stmt<'a> {
    Stmt::new(
        "UPDATE director_devices SET d_targets = $5, d_snapshot = $6, d_timestamp = $7 \
         WHERE id = $1 AND d_targets = $2 AND d_snapshot = $3 AND d_timestamp = $4 \
         AND status = 'active'",
        "record director metadata versions",
        args![
            id,
            old.targets_version,
            old.snapshot_version,
            old.timestamp_version,
            new.targets_version,
            new.snapshot_version,
            new.timestamp_version
        ],
    )
}

/// Transparency log marks (log_hooks.rs; column `log_delivery`).
pub(super) fn mark_delivery<'a>(id: &'a str, marker: &'a str) -> Stmt<'a> {
    Stmt::new(
        "UPDATE director_devices SET log_delivery = $2 WHERE id = $1",
        "record logged delivery",
        args![id, marker],
    )
}

// ---- enrolment tokens, nonces

pub(super) fn insert_token(t: &TokenRow) -> Stmt<'_> {
    let r = &t.rec;
    Stmt::new(
        "INSERT INTO director_tokens (hash, grp, environment, created_at, expires_at, used_at, \
         created_by) VALUES ($1, $2, $3, $4, $5, NULL, $6)",
        "store enrolment token",
        args![
            &r.hash,
            &r.group,
            &r.environment,
            r.created_at.timestamp(),
            r.expires_at.timestamp(),
            &t.created_by
        ],
    )
}

/// Insert-or-conflict: one row changed if the nonce is new.
pub(super) fn insert_nonce<'a>(device: &'a str, nonce: &'a str, expires_at: i64) -> Stmt<'a> {
    Stmt::new(
        "INSERT INTO director_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (device_id, nonce) DO NOTHING",
        "record nonce",
        args![device, nonce, expires_at],
    )
}

pub(super) fn purge_nonces<'a>(now: i64) -> Stmt<'a> {
    Stmt::new(
        "DELETE FROM director_nonces WHERE expires_at < $1",
        "purge nonces",
        args![now],
    )
}

// ---- check-ins

/// The compare-and-set of the report counter on an active device. A
/// signed check-in proves possession of the key: it re-attests the device
/// (`last_attestation` = now).
fn record_manifest(j: &CheckinWrite) -> Stmt<'_> {
    let (at, ac) = j.assigned.as_ref().map(|(t, c)| (t.as_str(), *c)).unzip();
    let running = j.running.as_ref();
    Stmt::new(
        "UPDATE director_devices SET last_counter = $3, last_checkin = $4, \
         last_attestation = $4, installed = $5, running_target = $6, \
         running_counter = $7, max_counter = $8, assigned_target = $9, \
         assigned_counter = $10, assignment_note = $11, d_targets = $12, \
         d_snapshot = $13, d_timestamp = $14 \
         WHERE id = $1 AND last_counter = $2 AND status = 'active'",
        "record manifest",
        args![
            &j.device_id,
            j.old_counter.map_or(-1, to_i64),
            j.new_counter,
            j.at,
            &j.installed_json,
            running.map(|r| r.name.as_str()),
            running.map(|r| r.release_counter),
            running.map(|r| r.max_release_counter),
            at,
            ac,
            &j.assignment_note,
            j.director.targets_version,
            j.director.snapshot_version,
            j.director.timestamp_version
        ],
    )
}

/// The install history, if the running target changed.
fn record_install(j: &CheckinWrite) -> Option<Stmt<'_>> {
    let r = j.running.as_ref().filter(|_| j.running_changed)?;
    Some(Stmt::new(
        "INSERT INTO director_installs (device_id, target, release_counter, first_seen, \
         report_counter) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, target) DO NOTHING",
        "record install history",
        args![
            &j.device_id,
            &r.name,
            r.release_counter,
            j.at,
            j.new_counter
        ],
    ))
}

/// Idempotent: a re-sent report changes no row.
fn record_report(r: &ReportRow) -> Stmt<'_> {
    Stmt::new(
        "INSERT INTO director_reports (device_id, report_id, target, release_counter, \
         outcome, reason, device_time, received_at, rollout_id, stage, log_index) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (device_id, report_id) DO NOTHING",
        "record install report",
        args![
            &r.device_id,
            &r.report_id,
            &r.target,
            r.release_counter,
            &r.outcome,
            &r.reason,
            r.device_time,
            r.received_at,
            &r.rollout_id,
            r.stage,
            r.log_index
        ],
    )
}

pub(super) fn insert_attack(a: &AttackRow) -> Stmt<'_> {
    Stmt::new(
        "INSERT INTO director_attacks (id, at, device_id, code, source, detail) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        "record attack",
        args![&a.id, a.at, &a.device_id, &a.code, &a.source, &a.detail],
    )
}

/// A transaction that runs statements: the sqlx transactions of both
/// pool-backed stores and the synchronous check-in connection's.
pub(super) trait Exec {
    /// Runs `s`; the number of rows it changed.
    fn exec(&mut self, s: Stmt<'_>) -> impl std::future::Future<Output = StorageResult<u64>>;
}

/// The check-in rule, for a group of check-ins in one transaction `tx`;
/// both [`super::DirectorDb::apply_checkins`] and the synchronous check-in
/// connection run it. Per check-in: the nonce insert-or-conflict
/// (replayed: nothing else is written), then the compare-and-set of the
/// report counter on an active device (lost: nothing else is written),
/// then install history, reports and reported attacks.
pub(super) async fn apply_jobs(
    jobs: &[CheckinWrite],
    tx: &mut impl Exec,
) -> StorageResult<Vec<WriteOutcome>> {
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        if tx
            .exec(insert_nonce(&j.device_id, &j.nonce, j.nonce_expires))
            .await?
            != 1
        {
            out.push(WriteOutcome::ReplayedNonce);
            continue;
        }
        if tx.exec(record_manifest(j)).await? != 1 {
            out.push(WriteOutcome::Conflict);
            continue;
        }
        if let Some(s) = record_install(j) {
            tx.exec(s).await?;
        }
        let mut rollouts = Vec::new();
        for r in &j.reports {
            if tx.exec(record_report(r)).await? == 1 {
                if let Some(id) = &r.rollout_id {
                    if !rollouts.contains(id) {
                        rollouts.push(id.clone());
                    }
                }
            }
        }
        for a in &j.attacks {
            tx.exec(insert_attack(a).named("record reported attack"))
                .await?;
        }
        out.push(WriteOutcome::Committed {
            rollouts_with_new_reports: rollouts,
        });
    }
    Ok(out)
}

// ---- fleet: rollouts, pins, yanks, rollback authorisations

pub(super) fn insert_rollout(r: &RolloutRow) -> Stmt<'_> {
    Stmt::new(
        "INSERT INTO director_rollouts (id, spec, stage, state, created_at, created_by, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        "insert rollout",
        args![
            &r.id,
            &r.spec,
            r.stage,
            &r.state,
            r.created_at,
            &r.created_by,
            r.updated_at
        ],
    )
}

/// Compare-and-set on (stage, state).
pub(super) fn update_rollout<'a>(
    id: &'a str,
    old: (u64, &'a str),
    new: (u64, &'a str),
    at: i64,
) -> Stmt<'a> {
    Stmt::new(
        "UPDATE director_rollouts SET stage = $4, state = $5, updated_at = $6 \
         WHERE id = $1 AND stage = $2 AND state = $3",
        "update rollout",
        args![id, old.0, old.1, new.0, new.1, at],
    )
}

pub(super) fn upsert_pin(p: &PinRow) -> Stmt<'_> {
    Stmt::new(
        "INSERT INTO director_pins (device_id, release_json, reason, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id) DO UPDATE SET \
         release_json = excluded.release_json, reason = excluded.reason, \
         created_at = excluded.created_at, created_by = excluded.created_by",
        "store pin",
        args![
            &p.device_id,
            &p.release_json,
            &p.reason,
            p.created_at,
            &p.created_by
        ],
    )
}

pub(super) fn delete_pin(device: &str) -> Stmt<'_> {
    Stmt::new(
        "DELETE FROM director_pins WHERE device_id = $1",
        "delete pin",
        args![device],
    )
}

pub(super) fn insert_rollback(r: &RollbackRow) -> Stmt<'_> {
    Stmt::new(
        "INSERT INTO director_rollback_auths (id, body, target, release_counter, expires, \
         uploaded_at, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        "insert rollback authorisation",
        args![
            &r.id,
            &r.body,
            &r.target,
            r.release_counter,
            r.expires,
            r.uploaded_at,
            &r.uploaded_by
        ],
    )
}
