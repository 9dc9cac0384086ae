//! custody-client: the IO shell around `custody-tuf`.
//!
//! custody-tuf makes every trust decision (signatures, thresholds, versions,
//! expiry, hashes, lengths, delegations). This crate only moves bytes:
//! [`transport`] fetches them with a length bound and time budgets,
//! [`store`] keeps verified metadata crash-safely, [`updater`] drives the TUF
//! client workflow (spec §5, python-tuf ngclient's request pattern) and
//! [`target`] streams targets through custody-tuf's verifier.
//!
//! The same shell for the transparency log (custody-log decides, these
//! move bytes): [`log`] checks a target against the log before it is
//! used, [`witness`] is the witness loop and [`audit`] the auditor's
//! fetching (`custody witness`, `custody audit`).
//!
//! ```no_run
//! use custody_client::{AnyTransport, Updater, UpdaterConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = url::Url::parse("https://repo.example/metadata/")?;
//! let mut updater = Updater::new("/var/lib/app/tuf", url, AnyTransport::default(),
//!                                UpdaterConfig::default(), chrono::Utc::now())?;
//! updater.refresh()?;
//! let base = url::Url::parse("https://repo.example/targets/")?;
//! let got = updater.fetch_target("app/v2.tar.gz", &base, "/var/lib/app/targets".as_ref())?;
//! println!("{} verified at {}", got.path, got.file.display());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// Untrusted bytes flow through every module: no panicking shortcuts.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::indexing_slicing)]

pub mod audit;
pub mod encoding;
mod error;
pub mod log;
mod logtool;
#[cfg(feature = "monitor")]
pub mod monitor;
pub mod store;
pub mod target;
pub mod transport;
pub mod updater;
pub mod witness;

pub use error::ClientError;
pub use store::{MetadataStore, StoreError};
pub use target::DownloadedTarget;
pub use transport::{
    AnyTransport, FetchError, Fetched, FileTransport, HttpTransport, Timeouts, TlsRootsError,
    Transport,
};
pub use updater::{init_trusted_root, Updater, UpdaterConfig};
