//! PKCS#11 backend: the private key stays on the token; custody only asks
//! the token to sign.
//!
//! A key is named by a small PKCS#11 URI (RFC 7512 subset):
//!
//! ```text
//! pkcs11:token=custody;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CUSTODY_PIN
//! ```
//!
//! - path attributes: `token` (token label, required), `object` (key label)
//!   and/or `id` (key id bytes, percent-encoded); at least one of the two.
//! - query attributes: `module-path` (required), `pin-source`
//!   (`env:NAME` or `file:/path` or a plain path, as in RFC 7512), or `pin-value`.
//!
//! Mechanisms: CKM_EDDSA (Ed25519), CKM_ECDSA over a SHA-256/384 digest
//! computed on the host, the raw r‖s converted to DER, and CKM_RSA_PKCS_PSS
//! over a SHA-256 digest with MGF1-SHA256 and a 32-byte salt.
use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use spki::der::asn1::{ObjectIdentifier, OctetStringRef};
use spki::der::Decode;
use zeroize::Zeroizing;

use crate::encode::{der_uint_pair, OID_ED25519, OID_P256, OID_P384};
use crate::error::SignerError;
use crate::keys::{KeyType, TufPublicKey};
use crate::passphrase::SecretSource;
use crate::signer::Signer;

/// Where a key lives on a PKCS#11 token and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub module_path: PathBuf,
    pub token: String,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub pin: PinSource,
}

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    Secret(SecretSource),
    /// `pin-value=`: allowed by RFC 7512, but it puts the PIN in shell
    /// history and config files; prefer `pin-source`.
    Value(String),
}

fn uri_err(uri: &str, detail: impl std::fmt::Display) -> SignerError {
    SignerError::Pkcs11(format!("invalid PKCS#11 URI {uri:?}: {detail}"))
}

fn pct_decode(uri: &str, s: &str) -> Result<Vec<u8>, SignerError> {
    // percent-decoding only; reject malformed escapes rather than pass them through
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hexpair = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| uri_err(uri, format!("bad percent escape in {s:?}")))?;
            out.push(hexpair);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn pct_decode_str(uri: &str, s: &str) -> Result<String, SignerError> {
    String::from_utf8(pct_decode(uri, s)?)
        .map_err(|_| uri_err(uri, format!("{s:?} is not UTF-8 after percent-decoding")))
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = SignerError;
    fn from_str(uri: &str) -> Result<Self, SignerError> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| uri_err(uri, "must start with \"pkcs11:\""))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut id) = (None, None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| uri_err(uri, format!("path attribute {attr:?} has no '='")))?;
            match k {
                "token" => token = Some(pct_decode_str(uri, v)?),
                "object" => object = Some(pct_decode_str(uri, v)?),
                "id" => id = Some(pct_decode(uri, v)?),
                // RFC 7512: unknown path attributes are not ignorable.
                other => {
                    return Err(uri_err(
                        uri,
                        format!(
                            "unsupported path attribute {other:?} (supported: token, object, id)"
                        ),
                    ))
                }
            }
        }
        let (mut module_path, mut pin) = (None, None);
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| uri_err(uri, format!("query attribute {attr:?} has no '='")))?;
            match k {
                "module-path" => module_path = Some(PathBuf::from(pct_decode_str(uri, v)?)),
                "pin-source" => {
                    let v = pct_decode_str(uri, v)?;
                    let src = if let Some(name) = v.strip_prefix("env:") {
                        SecretSource::Env(name.to_owned())
                    } else {
                        let p = v.strip_prefix("file:").unwrap_or(&v);
                        SecretSource::File(PathBuf::from(p))
                    };
                    pin = Some(PinSource::Secret(src));
                }
                "pin-value" => pin = Some(PinSource::Value(pct_decode_str(uri, v)?)),
                other => {
                    return Err(uri_err(
                        uri,
                        format!("unsupported query attribute {other:?} (supported: module-path, pin-source, pin-value)"),
                    ))
                }
            }
        }
        let token = token.ok_or_else(|| uri_err(uri, "missing token=<label>"))?;
        if object.is_none() && id.is_none() {
            return Err(uri_err(
                uri,
                "name the key with object=<label> and/or id=<bytes>",
            ));
        }
        let module_path = module_path
            .ok_or_else(|| uri_err(uri, "missing ?module-path=<path to the PKCS#11 library>"))?;
        Ok(Pkcs11Uri {
            module_path,
            token,
            object,
            id,
            pin: pin.unwrap_or(PinSource::Secret(SecretSource::Prompt)),
        })
    }
}

