//! Key-file backend: private keys stored as encrypted PKCS#8 PEM
//! (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, PBES2 with scrypt and
//! AES-256-CBC), readable by `openssl pkey`.
//!
//! Generation: ring for Ed25519 and ECDSA; the RustCrypto `rsa` crate for RSA
//! because ring cannot generate RSA keys. Signing is always ring (constant
//! time), including RSA-PSS: the `rsa` crate never touches the private key
//! after generation, so the Marvin timing side channel of RUSTSEC-2023-0071
//! (about private-key operations an attacker can time: decryption and
//! signing) does not apply, and the 0.10 line we use is the constant-time
//! rewrite on crypto-bigint anyway.
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use pkcs8::der::{Decode, Document};
use pkcs8::pkcs5::pbes2;
use pkcs8::pkcs5::scrypt;
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as rsig, KeyPair};
use zeroize::Zeroizing;

use crate::encode::{OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, OID_P384, OID_RSA};
use crate::error::SignerError;
use crate::keys::{KeyType, TufPublicKey};
use crate::memory::{MemorySigner, RingKey};
use crate::signer::Signer;

/// RSA modulus size custody generates. NIST SP 800-57: 3072 bits for
/// security beyond 2030; TUF root keys live for years.
pub const RSA_GENERATE_BITS: usize = 3072;

/// Largest key file custody reads (an RSA-8192 encrypted key is ~6.5 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// scrypt cost: N = 2^14, r = 8, p = 1 (16 MiB, ~50 ms). This is OpenSSL's
/// own default for `openssl pkcs8 -scrypt`, and the highest N OpenSSL will
/// decrypt: it caps scrypt memory at 32 MiB when reading PKCS#8, and
/// N = 2^15 with r = 8 needs just over that.
const SCRYPT_LOG_N: u8 = 14;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

/// A private key loaded (decrypted) from a key file. It signs with the
/// same in-memory ring key as [`MemorySigner`]; only where it came from and
/// the public key encoding (ECDSA as PEM SubjectPublicKeyInfo) differ.
pub struct FileSigner {
    path: PathBuf,
    key: MemorySigner,
}

impl std::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSigner")
            .field("path", &self.path)
            .field("key_type", &self.key.key_type())
            .field("keyid", &self.key.keyid())
            .finish_non_exhaustive()
    }
}

impl FileSigner {
    /// The file this key came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Signer for FileSigner {
    fn key(&self) -> &TufPublicKey {
        self.key.key()
    }
    fn keyid(&self) -> &str {
        self.key.keyid()
    }
    fn key_type(&self) -> KeyType {
        self.key.key_type()
    }
    fn as_sync(&self) -> Option<&(dyn Signer + Sync)> {
        Some(self)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.key.sign(msg)
    }
}

/// Generate a new key of type `kt`, write it encrypted under `passphrase` to
/// `path` (mode 0600, never overwriting), and return it loaded.
pub fn generate(path: &Path, kt: KeyType, passphrase: &[u8]) -> Result<FileSigner, SignerError> {
    if passphrase.is_empty() {
        return Err(SignerError::Passphrase(
            "empty passphrase: a private key file must be encrypted with a non-empty passphrase"
                .into(),
        ));
    }
    if path.symlink_metadata().is_ok() {
        return Err(SignerError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let rng = SystemRandom::new();
    let gen_err = |what: &str| SignerError::Generate(format!("{kt}: {what}"));
    let pkcs8_der: Zeroizing<Vec<u8>> = match kt {
        KeyType::Ed25519 => {
            let v2 = rsig::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| gen_err("ring key generation failed"))?;
            pkcs8_v1(v2.as_ref()).map_err(|e| gen_err(&e))?
        }
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => Zeroizing::new(
            rsig::EcdsaKeyPair::generate_pkcs8(ecdsa_alg(kt), &rng)
                .map_err(|_| gen_err("ring key generation failed"))?
                .as_ref()
                .to_vec(),
        ),
        KeyType::RsaPss => generate_rsa_pkcs8(RSA_GENERATE_BITS)?,
    };
    let signer = from_pkcs8(path, &pkcs8_der, &rng)?;
    let pem = encrypt_pkcs8_pem(&pkcs8_der, passphrase, &rng)?;
    write_new_private(path, pem.as_bytes()).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SignerError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            SignerError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    Ok(signer)
}

/// Re-encode a PKCS#8 v2 (OneAsymmetricKey, RFC 5958) document as v1 without
/// the optional public key. ring writes v2 for Ed25519; OpenSSL 3.0 cannot
/// read v2, and the public key is derived from the seed anyway.
fn pkcs8_v1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    use pkcs8::der::Encode;
    let mut info = PrivateKeyInfo::from_der(der).map_err(|e| format!("PKCS#8: {e}"))?;
    info.public_key = None;
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|e| format!("PKCS#8: {e}"))
}

