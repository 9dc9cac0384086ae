//! Shared server state and its construction from a [`ServerConfig`].

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ring::rand::SecureRandom;

use crate::auth::credential;
use crate::auth::oidc::OidcVerifier;
use crate::auth::token::{TokenError, TokenKeys};
use crate::authoring::{Authoring, AuthoringError};
use crate::blobs::{BlobError, BlobStore, LocalBlobStore};
use crate::config::{ConfigError, ServerConfig};
use crate::hosting::Hosting;
use crate::metrics::Metrics;
use crate::storage::{CredentialRecord, PgStorage, SqliteStorage, Storage, StorageError};

/// Scopes of the credential created on first start. It administers
/// credentials and reads the audit log; it cannot upload or publish, so the
/// operator must create separate uploader and publisher credentials.
pub const BOOTSTRAP_SCOPES: &[&str] = &["fleet:admin", "audit:read"];

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{path}: {op}: {source}")]
    Io {
        path: std::path::PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Authoring(#[from] AuthoringError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the OS random number generator failed")]
    Rng,
    #[error("metrics registry: {0}")]
    Metrics(String),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

pub struct AppState {
    pub config: ServerConfig,
    pub storage: Arc<dyn Storage>,
    pub blobs: Arc<dyn BlobStore>,
    pub hosting: Hosting,
    pub authoring: Authoring,
    pub tokens: TokenKeys,
    pub oidc: OidcVerifier,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub tmp_dir: std::path::PathBuf,
    /// The director (device API, fleet API); `None` when disabled or
    /// without a key passphrase (device routes then answer 503).
    pub director: Option<Arc<crate::director::Director>>,
    /// Per-client-address limit on `POST /api/v1/token`.
    pub token_limiter: crate::ratelimit::RateLimiter,
    /// The transparency log (`crate::log`): append with `state.log.append(..)`.
    pub log: Arc<crate::log::ServerLog>,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The state plus, on the very first start, the bootstrap credential
/// (to be shown once, never stored in clear).
pub struct Built {
    pub state: Arc<AppState>,
    pub bootstrap_credential: Option<String>,
}

impl AppState {
    pub async fn build(config: ServerConfig) -> Result<Built, StartError> {
        config.validate()?;
        let data = config.data_dir.clone();
        std::fs::create_dir_all(&data).map_err(io_err(&data, "create data directory"))?;
        let tmp_dir = data.join("tmp");
        // Leftover partial uploads from a crash are garbage.
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir).map_err(io_err(&tmp_dir, "clean temp directory"))?;
        }
        std::fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir, "create temp directory"))?;
        let repos = data.join("repos");
        std::fs::create_dir_all(&repos).map_err(io_err(&repos, "create directory"))?;

        // The director's tables live in the same database, on the same pool.
        let (storage, director_db): (
            Arc<dyn Storage>,
            Arc<dyn crate::director::store::DirectorDb>,
        ) = match &config.database_url {
            Some(url) => {
                let s = PgStorage::connect(url).await?;
                let d = crate::director::store::PgDirectorDb::new(s.pool().clone());
                (Arc::new(s), Arc::new(d))
            }
            None => {
                let s = SqliteStorage::open(&data.join("custody.db")).await?;
                let d = crate::director::store::SqliteDirectorDb::new(s.pool().clone());
                // This process is the only writer of the embedded database:
                // device rows can be cached (see director/cache.rs).
                let d = crate::director::cache::CachedDirectorDb::wrap(
                    d,
                    crate::director::cache::DEFAULT_CAPACITY,
                );
                (Arc::new(s), Arc::new(d))
            }
        };
        storage.migrate().await?;

        let key = match &config.token_key_file {
            Some(path) => std::fs::read(path).map_err(io_err(path, "read token key file"))?,
            None => {
                let mut candidate = [0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut candidate)
                    .map_err(|_| StartError::Rng)?;
                storage
                    .get_or_create_secret("token-hmac-sha256-v1", &candidate)
                    .await?
            }
        };
        let tokens = TokenKeys::new(&key)?;

        let mut bootstrap_credential = None;
        if storage.count_credentials().await? == 0 {
            let new = credential::generate(None).map_err(|_| StartError::Rng)?;
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
                .append_audit(&crate::storage::NewAudit {
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
            bootstrap_credential = Some(new.secret_string);
        }

        let blobs: Arc<dyn BlobStore> = match &config.blob_store_url {
            None => Arc::new(LocalBlobStore::open(&data.join("blobs"), &tmp_dir)?),
            Some(url) => Arc::new(crate::blobs_object::ObjectBlobStore::open(
                url,
                &config.blob_store_options,
                &tmp_dir,
                &data.join("blob-cache"),
                config.max_blob_bytes,
            )?),
        };
        let hosting = Hosting::new(
            repos,
            config.metadata_cache_file_bytes,
            config.metadata_cache_total_bytes,
        );
        let abandoned = hosting.remove_abandoned();
        if abandoned > 0 {
            tracing::info!(
                removed = abandoned,
                "removed unfinished generations of interrupted publishes"
            );
        }
        let authoring = Authoring::new(&data, config.key_passphrase_file.as_deref())?
            .with_pkcs11_online_keys(config.pkcs11_online_key_uri.clone());
        let oidc = OidcVerifier::new(&config.oidc);
        let log = Arc::new(crate::log::ServerLog::open(&data)?);
        let director = crate::director::start(&config, director_db, log.clone()).await?;
        let token_limiter = crate::ratelimit::RateLimiter::new(
            config.token_requests_per_minute,
            config.token_request_burst,
        );
        let state = AppState {
            token_limiter,
            config,
            storage,
            blobs,
            hosting,
            authoring,
            tokens,
            oidc,
            metrics: Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?,
            ready: AtomicBool::new(true),
            tmp_dir,
            director,
            log,
        };
        Ok(Built {
            state: Arc::new(state),
            bootstrap_credential,
        })
    }
}
