//! The repositories slice: everything about the TUF repositories this
//! server hosts and authors.
//!
//! - [`hosting`]: serves repositories in consistent-snapshot layout, with
//!   strong ETags, single-range requests, immutable/no-cache headers and
//!   atomic generation switches; small metadata from memory.
//! - [`authoring`]: server-side TUF repositories (custody-repo): drafts,
//!   online snapshot/timestamp keys, signature merge, publish into hosting.
//! - [`provenance`]: per-repository provenance policy, DSSE envelopes on
//!   the upload path, the gate at staging (custody-provenance).
//! - [`blobs`], [`blobs_object`]: the content-addressed blob store (local,
//!   crash-safe; or object storage).
//! - [`routes`]: `/api/v1/repos/…`: blobs, staging, yanks, roles,
//!   signatures, publish.
//! - [`publish_log`]: what a publish writes to the transparency log
//!   (`target_publish` and root `key_change` entries).
//!
//! Handlers take the slice's own state, [`Repos`]; the server state hands
//! it out (`FromRef`), so nothing here names the server's composition.

pub mod authoring;
pub mod blobs;
pub mod blobs_object;
pub mod hosting;
pub mod provenance;
mod publish_log;
pub mod routes;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Json, Router};

use crate::auth::scope::{validate_repo_name, Scope, ScopeKind};
use crate::auth::{Auth, Caller};
use crate::error::ApiError;
use crate::storage::{now, BlobRecord, Storage, StorageResult};
use crate::tlog::ServerLog;
use authoring::{Authoring, AuthoringError};
use blobs::{BlobStore, Sha256Hex};
use hosting::Hosting;

type ApiResult<T> = Result<T, ApiError>;

/// What the repository handlers work with.
pub struct Repos {
    pub storage: Arc<dyn Storage>,
    pub blobs: Arc<dyn BlobStore>,
    pub hosting: Arc<Hosting>,
    pub authoring: Authoring,
    /// The auth slice: authorize and audit every call.
    pub auth: Auth,
    /// The transparency log: yanks and publishes are entries.
    pub log: Arc<ServerLog>,
    /// The server's data directory (root rotation marks live under it).
    pub data_dir: PathBuf,
    /// Largest blob an upload may carry (bytes).
    pub max_blob_bytes: u64,
}

/// Callers are authenticated by the auth slice (`Caller`).
impl FromRef<Arc<Repos>> for Auth {
    fn from_ref(state: &Arc<Repos>) -> Auth {
        state.auth.clone()
    }
}

/// The repository routes and provenance routes over `state`, for any
/// router state.
pub(crate) fn router<S>(state: Arc<Repos>) -> Router<S> {
    Router::new()
        .merge(routes::router())
        .merge(provenance::router())
        .with_state(state)
}

pub(super) fn repo_param(repo: &str) -> ApiResult<()> {
    validate_repo_name(repo).map_err(ApiError::bad_request)
}

/// The request's `content-length`, when it is a number (a bound checked
/// before reading; the body is still read with the bound).
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// An upload into a repository's blob store (target blobs and provenance
/// envelopes share it): who may upload, what is audited, what is recorded.
pub(super) struct Upload<'a> {
    st: &'a Repos,
    caller: &'a Caller,
    repo: &'a str,
    sha: &'a str,
    action: &'static str,
    /// The declared SHA-256 the bytes must hash to.
    pub hash: Sha256Hex,
}

