//! Property tests for the text and binary parsers: round trips, and no
//! panic on arbitrary input.

use custody_log::tile::{check_bundle_against_tile, encode_entry_bundle, parse_entry_bundle};
use custody_log::{
    leaf_hash, parse_tile_path, BundleId, Checkpoint, Cosigner, LogVerifier, Note, NoteSigner,
    TileId, TilePath, VerifierKey, WitnessPolicy,
};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    // Non-empty, no control characters; includes non-ASCII.
    "[a-zA-Z0-9./:+ \u{e9}\u{2014}-]{1,40}"
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (
        line(),
        any::<u64>(),
        any::<[u8; 32]>(),
        prop::collection::vec(line(), 0..4),
    )
        .prop_map(|(origin, size, root, extensions)| Checkpoint {
            origin,
            size,
            root,
            extensions,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn checkpoint_text_round_trip(cp in checkpoint()) {
        let text = cp.to_text();
        prop_assert_eq!(Checkpoint::parse_text(&text).unwrap(), cp);
    }

    #[test]
    fn signed_checkpoint_round_trip(cp in checkpoint(), seed in any::<[u8; 32]>(), ts in 0u64..=i64::MAX as u64) {
        let origin = cp.origin.clone();
        let name: String = origin.chars().filter(|c| !c.is_whitespace() && *c != '+').collect();
        prop_assume!(!name.is_empty());
        let signer = NoteSigner::from_seed(&name, seed).unwrap();
        let w = Cosigner::from_seed("w.example", seed).unwrap();
        let mut note = cp.sign(&signer).unwrap();
        note.add_signature(w.cosign(note.text(), ts).unwrap());
        let bytes = note.to_bytes();
        let parsed = Note::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &note);
        prop_assert_eq!(parsed.to_bytes(), bytes.clone());
        let v = LogVerifier::new(origin, signer.verifier_key()).unwrap()
            .with_witness_policy(WitnessPolicy::new(vec![w.verifier_key()], 1).unwrap());
        let got = v.verify(&bytes).unwrap();
        prop_assert_eq!(got.checkpoint, cp);
        prop_assert_eq!(got.cosignatures[0].timestamp, Some(ts));
        // vkey strings round-trip.
        let vk = signer.verifier_key().to_vkey();
        prop_assert_eq!(VerifierKey::parse(&vk).unwrap().to_vkey(), vk);
        let wk = w.verifier_key().to_vkey();
        prop_assert_eq!(VerifierKey::parse(&wk).unwrap(), w.verifier_key());
        prop_assert_eq!(NoteSigner::parse_private_key(&signer.to_private_key()).unwrap().verifier_key(), signer.verifier_key());
        prop_assert_eq!(Cosigner::parse_private_key(&w.to_private_key()).unwrap().verifier_key(), w.verifier_key());
    }

    #[test]
    fn signed_checkpoint_single_byte_change_fails(cp in checkpoint(), pos in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let signer = NoteSigner::from_seed("log.example", [5; 32]).unwrap();
        let mut cp = cp;
        cp.origin = "log.example".into();
        let bytes = cp.sign(&signer).unwrap().to_bytes();
        let mut m = bytes.clone();
        let i = pos.index(m.len());
        m[i] = m[i].wrapping_add(delta);
        let v = LogVerifier::new("log.example", signer.verifier_key()).unwrap();
        prop_assert!(v.verify(&m).is_err(), "byte {} changed and still verified", i);
    }

    #[test]
    fn parsers_never_panic_on_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Note::parse(&data);
        let _ = parse_entry_bundle(&data);
        let _ = check_bundle_against_tile(&[&data], &data);
        if let Ok(s) = std::str::from_utf8(&data) {
            let _ = Checkpoint::parse_text(s);
            let _ = parse_tile_path(s);
            let _ = VerifierKey::parse(s);
            let _ = NoteSigner::parse_private_key(s);
        }
        let key = NoteSigner::from_seed("log.example", [5; 32]).unwrap().verifier_key();
        let _ = LogVerifier::new("log.example", key).unwrap().verify(&data);
    }

    #[test]
    fn parsers_never_panic_on_near_valid_text(
        lines in prop::collection::vec("[\u{2014} a-zA-Z0-9+/=\n.x]{0,60}", 0..8),
    ) {
        let s = lines.join("\n");
        let _ = Note::parse(s.as_bytes());
        let _ = Checkpoint::parse_text(&s);
        let _ = parse_tile_path(&s);
        let _ = parse_tile_path(&format!("tile/{s}"));
        let _ = VerifierKey::parse(&s);
    }

    #[test]
    fn tile_paths_round_trip(level in 0u8..=63, index in any::<u64>(), width in 1u16..=256, entries in any::<bool>()) {
        let (path, want) = if entries {
            let b = BundleId::new(index, width).unwrap();
            (b.path(), TilePath::Entries(b))
        } else {
            let t = TileId::new(level, index, width).unwrap();
            (t.path(), TilePath::Tile(t))
        };
        prop_assert_eq!(parse_tile_path(&path).unwrap(), want);
    }

    #[test]
    fn entry_bundles_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..=256)) {
        let bundle = encode_entry_bundle(&entries).unwrap();
        let parsed = parse_entry_bundle(&bundle).unwrap();
        prop_assert_eq!(parsed.len(), entries.len());
        for (a, b) in parsed.iter().zip(&entries) {
            prop_assert_eq!(*a, b.as_slice());
        }
        // Against the matching level-0 tile.
        let tile: Vec<u8> = entries.iter().flat_map(|e| leaf_hash(e)).collect();
        prop_assert!(check_bundle_against_tile(&parsed, &tile).is_ok());
        if !bundle.is_empty() {
            prop_assert!(parse_entry_bundle(&bundle[..bundle.len() - 1]).is_err());
        }
    }
}

#[test]
fn entry_bundle_limits() {
    assert!(encode_entry_bundle(&[vec![0u8; 65_536]]).is_err());
    assert!(encode_entry_bundle(&vec![vec![0u8]; 257]).is_err());
    let too_many = vec![0u8; 2 * 257]; // 257 empty entries
    assert!(parse_entry_bundle(&too_many).is_err());
    assert!(parse_entry_bundle(&[0x00]).is_err());
    assert!(parse_entry_bundle(&[0x00, 0x02, 0xaa]).is_err());
    assert_eq!(parse_entry_bundle(&[]).unwrap().len(), 0);
    let bundle = encode_entry_bundle(&[b"a".as_slice(), b"b"]).unwrap();
    let parsed = parse_entry_bundle(&bundle).unwrap();
    let mut tile: Vec<u8> = [leaf_hash(b"a"), leaf_hash(b"b")].concat();
    assert!(check_bundle_against_tile(&parsed, &tile).is_ok());
    tile[40] ^= 1;
    assert!(check_bundle_against_tile(&parsed, &tile).is_err());
    assert!(check_bundle_against_tile(&parsed[..1], &tile).is_err());
}
