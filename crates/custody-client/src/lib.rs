//! custody-client: the IO shell around `custody-tuf`.
//!
//! custody-tuf makes every trust decision (signatures, thresholds, versions,
//! expiry, hashes, lengths, delegations). This crate only moves bytes:
//! [`transport`] fetches them with a length bound and time budgets,
//! [`store`] keeps verified metadata crash-safely, [`updater`] drives the TUF
//! client workflow and streams targets through custody-tuf's verifier.
#![forbid(unsafe_code)]

pub mod encoding;
pub mod store;
pub mod transport;

pub use store::{MetadataStore, StoreError};
pub use transport::{
    AnyTransport, FetchError, Fetched, FileTransport, HttpTransport, Timeouts, Transport,
};
