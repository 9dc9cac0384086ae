//! Differential test of custody's canonical JSON writer against the
//! reference, the `olpc-cjson` crate: the same bytes for every generated
//! JSON value (unicode, NFC and non-NFC strings, escapes, control
//! characters, keys that sort differently with and without their quotes,
//! the integer extremes), for typed TUF metadata with unknown fields, and
//! for every real-world document in ../shared/fixtures. Floats are refused
//! by both, and ours names the field.

use std::path::{Path, PathBuf};

use custody_tuf::cjson::canonical_bytes;
use proptest::prelude::*;
use serde::Serialize;
use serde_json::{json, Map, Value};

fn reference<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    v.serialize(&mut ser).map_err(|e| e.to_string())?;
    Ok(buf)
}

fn same<T: Serialize + ?Sized>(v: &T) -> Result<(), TestCaseError> {
    let ours = canonical_bytes("t", v).map_err(|e| e.to_string());
    let theirs = reference(v);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => prop_assert_eq!(
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b),
            "bytes differ"
        ),
        (Err(_), Err(_)) => {}
        _ => prop_assert!(false, "ours {:?} vs reference {:?}", ours, theirs),
    }
    Ok(())
}

/// Characters where canonical forms go wrong: escapes, raw control
/// characters, combining marks (NFC), composed letters, astral planes, and
/// the bytes around `"` (0x22) that decide key order.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'e'),
        1 => Just('"'),
        1 => Just('\\'),
        1 => Just('!'),
        1 => Just(' '),
        1 => Just('#'),
        1 => prop::char::range('\u{0}', '\u{1f}'),
        1 => Just('\u{7f}'),
        1 => Just('\u{301}'),
        1 => Just('\u{327}'),
        1 => Just('\u{e9}'),
        1 => Just('\u{212b}'),
        1 => Just('\u{1100}'),
        1 => Just('\u{1161}'),
        1 => Just('\u{1f600}'),
        1 => any::<char>(),
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..8).prop_map(|v| v.into_iter().collect())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(i64::MIN)),
        Just(Value::from(u64::MAX)),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A struct whose fields arrive unsorted, with a flattened map that may
/// repeat a field name (of equal keys the last one wins in both).
#[derive(Serialize)]
struct Unsorted {
    zeta: u64,
    alpha: String,
    #[serde(rename = "a!")]
    bang: Vec<i64>,
    a: Option<bool>,
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, Value>,
}

#[derive(Serialize)]
enum Shapes {
    Unit,
    New(String),
    Tuple(u8, String),
    Struct { z: u8, a: String },
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn same_bytes_as_olpc_for_any_json_value(v in json_value()) {
        same(&v)?;
    }

    #[test]
    fn same_bytes_for_unsorted_structs_flatten_and_duplicates(
        zeta in any::<u64>(),
        alpha in tricky_string(),
        bang in prop::collection::vec(any::<i64>(), 0..4),
        a in any::<Option<bool>>(),
        rest in prop::collection::btree_map(
            prop_oneof![Just("a".to_owned()), Just("zeta".to_owned()), tricky_string()],
            json_value(),
            0..4,
        ),
    ) {
        same(&Unsorted { zeta, alpha, bang, a, rest })?;
    }

    #[test]
    fn same_bytes_for_typed_targets_metadata(
        names in prop::collection::btree_map(tricky_string(), (any::<u64>(), json_value()), 0..6),
        unknown in prop::collection::btree_map("x-[a-z]{1,6}", json_value(), 0..3),
        version in 1u64..u64::MAX,
    ) {
        let mut targets = Map::new();
        for (name, (length, custom)) in names {
            targets.insert(name, json!({
                "length": length,
                "hashes": {"sha256": "ab".repeat(32)},
                "custom": {"release": custom},
            }));
        }
        let mut signed = json!({
            "_type": "targets",
            "spec_version": "1.0.31",
            "version": version,
            "expires": "2030-01-01T00:00:00Z",
            "targets": targets,
        });
        if let Value::Object(m) = &mut signed {
            m.extend(unknown.into_iter());
        }
        // Only documents custody accepts are typed (NFC, no floats).
        let doc = json!({"signed": signed, "signatures": []});
        if let Ok(md) = custody_tuf::Metadata::<custody_tuf::Targets>::from_bytes(
            "targets",
            &serde_json::to_vec(&doc).unwrap(),
        ) {
            same(&md.signed)?;
        }
        same(&signed)?;
    }
}

