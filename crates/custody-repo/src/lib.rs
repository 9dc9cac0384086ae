//! custody-repo: TUF repository authoring and the signer backends.
//!
//! - [`signer::Signer`]: one private key that signs TUF metadata.
//! - [`keyfile`]: encrypted PKCS#8 key files (ed25519, ecdsa P-256/P-384, rsa-pss).
//! - [`pkcs11`]: keys on a PKCS#11 token (HSM, SoftHSM).
//! - [`repository::Repository`]: the staged repository (init, targets,
//!   delegations, hash bins, root changes, threshold/offline signing, publish).
//!
//! No verification rule lives here: thresholds, expiry, versions and hashes
//! are decided by `custody-tuf`, and `publish` replays its client workflow
//! over the exact bytes it is about to publish. See README.md.
#![forbid(unsafe_code)]
// Library code handles bytes from outside (key files, offline-signed metadata,
// target trees): no panicking shortcuts outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod error;
pub mod fsutil;
pub mod keyfile;
pub mod keyring;
pub mod keys;
pub mod memsigner;
pub mod passphrase;
pub mod paths;
pub mod pkcs11;
pub mod policy;
pub mod repository;
pub mod signer;

/// The provenance gate's crate (policies, envelopes), for callers of
/// [`repository::ProvenanceInput`].
pub use custody_provenance;
pub use error::{RepoError, SignerError};
pub use keys::{KeyType, TufPublicKey};
pub use repository::Repository;
pub use signer::Signer;
