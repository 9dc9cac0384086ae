//! Workload identity federation: a CI job presents its OIDC ID token; we
//! verify it against the issuer's JWKS and map its claims to scopes by the
//! configured rules.
//!
//! - Only RS256 and ES256, and the JWK must agree with the header's `alg`
//!   (no algorithm confusion, no `none`, no HMAC with a public key).
//! - Discovery and JWKS are fetched over HTTP(S) with a time limit and a
//!   size limit; the discovery document's `issuer` must equal the
//!   configured issuer exactly.
//! - Keys are cached for `jwks_cache_seconds`; an unknown `kid` triggers a
//!   refetch at most once per `jwks_min_refetch_seconds` (so a flood of
//!   tokens with random kids cannot make us hammer the issuer).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::scope::ScopeSet;
use super::settings::{OidcProviderConfig, OidcRule};

const MAX_DOC_BYTES: u64 = 256 * 1024;
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_KEYS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub(crate) enum OidcError {
    #[error("OIDC token rejected: {0}")]
    Invalid(String),
    #[error("OIDC token from issuer {iss:?}: no provider with that issuer is configured")]
    UnknownIssuer { iss: String },
    #[error("OIDC issuer {issuer}: {what}: {reason}")]
    Fetch {
        issuer: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "OIDC token (sub {sub:?}) matches no rule of issuer {issuer}; claims checked: {checked}"
    )]
    NoRule {
        issuer: String,
        sub: String,
        checked: String,
    },
}

