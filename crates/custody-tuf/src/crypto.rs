//! Keys, signature thresholds and hashes.
//!
//! Supported (keytype / scheme / public key encoding):
//! - `ed25519` / `ed25519` / 64 hex chars (or PEM SPKI)
//! - `ecdsa`, `ecdsa-sha2-nistp256`, `ecdsa-sha2-nistp384` /
//!   `ecdsa-sha2-nistp256` or `ecdsa-sha2-nistp384` / hex uncompressed point
//!   or PEM SPKI (curve must match the scheme); signatures DER, hex
//! - `rsa` / `rsassa-pss-sha256` / PEM SPKI (2048..8192 bits)
//!
//! Anything else is *skipped*: the key simply cannot contribute to a
//! threshold, which is not an error by itself.
//!
//! Threshold counting rule: a role's threshold counts *distinct public keys*,
//! not key ids and not signatures. Each key id of the role is looked up once;
//! its key counts if any signature claiming that key id verifies. The
//! contributions are then de-duplicated by normalised public-key material
//! (algorithm + raw key bytes, independent of hex/PEM encoding), so that the
//! same key listed under two key ids (e.g. once as hex, once as PEM) counts
//! once. Key ids are *not* required to equal sha256 of the canonical key:
//! real repositories (sigstore) keep key ids across key re-encodings.

use std::collections::{BTreeMap, BTreeSet};

use ring::digest;
use ring::signature::{self as rsig, UnparsedPublicKey};
use spki::der::asn1::ObjectIdentifier;
use spki::der::DecodePem;
use spki::SubjectPublicKeyInfoOwned;

use crate::error::{Error, Result};
use crate::schema::{Hashes, Key, MetaFile, Signature};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Signature algorithm of a usable public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// Ed25519
    Ed25519,
    /// ECDSA P-256 with SHA-256, DER signatures
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384, DER signatures
    EcdsaP384Sha384,
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt length = hash length)
    RsaPssSha256,
}

/// A public key we can verify with, in normalised form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey {
    algorithm: Algorithm,
    /// raw key: ed25519 32 bytes, EC uncompressed point, RSA PKCS#1 DER
    material: Vec<u8>,
}

fn spki_from_pem(pem: &str) -> std::result::Result<SubjectPublicKeyInfoOwned, String> {
    SubjectPublicKeyInfoOwned::from_pem(pem)
        .map_err(|e| format!("invalid PEM SubjectPublicKeyInfo: {e}"))
}

fn ec_from_public(public: &str, curve: ObjectIdentifier) -> std::result::Result<Vec<u8>, String> {
    let t = public.trim();
    if t.starts_with("-----BEGIN") {
        let spki = spki_from_pem(t)?;
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(format!(
                "SPKI algorithm {} is not id-ecPublicKey",
                spki.algorithm.oid
            ));
        }
        let params = spki
            .algorithm
            .parameters
            .as_ref()
            .ok_or("SPKI ecPublicKey without curve parameter")?;
        let found: ObjectIdentifier = params
            .decode_as()
            .map_err(|e| format!("SPKI curve parameter is not an OID: {e}"))?;
        if found != curve {
            return Err(format!(
                "SPKI curve {found} does not match the scheme's curve {curve}"
            ));
        }
        spki.subject_public_key
            .as_bytes()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "SPKI public key bit string has unused bits".to_owned())
    } else {
        hex::decode(t).map_err(|e| format!("public key is neither PEM nor hex: {e}"))
    }
}

/// Require an uncompressed point of the curve's size (0x04 || X || Y).
fn ec_point(raw: Vec<u8>, len: usize) -> std::result::Result<Vec<u8>, String> {
    if raw.len() != len || raw.first() != Some(&4) {
        return Err(format!(
            "EC public key must be an uncompressed point of {len} bytes, got {} bytes",
            raw.len()
        ));
    }
    Ok(raw)
}

