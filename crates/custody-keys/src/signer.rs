//! The signing interface every key backend implements.
use crate::error::SignerError;
use crate::keys::{KeyType, TufPublicKey};

/// Something that holds one private key and can sign TUF metadata with it.
///
/// Implementations: [`crate::MemorySigner`] (in memory), `keyfile::FileSigner`
/// (encrypted PKCS#8 file, feature `file`) and `pkcs11::Pkcs11Signer` (key on
/// a PKCS#11 token, never leaves it; feature `pkcs11`).
pub trait Signer {
    /// The public key in TUF form (`keytype`, `scheme`, `keyval.public`).
    fn key(&self) -> &TufPublicKey;
    /// The TUF key id (hex SHA-256 of the canonical JSON of [`Signer::key`]).
    fn keyid(&self) -> &str;
    /// custody's name for the key type.
    fn key_type(&self) -> KeyType;
    /// Sign `msg` (the canonical JSON of a `signed` object) with the
    /// key's TUF scheme. ECDSA signatures are DER (`ECDSA-Sig-Value`), as
    /// TUF and securesystemslib expect; the caller hex-encodes.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError>;
    /// This signer as a thread-safe one, if it is (key files, in-memory
    /// keys: stateless `ring` key pairs). Lets a change to many roles (hash
    /// bins) be signed on all cores. Token sessions are not thread-safe and
    /// keep the default `None`: they sign one role at a time.
    fn as_sync(&self) -> Option<&(dyn Signer + Sync)> {
        None
    }
}
