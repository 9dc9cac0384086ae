//! One yank, for every repository: `POST /api/v1/repos/{repo}/yanks`.
//!
//! A yank withdraws a target from `repo`: the next publish leaves it out of
//! the targets metadata (unless it is staged again after the yank, which
//! lifts the yank). When `repo` is the director's image repository, the
//! yank may also name a replacement: devices running the yanked target are
//! then assigned the replacement at their next check-in, and the answer
//! lists them with everyone who ever ran it. One table holds every yank
//! (`storage`), one log entry type records it (`yank`, with the
//! replacement), one audit action names it (`target.yank`).
//!
//! This module sits above two slices: it records through the repositories'
//! storage and resolves a replacement through the director. The fleet
//! API's `/api/v1/fleet/yanks` is a deprecated alias for the image
//! repository's yanks.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::scope::ScopeKind;
use crate::auth::{Auth, Caller};
use crate::director::fleet::{self, Deployed};
use crate::director::store::InstallRow;
use crate::director::DirectorState;
use crate::error::{json_body, ApiError, ErrorBody};
use crate::repos::routes::validate_target_name;
use crate::repos::Repos;
use crate::storage::{now, NewYank, YankRecord};

type ApiResult<T> = Result<T, ApiError>;

/// The two slices a yank touches.
pub(crate) struct Yanks {
    pub repos: Arc<Repos>,
    pub director: Arc<DirectorState>,
}

impl FromRef<Arc<Yanks>> for Auth {
    fn from_ref(state: &Arc<Yanks>) -> Auth {
        state.repos.auth.clone()
    }
}

type St = State<Arc<Yanks>>;

/// The yank routes over `state`, for any router state.
pub(crate) fn router<S>(state: Arc<Yanks>) -> Router<S> {
    Router::new()
        .route(
            "/api/v1/repos/{repo}/yanks",
            post(yank_target).get(list_yanks),
        )
        .route("/api/v1/fleet/yanks", post(fleet_yank).get(fleet_yanks))
        .with_state(state)
}

/// Longest reason kept (bytes).
const MAX_REASON: usize = 2000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    /// the yanked target path
    pub target: String,
    /// why (required; recorded in the audit trail and the log)
    pub reason: String,
    /// what devices running the target get instead: a target of the
    /// director's image repository (only there; needs `fleet:admin` too)
    pub replacement: Option<String>,
    /// the replacement's release counter (default: its
    /// `custom.release_counter`)
    pub replacement_release_counter: Option<u64>,
}

/// A yank as the API shows it. `remediation` and `installed` are in the
/// answer to a yank with a replacement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Yank {
    pub id: i64,
    pub repo: String,
    pub target: String,
    pub reason: String,
    pub requested_by: String,
    /// Unix seconds
    pub requested_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Deployed>,
    /// devices running the yanked target now: each gets the replacement at
    /// its next check-in
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Vec<String>>,
    /// every device that ever ran the target, and when it was first seen
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<Vec<InstallRow>>,
}

impl Yank {
    fn from_record(r: YankRecord) -> ApiResult<Yank> {
        let replacement = match &r.replacement_json {
            None => None,
            Some(j) => {
                let rel: custody_director::policy::Release =
                    serde_json::from_str(j).map_err(|e| {
                        ApiError::internal(format!(
                            "stored yank #{} of {:?}: replacement is not a release: {e}",
                            r.id, r.target
                        ))
                    })?;
                Some(Deployed {
                    target: rel.name,
                    release_counter: rel.release_counter,
                })
            }
        };
        Ok(Yank {
            id: r.id,
            repo: r.repo,
            target: r.target,
            reason: r.reason,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            replacement,
            remediation: None,
            installed: None,
        })
    }
}

#[utoipa::path(post, path = "/api/v1/repos/{repo}/yanks", tag = "targets",
    security(("bearer" = [])), params(("repo" = String, Path)), request_body = YankRequest,
    responses((status = 201, body = Yank),
              (status = 400, body = ErrorBody, description = "bad target, reason or replacement"),
              (status = 403, body = ErrorBody, description = "needs target:revoke@repo, or fleet:admin for a yank with a replacement"),
              (status = 404, body = ErrorBody, description = "the replacement is not in the image repository"),
              (status = 409, body = ErrorBody, description = "the target is already yanked")))]
async fn yank_target(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
    body: Result<Json<YankRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Yank>)> {
    let req = json_body(body)?;
    record(&st, &caller, &repo, req).await
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/yanks", tag = "targets",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 200, body = Vec<Yank>, description = "oldest first")))]
async fn list_yanks(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<Json<Vec<Yank>>> {
    st.repos.authorize_read(&caller, &repo, "yank.list").await?;
    let yanks = st.repos.storage.list_yanks(&repo).await?;
    Ok(Json(
        yanks
            .into_iter()
            .map(Yank::from_record)
            .collect::<ApiResult<_>>()?,
    ))
}

/// The fleet API's yank request (deprecated): a replacement is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetYankRequest {
    pub target: String,
    pub replacement: String,
    pub replacement_release_counter: Option<u64>,
    pub reason: String,
}

/// `Deprecation: true` (RFC 9745) and the successor, on the alias.
fn deprecated(resp: impl IntoResponse, repo: &str) -> Response {
    let mut resp = resp.into_response();
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static("deprecation"),
        HeaderValue::from_static("true"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "</api/v1/repos/{repo}/yanks>; rel=\"successor-version\""
    )) {
        h.insert(HeaderName::from_static("link"), v);
    }
    resp
}