/// A key on a PKCS#11 token, with a logged-in session.
pub struct Pkcs11Signer {
    _ctx: Pkcs11,
    session: Session,
    key: ObjectHandle,
    key_type: KeyType,
    public: TufPublicKey,
    keyid: String,
    label: String,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("key", &self.label)
            .field("key_type", &self.key_type)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// One initialised context per module: C_Initialize may be called only
    /// once per process (CKR_CRYPTOKI_ALREADY_INITIALIZED otherwise), and
    /// several repository keys often live on the same token.
    static CONTEXTS: std::cell::RefCell<std::collections::BTreeMap<PathBuf, Pkcs11>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

fn context(module: &std::path::Path) -> Result<Pkcs11, SignerError> {
    if let Some(ctx) = CONTEXTS.with(|c| c.borrow().get(module).cloned()) {
        return Ok(ctx);
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        SignerError::Pkcs11(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(SignerError::Pkcs11(format!("C_Initialize: {e}"))),
    }
    CONTEXTS.with(|c| c.borrow_mut().insert(module.to_owned(), ctx.clone()));
    Ok(ctx)
}

fn p11(what: &str) -> impl Fn(cryptoki::error::Error) -> SignerError + '_ {
    move |e| SignerError::Pkcs11(format!("{what}: {e}"))
}

impl Pkcs11Signer {
    /// Open the module, find the token by label, log in and find the key.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, SignerError> {
        let module = uri.module_path.display().to_string();
        let ctx = context(&uri.module_path)?;
        let slots = ctx.get_slots_with_token().map_err(p11("C_GetSlotList"))?;
        let mut found = None;
        let mut seen = Vec::new();
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(p11("C_GetTokenInfo"))?;
            let label = info.label().trim_end().to_owned();
            if label == uri.token {
                found = Some(slot);
                break;
            }
            seen.push(label);
        }
        let slot = found.ok_or_else(|| {
            SignerError::Pkcs11(format!(
                "no token labelled {:?} in module {module} (tokens present: {seen:?})",
                uri.token
            ))
        })?;
        let session = ctx.open_ro_session(slot).map_err(p11("C_OpenSession"))?;
        let pin: Zeroizing<String> = match &uri.pin {
            PinSource::Value(v) => Zeroizing::new(v.clone()),
            PinSource::Secret(src) => src.read(&format!("PIN for token {}", uri.token), false)?,
        };
        match session.login(UserType::User, Some(&AuthPin::new(pin.as_str().into()))) {
            Ok(()) => {}
            // Login state is per token and application: a second key on the
            // same token finds the user already logged in.
            Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => {
                return Err(SignerError::Pkcs11(format!(
                    "login to token {:?} failed (wrong PIN?): {e}",
                    uri.token
                )))
            }
        }
        let label = match (&uri.object, &uri.id) {
            (Some(o), _) => o.clone(),
            (None, Some(id)) => format!("id={}", hex::encode(id)),
            (None, None) => String::new(),
        };
        let template = |class: ObjectClass| {
            let mut t = vec![Attribute::Class(class)];
            if let Some(o) = &uri.object {
                t.push(Attribute::Label(o.as_bytes().to_vec()));
            }
            if let Some(id) = &uri.id {
                t.push(Attribute::Id(id.clone()));
            }
            t
        };
        let one = |class: ObjectClass, what: &str| -> Result<ObjectHandle, SignerError> {
            let objs = session
                .find_objects(&template(class))
                .map_err(p11("C_FindObjects"))?;
            match objs.as_slice() {
                [h] => Ok(*h),
                [] => Err(SignerError::Pkcs11(format!(
                    "no {what} {label:?} on token {:?}",
                    uri.token
                ))),
                many => Err(SignerError::Pkcs11(format!(
                    "{} {what}s match {label:?} on token {:?}: add id= to the URI to pick one",
                    many.len(),
                    uri.token
                ))),
            }
        };
        let key = one(ObjectClass::PRIVATE_KEY, "private key")?;
        let pubkey = one(ObjectClass::PUBLIC_KEY, "public key")?;
        let (key_type, public) = read_public(&session, pubkey, &label)?;
        let keyid = crate::keys::keyid(&public)?;
        Ok(Pkcs11Signer {
            _ctx: ctx,
            session,
            key,
            key_type,
            public,
            keyid,
            label,
        })
    }
}

