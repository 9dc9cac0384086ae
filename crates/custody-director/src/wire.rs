//! Wire types shared by the server and the device agent (version 1).
//!
//! Every message that a device sends is untrusted bytes until one of the
//! `from_bytes` / `from_headers` parsers below turned it into a typed value:
//! size limit first, then custody-tuf's strict JSON (no duplicate keys, no
//! floats, NFC strings, no trailing data), then serde with
//! `deny_unknown_fields`, then field rules ([`WireError`] names the message,
//! the field, the rule and the value). Each parser has a fuzz target.
//!
//! Versioning: every message carries `"wire_version": 1`; a parser refuses
//! any other value, so a v2 message is never half-understood by a v1 peer.
//! Signed JSON bodies also carry `_type` (`custody-enrolment`,
//! `custody-manifest`), so a signature made for one kind of message can never
//! be presented as another.
//!
//! Times on the wire are integer seconds since the Unix epoch (canonical JSON
//! has no floats, and integer seconds need no date parser on the device).
//!
//! # Messages
//! - [`EnrolmentRequest`]: `{signed: EnrolmentClaims, proof, factory_proof?}`.
//!   `proof` is the device key's signature over the canonical JSON of
//!   `signed` (proof of possession); `factory_proof`, for factory identity,
//!   is the same message signed by the factory certificate's key.
//! - [`SignedRequest`]: any device → server call. See [`crate::request`]
//!   for why this and not mutual TLS. Fields travel as HTTP headers
//!   ([`SignedRequest::from_headers`]) with the body as the HTTP body, or as
//!   one JSON document ([`SignedRequest::from_bytes`]) for relays (USB,
//!   gateways).
//! - [`SignedManifest`]: the device version manifest, TUF-style envelope
//!   `{signed: ManifestBody, signatures: [{keyid, sig}]}`, signature by the
//!   device key over the canonical JSON of `signed`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use custody_tuf::{Key, Signature};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The wire version this crate speaks.
pub const WIRE_VERSION: u32 = 1;

/// Largest enrolment request accepted (bytes); a certificate chain of a few
/// certificates fits many times over.
pub const MAX_ENROLMENT_BYTES: usize = 64 * 1024;
/// Largest signed manifest accepted (bytes).
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Largest JSON-form signed request accepted (bytes, body included).
pub const MAX_REQUEST_JSON_BYTES: usize = 512 * 1024;
/// Longest identifier-like string (hardware id, environment, tag, group,
/// slot, target name, report id).
pub const MAX_NAME: usize = 1024;
/// Longest free-text string (reasons).
pub const MAX_TEXT: usize = 4096;
/// Most tags per device.
pub const MAX_TAGS: usize = 64;
/// Most slots in a manifest.
pub const MAX_SLOTS: usize = 16;
/// Most attack records or install reports per manifest.
pub const MAX_REPORTS: usize = 64;
/// Most certificates in a factory chain (leaf + intermediates).
pub const MAX_CHAIN: usize = 4;
/// Largest DER certificate.
pub const MAX_CERT_BYTES: usize = 8 * 1024;

/// `_type` of enrolment claims.
pub const TYPE_ENROLMENT: &str = "custody-enrolment";
/// `_type` of a manifest body.
pub const TYPE_MANIFEST: &str = "custody-manifest";

/// A wire message failed to parse or broke a field rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than the message's limit.
    #[error("{message}: {found} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// which message
        message: &'static str,
        /// limit
        limit: usize,
        /// size received
        found: usize,
    },
    /// Not strict JSON, or not the message's shape.
    #[error("{message}: {reason}")]
    Malformed {
        /// which message
        message: &'static str,
        /// parser's reason
        reason: String,
    },
    /// A field broke a rule.
    #[error("{message}: field `{field}`: {rule}")]
    Field {
        /// which message
        message: &'static str,
        /// dotted field path
        field: String,
        /// the rule and the value found
        rule: String,
    },
}

fn field(message: &'static str, field: impl Into<String>, rule: impl Into<String>) -> WireError {
    WireError::Field {
        message,
        field: field.into(),
        rule: rule.into(),
    }
}

