//! custody-server: the HTTP service behind `custody serve`.
//!
//! - [`hosting`]: TUF repositories in consistent-snapshot layout, served
//!   with strong ETags, single-range requests, immutable/no-cache headers
//!   and atomic generation switches; small metadata from memory.
//! - [`api`]: the admin API under `/api/v1` with its OpenAPI document.
//! - [`authoring`]: server-side TUF repositories (custody-repo): drafts,
//!   online snapshot/timestamp keys, signature merge, publish into hosting.
//! - [`provenance`]: per-repository provenance policy, DSSE envelopes on
//!   the upload path, the gate at staging (custody-provenance).
//! - [`auth`]: the auth slice: bootstrap credentials, OIDC workload
//!   identity, short-lived scoped tokens, scopes and separation of duties,
//!   the token-request rate limit, audit, and their routes.
//! - [`storage`]: one async trait, SQLite (default) and PostgreSQL.
//! - [`blobs`]: content-addressed blob store (crash-safe local backend).
//! - [`server`]: router, TLS (rustls/ring), metrics, graceful shutdown.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod director;
pub mod error;
mod ids;
pub mod metrics;
mod openapi;
pub mod repos;
pub mod server;
pub mod state;
pub mod storage;
pub mod tlog;

pub use config::ServerConfig;
pub use server::{run_blocking, shutdown_signal, start, RunningServer};
pub use state::{AppState, StartError};

/// Temporary path for `custody demo` (crates/custody/src/demo.rs), which is
/// being rewritten to use only the HTTP API; removed when it no longer
/// names it. Not an API.
#[doc(hidden)]
pub mod log {
    pub use crate::tlog::{log_targets, stamp};
}

/// Temporary path for `custody demo` (see [`log`]). Not an API.
#[doc(hidden)]
pub mod hosting {
    pub use crate::repos::hosting::Hosting;
}
