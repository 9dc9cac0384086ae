//! SQL storage. The statements are the same for SQLite and PostgreSQL
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING` exist in both); a macro
//! instantiates the implementation for each concrete sqlx driver, so no
//! runtime `Any` dispatch and no compile-time query macros are needed.
//! Only the schema (auto-increment ids) and the write-transaction opener
//! (`BEGIN IMMEDIATE` on SQLite) differ.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use super::rows::{records, scopes_to_text, AuditRow, CredentialRow, StagedRow};
use super::*;

fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |source| StorageError::Db { operation, source }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(d) if d.is_unique_violation())
}

const SCHEMA_COMMON: &str = r#"
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    generation BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    repo TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    PRIMARY KEY (repo, sha256)
);
CREATE TABLE IF NOT EXISTS staged_targets (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    blob_sha256 TEXT NOT NULL,
    length BIGINT NOT NULL,
    custom TEXT NOT NULL,
    staged_at BIGINT NOT NULL,
    staged_by TEXT NOT NULL,
    PRIMARY KEY (repo, name)
);
CREATE TABLE IF NOT EXISTS repo_heads (
    repo TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS publishes (
    repo TEXT NOT NULL,
    version BIGINT NOT NULL,
    published_by TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (repo, version)
);
"#;

const SCHEMA_SQLITE: &str = r#"
CREATE TABLE IF NOT EXISTS yanks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at BIGINT NOT NULL,
    replacement_json TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL, identity TEXT NOT NULL, scopes TEXT NOT NULL,
    action TEXT NOT NULL, repo TEXT, target TEXT, outcome TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_repo_id ON audit (repo, id);
"#;

const SCHEMA_PG: &str = r#"
CREATE TABLE IF NOT EXISTS yanks (
    id BIGSERIAL PRIMARY KEY,
    repo TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at BIGINT NOT NULL,
    replacement_json TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL, identity TEXT NOT NULL, scopes TEXT NOT NULL,
    action TEXT NOT NULL, repo TEXT, target TEXT, outcome TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_repo_id ON audit (repo, id);
"#;

/// Embedded default: one SQLite file in WAL mode.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: sqlx::SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> StorageResult<SqliteStorage> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged audit record or credential revocation
            // survives power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(db("open sqlite database"))?;
        Ok(SqliteStorage { pool })
    }

    /// The pool, for the director's tables (`director::store`).
    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

/// Scale path: PostgreSQL (or a PostgreSQL-wire engine).
#[derive(Debug, Clone)]
pub struct PgStorage {
    pool: sqlx::PgPool,
}

impl PgStorage {
    pub async fn connect(url: &str) -> StorageResult<PgStorage> {
        let options = PgConnectOptions::from_str(url).map_err(db("parse database url"))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(db("connect to postgresql"))?;
        Ok(PgStorage { pool })
    }

    /// The pool, for the director's tables (`director::store`).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

macro_rules! sql_storage {
    ($ty:ident, $db:ty, backend = $backend:expr, schema = $schema:expr,
     migrate_lock = $lock:expr, begin_write = $begin:expr, has_replacement = $has_replacement:expr) => {
        #[async_trait]
        impl Storage for $ty {
            async fn migrate(&self) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(db("begin migration"))?;
                sqlx::query($lock)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("lock for migration"))?;
                // One statement per query: the extended protocol (and the
                // Send-ness of the future) wants single statements.
                for stmt in SCHEMA_COMMON.split(';').chain($schema.split(';')) {
                    if stmt.trim().is_empty() {
                        continue;
                    }
                    sqlx::query(stmt)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("create schema"))?;
                }
                // `yanks.replacement_json` (one yank for repositories and
                // the fleet) is added to tables created before it existed.
                // Asked of the catalogue, unprepared (see the director's
                // migration for why not `SELECT *`).
                let has_replacement = sqlx::query_scalar::<_, i64>($has_replacement)
                    .persistent(false)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("look for column yanks.replacement_json"))?
                    > 0;
                if !has_replacement {
                    sqlx::query("ALTER TABLE yanks ADD COLUMN replacement_json TEXT")
                        .execute(&mut *tx)
                        .await
                        .map_err(db("add column yanks.replacement_json"))?;
                }
                tx.commit().await.map_err(db("commit migration"))
            }

            async fn ping(&self) -> StorageResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(db("ping"))
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            async fn get_or_create_secret(
                &self,
                name: &str,
                candidate: &[u8],
            ) -> StorageResult<Vec<u8>> {
                sqlx::query("INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(hex::encode(candidate))
                    .execute(&self.pool)
                    .await
                    .map_err(db("store secret"))?;
                let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("read secret"))?;
                let value: String = row.try_get("value").map_err(db("read secret"))?;
                hex::decode(&value).map_err(|e| StorageError::Corrupt {
                    what: "secret",
                    reason: format!("secret {name:?} is not hex: {e}"),
                })
            }

            async fn insert_credential(&self, c: &CredentialRecord) -> StorageResult<()> {
                let res = sqlx::query(
                    "INSERT INTO credentials (id, name, secret_hash, scopes, generation, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.secret_hash)
                .bind(scopes_to_text(&c.scopes))
                .bind(c.generation)
                .bind(c.created_at)
                .bind(c.revoked_at)
                .execute(&self.pool)
                .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict {
                        what: "credential",
                        key: c.id.clone(),
                    }),
                    Err(e) => Err(db("insert credential")(e)),
                }
            }

            async fn get_credential(&self, id: &str) -> StorageResult<Option<CredentialRecord>> {
                sqlx::query_as::<_, CredentialRow>("SELECT * FROM credentials WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read credential"))?
                    .map(CredentialRecord::try_from)
                    .transpose()
            }

            async fn list_credentials(&self) -> StorageResult<Vec<CredentialRecord>> {
                let sql = "SELECT * FROM credentials ORDER BY created_at, id";
                records::<CredentialRow, _>(
                    sqlx::query_as(sql).fetch_all(&self.pool).await.map_err(db("list credentials"))?,
                )
            }

            async fn count_credentials(&self) -> StorageResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM credentials")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("count credentials"))?;
                row.try_get("n").map_err(db("count credentials"))
            }

            async fn rotate_credential(&self, id: &str, new_hash: &str) -> StorageResult<Option<i64>> {
                let row = sqlx::query(
                    "UPDATE credentials SET secret_hash = $2, generation = generation + 1 \
                     WHERE id = $1 AND revoked_at IS NULL RETURNING generation",
                )
                .bind(id)
                .bind(new_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("rotate credential"))?;
                row.map(|r| r.try_get("generation").map_err(db("rotate credential")))
                    .transpose()
            }

            async fn revoke_credential(&self, id: &str, at: i64) -> StorageResult<bool> {
                let res = sqlx::query(
                    "UPDATE credentials SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err(db("revoke credential"))?;
                Ok(res.rows_affected() == 1)
            }

            async fn revoke_token(&self, jti: &str, expires_at: i64) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(db("revoke token"))?;
                Ok(())
            }

            async fn is_token_revoked(&self, jti: &str) -> StorageResult<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM revoked_tokens WHERE jti = $1")
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("check token revocation"))?;
                Ok(row.is_some())
            }

            async fn purge_revoked_tokens(&self, now: i64) -> StorageResult<u64> {
                let res = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(db("purge token revocations"))?;
                Ok(res.rows_affected())
            }

            async fn upsert_blob(&self, b: &BlobRecord) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO blobs (repo, sha256, size, uploaded_at, uploaded_by) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (repo, sha256) DO NOTHING",
                )
                .bind(&b.repo)
                .bind(&b.sha256)
                .bind(b.size)
                .bind(b.uploaded_at)
                .bind(&b.uploaded_by)
                .execute(&self.pool)
                .await
                .map_err(db("record blob"))?;
                Ok(())
            }

            async fn get_blob(&self, repo: &str, sha256: &str) -> StorageResult<Option<BlobRecord>> {
                sqlx::query_as("SELECT * FROM blobs WHERE repo = $1 AND sha256 = $2")
                    .bind(repo)
                    .bind(sha256)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read blob"))
            }

            async fn list_blobs(&self, repo: &str) -> StorageResult<Vec<BlobRecord>> {
                sqlx::query_as("SELECT * FROM blobs WHERE repo = $1 ORDER BY uploaded_at, sha256")
                    .bind(repo)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list blobs"))
            }

            async fn stage_target(&self, t: &StagedTarget) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO staged_targets (repo, name, blob_sha256, length, custom, staged_at, staged_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (repo, name) DO UPDATE SET blob_sha256 = excluded.blob_sha256, \
                     length = excluded.length, custom = excluded.custom, staged_at = excluded.staged_at, \
                     staged_by = excluded.staged_by",
                )
                .bind(&t.repo)
                .bind(&t.name)
                .bind(&t.blob_sha256)
                .bind(t.length)
                .bind(t.custom.to_string())
                .bind(t.staged_at)
                .bind(&t.staged_by)
                .execute(&self.pool)
                .await
                .map_err(db("stage target"))?;
                Ok(())
            }

            async fn get_staged(&self, repo: &str, name: &str) -> StorageResult<Option<StagedTarget>> {
                sqlx::query_as::<_, StagedRow>("SELECT * FROM staged_targets WHERE repo = $1 AND name = $2")
                    .bind(repo)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read staged target"))?
                    .map(StagedTarget::try_from)
                    .transpose()
            }

            async fn list_staged(&self, repo: &str) -> StorageResult<Vec<StagedTarget>> {
                let sql = "SELECT * FROM staged_targets WHERE repo = $1 ORDER BY name";
                records::<StagedRow, _>(
                    sqlx::query_as(sql)
                        .bind(repo)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("list staged targets"))?,
                )
            }

            async fn insert_yank(&self, y: &NewYank<'_>) -> StorageResult<YankRecord> {
                sqlx::query_as(
                    "INSERT INTO yanks (repo, target, reason, requested_by, requested_at, replacement_json) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                )
                .bind(y.repo)
                .bind(y.target)
                .bind(y.reason)
                .bind(y.by)
                .bind(y.at)
                .bind(y.replacement_json)
                .fetch_one(&self.pool)
                .await
                .map_err(db("record yank"))
            }

            async fn list_yanks(&self, repo: &str) -> StorageResult<Vec<YankRecord>> {
                sqlx::query_as("SELECT * FROM yanks WHERE repo = $1 ORDER BY id")
                    .bind(repo)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list yanks"))
            }

            async fn append_audit(&self, a: &NewAudit) -> StorageResult<i64> {
                let row = sqlx::query(
                    "INSERT INTO audit (at, identity, scopes, action, repo, target, outcome, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(a.at)
                .bind(&a.identity)
                .bind(scopes_to_text(&a.scopes))
                .bind(&a.action)
                .bind(&a.repo)
                .bind(&a.target)
                .bind(&a.outcome)
                .bind(&a.detail)
                .fetch_one(&self.pool)
                .await
                .map_err(db("append audit record"))?;
                row.try_get("id").map_err(db("append audit record"))
            }

            async fn list_audit(
                &self,
                limit: i64,
                before: Option<i64>,
                repo: Option<&str>,
            ) -> StorageResult<Vec<AuditRecord>> {
                let rows = sqlx::query_as::<_, AuditRow>(
                    "SELECT * FROM audit WHERE ($1 IS NULL OR id < $1) AND ($2 IS NULL OR repo = $2) \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(before)
                .bind(repo)
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await
                .map_err(db("list audit records"))?;
                records(rows)
            }

            async fn next_publish_version(&self, repo: &str, by: &str, at: i64) -> StorageResult<i64> {
                // The UPDATE takes the row lock (PostgreSQL) or the database
                // write lock (SQLite, BEGIN IMMEDIATE) before reading the
                // version, so concurrent publishers queue up here.
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(db("begin publish transaction"))?;
                sqlx::query("INSERT INTO repo_heads (repo, version) VALUES ($1, 0) ON CONFLICT (repo) DO NOTHING")
                    .bind(repo)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("create repository head"))?;
                let row = sqlx::query(
                    "UPDATE repo_heads SET version = version + 1 WHERE repo = $1 RETURNING version",
                )
                .bind(repo)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("advance repository version"))?;
                let version: i64 = row.try_get("version").map_err(db("advance repository version"))?;
                sqlx::query(
                    "INSERT INTO publishes (repo, version, published_by, published_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(repo)
                .bind(version)
                .bind(by)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db("record publish"))?;
                tx.commit().await.map_err(db("commit publish"))?;
                Ok(version)
            }

            async fn list_publishes(&self, repo: &str) -> StorageResult<Vec<PublishRecord>> {
                sqlx::query_as("SELECT * FROM publishes WHERE repo = $1 ORDER BY version")
                    .bind(repo)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list publishes"))
            }
        }
    };
}

sql_storage!(
    SqliteStorage,
    sqlx::Sqlite,
    backend = "sqlite",
    schema = SCHEMA_SQLITE,
    migrate_lock = "SELECT 1",
    begin_write = "BEGIN IMMEDIATE",
    has_replacement =
        "SELECT COUNT(*) FROM pragma_table_info('yanks') WHERE name = 'replacement_json'"
);

sql_storage!(
    PgStorage,
    sqlx::Postgres,
    backend = "postgresql",
    schema = SCHEMA_PG,
    // Concurrent replicas (and parallel tests) may migrate at once;
    // CREATE TABLE IF NOT EXISTS alone races on the catalog.
    migrate_lock = "SELECT pg_advisory_xact_lock(7263757374)",
    begin_write = "BEGIN",
    has_replacement = "SELECT COUNT(*) FROM information_schema.columns \
                       WHERE table_schema = current_schema() AND table_name = 'yanks' \
                       AND column_name = 'replacement_json'"
);
