//! The auth slice: who is calling the admin API and what they may do.
//!
//! It owns bootstrap credentials ([`credential`]), short-lived admin tokens
//! ([`token`]), OIDC workload identity (`oidc`), scopes and separation of
//! duties ([`scope`]), the per-address limit on token requests
//! (`ratelimit`), the audit trail, its settings (`settings`) and its routes
//! (`routes`: `/api/v1/token`, `/api/v1/whoami`, `/api/v1/credentials…`).
//!
//! "May this token do this" is decided in one place: [`Auth::authenticate`]
//! (signature, time, audience, revocation of the token and of the
//! credential generation that minted it) followed by [`Auth::authorize`]
//! (scope check, denial audited).
//!
//! The slice reaches nothing above it: it reads its settings from
//! [`AuthSettings`] (built by `crate::config`), keeps its records through
//! `crate::storage`, and hands each audit record to an [`AuditTrail`] (the
//! transparency log, wired in by `crate::state`). Handlers elsewhere take a
//! [`Caller`] extractor; any router state `S` with `Auth: FromRef<S>` works.
//!
//! Public API (for tests, fuzzing and tools): the [`token`], [`credential`]
//! and [`scope`] formats, and [`Auth::tokens`] to sign test tokens.

pub mod credential;
mod oidc;
mod ratelimit;
mod routes;
pub mod scope;
pub(crate) mod settings;
pub mod token;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use ring::rand::SecureRandom;

use crate::error::ApiError;
use crate::storage::{now, CredentialRecord, NewAudit, Storage, StorageError};
use oidc::OidcVerifier;
pub(crate) use ratelimit::PeerAddr;
use ratelimit::RateLimiter;
pub(crate) use routes::{router, AuthDoc};
/// Request bodies of the token and credential endpoints (public for the
/// JSON-body fuzz target, which parses every endpoint's body type).
pub use routes::{CreateCredential, TokenRequest};
use scope::{Scope, ScopeSet};
pub(crate) use settings::AuthSettings;
use token::{Claims, TokenError, TokenKeys};

/// Scopes of the credential created on first start. It administers
/// credentials and reads the audit log; it cannot upload or publish, so the
/// operator must create separate uploader and publisher credentials.
const BOOTSTRAP_SCOPES: &[&str] = &["fleet:admin", "audit:read"];

/// Why the auth slice could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{path}: {op}: {source}")]
    Io {
        path: std::path::PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("the OS random number generator failed")]
    Rng,
}

/// Where every audit record goes besides the database: the server's
/// transparency log. A trait, so that the auth slice does not depend on
/// the log module (the server state wires the log in).
#[async_trait]
pub(crate) trait AuditTrail: Send + Sync {
    async fn record(&self, entry: &NewAudit) -> Result<(), ApiError>;
}

/// The auth service: cheap to clone (one shared inner value).
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AuthSettings,
    storage: Arc<dyn Storage>,
    tokens: TokenKeys,
    oidc: OidcVerifier,
    /// Per-client-address limit on `POST /api/v1/token`.
    limiter: RateLimiter,
    trail: Arc<dyn AuditTrail>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// A started auth slice plus, on the very first start, the bootstrap
/// credential (to be shown once, never stored in clear).
pub(crate) struct Started {
    pub(crate) auth: Auth,
    pub(crate) bootstrap_credential: Option<String>,
}

impl Auth {
    /// Loads (or creates, in the database) the token key, creates the
    /// bootstrap credential when there is no credential at all, and sets up
    /// OIDC and the token-request limit.
    pub(crate) async fn start(
        settings: AuthSettings,
        storage: Arc<dyn Storage>,
        trail: Arc<dyn AuditTrail>,
    ) -> Result<Started, AuthStartError> {
        let key = match &settings.token_key_file {
            Some(path) => std::fs::read(path).map_err(io_err(path, "read token key file"))?,
            None => {
                let mut candidate = [0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut candidate)
                    .map_err(|_| AuthStartError::Rng)?;
                storage
                    .get_or_create_secret("token-hmac-sha256-v1", &candidate)
                    .await?
            }
        };
        let tokens = TokenKeys::new(&key)?;
        let bootstrap_credential = create_bootstrap_credential(storage.as_ref()).await?;
        let oidc = OidcVerifier::new(&settings.oidc);
        let limiter = RateLimiter::new(
            settings.token_requests_per_minute,
            settings.token_request_burst,
        );
        let inner = Inner {
            settings,
            storage,
            tokens,
            oidc,
            limiter,
            trail,
        };
        Ok(Started {
            auth: Auth {
                inner: Arc::new(inner),
            },
            bootstrap_credential,
        })
    }

