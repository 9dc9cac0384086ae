//! Enrolment: one-time tokens and factory X.509 identities.
//!
//! # Tokens
//! [`issue_token`] makes 32 random bytes, shown once as `cet_<base64url>`;
//! only SHA-256 of the token is stored ([`TokenRecord::hash`]), so a
//! database leak yields no usable token. A token is scoped to a fleet group,
//! expires, and is single use: [`TokenStore::consume`] must check and mark
//! in one atomic step (SQL: `UPDATE … SET used_at = ? WHERE hash = ? AND
//! used_at IS NULL AND expires_at > ? RETURNING …`; the reason for a refusal
//! is then read back). [`MemoryTokenStore`] does it under a mutex.
//!
//! # Factory identity
//! The device presents its factory certificate chain (leaf first). The chain
//! is verified with **rustls-webpki** against the configured manufacturer CA
//! certificates at the reference time: path building, signatures, validity
//! periods, basic constraints, name constraints, and the clientAuth EKU when
//! the leaf lists EKUs. rustls-webpki is the rustls project's maintained
//! verifier (ring underneath, no C, already in our dependency tree through
//! rustls); it refuses rather than guesses on anything unusual. It has no
//! subject accessor, so the already-verified leaf is read with RustCrypto's
//! `x509-cert` (same der/spki line as the workspace) for its subject
//! serialNumber (or CN) and serial.
//!
//! Binding: the leaf's subject serialNumber attribute (OID 2.5.4.5; CN when
//! absent) must equal the requested hardware id, and the leaf's key must sign
//! the enrolment claims (`factory_proof`), so the holder of the factory key
//! vouches for this custody key. The custody key signs the same claims
//! (`proof`): proof of possession on both sides.
//!
//! # Order of checks ([`enrol`])
//! request window (timestamp) → custody key type → proof of possession →
//! credential (factory chain + binding, or token consume last, so a forged
//! request cannot burn a token) → already enrolled?

use chrono::{DateTime, Duration, Utc};
use ring::digest;
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};

use crate::keys::{device_id_for_key, device_public_key, KeyError};
use crate::registry::{DeviceRecord, DeviceStatus, EnrolledWith};
use crate::wire::{EnrolmentCredential, EnrolmentRequest, WireError};

/// Prefix of enrolment tokens.
pub const TOKEN_PREFIX: &str = "cet_";

/// A stored enrolment token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// hex SHA-256 of the token string
    pub hash: String,
    /// fleet group the enrolled device joins
    pub group: String,
    /// environment the device may claim (None: any)
    pub environment: Option<String>,
    /// created at
    pub created_at: DateTime<Utc>,
    /// not valid at or after
    pub expires_at: DateTime<Utc>,
    /// set by consume
    pub used_at: Option<DateTime<Utc>>,
}

/// Hex SHA-256 of a token string.
pub fn token_hash(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Issue a token: returns the token (show it once) and the record to store.
pub fn issue_token(
    group: &str,
    environment: Option<&str>,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(String, TokenRecord), EnrolError> {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| EnrolError::Store("system RNG failed".into()))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    let rec = TokenRecord {
        hash: token_hash(&token),
        group: group.to_owned(),
        environment: environment.map(str::to_owned),
        created_at: now,
        expires_at: now.checked_add_signed(ttl).unwrap_or(now),
        used_at: None,
    };
    Ok((token, rec))
}

/// Why a token could not be consumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// no such token
    #[error("enrolment token is unknown (hash prefix {hash_prefix})")]
    Unknown {
        /// first 16 hex digits of the hash
        hash_prefix: String,
    },
    /// expired
    #[error("enrolment token expired at {expired_at} (now {now})")]
    Expired {
        /// expiry
        expired_at: DateTime<Utc>,
        /// reference time
        now: DateTime<Utc>,
    },
    /// already used
    #[error("enrolment token was already used at {used_at} (tokens are single use)")]
    AlreadyUsed {
        /// when
        used_at: DateTime<Utc>,
    },
}

