//! custody-repo: TUF repository authoring and the signer backends.
//!
//! - [`signer::Signer`]: one private key that signs TUF metadata.
//! - [`keyfile`]: encrypted PKCS#8 key files (ed25519, ecdsa P-256/P-384, rsa-pss).
//! - [`pkcs11`]: keys on a PKCS#11 token (HSM, SoftHSM).
#![forbid(unsafe_code)]

pub mod error;
pub mod fsutil;
pub mod keyfile;
pub mod keyring;
pub mod keys;
pub mod passphrase;
pub mod paths;
pub mod pkcs11;
pub mod policy;
pub mod repository;
pub mod signer;

pub use error::{RepoError, SignerError};
pub use keys::{KeyType, TufPublicKey};
pub use repository::Repository;
pub use signer::Signer;
