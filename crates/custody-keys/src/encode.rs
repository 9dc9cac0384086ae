//! SPKI PEM encoding of the ECDSA and RSA public keys the key-file and
//! PKCS#11 backends read, and the object identifiers they match on.
use spki::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use spki::der::pem::LineEnding;
use spki::der::{Encode, EncodePem};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::error::SignerError;
use crate::keys::{new_key, KeyType, TufPublicKey};

/// id-ecPublicKey (RFC 5480).
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1.
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub(crate) const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption (RFC 8017).
pub(crate) const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-Ed25519 (RFC 8410).
pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// TUF form of an EC key from its uncompressed SEC1 point.
pub(crate) fn ecdsa_key(kt: KeyType, point: &[u8]) -> Result<TufPublicKey, SignerError> {
    let curve = match kt {
        KeyType::EcdsaP256 => OID_P256,
        KeyType::EcdsaP384 => OID_P384,
        other => {
            return Err(SignerError::Encode(format!(
                "{other} is not an ECDSA key type"
            )))
        }
    };
    let curve_der = curve
        .to_der()
        .map_err(|e| SignerError::Encode(e.to_string()))?;
    let params =
        AnyRef::try_from(curve_der.as_slice()).map_err(|e| SignerError::Encode(e.to_string()))?;
    let pem = spki_pem(OID_EC_PUBLIC_KEY, Some(params), point)?;
    Ok(new_key(kt, pem))
}

/// TUF form of an RSA key from its PKCS#1 RSAPublicKey DER.
pub(crate) fn rsa_key(pkcs1_der: &[u8]) -> Result<TufPublicKey, SignerError> {
    let pem = spki_pem(OID_RSA, Some(AnyRef::NULL), pkcs1_der)?;
    Ok(new_key(KeyType::RsaPss, pem))
}

/// Encode a SubjectPublicKeyInfo as PEM ("PUBLIC KEY", LF line endings, final newline).
fn spki_pem(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    key: &[u8],
) -> Result<String, SignerError> {
    let spki = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(key)
            .map_err(|e| SignerError::Encode(e.to_string()))?,
    };
    spki.to_pem(LineEnding::LF)
        .map_err(|e| SignerError::Encode(e.to_string()))
}

/// Encode a DER INTEGER SEQUENCE `SEQUENCE { a INTEGER, b INTEGER }` from two
/// unsigned big-endian integers (ECDSA-Sig-Value, PKCS#1 RSAPublicKey).
#[cfg(feature = "pkcs11")]
pub(crate) fn der_uint_pair(a: &[u8], b: &[u8]) -> Result<Vec<u8>, SignerError> {
    use spki::der::asn1::UintRef;
    use spki::der::Tag;
    let enc = |x: &[u8]| -> Result<Vec<u8>, SignerError> {
        UintRef::new(x)
            .and_then(|u| u.to_der())
            .map_err(|e| SignerError::Encode(e.to_string()))
    };
    let mut body = enc(a)?;
    body.extend(enc(b)?);
    AnyRef::new(Tag::Sequence, &body)
        .and_then(|any| any.to_der())
        .map_err(|e| SignerError::Encode(e.to_string()))
}

#[cfg(all(test, feature = "pkcs11"))]
mod tests {
    use super::*;

    #[test]
    fn der_uint_pair_strips_and_pads() {
        // r has a leading zero that must be stripped, s a high bit that needs 0x00.
        let der = der_uint_pair(&[0x00, 0x01], &[0x80]).unwrap();
        assert_eq!(
            der,
            vec![0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80]
        );
    }
}
