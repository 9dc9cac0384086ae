//! The admin API client: one bearer token, one base URL, JSON answers, and
//! the server's error code and message in every failure.
//!
//! The one HTTP client of the CLI's admin calls: `custody server …`,
//! `custody fleet …`, `custody bundle create` and `custody demo` (which
//! drives the server exactly as an operator would).
// The agent-only build uses the client for `custody bundle create` only.
#![cfg_attr(not(feature = "authoring"), allow(dead_code))]

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A request body.
pub(crate) enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Streamed with its length (ureq reads the file's size).
    File(std::fs::File),
}

impl Body {
    pub(crate) fn json(v: &Value) -> Result<Body> {
        Ok(Body::Bytes(serde_json::to_vec(v)?))
    }
}

/// A non-2xx answer: the HTTP status, the server's error code and message.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: the server answered {} {}: {}",
            self.method, self.url, self.status, self.code, self.message
        )
    }
}

impl std::error::Error for ApiFailure {}

/// Where and as whom: the server and the credential or token, from the
/// command line or (preferred: command lines are visible to other users)
/// the environment.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Endpoint {
    /// Base URL of the server, e.g. https://updates.example.com.
    #[arg(long, env = "CUSTODY_SERVER", value_name = "URL")]
    pub server: String,
    #[command(flatten)]
    pub auth: ApiAuth,
}

/// How a command authenticates to the admin API.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ApiAuth {
    /// API credential (cst1.<id>.<secret>), exchanged for a short-lived token.
    #[arg(
        long,
        env = "CUSTODY_CREDENTIAL",
        hide_env_values = true,
        value_name = "CREDENTIAL"
    )]
    pub credential: Option<String>,
    /// Bearer token (from POST /api/v1/token) instead of --credential.
    #[arg(
        long,
        env = "CUSTODY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

impl ApiAuth {
    /// A client of `server` for hosted repository `repo` ("" when none).
    pub(crate) fn connect(&self, server: &str, repo: &str) -> Result<Api> {
        Api::connect(
            server,
            repo,
            self.token.as_deref(),
            self.credential.as_deref(),
        )
    }
}

impl Endpoint {
    /// A client for hosted repository `repo` ("" when none is involved).
    pub(crate) fn connect(&self, repo: &str) -> Result<Api> {
        self.auth.connect(&self.server, repo)
    }
}

pub(crate) struct Api {
    http: ureq::Agent,
    base: url::Url,
    repo: String,
    token: String,
    /// the largest JSON answer read
    answer_limit: u64,
}

/// The largest JSON answer read by default.
const DEFAULT_ANSWER_LIMIT: u64 = 16 << 20;

impl Api {
    /// A client of `server` for hosted repository `repo`, authenticated
    /// with `token`, or with a token minted from `credential`.
    pub(crate) fn connect(
        server: &str,
        repo: &str,
        token: Option<&str>,
        credential: Option<&str>,
    ) -> Result<Api> {
        let base =
            url::Url::parse(server).with_context(|| format!("--server {server:?} is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--server {server:?}: scheme must be http or https");
        }
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut api = Api {
            http,
            base,
            repo: repo.to_owned(),
            token: String::new(),
            answer_limit: DEFAULT_ANSWER_LIMIT,
        };
        api.token = match (token, credential) {
            (Some(t), _) => t.to_owned(),
            (None, Some(cred)) => api.mint_token(cred)?,
            (None, None) => bail!(
                "no credentials: give --credential (or CUSTODY_CREDENTIAL) or --token (or CUSTODY_TOKEN)"
            ),
        };
        Ok(api)
    }

    /// The same server and repository as another principal.
    pub(crate) fn with_credential(&self, credential: &str) -> Result<Api> {
        let mut api = Api {
            http: self.http.clone(),
            base: self.base.clone(),
            repo: self.repo.clone(),
            token: String::new(),
            answer_limit: self.answer_limit,
        };
        api.token = api.mint_token(credential)?;
        Ok(api)
    }

    /// Read JSON answers of up to `bytes` (default 16 MiB).
    pub(crate) fn with_answer_limit(mut self, bytes: u64) -> Api {
        self.answer_limit = bytes;
        self
    }

    /// Exchange an API credential for a short-lived token.
    fn mint_token(&self, credential: &str) -> Result<String> {
        let v = self
            .send(
                "POST",
                &self.url(&["api", "v1", "token"]),
                "application/json",
                Body::json(&json!({ "credential": credential }))?,
            )
            .context("exchanging the credential for a token")?;
        Ok(v.get("token")
            .and_then(Value::as_str)
            .with_context(|| {
                format!(
                    "POST /api/v1/token on {}: the answer has no \"token\" field: {v}",
                    self.base
                )
            })?
            .to_owned())
    }

    pub(crate) fn repo(&self) -> &str {
        &self.repo
    }

    /// `base` + the segments, each percent-encoded.
    pub(crate) fn url(&self, segs: &[&str]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segs);
        }
        u
    }

    /// `/api/v1/repos/<repo>/` + the segments.
    pub(crate) fn repo_path(&self, segs: &[&str]) -> url::Url {
        let mut all = vec!["api", "v1", "repos", self.repo.as_str()];
        all.extend_from_slice(segs);
        self.url(&all)
    }

    /// One request; the JSON answer (Null when empty), or an error with
    /// the server's code and message ([`ApiFailure`], downcastable).
    pub(crate) fn send(
        &self,
        method: &str,
        url: &url::Url,
        content_type: &str,
        body: Body,
    ) -> Result<Value> {
        let (bytes, status) = self.exchange(method, url, content_type, body, self.answer_limit)?;
        let text = String::from_utf8_lossy(&bytes);
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone().into_owned()))
        };
        if !(200..300).contains(&status) {
            let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
            let message = v.get("message").and_then(Value::as_str).unwrap_or(&text);
            return Err(ApiFailure {
                method: method.to_owned(),
                url: url.to_string(),
                status,
                code: code.to_owned(),
                message: message.to_owned(),
            }
            .into());
        }
        Ok(v)
    }

    /// GET raw bytes (at most `limit`), failing on a non-2xx answer.
    pub(crate) fn get_bytes(&self, url: &url::Url, limit: u64) -> Result<Vec<u8>> {
        let (bytes, status) = self.exchange("GET", url, "", Body::Empty, limit)?;
        if !(200..300).contains(&status) {
            bail!(
                "GET {url}: the server answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(bytes)
    }

    fn exchange(
        &self,
        method: &str,
        url: &url::Url,
        content_type: &str,
        body: Body,
        limit: u64,
    ) -> Result<(Vec<u8>, u16)> {
        let u = url.as_str();
        let mut req = ureq::http::Request::builder().method(method).uri(u);
        if !self.token.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = match body {
            Body::Empty => self.http.run(req.body(())?),
            Body::Bytes(b) => self.http.run(req.body(b)?),
            Body::File(f) => self.http.run(req.body(f)?),
        }
        .with_context(|| format!("{method} {u}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .with_context(|| format!("{method} {u}: reading the answer"))?;
        Ok((bytes, status))
    }
}

/// The SHA-256 (hex) and size of a file, read in pieces.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let size = custody_fs::for_each_chunk(path, ("open", "read"), |chunk| {
        ctx.update(chunk);
        Ok::<_, custody_fs::FsError>(())
    })?;
    Ok((hex::encode(ctx.finish()), size))
}
