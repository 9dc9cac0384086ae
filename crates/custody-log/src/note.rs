//! C2SP `signed-note`: parsing, formatting, Ed25519 signing and verification,
//! and the `vkey` / private key string formats.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one or more
//! signature lines `— <key name> base64(key ID || signature)`. Parsing is
//! strict; verification ignores unknown keys, rejects the note if any known
//! key's signature fails, and requires at least one known signature.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use crate::hash::sha256;

/// Signature type byte for plain Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte for timestamped Ed25519 witness cosignatures
/// (c2sp.org/tlog-cosignature, `cosignature/v1`).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Largest note accepted by [`Note::parse`], in bytes.
pub const MAX_NOTE_SIZE: usize = 1 << 20;
/// Most signature lines accepted by [`Note::parse`] (the spec requires at
/// least 16).
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";
const COSIG_HEADER: &str = "cosignature/v1\n";
/// Largest cosignature timestamp allowed by the spec (2^63 - 1).
pub const MAX_COSIGNATURE_TIMESTAMP: u64 = i64::MAX as u64;

/// The kind of key behind a signature line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// Plain Ed25519 over the note text (type byte 0x01): logs sign
    /// checkpoints with it.
    Ed25519,
    /// Timestamped Ed25519 witness cosignature (type byte 0x04).
    CosignatureV1,
}

impl KeyType {
    /// The signed-note signature type byte.
    pub fn alg_byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => ALG_ED25519,
            KeyType::CosignatureV1 => ALG_COSIGNATURE_V1,
        }
    }

    fn from_alg_byte(b: u8) -> Option<Self> {
        match b {
            ALG_ED25519 => Some(KeyType::Ed25519),
            ALG_COSIGNATURE_V1 => Some(KeyType::CosignatureV1),
            _ => None,
        }
    }
}

/// Errors of note parsing, key parsing, signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Note larger than [`MAX_NOTE_SIZE`].
    #[error("signed note: {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8.
    #[error("signed note: not valid UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// First invalid byte offset.
        offset: usize,
    },
    /// A control character other than newline.
    #[error(
        "signed note: control character U+{code:04X} at byte {offset} (only newline is allowed)"
    )]
    ControlCharacter {
        /// The character code.
        code: u32,
        /// Byte offset.
        offset: usize,
    },
    /// No blank line separating text from signatures.
    #[error("signed note: no blank line separating the text from the signature lines")]
    NoSignatureBlock,
    /// Text empty or not ending with a newline.
    #[error("signed note: the text must be non-empty and end with a newline")]
    BadText,
    /// Signature block malformed (empty, missing final newline, empty line).
    #[error("signed note: signature line {line}: {reason}")]
    BadSignatureLine {
        /// 1-based index among the signature lines.
        line: usize,
        /// Which rule it broke.
        reason: String,
    },
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("signed note: {count} signature lines exceeds the limit of {max}")]
    TooManySignatures {
        /// Lines found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A key name that breaks the name rules.
    #[error("key name {name:?}: {reason}")]
    BadKeyName {
        /// The name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A malformed `vkey` or private key string.
    #[error("key string: {reason}")]
    BadKeyString {
        /// Which rule it broke.
        reason: String,
    },
    /// Two signatures by the same known key.
    #[error("signed note: key {name}+{key_id:08x} signed more than once")]
    DuplicateSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// Two configured keys share name and key ID.
    #[error("verifier keys: more than one key is configured for {name}+{key_id:08x}")]
    AmbiguousKey {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// A known key's signature does not verify.
    #[error("signed note: signature by known key {name}+{key_id:08x} does not verify")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// No signature from any known key.
    #[error("signed note: no signature from a known key (signers present: {signers})")]
    NoKnownSignature {
        /// Comma-separated `name+keyid` of the signature lines present.
        signers: String,
    },
    /// Cosignature timestamp above 2^63 - 1.
    #[error("cosignature by {name}: timestamp {timestamp} exceeds 2^63-1")]
    BadTimestamp {
        /// Key name.
        name: String,
        /// The timestamp.
        timestamp: u64,
    },
    /// Randomness or key construction failure in the crypto library.
    #[error("key generation: {0}")]
    Crypto(&'static str),
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (first 4 bytes of the decoded signature, big-endian).
    pub key_id: u32,
    /// Signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parse one signature line (`— <name> <base64>`, with or without the
    /// final newline), for instance a cosignature returned by a witness.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        check_chars(line, 0)?;
        if line.contains('\n') {
            return Err(NoteError::BadSignatureLine {
                line: 1,
                reason: "a single signature line must not contain a newline".into(),
            });
        }
        Self::parse_line_numbered(line, 1)
    }

    fn parse_line_numbered(line: &str, lineno: usize) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::BadSignatureLine {
            line: lineno,
            reason: reason.to_owned(),
        };
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("must start with an em dash (U+2014) and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("must be `— <name> <base64 signature>`"))?;
        check_key_name(name).map_err(|e| bad(&e.to_string()))?;
        let raw = B64
            .decode(b64)
            .map_err(|e| bad(&format!("signature is not canonical standard base64: {e}")))?;
        if raw.len() < 5 {
            return Err(bad(&format!(
                "signature decodes to {} bytes, need a 4-byte key ID and at least 1 signature byte",
                raw.len()
            )));
        }
        let (id, sig) = raw.split_at(4);
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
            signature: sig.to_vec(),
        })
    }

    /// For a `cosignature/v1` signature (8-byte timestamp + 64-byte
    /// Ed25519 signature), the claimed timestamp. Unverified: only
    /// [`Note::verify`] makes it trustworthy.
    pub fn cosignature_timestamp(&self) -> Option<u64> {
        let ts: [u8; 8] = self.signature.get(..8)?.try_into().ok()?;
        (self.signature.len() == 72).then(|| u64::from_be_bytes(ts))
    }

    /// The line as it appears in the note, including the final newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// A signature that verified against a configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub key_id: u32,
    /// Key type.
    pub key_type: KeyType,
    /// The 32-byte Ed25519 public key that verified it.
    pub public_key: [u8; 32],
    /// Cosignature timestamp (POSIX seconds), for [`KeyType::CosignatureV1`].
    pub timestamp: Option<u64>,
}

