//! Identity and authorisation for the admin API.

pub mod credential;
pub mod oidc;
pub mod token;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::scope::{Scope, ScopeSet};
use crate::state::AppState;
use token::Claims;

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

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
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
        state.authenticate(token).await
    }
}

impl AppState {
    /// Full token check, done on every admin call: signature, time,
    /// audience, then revocation of the token itself and of the credential
    /// (and credential generation) that minted it.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self
            .tokens
            .verify(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        if self.storage.is_token_revoked(&claims.jti).await? {
            return Err(ApiError::unauthorized(format!(
                "token {} has been revoked",
                claims.jti
            )));
        }
        if let Some(cred_id) = &claims.cred {
            let cred = self.storage.get_credential(cred_id).await?;
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
        self.audit(
            caller,
            action,
            required.repo.as_deref(),
            target,
            "denied",
            &detail,
        )
        .await?;
        Err(ApiError::forbidden(detail))
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
        self.audit(caller, action, Some(repo), None, "denied", &detail)
            .await?;
        Err(ApiError::forbidden(detail))
    }

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
        let entry = crate::storage::NewAudit {
            at: crate::state::now(),
            identity: identity.to_string(),
            scopes: scopes.to_vec(),
            action: action.to_string(),
            repo: repo.map(str::to_string),
            target: target.map(str::to_string),
            outcome: outcome.to_string(),
            detail: detail.to_string(),
        };
        self.storage.append_audit(&entry).await.map_err(|e| {
            tracing::error!(error = %e, action, "audit record could not be written");
            ApiError::internal("audit record could not be written (see server log)")
        })?;
        // Every audit record is also an entry of the transparency log.
        self.log
            .append(crate::log::EntryBody::AdminAction {
                identity: entry.identity,
                action: entry.action,
                repo: entry.repo,
                target: entry.target,
                outcome: entry.outcome,
                detail: entry.detail,
            })
            .await?;
        Ok(())
    }
}
