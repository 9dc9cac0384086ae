//! Build provenance on the server's upload path (issue #7, part 5).
//!
//! - `PUT /api/v1/repos/{repo}/provenance-policy` (scope
//!   `provenance:admin@repo`) stores the repository's policy: the same
//!   TOML/JSON format and the same file as `custody repo provenance-policy
//!   set` (custody-repo's `provenance-policy.json` in the repository's
//!   authoring directory, parsed and checked by custody-provenance).
//!   `GET` shows it, `DELETE` removes it. Every change is audited (and so
//!   logged as an `admin_action` entry of the transparency log).
//! - `PUT /api/v1/repos/{repo}/provenance/{sha256}` (scope
//!   `target:upload@repo`) uploads a DSSE envelope, at most
//!   [`MAX_ENVELOPE_BYTES`], into the blob store (so object storage holds
//!   it like the targets). It must parse as DSSE; nothing is trusted yet.
//! - Staging (`PUT …/targets/{name}` with `provenance_sha256`) runs
//!   [`gate_stage`]: custody-provenance's `evaluate_for_role` against the
//!   stored policy. Refusals are 422 `provenance_refused` naming the rule,
//!   the path pattern and custody-provenance's reason. An accepted
//!   envelope's sha256 goes into `custom.custody.provenance.sha256`, which
//!   publish signs into the targets metadata and copies into the log's
//!   `target_publish` entry. At publish custody-repo's own gate evaluates
//!   the same envelope again against the policy in force then.
//! - `GET /api/v1/repos/{repo}/provenance/{sha256}` serves an envelope that
//!   a staged or published target of the repository names, byte for byte,
//!   so auditors can re-run the evaluation and compare digests.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::put;
use axum::{Json, Router};
use custody_repo::custody_provenance::{self, Decision, Policy, Reason, Refused};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::authoring::AuthoringError;
use super::blobs::Sha256Hex;
use super::{authoring, declared_length, repo_param, Repos, Upload};
use crate::auth::scope::ScopeKind;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::storage::BlobRecord;

pub use super::authoring::MAX_ENVELOPE_BYTES;

type St = State<Arc<Repos>>;
type ApiResult<T> = Result<T, ApiError>;

pub fn router() -> Router<Arc<Repos>> {
    let envelopes = Router::new()
        .route(
            "/api/v1/repos/{repo}/provenance/{sha256}",
            put(upload_envelope).get(get_envelope),
        )
        // The body is read with our own bound (413 names it).
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route(
            "/api/v1/repos/{repo}/provenance-policy",
            put(set_policy).get(get_policy).delete(clear_policy),
        )
        .layer(DefaultBodyLimit::max(
            usize::try_from(super::authoring::MAX_POLICY_BYTES).unwrap_or(usize::MAX),
        ))
        .merge(envelopes)
}

fn refused(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "provenance_refused",
        message,
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

// ------------------------------------------------------------- policy

/// A repository's provenance policy as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyInfo {
    pub repo: String,
    /// sha256 of the stored JSON form
    pub sha256: String,
    /// rule names, in evaluation order (the first matching rule applies)
    pub rules: Vec<String>,
    /// the policy (custody-provenance `PolicySpec`, JSON form)
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
}

fn policy_info(repo: &str, policy: &Policy) -> ApiResult<PolicyInfo> {
    let json = serde_json::to_vec_pretty(policy.spec())
        .map_err(|e| ApiError::internal(format!("provenance policy: {e}")))?;
    Ok(PolicyInfo {
        repo: repo.to_owned(),
        sha256: sha256_hex(&json),
        rules: policy.spec().rules.iter().map(|r| r.name.clone()).collect(),
        policy: serde_json::to_value(policy.spec())
            .map_err(|e| ApiError::internal(format!("provenance policy: {e}")))?,
    })
}

fn policy_summary(policy: &Policy) -> String {
    let rules: Vec<String> = policy
        .spec()
        .rules
        .iter()
        .map(|r| {
            format!(
                "{} (paths {:?}, roles {:?}, builders {:?}, {}-of-{} signers)",
                r.name,
                r.paths,
                r.roles,
                r.builders,
                r.signers.threshold,
                r.signers.keys.len()
            )
        })
        .collect();
    format!(
        "rules [{}]; allow_unattested {:?}",
        rules.join("; "),
        policy.spec().allow_unattested
    )
}