#[test]
fn enums_in_every_shape() {
    for s in [
        Shapes::Unit,
        Shapes::New("x".into()),
        Shapes::Tuple(1, "\"".into()),
        Shapes::Struct {
            z: 1,
            a: "b".into(),
        },
    ] {
        same(&s).unwrap();
    }
    same(&vec![(1u8, 'c'), (2, '\u{301}')]).unwrap();
    same(&serde_bytes_like()).unwrap();
}

/// Map keys that are not strings: integers are quoted as serde_json does;
/// keys it cannot write as a JSON string are refused by both.
#[test]
fn non_string_map_keys_as_the_reference() {
    use std::collections::BTreeMap;
    same(&BTreeMap::from([
        (10u32, "a"),
        (2, "b"),
        (-1i64 as u32, "c"),
    ]))
    .unwrap();
    same(&BTreeMap::from([(-5i64, 1), (3, 2)])).unwrap();
    same(&BTreeMap::from([('z', 1), ('"', 2)])).unwrap();
    same(&BTreeMap::from([(true, 1), (false, 2)])).unwrap();
    same(&BTreeMap::from([((1u8, 2u8), 1)])).unwrap();
    let e = canonical_bytes("t", &BTreeMap::from([((1u8, 2u8), 1)])).unwrap_err();
    assert!(e.to_string().contains("object keys must be"), "{e}");
}

/// `serialize_bytes` (serde_json: an array of numbers).
fn serde_bytes_like() -> impl Serialize {
    struct B;
    impl Serialize for B {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&[0, 1, 255])
        }
    }
    B
}

#[test]
fn keys_sort_with_their_quotes_as_olpc_does() {
    let v = json!({"a": 1, "a!": 2, "a ": 3, "a\"": 4, "b": 5});
    let c = canonical_bytes("t", &v).unwrap();
    assert_eq!(c, reference(&v).unwrap());
    // "a " and "a!" come before "a" because their bytes after `a` (0x20,
    // 0x21) are below the closing quote (0x22)
    assert!(String::from_utf8(c)
        .unwrap()
        .starts_with("{\"a \":3,\"a!\":2,\"a\":1"));
}

#[test]
fn non_nfc_strings_are_normalised_like_the_reference() {
    let v = json!({"cafe\u{301}": "e\u{301}\"\u{301}"});
    let c = canonical_bytes("t", &v).unwrap();
    assert_eq!(c, reference(&v).unwrap());
    assert!(String::from_utf8(c).unwrap().contains("caf\u{e9}"));
}

#[test]
fn a_float_is_refused_naming_the_field() {
    let v = json!({"signed": {"targets": {"fw bin": {"custom": {"ratio": 0.5}}}}});
    let e = canonical_bytes("targets", &v).unwrap_err().to_string();
    assert!(e.contains("signed.targets[\"fw bin\"].custom.ratio"), "{e}");
    assert!(e.contains("floating point"), "{e}");
    assert!(reference(&v).is_err());
    let e = canonical_bytes("t", &json!([1, [2, 3.5]]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1][1]"), "{e}");
}

/// Every JSON document of the real-world fixtures, whole and typed.
#[test]
fn same_bytes_for_every_fixture_document() {
    let dirs = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
        PathBuf::from("/work/shared/fixtures"),
    ];
    let Some(dir) = dirs.iter().find(|d| d.is_dir()) else {
        panic!("fixtures not found in {dirs:?}");
    };
    let mut files = Vec::new();
    collect(dir, &mut files);
    assert!(
        files.len() >= 10,
        "{} JSON files in {}",
        files.len(),
        dir.display()
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        same(&v).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let Some(signed) = v.get("signed") {
            same(signed).unwrap_or_else(|e| panic!("{} signed: {e}", f.display()));
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}
