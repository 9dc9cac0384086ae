//! custody-repo: TUF repository authoring.
//!
//! - [`keyring::KeyRing`]: the signing keys of one command (key files and
//!   PKCS#11 tokens, which are custody-keys' backends).
//! - [`repository::Repository`]: the staged repository (init, targets,
//!   delegations, hash bins, root changes, threshold/offline signing, publish).
//!
//! No verification rule lives here: thresholds, expiry, versions and hashes
//! are decided by `custody-tuf`, and `publish` replays its client workflow
//! over the exact bytes it is about to publish. See README.md.
#![forbid(unsafe_code)]
// Library code handles bytes from outside (key files, offline-signed metadata,
// target trees): no panicking shortcuts outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::indexing_slicing)]

pub mod error;
pub mod fsutil;
pub mod keyring;
pub mod paths;
pub mod policy;
pub mod repository;

// The signer backends moved to custody-keys; these keep the in-crate paths
// (`crate::keys::...`, `crate::signer::Signer`) valid. Other crates import
// from custody_keys.
pub use custody_keys::{keyfile, keys, passphrase, pkcs11};
/// The [`Signer`] trait (custody-keys).
pub mod signer {
    pub use custody_keys::Signer;
}

/// The provenance gate's crate (policies, envelopes), for callers of
/// [`repository::ProvenanceInput`].
pub use custody_provenance;
pub use error::{RepoError, SignerError};
pub use keys::{KeyType, TufPublicKey};
pub use repository::Repository;
pub use signer::Signer;