#[utoipa::path(put, path = "/api/v1/repos/{repo}/provenance-policy", tag = "provenance",
    security(("bearer" = [])), params(("repo" = String, Path)),
    request_body(content = String, description = "the policy: JSON (`content-type: application/json`) or TOML (`application/toml`); the format of `custody repo provenance-policy set` (custody-provenance PolicySpec)"),
    responses((status = 200, body = PolicyInfo),
              (status = 400, body = ErrorBody, description = "the policy does not parse or breaks a policy rule (named)"),
              (status = 403, body = ErrorBody, description = "needs provenance:admin for the repository"),
              (status = 404, body = ErrorBody)))]
async fn set_policy(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<Json<PolicyInfo>> {
    st.authorize(
        &caller,
        &repo,
        ScopeKind::ProvenanceAdmin,
        "provenance.policy.set",
    )
    .await?;
    let toml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("toml"));
    // custody-provenance picks the format by the name's extension.
    let file_name = if toml {
        "request-body.toml"
    } else {
        "request-body.json"
    };
    let r = repo.clone();
    let result = authoring(&st, move |s| {
        s.authoring
            .set_provenance_policy(&r, file_name, &body, chrono::Utc::now())
    })
    .await;
    let audit = st
        .auth
        .audit_of(&caller, "provenance.policy.set", Some(&repo), None);
    let policy = match result {
        Ok(v) => v,
        Err(e) => return Err(audit.refused("rejected", e).await),
    };
    let info = policy_info(&repo, &policy)?;
    let summary = policy_summary(&policy);
    audit
        .ok(&format!("policy sha256 {}: {summary}", info.sha256))
        .await?;
    Ok(Json(info))
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/provenance-policy", tag = "provenance",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 200, body = PolicyInfo),
              (status = 404, body = ErrorBody, description = "no repository, or no policy set")))]