#[utoipa::path(post, path = "/api/v1/fleet/yanks", tag = "fleet", security(("bearer" = [])),
    request_body = FleetYankRequest, responses((status = 201, body = Yank)))]
/// Deprecated: `POST /api/v1/repos/{image repository}/yanks` with a
/// replacement.
///
/// Yanks a target of the director's image repository and sends devices
/// running it the replacement. Answers with `Deprecation: true` and a
/// `Link` to the successor.
async fn fleet_yank(
    State(st): St,
    caller: Caller,
    body: Result<Json<FleetYankRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let repo = fleet::image_repository(&st.director)?;
    let req = json_body(body)?;
    let req = YankRequest {
        target: req.target,
        reason: req.reason,
        replacement: Some(req.replacement),
        replacement_release_counter: req.replacement_release_counter,
    };
    Ok(deprecated(record(&st, &caller, &repo, req).await?, &repo))
}

#[utoipa::path(get, path = "/api/v1/fleet/yanks", tag = "fleet", security(("bearer" = [])),
    responses((status = 200, body = Vec<Yank>, description = "the image repository's yanks that name a replacement")))]
/// Deprecated: `GET /api/v1/repos/{image repository}/yanks`.
///
/// The image repository's yanks that name a replacement.
async fn fleet_yanks(State(st): St, caller: Caller) -> ApiResult<Response> {
    let repo = fleet::image_repository(&st.director)?;
    st.repos.authorize_read(&caller, &repo, "yank.list").await?;
    let mut out = Vec::new();
    for r in st.repos.storage.list_yanks(&repo).await? {
        if r.replacement_json.is_some() {
            out.push(Yank::from_record(r)?);
        }
    }
    Ok(deprecated(Json(out), &repo))
}

/// Authorizes, checks and records one yank.
///
/// Who may yank: `target:revoke@repo`; a yank that names a replacement
/// decides what devices run, so it needs `fleet:admin` instead (checked by
/// `fleet::replacement_release`), as the fleet API's yanks always did.
async fn record(
    st: &Yanks,
    caller: &Caller,
    repo: &str,
    req: YankRequest,
) -> ApiResult<(StatusCode, Json<Yank>)> {
    if req.replacement.is_none() {
        st.repos
            .authorize(caller, repo, ScopeKind::TargetRevoke, "target.yank")
            .await?;
    }
    validate_target_name(&req.target).map_err(|e| ApiError::bad_request(format!("target: {e}")))?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "reason must be 1..={MAX_REASON} bytes (after trimming), got {}",
            reason.len()
        )));
    }
    let replacement = match &req.replacement {
        Some(name) => Some(
            fleet::replacement_release(
                &st.director,
                caller,
                repo,
                &req.target,
                name,
                req.replacement_release_counter,
            )
            .await?,
        ),
        None if req.replacement_release_counter.is_some() => {
            return Err(ApiError::bad_request(
                "replacement_release_counter needs a replacement",
            ))
        }
        None => None,
    };
    refuse_if_in_force(st, repo, &req.target, replacement.is_some()).await?;
    let replacement_json = replacement
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let stored = st
        .repos
        .storage
        .insert_yank(&NewYank {
            repo,
            target: &req.target,
            reason,
            by: caller.identity(),
            at: now(),
            replacement_json: replacement_json.as_deref(),
        })
        .await?;
    let detail = match &replacement {
        Some(r) => format!(
            "{reason} (replacement {} release {})",
            r.name, r.release_counter
        ),
        None => reason.to_owned(),
    };
    let target = Some(req.target.as_str());
    let audit = st
        .repos
        .auth
        .audit_of(caller, "target.yank", Some(repo), target);
    audit.ok(&detail).await?;
    st.repos
        .log
        .append(crate::tlog::EntryBody::Yank {
            repo: repo.to_owned(),
            target: req.target.clone(),
            reason: reason.to_owned(),
            by: caller.identity().to_owned(),
            replacement: replacement.as_ref().map(|r| r.name.clone()),
        })
        .await?;
    let mut yank = Yank::from_record(stored)?;
    if replacement.is_some() {
        let reached = fleet::remediate(&st.director, &req.target).await?;
        yank.remediation = Some(reached.remediation);
        yank.installed = Some(reached.installed);
    }
    Ok((StatusCode::CREATED, Json(yank)))
}

/// 409 when `target` is already yanked in `repo` and staging it again has
/// not lifted that yank, unless the new yank adds a replacement to one
/// without.
async fn refuse_if_in_force(
    st: &Yanks,
    repo: &str,
    target: &str,
    with_replacement: bool,
) -> ApiResult<()> {
    let storage = &st.repos.storage;
    let yanks = storage.list_yanks(repo).await?;
    let Some(last) = yanks.iter().rev().find(|y| y.target == target) else {
        return Ok(());
    };
    let lifted = storage
        .get_staged(repo, target)
        .await?
        .is_some_and(|t| t.staged_at > last.requested_at);
    if lifted || (with_replacement && last.replacement_json.is_none()) {
        return Ok(());
    }
    Err(ApiError::conflict(format!(
        "{target:?} is already yanked in {repo:?} (yank #{} by {} at {}{}); stage it again to lift that yank first",
        last.id,
        last.requested_by,
        last.requested_at,
        if last.replacement_json.is_some() {
            ", with a replacement"
        } else {
            ""
        }
    )))
}

/// The yank routes' OpenAPI paths and schemas (merged into `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(yank_target, list_yanks, fleet_yank, fleet_yanks),
    components(schemas(YankRequest, FleetYankRequest, Yank))
)]
pub(crate) struct YanksDoc;
