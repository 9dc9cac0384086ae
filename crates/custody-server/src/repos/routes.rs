//! The repository admin API under `/api/v1/repos` (JSON over HTTP, bearer
//! tokens): blobs, staging, yanks, repository creation, roles, signatures,
//! publish. OpenAPI paths are derived next to the handlers by `utoipa`
//! ([`ReposDoc`]), so the document cannot drift from the code.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::authoring::{PublishOutcome, RoleSigState, WantedTarget};
use super::blobs::Sha256Hex;
use super::{authoring, declared_length, repo_param, Repos, Upload};
use crate::auth::scope::{fleet_admin, validate_role_name, Scope, ScopeKind};
use crate::auth::Caller;
use crate::error::{json_body, ApiError, ErrorBody};
use crate::storage::now;
use crate::storage::{BlobRecord, PublishRecord, StagedTarget};

type St = State<Arc<Repos>>;
type ApiResult<T> = Result<T, ApiError>;

/// TUF target paths: relative, `/`-separated, no empty, `.` or `..`
/// segments, no backslash or control characters, at most 1024 bytes.
pub fn validate_target_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 1024 {
        return Err(format!(
            "target name must be 1..=1024 bytes, got {} bytes",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "target name {name:?} contains a control character or backslash"
        ));
    }
    for seg in name.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('.') {
            return Err(format!(
                "target name {name:?} has segment {seg:?}; segments must be non-empty and not start with '.'"
            ));
        }
    }
    Ok(())
}

pub(super) fn router() -> Router<Arc<Repos>> {
    let upload = Router::new()
        .route(
            "/api/v1/repos/{repo}/blobs/{sha256}",
            put(upload_blob).get(get_blob),
        )
        // Uploads are streamed to disk with our own limit (max_blob_bytes).
        .layer(DefaultBodyLimit::disable());
    // A signed copy of a big targets role can exceed the 1 MiB JSON limit;
    // custody-repo reads its own metadata up to 64 MiB.
    let sign = Router::new()
        .route(
            "/api/v1/repos/{repo}/roles/{role}/signatures",
            post(sign_role),
        )
        .layer(DefaultBodyLimit::max(64 << 20));
    Router::new()
        .route("/api/v1/repos/{repo}/blobs", get(list_blobs))
        .route("/api/v1/repos/{repo}/targets", get(list_staged))
        .route(
            "/api/v1/repos/{repo}/targets/{*name}",
            put(stage_target).get(get_staged),
        )
        .route("/api/v1/repos", get(list_repos))
        .route("/api/v1/repos/{repo}", post(create_repo))
        .route("/api/v1/repos/{repo}/roles/{role}", get(get_role))
        .route("/api/v1/repos/{repo}/publish", post(publish))
        .route("/api/v1/repos/{repo}/publishes", get(list_publishes))
        .layer(DefaultBodyLimit::max(1 << 20))
        .merge(upload)
        .merge(sign)
}

// ----------------------------------------------------------------- blobs

#[utoipa::path(put, path = "/api/v1/repos/{repo}/blobs/{sha256}", tag = "targets",
    security(("bearer" = [])),
    params(("repo" = String, Path), ("sha256" = String, Path, description = "declared SHA-256 (hex) of the body")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobRecord), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "bytes do not hash to the declared sha256")))]
async fn upload_blob(
    State(st): St,
    caller: Caller,
    Path((repo, sha)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobRecord>)> {
    let up = Upload::begin(&st, &caller, &repo, &sha, "blob.upload").await?;
    let limit = st.max_blob_bytes;
    if declared_length(&headers).is_some_and(|len| len > limit) {
        return Err(ApiError::from(super::blobs::BlobError::TooLarge { limit }));
    }
    let stream = body
        .into_data_stream()
        .map(|r| r.map_err(|e| e.to_string()));
    let size = match st.blobs.put(&up.hash, Box::pin(stream), limit).await {
        Ok(size) => size,
        Err(e) => return up.refused("failed", &e.to_string(), e.into()).await,
    };
    up.finish(size, &format!("{size} bytes")).await
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/blobs/{sha256}", tag = "targets",
    security(("bearer" = [])), params(("repo" = String, Path), ("sha256" = String, Path)),
    responses((status = 200, body = BlobRecord), (status = 404, body = ErrorBody)))]
