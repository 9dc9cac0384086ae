//! Server state behind one async trait, with SQLite (embedded default, WAL)
//! and PostgreSQL (scale path) implementations sharing the same SQL.

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

mod rows;
mod sql;

pub use sql::{PgStorage, SqliteStorage};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error during {operation}: {source}")]
    Db {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration: {what}: {source}")]
    Migrate {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} already exists: {key}")]
    Conflict { what: &'static str, key: String },
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Unix seconds now: the clock of every timestamp the server stores.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A long-lived bootstrap credential. Only the hash of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CredentialRecord {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 over the domain-separated secret (see `auth::credential`).
    #[serde(skip)]
    pub secret_hash: String,
    pub scopes: Vec<String>,
    /// Bumped on rotation; tokens carry it, so rotation kills old tokens.
    pub generation: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct BlobRecord {
    pub repo: String,
    pub sha256: String,
    pub size: i64,
    pub uploaded_at: i64,
    pub uploaded_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StagedTarget {
    pub repo: String,
    pub name: String,
    pub blob_sha256: String,
    pub length: i64,
    #[schema(value_type = Object)]
    pub custom: serde_json::Value,
    pub staged_at: i64,
    pub staged_by: String,
}

/// A stored yank: the one record behind `/api/v1/repos/{repo}/yanks`
/// (and the deprecated `/api/v1/fleet/yanks`). The target leaves `repo`'s
/// targets at the next publish (unless staged again after the yank); a
/// yank with a replacement also sends that release to the devices running
/// the target, when `repo` is the director's image repository.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct YankRecord {
    pub id: i64,
    pub repo: String,
    pub target: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: i64,
    /// The remediation release (custody-director's `Release` as JSON),
    /// for yanks in the director's image repository.
    pub replacement_json: Option<String>,
}

/// A yank to record (see [`YankRecord`]).
#[derive(Debug, Clone, Copy)]
pub struct NewYank<'a> {
    pub repo: &'a str,
    pub target: &'a str,
    pub reason: &'a str,
    pub by: &'a str,
    pub at: i64,
    pub replacement_json: Option<&'a str>,
}

/// An audit entry to append (and the fields of a stored [`AuditRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NewAudit {
    pub at: i64,
    pub identity: String,
    pub scopes: Vec<String>,
    pub action: String,
    pub repo: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: String,
}

/// An audit entry as stored: its id, then the entry's fields (one JSON
/// object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(flatten)]
    pub entry: NewAudit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct PublishRecord {
    pub repo: String,
    pub version: i64,
    pub published_by: String,
    pub published_at: i64,
}

/// All persistent state except blob bytes and hosted files.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates the schema if missing (idempotent).
    async fn migrate(&self) -> StorageResult<()>;
    /// Cheap liveness query for /readyz.
    async fn ping(&self) -> StorageResult<()>;
    /// Which backend (for logs and /readyz).
    fn backend(&self) -> &'static str;

    /// Returns the stored secret `name`, storing `candidate` first if there
    /// is none yet (first writer wins across replicas).
    async fn get_or_create_secret(&self, name: &str, candidate: &[u8]) -> StorageResult<Vec<u8>>;

    async fn insert_credential(&self, cred: &CredentialRecord) -> StorageResult<()>;
    async fn get_credential(&self, id: &str) -> StorageResult<Option<CredentialRecord>>;
    async fn list_credentials(&self) -> StorageResult<Vec<CredentialRecord>>;
    async fn count_credentials(&self) -> StorageResult<i64>;
    /// Replaces the secret hash and bumps the generation of a live
    /// credential; `None` if absent or revoked.
    async fn rotate_credential(&self, id: &str, new_hash: &str) -> StorageResult<Option<i64>>;
    /// Marks revoked; false if absent or already revoked.
    async fn revoke_credential(&self, id: &str, at: i64) -> StorageResult<bool>;

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StorageResult<()>;
    async fn is_token_revoked(&self, jti: &str) -> StorageResult<bool>;
    /// Forgets revocations of tokens that have expired anyway.
    async fn purge_revoked_tokens(&self, now: i64) -> StorageResult<u64>;

    async fn upsert_blob(&self, blob: &BlobRecord) -> StorageResult<()>;
    async fn get_blob(&self, repo: &str, sha256: &str) -> StorageResult<Option<BlobRecord>>;
    async fn list_blobs(&self, repo: &str) -> StorageResult<Vec<BlobRecord>>;

    async fn stage_target(&self, target: &StagedTarget) -> StorageResult<()>;
    async fn get_staged(&self, repo: &str, name: &str) -> StorageResult<Option<StagedTarget>>;
    async fn list_staged(&self, repo: &str) -> StorageResult<Vec<StagedTarget>>;

    async fn insert_yank(&self, yank: &NewYank<'_>) -> StorageResult<YankRecord>;
    /// Oldest first.
    async fn list_yanks(&self, repo: &str) -> StorageResult<Vec<YankRecord>>;

    async fn append_audit(&self, entry: &NewAudit) -> StorageResult<i64>;
    /// Newest first; `before` pages by id; `repo` filters.
    async fn list_audit(
        &self,
        limit: i64,
        before: Option<i64>,
        repo: Option<&str>,
    ) -> StorageResult<Vec<AuditRecord>>;

    /// Allocates the next publish version of `repo` and records it.
    /// Concurrent callers (also on other replicas) are serialised: versions
    /// are strictly increasing, never repeated, never skipped.
    async fn next_publish_version(&self, repo: &str, by: &str, at: i64) -> StorageResult<i64>;
    async fn list_publishes(&self, repo: &str) -> StorageResult<Vec<PublishRecord>>;
}
