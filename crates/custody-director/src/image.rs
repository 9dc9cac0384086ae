//! What an image repository's signed target says about its release, read
//! from the target's `custom` object: ONE reader, [`ImageCustom::read`],
//! for the director (which builds a release from it, `policy::Release::from_image`)
//! and for the device (which checks the director's assignment against it,
//! [`crate::director::BoundTarget::agrees_with_image_for`]).
//!
//! Fields (all optional; custody-tuf accepts any JSON value as `custom`,
//! and a `custom` that is not an object names none of them):
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `hardware_id` | string | the one hardware id the image is built for |
//! | `hardware_ids` | array of strings | the hardware ids it is built for |
//! | `release_counter` | unsigned integer | the release's anti-rollback counter |
//!
//! A field that is present with the wrong type is an error, never "absent":
//! the image repository signed something, and a reader that skipped it
//! would treat a restricted image as built for any hardware.

use std::collections::BTreeSet;

use custody_tuf::TargetFile;
use serde_json::Value;

/// `custom` field: the one hardware id the image is built for.
pub const HARDWARE_ID: &str = "hardware_id";
/// `custom` field: the hardware ids the image is built for.
pub const HARDWARE_IDS: &str = "hardware_ids";
/// `custom` field: the release's anti-rollback counter.
pub const RELEASE_COUNTER: &str = "release_counter";

/// A field of an image target's `custom` has the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {target:?}: image repository custom.{field} is {found}, but must be {rule}")]
pub struct ImageCustomError {
    /// target path
    pub target: String,
    /// [`HARDWARE_ID`], [`HARDWARE_IDS`] or [`RELEASE_COUNTER`]
    pub field: &'static str,
    /// the value found (JSON)
    pub found: String,
    /// the type it must have
    pub rule: &'static str,
}

/// The release facts an image target's signed `custom` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCustom {
    /// `custom.hardware_id`
    pub hardware_id: Option<String>,
    /// `custom.hardware_ids`, in the signed order
    pub hardware_ids: Option<Vec<String>>,
    /// `custom.release_counter`
    pub release_counter: Option<u64>,
}

