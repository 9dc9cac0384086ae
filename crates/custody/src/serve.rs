//! `custody serve`: the HTTP service (repository hosting, admin API,
//! metrics). All the work is in the custody-server crate; this module turns
//! flags, `CUSTODY_*` environment variables and the TOML config file into a
//! `ServerConfig`, prints the first-start banner and waits for a signal.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use custody_server::ServerConfig;

const AFTER_HELP: &str = "\
Configuration, highest precedence first: command-line flags, CUSTODY_*
environment variables (named next to each flag above), the TOML file given
by --config / CUSTODY_CONFIG, built-in defaults. An empty start is a working
server: `custody serve` creates ./custody-data, prints the URL and, on the
first start only, a bootstrap credential (fleet:admin + audit:read) that is
never shown again.

TOML-only settings: token_max_ttl_seconds, metadata_cache_file_bytes,
metadata_cache_total_bytes, and [[oidc]] providers with their claim rules
(see docs/SERVER.md).

Logs: RUST_LOG=info (default warn) to stderr; CUSTODY_LOG_FORMAT=json for
JSON lines. SIGTERM or SIGINT stops accepting connections and lets in-flight
requests finish.

Endpoints: /repos/<repo>/metadata/<file>, /repos/<repo>/targets/<path>,
/api/v1/... (admin, bearer tokens from POST /api/v1/token), /openapi.json,
/healthz, /readyz, /metrics (Prometheus).";

/// Run the custody server: host TUF repositories, serve the admin API.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct ServeArgs {
    /// TOML config file; every field is optional.
    #[arg(long, env = "CUSTODY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080; port 0 picks one].
    #[arg(long, env = "CUSTODY_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,

    /// State directory: SQLite database, blobs, hosted repositories
    /// [default: ./custody-data].
    #[arg(long, env = "CUSTODY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Keep state in PostgreSQL (postgres://user@host/db) instead of SQLite.
    #[arg(
        long,
        env = "CUSTODY_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Keep uploaded target blobs in object storage (s3://bucket/prefix,
    /// gs://…, az://…, file:///dir) instead of <data-dir>/blobs. S3
    /// credentials and endpoint come from AWS_* variables (AWS_ENDPOINT,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, …) or `blob_store_options` in the
    /// config file. Blobs are re-hashed when read back for a publish.
    #[arg(long, env = "CUSTODY_BLOB_STORE_URL", value_name = "URL")]
    blob_store_url: Option<String>,

    /// Keep the online snapshot/timestamp keys of new repositories on a
    /// PKCS#11 token: a URI template with {repo} and {role}, e.g.
    /// 'pkcs11:token=custody;object={repo}-{role}?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CUSTODY_HSM_PIN'.
    /// Create the keys on the token first (pkcs11-tool --keypairgen).
    #[arg(long, env = "CUSTODY_PKCS11_ONLINE_KEY_URI", value_name = "URI")]
    pkcs11_online_key_uri: Option<String>,

    /// Token requests (POST /api/v1/token) allowed per minute per client
    /// address, against secret guessing [default: 60, bursts of 30]. Behind
    /// a proxy every client shares the proxy's address.
    #[arg(long, env = "CUSTODY_TOKEN_REQUESTS_PER_MINUTE", value_name = "N")]
    token_requests_per_minute: Option<u32>,

    /// PEM certificate chain: serve HTTPS (rustls). Needs --tls-key.
    #[arg(
        long,
        env = "CUSTODY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(
        long,
        env = "CUSTODY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Default admin token lifetime in seconds [default: 900, max 3600].
    #[arg(long, env = "CUSTODY_TOKEN_TTL_SECONDS", value_name = "SECONDS")]
    token_ttl_seconds: Option<u64>,

    /// Largest blob upload in bytes [default: 1073741824].
    #[arg(long, env = "CUSTODY_MAX_BLOB_BYTES", value_name = "BYTES")]
    max_blob_bytes: Option<u64>,

    /// File with the token-signing key (≥ 32 random bytes) [default: a key
    /// generated once and kept in the database, shared by all replicas].
    #[arg(long, env = "CUSTODY_TOKEN_KEY_FILE", value_name = "FILE")]
    token_key_file: Option<PathBuf>,

    /// Let one credential hold both target:upload and repo:publish for the
    /// same repository (separation-of-duties override; not recommended).
    #[arg(long, env = "CUSTODY_ALLOW_UPLOAD_AND_PUBLISH")]
    allow_upload_and_publish: bool,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut cfg = match &self.config {
            Some(path) => ServerConfig::from_toml_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.database_url {
            cfg.database_url = Some(v);
        }
        if let Some(v) = self.blob_store_url {
            cfg.blob_store_url = Some(v);
        }
        if let Some(v) = self.pkcs11_online_key_uri {
            cfg.pkcs11_online_key_uri = Some(v);
        }
        if let Some(v) = self.token_requests_per_minute {
            cfg.token_requests_per_minute = v;
            cfg.token_request_burst = cfg.token_request_burst.max(v / 2);
        }
        if let Some(v) = self.tls_cert {
            cfg.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            cfg.tls_key = Some(v);
        }
        if let Some(v) = self.token_ttl_seconds {
            cfg.token_ttl_seconds = v;
        }
        if let Some(v) = self.max_blob_bytes {
            cfg.max_blob_bytes = v;
        }
        if let Some(v) = self.token_key_file {
            cfg.token_key_file = Some(v);
        }
        if self.allow_upload_and_publish {
            cfg.allow_upload_and_publish = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.into_config()?;
    let data_dir = cfg.data_dir.clone();
    custody_server::run_blocking(cfg, |server| {
        let url = server.url();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "custody server listening on {url} (data dir {}, storage {})",
            data_dir.display(),
            server.storage_backend()
        )?;
        if let Some(secret) = &server.bootstrap_credential {
            writeln!(
                out,
                "bootstrap credential (shown once; store it now; scopes fleet:admin audit:read):\n  {secret}\n\
                 mint an admin token with:\n  curl -s -X POST {url}/api/v1/token -H 'content-type: application/json' \
                 -d '{{\"credential\":\"<credential>\"}}'"
            )?;
        }
        out.flush()?;
        tracing::info!(%url, "ready");
        Ok(())
    })
    .with_context(|| format!("custody serve (data dir {})", data_dir.display()))?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