async fn get_blob(
    State(st): St,
    caller: Caller,
    Path((repo, sha)): Path<(String, String)>,
) -> ApiResult<Json<BlobRecord>> {
    let what = ("blob", sha.as_str());
    st.read_one(
        &caller,
        &repo,
        "blob.read",
        what,
        st.storage.get_blob(&repo, &sha),
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/blobs", tag = "targets",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 200, body = Vec<BlobRecord>)))]
async fn list_blobs(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<Json<Vec<BlobRecord>>> {
    st.read(&caller, &repo, "blob.list", st.storage.list_blobs(&repo))
        .await
}

// --------------------------------------------------------------- targets

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageTarget {
    /// An uploaded blob of this repository.
    pub blob_sha256: String,
    /// TUF `custom` object for the target. `custody.provenance` is the
    /// server's: give the envelope as `provenance_sha256`.
    #[schema(value_type = Option<Object>)]
    pub custom: Option<serde_json::Value>,
    /// SHA-256 of a DSSE provenance envelope uploaded with
    /// `PUT /api/v1/repos/{repo}/provenance/{sha256}`. Checked against the
    /// repository's provenance policy (422 `provenance_refused` naming the
    /// rule); when accepted its digest goes into
    /// `custom.custody.provenance.sha256`. Required when a policy rule
    /// covers the target path.
    pub provenance_sha256: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/repos/{repo}/targets/{name}", tag = "targets",
    security(("bearer" = [])),
    params(("repo" = String, Path), ("name" = String, Path, description = "target path, may contain '/'")),
    request_body = StageTarget,
    responses((status = 200, body = StagedTarget),
              (status = 409, body = ErrorBody, description = "the blob or the provenance envelope is not uploaded"),
              (status = 413, body = ErrorBody, description = "the provenance envelope is larger than 1 MiB"),
              (status = 422, body = ErrorBody, description = "provenance_refused: the repository's provenance policy refuses the target (names the rule, the path pattern and why: missing envelope, subject digest, builder, source, ref, build type, signers)")))]
async fn stage_target(
    State(st): St,
    caller: Caller,
    Path((repo, name)): Path<(String, String)>,
    body: Result<Json<StageTarget>, JsonRejection>,
) -> ApiResult<Json<StagedTarget>> {
    repo_param(&repo)?;
    validate_target_name(&name).map_err(ApiError::bad_request)?;
    st.auth
        .authorize(
            &caller,
            Scope::new(ScopeKind::TargetStage, Some(&repo)),
            "target.stage",
            Some(&name),
        )
        .await?;
    let req = json_body(body)?;
    let custom = req.custom.unwrap_or_else(|| serde_json::json!({}));
    if !custom.is_object() {
        return Err(ApiError::bad_request("custom must be a JSON object"));
    }
    if custom.to_string().len() > 64 * 1024 {
        return Err(ApiError::bad_request("custom is larger than 64 KiB"));
    }
    let blob = st
        .storage
        .get_blob(&repo, &req.blob_sha256)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "blob {} has not been uploaded to repository {repo:?}; upload it first",
                req.blob_sha256
            ))
        })?;
    let gated = super::provenance::gate_stage(
        &st,
        &caller,
        &repo,
        &name,
        &blob.sha256,
        custom,
        req.provenance_sha256.as_deref(),
    )
    .await?;
    let target = StagedTarget {
        repo: repo.clone(),
        name: name.clone(),
        blob_sha256: blob.sha256,
        length: blob.size,
        custom: gated.custom,
        staged_at: now(),
        staged_by: caller.identity().to_string(),
    };
    st.storage.stage_target(&target).await?;
    let mut detail = format!("blob {} ({} bytes)", target.blob_sha256, target.length);
    if let Some(note) = gated.note {
        detail.push_str("; ");
        detail.push_str(&note);
    }
    st.auth
        .audit(
            &caller,
            "target.stage",
            Some(&repo),
            Some(&name),
            "ok",
            &detail,
        )
        .await?;
    Ok(Json(target))
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/targets/{name}", tag = "targets",
    security(("bearer" = [])), params(("repo" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = StagedTarget), (status = 404, body = ErrorBody)))]
