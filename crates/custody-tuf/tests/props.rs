//! Property tests: canonical JSON, path patterns, hash bins, parsers.

use custody_tuf::cjson::{canonical_bytes, parse_strict};
use custody_tuf::crypto::sha256_hex;
use custody_tuf::{path_matches_pattern, Metadata, Root, SuccinctRoles, Targets};
use proptest::prelude::*;
use serde_json::{Map, Value};
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// Strings without control characters: OLPC canonical JSON writes control
/// characters raw, so only those strings round-trip through a JSON parser.
/// Also NFC: the strict parser rejects other strings (see cjson docs).
fn json_string() -> impl Strategy<Value = String> {
    "[^\\x00-\\x1f]{0,10}".prop_map(|s| s.nfc().collect())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #[test]
    fn canonical_roundtrip_and_idempotent(v in json_value()) {
        let c = canonical_bytes("p", &v).unwrap();
        let back = parse_strict("p", &c).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(canonical_bytes("p", &back).unwrap(), c);
    }

    #[test]
    fn canonical_key_order_is_by_escaped_bytes(kv in prop::collection::btree_map(any::<String>(), any::<i64>(), 0..8)) {
        let kv: std::collections::BTreeMap<String, i64> = kv.into_iter().filter(|(k, _)| is_nfc(k)).collect();
        // Write the object with keys in reverse order, then canonicalise.
        let mut text = String::from("{");
        for (i, (k, v)) in kv.iter().rev().enumerate() {
            if i > 0 { text.push(','); }
            text.push_str(&serde_json::to_string(k).unwrap());
            text.push(':');
            text.push_str(&v.to_string());
        }
        text.push('}');
        let parsed = parse_strict("p", text.as_bytes()).unwrap();
        let c = String::from_utf8(canonical_bytes("p", &parsed).unwrap()).unwrap();
        // olpc-cjson's rule: members sorted by the escaped key's UTF-8 bytes.
        let mut members: Vec<(String, i64)> = kv.iter().map(|(k, v)| (olpc_string(k), *v)).collect();
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let body: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        prop_assert_eq!(c, format!("{{{}}}", body.join(",")));
    }

    #[test]
    fn canonical_escapes_only_quote_and_backslash(s in any::<String>()) {
        let nfc: String = s.nfc().collect();
        let c = String::from_utf8(canonical_bytes("p", &Value::String(s.clone())).unwrap()).unwrap();
        // olpc-cjson NFC-normalises, escapes only `"` and `\`
        prop_assert_eq!(c, olpc_string(&nfc));
        // and the strict parser refuses non-NFC input outright
        let text = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(parse_strict("p", text.as_bytes()).is_ok(), is_nfc(&s));
    }

    #[test]
    fn strict_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_strict("p", &bytes);
        let _ = Metadata::<Root>::from_bytes("root", &bytes);
        let _ = Metadata::<Targets>::from_bytes("targets", &bytes);
    }

    #[test]
    fn star_never_crosses_slash(a in "[a-z]{0,5}", b in "[a-z]{0,5}", pre in "[a-z]{0,3}") {
        let pattern = format!("{pre}*");
        let target = format!("{pre}{a}/{b}");
        prop_assert!(!path_matches_pattern(&target, &pattern));
        let single = format!("{pre}{a}");
        prop_assert!(path_matches_pattern(&single, &pattern));
    }

    #[test]
    fn literal_pattern_matches_itself_only(p in "[a-z0-9._-]{1,8}(/[a-z0-9._-]{1,8}){0,3}", q in "[a-z0-9._-]{1,8}(/[a-z0-9._-]{1,8}){0,3}") {
        prop_assert!(path_matches_pattern(&p, &p));
        prop_assert_eq!(path_matches_pattern(&q, &p), p == q);
    }

    #[test]
    fn segment_counts_must_match(segs in prop::collection::vec("[a-z]{1,4}", 1..6), extra in 1usize..3) {
        let target = segs.join("/");
        let stars = vec!["*"; segs.len()].join("/");
        prop_assert!(path_matches_pattern(&target, &stars));
        let more = vec!["*"; segs.len() + extra].join("/");
        prop_assert!(!path_matches_pattern(&target, &more));
        if segs.len() > 1 {
            let fewer = vec!["*"; segs.len() - 1].join("/");
            prop_assert!(!path_matches_pattern(&target, &fewer));
        }
    }

    #[test]
    fn every_target_maps_to_exactly_one_bin(path in any::<String>(), bit_length in 1u32..=10) {
        let s = bins(bit_length);
        let name = s.role_for_target(&path);
        prop_assert!(s.is_bin(&name));
        let matching = (0..s.bin_count()).filter(|i| s.bin_name(*i) == name).count();
        prop_assert_eq!(matching, 1);
        // consistent with the hash prefix: the index is the leading bits of sha256(path)
        let h = sha256_hex(path.as_bytes());
        let lead = u64::from_str_radix(&h[..8], 16).unwrap();
        prop_assert_eq!(s.bin_for_target(&path), lead >> (32 - bit_length));
        if bit_length % 4 == 0 {
            prop_assert_eq!(&name[name.len() - (bit_length as usize / 4)..], &h[..bit_length as usize / 4]);
        }
    }

    #[test]
    fn bin_names_are_exactly_the_bins(bit_length in 1u32..=12, i in any::<u64>()) {
        let s = bins(bit_length);
        let n = s.bin_count();
        prop_assert!(s.is_bin(&s.bin_name(i % n)));
        prop_assert!(!s.is_bin(&s.bin_name(n + (i % 1000))));
        prop_assert_eq!(s.bin_name(0).len(), "bin-".len() + (bit_length as usize).div_ceil(4));
    }
}

fn bins(bit_length: u32) -> SuccinctRoles {
    serde_json::from_value(serde_json::json!({"keyids": [], "threshold": 1, "bit_length": bit_length, "name_prefix": "bin"})).unwrap()
}

fn olpc_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