/// Parse bounded untrusted JSON into the raw value (strict) .
fn strict_value(message: &'static str, bytes: &[u8], limit: usize) -> Result<Value, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            message,
            limit,
            found: bytes.len(),
        });
    }
    custody_tuf::cjson::parse_strict(message, bytes).map_err(|e| WireError::Malformed {
        message,
        reason: e.to_string(),
    })
}

fn typed<T: DeserializeOwned>(message: &'static str, v: Value) -> Result<T, WireError> {
    serde_json::from_value(v).map_err(|e| WireError::Malformed {
        message,
        reason: e.to_string(),
    })
}

fn check_version(message: &'static str, v: u32) -> Result<(), WireError> {
    if v != WIRE_VERSION {
        return Err(field(
            message,
            "wire_version",
            format!("must be {WIRE_VERSION}, got {v}"),
        ));
    }
    Ok(())
}

/// Identifier rule: 1..=MAX_NAME bytes, no control characters.
pub(crate) fn check_name(message: &'static str, f: &str, s: &str) -> Result<(), WireError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(field(
            message,
            f,
            format!(
                "must be 1..={MAX_NAME} bytes without control characters, got {} bytes: {:?}",
                s.len(),
                truncate(s)
            ),
        ));
    }
    Ok(())
}

fn check_text(message: &'static str, f: &str, s: &str) -> Result<(), WireError> {
    if s.len() > MAX_TEXT {
        return Err(field(
            message,
            f,
            format!("must be at most {MAX_TEXT} bytes, got {}", s.len()),
        ));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn check_hex(
    message: &'static str,
    f: &str,
    s: &str,
    min: usize,
    max: usize,
) -> Result<(), WireError> {
    if s.len() < min
        || s.len() > max
        || !s.len().is_multiple_of(2)
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(field(
            message,
            f,
            format!(
                "must be {min}..={max} lowercase hex digits (even count), got {:?}",
                truncate(s)
            ),
        ));
    }
    Ok(())
}

fn check_device_id(message: &'static str, f: &str, s: &str) -> Result<(), WireError> {
    if !crate::keys::is_device_id(s) {
        return Err(field(
            message,
            f,
            format!(
                "a device id is 64 lowercase hex digits (the key id of the device key), got {:?}",
                truncate(s)
            ),
        ));
    }
    Ok(())
}

fn check_hashes(
    message: &'static str,
    f: &str,
    hashes: &BTreeMap<String, String>,
) -> Result<(), WireError> {
    if hashes.is_empty() || hashes.len() > 8 {
        return Err(field(
            message,
            f,
            format!("must list 1..=8 hashes, got {}", hashes.len()),
        ));
    }
    for (alg, h) in hashes {
        check_name(message, &format!("{f}.{alg}"), alg)?;
        check_hex(message, &format!("{f}.{alg}"), h, 2, 256)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- enrolment

/// Signs the enrolment claims with the factory certificate's key (device side).
pub type FactorySign<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// Fleet attributes a device is enrolled with (used by rollout selectors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAttributes {
    /// e.g. `production`, `staging`
    pub environment: String,
    /// free-form labels
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// fleet group; for token enrolment it must equal the token's group (or
    /// be absent, then the token's group is used)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl DeviceAttributes {
    fn validate(&self, message: &'static str) -> Result<(), WireError> {
        check_name(message, "attributes.environment", &self.environment)?;
        if self.tags.len() > MAX_TAGS {
            return Err(field(
                message,
                "attributes.tags",
                format!("at most {MAX_TAGS} tags, got {}", self.tags.len()),
            ));
        }
        for t in &self.tags {
            check_name(message, "attributes.tags[]", t)?;
        }
        if let Some(g) = &self.group {
            check_name(message, "attributes.group", g)?;
        }
        Ok(())
    }
}

/// How the device proves it may join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnrolmentCredential {
    /// A one-time enrolment token (as issued, `cet_…`).
    Token {
        /// the token
        token: String,
    },
    /// A factory identity: X.509 chain, leaf first, each certificate
    /// base64 (standard alphabet) DER; intermediates optional.
    Factory {
        /// leaf, then intermediates
        chain: Vec<String>,
    },
}

/// The signed part of an enrolment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentClaims {
    /// always `custody-enrolment`
    #[serde(rename = "_type")]
    pub type_: String,
    /// [`WIRE_VERSION`]
    pub wire_version: u32,
    /// the device's custody key, TUF key form (ed25519 or ecdsa P-256)
    pub key: Key,
    /// the hardware id (device model / board type the images are built for;
    /// with a factory certificate it must equal the certificate's subject
    /// serialNumber, or CN when there is none)
    pub hardware_id: String,
    /// fleet attributes
    pub attributes: DeviceAttributes,
    /// token or factory certificate
    pub credential: EnrolmentCredential,
    /// device clock, seconds since the epoch (must be within the request window)
    pub timestamp: i64,
    /// 32..=64 hex digits, fresh per request
    pub nonce: String,
}