async fn get_staged(
    State(st): St,
    caller: Caller,
    Path((repo, name)): Path<(String, String)>,
) -> ApiResult<Json<StagedTarget>> {
    let what = ("staged target", name.as_str());
    st.read_one(
        &caller,
        &repo,
        "target.read",
        what,
        st.storage.get_staged(&repo, &name),
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/targets", tag = "targets",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 200, body = Vec<StagedTarget>)))]
async fn list_staged(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<Json<Vec<StagedTarget>>> {
    st.read(&caller, &repo, "target.list", st.storage.list_staged(&repo))
        .await
}

// ------------------------------------------------------ publish and sign

/// Keys and threshold of an offline role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfflineRole {
    /// TUF public key objects (`keytype`, `scheme`, `keyval`).
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    pub threshold: u64,
}

/// A new hosted repository: the server creates its online snapshot and
/// timestamp keys; root and targets keys stay offline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRepo {
    pub root: OfflineRole,
    pub targets: OfflineRole,
    /// Delegate all targets to this many succinct hash bins (TAP 15; a
    /// power of two, 2..=65536) signed by an online `bins` key: after the
    /// offline targets key signs the delegation once, publishes go live
    /// with online signatures only and rewrite one bin each. For large
    /// repositories (a flat targets role is limited to 5 MB).
    #[serde(default)]
    pub hash_bins: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedRepo {
    pub repo: String,
    /// role → key id of the server's online key
    pub online_keys: BTreeMap<String, String>,
    /// roles that need offline signatures before the first publish
    pub unsigned_roles: Vec<String>,
}

fn parse_keys(
    role: &str,
    keys: &[serde_json::Value],
) -> ApiResult<Vec<custody_keys::TufPublicKey>> {
    if keys.is_empty() || keys.len() > 100 {
        return Err(ApiError::bad_request(format!(
            "{role}.keys must list 1..=100 public keys, got {}",
            keys.len()
        )));
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            serde_json::from_value(k.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "{role}.keys[{i}] is not a TUF public key (keytype, scheme, keyval): {e}"
                ))
            })
        })
        .collect()
}

#[utoipa::path(post, path = "/api/v1/repos/{repo}", tag = "publish",
    security(("bearer" = [])), params(("repo" = String, Path)), request_body = CreateRepo,
    responses((status = 201, body = CreatedRepo), (status = 409, body = ErrorBody)))]
async fn create_repo(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
    body: Result<Json<CreateRepo>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<CreatedRepo>)> {
    repo_param(&repo)?;
    st.auth
        .authorize(&caller, fleet_admin(), "repo.create", Some(&repo))
        .await?;
    let req = json_body(body)?;
    let root = (parse_keys("root", &req.root.keys)?, req.root.threshold);
    let targets = (
        parse_keys("targets", &req.targets.keys)?,
        req.targets.threshold,
    );
    let r = repo.clone();
    let bins = req.hash_bins;
    let result = authoring(&st, move |s| {
        s.authoring
            .create_with_bins(&r, root, targets, bins, chrono::Utc::now())
    })
    .await;
    let audit = st.auth.audit_of(&caller, "repo.create", Some(&repo), None);
    let online_keys = match result {
        Ok(k) => k,
        Err(e) => return Err(audit.refused("failed", e).await),
    };
    audit.ok(&format!("online keys {online_keys:?}")).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedRepo {
            repo,
            online_keys,
            unsigned_roles: vec!["root".into(), "targets".into()],
        }),
    ))
}

/// A hosted repository as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepoSummary {
    pub name: String,
    /// the newest publish, if it was ever published
    pub last_publish: Option<PublishRecord>,
}

#[utoipa::path(get, path = "/api/v1/repos", tag = "publish",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<RepoSummary>,
        description = "the hosted repositories the caller holds any scope for, by name")))]