impl ImageCustom {
    /// Read `custom` of the image target `target` (the name is only for
    /// errors).
    pub fn read(target: &str, custom: Option<&Value>) -> Result<Self, ImageCustomError> {
        let err = |field, found: &Value, rule| ImageCustomError {
            target: target.to_owned(),
            field,
            found: found.to_string(),
            rule,
        };
        let get = |field| custom.and_then(|c| c.get(field));
        let hardware_id = get(HARDWARE_ID)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| err(HARDWARE_ID, v, "a string"))
            })
            .transpose()?;
        let hardware_ids = get(HARDWARE_IDS)
            .map(|v| {
                v.as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|h| h.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| err(HARDWARE_IDS, v, "an array of strings"))
            })
            .transpose()?;
        let release_counter = get(RELEASE_COUNTER)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| err(RELEASE_COUNTER, v, "an unsigned integer"))
            })
            .transpose()?;
        Ok(ImageCustom {
            hardware_id,
            hardware_ids,
            release_counter,
        })
    }

    /// [`Self::read`] of a target entry's `custom`.
    pub fn of_target(target: &str, entry: &TargetFile) -> Result<Self, ImageCustomError> {
        Self::read(target, entry.custom.as_ref())
    }

    /// The first signed hardware restriction that excludes `hardware_id`:
    /// the field and its value (JSON). `None`: the image is built for it
    /// (both `hardware_id` and `hardware_ids` must allow it when both are
    /// named).
    pub fn hardware_refusal(&self, hardware_id: &str) -> Option<(&'static str, String)> {
        if let Some(h) = &self.hardware_id {
            if h != hardware_id {
                return Some((HARDWARE_ID, Value::from(h.as_str()).to_string()));
            }
        }
        if let Some(hs) = &self.hardware_ids {
            if !hs.iter().any(|h| h == hardware_id) {
                return Some((HARDWARE_IDS, Value::from(hs.clone()).to_string()));
            }
        }
        None
    }

    /// Is the image built for `hardware_id`?
    pub fn supports(&self, hardware_id: &str) -> bool {
        self.hardware_refusal(hardware_id).is_none()
    }

    /// The hardware ids the image is built for: `None` when it names no
    /// restriction (any hardware); otherwise the ids every named field
    /// allows, which may be empty (no device accepts it).
    pub fn hardware(&self) -> Option<BTreeSet<String>> {
        let one = self.hardware_id.iter().cloned().collect::<BTreeSet<_>>();
        let many = self
            .hardware_ids
            .as_ref()
            .map(|hs| hs.iter().cloned().collect::<BTreeSet<_>>());
        match (&self.hardware_id, many) {
            (None, None) => None,
            (Some(_), None) => Some(one),
            (None, Some(m)) => Some(m),
            (Some(_), Some(m)) => Some(one.intersection(&m).cloned().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<ImageCustom, ImageCustomError> {
        ImageCustom::read("app", Some(&v))
    }

    #[test]
    fn absent_fields_restrict_nothing() {
        for c in [None, Some(json!({})), Some(json!(5)), Some(json!(["x"]))] {
            let ic = ImageCustom::read("app", c.as_ref()).unwrap();
            assert_eq!(ic, ImageCustom::default());
            assert!(ic.supports("any-hw"));
            assert_eq!(ic.hardware(), None);
        }
    }

    #[test]
    fn typed_fields_are_read() {
        let ic = read(
            json!({"hardware_id": "hw-a", "hardware_ids": ["hw-b", "hw-a"],
            "release_counter": 7, "other": {"x": 1}}),
        )
        .unwrap();
        assert_eq!(ic.hardware_id.as_deref(), Some("hw-a"));
        assert_eq!(
            ic.hardware_ids,
            Some(vec!["hw-b".to_owned(), "hw-a".to_owned()])
        );
        assert_eq!(ic.release_counter, Some(7));
        assert_eq!(ic.hardware(), Some(BTreeSet::from(["hw-a".to_owned()])));
    }

    /// A restriction of the wrong type is refused, not skipped: a reader
    /// that skipped `"hardware_ids": "hw-a"` would hand the image to any
    /// hardware.
    #[test]
    fn a_mistyped_field_is_an_error_not_absent() {
        for (bad, field) in [
            (json!({"hardware_id": 3}), HARDWARE_ID),
            (json!({"hardware_ids": "hw-a"}), HARDWARE_IDS),
            (json!({"hardware_ids": ["hw-a", 3]}), HARDWARE_IDS),
            (json!({"release_counter": "7"}), RELEASE_COUNTER),
            (json!({"release_counter": -1}), RELEASE_COUNTER),
            (json!({"release_counter": 1.5}), RELEASE_COUNTER),
            (json!({"release_counter": null}), RELEASE_COUNTER),
        ] {
            let e = read(bad.clone()).unwrap_err();
            assert_eq!((e.field, e.target.as_str()), (field, "app"), "{bad}");
            assert!(e.to_string().contains(&format!("custom.{field}")), "{e}");
        }
    }

    /// An image signed for other hardware is refused for this one; both
    /// named restrictions must allow it.
    #[test]
    fn hardware_restrictions_all_apply() {
        let ic = read(json!({"hardware_ids": ["hw-a", "hw-b"]})).unwrap();
        assert!(ic.supports("hw-b"));
        assert_eq!(
            ic.hardware_refusal("hw-c"),
            Some((HARDWARE_IDS, r#"["hw-a","hw-b"]"#.to_owned()))
        );
        let ic = read(json!({"hardware_id": "hw-a", "hardware_ids": ["hw-b"]})).unwrap();
        assert_eq!(
            ic.hardware_refusal("hw-b"),
            Some((HARDWARE_ID, r#""hw-a""#.to_owned()))
        );
        assert_eq!(
            ic.hardware_refusal("hw-a"),
            Some((HARDWARE_IDS, r#"["hw-b"]"#.to_owned()))
        );
        // and no hardware at all is what the director learns
        assert_eq!(ic.hardware(), Some(BTreeSet::new()));
        let ic = read(json!({"hardware_ids": []})).unwrap();
        assert!(!ic.supports("hw-a"));
        assert_eq!(ic.hardware(), Some(BTreeSet::new()));
    }
}