impl PublicKey {
    /// Interpret a TUF key. `Err` carries the reason the key is unusable
    /// (unknown type/scheme or malformed material); callers skip such keys.
    pub fn from_key(key: &Key) -> std::result::Result<Self, String> {
        let public = key
            .keyval
            .public
            .as_deref()
            .ok_or_else(|| "keyval.public is missing".to_owned())?;
        let (algorithm, material) = match (key.keytype.as_str(), key.scheme.as_str()) {
            ("ed25519", "ed25519") => {
                let t = public.trim();
                let raw = if t.starts_with("-----BEGIN") {
                    let spki = spki_from_pem(t)?;
                    if spki.algorithm.oid != OID_ED25519 {
                        return Err(format!(
                            "SPKI algorithm {} is not Ed25519",
                            spki.algorithm.oid
                        ));
                    }
                    spki.subject_public_key.raw_bytes().to_vec()
                } else {
                    hex::decode(t).map_err(|e| format!("ed25519 public key is not hex: {e}"))?
                };
                if raw.len() != 32 {
                    return Err(format!(
                        "ed25519 public key must be 32 bytes, got {}",
                        raw.len()
                    ));
                }
                (Algorithm::Ed25519, raw)
            }
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => (
                Algorithm::EcdsaP256Sha256,
                ec_point(ec_from_public(public, OID_P256)?, 65)?,
            ),
            ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => (
                Algorithm::EcdsaP384Sha384,
                ec_point(ec_from_public(public, OID_P384)?, 97)?,
            ),
            ("rsa", "rsassa-pss-sha256") => {
                let spki = spki_from_pem(public.trim())?;
                if spki.algorithm.oid != OID_RSA {
                    return Err(format!(
                        "SPKI algorithm {} is not rsaEncryption",
                        spki.algorithm.oid
                    ));
                }
                let raw = spki
                    .subject_public_key
                    .as_bytes()
                    .ok_or("SPKI public key bit string has unused bits")?
                    .to_vec();
                (Algorithm::RsaPssSha256, raw)
            }
            (t, s) => return Err(format!("unsupported keytype/scheme {t}/{s}")),
        };
        Ok(PublicKey {
            algorithm,
            material,
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Normalised key bytes (used to de-duplicate keys listed twice).
    pub fn material(&self) -> &[u8] {
        &self.material
    }

    /// Verify `sig` over `msg`. Any failure (including malformed signature
    /// encodings) is `false`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn rsig::VerificationAlgorithm = match self.algorithm {
            Algorithm::Ed25519 => &rsig::ED25519,
            Algorithm::EcdsaP256Sha256 => &rsig::ECDSA_P256_SHA256_ASN1,
            Algorithm::EcdsaP384Sha384 => &rsig::ECDSA_P384_SHA384_ASN1,
            Algorithm::RsaPssSha256 => &rsig::RSA_PSS_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(alg, &self.material)
            .verify(msg, sig)
            .is_ok()
    }
}

impl Key {
    /// Key id as the spec suggests computing it: hex sha256 of the canonical
    /// JSON of the key (including unknown fields). Used by authoring; the
    /// verifier never requires key ids to match this.
    pub fn key_id(&self) -> Result<String> {
        let bytes = crate::cjson::canonical_bytes("key", self)?;
        Ok(hex::encode(digest::digest(&digest::SHA256, &bytes)))
    }
}

/// Outcome of a threshold check, for diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureReport {
    /// key ids whose signature verified and counted
    pub counted: Vec<String>,
    /// key ids whose signature verified but whose key was already counted
    /// under another key id
    pub duplicate_keys: Vec<String>,
    /// key ids with a signature that did not verify
    pub invalid: Vec<String>,
    /// key ids whose key is unusable (unsupported or malformed), with reason
    pub skipped: Vec<(String, String)>,
}

/// Report which of `keyids` (looked up in `keys`) validly signed `msg`,
/// without a threshold verdict: the same code [`verify_threshold`] runs.
/// Each distinct public key is counted once (`counted`); further key ids
/// naming an already counted key land in `duplicate_keys`. A signatures
/// array that repeats a key id is malformed and refused
/// ([`Error::DuplicateSignatureKeyId`]).
pub fn signature_report(
    role: &str,
    msg: &[u8],
    signatures: &[Signature],
    keyids: &[String],
    keys: &BTreeMap<String, Key>,
) -> Result<SignatureReport> {
    // Spec, "Metadata format": a key id MUST be unique in the signatures
    // array. Repeats never add to the threshold below, but a document that
    // repeats one is malformed and is refused whole (as python-tuf does).
    let mut sig_keyids: BTreeMap<&str, usize> = BTreeMap::new();
    for s in signatures {
        *sig_keyids.entry(s.keyid.as_str()).or_default() += 1;
    }
    if let Some((keyid, count)) = sig_keyids.into_iter().find(|(_, n)| *n > 1) {
        return Err(Error::DuplicateSignatureKeyId {
            role: role.to_owned(),
            keyid: keyid.to_owned(),
            count,
        });
    }
    let mut report = SignatureReport::default();
    let mut counted_keys: BTreeSet<PublicKey> = BTreeSet::new();
    let mut seen_keyids: BTreeSet<&str> = BTreeSet::new();
    for keyid in keyids {
        if !seen_keyids.insert(keyid.as_str()) {
            continue;
        }
        let sigs: Vec<&Signature> = signatures.iter().filter(|s| &s.keyid == keyid).collect();
        if sigs.is_empty() {
            continue;
        }
        let Some(key) = keys.get(keyid) else {
            report
                .skipped
                .push((keyid.clone(), "key id not listed in keys".to_owned()));
            continue;
        };
        let pk = match PublicKey::from_key(key) {
            Ok(pk) => pk,
            Err(why) => {
                report.skipped.push((keyid.clone(), why));
                continue;
            }
        };
        let ok = sigs.iter().any(|s| {
            hex::decode(s.sig.trim())
                .map(|raw| pk.verify(msg, &raw))
                .unwrap_or(false)
        });
        if !ok {
            report.invalid.push(keyid.clone());
        } else if counted_keys.insert(pk) {
            report.counted.push(keyid.clone());
        } else {
            report.duplicate_keys.push(keyid.clone());
        }
    }
    Ok(report)
}

/// Verify that `threshold` distinct keys among `keyids` (looked up in
/// `keys`) signed `msg`. `role` is the signed role, `delegator` the role
/// whose keys are used; both appear in errors.
pub fn verify_threshold(
    role: &str,
    delegator: &str,
    msg: &[u8],
    signatures: &[Signature],
    keyids: &[String],
    keys: &BTreeMap<String, Key>,
    threshold: u64,
) -> Result<SignatureReport> {
    let report = signature_report(role, msg, signatures, keyids, keys)?;
    let valid = report.counted.len() as u64;
    if valid < threshold {
        let mut detail = String::new();
        if !report.invalid.is_empty() {
            detail.push_str(&format!("; invalid signatures from {:?}", report.invalid));
        }
        if !report.duplicate_keys.is_empty() {
            detail.push_str(&format!(
                "; key ids {:?} repeat an already counted public key and do not count again",
                report.duplicate_keys
            ));
        }
        if !report.skipped.is_empty() {
            detail.push_str(&format!("; skipped keys {:?}", report.skipped));
        }
        return Err(Error::ThresholdNotMet {
            role: role.to_owned(),
            delegator: delegator.to_owned(),
            threshold,
            valid,
            detail,
        });
    }
    Ok(report)
}

/// A hash algorithm we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-256
    Sha256,
    /// SHA-512
    Sha512,
}

