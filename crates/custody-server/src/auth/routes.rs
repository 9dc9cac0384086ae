//! The auth slice's routes: trade a credential or an OIDC ID token for a
//! short-lived admin token (`/api/v1/token`), revoke it, ask who you are
//! (`/api/v1/whoami`), and manage bootstrap credentials
//! (`/api/v1/credentials…`, `fleet:admin`), and read the audit trail
//! (`/api/v1/audit`, `audit:read`). Their OpenAPI paths are [`AuthDoc`],
//! merged into `/openapi.json` by `crate::openapi`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::credential::{self, PresentedCredential};
use super::oidc::OidcError;
use super::scope::{fleet_admin, validate_repo_name, Scope, ScopeKind, ScopeSet};
use super::token::{self, Claims};
use super::{Auth, Caller, PeerAddr};
use crate::error::{json_body, ApiError, ErrorBody};
use crate::ids::random_hex;
use crate::storage::{now, AuditRecord, CredentialRecord, NewAudit};

type ApiResult<T> = Result<T, ApiError>;

/// The auth routes, for any router state the auth service can be taken
/// from (the server's is `Arc<AppState>`).
pub(crate) fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Auth: FromRef<S>,
{
    Router::new()
        .route("/api/v1/token", post(mint_token).delete(revoke_own_token))
        .route("/api/v1/whoami", get(whoami))
        .route(
            "/api/v1/credentials",
            post(create_credential).get(list_credentials),
        )
        .route("/api/v1/credentials/{id}/rotate", post(rotate_credential))
        .route("/api/v1/credentials/{id}/revoke", post(revoke_credential))
        .route("/api/v1/audit", get(list_audit))
}

/// The auth routes' OpenAPI paths and schemas.
#[derive(OpenApi)]
#[openapi(
    paths(
        mint_token,
        revoke_own_token,
        whoami,
        create_credential,
        list_credentials,
        rotate_credential,
        revoke_credential,
        list_audit
    ),
    components(schemas(
        TokenRequest,
        TokenResponse,
        WhoAmI,
        CreateCredential,
        CredentialSecret,
        CredentialRecord,
        AuditRecord,
        NewAudit
    ))
)]
pub(crate) struct AuthDoc;

// ---------------------------------------------------------------- tokens

/// Exchange a bootstrap credential or a CI OIDC ID token for a short-lived
/// admin token. Give exactly one of `credential` and `oidc_token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `cst1.<id>.<secret>` as shown once at creation.
    pub(crate) credential: Option<String>,
    /// An OIDC ID token from a configured CI issuer.
    pub(crate) oidc_token: Option<String>,
    /// Narrow the token to these scopes (default: everything granted).
    pub(crate) scopes: Option<Vec<String>>,
    /// Lifetime; default `token_ttl_seconds` (900), at most
    /// `token_max_ttl_seconds` (≤ 3600).
    pub(crate) ttl_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenResponse {
    pub(crate) token: String,
    pub(crate) token_type: String,
    pub(crate) expires_at: i64,
    pub(crate) expires_in: u64,
    pub(crate) subject: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) jti: String,
}

fn oidc_error(e: OidcError) -> ApiError {
    match e {
        OidcError::Invalid(_) | OidcError::UnknownIssuer { .. } => {
            ApiError::unauthorized(e.to_string())
        }
        OidcError::NoRule { .. } => ApiError::forbidden(e.to_string()),
        OidcError::Fetch { .. } => {
            tracing::warn!(error = %e, "OIDC key fetch failed");
            ApiError::new(StatusCode::BAD_GATEWAY, "issuer_unreachable", e.to_string())
        }
    }
}

