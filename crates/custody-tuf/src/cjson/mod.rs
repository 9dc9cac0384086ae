//! Strict JSON parsing and canonical JSON (OLPC canonical JSON, the form
//! python-tuf and tough sign), written by [`writer`]: byte-identical to the
//! `olpc-cjson` crate, which stays the reference in a differential test.
//!
//! [`parse_strict`] turns untrusted bytes into a [`serde_json::Value`] and
//! refuses what canonical JSON cannot represent, so that the bytes we verify
//! signatures over are exactly the ones the signer meant:
//! - duplicate object keys (JSON parsers disagree on which one wins),
//! - floating point numbers and integers outside i64/u64,
//! - trailing data after the top-level value,
//! - strings (values or keys) not in Unicode Normalization Form C:
//!   olpc-cjson NFC-normalises strings while canonicalising, so a non-NFC
//!   document and its NFC twin would share one signature (malleability:
//!   e.g. a target path renamed to a canonically-equivalent spelling).
//!
//! Two properties of the OLPC form worth knowing (both tested):
//! only `"` and `\` are escaped (control characters are written raw, so the
//! output is not always valid JSON), and object keys are sorted by their
//! *escaped* UTF-8 bytes. securesystemslib sorts by the raw string, so the
//! two disagree only for keys containing `"` or `\`; such metadata fails
//! closed (signature mismatch), it is never accepted wrongly.
//!
//! Nesting depth is bounded by serde_json's recursion limit (128).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};
use unicode_normalization::is_nfc;

use crate::error::{Error, Result};

mod writer;

struct StrictValue;

fn check_nfc<E: de::Error>(s: &str) -> Result<(), E> {
    if is_nfc(s) {
        Ok(())
    } else {
        Err(E::custom(format_args!(
            "string {s:?} is not in Unicode normalization form C; canonical JSON would normalise it, so the signature would not pin these exact bytes"
        )))
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value representable in canonical JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format_args!(
            "number {v} is a float or out of integer range; canonical JSON allows only integers"
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        check_nfc(v)?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        check_nfc(&v)?;
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            check_nfc(&key)?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate object key {key:?}"
                )));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parse untrusted bytes into a JSON value, rejecting duplicate keys, floats
/// and trailing data. `role` names the input in errors.
pub fn parse_strict(role: &str, bytes: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue.deserialize(&mut de).map_err(|e| Error::Json {
        role: role.to_owned(),
        reason: e.to_string(),
    })?;
    de.end().map_err(|e| Error::Json {
        role: role.to_owned(),
        reason: format!("trailing data after the JSON value: {e}"),
    })?;
    Ok(v)
}

/// Canonical JSON bytes of any serialisable value. `role` names it in
/// errors, and the error names the field (`signed.custom.ratio: floating
/// point numbers are not allowed in canonical JSON`).
pub fn canonical_bytes<T: Serialize + ?Sized>(role: &str, value: &T) -> Result<Vec<u8>> {
    writer::write(value).map_err(|e| Error::Canonical {
        role: role.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys() {
        let e = parse_strict("root", br#"{"a":1,"a":2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate object key \"a\""), "{e}");
    }

    #[test]
    fn rejects_nested_duplicate_keys() {
        let e = parse_strict("root", br#"{"a":[{"b":1,"b":1}]}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }

    #[test]
    fn rejects_floats() {
        let e = parse_strict("timestamp", br#"{"version":1.5}"#).unwrap_err();
        assert!(e.to_string().contains("float"), "{e}");
        assert!(parse_strict("t", br#"{"v":1e3}"#).is_err());
        assert!(parse_strict("t", br#"{"v":123456789012345678901234567890}"#).is_err());
    }

    #[test]
    fn rejects_trailing_data() {
        assert!(parse_strict("t", br#"{"v":1} {"#).is_err());
        assert!(parse_strict("t", br#"{"v":1}   "#).is_ok());
    }

    #[test]
    fn rejects_deep_nesting_without_overflow() {
        let deep = "[".repeat(100_000);
        assert!(parse_strict("t", deep.as_bytes()).is_err());
    }

    #[test]
    fn rejects_non_nfc_strings() {
        // "e" + combining acute accent (NFD) vs precomposed U+00E9 (NFC)
        let e = parse_strict("targets", "{\"caf\u{65}\u{301}\":1}".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("normalization form C"), "{e}");
        assert!(parse_strict("t", "[\"caf\u{65}\u{301}\"]".as_bytes()).is_err());
        assert!(parse_strict("t", "[\"caf\u{e9}\"]".as_bytes()).is_ok());
    }

    #[test]
    fn canonical_sorts_and_escapes() {
        let v = parse_strict("t", br#"{"b":"x\"\\\n","a":[1,-2,true,null]}"#).unwrap();
        let c = canonical_bytes("t", &v).unwrap();
        // OLPC: only " and \ are escaped, other bytes are written raw.
        assert_eq!(
            c,
            b"{\"a\":[1,-2,true,null],\"b\":\"x\\\"\\\\\n\"}".to_vec()
        );
    }
}