/// An enrolment request as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRequest {
    /// what is signed
    pub signed: EnrolmentClaims,
    /// hex signature by `signed.key` over canonical JSON of `signed`
    pub proof: String,
    /// hex signature by the factory certificate's key over the same bytes
    /// (required with a factory credential, refused otherwise)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory_proof: Option<String>,
    /// canonical JSON of `signed` as received (what the proofs cover)
    #[serde(skip)]
    pub(crate) canonical: Vec<u8>,
}

const ENROL: &str = "enrolment request";

impl EnrolmentRequest {
    /// Parse untrusted bytes (limit [`MAX_ENROLMENT_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let v = strict_value(ENROL, bytes, MAX_ENROLMENT_BYTES)?;
        let canonical = match v.get("signed") {
            Some(s) => {
                custody_tuf::cjson::canonical_bytes(ENROL, s).map_err(|e| WireError::Malformed {
                    message: ENROL,
                    reason: e.to_string(),
                })?
            }
            None => return Err(field(ENROL, "signed", "missing")),
        };
        let mut req: EnrolmentRequest = typed(ENROL, v)?;
        req.canonical = canonical;
        req.validate()?;
        Ok(req)
    }

    fn validate(&self) -> Result<(), WireError> {
        let c = &self.signed;
        if c.type_ != TYPE_ENROLMENT {
            return Err(field(
                ENROL,
                "signed._type",
                format!("must be {TYPE_ENROLMENT:?}, got {:?}", truncate(&c.type_)),
            ));
        }
        check_version(ENROL, c.wire_version)?;
        check_name(ENROL, "signed.hardware_id", &c.hardware_id)?;
        c.attributes.validate(ENROL)?;
        check_hex(ENROL, "signed.nonce", &c.nonce, 32, 64)?;
        check_hex(ENROL, "proof", &self.proof, 2, 1024)?;
        match &c.credential {
            EnrolmentCredential::Token { token } => {
                check_name(ENROL, "signed.credential.token", token)?;
                if self.factory_proof.is_some() {
                    return Err(field(
                        ENROL,
                        "factory_proof",
                        "only allowed with a factory credential",
                    ));
                }
            }
            EnrolmentCredential::Factory { chain } => {
                if chain.is_empty() || chain.len() > MAX_CHAIN {
                    return Err(field(
                        ENROL,
                        "signed.credential.chain",
                        format!(
                            "must hold 1..={MAX_CHAIN} certificates, got {}",
                            chain.len()
                        ),
                    ));
                }
                for (i, c) in chain.iter().enumerate() {
                    if c.len() > MAX_CERT_BYTES * 4 / 3 + 4 {
                        return Err(field(
                            ENROL,
                            format!("signed.credential.chain[{i}]"),
                            format!("certificate over {MAX_CERT_BYTES} bytes"),
                        ));
                    }
                }
                match &self.factory_proof {
                    Some(p) => check_hex(ENROL, "factory_proof", p, 2, 1024)?,
                    None => {
                        return Err(field(
                            ENROL,
                            "factory_proof",
                            "missing: a factory credential needs the certificate key's signature",
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// The bytes `proof` and `factory_proof` sign.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// Serialize to bytes (the form [`EnrolmentRequest::from_bytes`] reads).
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(|e| WireError::Malformed {
            message: ENROL,
            reason: e.to_string(),
        })
    }

    /// Device side: build and sign a request. `factory_sign`, for factory
    /// credentials, signs the same message with the certificate's key.
    pub fn sign(
        claims: EnrolmentClaims,
        device_key: &dyn custody_keys::Signer,
        factory_sign: Option<&FactorySign<'_>>,
    ) -> Result<Self, WireError> {
        let canonical = custody_tuf::cjson::canonical_bytes(ENROL, &claims).map_err(|e| {
            WireError::Malformed {
                message: ENROL,
                reason: e.to_string(),
            }
        })?;
        let proof = device_key
            .sign(&canonical)
            .map_err(|e| WireError::Malformed {
                message: ENROL,
                reason: e.to_string(),
            })?;
        let factory_proof = match factory_sign {
            Some(f) => Some(hex::encode(f(&canonical).map_err(|reason| {
                WireError::Malformed {
                    message: ENROL,
                    reason,
                }
            })?)),
            None => None,
        };
        Ok(EnrolmentRequest {
            signed: claims,
            proof: hex::encode(proof),
            factory_proof,
            canonical,
        })
    }

    /// Decode the factory chain to DER (leaf first).
    pub fn factory_chain_der(&self) -> Result<Option<Vec<Vec<u8>>>, WireError> {
        let EnrolmentCredential::Factory { chain } = &self.signed.credential else {
            return Ok(None);
        };
        chain
            .iter()
            .enumerate()
            .map(|(i, c)| {
                base64::engine::general_purpose::STANDARD
                    .decode(c)
                    .map_err(|e| {
                        field(
                            ENROL,
                            format!("signed.credential.chain[{i}]"),
                            format!("not base64: {e}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

// ---------------------------------------------------------------- requests

/// Header names of a signed request over HTTP.
pub mod headers {
    /// device id
    pub const DEVICE: &str = "custody-device";
    /// seconds since the epoch
    pub const TIMESTAMP: &str = "custody-timestamp";
    /// 32..=64 hex digits
    pub const NONCE: &str = "custody-nonce";
    /// hex signature over [`crate::request::request_message`]
    pub const SIGNATURE: &str = "custody-signature";
}

/// A device → server request with its signature (see [`crate::request`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// [`WIRE_VERSION`]
    pub wire_version: u32,
    /// the device id (key id of the device key)
    pub device_id: String,
    /// HTTP method, upper case
    pub method: String,
    /// request path (with query, if any), as sent
    pub path: String,
    /// seconds since the epoch, device clock
    pub timestamp: i64,
    /// 32..=64 lowercase hex digits, never reused by this device
    pub nonce: String,
    /// the body; base64 in the JSON form
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// hex signature by the device key
    pub signature: String,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

const REQ: &str = "signed request";

impl SignedRequest {
    /// Parse the JSON form (limit [`MAX_REQUEST_JSON_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let v = strict_value(REQ, bytes, MAX_REQUEST_JSON_BYTES)?;
        let r: SignedRequest = typed(REQ, v)?;
        r.validate()?;
        Ok(r)
    }

    /// Build from HTTP: the header values (untrusted strings), the method
    /// and path the server routed, and the body bytes it read (bounded by
    /// the server).
    pub fn from_headers(
        device: &str,
        timestamp: &str,
        nonce: &str,
        signature: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Self, WireError> {
        let ts = timestamp.trim();
        if ts.is_empty() || ts.len() > 20 {
            return Err(field(
                REQ,
                headers::TIMESTAMP,
                format!(
                    "must be decimal seconds since the epoch, got {:?}",
                    truncate(ts)
                ),
            ));
        }
        let timestamp: i64 = ts.parse().map_err(|e| {
            field(
                REQ,
                headers::TIMESTAMP,
                format!(
                    "must be decimal seconds since the epoch, got {:?}: {e}",
                    truncate(ts)
                ),
            )
        })?;
        let r = SignedRequest {
            wire_version: WIRE_VERSION,
            device_id: device.trim().to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            timestamp,
            nonce: nonce.trim().to_owned(),
            body,
            signature: signature.trim().to_owned(),
        };
        r.validate()?;
        Ok(r)
    }

    /// Serialize to the JSON form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(|e| WireError::Malformed {
            message: REQ,
            reason: e.to_string(),
        })
    }

    pub(crate) fn validate(&self) -> Result<(), WireError> {
        check_version(REQ, self.wire_version)?;
        check_device_id(REQ, "device_id", &self.device_id)?;
        if self.method.is_empty()
            || self.method.len() > 16
            || !self.method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(field(
                REQ,
                "method",
                format!(
                    "must be 1..=16 upper-case letters, got {:?}",
                    truncate(&self.method)
                ),
            ));
        }
        if !self.path.starts_with('/')
            || self.path.len() > 2048
            || !self.path.bytes().all(|b| (0x21..0x7f).contains(&b))
        {
            return Err(field(
                REQ,
                "path",
                format!(
                    "must start with '/', be at most 2048 bytes of printable ASCII without spaces, got {:?}",
                    truncate(&self.path)
                ),
            ));
        }
        check_hex(REQ, "nonce", &self.nonce, 32, 64)?;
        check_hex(REQ, "signature", &self.signature, 2, 1024)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- manifest

/// What is installed in one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledTarget {
    /// TUF target path
    pub name: String,
    /// length in bytes
    pub length: u64,
    /// algorithm → lowercase hex
    pub hashes: BTreeMap<String, String>,
    /// the release counter it was installed with
    pub release_counter: u64,
}

/// Something the device's verification refused as an attack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackReport {
    /// role or target concerned
    pub subject: String,
    /// the rule that broke, with values (custody-tuf's message)
    pub reason: String,
    /// device time, seconds since the epoch
    pub time: i64,
}

/// The outcome of one install attempt (custody-agent's `Report`, flattened).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallReport {
    /// stable id (`attempt-<n>`): the server's idempotency key
    pub id: String,
    /// target name
    pub target: String,
    /// target release counter
    pub release_counter: u64,
    /// `installed`, `failed`, `rolled_back`, `attack_detected`
    pub outcome: String,
    /// why, for every outcome but `installed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// device time, seconds since the epoch
    pub time: i64,
}

/// Install outcomes the manifest may report.
pub const OUTCOMES: [&str; 4] = ["installed", "failed", "rolled_back", "attack_detected"];

/// The signed body of a device version manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    /// always `custody-manifest`
    #[serde(rename = "_type")]
    pub type_: String,
    /// [`WIRE_VERSION`]
    pub wire_version: u32,
    /// the reporting device
    pub device_id: String,
    /// its hardware id
    pub hardware_id: String,
    /// strictly increasing per device (replay / reorder detection)
    pub report_counter: u64,
    /// device clock, seconds since the epoch
    pub device_time: i64,
    /// slot name → installed target
    pub installed: BTreeMap<String, InstalledTarget>,
    /// the slot that is running
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_slot: Option<String>,
    /// attacks detected since the last manifest
    #[serde(default)]
    pub attacks_detected: Vec<AttackReport>,
    /// install outcomes since the last acknowledged manifest
    #[serde(default)]
    pub install_reports: Vec<InstallReport>,
}

impl ManifestBody {
    /// The target running now: the active slot's, else the one with the
    /// highest release counter.
    pub fn running(&self) -> Option<&InstalledTarget> {
        self.active_slot
            .as_ref()
            .and_then(|s| self.installed.get(s))
            .or_else(|| self.installed.values().max_by_key(|t| t.release_counter))
    }

    /// The highest release counter installed in any slot (anti-rollback floor).
    pub fn max_release_counter(&self) -> u64 {
        self.installed
            .values()
            .map(|t| t.release_counter)
            .max()
            .unwrap_or(0)
    }
}

/// A signed manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// the manifest
    pub signed: ManifestBody,
    /// signatures (the device key's)
    pub signatures: Vec<Signature>,
    #[serde(skip)]
    pub(crate) canonical: Vec<u8>,
}

const MAN: &str = "manifest";

impl SignedManifest {
    /// Parse untrusted bytes (limit [`MAX_MANIFEST_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let v = strict_value(MAN, bytes, MAX_MANIFEST_BYTES)?;
        let canonical = match v.get("signed") {
            Some(s) => {
                custody_tuf::cjson::canonical_bytes(MAN, s).map_err(|e| WireError::Malformed {
                    message: MAN,
                    reason: e.to_string(),
                })?
            }
            None => return Err(field(MAN, "signed", "missing")),
        };
        let mut m: SignedManifest = typed(MAN, v)?;
        m.canonical = canonical;
        m.validate()?;
        Ok(m)
    }

    /// Device side: sign `body` with the device key.
    pub fn sign(body: ManifestBody, key: &dyn custody_keys::Signer) -> Result<Self, WireError> {
        let canonical =
            custody_tuf::cjson::canonical_bytes(MAN, &body).map_err(|e| WireError::Malformed {
                message: MAN,
                reason: e.to_string(),
            })?;
        let sig = key.sign(&canonical).map_err(|e| WireError::Malformed {
            message: MAN,
            reason: e.to_string(),
        })?;
        Ok(SignedManifest {
            signed: body,
            signatures: vec![Signature {
                keyid: key.keyid().to_owned(),
                sig: hex::encode(sig),
                unknown: Default::default(),
            }],
            canonical,
        })
    }

    /// Serialize (the form [`SignedManifest::from_bytes`] reads).
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(|e| WireError::Malformed {
            message: MAN,
            reason: e.to_string(),
        })
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.canonical
    }

    fn validate(&self) -> Result<(), WireError> {
        let b = &self.signed;
        if b.type_ != TYPE_MANIFEST {
            return Err(field(
                MAN,
                "signed._type",
                format!("must be {TYPE_MANIFEST:?}, got {:?}", truncate(&b.type_)),
            ));
        }
        check_version(MAN, b.wire_version)?;
        check_device_id(MAN, "signed.device_id", &b.device_id)?;
        check_name(MAN, "signed.hardware_id", &b.hardware_id)?;
        if b.installed.len() > MAX_SLOTS {
            return Err(field(
                MAN,
                "signed.installed",
                format!("at most {MAX_SLOTS} slots, got {}", b.installed.len()),
            ));
        }
        for (slot, t) in &b.installed {
            check_name(MAN, "signed.installed{slot}", slot)?;
            check_name(MAN, &format!("signed.installed.{slot}.name"), &t.name)?;
            check_hashes(MAN, &format!("signed.installed.{slot}.hashes"), &t.hashes)?;
        }
        if let Some(s) = &b.active_slot {
            if !b.installed.contains_key(s) {
                return Err(field(
                    MAN,
                    "signed.active_slot",
                    format!(
                        "names slot {:?}, which `installed` does not list",
                        truncate(s)
                    ),
                ));
            }
        }
        if b.attacks_detected.len() > MAX_REPORTS || b.install_reports.len() > MAX_REPORTS {
            return Err(field(
                MAN,
                "signed.attacks_detected/install_reports",
                format!(
                    "at most {MAX_REPORTS} each, got {} and {}",
                    b.attacks_detected.len(),
                    b.install_reports.len()
                ),
            ));
        }
        for a in &b.attacks_detected {
            check_name(MAN, "signed.attacks_detected[].subject", &a.subject)?;
            check_text(MAN, "signed.attacks_detected[].reason", &a.reason)?;
        }
        for r in &b.install_reports {
            check_name(MAN, "signed.install_reports[].id", &r.id)?;
            check_name(MAN, "signed.install_reports[].target", &r.target)?;
            if !OUTCOMES.contains(&r.outcome.as_str()) {
                return Err(field(
                    MAN,
                    "signed.install_reports[].outcome",
                    format!(
                        "must be one of {OUTCOMES:?}, got {:?}",
                        truncate(&r.outcome)
                    ),
                ));
            }
            if let Some(reason) = &r.reason {
                check_text(MAN, "signed.install_reports[].reason", reason)?;
            }
        }
        if self.signatures.is_empty() || self.signatures.len() > 4 {
            return Err(field(
                MAN,
                "signatures",
                format!("must hold 1..=4 signatures, got {}", self.signatures.len()),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- responses

/// Largest enrolment or check-in response a device accepts (bytes). Director
/// metadata for one device is a few KiB; a long root chain fits many times.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most root versions a response may carry (a device that was offline for a
/// long time fetches the rest on the next check-in).
pub const MAX_ROOT_CHAIN: usize = 64;

/// Signed director metadata for one device, as raw bytes exactly as signed
/// (base64 in JSON, so no re-serialisation can change what was signed).
///
/// The device feeds these through custody-tuf's `TrustedMetadata` in order:
/// each of `roots` (consecutive versions after the one it trusts), then
/// `timestamp`, `snapshot`, `targets`. The same type is used online (the
/// check-in response) and offline (bundles), so both take one code path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorMetadataSet {
    /// root versions newer than the one the device said it trusts, ascending
    #[serde(default, with = "b64_vec")]
    pub roots: Vec<Vec<u8>>,
    /// `timestamp.json`
    #[serde(with = "b64")]
    pub timestamp: Vec<u8>,
    /// `snapshot.json`
    #[serde(with = "b64")]
    pub snapshot: Vec<u8>,
    /// `targets.json` (bound to the device)
    #[serde(with = "b64")]
    pub targets: Vec<u8>,
}

/// Server → device answer to `POST /device/v1/enrol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolResponse {
    /// [`WIRE_VERSION`]
    pub wire_version: u32,
    /// the device id the server registered (must equal the key id of the
    /// device key; the agent checks)
    pub device_id: String,
    /// the director's current `root.json`, to pin (trust on first use unless
    /// supplied out of band)
    #[serde(with = "b64")]
    pub director_root: Vec<u8>,
    /// name of the image repository the director assigns from
    pub image_repository: String,
    /// that repository's current `root.json`, to pin
    #[serde(with = "b64")]
    pub image_root: Vec<u8>,
    /// metadata base URL of the image repository, relative to the server
    /// (e.g. `/repos/main/metadata/`)
    pub image_metadata_path: String,
    /// targets base URL of the image repository, relative to the server
    pub image_targets_path: String,
    /// the transparency log the device must check every target against
    /// before installing it (issue #7); absent from servers older than the
    /// log check (the field defaults, so older peers still parse). An
    /// operator pin given to `custody agent enroll` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogPin>,
}

/// Most witness keys in a [`LogPin`].
pub const MAX_LOG_WITNESSES: usize = 32;

/// The transparency log a device pins at enrolment: the checkpoint origin,
/// the log's note verifier key, and the witness policy (`witness_threshold`
/// of `witnesses` must cosign a checkpoint; 0 = the log signature alone).
/// Keys are C2SP note verifier keys (`name+hash+base64`); the agent parses
/// and checks them (custody-log), this parser only bounds their shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPin {
    /// checkpoint origin (first line of every checkpoint)
    pub origin: String,
    /// the log's verifier key
    pub log_key: String,
    /// witness verifier keys (cosignature/v1)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// distinct witnesses that must cosign (≤ `witnesses.len()`)
    #[serde(default)]
    pub witness_threshold: usize,
    /// the log's HTTP base, relative to the server (`/log/v1/`)
    #[serde(default = "default_log_path")]
    pub log_path: String,
}

fn default_log_path() -> String {
    "/log/v1/".to_owned()
}

impl LogPin {
    /// Shape rules: non-empty bounded strings, at most
    /// [`MAX_LOG_WITNESSES`] witnesses, threshold ≤ witnesses, an absolute
    /// `log_path` without `..`.
    pub fn validate(&self, message: &'static str) -> Result<(), WireError> {
        for (f, v) in [("log.origin", &self.origin), ("log.log_key", &self.log_key)] {
            if v.is_empty() || v.len() > MAX_NAME || v.chars().any(char::is_control) {
                return Err(field(
                    message,
                    f,
                    format!(
                        "must be 1..={MAX_NAME} bytes without control characters, got {:?}",
                        truncate(v)
                    ),
                ));
            }
        }
        if self.witnesses.len() > MAX_LOG_WITNESSES {
            return Err(field(
                message,
                "log.witnesses",
                format!(
                    "at most {MAX_LOG_WITNESSES} keys, got {}",
                    self.witnesses.len()
                ),
            ));
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            if w.is_empty() || w.len() > MAX_NAME || w.chars().any(char::is_control) {
                return Err(field(
                    message,
                    format!("log.witnesses[{i}]"),
                    format!("must be 1..={MAX_NAME} bytes without control characters"),
                ));
            }
        }
        if self.witness_threshold > self.witnesses.len() {
            return Err(field(
                message,
                "log.witness_threshold",
                format!(
                    "{} is more than the {} witness keys given",
                    self.witness_threshold,
                    self.witnesses.len()
                ),
            ));
        }
        if !self.log_path.starts_with('/')
            || self.log_path.contains("..")
            || self.log_path.len() > 2048
        {
            return Err(field(
                message,
                "log.log_path",
                format!(
                    "must be an absolute path without '..', got {:?}",
                    truncate(&self.log_path)
                ),
            ));
        }
        Ok(())
    }
}

/// Server → device answer to `POST /device/v1/checkin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinResponse {
    /// [`WIRE_VERSION`]
    pub wire_version: u32,
    /// the manifest's report counter the server recorded; the device drops
    /// queued reports that manifest carried
    pub accepted_counter: u64,
    /// fresh director metadata for this device
    pub director: DirectorMetadataSet,
    /// suggested seconds until the next check-in (the agent adds jitter)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_checkin_secs: Option<u64>,
}

/// Error body of every device and admin endpoint answering 4xx/5xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// stable machine-readable code (`replayed_counter`, `decommissioned`, …)
    pub error: String,
    /// human message naming the field and the rule
    pub message: String,
}

mod b64_vec {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        )
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.into_iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

const RESP: &str = "server response";

fn check_metadata_set(set: &DirectorMetadataSet) -> Result<(), WireError> {
    if set.roots.len() > MAX_ROOT_CHAIN {
        return Err(field(
            RESP,
            "director.roots",
            format!(
                "at most {MAX_ROOT_CHAIN} root versions, got {}",
                set.roots.len()
            ),
        ));
    }
    Ok(())
}

impl EnrolResponse {
    /// Parse untrusted bytes (limit [`MAX_RESPONSE_BYTES`]). Only shape is
    /// checked here; the roots are verified by custody-tuf.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let v = strict_value(RESP, bytes, MAX_RESPONSE_BYTES)?;
        let r: EnrolResponse = typed(RESP, v)?;
        check_version(RESP, r.wire_version)?;
        check_device_id(RESP, "device_id", &r.device_id)?;
        check_name(RESP, "image_repository", &r.image_repository)?;
        for (f, p) in [
            ("image_metadata_path", &r.image_metadata_path),
            ("image_targets_path", &r.image_targets_path),
        ] {
            if !p.starts_with('/') || p.contains("..") || p.len() > 2048 {
                return Err(field(
                    RESP,
                    f,
                    format!(
                        "must be an absolute path without '..', got {:?}",
                        truncate(p)
                    ),
                ));
            }
        }
        if let Some(pin) = &r.log {
            pin.validate(RESP)?;
        }
        Ok(r)
    }
}

impl CheckinResponse {
    /// Parse untrusted bytes (limit [`MAX_RESPONSE_BYTES`]). Only shape is
    /// checked here; the metadata is verified by custody-tuf.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let v = strict_value(RESP, bytes, MAX_RESPONSE_BYTES)?;
        let r: CheckinResponse = typed(RESP, v)?;
        check_version(RESP, r.wire_version)?;
        check_metadata_set(&r.director)?;
        Ok(r)
    }
}

impl DirectorMetadataSet {
    /// Check the shape rules (root chain length).
    pub fn validate(&self) -> Result<(), WireError> {
        check_metadata_set(self)
    }
}