#[utoipa::path(post, path = "/api/v1/token", tag = "auth", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "too many token requests from this address; see Retry-After")))]
async fn mint_token(
    State(auth): State<Auth>,
    peer: Option<axum::Extension<PeerAddr>>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> ApiResult<Json<TokenResponse>> {
    // Before anything is parsed or looked up: guessing secrets costs time.
    let ip = peer.map(|axum::Extension(p)| p.0.ip());
    if let Err(wait) = auth.inner.limiter.check(ip) {
        tracing::warn!(peer = ?ip, "token request rate limited");
        return Err(ApiError::rate_limited(
            wait,
            format!(
                "too many token requests from this address (limit {} per minute, token_requests_per_minute); retry in {} ms",
                auth.inner.limiter.per_minute(),
                wait.as_millis()
            ),
        ));
    }
    let req = json_body(body)?;
    let cfg = &auth.inner.settings;
    let at = now();
    let ttl = req.ttl_seconds.unwrap_or(cfg.token_ttl_seconds);
    if ttl == 0 || ttl > cfg.token_max_ttl_seconds {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds must be 1..={}, got {ttl}",
            cfg.token_max_ttl_seconds
        )));
    }
    let (subject, granted, cred, cgen) = match (req.credential, req.oidc_token) {
        (Some(c), None) => {
            let presented = PresentedCredential::parse(&c)
                .map_err(|e| ApiError::unauthorized(e.to_string()))?;
            let record = auth.inner.storage.get_credential(&presented.id).await?;
            let Some(record) = record else {
                tracing::warn!(id = %presented.id, "token request with unknown credential id");
                return Err(ApiError::unauthorized(
                    "credential is unknown, revoked, or its secret is wrong",
                ));
            };
            if record.revoked_at.is_some() || !presented.matches(&record.secret_hash) {
                let why = if record.revoked_at.is_some() {
                    "credential is revoked"
                } else {
                    "secret does not match"
                };
                auth.audit_as(
                    &format!("credential:{} ({})", record.id, record.name),
                    &[],
                    "token.mint",
                    None,
                    None,
                    "denied",
                    why,
                )
                .await?;
                return Err(ApiError::unauthorized(
                    "credential is unknown, revoked, or its secret is wrong",
                ));
            }
            let scopes = ScopeSet::parse_all(&record.scopes)
                .map_err(|e| ApiError::internal(format!("stored credential scopes: {e}")))?;
            (
                format!("credential:{} ({})", record.id, record.name),
                scopes,
                Some(record.id),
                Some(record.generation),
            )
        }
        (None, Some(t)) => {
            if auth.inner.oidc.is_empty() {
                return Err(ApiError::bad_request(
                    "no OIDC providers are configured on this server ([[oidc]] in the config)",
                ));
            }
            let grant = match auth.inner.oidc.verify(&t, at).await {
                Ok(g) => g,
                Err(e @ OidcError::NoRule { .. }) => {
                    auth.audit_as(
                        "oidc",
                        &[],
                        "token.mint",
                        None,
                        None,
                        "denied",
                        &e.to_string(),
                    )
                    .await?;
                    return Err(oidc_error(e));
                }
                Err(e) => return Err(oidc_error(e)),
            };
            (
                format!("{} [rules: {}]", grant.identity, grant.rules.join(", ")),
                grant.scopes,
                None,
                None,
            )
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"credential\" and \"oidc_token\"",
            ))
        }
    };
    let scopes = match req.scopes {
        Some(list) => {
            let requested =
                ScopeSet::parse_all(&list).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if let Some(s) = granted.first_not_covered(&requested) {
                return Err(ApiError::forbidden(format!(
                    "scope {s} is not granted to {subject} (granted: {})",
                    granted.strings().join(", ")
                )));
            }
            requested
        }
        None => granted,
    };
    if scopes.is_empty() {
        return Err(ApiError::forbidden(format!("{subject} has no scopes")));
    }
    if !cfg.allow_upload_and_publish {
        if let Some(msg) = scopes.separation_of_duties_conflict() {
            auth.audit_as(
                &subject,
                &scopes.strings(),
                "token.mint",
                None,
                None,
                "denied",
                &msg,
            )
            .await?;
            return Err(ApiError::forbidden(msg));
        }
    }
    let ttl_i = i64::try_from(ttl).unwrap_or(3600);
    let claims = Claims {
        iss: token::ISSUER.into(),
        aud: token::AUDIENCE.into(),
        sub: subject.clone(),
        cred,
        cgen,
        scopes: scopes.strings(),
        iat: at,
        nbf: at,
        exp: at + ttl_i,
        jti: random_hex(16),
    };
    let signed = auth
        .inner
        .tokens
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    auth.audit_as(
        &subject,
        &claims.scopes,
        "token.mint",
        None,
        Some(&claims.jti),
        "ok",
        &format!("ttl {ttl} s"),
    )
    .await?;
    Ok(Json(TokenResponse {
        token: signed,
        token_type: "Bearer".into(),
        expires_at: claims.exp,
        expires_in: ttl,
        subject,
        scopes: claims.scopes,
        jti: claims.jti,
    }))
}

#[utoipa::path(delete, path = "/api/v1/token", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "the presented token is revoked"), (status = 401, body = ErrorBody)))]
async fn revoke_own_token(State(auth): State<Auth>, caller: Caller) -> ApiResult<StatusCode> {
    auth.inner
        .storage
        .revoke_token(&caller.claims.jti, caller.claims.exp)
        .await?;
    auth.audit(
        &caller,
        "token.revoke",
        None,
        Some(&caller.claims.jti),
        "ok",
        "self",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WhoAmI {
    pub(crate) subject: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) credential: Option<String>,
    pub(crate) expires_at: i64,
    pub(crate) jti: String,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        subject: caller.claims.sub,
        scopes: caller.claims.scopes,
        credential: caller.claims.cred,
        expires_at: caller.claims.exp,
        jti: caller.claims.jti,
    })
}

// ----------------------------------------------------------- credentials

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// Human label, shown in audit records.
    pub(crate) name: String,
    pub(crate) scopes: Vec<String>,
}

/// The secret is shown in this response only; the server keeps a hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CredentialSecret {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) generation: i64,
    pub(crate) secret: String,
}

#[utoipa::path(post, path = "/api/v1/credentials", tag = "credentials", security(("bearer" = [])),
    request_body = CreateCredential,
    responses((status = 201, body = CredentialSecret), (status = 403, body = ErrorBody)))]