fn check_chars(s: &str, base: usize) -> Result<(), NoteError> {
    for (i, c) in s.char_indices() {
        if (c as u32) < 0x20 && c != '\n' {
            return Err(NoteError::ControlCharacter {
                code: c as u32,
                offset: base + i,
            });
        }
    }
    Ok(())
}

/// Check a key name: non-empty, no Unicode spaces, no `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    let bad = |reason| {
        Err(NoteError::BadKeyName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must be non-empty");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("must not contain Unicode spaces");
    }
    if name.contains('+') {
        return bad("must not contain '+'");
    }
    if name.chars().any(|c| (c as u32) < 0x20) {
        return bad("must not contain control characters");
    }
    Ok(())
}

impl Note {
    /// A note with `text` and no signatures yet. The text must be non-empty,
    /// end with a newline and contain no control characters but newline.
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        if text.is_empty() || !text.ends_with('\n') {
            return Err(NoteError::BadText);
        }
        check_chars(&text, 0)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parse a signed note strictly per c2sp.org/signed-note.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|e| NoteError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        check_chars(s, 0)?;
        let split = s.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let text = &s[..split + 1];
        let block = &s[split + 2..];
        if text.is_empty() {
            return Err(NoteError::BadText);
        }
        let Some(block) = block.strip_suffix('\n') else {
            return Err(NoteError::BadSignatureLine {
                line: block.split('\n').count().max(1),
                reason: "the signature block must end with a newline".into(),
            });
        };
        let mut signatures = Vec::new();
        for (i, line) in block.split('\n').enumerate() {
            let lineno = i + 1;
            if lineno > MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    count: block.split('\n').count(),
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(NoteSignature::parse_line_numbered(line, lineno)?);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Append a signature line (e.g. from [`NoteSigner::sign`] or
    /// [`Cosigner::cosign`]).
    pub fn add_signature(&mut self, sig: NoteSignature) {
        self.signatures.push(sig);
    }

    /// Serialize: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out.into_bytes()
    }

    /// Verify against configured keys. Signatures whose (name, key ID) match
    /// no key are ignored; a matching signature that fails to verify rejects
    /// the note; at least one must verify.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<VerifiedSignature>, NoteError> {
        let mut verified: Vec<VerifiedSignature> = Vec::new();
        for sig in &self.signatures {
            let mut matching = keys
                .iter()
                .filter(|k| k.name == sig.name && k.key_id == sig.key_id);
            let Some(key) = matching.next() else {
                continue;
            };
            if matching.next().is_some() {
                return Err(NoteError::AmbiguousKey {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if verified
                .iter()
                .any(|v| v.name == sig.name && v.key_id == sig.key_id)
            {
                return Err(NoteError::DuplicateSignature {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            let timestamp = key.verify_signature(&self.text, &sig.signature)?;
            verified.push(VerifiedSignature {
                name: key.name.clone(),
                key_id: key.key_id,
                key_type: key.key_type,
                public_key: key.public_key,
                timestamp,
            });
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature {
                signers: self
                    .signatures
                    .iter()
                    .map(|s| format!("{}+{:08x}", s.name, s.key_id))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(verified)
    }
}

/// Key ID: first 4 bytes (big-endian) of SHA-256(name || 0x0A || type || key).
pub fn key_id(name: &str, key_type: KeyType, public_key: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 2 + public_key.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(key_type.alg_byte());
    buf.extend_from_slice(public_key);
    let h = sha256(&buf);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// The message a `cosignature/v1` signature covers.
pub fn cosignature_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("{COSIG_HEADER}time {timestamp}\n{text}").into_bytes()
}

/// A public key trusted to sign notes: the log's key (Ed25519) or a
/// witness's key (cosignature/v1).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key_type: KeyType,
    public_key: [u8; 32],
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl VerifierKey {
    /// Build from a name, type and 32-byte Ed25519 public key.
    pub fn new(name: &str, key_type: KeyType, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, key_type, &public_key),
            key_type,
            public_key,
        })
    }

    /// Parse a `vkey` string `name+hash+base64(type || key)`, where hash is
    /// the 8 lower-case hex digits of the key ID, and check the key ID.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let bad = |reason: String| NoteError::BadKeyString { reason };
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!(
                "vkey {vkey:?} is not of the form name+hash+base64key"
            )));
        };
        check_key_name(name)?;
        let claimed = parse_key_hash(hash)?;
        let raw = B64
            .decode(key)
            .map_err(|e| bad(format!("vkey {name}: key is not standard base64: {e}")))?;
        let Some((&alg, pk)) = raw.split_first() else {
            return Err(bad(format!("vkey {name}: empty key")));
        };
        let key_type = KeyType::from_alg_byte(alg).ok_or_else(|| {
            bad(format!(
                "vkey {name}: unsupported key type 0x{alg:02x} (supported: 0x01 Ed25519, 0x04 cosignature/v1)"
            ))
        })?;
        let public_key: [u8; 32] = pk.try_into().map_err(|_| {
            bad(format!(
                "vkey {name}: Ed25519 public key is {} bytes, must be 32",
                pk.len()
            ))
        })?;
        let k = VerifierKey::new(name, key_type, public_key)?;
        if k.key_id != claimed {
            return Err(bad(format!(
                "vkey {name}: key hash {claimed:08x} does not match the key (computed {:08x})",
                k.key_id
            )));
        }
        Ok(k)
    }

    /// Format as a `vkey` string.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.key_type.alg_byte()];
        raw.extend_from_slice(&self.public_key);
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Raw Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Verify one signature (without key ID) over note `text`. Returns the
    /// cosignature timestamp for cosignature keys.
    pub fn verify_signature(&self, text: &str, signature: &[u8]) -> Result<Option<u64>, NoteError> {
        let invalid = || NoteError::InvalidSignature {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        let pk = UnparsedPublicKey::new(&ED25519, &self.public_key);
        match self.key_type {
            KeyType::Ed25519 => {
                pk.verify(text.as_bytes(), signature)
                    .map_err(|_| invalid())?;
                Ok(None)
            }
            KeyType::CosignatureV1 => {
                if signature.len() != 8 + 64 {
                    return Err(invalid());
                }
                let (ts, sig) = signature.split_at(8);
                let mut tsb = [0u8; 8];
                tsb.copy_from_slice(ts);
                let timestamp = u64::from_be_bytes(tsb);
                if timestamp > MAX_COSIGNATURE_TIMESTAMP {
                    return Err(NoteError::BadTimestamp {
                        name: self.name.clone(),
                        timestamp,
                    });
                }
                pk.verify(&cosignature_message(text, timestamp), sig)
                    .map_err(|_| invalid())?;
                Ok(Some(timestamp))
            }
        }
    }
}

fn parse_key_hash(hash: &str) -> Result<u32, NoteError> {
    if hash.len() != 8
        || !hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(NoteError::BadKeyString {
            reason: format!("key hash {hash:?} must be exactly 8 lower-case hex digits"),
        });
    }
    u32::from_str_radix(hash, 16).map_err(|e| NoteError::BadKeyString {
        reason: format!("key hash {hash:?}: {e}"),
    })
}

/// An Ed25519 private key with its name and type. Shared core of
/// [`NoteSigner`] and [`Cosigner`].
struct KeyCore {
    name: String,
    key_type: KeyType,
    key_id: u32,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl KeyCore {
    fn from_seed(name: &str, key_type: KeyType, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::Crypto("Ed25519 key from seed rejected"))?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(pair.public_key().as_ref());
        Ok(KeyCore {
            name: name.to_owned(),
            key_type,
            key_id: key_id(name, key_type, &pk),
            seed,
            pair,
        })
    }