async fn get_policy(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<Json<PolicyInfo>> {
    st.authorize_read(&caller, &repo, "provenance.policy.read")
        .await?;
    match load_policy(&st, &repo).await? {
        Some(p) => Ok(Json(policy_info(&repo, &p)?)),
        None => Err(ApiError::not_found(format!(
            "repository {repo:?} has no provenance policy; set one with PUT /api/v1/repos/{repo}/provenance-policy (scope provenance:admin@{repo})"
        ))),
    }
}

#[utoipa::path(delete, path = "/api/v1/repos/{repo}/provenance-policy", tag = "provenance",
    security(("bearer" = [])), params(("repo" = String, Path)),
    responses((status = 204, description = "removed: staging no longer needs provenance"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn clear_policy(
    State(st): St,
    caller: Caller,
    Path(repo): Path<String>,
) -> ApiResult<StatusCode> {
    st.authorize(
        &caller,
        &repo,
        ScopeKind::ProvenanceAdmin,
        "provenance.policy.clear",
    )
    .await?;
    let r = repo.clone();
    let had = authoring(&st, move |s| {
        s.authoring.clear_provenance_policy(&r, chrono::Utc::now())
    })
    .await?;
    if !had {
        return Err(ApiError::not_found(format!(
            "repository {repo:?} has no provenance policy to remove"
        )));
    }
    st.auth
        .audit(
            &caller,
            "provenance.policy.clear",
            Some(&repo),
            None,
            "ok",
            "provenance policy removed",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The stored policy; `None` when the repository has none or has no
/// authoring state on this server (a staging-only repository).
async fn load_policy(st: &Arc<Repos>, repo: &str) -> ApiResult<Option<Policy>> {
    let (st2, r) = (st.clone(), repo.to_owned());
    let result = tokio::task::spawn_blocking(move || st2.authoring.provenance_policy(&r))
        .await
        .map_err(|e| ApiError::internal(format!("provenance policy task failed: {e}")))?;
    match result {
        Ok(p) => Ok(p),
        Err(AuthoringError::NoRepo(_)) => Ok(None),
        Err(e) => {
            tracing::error!(repo, error = %e, "reading the provenance policy failed");
            Err(ApiError::internal(e.to_string()))
        }
    }
}

// ---------------------------------------------------------- envelopes

#[utoipa::path(put, path = "/api/v1/repos/{repo}/provenance/{sha256}", tag = "provenance",
    security(("bearer" = [])),
    params(("repo" = String, Path), ("sha256" = String, Path, description = "declared SHA-256 (hex) of the envelope bytes")),
    request_body(content = Object, content_type = "application/json", description = "a DSSE envelope (in-toto Statement v1, SLSA Provenance v1 predicate), at most 1 MiB; checked against the policy when a target is staged with it"),
    responses((status = 201, body = BlobRecord),
              (status = 413, body = ErrorBody, description = "larger than 1 MiB"),
              (status = 422, body = ErrorBody, description = "not a DSSE envelope, or the bytes do not hash to the declared sha256")))]
async fn upload_envelope(
    State(st): St,
    caller: Caller,
    Path((repo, sha)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobRecord>)> {
    let up = Upload::begin(&st, &caller, &repo, &sha, "provenance.upload").await?;
    let bytes = match receive_envelope(&sha, declared_length(&headers), body).await {
        Ok(b) => b,
        Err((e, detail)) => return up.refused("rejected", &detail, e).await,
    };
    let len = bytes.len();
    let stream = futures_util::stream::once(async move { Ok::<_, String>(bytes) });
    let size = st
        .blobs
        .put(&up.hash, Box::pin(stream), MAX_ENVELOPE_BYTES)
        .await?;
    up.finish(size, &format!("DSSE envelope, {len} bytes"))
        .await
}

/// 413 for an envelope over [`MAX_ENVELOPE_BYTES`] (`len` in words).
fn envelope_too_large(sha: &str, len: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "provenance envelope {sha} is {len} bytes; the limit is {MAX_ENVELOPE_BYTES} bytes (1 MiB)"
        ),
    )
}

/// The envelope body, bounded, hashing to `sha` and parsing as DSSE; or
/// the refusal and the detail for its audit record.
async fn receive_envelope(
    sha: &str,
    declared: Option<u64>,
    body: Body,
) -> Result<bytes::Bytes, (ApiError, String)> {
    if let Some(len) = declared.filter(|l| *l > MAX_ENVELOPE_BYTES) {
        return Err((
            envelope_too_large(sha, len),
            format!("{len} bytes, limit {MAX_ENVELOPE_BYTES}"),
        ));
    }
    let limit = usize::try_from(MAX_ENVELOPE_BYTES).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let detail = e.to_string();
        // A body over the bound is the only length error; anything else
        // is a broken upload.
        let err = if detail.to_ascii_lowercase().contains("length limit") {
            envelope_too_large(sha, format!("more than {MAX_ENVELOPE_BYTES}"))
        } else {
            ApiError::bad_request(format!("reading the envelope body: {detail}"))
        };
        (err, detail)
    })?;
    let actual = sha256_hex(&bytes);
    let problem = if actual != sha {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash_mismatch",
            format!(
                "provenance envelope hash mismatch: declared sha256 {sha}, received bytes hash to {actual} ({} bytes)",
                bytes.len()
            ),
        )
    } else if let Err(e) =
        custody_provenance::Envelope::parse(&bytes, &custody_provenance::Limits::default())
    {
        refused(format!(
            "provenance envelope {sha} is not a DSSE envelope custody accepts: {e}"
        ))
    } else {
        return Ok(bytes);
    };
    let detail = problem.message.clone();
    Err((problem, detail))
}

#[utoipa::path(get, path = "/api/v1/repos/{repo}/provenance/{sha256}", tag = "provenance",
    security(("bearer" = [])), params(("repo" = String, Path), ("sha256" = String, Path)),
    responses((status = 200, content_type = "application/json", description = "the envelope bytes exactly as accepted (their sha256 is the target's custom.custody.provenance.sha256)"),
              (status = 404, body = ErrorBody, description = "no staged or published target of the repository names this envelope")))]
