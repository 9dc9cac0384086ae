//! The two pool-backed stores, [`SqliteDirectorDb`] and [`PgDirectorDb`]:
//! one implementation of [`DirectorDb`] instantiated per driver by a
//! macro (as in `storage/sql.rs`), writes from [`super::writes`], reads
//! decoded by `sqlx::FromRow`. The embedded store may carry the
//! device-row cache (director/cache.rs), consulted here on every read and
//! write of a device row; PostgreSQL never does.

use async_trait::async_trait;
use custody_director::director::DeviceDirectorState;
use custody_director::enrol::{TokenRecord, TokenRefusal};
use custody_director::registry::{DeviceRecord, DeviceStatus};

use super::rows::{DeviceCols, OptCounter, TokenCols};
use super::writes::{self, apply_jobs, Arg, Exec, Stmt};
use super::{
    db, ts, AttackRow, CheckinConnection, CheckinWrite, DeviceFilter, DeviceRow, DirectorDb,
    InstallRow, PinRow, ReportRow, RollbackRow, RolloutRow, TokenRow, WriteOutcome, YankRow,
};
use crate::director::cache::{self, RowCache};
use crate::storage::{StorageError, StorageResult};

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
    log_index BIGINT,
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

/// Columns added after their table first shipped, added by `migrate` to
/// older databases (each backend's `has_column` query asks its catalogue
/// for `$1`.`$2`): the transparency-log delivery mark (log_hooks.rs) and
/// the log index of each install report's entry.
const ADDED_COLUMNS: [(&str, &str, &str); 2] = [
    ("director_devices", "log_delivery", "TEXT"),
    ("director_reports", "log_index", "BIGINT"),
];

/// SQLite (the server's database file).
#[derive(Debug, Clone)]
pub struct SqliteDirectorDb {
    pool: sqlx::SqlitePool,
    /// Off unless turned on by `CachedDirectorDb::wrap` (director/cache.rs):
    /// only for a database this process alone writes.
    pub(in crate::director) cache: RowCache,
}

/// PostgreSQL. Several replicas may write it: never cached.
#[derive(Debug, Clone)]
pub struct PgDirectorDb {
    pool: sqlx::PgPool,
    cache: RowCache,
}

impl SqliteDirectorDb {
    pub fn new(pool: sqlx::SqlitePool) -> Self {
        SqliteDirectorDb {
            pool,
            cache: RowCache::default(),
        }
    }

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
        Ok(Some(Box::new(super::SqliteCheckinConnection::open(path)?)))
    }
}

impl PgDirectorDb {
    pub fn new(pool: sqlx::PgPool) -> Self {
        PgDirectorDb {
            pool,
            cache: RowCache::default(),
        }
    }

    /// PostgreSQL goes through its pool (several replicas may write).
    fn own_checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
        Ok(None)
    }
}

