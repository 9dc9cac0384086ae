//! The one error type of every key backend.
use std::path::PathBuf;

/// Errors of key generation, key loading and signing.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} already exists: refusing to overwrite a private key")]
    AlreadyExists { path: PathBuf },
    #[error("key file {path}: not a PEM \"ENCRYPTED PRIVATE KEY\" document ({detail}); custody only stores private keys encrypted (PKCS#8 PBES2)")]
    NotEncryptedPkcs8 { path: PathBuf, detail: String },
    #[error("key file {path}: wrong passphrase (PKCS#8 decryption failed or the decrypted key is malformed)")]
    WrongPassphrase { path: PathBuf },
    #[error("key file {path}: unsupported private key: {detail} (supported: ed25519, ecdsa P-256, ecdsa P-384, rsa >= 2048 bits)")]
    UnsupportedKey { path: PathBuf, detail: String },
    #[error("passphrase: {0}")]
    Passphrase(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("signing with key {keyid} failed: {detail}")]
    Sign { keyid: String, detail: String },
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    #[error("encoding the public key failed: {0}")]
    Encode(String),
}