async fn get_envelope(
    State(st): St,
    caller: Caller,
    Path((repo, sha)): Path<(String, String)>,
) -> ApiResult<(HeaderMap, Vec<u8>)> {
    repo_param(&repo)?;
    let hash = Sha256Hex::parse(&sha).map_err(ApiError::bad_request)?;
    st.auth
        .authorize_read(&caller, &repo, "provenance.read")
        .await?;
    let staged = st.storage.list_staged(&repo).await?;
    let named = staged
        .iter()
        .any(|t| custody_provenance::provenance_digest(Some(&t.custom)) == Some(sha.as_str()));
    let bytes = if named {
        Some(read_envelope(&st, &hash).await?)
    } else {
        // Accepted at a publish (custody-repo keeps `provenance/<sha>.dsse.json`),
        // though the staging row has changed since.
        let (st2, r, h) = (st.clone(), repo.clone(), hash.clone());
        tokio::task::spawn_blocking(move || st2.authoring.accepted_envelope(&r, &h))
            .await
            .map_err(|e| ApiError::internal(format!("provenance read task failed: {e}")))?
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    let Some(bytes) = bytes else {
        return Err(ApiError::not_found(format!(
            "no staged or published target of repository {repo:?} names provenance envelope {sha}"
        )));
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok((h, bytes))
}

/// The envelope bytes from the blob store (bounded; the hash is checked
/// again, a store that returns other bytes is an error, not an answer).
async fn read_envelope(st: &Arc<Repos>, hash: &Sha256Hex) -> ApiResult<Vec<u8>> {
    let path = st.blobs.local_file(hash).await?;
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "reading a provenance envelope");
        ApiError::internal("blob store error (see server log)")
    })?;
    if bytes.len() as u64 > MAX_ENVELOPE_BYTES || sha256_hex(&bytes) != hash.as_str() {
        tracing::error!(blob = hash.as_str(), "stored provenance envelope changed");
        return Err(ApiError::internal(format!(
            "stored provenance envelope {} no longer has its digest or size (see server log)",
            hash.as_str()
        )));
    }
    Ok(bytes)
}

/// For publish: a local file holding the envelope a staged target's
/// `custom` names (`None` without provenance). custody-repo reads it and
/// checks it again against the policy when it adds the target.
pub async fn envelope_file(
    st: &Arc<Repos>,
    custom: Option<&serde_json::Value>,
) -> ApiResult<Option<std::path::PathBuf>> {
    let Some(sha) = custody_provenance::provenance_digest(custom) else {
        return Ok(None);
    };
    let hash = Sha256Hex::parse(sha)
        .map_err(|e| ApiError::internal(format!("staged custom.custody.provenance.sha256: {e}")))?;
    Ok(Some(st.blobs.local_file(&hash).await?))
}

// -------------------------------------------------------------- stage

/// What the stage handler records: the target's `custom` (with the
/// accepted envelope's digest) and a line for the audit record.
pub struct Gated {
    pub custom: serde_json::Value,
    pub note: Option<String>,
}

