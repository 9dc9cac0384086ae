//! The settings only the auth slice reads, and their rules.
//!
//! They stay flat fields of the server's TOML file (`ServerConfig`, which
//! builds an [`AuthSettings`] from them); the OIDC provider and rule tables
//! are defined here and re-exported by `crate::config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::scope::ScopeSet;

/// Hard ceiling for admin token lifetime, whatever the config says.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 3600;

/// What the auth slice needs from the server configuration.
#[derive(Debug, Clone)]
pub(crate) struct AuthSettings {
    /// Default admin token lifetime (seconds).
    pub(crate) token_ttl_seconds: u64,
    /// Longest admin token lifetime a caller may ask for.
    pub(crate) token_max_ttl_seconds: u64,
    /// Operator override of the separation-of-duties rule.
    pub(crate) allow_upload_and_publish: bool,
    /// `POST /api/v1/token` requests per minute per client address.
    pub(crate) token_requests_per_minute: u32,
    /// Burst allowance on top of the sustained token-request rate.
    pub(crate) token_request_burst: u32,
    /// Token-signing key file; `None`: a key kept in the database.
    pub(crate) token_key_file: Option<PathBuf>,
    /// CI identity providers whose OIDC ID tokens may be exchanged.
    pub(crate) oidc: Vec<OidcProviderConfig>,
}

/// One CI identity provider (`[[oidc]]` in the server config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Exact `iss` value, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// Required `aud` value.
    pub audience: String,
    /// How long a fetched JWKS is trusted before refetching.
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache_seconds: u64,
    /// Minimum time between refetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_refetch")]
    pub jwks_min_refetch_seconds: u64,
    /// Clock skew allowed on exp/nbf/iat.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Claim-to-scope mapping; a token gets the union of the scopes of every
    /// rule whose claims all match. No matching rule: no token.
    pub rules: Vec<OidcRule>,
}

fn default_jwks_cache() -> u64 {
    600
}
fn default_jwks_refetch() -> u64 {
    30
}
fn default_leeway() -> u64 {
    60
}

/// One claim-to-scope rule of an OIDC provider (`[[oidc.rules]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRule {
    /// Shown in the audit log.
    pub name: String,
    /// Claim name → required string value. A value ending in `*` matches
    /// by prefix (e.g. `ref = "refs/tags/v*"`).
    pub claims: BTreeMap<String, String>,
    pub scopes: Vec<String>,
}

/// A settings rule broken: the config field and why.
pub(crate) type Invalid = (String, String);

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    (field.into(), reason.into())
}

/// Token lifetimes: the ceiling is 1..=[`MAX_TOKEN_TTL_SECONDS`], the
/// default is 1..=the ceiling.
pub(crate) fn validate_token_ttls(max: u64, default: u64) -> Result<(), Invalid> {
    if max == 0 || max > MAX_TOKEN_TTL_SECONDS {
        return Err(invalid(
            "token_max_ttl_seconds",
            format!("must be 1..={MAX_TOKEN_TTL_SECONDS}, got {max}"),
        ));
    }
    if default == 0 || default > max {
        return Err(invalid(
            "token_ttl_seconds",
            format!("must be 1..=token_max_ttl_seconds ({max}), got {default}"),
        ));
    }
    Ok(())
}

/// OIDC providers: an http(s) issuer, an audience, a refetch bound within
/// the cache lifetime, and rules that each name claims and grant scopes
/// that parse and (unless overridden) keep separation of duties.
pub(crate) fn validate_oidc(
    providers: &[OidcProviderConfig],
    allow_upload_and_publish: bool,
) -> Result<(), Invalid> {
    for (i, p) in providers.iter().enumerate() {
        let field = format!("oidc[{i}]");
        let url = url::Url::parse(&p.issuer)
            .map_err(|e| invalid(format!("{field}.issuer"), format!("{:?}: {e}", p.issuer)))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid(
                format!("{field}.issuer"),
                format!("{:?} must be an https URL", p.issuer),
            ));
        }
        if p.jwks_min_refetch_seconds > p.jwks_cache_seconds {
            return Err(invalid(
                format!("{field}.jwks_min_refetch_seconds"),
                format!(
                    "{} is longer than jwks_cache_seconds ({}); keys would expire before a refetch is allowed",
                    p.jwks_min_refetch_seconds, p.jwks_cache_seconds
                ),
            ));
        }
        if p.audience.is_empty() {
            return Err(invalid(format!("{field}.audience"), "must not be empty"));
        }
        if p.rules.is_empty() {
            return Err(invalid(
                format!("{field}.rules"),
                "at least one rule is needed, otherwise no token can ever be granted",
            ));
        }
        for (j, rule) in p.rules.iter().enumerate() {
            let rfield = format!("{field}.rules[{j}]");
            if rule.claims.is_empty() {
                return Err(invalid(
                    format!("{rfield}.claims"),
                    "a rule without claim conditions would grant every token of the issuer",
                ));
            }
            let scopes = ScopeSet::parse_all(&rule.scopes)
                .map_err(|e| invalid(format!("{rfield}.scopes"), e.to_string()))?;
            if scopes.is_empty() {
                return Err(invalid(format!("{rfield}.scopes"), "must not be empty"));
            }
            if !allow_upload_and_publish {
                if let Some(msg) = scopes.separation_of_duties_conflict() {
                    return Err(invalid(format!("{rfield}.scopes"), msg));
                }
            }
        }
    }
    Ok(())
}
