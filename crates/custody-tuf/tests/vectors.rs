//! ECDSA P-384 / P-256 (hex and PEM) and RSASSA-PSS-SHA256 vectors, made by
//! python-tuf + securesystemslib (tests/data/gen_vectors.py). Also checks our
//! canonical JSON against python's: the signatures cover python's bytes.

use custody_tuf::{Error, TrustedMetadata};
use serde_json::Value;

fn vectors() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn root_bytes(name: &str) -> Vec<u8> {
    serde_json::to_vec(&vectors()[name]).unwrap()
}

#[test]
fn p384_pem_and_rsa_pss_threshold_two() {
    let t = TrustedMetadata::new(&root_bytes("root_p384_pem_and_rsa")).unwrap();
    assert_eq!(t.root().roles["root"].threshold, 2);
}

#[test]
fn p384_hex_point() {
    TrustedMetadata::new(&root_bytes("root_p384_hex")).unwrap();
}

#[test]
fn p256_hex_point() {
    TrustedMetadata::new(&root_bytes("root_p256_hex")).unwrap();
}

#[test]
fn same_p384_key_as_pem_and_hex_counts_once() {
    let e = TrustedMetadata::new(&root_bytes("root_same_key_two_ids")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ThresholdNotMet {
                threshold: 2,
                valid: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tampered_rsa_and_p384_rejected() {
    let mut v = vectors()["root_p384_pem_and_rsa"].clone();
    v["signed"]["version"] = Value::from(2);
    let e = TrustedMetadata::new(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(e, Error::ThresholdNotMet { valid: 0, .. }), "{e}");
}

#[test]
fn scheme_curve_mismatch_is_skipped() {
    // A P-384 key claimed to be P-256: unusable, so the threshold is not met.
    let mut v = vectors()["root_p384_hex"].clone();
    let keys = v["signed"]["keys"].as_object_mut().unwrap();
    for k in keys.values_mut() {
        k["scheme"] = Value::from("ecdsa-sha2-nistp256");
    }
    let e = TrustedMetadata::new(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.to_string().contains("skipped keys"), "{e}");
}