async fn list_repos(State(st): St, caller: Caller) -> ApiResult<Json<Vec<RepoSummary>>> {
    let mut out = Vec::new();
    for name in st.authoring.repos() {
        if !caller.scopes.any_for_repo(&name) {
            continue;
        }
        let last_publish = st.storage.list_publishes(&name).await?.pop();
        out.push(RepoSummary { name, last_publish });
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/roles/{role}", tag = "publish",
    security(("bearer" = [])), params(("repo" = String, Path), ("role" = String, Path)),
    responses((status = 200, description = "the staged (draft) metadata of the role, to sign offline"),
              (status = 404, body = ErrorBody)))]
async fn get_role(
    State(st): St,
    caller: Caller,
    Path((repo, role)): Path<(String, String)>,
) -> ApiResult<(HeaderMap, Vec<u8>)> {
    repo_param(&repo)?;
    validate_role_name(&role).map_err(ApiError::bad_request)?;
    st.auth.authorize_read(&caller, &repo, "role.read").await?;
    let (r, ro) = (repo.clone(), role.clone());
    let bytes = authoring(&st, move |s| s.authoring.export_role(&r, &ro)).await?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok((h, bytes))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishResponse {
    /// server publish counter (`Storage::next_publish_version`)
    pub version: i64,
    #[serde(flatten)]
    pub outcome: PublishOutcome,
}

#[utoipa::path(post, path = "/api/v1/repos/{repo}/publish", tag = "publish",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 200, body = PublishResponse),
              (status = 409, body = ErrorBody, description = "targets need offline signatures (names the missing key ids); the draft is kept"),
              (status = 422, body = ErrorBody, description = "custody-repo or custody-tuf refused the repository")))]
async fn publish(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<Json<PublishResponse>> {
    st.authorize(&caller, &repo, ScopeKind::RepoPublish, "repo.publish")
        .await?;
    let staged = st.storage.list_staged(&repo).await?;
    let yanks = st.storage.list_yanks(&repo).await?;
    // A yank wins over a staging that is not newer than it; staging the
    // target again after the yank brings it back.
    let yanked_at = |name: &str| {
        yanks
            .iter()
            .filter(|y| y.target == name)
            .map(|y| y.requested_at)
            .max()
    };
    let mut wanted = Vec::new();
    for t in &staged {
        if yanked_at(&t.name).is_some_and(|at| at >= t.staged_at) {
            continue;
        }
        let hash = Sha256Hex::parse(&t.blob_sha256)
            .map_err(|e| ApiError::internal(format!("staged target {:?}: {e}", t.name)))?;
        let blob = st.blobs.local_file(&hash).await?;
        let custom = match &t.custom {
            serde_json::Value::Object(m) if m.is_empty() => None,
            v => Some(v.clone()),
        };
        wanted.push(WantedTarget {
            name: t.name.clone(),
            blob,
            sha256: t.blob_sha256.clone(),
            length: u64::try_from(t.length).unwrap_or(0),
            provenance: super::provenance::envelope_file(&st, custom.as_ref()).await?,
            custom,
        });
    }
    let mut yanked: Vec<String> = yanks
        .iter()
        .filter(|y| {
            !staged
                .iter()
                .any(|t| t.name == y.target && t.staged_at > y.requested_at)
        })
        .map(|y| y.target.clone())
        .collect();
    yanked.sort();
    yanked.dedup();
    let r = repo.clone();
    let result = authoring(&st, move |s| {
        s.authoring
            .publish(&r, &wanted, &yanked, &s.hosting, chrono::Utc::now())
    })
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let outcome = if e.code == "signatures_missing" {
                "pending_signatures"
            } else {
                "failed"
            };
            let audit = st.auth.audit_of(&caller, "repo.publish", Some(&repo), None);
            return Err(audit.refused(outcome, e).await);
        }
    };
    let live = went_live(&st, &caller, &repo, outcome, |version, o| {
        format!(
            "publish {version}: targets v{}, snapshot v{}, timestamp v{}; added {:?}; removed {:?}",
            o.targets_version, o.snapshot_version, o.timestamp_version, o.added, o.removed
        )
    })
    .await?;
    Ok(Json(live))
}