fn generate_rsa_pkcs8(bits: usize) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
        .map_err(|e| SignerError::Generate(format!("rsa-pss: {e}")))?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|e| SignerError::Generate(format!("rsa-pss: PKCS#8 encoding: {e}")))?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

/// Encrypt a PKCS#8 DER private key as an "ENCRYPTED PRIVATE KEY" PEM.
fn encrypt_pkcs8_pem(
    pkcs8_der: &[u8],
    passphrase: &[u8],
    rng: &SystemRandom,
) -> Result<Zeroizing<String>, SignerError> {
    let enc = |e: String| SignerError::Encode(format!("PKCS#8 encryption: {e}"));
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut iv))
        .map_err(|_| enc("system RNG failed".into()))?;
    let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, 32)
        .map_err(|e| enc(e.to_string()))?;
    let pbes2 =
        pbes2::Parameters::scrypt_aes256cbc(params, &salt, &iv).map_err(|e| enc(e.to_string()))?;
    let info = PrivateKeyInfo::try_from(pkcs8_der).map_err(|e| enc(e.to_string()))?;
    let doc = info
        .encrypt_with_params(pbes2, passphrase)
        .map_err(|e| enc(e.to_string()))?;
    // The encrypted document is not secret, but keep it tidy.
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| enc(e.to_string()))
}

/// Read and decrypt the key file at `path`.
pub fn load(path: &Path, passphrase: &[u8]) -> Result<FileSigner, SignerError> {
    let io = |source| SignerError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut pem = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut pem)
        .map_err(io)?;
    let pem = Zeroizing::new(pem);
    if pem.len() as u64 > MAX_KEY_FILE {
        return Err(SignerError::NotEncryptedPkcs8 {
            path: path.to_owned(),
            detail: format!("file is larger than {MAX_KEY_FILE} bytes"),
        });
    }
    load_pem(path, &pem, passphrase)
}

/// Decrypt an "ENCRYPTED PRIVATE KEY" PEM document; `path` only names it
/// in errors. This is the parser of (possibly hostile) key-file bytes.
pub fn load_pem(path: &Path, pem: &str, passphrase: &[u8]) -> Result<FileSigner, SignerError> {
    let not_enc = |detail: String| SignerError::NotEncryptedPkcs8 {
        path: path.to_owned(),
        detail,
    };
    let (label, doc) = Document::from_pem(pem).map_err(|e| not_enc(format!("PEM: {e}")))?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(not_enc(format!("PEM label is {label:?}")));
    }
    let epki = EncryptedPrivateKeyInfo::from_der(doc.as_bytes())
        .map_err(|e| not_enc(format!("DER: {e}")))?;
    let secret = epki
        .decrypt(passphrase)
        .map_err(|_| SignerError::WrongPassphrase {
            path: path.to_owned(),
        })?;
    // A wrong passphrase passes the CBC padding check about 1 time in 256;
    // the DER parse of the garbage then fails: report it the same way.
    if PrivateKeyInfo::from_der(secret.as_bytes()).is_err() {
        return Err(SignerError::WrongPassphrase {
            path: path.to_owned(),
        });
    }
    from_pkcs8(path, secret.as_bytes(), &SystemRandom::new())
}

fn ecdsa_alg(kt: KeyType) -> &'static rsig::EcdsaSigningAlgorithm {
    if kt == KeyType::EcdsaP384 {
        &rsig::ECDSA_P384_SHA384_ASN1_SIGNING
    } else {
        &rsig::ECDSA_P256_SHA256_ASN1_SIGNING
    }
}

