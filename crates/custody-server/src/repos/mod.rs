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
use axum::Router;

use crate::auth::scope::validate_repo_name;
use crate::auth::{Auth, Caller};
use crate::error::ApiError;
use crate::storage::{now, BlobRecord, Storage};
use crate::tlog::ServerLog;
use authoring::{Authoring, AuthoringError};
use blobs::BlobStore;
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

/// After bytes are durably in the blob store: record the blob (who, when,
/// size), audit `action` with `detail`, and answer the stored record.
/// Shared by target uploads and provenance envelopes.
pub(super) async fn record_blob(
    st: &Repos,
    caller: &Caller,
    repo: &str,
    sha: &str,
    size: u64,
    action: &str,
    detail: &str,
) -> ApiResult<BlobRecord> {
    let record = BlobRecord {
        repo: repo.to_owned(),
        sha256: sha.to_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        uploaded_at: now(),
        uploaded_by: caller.identity().to_string(),
    };
    st.storage.upsert_blob(&record).await?;
    st.auth
        .audit(caller, action, Some(repo), Some(sha), "ok", detail)
        .await?;
    Ok(st.storage.get_blob(repo, sha).await?.unwrap_or(record))
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
pub(super) async fn authoring<T: Send + 'static>(
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
