//! The device key, behind a small pluggable backend.
//!
//! The device id is the TUF key id of this key (custody-director's rule), so
//! the key IS the device identity. [`KeyBackend`] is the seam where a
//! PKCS#11 token or a TPM plugs in later: the rest of the agent only sees a
//! custody-keys [`Signer`]. [`FileKeyBackend`] keeps an unencrypted PKCS#8
//! key in a file created with mode 0600 (never widened), like an SSH host
//! key: the device must sign unattended, so a passphrase would sit next to
//! the file anyway.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use custody_keys::{KeyType, MemorySigner, Signer};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, AgentError};
use crate::fsutil::{parent, read_json};

/// Device key algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKeyType {
    /// Ed25519 (default)
    Ed25519,
    /// ECDSA P-256 (secure elements that only do P-256)
    EcdsaP256,
}

impl DeviceKeyType {
    fn repo_type(self) -> KeyType {
        match self {
            DeviceKeyType::Ed25519 => KeyType::Ed25519,
            DeviceKeyType::EcdsaP256 => KeyType::EcdsaP256,
        }
    }
}

/// A signer usable across threads (the daemon signs from its poll loop).
pub type DeviceSigner = Box<dyn Signer + Send + Sync>;

/// Where the device key lives.
pub trait KeyBackend {
    /// Human description for messages (`file /var/lib/custody/device-key.json`).
    fn describe(&self) -> String;
    /// Create a new key. Fails if one exists: a new key is a new device.
    fn generate(&self, kind: DeviceKeyType) -> Result<DeviceSigner, AgentError>;
    /// Load the existing key.
    fn load(&self) -> Result<DeviceSigner, AgentError>;
}

/// Unencrypted PKCS#8 in a 0600 JSON file.
#[derive(Debug, Clone)]
pub struct FileKeyBackend {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_type: DeviceKeyType,
    /// hex PKCS#8 DER
    pkcs8: String,
}

impl FileKeyBackend {
    /// A key file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKeyBackend { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn key_err(path: &Path, detail: String) -> AgentError {
    AgentError::Key {
        backend: format!("file {}", path.display()),
        detail,
    }
}

impl KeyBackend for FileKeyBackend {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn generate(&self, kind: DeviceKeyType) -> Result<DeviceSigner, AgentError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = match kind {
            DeviceKeyType::Ed25519 => {
                ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map(|d| d.as_ref().to_vec())
            }
            DeviceKeyType::EcdsaP256 => ring::signature::EcdsaKeyPair::generate_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &rng,
            )
            .map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| key_err(&self.path, "key generation failed (system RNG)".into()))?;
        let signer = MemorySigner::from_pkcs8(kind.repo_type(), &doc)
            .map_err(|e| key_err(&self.path, e.to_string()))?;
        let body = serde_json::to_vec_pretty(&KeyFile {
            key_type: kind,
            pkcs8: hex::encode(&doc),
        })
        .map_err(|e| key_err(&self.path, e.to_string()))?;
        crate::fsutil::ensure_dir(parent(&self.path))?;
        // create_new: never overwrite an identity; mode 0600 from the start
        // (no window where the key is readable by others); written to a temp
        // file and moved into place, so a crash never leaves a torn key.
        custody_fs::write_atomic_with(
            &self.path,
            &body,
            custody_fs::WriteOptions {
                mode: Some(0o600),
                create_new: true,
            },
        )
        .map_err(|e| match e {
            custody_fs::FsError::Exists { .. } => {
                io_err(&self.path, "create device key file (0600, must not exist)")(
                    std::io::ErrorKind::AlreadyExists.into(),
                )
            }
            e => AgentError::from(e),
        })?;
        Ok(Box::new(signer))
    }

    fn load(&self) -> Result<DeviceSigner, AgentError> {
        let meta = std::fs::metadata(&self.path).map_err(io_err(&self.path, "stat device key"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_err(
                &self.path,
                format!("mode {mode:o} lets others read the device key; must be 0600"),
            ));
        }
        let kf: KeyFile = read_json(&self.path, "device key file")?.ok_or_else(|| {
            key_err(
                &self.path,
                "missing: enrol first (`custody agent enroll`)".into(),
            )
        })?;
        let der = hex::decode(&kf.pkcs8)
            .map_err(|e| key_err(&self.path, format!("field pkcs8: not hex: {e}")))?;
        let signer = MemorySigner::from_pkcs8(kf.key_type.repo_type(), &der)
            .map_err(|e| key_err(&self.path, e.to_string()))?;
        Ok(Box::new(signer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_roundtrip_0600_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        for (i, kind) in [DeviceKeyType::Ed25519, DeviceKeyType::EcdsaP256]
            .into_iter()
            .enumerate()
        {
            let b = FileKeyBackend::new(dir.path().join(format!("k{i}.json")));
            let s = b.generate(kind).unwrap();
            let mode = std::fs::metadata(b.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let l = b.load().unwrap();
            assert_eq!(s.keyid(), l.keyid());
            assert!(b.generate(kind).is_err(), "must not overwrite a key");
            std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = b.load().err().unwrap().to_string();
            assert!(e.contains("0600"), "{e}");
        }
    }
}
