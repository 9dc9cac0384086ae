//! The composition root: builds every slice from a [`ServerConfig`] and
//! holds them. Slices never name [`AppState`]; each handler takes its own
//! slice's state, handed out here through axum's `FromRef` or given to the
//! slice's router (`server::router`).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::FromRef;

use crate::auth::{AuditTrail, Auth, AuthStartError};
use crate::config::{ConfigError, ServerConfig};
use crate::director::DirectorState;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::repos::authoring::{Authoring, AuthoringError};
use crate::repos::blobs::{BlobError, BlobStore, LocalBlobStore};
use crate::repos::hosting::Hosting;
use crate::repos::Repos;
use crate::storage::{NewAudit, PgStorage, SqliteStorage, Storage, StorageError};
use crate::tlog::{EntryBody, ServerLog};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Auth(#[from] AuthStartError),
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
    #[error("metrics registry: {0}")]
    Metrics(String),
    #[error(transparent)]
    Log(#[from] crate::tlog::LogError),
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

pub struct AppState {
    pub storage: Arc<dyn Storage>,
    /// The hosted repositories (also `repos.hosting`).
    pub hosting: Arc<Hosting>,
    /// The auth slice: tokens, credentials, OIDC, scopes, audit.
    pub auth: Auth,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    /// The transparency log (`crate::tlog`): append with `state.log.append(..)`.
    pub log: Arc<ServerLog>,
    /// The repositories slice (hosting, authoring, provenance, blobs).
    pub repos: Arc<Repos>,
    /// The director slice (device API, fleet API); its director is `None`
    /// when disabled or without a key passphrase (device routes then
    /// answer 503).
    pub director: Arc<DirectorState>,
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

        let log = Arc::new(ServerLog::open(&data, config.log.clone())?);
        let started = Auth::start(
            config.auth_settings(),
            storage.clone(),
            Arc::new(LogAuditTrail(log.clone())),
        )
        .await?;

        let blobs: Arc<dyn BlobStore> = match &config.blob_store_url {
            None => Arc::new(LocalBlobStore::open(&data.join("blobs"), &tmp_dir)?),
            Some(url) => Arc::new(crate::repos::blobs_object::ObjectBlobStore::open(
                url,
                &config.blob_store_options,
                &tmp_dir,
                &data.join("blob-cache"),
                config.max_blob_bytes,
            )?),
        };
        let hosting = Arc::new(Hosting::new(
            repos,
            config.metadata_cache_file_bytes,
            config.metadata_cache_total_bytes,
        ));
        let abandoned = hosting.remove_abandoned();
        if abandoned > 0 {
            tracing::info!(
                removed = abandoned,
                "removed unfinished generations of interrupted publishes"
            );
        }
        let authoring = Authoring::new(&data, config.key_passphrase_file.as_deref())?
            .with_pkcs11_online_keys(config.pkcs11_online_key_uri.clone());
        let director = crate::director::start(
            config.director.clone(),
            &config.data_dir,
            config.key_passphrase_file.as_deref(),
            director_db,
            log.clone(),
        )
        .await
        .map_err(|e| ConfigError::Invalid {
            field: "director".into(),
            reason: e.to_string(),
        })?;
        let auth = started.auth;
        let repos = Arc::new(Repos {
            storage: storage.clone(),
            blobs,
            hosting: hosting.clone(),
            authoring,
            auth: auth.clone(),
            log: log.clone(),
            data_dir: config.data_dir.clone(),
            max_blob_bytes: config.max_blob_bytes,
        });
        let director = Arc::new(DirectorState {
            director,
            auth: auth.clone(),
            log: log.clone(),
        });
        let state = AppState {
            storage,
            hosting,
            auth,
            metrics: Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?,
            ready: AtomicBool::new(true),
            log,
            repos,
            director,
        };
        Ok(Built {
            state: Arc::new(state),
            bootstrap_credential: started.bootstrap_credential,
        })
    }
}

/// Handlers and the [`Caller`] extractor take the auth slice from the
/// server state.
impl FromRef<Arc<AppState>> for Auth {
    fn from_ref(state: &Arc<AppState>) -> Auth {
        state.auth.clone()
    }
}

/// The request metrics middleware and `/metrics` take the registry from
/// the server state.
impl FromRef<Arc<AppState>> for Metrics {
    fn from_ref(state: &Arc<AppState>) -> Metrics {
        state.metrics.clone()
    }
}

/// Every audit record is also an entry of the transparency log.
struct LogAuditTrail(Arc<ServerLog>);

#[async_trait]
impl AuditTrail for LogAuditTrail {
    async fn record(&self, entry: &NewAudit) -> Result<(), ApiError> {
        self.0
            .append(EntryBody::AdminAction {
                identity: entry.identity.clone(),
                action: entry.action.clone(),
                repo: entry.repo.clone(),
                target: entry.target.clone(),
                outcome: entry.outcome.clone(),
                detail: entry.detail.clone(),
            })
            .await?;
        Ok(())
    }
}