async fn create_credential(
    State(auth): State<Auth>,
    caller: Caller,
    body: Result<Json<CreateCredential>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<CredentialSecret>)> {
    auth.authorize(&caller, fleet_admin(), "credential.create", None)
        .await?;
    let req = json_body(body)?;
    if req.name.is_empty() || req.name.len() > 100 || req.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1..=100 bytes without control characters",
        ));
    }
    let scopes =
        ScopeSet::parse_all(&req.scopes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if scopes.is_empty() {
        return Err(ApiError::bad_request("scopes must not be empty"));
    }
    if !auth.inner.settings.allow_upload_and_publish {
        if let Some(msg) = scopes.separation_of_duties_conflict() {
            auth.audit(&caller, "credential.create", None, None, "denied", &msg)
                .await?;
            return Err(ApiError::forbidden(msg));
        }
    }
    let new = credential::generate(None).map_err(|e| ApiError::internal(e.to_string()))?;
    let record = CredentialRecord {
        id: new.id.clone(),
        name: req.name.clone(),
        secret_hash: new.secret_hash,
        scopes: scopes.strings(),
        generation: 1,
        created_at: now(),
        revoked_at: None,
    };
    auth.inner.storage.insert_credential(&record).await?;
    auth.audit(
        &caller,
        "credential.create",
        None,
        Some(&record.id),
        "ok",
        &format!("name {:?}, scopes {}", record.name, record.scopes.join(" ")),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CredentialSecret {
            id: record.id,
            name: record.name,
            scopes: record.scopes,
            generation: 1,
            secret: new.secret_string,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/credentials", tag = "credentials", security(("bearer" = [])),
    responses((status = 200, body = Vec<CredentialRecord>), (status = 403, body = ErrorBody)))]
async fn list_credentials(
    State(auth): State<Auth>,
    caller: Caller,
) -> ApiResult<Json<Vec<CredentialRecord>>> {
    auth.authorize(&caller, fleet_admin(), "credential.list", None)
        .await?;
    Ok(Json(auth.inner.storage.list_credentials().await?))
}

#[utoipa::path(post, path = "/api/v1/credentials/{id}/rotate", tag = "credentials",
    security(("bearer" = [])), params(("id" = String, Path, description = "credential id")),
    responses((status = 200, body = CredentialSecret), (status = 404, body = ErrorBody)))]
async fn rotate_credential(
    State(auth): State<Auth>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CredentialSecret>> {
    auth.authorize(&caller, fleet_admin(), "credential.rotate", Some(&id))
        .await?;
    let existing = auth
        .inner
        .storage
        .get_credential(&id)
        .await?
        .filter(|c| c.revoked_at.is_none())
        .ok_or_else(|| ApiError::not_found(format!("no live credential with id {id:?}")))?;
    let new =
        credential::generate(Some(&existing.id)).map_err(|e| ApiError::internal(e.to_string()))?;
    let generation = auth
        .inner
        .storage
        .rotate_credential(&id, &new.secret_hash)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no live credential with id {id:?}")))?;
    auth.audit(
        &caller,
        "credential.rotate",
        None,
        Some(&id),
        "ok",
        &format!("generation {generation}"),
    )
    .await?;
    Ok(Json(CredentialSecret {
        id: existing.id,
        name: existing.name,
        scopes: existing.scopes,
        generation,
        secret: new.secret_string,
    }))
}

#[utoipa::path(post, path = "/api/v1/credentials/{id}/revoke", tag = "credentials",
    security(("bearer" = [])), params(("id" = String, Path, description = "credential id")),
    responses((status = 204, description = "revoked; tokens it minted stop working at once"),
              (status = 404, body = ErrorBody)))]
async fn revoke_credential(
    State(auth): State<Auth>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.authorize(&caller, fleet_admin(), "credential.revoke", Some(&id))
        .await?;
    if !auth.inner.storage.revoke_credential(&id, now()).await? {
        return Err(ApiError::not_found(format!(
            "no live credential with id {id:?}"
        )));
    }
    auth.audit(&caller, "credential.revoke", None, Some(&id), "ok", "")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------- audit

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// At most this many records (1..=1000, default 100), newest first.
    pub limit: Option<i64>,
    /// Only records with an id below this (paging).
    pub before: Option<i64>,
    /// Only records about this repository (needs audit:read for it).
    pub repo: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery), responses((status = 200, body = Vec<AuditRecord>)))]
async fn list_audit(
    State(auth): State<Auth>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    if let Some(repo) = &q.repo {
        validate_repo_name(repo).map_err(ApiError::bad_request)?;
    }
    auth.authorize(
        &caller,
        Scope::new(ScopeKind::AuditRead, q.repo.as_deref()),
        "audit.read",
        None,
    )
    .await?;
    Ok(Json(
        auth.inner
            .storage
            .list_audit(q.limit.unwrap_or(100), q.before, q.repo.as_deref())
            .await?,
    ))
}