/// Storage of token records. `consume` must be atomic: two concurrent
/// consumers of one token get one success.
pub trait TokenStore {
    /// Store a new record.
    fn insert(&self, rec: TokenRecord) -> Result<(), String>;
    /// Atomically: if a record with `hash` exists, is unexpired at `now` and
    /// unused, mark it used at `now` and return it; otherwise say why.
    fn consume(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<TokenRecord, TokenRefusal>, String>;
}

/// In-memory [`TokenStore`].
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    inner: std::sync::Mutex<std::collections::HashMap<String, TokenRecord>>,
}

impl TokenStore for MemoryTokenStore {
    fn insert(&self, rec: TokenRecord) -> Result<(), String> {
        let mut g = self.inner.lock().map_err(|_| "token store poisoned")?;
        if g.contains_key(&rec.hash) {
            return Err("token hash already stored".into());
        }
        g.insert(rec.hash.clone(), rec);
        Ok(())
    }

    fn consume(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<TokenRecord, TokenRefusal>, String> {
        let mut g = self.inner.lock().map_err(|_| "token store poisoned")?;
        let Some(rec) = g.get_mut(hash) else {
            return Ok(Err(TokenRefusal::Unknown {
                hash_prefix: hash.chars().take(16).collect(),
            }));
        };
        if let Some(used_at) = rec.used_at {
            return Ok(Err(TokenRefusal::AlreadyUsed { used_at }));
        }
        if now >= rec.expires_at {
            return Ok(Err(TokenRefusal::Expired {
                expired_at: rec.expires_at,
                now,
            }));
        }
        rec.used_at = Some(now);
        Ok(Ok(rec.clone()))
    }
}

/// Manufacturer CA certificates (DER) trusted for factory identities.
#[derive(Debug, Clone, Default)]
pub struct FactoryCas {
    certs: Vec<Vec<u8>>,
}

impl FactoryCas {
    /// Trust these CA certificates (DER). Each must parse as a trust anchor.
    pub fn new(certs: Vec<Vec<u8>>) -> Result<Self, EnrolError> {
        for (i, c) in certs.iter().enumerate() {
            let der = CertificateDer::from(c.as_slice());
            webpki::anchor_from_trusted_cert(&der).map_err(|e| {
                EnrolError::Config(format!(
                    "manufacturer CA certificate #{i} is not a usable trust anchor: {e}"
                ))
            })?;
        }
        Ok(FactoryCas { certs })
    }