macro_rules! director_sql {
    ($ty:ident, $db:ty, migrate_lock = $lock:expr, begin_write = $begin:expr, has_column = $has_column:expr,
     has_fleet_yanks = $has_fleet_yanks:expr) => {
        impl $ty {
            /// `s` as a sqlx query.
            fn query<'q>(
                s: &'q Stmt<'q>,
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
                s.args.iter().fold(sqlx::query(s.sql), |q, a| match a {
                    Arg::Int(v) => q.bind(*v),
                    Arg::Text(v) => q.bind(v.as_deref()),
                })
            }

            /// Runs `s` on `ex`; the number of rows it changed.
            async fn run<'c, E>(ex: E, s: &Stmt<'_>) -> Result<u64, sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                Ok(Self::query(s).execute(ex).await?.rows_affected())
            }

            /// Every row of `sql` (which has no parameters).
            async fn all<T>(&self, sql: &'static str, op: &'static str) -> StorageResult<Vec<T>>
            where
                T: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                sqlx::query_as(sql).fetch_all(&self.pool).await.map_err(db(op))
            }

            /// The rows of `sql` for `$1` = `key`, at most `$2` = `limit`
            /// (clamped to 1..=1000).
            async fn latest<T>(
                &self,
                sql: &'static str,
                key: Option<&str>,
                limit: i64,
                op: &'static str,
            ) -> StorageResult<Vec<T>>
            where
                T: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                sqlx::query_as(sql)
                    .bind(key)
                    .bind(limit.clamp(1, 1000))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db(op))
            }

            async fn exec(&self, s: Stmt<'_>) -> StorageResult<u64> {
                Self::run(&self.pool, &s).await.map_err(db(s.op))
            }

            /// An insert of a new `what` named `key`: a duplicate is a conflict.
            async fn insert_new(
                &self,
                s: Stmt<'_>,
                what: &'static str,
                key: &str,
            ) -> StorageResult<()> {
                match Self::run(&self.pool, &s).await {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        Err(StorageError::Conflict {
                            what,
                            key: key.to_owned(),
                        })
                    }
                    Err(e) => Err(db(s.op)(e)),
                }
            }

            async fn migrate_schema(&self) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(db("begin director migration"))?;
                sqlx::query($lock)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("lock for director migration"))?;
                for stmt in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
                    sqlx::query(stmt)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("create director schema"))?;
                }
                // Columns added after their table first shipped: tables
                // created before get them here (no IF NOT EXISTS for
                // columns on SQLite: look first). Asked of the catalogue,
                // not by describing `SELECT *`: on PostgreSQL a prepared
                // `SELECT *` whose columns this very migration changes
                // fails the next migration on the same connection
                // ("cached plan must not change result type").
                for (table, column, ty) in ADDED_COLUMNS {
                    let fail = |step: &str| {
                        let what = format!("{step} column {table}.{column}");
                        move |source| StorageError::Migrate { what, source }
                    };
                    let has = sqlx::query_scalar::<_, i64>($has_column)
                        .persistent(false)
                        .bind(table)
                        .bind(column)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail("look for"))?
                        > 0;
                    if !has {
                        let sql = format!("ALTER TABLE {table} ADD COLUMN {column} {ty}");
                        sqlx::query(&sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(fail("add"))?;
                    }
                }
                tx.commit().await.map_err(db("commit director migration"))
            }

            /// [`DirectorDb::apply_checkins`] without the cache upkeep.
            async fn write_checkins(&self, jobs: &[CheckinWrite]) -> StorageResult<Vec<WriteOutcome>> {
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(db("begin check-in transaction"))?;
                let out = apply_jobs(jobs, &mut tx).await?;
                tx.commit().await.map_err(db("commit check-ins"))?;
                Ok(out)
            }
        }

        impl Exec for sqlx::Transaction<'_, $db> {
            async fn exec(&mut self, s: Stmt<'_>) -> StorageResult<u64> {
                $ty::run(&mut **self, &s).await.map_err(db(s.op))
            }
        }

        #[async_trait]
        impl DirectorDb for $ty {
            /// Migrates, then primes the device-row cache if there is one
            /// (at server start: the first check-in of every device then
            /// needs no read either).
            async fn migrate(&self) -> StorageResult<()> {
                let r = self.migrate_schema().await;
                self.cache.forget_all();
                r?;
                cache::prime(self, &self.cache).await
            }

            async fn insert_device(&self, rec: &DeviceRecord) -> StorageResult<()> {
                let r = self.insert_new(writes::insert_device(rec), "device", &rec.id).await;
                self.cache.forget(&rec.id);
                r
            }

            async fn insert_devices(&self, recs: &[DeviceRecord]) -> StorageResult<()> {
                let r = async {
                    let mut tx = self
                        .pool
                        .begin_with($begin)
                        .await
                        .map_err(db("begin bulk device insert"))?;
                    for rec in recs {
                        Self::run(&mut *tx, &writes::insert_device(rec))
                            .await
                            .map_err(db("bulk insert device"))?;
                    }
                    tx.commit().await.map_err(db("commit bulk device insert"))
                }
                .await;
                self.cache.forget_all();
                r
            }

            async fn device_exists(&self, id: &str) -> StorageResult<bool> {
                if self.cache.contains(id) {
                    return Ok(true);
                }
                let row = sqlx::query("SELECT 1 AS one FROM director_devices WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("look up device"))?;
                Ok(row.is_some())
            }

            async fn get_device(&self, id: &str) -> StorageResult<Option<DeviceRow>> {
                let epoch = match self.cache.get(id) {
                    Ok(row) => return Ok(Some(row)),
                    Err(epoch) => epoch,
                };
                let row = sqlx::query_as::<_, DeviceCols>(
                    "SELECT * FROM director_devices WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("read device"))?
                .map(DeviceRow::try_from)
                .transpose()?;
                self.cache.fill(epoch, row.iter().cloned());
                Ok(row)
            }

            async fn list_devices(&self, f: &DeviceFilter) -> StorageResult<Vec<DeviceRow>> {
                let tag_like = f.tag.as_ref().map(|t| {
                    format!("%{}%", serde_json::to_string(t).unwrap_or_default())
                });
                let rows = sqlx::query_as::<_, DeviceCols>(
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
                for r in rows {
                    let d = DeviceRow::try_from(r)?;
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
                sqlx::query_scalar("SELECT COUNT(*) AS n FROM director_devices")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("count devices"))
            }

            async fn set_device_status(
                &self,
                id: &str,
                status: &DeviceStatus,
                attested_at: Option<i64>,
            ) -> StorageResult<bool> {
                let r = self.exec(writes::set_device_status(id, status, attested_at)).await;
                self.cache.forget(id);
                Ok(r? == 1)
            }

            async fn suspend_overdue(&self, cutoff: i64, now: i64) -> StorageResult<Vec<String>> {
                let r = sqlx::query_scalar(
                    "UPDATE director_devices SET status = 'suspended', status_since = $2, \
                     status_reason = 're-attestation overdue: no proof of key possession since ' || \
                     CAST(last_attestation AS TEXT) \
                     WHERE status = 'active' AND last_attestation < $1 RETURNING id",
                )
                .bind(cutoff)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db("suspend overdue devices"));
                self.cache.forget_swept(&r);
                r
            }

            async fn set_assignment(
                &self,
                id: &str,
                assigned: Option<(String, u64)>,
                note: &str,
            ) -> StorageResult<()> {
                let r = self.exec(writes::set_assignment(id, assigned, note)).await;
                self.cache.forget(id);
                r.map(|_| ())
            }

            async fn set_director_state(
                &self,
                id: &str,
                old: &DeviceDirectorState,
                new: &DeviceDirectorState,
            ) -> StorageResult<bool> {
                let r = self.exec(writes::set_director_state(id, old, new)).await;
                self.cache.forget(id);
                Ok(r? == 1)
            }

            async fn insert_token(&self, t: &TokenRow) -> StorageResult<()> {
                self.exec(writes::insert_token(t)).await.map(|_| ())
            }

            async fn consume_token(
                &self,
                hash: &str,
                now: i64,
            ) -> StorageResult<Result<TokenRecord, TokenRefusal>> {
                let used = sqlx::query_as::<_, TokenCols>(
                    "UPDATE director_tokens SET used_at = $2 \
                     WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING *",
                )
                .bind(hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("consume enrolment token"))?;
                if let Some(row) = used {
                    return Ok(Ok(row.into()));
                }
                let row = sqlx::query_as::<_, TokenCols>("SELECT * FROM director_tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read enrolment token"))?;
                let Some(row) = row else {
                    return Ok(Err(TokenRefusal::Unknown {
                        hash_prefix: hash.chars().take(16).collect(),
                    }));
                };
                let rec = TokenRecord::from(row);
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
                Ok(self.exec(writes::insert_nonce(device, nonce, expires_at)).await? == 1)
            }

            async fn purge_nonces(&self, now: i64) -> StorageResult<u64> {
                self.exec(writes::purge_nonces(now)).await
            }

            fn checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
                self.own_checkin_connection()
            }

            async fn apply_checkins(&self, jobs: &[CheckinWrite]) -> StorageResult<Vec<WriteOutcome>> {
                let r = self.write_checkins(jobs).await;
                self.checkins_written(jobs, &r);
                r
            }

            fn checkins_written(&self, jobs: &[CheckinWrite], r: &StorageResult<Vec<WriteOutcome>>) {
                self.cache.checkins_written(jobs, r);
            }

            fn delivery_marked(&self, id: &str, marker: &str) {
                self.cache.delivery_logged(id, marker, true);
            }

            async fn report_counts(
                &self,
                rollout: &str,
            ) -> StorageResult<Vec<(Option<u64>, String, i64)>> {
                let rows = sqlx::query_as::<_, (OptCounter, String, i64)>(
                    "SELECT stage, outcome, COUNT(*) AS n FROM director_reports \
                     WHERE rollout_id = $1 GROUP BY stage, outcome",
                )
                .bind(rollout)
                .fetch_all(&self.pool)
                .await
                .map_err(db("count rollout reports"))?;
                Ok(rows.into_iter().map(|(s, o, n)| (s.into(), o, n)).collect())
            }

            async fn list_reports(&self, device: &str, limit: i64) -> StorageResult<Vec<ReportRow>> {
                let sql = "SELECT * FROM director_reports WHERE device_id = $1 \
                           ORDER BY received_at DESC, report_id LIMIT $2";
                self.latest(sql, Some(device), limit, "list install reports")
                    .await
            }

            async fn who_installed(&self, target: &str) -> StorageResult<Vec<InstallRow>> {
                sqlx::query_as(
                    "SELECT * FROM director_installs WHERE target = $1 ORDER BY first_seen, device_id",
                )
                .bind(target)
                .fetch_all(&self.pool)
                .await
                .map_err(db("list installs"))
            }

            async fn insert_rollout(&self, r: &RolloutRow) -> StorageResult<()> {
                self.insert_new(writes::insert_rollout(r), "rollout", &r.id).await
            }

            async fn update_rollout(
                &self,
                id: &str,
                old: (u64, &str),
                new: (u64, &str),
                at: i64,
            ) -> StorageResult<bool> {
                Ok(self.exec(writes::update_rollout(id, old, new, at)).await? == 1)
            }

            async fn list_rollouts(&self) -> StorageResult<Vec<RolloutRow>> {
                self.all("SELECT * FROM director_rollouts ORDER BY created_at, id", "list rollouts").await
            }

            async fn upsert_pin(&self, p: &PinRow) -> StorageResult<()> {
                self.exec(writes::upsert_pin(p)).await.map(|_| ())
            }

            async fn delete_pin(&self, device: &str) -> StorageResult<bool> {
                Ok(self.exec(writes::delete_pin(device)).await? == 1)
            }

            async fn list_pins(&self) -> StorageResult<Vec<PinRow>> {
                self.all("SELECT * FROM director_pins ORDER BY device_id", "list pins").await
            }

            async fn list_remediations(&self, repo: &str) -> StorageResult<Vec<YankRow>> {
                sqlx::query_as(
                    "SELECT target, replacement_json FROM yanks \
                     WHERE repo = $1 AND replacement_json IS NOT NULL ORDER BY id",
                )
                .bind(repo)
                .fetch_all(&self.pool)
                .await
                .map_err(db("list yanks with a replacement"))
            }

            async fn adopt_fleet_yanks(&self, repo: &str) -> StorageResult<u64> {
                let mut tx = self.pool.begin().await.map_err(db("begin yank adoption"))?;
                sqlx::query($lock)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("lock for yank adoption"))?;
                let legacy = sqlx::query_scalar::<_, i64>($has_fleet_yanks)
                    .persistent(false)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("look for table director_yanks"))?
                    > 0;
                if !legacy {
                    return Ok(0);
                }
                let moved = sqlx::query(
                    "INSERT INTO yanks (repo, target, reason, requested_by, requested_at, replacement_json) \
                     SELECT $1, target, reason, created_by, created_at, replacement_json \
                     FROM director_yanks ORDER BY created_at, target",
                )
                .bind(repo)
                .execute(&mut *tx)
                .await
                .map_err(db("move director_yanks into yanks"))?
                .rows_affected();
                sqlx::query("DROP TABLE director_yanks")
                    .execute(&mut *tx)
                    .await
                    .map_err(db("drop table director_yanks"))?;
                tx.commit().await.map_err(db("commit yank adoption"))?;
                Ok(moved)
            }

            async fn insert_rollback(&self, r: &RollbackRow) -> StorageResult<()> {
                self.insert_new(writes::insert_rollback(r), "rollback authorisation", &r.id)
                    .await
            }

            async fn list_rollbacks(&self) -> StorageResult<Vec<RollbackRow>> {
                self.all("SELECT * FROM director_rollback_auths ORDER BY uploaded_at, id", "list rollback authorisations").await
            }

            async fn insert_attack(&self, a: &AttackRow) -> StorageResult<()> {
                self.exec(writes::insert_attack(a)).await.map(|_| ())
            }

            async fn list_attacks(
                &self,
                device: Option<&str>,
                limit: i64,
            ) -> StorageResult<Vec<AttackRow>> {
                let sql = "SELECT * FROM director_attacks WHERE ($1 IS NULL OR device_id = $1) \
                           ORDER BY at DESC, id LIMIT $2";
                self.latest(sql, device, limit, "list attacks").await
            }

            // ---- transparency log marks (log_hooks.rs) ----
            async fn mark_delivery_logged(&self, id: &str, marker: &str) -> StorageResult<()> {
                let r = self.exec(writes::mark_delivery(id, marker)).await.map(|_| ());
                self.cache.delivery_logged(id, marker, r.is_ok());
                r
            }
        }
    };
}

director_sql!(
    SqliteDirectorDb,
    sqlx::Sqlite,
    migrate_lock = "SELECT 1",
    begin_write = "BEGIN IMMEDIATE",
    has_column = "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2",
    has_fleet_yanks =
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'director_yanks'"
);

director_sql!(
    PgDirectorDb,
    sqlx::Postgres,
    migrate_lock = "SELECT pg_advisory_xact_lock(7263757375)",
    begin_write = "BEGIN",
    has_column = "SELECT COUNT(*) FROM information_schema.columns \
                  WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
    has_fleet_yanks = "SELECT COUNT(*) FROM information_schema.tables \
                       WHERE table_schema = current_schema() AND table_name = 'director_yanks'"
);