fn attr_bytes(
    session: &Session,
    obj: ObjectHandle,
    t: AttributeType,
) -> Result<Vec<u8>, SignerError> {
    let attrs = session
        .get_attributes(obj, &[t])
        .map_err(p11("C_GetAttributeValue"))?;
    for a in attrs {
        match a {
            Attribute::EcPoint(v)
            | Attribute::EcParams(v)
            | Attribute::Modulus(v)
            | Attribute::PublicExponent(v) => return Ok(v),
            _ => {}
        }
    }
    Err(SignerError::Pkcs11(format!(
        "public key has no {t} attribute"
    )))
}

/// CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 2.40);
/// some tokens return the bare point: accept both.
fn unwrap_ec_point(raw: &[u8]) -> Vec<u8> {
    match OctetStringRef::from_der(raw) {
        Ok(os) => os.as_bytes().to_vec(),
        Err(_) => raw.to_vec(),
    }
}

fn read_public(
    session: &Session,
    obj: ObjectHandle,
    label: &str,
) -> Result<(KeyType, TufPublicKey), SignerError> {
    let attrs = session
        .get_attributes(obj, &[AttributeType::KeyType])
        .map_err(p11("C_GetAttributeValue(CKA_KEY_TYPE)"))?;
    let ck = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| SignerError::Pkcs11(format!("key {label:?} has no CKA_KEY_TYPE")))?;
    if ck == CkKeyType::EC_EDWARDS {
        let point = unwrap_ec_point(&attr_bytes(session, obj, AttributeType::EcPoint)?);
        if point.len() != 32 {
            return Err(SignerError::Pkcs11(format!(
                "key {label:?}: EdDSA public key is {} bytes, only Ed25519 (32) is supported",
                point.len()
            )));
        }
        // Sanity: the params, if an OID, must be Ed25519.
        if let Ok(p) = attr_bytes(session, obj, AttributeType::EcParams) {
            if let Ok(oid) = ObjectIdentifier::from_der(&p) {
                if oid != OID_ED25519 {
                    return Err(SignerError::Pkcs11(format!(
                        "key {label:?}: Edwards curve {oid} is not Ed25519"
                    )));
                }
            }
        }
        Ok((KeyType::Ed25519, crate::keys::ed25519_key(&point)))
    } else if ck == CkKeyType::EC {
        let params = attr_bytes(session, obj, AttributeType::EcParams)?;
        let oid = ObjectIdentifier::from_der(&params).map_err(|e| {
            SignerError::Pkcs11(format!(
                "key {label:?}: CKA_EC_PARAMS is not a named curve OID: {e}"
            ))
        })?;
        let kt = if oid == OID_P256 {
            KeyType::EcdsaP256
        } else if oid == OID_P384 {
            KeyType::EcdsaP384
        } else {
            return Err(SignerError::Pkcs11(format!(
                "key {label:?}: curve {oid} is not supported (P-256, P-384)"
            )));
        };
        let point = unwrap_ec_point(&attr_bytes(session, obj, AttributeType::EcPoint)?);
        Ok((kt, crate::encode::ecdsa_key(kt, &point)?))
    } else if ck == CkKeyType::RSA {
        let n = attr_bytes(session, obj, AttributeType::Modulus)?;
        let e = attr_bytes(session, obj, AttributeType::PublicExponent)?;
        let pkcs1 = der_uint_pair(&n, &e)?;
        Ok((KeyType::RsaPss, crate::encode::rsa_key(&pkcs1)?))
    } else {
        Err(SignerError::Pkcs11(format!(
            "key {label:?}: key type {ck} is not supported (EC, EC_EDWARDS, RSA)"
        )))
    }
}