    fn anchors(&self) -> Vec<TrustAnchor<'_>> {
        self.certs
            .iter()
            .filter_map(|c| {
                let der = CertificateDer::from(c.as_slice());
                webpki::anchor_from_trusted_cert(&der)
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect()
    }
}

/// Enrolment settings.
#[derive(Debug, Clone)]
pub struct EnrolmentPolicy {
    /// accepted |claims.timestamp − now|
    pub window: Duration,
    /// manufacturer CAs (empty: factory enrolment refused)
    pub factory_cas: FactoryCas,
    /// group for factory-enrolled devices that name none
    pub factory_default_group: String,
}

impl Default for EnrolmentPolicy {
    fn default() -> Self {
        EnrolmentPolicy {
            window: Duration::seconds(crate::request::DEFAULT_WINDOW_SECS),
            factory_cas: FactoryCas::default(),
            factory_default_group: "default".into(),
        }
    }
}

/// Why enrolment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    /// malformed request
    #[error(transparent)]
    Wire(#[from] WireError),
    /// custody key not acceptable
    #[error("enrolment: {0}")]
    Key(#[from] KeyError),
    /// timestamp outside the window
    #[error("enrolment: timestamp {timestamp} is {skew_secs} s from server time {now} (window ±{window_secs} s)")]
    Stale {
        /// claims' timestamp
        timestamp: i64,
        /// server time
        now: i64,
        /// difference
        skew_secs: i64,
        /// window
        window_secs: i64,
    },
    /// the custody key did not sign the claims
    #[error("enrolment: proof of possession failed: `proof` does not verify with the presented custody key {keyid}")]
    NoPossession {
        /// key id of the presented key
        keyid: String,
    },
    /// token refused
    #[error("enrolment: {0}")]
    Token(#[from] TokenRefusal),
    /// the requested group differs from the token's
    #[error("enrolment: attributes.group {requested:?} differs from the token's group {token_group:?} (a token is scoped to one group)")]
    GroupMismatch {
        /// requested
        requested: String,
        /// token's
        token_group: String,
    },
    /// the requested environment differs from the token's
    #[error("enrolment: attributes.environment {requested:?} differs from the token's environment {token_environment:?}")]
    EnvironmentMismatch {
        /// requested
        requested: String,
        /// token's
        token_environment: String,
    },
    /// factory chain refused
    #[error("enrolment: factory certificate chain refused: {0}")]
    Certificate(String),
    /// certificate does not bind this hardware id
    #[error("enrolment: factory certificate subject binds hardware id {cert:?}, request claims {requested:?}")]
    HardwareMismatch {
        /// from the certificate
        cert: String,
        /// from the request
        requested: String,
    },
    /// factory key did not sign the claims
    #[error("enrolment: factory_proof does not verify with the factory certificate's key (the certificate holder did not vouch for this custody key)")]
    NoFactoryPossession,
    /// the key is already enrolled
    #[error("enrolment: device {device} (this custody key) is already enrolled")]
    AlreadyEnrolled {
        /// device id
        device: String,
    },
    /// configuration problem
    #[error("enrolment configuration: {0}")]
    Config(String),
    /// storage failed
    #[error("enrolment storage: {0}")]
    Store(String),
}

/// Verified leaf facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryIdentity {
    /// hardware id bound by the certificate
    pub hardware_id: String,
    /// issuer (RFC 4514)
    pub issuer: String,
    /// serial, hex
    pub serial: String,
}

const OID_SERIAL_NUMBER: &str = "2.5.4.5";
const OID_CN: &str = "2.5.4.3";

/// Verify a factory chain (DER, leaf first) at `now` and that the leaf's key
/// signed `msg` with `sig`. Returns the hardware id the leaf binds.
pub fn verify_factory_identity(
    cas: &FactoryCas,
    chain: &[Vec<u8>],
    msg: &[u8],
    sig: &[u8],
    now: DateTime<Utc>,
) -> Result<FactoryIdentity, EnrolError> {
    let cert_err = |e: String| EnrolError::Certificate(e);
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(cert_err("empty chain".into()));
    };
    let anchors = cas.anchors();
    if anchors.is_empty() {
        return Err(cert_err(
            "no manufacturer CA is configured: factory enrolment is disabled".into(),
        ));
    }
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| cert_err(format!("leaf certificate does not parse: {e}")))?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let secs = u64::try_from(now.timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    let algs = webpki::ALL_VERIFICATION_ALGS;
    ee.verify_for_usage(
        algs,
        &anchors,
        &inter,
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| {
        cert_err(format!(
            "does not chain to a configured manufacturer CA at {now}: {e}"
        ))
    })?;
    let leaf_algs: [&dyn rustls_pki_types::SignatureVerificationAlgorithm; 3] = [
        webpki::ring::ED25519,
        webpki::ring::ECDSA_P256_SHA256,
        webpki::ring::ECDSA_P384_SHA384,
    ];
    if !leaf_algs
        .iter()
        .any(|a| ee.verify_signature(*a, msg, sig).is_ok())
    {
        return Err(EnrolError::NoFactoryPossession);
    }
    // Read subject and serial from the verified leaf.
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf)
        .map_err(|e| cert_err(format!("leaf certificate subject does not parse: {e}")))?;
    let tbs = &cert.tbs_certificate;
    let mut serial_attr = None;
    let mut cn = None;
    for rdn in tbs.subject.0.iter() {
        for atv in rdn.0.iter() {
            let oid = atv.oid.to_string();
            let val = attr_string(&atv.value);
            if oid == OID_SERIAL_NUMBER {
                serial_attr = val;
            } else if oid == OID_CN {
                cn = val;
            }
        }
    }
    let hardware_id = serial_attr.or(cn).ok_or_else(|| {
        cert_err("leaf subject has neither serialNumber nor CN to bind a hardware id".into())
    })?;
    Ok(FactoryIdentity {
        hardware_id,
        issuer: tbs.issuer.to_string(),
        serial: hex::encode(tbs.serial_number.as_bytes()),
    })
}

fn attr_string(v: &x509_cert::der::Any) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    if let Ok(s) = v.decode_as::<Utf8StringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = v.decode_as::<PrintableStringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = v.decode_as::<Ia5StringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    None
}