impl<'a> Upload<'a> {
    /// A valid repository name and declared SHA-256, and the caller holds
    /// `target:upload` for the repository (`action` names it in the audit).
    pub(super) async fn begin(
        st: &'a Repos,
        caller: &'a Caller,
        repo: &'a str,
        sha: &'a str,
        action: &'static str,
    ) -> ApiResult<Upload<'a>> {
        repo_param(repo)?;
        let hash = Sha256Hex::parse(sha).map_err(ApiError::bad_request)?;
        st.auth
            .authorize(
                caller,
                Scope::new(ScopeKind::TargetUpload, Some(repo)),
                action,
                Some(sha),
            )
            .await?;
        Ok(Upload {
            st,
            caller,
            repo,
            sha,
            action,
            hash,
        })
    }

    async fn audit(&self, outcome: &str, detail: &str) -> ApiResult<()> {
        let (repo, sha) = (Some(self.repo), Some(self.sha));
        let auth = &self.st.auth;
        auth.audit(self.caller, self.action, repo, sha, outcome, detail)
            .await
    }

    /// Audits the refused upload (`outcome` with `detail`) and answers `e`.
    pub(super) async fn refused<T>(
        &self,
        outcome: &str,
        detail: &str,
        e: ApiError,
    ) -> ApiResult<T> {
        self.audit(outcome, detail).await?;
        Err(e)
    }

    /// After the bytes (`size`) are durably in the blob store: records the
    /// blob (who, when, size), audits the upload with `detail`, and answers
    /// 201 with the stored record.
    pub(super) async fn finish(
        &self,
        size: u64,
        detail: &str,
    ) -> ApiResult<(StatusCode, Json<BlobRecord>)> {
        let record = BlobRecord {
            repo: self.repo.to_owned(),
            sha256: self.sha.to_owned(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            uploaded_at: now(),
            uploaded_by: self.caller.identity().to_string(),
        };
        self.st.storage.upsert_blob(&record).await?;
        self.audit("ok", detail).await?;
        let stored = self.st.storage.get_blob(self.repo, self.sha).await?;
        Ok((StatusCode::CREATED, Json(stored.unwrap_or(record))))
    }
}

impl Repos {
    /// A valid repository name, and the caller holds `kind@repo`
    /// (`action` names the call in the audit).
    pub(super) async fn authorize(
        &self,
        caller: &Caller,
        repo: &str,
        kind: ScopeKind,
        action: &str,
    ) -> ApiResult<()> {
        repo_param(repo)?;
        self.auth
            .authorize(caller, Scope::new(kind, Some(repo)), action, None)
            .await
    }

    /// A valid repository name, and the caller may read the repository
    /// (`action` names the call in a refusal's audit).
    pub(super) async fn authorize_read(
        &self,
        caller: &Caller,
        repo: &str,
        action: &str,
    ) -> ApiResult<()> {
        repo_param(repo)?;
        self.auth.authorize_read(caller, repo, action).await
    }

    /// A read of `repo`'s records: [`Repos::authorize_read`], then `read`
    /// (a storage call, not started until authorized) as the JSON answer.
    pub(crate) async fn read<T>(
        &self,
        caller: &Caller,
        repo: &str,
        action: &str,
        read: impl std::future::Future<Output = StorageResult<T>>,
    ) -> ApiResult<Json<T>> {
        self.authorize_read(caller, repo, action).await?;
        Ok(Json(read.await?))
    }

    /// [`Repos::read`] of one record: `None` is 404 saying that the
    /// `what` named `key` is not in `repo`.
    pub(crate) async fn read_one<T>(
        &self,
        caller: &Caller,
        repo: &str,
        action: &str,
        (what, key): (&str, &str),
        read: impl std::future::Future<Output = StorageResult<Option<T>>>,
    ) -> ApiResult<Json<T>> {
        self.read(caller, repo, action, read)
            .await?
            .0
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("{what} {key:?} is not in {repo:?}")))
    }
}

fn authoring_error(e: AuthoringError) -> ApiError {
    match e {
        AuthoringError::NoRepo(_) => ApiError::not_found(e.to_string()),
        AuthoringError::Exists(_) | AuthoringError::Busy { .. } => {
            ApiError::conflict(e.to_string())
        }
        AuthoringError::Unsigned { .. } => {
            ApiError::new(StatusCode::CONFLICT, "signatures_missing", e.to_string())
        }
        AuthoringError::Invalid(_) => ApiError::bad_request(e.to_string()),
        AuthoringError::Repo { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "repository_rejected",
            e.to_string(),
        ),
        AuthoringError::Host(_) | AuthoringError::Io { .. } | AuthoringError::Corrupt(_) => {
            tracing::error!(error = %e, "authoring failed");
            ApiError::internal(e.to_string())
        }
    }
}

/// Runs blocking authoring work on the blocking pool, one at a time per
/// server process (the repository file lock covers other processes).
pub(crate) async fn authoring<T: Send + 'static>(
    st: &Arc<Repos>,
    f: impl FnOnce(&Repos) -> Result<T, AuthoringError> + Send + 'static,
) -> ApiResult<T> {
    let _guard = st.authoring.lock.lock().await;
    let st2 = Arc::clone(st);
    tokio::task::spawn_blocking(move || f(&st2))
        .await
        .map_err(|e| ApiError::internal(format!("authoring task failed: {e}")))?
        .map_err(authoring_error)
}
