//! The keys available to one authoring run: signers loaded from key files or
//! PKCS#11 tokens, plus where each key of the repository lives.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use custody_keys::keyfile;
use custody_keys::keys::keyid;
use custody_keys::passphrase::SecretSource;
use custody_keys::pkcs11::{Pkcs11Signer, Pkcs11Uri};
use custody_keys::{Signer, SignerError, TufPublicKey};

use crate::error::RepoError;

/// Where the private half of a repository key lives. Recorded in the
/// repository config so later runs can find online keys; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeyLocation {
    /// An encrypted PKCS#8 key file.
    File { path: PathBuf },
    /// A key on a PKCS#11 token.
    Pkcs11 { uri: String },
    /// Held elsewhere (offline signer); only the public key is known here.
    Offline,
}

/// A key named on the command line: a key file, a public key JSON file, or
/// a `pkcs11:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    File(PathBuf),
    Public(PathBuf),
    Pkcs11(String),
}

impl KeySpec {
    /// Classify `spec`: `pkcs11:` URIs; files starting with `{` are public
    /// key JSON (a TUF key or `custody key show --json` output); other
    /// files are encrypted key files.
    pub fn parse(spec: &str) -> Result<KeySpec, RepoError> {
        if spec.starts_with("pkcs11:") {
            return Ok(KeySpec::Pkcs11(spec.to_owned()));
        }
        use std::io::Read;
        let path = PathBuf::from(spec);
        let io = |source| RepoError::Io {
            path: path.clone(),
            source,
        };
        // The first non-blank byte decides; 256 bytes are plenty to find it.
        let mut head = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(256).read_to_end(&mut head))
            .map_err(io)?;
        if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            Ok(KeySpec::Public(path))
        } else {
            Ok(KeySpec::File(path))
        }
    }
}

/// Read a public key JSON file: a TUF key object or `{"key": {...}}`.
pub fn read_public_key_file(path: &Path) -> Result<TufPublicKey, RepoError> {
    let bad = |detail: String| RepoError::BadFile {
        path: path.to_owned(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|source| RepoError::Io {
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() > 64 * 1024 {
        return Err(bad("larger than 64 KiB: not a public key file".into()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let key_v = v.get("key").cloned().unwrap_or(v);
    serde_json::from_value(key_v).map_err(|e| {
        bad(format!(
            "not a TUF public key (keytype, scheme, keyval): {e}"
        ))
    })
}

/// Signers available to this run, by key id.
pub struct KeyRing {
    signers: BTreeMap<String, Box<dyn Signer>>,
    passphrase: SecretSource,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keyids", &self.signers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// An empty key ring; key files are decrypted with `passphrase`.
    pub fn new(passphrase: SecretSource) -> Self {
        KeyRing {
            signers: BTreeMap::new(),
            passphrase,
        }
    }

    /// Add an already opened signer.
    pub fn add(&mut self, signer: Box<dyn Signer>) {
        self.signers.insert(signer.keyid().to_owned(), signer);
    }

    /// The signer for `keyid`, if loaded.
    pub fn get(&self, keyid: &str) -> Option<&dyn Signer> {
        self.signers.get(keyid).map(|b| b.as_ref())
    }

    /// Key ids of all loaded signers.
    pub fn keyids(&self) -> impl Iterator<Item = &str> {
        self.signers.keys().map(String::as_str)
    }

    fn open_file(&self, path: &Path) -> Result<Box<dyn Signer>, SignerError> {
        let pass = self
            .passphrase
            .read(&format!("passphrase for {}", path.display()), false)?;
        Ok(Box::new(keyfile::load(path, pass.as_bytes())?))
    }

    /// Open the key `spec` names; private keys are added to the ring.
    /// Returns the public key, its id and where it lives.
    pub fn load_spec(
        &mut self,
        spec: &KeySpec,
    ) -> Result<(TufPublicKey, String, KeyLocation), RepoError> {
        let (signer, location): (Option<Box<dyn Signer>>, KeyLocation) = match spec {
            KeySpec::Pkcs11(uri) => {
                let parsed: Pkcs11Uri = uri.parse()?;
                (
                    Some(Box::new(Pkcs11Signer::open(&parsed)?)),
                    KeyLocation::Pkcs11 { uri: uri.clone() },
                )
            }
            KeySpec::File(path) => {
                let abs = std::path::absolute(path).map_err(|source| RepoError::Io {
                    path: path.clone(),
                    source,
                })?;
                (Some(self.open_file(&abs)?), KeyLocation::File { path: abs })
            }
            KeySpec::Public(path) => {
                let key = read_public_key_file(path)?;
                let id = keyid(&key)?;
                return Ok((key, id, KeyLocation::Offline));
            }
        };
        let signer = signer.ok_or_else(|| RepoError::Invalid("no signer".into()))?;
        let key = signer.key().clone();
        let id = signer.keyid().to_owned();
        self.add(signer);
        Ok((key, id, location))
    }

    /// Make sure the signer for `keyid` is loaded if its location is known
    /// and reachable. A key file that no longer exists (moved offline) is
    /// not an error: the key is just not available. A wrong passphrase is.
    pub fn ensure(&mut self, keyid: &str, location: Option<&KeyLocation>) -> Result<(), RepoError> {
        if self.signers.contains_key(keyid) {
            return Ok(());
        }
        let signer: Box<dyn Signer> = match location {
            None | Some(KeyLocation::Offline) => return Ok(()),
            Some(KeyLocation::File { path }) => {
                if !path.exists() {
                    tracing::info!(keyid, path = %path.display(), "key file not present; treating the key as offline");
                    return Ok(());
                }
                self.open_file(path)?
            }
            Some(KeyLocation::Pkcs11 { uri }) => {
                let parsed: Pkcs11Uri = uri.parse()?;
                Box::new(Pkcs11Signer::open(&parsed)?)
            }
        };
        if signer.keyid() != keyid {
            return Err(RepoError::Invalid(format!(
                "key location recorded for key id {keyid} now holds key {}: the key file or token object was replaced",
                signer.keyid()
            )));
        }
        self.add(signer);
        Ok(())
    }
}