impl Signer for Pkcs11Signer {
    fn key(&self) -> &TufPublicKey {
        &self.public
    }
    fn keyid(&self) -> &str {
        &self.keyid
    }
    fn key_type(&self) -> KeyType {
        self.key_type
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
        let err = |detail: String| SignerError::Sign {
            keyid: self.keyid.clone(),
            detail,
        };
        match self.key_type {
            KeyType::Ed25519 => {
                let params = EddsaParams::new(EddsaSignatureScheme::Pure);
                self.session
                    .sign(&Mechanism::Eddsa(params), self.key, msg)
                    .map_err(|e| err(format!("CKM_EDDSA on {:?}: {e}", self.label)))
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                let (alg, half) = if self.key_type == KeyType::EcdsaP256 {
                    (&ring::digest::SHA256, 32)
                } else {
                    (&ring::digest::SHA384, 48)
                };
                let digest = ring::digest::digest(alg, msg);
                let raw = self
                    .session
                    .sign(&Mechanism::Ecdsa, self.key, digest.as_ref())
                    .map_err(|e| err(format!("CKM_ECDSA on {:?}: {e}", self.label)))?;
                if raw.len() != 2 * half {
                    return Err(err(format!(
                        "token returned a {}-byte ECDSA signature, expected r||s of {} bytes",
                        raw.len(),
                        2 * half
                    )));
                }
                let (r, s) = raw.split_at(half);
                der_uint_pair(r, s)
            }
            KeyType::RsaPss => {
                let digest = ring::digest::digest(&ring::digest::SHA256, msg);
                let params = PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32u64.into(),
                };
                self.session
                    .sign(&Mechanism::RsaPkcsPss(params), self.key, digest.as_ref())
                    .map_err(|e| err(format!("CKM_RSA_PKCS_PSS on {:?}: {e}", self.label)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uri() {
        let u: Pkcs11Uri = "pkcs11:token=my%20tok;object=root-1;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN"
            .parse()
            .unwrap();
        assert_eq!(u.token, "my tok");
        assert_eq!(u.object.as_deref(), Some("root-1"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(u.pin, PinSource::Secret(SecretSource::Env("PIN".into())));
        let u: Pkcs11Uri = "pkcs11:token=t;object=k?module-path=/m.so&pin-source=file:/p"
            .parse()
            .unwrap();
        assert_eq!(u.pin, PinSource::Secret(SecretSource::File("/p".into())));
    }

    #[test]
    fn rejects_bad_uris_with_reason() {
        for (uri, want) in [
            ("token=t", "pkcs11:"),
            ("pkcs11:object=k?module-path=/m", "token"),
            ("pkcs11:token=t?module-path=/m", "object"),
            ("pkcs11:token=t;object=k", "module-path"),
            ("pkcs11:token=t;object=k;slot=1?module-path=/m", "slot"),
            ("pkcs11:token=%zz;object=k?module-path=/m", "percent"),
            ("pkcs11:token=t;object=k?module-path=/m&x=1", "\"x\""),
        ] {
            let e = uri.parse::<Pkcs11Uri>().unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn uri_parser_never_panics(s in "pkcs11:[ -~]{0,80}") {
            let _ = s.parse::<Pkcs11Uri>();
        }
    }
}
