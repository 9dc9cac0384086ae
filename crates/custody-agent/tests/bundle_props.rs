//! The bundle parser on untrusted bytes: never panics, and every bound it
//! accepts holds (payloads inside the file, header within its limit).

use std::collections::BTreeMap;

use custody_agent::bundle::{encode_files, write_bundle, Bundle, BundleHeader, MAX_HEADER_BYTES};
use proptest::prelude::*;

fn valid() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    std::fs::write(&p, b"payload bytes").unwrap();
    let out = dir.path().join("b");
    let header = BundleHeader {
        format: 1,
        created: 1,
        hardware_id: Some("board".into()),
        director: BTreeMap::new(),
        image_repository: "main".into(),
        image_metadata: encode_files(&[("1.root.json".to_owned(), b"{}".to_vec())].into()),
        payloads: vec![],
        log: BTreeMap::new(),
    };
    write_bundle(&out, header, &[("a/p".into(), p)]).unwrap();
    std::fs::read(&out).unwrap()
}

fn check(bytes: &[u8]) {
    if let Ok((h, start)) = Bundle::parse_bytes(bytes) {
        assert!(start <= bytes.len() as u64);
        assert!(start - 24 <= MAX_HEADER_BYTES);
        for p in &h.payloads {
            assert!(start + p.offset + p.length <= bytes.len() as u64);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn mutated_valid_bundles_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut b = valid();
        for (i, v) in edits {
            let n = b.len();
            b[i % n] = v;
        }
        let keep = cut % (b.len() + 1);
        check(&b[..keep]);
        check(&b);
    }
}

#[test]
fn valid_bundle_parses() {
    let b = valid();
    let (h, start) = Bundle::parse_bytes(&b).unwrap();
    assert_eq!(h.payloads.len(), 1);
    assert_eq!(&b[start as usize..], b"payload bytes");
}