    /// The server's admin-token keys (tests sign their own tokens with it).
    pub fn tokens(&self) -> &TokenKeys {
        &self.inner.tokens
    }

    /// Full token check, done on every admin call: signature, time,
    /// audience, then revocation of the token itself and of the credential
    /// (and credential generation) that minted it.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self
            .inner
            .tokens
            .verify(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let storage = &self.inner.storage;
        if storage.is_token_revoked(&claims.jti).await? {
            return Err(ApiError::unauthorized(format!(
                "token {} has been revoked",
                claims.jti
            )));
        }
        if let Some(cred_id) = &claims.cred {
            let cred = storage.get_credential(cred_id).await?;
            match cred {
                None => {
                    return Err(ApiError::unauthorized(format!(
                        "credential {cred_id} that minted this token no longer exists"
                    )))
                }
                Some(c) if c.revoked_at.is_some() => {
                    return Err(ApiError::unauthorized(format!(
                        "credential {cred_id} that minted this token has been revoked"
                    )))
                }
                Some(c) if Some(c.generation) != claims.cgen => {
                    return Err(ApiError::unauthorized(format!(
                        "credential {cred_id} has been rotated since this token was minted \
                         (token generation {:?}, current {})",
                        claims.cgen, c.generation
                    )))
                }
                Some(_) => {}
            }
        }
        let scopes = ScopeSet::parse_all(&claims.scopes)
            .map_err(|e| ApiError::unauthorized(format!("token scopes: {e}")))?;
        Ok(Caller { claims, scopes })
    }

    /// Requires `required`; a denial is audited and explained.
    pub async fn authorize(
        &self,
        caller: &Caller,
        required: Scope,
        action: &str,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        if caller.scopes.allows(&required) {
            return Ok(());
        }
        let detail = format!(
            "token lacks scope {required} (it has: {})",
            if caller.scopes.is_empty() {
                "none".to_string()
            } else {
                caller.scopes.strings().join(", ")
            }
        );
        let audit = self.audit_of(caller, action, required.repo.as_deref(), target);
        Err(audit.refused("denied", ApiError::forbidden(detail)).await)
    }

    /// Read access to a repository's admin data: any scope that names it.
    pub async fn authorize_read(
        &self,
        caller: &Caller,
        repo: &str,
        action: &str,
    ) -> Result<(), ApiError> {
        if caller.scopes.any_for_repo(repo) {
            return Ok(());
        }
        let detail = format!("token has no scope for repository {repo:?}");
        let audit = self.audit_of(caller, action, Some(repo), None);
        Err(audit.refused("denied", ApiError::forbidden(detail)).await)
    }

