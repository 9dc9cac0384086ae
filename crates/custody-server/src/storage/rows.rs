//! Rows as the database holds them, decoded by `sqlx::FromRow`, for the
//! records with a JSON column (scopes, `custom`); the plain records derive
//! `FromRow` themselves. A JSON column that does not parse is
//! [`StorageError::Corrupt`], naming the record and the column.

use super::{AuditRecord, CredentialRecord, NewAudit, StagedTarget, StorageError, StorageResult};

/// A JSON array of scope strings, as `credentials.scopes` and
/// `audit.scopes` store it.
pub(super) fn scopes_to_text(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_string())
}

fn scopes_from_text(what: &'static str, text: &str) -> StorageResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt {
        what,
        reason: format!("scopes column is not a JSON string array: {e}"),
    })
}

#[derive(sqlx::FromRow)]
pub(super) struct CredentialRow {
    id: String,
    name: String,
    secret_hash: String,
    scopes: String,
    generation: i64,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<CredentialRow> for CredentialRecord {
    type Error = StorageError;
    fn try_from(r: CredentialRow) -> StorageResult<Self> {
        Ok(CredentialRecord {
            scopes: scopes_from_text("credential", &r.scopes)?,
            id: r.id,
            name: r.name,
            secret_hash: r.secret_hash,
            generation: r.generation,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct StagedRow {
    repo: String,
    name: String,
    blob_sha256: String,
    length: i64,
    custom: String,
    staged_at: i64,
    staged_by: String,
}

impl TryFrom<StagedRow> for StagedTarget {
    type Error = StorageError;
    fn try_from(r: StagedRow) -> StorageResult<Self> {
        Ok(StagedTarget {
            custom: serde_json::from_str(&r.custom).map_err(|err| StorageError::Corrupt {
                what: "staged target",
                reason: format!("custom column is not JSON: {err}"),
            })?,
            repo: r.repo,
            name: r.name,
            blob_sha256: r.blob_sha256,
            length: r.length,
            staged_at: r.staged_at,
            staged_by: r.staged_by,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    identity: String,
    scopes: String,
    action: String,
    repo: Option<String>,
    target: Option<String>,
    outcome: String,
    detail: String,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StorageError;
    fn try_from(r: AuditRow) -> StorageResult<Self> {
        Ok(AuditRecord {
            id: r.id,
            entry: NewAudit {
                scopes: scopes_from_text("audit record", &r.scopes)?,
                at: r.at,
                identity: r.identity,
                action: r.action,
                repo: r.repo,
                target: r.target,
                outcome: r.outcome,
                detail: r.detail,
            },
        })
    }
}

/// Decodes every row of `rows` into its record.
pub(super) fn records<R, T: TryFrom<R, Error = StorageError>>(
    rows: Vec<R>,
) -> StorageResult<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}
