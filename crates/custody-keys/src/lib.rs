//! custody-keys: the private keys that sign TUF and director metadata.
//!
//! Below custody-repo, custody-director and custody-agent; depends only on
//! custody-tuf (for the TUF key type and key ids).
//!
//! Always built (no features, what a device build compiles):
//! - [`Signer`]: one private key that signs; the trait every backend implements.
//! - [`KeyType`], [`TufPublicKey`], [`keys::keyid`], [`keys::key_type_of`]:
//!   the key types custody signs with and their TUF form.
//! - [`MemorySigner`]: an Ed25519 or ECDSA P-256 key in memory (tests,
//!   throwaway repositories, device keys kept by a device key store).
//! - [`SignerError`]: the one error type of every backend.
//!
//! Features (none by default):
//! - `file`: `keyfile` (encrypted PKCS#8 key files: load, and generate
//!   ed25519, ecdsa P-256/P-384 and rsa-pss; RSA generation is the `rsa`
//!   crate, scrypt is the file encryption) and `passphrase` (where a
//!   passphrase comes from: environment, file, terminal prompt).
//! - `pkcs11`: `pkcs11` (keys on a PKCS#11 token through cryptoki; the
//!   module is loaded at run time) and `passphrase` (the PIN source).
//!
//! All signing math is ring's.
#![forbid(unsafe_code)]
// Library code handles bytes from outside (key files, token answers): no
// panicking shortcuts outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::indexing_slicing)]

#[cfg(any(feature = "file", feature = "pkcs11"))]
mod encode;
mod error;
#[cfg(feature = "file")]
pub mod keyfile;
pub mod keys;
mod memory;
#[cfg(any(feature = "file", feature = "pkcs11"))]
pub mod passphrase;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod signer;

pub use error::SignerError;
pub use keys::{KeyType, TufPublicKey};
pub use memory::MemorySigner;
pub use signer::Signer;