/// A verified identity and what policy grants it.
#[derive(Debug, Clone)]
pub(crate) struct OidcGrant {
    pub(crate) identity: String,
    pub(crate) rules: Vec<String>,
    pub(crate) scopes: ScopeSet,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

struct CachedKey {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<CachedKey>>,
    /// Last successful fetch (for the TTL).
    fetched_at: Option<Instant>,
    /// Last attempt, successful or not (for the refetch bound).
    attempted_at: Option<Instant>,
}

struct Provider {
    config: OidcProviderConfig,
    cache: tokio::sync::Mutex<KeyCache>,
}

/// Verifies ID tokens of every configured provider.
pub(crate) struct OidcVerifier {
    providers: Vec<Provider>,
    agent: ureq::Agent,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn invalid(msg: impl Into<String>) -> OidcError {
    OidcError::Invalid(msg.into())
}

impl OidcVerifier {
    pub(crate) fn new(providers: &[OidcProviderConfig]) -> OidcVerifier {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(true)
            .max_redirects(0)
            .build()
            .new_agent();
        OidcVerifier {
            providers: providers
                .iter()
                .map(|c| Provider {
                    config: c.clone(),
                    cache: tokio::sync::Mutex::new(KeyCache::default()),
                })
                .collect(),
            agent,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Verifies `token` at time `now` (unix seconds) and applies the rules.
    pub(crate) async fn verify(&self, token: &str, now: i64) -> Result<OidcGrant, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "token is {} bytes, the limit is {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("header does not parse: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(invalid(format!(
                "alg {:?} is not allowed; only RS256 and ES256",
                header.alg
            )));
        }
        let kid = header.kid.ok_or_else(|| invalid("header has no kid"))?;
        // Choose the provider by the (not yet verified) iss; everything is
        // verified against that provider's keys below.
        let iss = unverified_issuer(token)?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.config.issuer == iss)
            .ok_or(OidcError::UnknownIssuer { iss: iss.clone() })?;
        let key = self.key_for(provider, &kid).await?;
        if key.alg != header.alg {
            return Err(invalid(format!(
                "header alg {:?} does not match key {kid:?} ({:?})",
                header.alg, key.alg
            )));
        }
        let cfg = &provider.config;
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[cfg.issuer.as_str()]);
        validation.set_audience(&[cfg.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = cfg.leeway_seconds;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| invalid(format!("issuer {}: {e}", cfg.issuer)))?;
        let claims = data.claims;
        // jsonwebtoken checks exp/nbf against the system clock; we also
        // check them against `now` and add the iat rule.
        let leeway = i64::try_from(cfg.leeway_seconds).unwrap_or(60);
        let num = |name: &str| claims.get(name).and_then(Value::as_i64);
        let exp = num("exp").ok_or_else(|| invalid("exp is not an integer"))?;
        let iat = num("iat").ok_or_else(|| invalid("iat is not an integer"))?;
        if exp + leeway < now {
            return Err(invalid(format!(
                "expired: exp {exp} < now {now} - leeway {leeway}"
            )));
        }
        if iat - leeway > now {
            return Err(invalid(format!(
                "issued in the future: iat {iat} > now {now} + leeway {leeway}"
            )));
        }
        if let Some(nbf) = num("nbf") {
            if nbf - leeway > now {
                return Err(invalid(format!(
                    "not yet valid: nbf {nbf} > now {now} + leeway {leeway}"
                )));
            }
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut scopes = Vec::new();
        let mut rules = Vec::new();
        for rule in &cfg.rules {
            if rule_matches(rule, &claims) {
                rules.push(rule.name.clone());
                scopes.extend(rule.scopes.iter().cloned());
            }
        }
        if rules.is_empty() {
            let names: Vec<&str> = {
                let mut n: Vec<&str> = cfg
                    .rules
                    .iter()
                    .flat_map(|r| r.claims.keys().map(String::as_str))
                    .collect();
                n.sort();
                n.dedup();
                n
            };
            let checked = names
                .iter()
                .map(|k| {
                    format!(
                        "{k}={}",
                        claims
                            .get(*k)
                            .map_or("<absent>".to_string(), |v| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(OidcError::NoRule {
                issuer: cfg.issuer.clone(),
                sub,
                checked,
            });
        }
        let scopes = ScopeSet::parse_all(&scopes).map_err(|e| invalid(e.to_string()))?;
        Ok(OidcGrant {
            identity: format!("oidc:{}#{sub}", cfg.issuer),
            rules,
            scopes,
        })
    }

    async fn key_for(&self, provider: &Provider, kid: &str) -> Result<Arc<CachedKey>, OidcError> {
        let cfg = &provider.config;
        let mut cache = provider.cache.lock().await;
        let fresh = cache
            .fetched_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(cfg.jwks_cache_seconds));
        if fresh {
            if let Some(k) = cache.keys.get(kid) {
                return Ok(k.clone());
            }
        }
        // Unknown kid, expired cache or earlier failure: refetch, but at most
        // once per jwks_min_refetch_seconds whatever callers send (a flood
        // of random kids, or an unreachable issuer, costs one fetch).
        if let Some(t) = cache.attempted_at {
            if t.elapsed() < Duration::from_secs(cfg.jwks_min_refetch_seconds) {
                return Err(invalid(format!(
                    "kid {kid:?} is not in the cached JWKS of {} and the last fetch was less \
                     than {} s ago",
                    cfg.issuer, cfg.jwks_min_refetch_seconds
                )));
            }
        }
        cache.attempted_at = Some(Instant::now());
        let keys = self.fetch_keys(cfg).await?;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| invalid(format!("kid {kid:?} is not in the JWKS of {}", cfg.issuer)))
    }

    async fn fetch_keys(
        &self,
        cfg: &OidcProviderConfig,
    ) -> Result<HashMap<String, Arc<CachedKey>>, OidcError> {
        let issuer = cfg.issuer.clone();
        let fetch_err = |what: &'static str, reason: String| OidcError::Fetch {
            issuer: issuer.clone(),
            what,
            reason,
        };
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        );
        let doc = self
            .get_json(&discovery_url)
            .await
            .map_err(|r| fetch_err("discovery", r))?;
        let discovery: Discovery = serde_json::from_str(&doc)
            .map_err(|e| fetch_err("discovery", format!("{discovery_url}: {e}")))?;
        if discovery.issuer != cfg.issuer {
            return Err(fetch_err(
                "discovery",
                format!(
                    "document names issuer {:?}, expected exactly {:?}",
                    discovery.issuer, cfg.issuer
                ),
            ));
        }
        let jwks_url = url::Url::parse(&discovery.jwks_uri)
            .map_err(|e| fetch_err("jwks_uri", format!("{:?}: {e}", discovery.jwks_uri)))?;
        let issuer_https = cfg.issuer.starts_with("https://");
        if jwks_url.scheme() != "https" && (issuer_https || jwks_url.scheme() != "http") {
            return Err(fetch_err(
                "jwks_uri",
                format!("{jwks_url} must be https (http only for an http issuer)"),
            ));
        }
        let text = self
            .get_json(jwks_url.as_str())
            .await
            .map_err(|r| fetch_err("jwks", r))?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| fetch_err("jwks", format!("{jwks_url}: {e}")))?;
        let mut out = HashMap::new();
        for jwk in set.keys.into_iter().take(MAX_KEYS) {
            let Some(kid) = jwk.kid.clone() else { continue };
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            match jwk_to_key(&jwk) {
                Ok(k) => {
                    out.insert(kid, Arc::new(k));
                }
                Err(reason) => {
                    tracing::warn!(issuer = %cfg.issuer, kid, reason, "skipping unusable JWK");
                }
            }
        }
        Ok(out)
    }