    /// The audit record of one call of `caller` (`action` on `repo` and
    /// `target`), written once its outcome is known: `ok`, or `refused`.
    pub fn audit_of<'a>(
        &'a self,
        caller: &'a Caller,
        action: &'a str,
        repo: Option<&'a str>,
        target: Option<&'a str>,
    ) -> AuditOf<'a> {
        AuditOf {
            auth: self,
            caller,
            action,
            repo,
            target,
        }
    }

    /// Audits an action of an authenticated caller.
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        repo: Option<&str>,
        target: Option<&str>,
        outcome: &str,
        detail: &str,
    ) -> Result<(), ApiError> {
        self.audit_as(
            caller.identity(),
            &caller.claims.scopes,
            action,
            repo,
            target,
            outcome,
            detail,
        )
        .await
    }

    /// Audits an action of any identity (devices, the server itself): a
    /// database record, then an entry of the transparency log.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit_as(
        &self,
        identity: &str,
        scopes: &[String],
        action: &str,
        repo: Option<&str>,
        target: Option<&str>,
        outcome: &str,
        detail: &str,
    ) -> Result<(), ApiError> {
        let entry = NewAudit {
            at: now(),
            identity: identity.to_string(),
            scopes: scopes.to_vec(),
            action: action.to_string(),
            repo: repo.map(str::to_string),
            target: target.map(str::to_string),
            outcome: outcome.to_string(),
            detail: detail.to_string(),
        };
        self.inner.storage.append_audit(&entry).await.map_err(|e| {
            tracing::error!(error = %e, action, "audit record could not be written");
            ApiError::internal("audit record could not be written (see server log)")
        })?;
        // Every audit record is also an entry of the transparency log.
        self.inner.trail.record(&entry).await
    }

    /// Hourly upkeep: forget clients back to a full token-request bucket
    /// and drop revocations of tokens that expired (with a margin for the
    /// verification leeway).
    pub(crate) async fn housekeeping(&self) {
        self.inner.limiter.prune();
        match self.inner.storage.purge_revoked_tokens(now() - 300).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired token revocations removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging token revocations failed"),
        }
    }
}

fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> AuthStartError + 'a {
    move |source| AuthStartError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// On the first start (no credential at all): a bootstrap credential with
/// [`BOOTSTRAP_SCOPES`], audited; its secret is returned to be shown once.
async fn create_bootstrap_credential(
    storage: &dyn Storage,
) -> Result<Option<String>, AuthStartError> {
    if storage.count_credentials().await? != 0 {
        return Ok(None);
    }
    let new = credential::generate(None).map_err(|_| AuthStartError::Rng)?;
    let at = now();
    storage
        .insert_credential(&CredentialRecord {
            id: new.id.clone(),
            name: "bootstrap".into(),
            secret_hash: new.secret_hash,
            scopes: BOOTSTRAP_SCOPES.iter().map(|s| s.to_string()).collect(),
            generation: 1,
            created_at: at,
            revoked_at: None,
        })
        .await?;
    storage
        .append_audit(&NewAudit {
            at,
            identity: "server".into(),
            scopes: vec![],
            action: "credential.bootstrap".into(),
            repo: None,
            target: Some(new.id.clone()),
            outcome: "ok".into(),
            detail: "first start: bootstrap credential created".into(),
        })
        .await?;
    Ok(Some(new.secret_string))
}

/// An authenticated admin caller (bearer token checked, credential alive).
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
    pub scopes: ScopeSet,
}

impl Caller {
    pub fn identity(&self) -> &str {
        &self.claims.sub
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <token> header")
        })?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("Authorization header is not ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization scheme must be Bearer"))?
            .trim();
        Auth::from_ref(state).authenticate(token).await
    }
}

/// One call's audit record, waiting for its outcome ([`Auth::audit_of`]).
pub struct AuditOf<'a> {
    auth: &'a Auth,
    caller: &'a Caller,
    action: &'a str,
    repo: Option<&'a str>,
    target: Option<&'a str>,
}

impl AuditOf<'_> {
    /// The call succeeded.
    pub async fn ok(&self, detail: &str) -> Result<(), ApiError> {
        self.outcome("ok", detail).await
    }

    /// The call ended with `outcome` (`ok`, `pending_signatures`, ...).
    pub async fn outcome(&self, outcome: &str, detail: &str) -> Result<(), ApiError> {
        let a = self;
        a.auth
            .audit(a.caller, a.action, a.repo, a.target, outcome, detail)
            .await
    }

    /// The call was refused or failed with `e` (its message is the detail):
    /// `e` to return, or the error of writing the record.
    pub async fn refused(&self, outcome: &str, e: ApiError) -> ApiError {
        match self.outcome(outcome, &e.message).await {
            Ok(()) => e,
            Err(audit) => audit,
        }
    }
}