    fn generate(name: &str, key_type: KeyType) -> Result<Self, NoteError> {
        use ring::rand::SecureRandom as _;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| NoteError::Crypto("system randomness unavailable"))?;
        Self::from_seed(name, key_type, seed)
    }

    fn parse_skey(skey: &str, key_type: KeyType) -> Result<Self, NoteError> {
        let bad = |reason: String| NoteError::BadKeyString { reason };
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("private key must start with PRIVATE+KEY+".into()))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                "private key is not of the form PRIVATE+KEY+name+hash+base64key".into(),
            ));
        };
        check_key_name(name)?;
        let claimed = parse_key_hash(hash)?;
        let raw = B64
            .decode(key)
            .map_err(|_| bad(format!("private key {name}: key is not standard base64")))?;
        if raw.len() != 33 || raw[0] != key_type.alg_byte() {
            return Err(bad(format!(
                "private key {name}: must be type byte 0x{:02x} followed by a 32-byte Ed25519 seed",
                key_type.alg_byte()
            )));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let core = Self::from_seed(name, key_type, seed)?;
        if core.key_id != claimed {
            return Err(bad(format!(
                "private key {name}: key hash {claimed:08x} does not match the key (computed {:08x})",
                core.key_id
            )));
        }
        Ok(core)
    }

    fn to_skey(&self) -> String {
        let mut raw = vec![self.key_type.alg_byte()];
        raw.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }

    fn verifier(&self) -> VerifierKey {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key_type: self.key_type,
            public_key: pk,
        }
    }
}