    async fn get_json(&self, url: &str) -> Result<String, String> {
        let agent = self.agent.clone();
        let url = url.to_string();
        tokio::task::spawn_blocking(move || {
            let mut resp = agent
                .get(&url)
                .call()
                .map_err(|e| format!("GET {url}: {e}"))?;
            resp.body_mut()
                .with_config()
                .limit(MAX_DOC_BYTES)
                .read_to_string()
                .map_err(|e| format!("GET {url}: body: {e}"))
        })
        .await
        .map_err(|e| format!("fetch task failed: {e}"))?
    }
}

fn jwk_to_key(jwk: &Jwk) -> Result<CachedKey, String> {
    match jwk.kty.as_str() {
        "RSA" => {
            if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
                return Err(format!("RSA key with alg {:?}; only RS256", jwk.alg));
            }
            let (n, e) = jwk
                .n
                .as_deref()
                .zip(jwk.e.as_deref())
                .ok_or("RSA key without n/e")?;
            let n_len = b64().decode(n).map_err(|e| format!("n: {e}"))?.len();
            if n_len < 256 {
                return Err(format!(
                    "RSA modulus is {} bits, at least 2048 required",
                    n_len * 8
                ));
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
            Ok(CachedKey {
                alg: Algorithm::RS256,
                key,
            })
        }
        "EC" => {
            if jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
                return Err(format!("EC key with alg {:?}; only ES256", jwk.alg));
            }
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(format!("EC key on curve {:?}; only P-256", jwk.crv));
            }
            let (x, y) = jwk
                .x
                .as_deref()
                .zip(jwk.y.as_deref())
                .ok_or("EC key without x/y")?;
            let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
            Ok(CachedKey {
                alg: Algorithm::ES256,
                key,
            })
        }
        other => Err(format!("key type {other:?} is not supported")),
    }
}

fn unverified_issuer(token: &str) -> Result<String, OidcError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid("not a JWS compact serialization"))?;
    let bytes = b64()
        .decode(payload)
        .map_err(|_| invalid("payload is not base64url"))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| invalid("payload is not a JSON object"))?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| invalid("iss claim is missing or not a string"))
}

fn rule_matches(rule: &OidcRule, claims: &Map<String, Value>) -> bool {
    rule.claims.iter().all(|(name, want)| {
        let Some(have) = claims.get(name).and_then(Value::as_str) else {
            return false;
        };
        match want.strip_suffix('*') {
            Some(prefix) => have.starts_with(prefix),
            None => have == want,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_exactly_or_by_prefix() {
        let rule = OidcRule {
            name: "r".into(),
            claims: [
                ("repository".to_string(), "acme/app".to_string()),
                ("ref".to_string(), "refs/tags/v*".to_string()),
            ]
            .into_iter()
            .collect(),
            scopes: vec!["target:upload@app".into()],
        };
        let claims = |repo: &str, r: &str| {
            serde_json::json!({"repository": repo, "ref": r})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert!(rule_matches(&rule, &claims("acme/app", "refs/tags/v1.2")));
        assert!(!rule_matches(&rule, &claims("acme/app2", "refs/tags/v1.2")));
        assert!(!rule_matches(&rule, &claims("acme/app", "refs/heads/main")));
        let mut no_ref = claims("acme/app", "x");
        no_ref.remove("ref");
        assert!(!rule_matches(&rule, &no_ref));
        // non-string claim never matches
        let mut num = claims("acme/app", "x");
        num.insert("ref".into(), serde_json::json!(5));
        assert!(!rule_matches(&rule, &num));
    }
}
