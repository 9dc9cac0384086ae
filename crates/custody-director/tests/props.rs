//! Property tests: bucket stability and uniformity; the wire parsers never
//! panic on arbitrary bytes and round-trip what the device side writes.
mod common;

use custody_director::policy::{bucket, RollbackAuthorization, BUCKETS};
use custody_director::wire::{EnrolmentRequest, SignedManifest, SignedRequest};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bucket_is_stable_and_in_range(seed in ".{0,40}", dev in "[0-9a-f]{64}") {
        let b = bucket(&seed, &dev);
        prop_assert!(b < BUCKETS);
        prop_assert_eq!(b, bucket(&seed, &dev));
    }

    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedManifest::from_bytes(&bytes);
        let _ = EnrolmentRequest::from_bytes(&bytes);
        let _ = SignedRequest::from_bytes(&bytes);
        let _ = RollbackAuthorization::from_bytes(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_json_shapes(v in arb_json(3)) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = SignedManifest::from_bytes(&bytes);
        let _ = EnrolmentRequest::from_bytes(&bytes);
        let _ = SignedRequest::from_bytes(&bytes);
        let wrapped = serde_json::to_vec(&serde_json::json!({"signed": v, "signatures": []})).unwrap();
        let _ = SignedManifest::from_bytes(&wrapped);
        let _ = RollbackAuthorization::from_bytes(&wrapped);
    }

    #[test]
    fn header_parser_never_panics(d in ".{0,80}", t in ".{0,30}", n in ".{0,80}", s in ".{0,200}", m in ".{0,20}", p in ".{0,100}") {
        let _ = SignedRequest::from_headers(&d, &t, &n, &s, &m, &p, vec![]);
    }

    #[test]
    fn manifest_round_trips(counter in any::<u64>(), rc in any::<u64>(), name in "[a-z0-9./-]{1,40}") {
        let (k, rec) = common::enrolled("hw");
        let m = SignedManifest::sign(common::manifest(&rec, counter, &name, rc), &k).unwrap();
        let back = SignedManifest::from_bytes(&m.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(&back.signed, &m.signed);
        prop_assert_eq!(back.signed_bytes(), m.signed_bytes());
    }

    #[test]
    fn request_round_trips(body in proptest::collection::vec(any::<u8>(), 0..256), path in "/[a-z0-9/]{0,40}") {
        let (k, _rec) = common::enrolled("hw");
        let nonce = custody_director::request::fresh_nonce().unwrap();
        let r = custody_director::request::sign_request(&k, "POST", &path, body, common::t0(), nonce).unwrap();
        let back = SignedRequest::from_bytes(&r.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }
}

proptest! {
    // each case hashes 4000 ids: fewer cases
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn buckets_are_uniform(seed in "[a-z0-9]{1,16}") {
        // 4000 devices into 10 deciles: each within ±25% of 400 (a chi-square
        // tail far beyond any honest hash); and a 10% stage covers 10% ± 2.5%.
        let mut deciles = [0u32; 10];
        let mut stage = 0u32;
        for i in 0..4000u32 {
            let b = bucket(&seed, &format!("{i:064x}"));
            deciles[(b / 1000) as usize] += 1;
            if b < 1000 { stage += 1; }
        }
        for d in deciles { prop_assert!((300..=500).contains(&d), "{deciles:?}"); }
        prop_assert!((300..=500).contains(&stage));
    }
}

fn arb_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("custody-manifest".to_owned()),
            Just("custody-enrolment".to_owned()),
            Just("a".repeat(64)),
            ".{0,20}"
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("signed".to_owned()),
                    Just("_type".to_owned()),
                    Just("wire_version".to_owned()),
                    Just("device_id".to_owned()),
                    Just("installed".to_owned()),
                    Just("signatures".to_owned()),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