/// The provenance gate of `PUT /api/v1/repos/{repo}/targets/{name}`:
/// `custom` as given (a JSON object), the target blob's sha256, and the
/// envelope named by the request, if any.
pub async fn gate_stage(
    st: &Arc<Repos>,
    caller: &Caller,
    repo: &str,
    name: &str,
    blob_sha256: &str,
    custom: serde_json::Value,
    provenance_sha256: Option<&str>,
) -> ApiResult<Gated> {
    if custody_provenance::names_provenance(&custom) {
        return Err(ApiError::bad_request(format!(
            "custom.custody.provenance of target {name:?} is set by the server from a checked envelope; \
             give the envelope as provenance_sha256 instead"
        )));
    }
    if let Err(e) = custody_provenance::check_can_carry_digest(&custom) {
        return Err(ApiError::bad_request(format!(
            "target {name:?}: {e} (the server adds custody.provenance to it)"
        )));
    }
    let envelope = match provenance_sha256 {
        None => None,
        Some(sha) => {
            let hash = Sha256Hex::parse(sha)
                .map_err(|e| ApiError::bad_request(format!("provenance_sha256: {e}")))?;
            let blob = st.storage.get_blob(repo, sha).await?.ok_or_else(|| {
                ApiError::conflict(format!(
                    "provenance envelope {sha} has not been uploaded to repository {repo:?}; \
                     upload it first (PUT /api/v1/repos/{repo}/provenance/{sha})"
                ))
            })?;
            if u64::try_from(blob.size).unwrap_or(u64::MAX) > MAX_ENVELOPE_BYTES {
                return Err(envelope_too_large(sha, blob.size));
            }
            Some(read_envelope(st, &hash).await?)
        }
    };
    let Some(policy) = load_policy(st, repo).await? else {
        if envelope.is_some() {
            return deny(
                st,
                caller,
                repo,
                name,
                format!(
                    "target {name:?}: a provenance envelope was given but repository {repo:?} has no provenance policy, \
                     so nothing could check it and custody does not record provenance unchecked; \
                     set a policy (PUT /api/v1/repos/{repo}/provenance-policy) or stage without provenance_sha256"
                ),
            )
            .await;
        }
        return Ok(Gated { custom, note: None });
    };
    // Rules by delegated role need the role that will list the target.
    let role = if policy.spec().rules.iter().any(|r| !r.roles.is_empty()) {
        let (r, n) = (repo.to_owned(), name.to_owned());
        Some(authoring(st, move |s| s.authoring.role_for_path(&r, &n)).await?)
    } else {
        None
    };
    let (p, n, ro, digest) = (
        policy.clone(),
        name.to_owned(),
        role.clone(),
        blob_sha256.to_owned(),
    );
    let decision = tokio::task::spawn_blocking(move || {
        let hashes = BTreeMap::from([("sha256".to_owned(), digest)]);
        custody_provenance::evaluate_for_role(&p, &n, ro.as_deref(), &hashes, envelope.as_deref())
    })
    .await
    .map_err(|e| ApiError::internal(format!("provenance check task failed: {e}")))?;
    match decision {
        Ok(Decision::Attested(a)) => {
            let custom =
                custody_provenance::with_provenance_digest(Some(custom), &a.envelope_sha256)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(Gated {
                custom,
                note: Some(format!(
                    "provenance {} accepted by rule {:?}: builder {:?}, source {:?} at {:?}, signers {:?}",
                    a.envelope_sha256,
                    a.rule,
                    a.builder,
                    a.source.repository,
                    a.source.git_ref,
                    a.signers
                )),
            })
        }
        Ok(Decision::Unattested { pattern }) => Ok(Gated {
            custom,
            note: Some(format!(
                "no provenance: allowed by allow_unattested {pattern:?}"
            )),
        }),
        Err(why) => {
            let msg = refusal_message(&policy, repo, name, role.as_deref(), &why);
            deny(st, caller, repo, name, msg).await
        }
    }
}

async fn deny<T>(
    st: &Arc<Repos>,
    caller: &Caller,
    repo: &str,
    name: &str,
    msg: String,
) -> ApiResult<T> {
    st.auth
        .audit(
            caller,
            "target.stage",
            Some(repo),
            Some(name),
            "refused",
            &msg,
        )
        .await?;
    Err(refused(msg))
}

/// The refusal, with the rule's matching path (or role) pattern and what
/// to do about a missing envelope.
fn refusal_message(
    policy: &Policy,
    repo: &str,
    name: &str,
    role: Option<&str>,
    why: &Refused,
) -> String {
    let rule = why
        .rule
        .as_deref()
        .and_then(|n| policy.spec().rules.iter().find(|r| r.name == n));
    let context = match rule {
        Some(r) => {
            let by_path = r
                .paths
                .iter()
                .find(|p| custody_tuf::path_matches_pattern(name, p));
            let by_role = role.and_then(|ro| {
                r.roles
                    .iter()
                    .find(|p| custody_tuf::fnmatch(ro, p))
                    .map(|p| (ro, p))
            });
            match (by_path, by_role) {
                (Some(p), _) => format!("rule {:?} (path pattern {p:?})", r.name),
                (None, Some((ro, p))) => {
                    format!("rule {:?} (role {ro:?} matches role pattern {p:?})", r.name)
                }
                (None, None) => format!("rule {:?}", r.name),
            }
        }
        None => format!(
            "no rule (rules {:?}; allow_unattested {:?})",
            policy
                .spec()
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            policy.spec().allow_unattested
        ),
    };
    let mut msg = format!(
        "target {name:?} refused by the provenance policy of repository {repo:?}, {context}: {why}"
    );
    if matches!(why.reason, Reason::MissingProvenance { .. }) {
        msg.push_str(&format!(
            "; upload the DSSE envelope (PUT /api/v1/repos/{repo}/provenance/{{sha256}}, or custody server upload --provenance FILE) and stage with \"provenance_sha256\""
        ));
    }
    msg
}

#[derive(OpenApi)]
#[openapi(
    paths(set_policy, get_policy, clear_policy, upload_envelope, get_envelope),
    components(schemas(PolicyInfo))
)]
pub struct ProvenanceDoc;