/// A publish went live (`POST …/publish`, or the signature that completed
/// a draft): count it, audit it (`detail` of the publish counter and the
/// outcome), and log its targets and any root key change.
async fn went_live(
    st: &Arc<Repos>,
    caller: &Caller,
    repo: &str,
    outcome: PublishOutcome,
    detail: impl FnOnce(i64, &PublishOutcome) -> String,
) -> ApiResult<PublishResponse> {
    let version = st
        .storage
        .next_publish_version(repo, caller.identity(), now())
        .await?;
    st.auth
        .audit(
            caller,
            "repo.publish",
            Some(repo),
            None,
            "ok",
            &detail(version, &outcome),
        )
        .await?;
    super::publish_log::record_publish(st, repo, &outcome).await?;
    super::publish_log::record_root_rotation(st, repo, caller.identity()).await?;
    Ok(PublishResponse { version, outcome })
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/publishes", tag = "publish",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 200, body = Vec<PublishRecord>)))]
async fn list_publishes(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<Json<Vec<PublishRecord>>> {
    st.read(
        &caller,
        &repo,
        "publish.list",
        st.storage.list_publishes(&repo),
    )
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignResponse {
    /// key ids whose signatures verified and were merged
    pub merged: Vec<String>,
    pub role: RoleSigState,
    /// set when this signature completed the draft and it went live
    pub published: Option<PublishResponse>,
}

#[utoipa::path(post, path = "/api/v1/repos/{repo}/roles/{role}/signatures", tag = "publish",
    security(("bearer" = [])), params(("repo" = String, Path), ("role" = String, Path)),
    request_body(content = Object, description = "a signed copy of the staged role metadata (GET …/roles/{role}) carrying the new signatures"),
    responses((status = 200, body = SignResponse),
              (status = 422, body = ErrorBody, description = "content differs from the draft, or no signature verifies")))]
async fn sign_role(
    State(st): St,
    caller: Caller,
    Path((repo, role)): Path<(String, String)>,
    body: bytes::Bytes,
) -> ApiResult<Json<SignResponse>> {
    repo_param(&repo)?;
    validate_role_name(&role).map_err(ApiError::bad_request)?;
    st.auth
        .authorize(
            &caller,
            Scope::new(ScopeKind::RoleSign(role.clone()), Some(&repo)),
            "role.sign",
            Some(&role),
        )
        .await?;
    let (r, ro) = (repo.clone(), role.clone());
    let result = authoring(&st, move |s| {
        s.authoring
            .merge_signatures(&r, &ro, &body, &s.hosting, chrono::Utc::now())
    })
    .await;
    let audit = st
        .auth
        .audit_of(&caller, "role.sign", Some(&repo), Some(&role));
    let (merged, state, live) = match result {
        Ok(v) => v,
        Err(e) => return Err(audit.refused("rejected", e).await),
    };
    audit
        .ok(&format!(
            "merged signatures by {merged:?}; {} of {} (threshold met: {})",
            state.signed_by.len(),
            state.threshold,
            state.threshold_met
        ))
        .await?;
    let published = match live {
        Some(outcome) => {
            let detail = |version, o: &PublishOutcome| {
                format!(
                    "publish {version} on signature of {role}: targets v{}, snapshot v{}, timestamp v{}",
                    o.targets_version, o.snapshot_version, o.timestamp_version
                )
            };
            Some(went_live(&st, &caller, &repo, outcome, detail).await?)
        }
        None => None,
    };
    Ok(Json(SignResponse {
        merged,
        role: state,
        published,
    }))
}

/// The repository routes' OpenAPI paths and schemas.
#[derive(OpenApi)]
#[openapi(
    paths(
        upload_blob,
        get_blob,
        list_blobs,
        stage_target,
        get_staged,
        list_staged,
        list_repos,
        create_repo,
        get_role,
        publish,
        list_publishes,
        sign_role
    ),
    components(schemas(
        ErrorBody,
        BlobRecord,
        StageTarget,
        StagedTarget,
        PublishRecord,
        RepoSummary,
        OfflineRole,
        CreateRepo,
        CreatedRepo,
        PublishResponse,
        PublishOutcome,
        SignResponse,
        RoleSigState
    ))
)]
pub struct ReposDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        for ok in ["a", "dir/file.bin", "a b/c"] {
            assert!(validate_target_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/abs", "a//b", "../x", "a/./b", "a\\b", "a\nb", ".hidden",
        ] {
            assert!(validate_target_name(bad).is_err(), "{bad:?}");
        }
    }
}