/// Enrol a device. `exists` tells whether a device id is already enrolled
/// (the server's registry lookup). On success the caller stores the record.
pub fn enrol(
    req: &EnrolmentRequest,
    now: DateTime<Utc>,
    policy: &EnrolmentPolicy,
    tokens: &dyn TokenStore,
    exists: &dyn Fn(&str) -> bool,
) -> Result<DeviceRecord, EnrolError> {
    let c = &req.signed;
    let now_s = now.timestamp();
    let window = policy.window.num_seconds();
    let skew = c.timestamp.saturating_sub(now_s);
    if skew.saturating_abs() > window {
        return Err(EnrolError::Stale {
            timestamp: c.timestamp,
            now: now_s,
            skew_secs: skew,
            window_secs: window,
        });
    }
    let pk = device_public_key(&c.key)?;
    let id = device_id_for_key(&c.key)?;
    let proof = hex::decode(&req.proof).unwrap_or_default();
    if !pk.verify(req.signed_bytes(), &proof) {
        return Err(EnrolError::NoPossession { keyid: id });
    }
    if exists(&id) {
        return Err(EnrolError::AlreadyEnrolled { device: id });
    }
    let mut attributes = c.attributes.clone();
    let (group, with) = match &c.credential {
        EnrolmentCredential::Factory { .. } => {
            let chain = req.factory_chain_der()?.unwrap_or_default();
            let fp =
                hex::decode(req.factory_proof.as_deref().unwrap_or_default()).unwrap_or_default();
            let ident =
                verify_factory_identity(&policy.factory_cas, &chain, req.signed_bytes(), &fp, now)?;
            if ident.hardware_id != c.hardware_id {
                return Err(EnrolError::HardwareMismatch {
                    cert: ident.hardware_id,
                    requested: c.hardware_id.clone(),
                });
            }
            let group = attributes
                .group
                .clone()
                .unwrap_or_else(|| policy.factory_default_group.clone());
            (
                group,
                EnrolledWith::Factory {
                    issuer: ident.issuer,
                    serial: ident.serial,
                },
            )
        }
        EnrolmentCredential::Token { token } => {
            let hash = token_hash(token);
            // Scope checks need the record, and consume is the only read:
            // consume, then check scope; a scope mismatch still burns the
            // token (a device holding it misused it; issue a new one).
            let rec = tokens.consume(&hash, now).map_err(EnrolError::Store)??;
            if let Some(g) = &attributes.group {
                if *g != rec.group {
                    return Err(EnrolError::GroupMismatch {
                        requested: g.clone(),
                        token_group: rec.group,
                    });
                }
            }
            if let Some(env) = &rec.environment {
                if *env != attributes.environment {
                    return Err(EnrolError::EnvironmentMismatch {
                        requested: attributes.environment.clone(),
                        token_environment: env.clone(),
                    });
                }
            }
            (
                rec.group,
                EnrolledWith::Token {
                    token_hash_prefix: hash.chars().take(16).collect(),
                },
            )
        }
    };
    attributes.group = Some(group.clone());
    Ok(DeviceRecord {
        id,
        key: c.key.clone(),
        hardware_id: c.hardware_id.clone(),
        group,
        attributes,
        enrolled_at: now,
        enrolled_with: with,
        status: DeviceStatus::Active,
        last_attestation: now,
    })
}
