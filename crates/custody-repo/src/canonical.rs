//! Canonical JSON (olpc-cjson, what TUF signs).
//!
//! ADAPTER: once custody-tuf exposes its canonical JSON encoder, this module
//! becomes a re-export; it must stay byte-identical to what custody-tuf
//! verifies against.
use serde::Serialize;

/// Serialize `value` as OLPC canonical JSON.
pub fn to_canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    Ok(out)
}