impl HashAlgorithm {
    /// Parse a TUF hash algorithm name; `None` if unsupported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(HashAlgorithm::Sha256),
            "sha512" => Some(HashAlgorithm::Sha512),
            _ => None,
        }
    }

    pub(crate) fn ring(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithm::Sha256 => &digest::SHA256,
            HashAlgorithm::Sha512 => &digest::SHA512,
        }
    }
}

/// The supported algorithms among `hashes`, with their expected hex digests.
/// Rule: at least one must be supported (else [`Error::NoSupportedHash`]);
/// unknown algorithms are ignored; every supported one must match.
pub(crate) fn known_hashes<'a>(
    role: &str,
    hashes: &'a Hashes,
) -> Result<Vec<(&'a str, HashAlgorithm, &'a str)>> {
    let known: Vec<_> = hashes
        .iter()
        .filter_map(|(n, v)| HashAlgorithm::from_name(n).map(|a| (n.as_str(), a, v.as_str())))
        .collect();
    if known.is_empty() {
        return Err(Error::NoSupportedHash {
            role: role.to_owned(),
            algorithms: hashes.keys().cloned().collect(),
        });
    }
    Ok(known)
}

pub(crate) fn compare_digest(role: &str, name: &str, expected: &str, actual: &[u8]) -> Result<()> {
    let found = hex::encode(actual);
    if !expected.eq_ignore_ascii_case(&found) {
        return Err(Error::HashMismatch {
            role: role.to_owned(),
            algorithm: name.to_owned(),
            expected: expected.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Check `bytes` against `hashes` (rule: see [`crate::verify`]).
pub fn verify_hashes(role: &str, hashes: &Hashes, bytes: &[u8]) -> Result<()> {
    for (name, alg, expected) in known_hashes(role, hashes)? {
        compare_digest(
            role,
            name,
            expected,
            digest::digest(alg.ring(), bytes).as_ref(),
        )?;
    }
    Ok(())
}

impl MetaFile {
    /// Check metadata bytes against this entry's length and hashes (when
    /// present). `role` names the file in errors. Version is checked by the
    /// state machine after parsing. (Defined here, beside the hash check it
    /// calls, so the schema module stays a data model that imports no
    /// crypto.)
    pub fn verify_bytes(&self, role: &str, bytes: &[u8]) -> Result<()> {
        if let Some(len) = self.length {
            let found = bytes.len() as u64;
            if found != len {
                return Err(Error::LengthMismatch {
                    role: role.to_owned(),
                    expected: len,
                    found,
                });
            }
        }
        if let Some(h) = &self.hashes {
            verify_hashes(role, h, bytes)?;
        }
        Ok(())
    }
}

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}