/// Build a signer from unencrypted PKCS#8 DER.
fn from_pkcs8(path: &Path, der: &[u8], rng: &SystemRandom) -> Result<FileSigner, SignerError> {
    let unsupported = |detail: String| SignerError::UnsupportedKey {
        path: path.to_owned(),
        detail,
    };
    let info = PrivateKeyInfo::from_der(der).map_err(|e| unsupported(format!("PKCS#8: {e}")))?;
    let oid = info.algorithm.oid;
    let (key_type, public, inner) = if oid == OID_ED25519 {
        // maybe_unchecked: also accept PKCS#8 v1 (no public key), which is
        // what OpenSSL writes; ring derives the public key.
        let kp = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| unsupported(format!("ed25519: {e}")))?;
        let public = crate::keys::ed25519_key(kp.public_key().as_ref());
        (KeyType::Ed25519, public, RingKey::Ed25519(kp))
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|e| unsupported(format!("ecdsa curve parameter: {e}")))?;
        let kt = if curve == OID_P256 {
            KeyType::EcdsaP256
        } else if curve == OID_P384 {
            KeyType::EcdsaP384
        } else {
            return Err(unsupported(format!("ecdsa curve {curve}")));
        };
        let kp = rsig::EcdsaKeyPair::from_pkcs8(ecdsa_alg(kt), der, rng)
            .map_err(|e| unsupported(format!("{kt}: {e}")))?;
        let public = crate::encode::ecdsa_key(kt, kp.public_key().as_ref())?;
        (kt, public, RingKey::Ecdsa(kp))
    } else if oid == OID_RSA {
        let kp = rsig::RsaKeyPair::from_pkcs8(der).map_err(|e| unsupported(format!("rsa: {e}")))?;
        let public = crate::encode::rsa_key(kp.public_key().as_ref())?;
        (KeyType::RsaPss, public, RingKey::Rsa(kp))
    } else {
        return Err(unsupported(format!("algorithm OID {oid}")));
    };
    Ok(FileSigner {
        path: path.to_owned(),
        key: MemorySigner::from_parts(inner, public, key_type)?,
    })
}

/// Write `bytes` to a new file at `path` with mode 0600: temp file in the
/// same directory, fsync, no-clobber rename, fsync the directory. Fails with
/// `ErrorKind::AlreadyExists` if anything exists at `path` (never overwrites).
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // custody-fs: temp file (0600), fsync, no-clobber move, directory fsync.
    let opts = custody_fs::WriteOptions {
        mode: Some(0o600),
        create_new: true,
    };
    Ok(custody_fs::write_atomic_with(path, bytes, opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verify with custody-tuf's verifier: what clients will run.
    fn verify(signer: &FileSigner, msg: &[u8], sig: &[u8]) {
        let pk = custody_tuf::PublicKey::from_key(signer.key()).unwrap();
        assert!(pk.verify(msg, sig), "{}", signer.key_type());
    }

    #[test]
    fn generate_load_sign_verify_each_fast_type() {
        let dir = tempfile::tempdir().unwrap();
        for kt in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::EcdsaP384] {
            let path = dir.path().join(format!("{kt}.pem"));
            let generated = generate(&path, kt, b"correct horse").unwrap();
            let loaded = load(&path, b"correct horse").unwrap();
            assert_eq!(generated.keyid(), loaded.keyid());
            assert_eq!(loaded.key().scheme, kt.tuf_scheme());
            let sig = loaded.sign(b"msg").unwrap();
            verify(&loaded, b"msg", &sig);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{kt}");
            }
        }
    }

    #[test]
    fn wrong_passphrase_is_a_clear_error_and_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        generate(&path, KeyType::Ed25519, b"right").unwrap();
        let before = fs::read(&path).unwrap();
        let err = load(&path, b"wrong").unwrap_err();
        assert!(matches!(err, SignerError::WrongPassphrase { .. }), "{err}");
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        assert!(err.to_string().contains("k.pem"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn never_overwrites_an_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, b"precious").unwrap();
        let err = generate(&path, KeyType::Ed25519, b"pw").unwrap_err();
        assert!(matches!(err, SignerError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"precious");
        // and no temp files were left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_unencrypted_pkcs8_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.pem");
        let der = rsig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pem =
            pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, der.as_ref()).unwrap();
        fs::write(&path, pem).unwrap();
        let err = load(&path, b"x").unwrap_err();
        assert!(
            matches!(err, SignerError::NotEncryptedPkcs8 { .. }),
            "{err}"
        );
        fs::write(&path, b"\x00\xffnot pem").unwrap();
        assert!(load(&path, b"x").is_err());
    }

    #[test]
    fn empty_passphrase_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        assert!(matches!(
            generate(&path, KeyType::Ed25519, b""),
            Err(SignerError::Passphrase(_))
        ));
        assert!(!path.exists());
    }
}
