//! Parsers never panic on arbitrary input, and round-trip what they parse.

mod common;

use std::collections::BTreeMap;

use common::*;
use custody_provenance::{
    evaluate, Decision, DsseSignature, Envelope, Limits, Policy, Provenance, Statement,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn envelope_strategy() -> impl Strategy<Value = Envelope> {
    (
        text(),
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(
            (
                prop::option::of(text()),
                prop::collection::vec(any::<u8>(), 0..80),
            ),
            0..4,
        ),
    )
        .prop_map(|(payload_type, payload, sigs)| Envelope {
            payload_type,
            payload,
            signatures: sigs
                .into_iter()
                .map(|(keyid, sig)| DsseSignature { keyid, sig })
                .collect(),
        })
}

fn statement_value() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            (
                prop::option::of(text()),
                prop::collection::vec(any::<u8>(), 32),
                prop::collection::btree_map("x-[a-z]{1,6}", json_value(), 0..2),
            ),
            1..4,
        ),
        text(),
        prop::option::of(json_value()),
        prop::collection::btree_map("x-[a-z]{1,6}", json_value(), 0..3),
    )
        .prop_map(|(subjects, ptype, predicate, unknown)| {
            let subject: Vec<Value> = subjects
                .into_iter()
                .map(|(name, d, extra)| {
                    let mut o = serde_json::Map::new();
                    if let Some(n) = name {
                        o.insert("name".into(), json!(n));
                    }
                    o.insert("digest".into(), json!({"sha256": hex::encode(d)}));
                    o.extend(extra);
                    Value::Object(o)
                })
                .collect();
            let mut o = serde_json::Map::new();
            o.insert("_type".into(), json!("https://in-toto.io/Statement/v1"));
            o.insert("subject".into(), Value::Array(subject));
            o.insert("predicateType".into(), json!(format!("p{ptype}")));
            if let Some(p) = predicate.filter(|p| !p.is_null()) {
                o.insert("predicate".into(), p);
            }
            o.extend(unknown);
            Value::Object(o)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::parse(&bytes, &Limits::default());
    }

    #[test]
    fn statement_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(st) = Statement::parse(&bytes, &Limits::default()) {
            if let Some(p) = &st.predicate {
                let _ = Provenance::from_value(p).map(|p| p.source());
            }
        }
    }

    #[test]
    fn envelope_round_trips(e in envelope_strategy()) {
        let back = Envelope::parse(&e.to_json(), &Limits::default()).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn statement_round_trips(v in statement_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let st = Statement::parse(&bytes, &Limits::default()).unwrap();
        let again = serde_json::to_vec(&st).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Value>(&again).unwrap(), v);
        prop_assert_eq!(Statement::parse(&again, &Limits::default()).unwrap(), st);
    }

    #[test]
    fn provenance_round_trips_and_keeps_unknown_fields(
        extra in prop::collection::btree_map("x-[a-z]{1,6}", json_value(), 0..3),
        ext in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..3),
    ) {
        let mut p = statement(&"0".repeat(64))["predicate"].clone();
        for (k, v) in &extra {
            p[k] = v.clone();
            p["buildDefinition"][k] = v.clone();
            p["runDetails"]["builder"][k] = v.clone();
        }
        for (k, v) in &ext {
            p["buildDefinition"]["externalParameters"][k] = v.clone();
        }
        let prov = Provenance::from_value(&p).unwrap();
        let again = serde_json::to_value(&prov).unwrap();
        prop_assert_eq!(Provenance::from_value(&again).unwrap(), prov);
        for k in extra.keys() {
            prop_assert!(again.get(k).is_some() && again["runDetails"]["builder"].get(k).is_some());
        }
    }

    /// Any single-byte change to a signed envelope is refused, unless it only
    /// touched an unsigned part (a keyid hint): then the signed content is
    /// unchanged. Never a panic.
    #[test]
    fn mutated_envelope_never_accepted_with_other_content(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        thread_local! {
            static FIX: (Policy, Vec<u8>, Vec<u8>) = {
                let s = Signer::new();
                let policy = Policy::from_toml("t", &policy_toml(&[("ci", &s)], 1)).unwrap();
                let art = b"artifact".to_vec();
                let env = envelope(&statement(&sha256_hex(&art)), &[&s]);
                (policy, art, env)
            };
        }
        FIX.with(|(policy, art, env)| {
            let mut m = env.clone();
            let i = pos.index(m.len());
            m[i] = byte;
            let d = BTreeMap::from([("sha256".to_owned(), sha256_hex(art))]);
            if let Ok(Decision::Attested(_)) = evaluate(policy, "firmware/a", &d, Some(&m)) {
                let orig = Envelope::parse(env, &Limits::default()).unwrap();
                let got = Envelope::parse(&m, &Limits::default()).unwrap();
                assert_eq!((orig.payload_type, orig.payload), (got.payload_type, got.payload));
            }
        });
    }
}
