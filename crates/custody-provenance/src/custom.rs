//! The provenance field of a TUF target's `custom` object,
//! `custody.provenance.sha256`: where the publisher records the hex sha256
//! of the envelope it accepted. Read and written only here, so the
//! repository, the server and the log agree on the path.
//!
//! It lives in custody-provenance, not custody-director: the authoring
//! crate (custody-repo) writes it and must not depend on the director, and
//! every user (custody-repo, custody-server through custody-repo) already
//! depends on this crate. custody-tuf does not know custody's conventions
//! inside `custom`.

use serde_json::{json, Map, Value};

/// Dotted path of the field in a TUF target's `custom` object that holds
/// the hex sha256 of the accepted provenance envelope.
pub const PROVENANCE_CUSTOM_FIELD: &str = "custody.provenance.sha256";
/// [`PROVENANCE_CUSTOM_FIELD`] as a JSON pointer.
pub const PROVENANCE_CUSTOM_POINTER: &str = "/custody/provenance/sha256";
/// The object under `custom` that custody's own fields live in.
const CUSTODY: &str = "custody";
/// The object under `custom.custody` the publisher owns.
const PROVENANCE: &str = "provenance";

/// `custom` cannot carry the provenance digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomFieldError {
    /// `custom` is not a JSON object
    #[error("custom metadata {found} is not a JSON object: it cannot also carry {PROVENANCE_CUSTOM_FIELD}")]
    NotObject {
        /// the value found (JSON)
        found: String,
    },
    /// `custom.custody` is not a JSON object
    #[error(
        "custom.custody is {found}, not a JSON object: it cannot carry {PROVENANCE_CUSTOM_FIELD}"
    )]
    CustodyNotObject {
        /// the value found (JSON)
        found: String,
    },
}

/// The provenance digest a target's `custom` carries, if any (a value that
/// is not a string is none).
pub fn provenance_digest(custom: Option<&Value>) -> Option<&str> {
    custom?
        .pointer(PROVENANCE_CUSTOM_POINTER)
        .and_then(Value::as_str)
}

/// Whether `custom` has anything at `custody.provenance` (the publisher's
/// to set: a stager who writes it is trying to claim a provenance no one
/// checked).
pub fn names_provenance(custom: &Value) -> bool {
    custom
        .get(CUSTODY)
        .and_then(|c| c.get(PROVENANCE))
        .is_some()
}

/// Whether [`with_provenance_digest`] can set the digest in `custom`.
pub fn check_can_carry_digest(custom: &Value) -> Result<(), CustomFieldError> {
    let Value::Object(obj) = custom else {
        return Err(CustomFieldError::NotObject {
            found: custom.to_string(),
        });
    };
    match obj.get(CUSTODY) {
        None | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(CustomFieldError::CustodyNotObject {
            found: other.to_string(),
        }),
    }
}

/// `{"custody": {"provenance": {"sha256": <sha256>}}}`.
pub fn provenance_custom(sha256: &str) -> Value {
    json!({ CUSTODY: { PROVENANCE: { "sha256": sha256 } } })
}

/// `custom` (none: `{}`) with `custody.provenance` set to `{"sha256":
/// <sha256>}`, everything else kept.
pub fn with_provenance_digest(
    custom: Option<Value>,
    sha256: &str,
) -> Result<Value, CustomFieldError> {
    let mut obj = match custom {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(CustomFieldError::NotObject {
                found: other.to_string(),
            })
        }
    };
    let custody = obj
        .entry(CUSTODY)
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(custody) = custody else {
        return Err(CustomFieldError::CustodyNotObject {
            found: custody.to_string(),
        });
    };
    custody.insert(PROVENANCE.into(), json!({ "sha256": sha256 }));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_get_keeps_everything_else() {
        let c = json!({"release_counter": 3, "custody": {"other": 1}});
        let out = with_provenance_digest(Some(c), "ab").unwrap();
        assert_eq!(out["release_counter"], 3);
        assert_eq!(out["custody"]["other"], 1);
        assert_eq!(provenance_digest(Some(&out)), Some("ab"));
        assert_eq!(
            with_provenance_digest(None, "ab").unwrap(),
            provenance_custom("ab")
        );
        assert_eq!(
            provenance_digest(Some(&provenance_custom("cd"))),
            Some("cd")
        );
        // the dotted and pointer forms name the same place
        assert_eq!(
            PROVENANCE_CUSTOM_POINTER,
            format!("/{}", PROVENANCE_CUSTOM_FIELD.replace('.', "/"))
        );
    }

    /// A digest set by the publisher replaces whatever a stager put there.
    #[test]
    fn setting_replaces_a_claimed_provenance() {
        let claimed = json!({"custody": {"provenance": {"sha256": "forged", "builder": "me"}}});
        assert!(names_provenance(&claimed));
        let out = with_provenance_digest(Some(claimed), "ab").unwrap();
        assert_eq!(out, provenance_custom("ab"));
    }

    #[test]
    fn what_cannot_carry_it_is_refused() {
        for (bad, custody) in [
            (json!([]), false),
            (json!("x"), false),
            (json!({"custody": 1}), true),
            (json!({"custody": ["provenance"]}), true),
        ] {
            let e = with_provenance_digest(Some(bad.clone()), "ab").unwrap_err();
            assert_eq!(check_can_carry_digest(&bad), Err(e.clone()));
            assert_eq!(
                matches!(e, CustomFieldError::CustodyNotObject { .. }),
                custody,
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(PROVENANCE_CUSTOM_FIELD), "{e}");
        }
        assert_eq!(check_can_carry_digest(&json!({"custody": {}})), Ok(()));
    }

    #[test]
    fn only_a_string_digest_is_a_digest() {
        assert_eq!(provenance_digest(None), None);
        assert_eq!(provenance_digest(Some(&json!({}))), None);
        assert_eq!(
            provenance_digest(Some(&json!({"custody": {"provenance": {"sha256": 5}}}))),
            None
        );
        assert!(!names_provenance(&json!({"custody": {"other": 1}})));
        assert!(!names_provenance(&json!({"custody": 1})));
    }
}