/// What a signing key signs: plain note signatures or witness
/// cosignatures. Sealed: the two kinds below are the only ones.
pub trait SigningKind: sealed::Sealed {
    /// the note key type of this kind
    const KEY_TYPE: KeyType;
    /// the Rust type name, for `Debug`
    const NAME: &'static str;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::PlainNote {}
    impl Sealed for super::Cosignature {}
}

/// Plain Ed25519 note signatures (type 0x01).
#[derive(Debug)]
pub enum PlainNote {}
impl SigningKind for PlainNote {
    const KEY_TYPE: KeyType = KeyType::Ed25519;
    const NAME: &'static str = "NoteSigner";
}

/// `cosignature/v1` witness cosignatures (type 0x04).
#[derive(Debug)]
pub enum Cosignature {}
impl SigningKind for Cosignature {
    const KEY_TYPE: KeyType = KeyType::CosignatureV1;
    const NAME: &'static str = "Cosigner";
}

/// A note signing key of kind `K`: [`NoteSigner`] or [`Cosigner`].
pub struct SigningKey<K: SigningKind>(KeyCore, std::marker::PhantomData<K>);

/// Signs notes with plain Ed25519 (type 0x01): what a log uses to sign its
/// checkpoints.
pub type NoteSigner = SigningKey<PlainNote>;

/// Produces `cosignature/v1` witness cosignatures (type 0x04).
pub type Cosigner = SigningKey<Cosignature>;

impl<K: SigningKind> std::fmt::Debug for SigningKey<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({}+{:08x})", K::NAME, self.0.name, self.0.key_id)
    }
}

impl<K: SigningKind> SigningKey<K> {
    fn wrap(core: KeyCore) -> Self {
        SigningKey(core, std::marker::PhantomData)
    }

    /// From a name and a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        KeyCore::from_seed(name, K::KEY_TYPE, seed).map(Self::wrap)
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        KeyCore::generate(name, K::KEY_TYPE).map(Self::wrap)
    }

    /// Parse `PRIVATE+KEY+name+hash+base64(type || seed)` (the format of
    /// Go's `golang.org/x/mod/sumdb/note`); the type byte must be this
    /// kind's (0x01 for a note signer, 0x04 for a cosigner).
    pub fn parse_private_key(skey: &str) -> Result<Self, NoteError> {
        KeyCore::parse_skey(skey, K::KEY_TYPE).map(Self::wrap)
    }

    /// Format as `PRIVATE+KEY+...`. This is secret material.
    pub fn to_private_key(&self) -> String {
        self.0.to_skey()
    }

    /// The matching verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        self.0.verifier()
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl SigningKey<PlainNote> {
    /// Sign note text (which must be a valid note text).
    pub fn sign(&self, text: &str) -> Result<NoteSignature, NoteError> {
        Note::new(text)?;
        Ok(NoteSignature {
            name: self.0.name.clone(),
            key_id: self.0.key_id,
            signature: self.0.pair.sign(text.as_bytes()).as_ref().to_vec(),
        })
    }
}

impl SigningKey<Cosignature> {
    /// Cosign note text (a checkpoint body) at POSIX time `timestamp`.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<NoteSignature, NoteError> {
        Note::new(text)?;
        if timestamp > MAX_COSIGNATURE_TIMESTAMP {
            return Err(NoteError::BadTimestamp {
                name: self.0.name.clone(),
                timestamp,
            });
        }
        let sig = self.0.pair.sign(&cosignature_message(text, timestamp));
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(sig.as_ref());
        Ok(NoteSignature {
            name: self.0.name.clone(),
            key_id: self.0.key_id,
            signature,
        })
    }
}
