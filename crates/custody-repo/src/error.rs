//! Typed errors of the signer backends and of repository authoring.
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

/// Errors of repository authoring. Every variant names the file, role or
/// field, the rule and the values.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error(transparent)]
    Tuf(#[from] custody_tuf::Error),
    #[error("target path {path:?} rejected: {rule}")]
    BadTargetPath { path: String, rule: String },
    #[error("role {role:?}: {detail}")]
    Role { role: String, detail: String },
    #[error("{0}")]
    Invalid(String),
    #[error("publish refused: {0}")]
    Publish(String),
    #[error("target {target:?} refused by the {policy}: {detail}")]
    Provenance {
        target: String,
        /// which policy refused (the repository's stored one or the one
        /// given for this command)
        policy: String,
        detail: String,
    },
}
