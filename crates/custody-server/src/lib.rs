//! custody-server: the HTTP service behind `custody serve`.
//!
//! The public API is small: [`ServerConfig`] (with the settings types a
//! config file names: [`OidcProviderConfig`], [`OidcRule`],
//! [`DirectorSettings`], [`LogSettings`]), [`start`] (a [`RunningServer`]
//! on a tokio runtime), [`run_blocking`] (for binaries without one),
//! [`shutdown_signal`], and [`StartError`]. Everything else is reached
//! over HTTP: the admin API (`/api/v1`, described by `/openapi.json`),
//! the device API (`/device/v1`), the transparency log (`/log/v1`) and
//! hosted repositories (`/repos`).
//!
//! Inside, the crate is cut in slices, each owning its routes, request and
//! response types, settings and storage calls:
//!
//! - `auth`: bootstrap credentials, OIDC workload identity, short-lived
//!   scoped tokens, scopes and separation of duties, the token-request
//!   rate limit, the audit trail, and their routes.
//! - `repos`: hosting, authoring, provenance, blob stores, and the
//!   repository admin routes.
//! - `director`: device API (check-in pipeline), fleet API, bundle export,
//!   the director's store.
//! - `tlog`: the transparency log, its routes and evidence.
//!
//! Below them: `storage` (one async trait, SQLite and PostgreSQL),
//! `error`, `ids`. Above them: `inventory` (`GET /api/v1/inventory`: the
//! trust-stack inventory of the hosted repositories and credentials),
//! `yanks` (one yank for every repository:
//! withdraws a target at the next publish and, in the director's image
//! repository, sends the devices running it a replacement), `config`
//! (composes the slices' settings),
//! `state` (builds and holds the slices), `server` (router, TLS, metrics,
//! graceful shutdown) and `openapi` (the composed document). No module
//! imports one above it (`scripts/check-architecture`).
#![forbid(unsafe_code)]

mod auth;
#[doc(hidden)]
pub mod bench_support;
mod config;
mod director;
mod error;
mod ids;
mod inventory;
mod metrics;
mod openapi;
mod repos;
mod server;
mod state;
mod storage;
mod tlog;
mod yanks;

pub use config::{ConfigError, OidcProviderConfig, OidcRule, ServerConfig, MAX_TOKEN_TTL_SECONDS};
pub use director::DirectorSettings;
pub use server::{run_blocking, shutdown_signal, start, RunningServer};
pub use state::StartError;
pub use tlog::LogSettings;

/// For the fuzz harnesses and this crate's tests: the parsers of untrusted
/// bytes (host paths, range headers, credentials and scopes, admin tokens,
/// JSON request bodies). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::auth::credential::PresentedCredential;
    pub use crate::auth::scope::{validate_repo_name, Scope, ScopeSet};
    pub use crate::auth::token::{Claims, TokenKeys, AUDIENCE, ISSUER};
    pub use crate::auth::{CreateCredential, TokenRequest};
    pub use crate::director::fleet::{PinRequest, Reason, RolloutRequest, TokenIssue};
    pub use crate::repos::hosting::{parse_host_path, parse_range, Area, RangeSpec};
    pub use crate::repos::routes::{CreateRepo, StageTarget};
    pub use crate::yanks::{FleetYankRequest, YankRequest};
}

/// For this crate's tests and benches that drive the layers below HTTP
/// directly (the storage backends, the director's store, hosting and
/// authoring). Not a stable API.
#[doc(hidden)]
pub mod testing {
    pub use crate::auth::token::TokenKeys;
    pub use crate::director::cache::{CachedDirectorDb, DEFAULT_CAPACITY};
    pub use crate::director::store::{
        CheckinWrite, DeviceFilter, DirectorDb, PgDirectorDb, ReportRow, RolloutRow,
        SqliteDirectorDb, TokenRow, WriteOutcome,
    };
    pub use crate::repos::authoring::{Authoring, AuthoringError, WantedTarget};
    pub use crate::repos::hosting::{Hosting, CACHE_IMMUTABLE, CACHE_REVALIDATE};
    pub use crate::storage::{
        BlobRecord, CredentialRecord, NewAudit, NewYank, PgStorage, SqliteStorage, StagedTarget,
        Storage, StorageError,
    };
    pub use crate::tlog::{stamp, ServerLog};

    use std::sync::Arc;

    /// The running server's hosted repositories (tests write generations
    /// the way a publish does).
    pub fn hosting(s: &crate::RunningServer) -> &Arc<Hosting> {
        &s.state.hosting
    }

    /// The running server's transparency log (tests append what the
    /// director and devices would).
    pub fn log(s: &crate::RunningServer) -> &Arc<ServerLog> {
        &s.state.log
    }

    /// The running server's admin-token keys (tests forge and tamper).
    pub fn token_keys(s: &crate::RunningServer) -> &TokenKeys {
        s.state.auth.tokens()
    }

    /// The housekeeping step that re-signs `repo`'s timestamp when it
    /// expires within `within` (blocking: run it off the async runtime).
    pub fn renew_timestamp(
        s: &crate::RunningServer,
        repo: &str,
        within: chrono::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<u64>, AuthoringError> {
        let repos = &s.state.repos;
        repos
            .authoring
            .renew_timestamp(repo, within, &repos.hosting, now)
    }
}
