//! Known-answer tests: RFC 6962 / RFC 9162 Merkle vectors (the 8-leaf set
//! used by transparency-dev/merkle and certificate-transparency-go), the Go
//! `sumdb/note` reference key and note, and the C2SP spec examples.

use custody_log::note::{key_id, KeyType};
use custody_log::tile::{new_tiles, parse_tile_path};
use custody_log::{
    consistency_proof, inclusion_proof, leaf_hash, root_at, root_from_leaf_hashes,
    verify_consistency, verify_inclusion, Appender, BundleId, Checkpoint, Hash, MemoryStore, Note,
    NoteError, NoteSigner, TileId, TilePath, VerifierKey, EMPTY_ROOT,
};

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof), 0-based indices.
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

fn vector_store() -> (MemoryStore, Vec<Hash>) {
    let leaves: Vec<Vec<u8>> = LEAVES.iter().map(|l| hex::decode(l).unwrap()).collect();
    let mut app = Appender::open(MemoryStore::new()).unwrap();
    app.append_entries(&leaves).unwrap();
    let hashes = leaves.iter().map(|l| leaf_hash(l)).collect();
    (app.into_store(), hashes)
}

#[test]
fn empty_tree_root_is_sha256_of_empty_string() {
    assert_eq!(
        EMPTY_ROOT,
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(root_at(&MemoryStore::new(), 0).unwrap(), EMPTY_ROOT);
    assert_eq!(
        Appender::open(MemoryStore::new()).unwrap().root(),
        EMPTY_ROOT
    );
}

#[test]
fn rfc6962_roots_for_every_prefix() {
    let (store, hashes) = vector_store();
    for (i, want) in ROOTS.iter().enumerate() {
        let size = i as u64 + 1;
        assert_eq!(
            root_at(&store, size).unwrap(),
            h(want),
            "root of size {size}"
        );
        assert_eq!(root_from_leaf_hashes(&hashes[..=i]), h(want));
    }
    // Incremental appends reproduce every root too.
    let mut app = Appender::open(MemoryStore::new()).unwrap();
    for (i, l) in LEAVES.iter().enumerate() {
        let r = app.append_entries(&[hex::decode(l).unwrap()]).unwrap();
        assert_eq!(r.first_index, i as u64);
        assert_eq!(r.root, h(ROOTS[i]));
    }
}

#[test]
fn rfc6962_inclusion_proofs() {
    let (store, hashes) = vector_store();
    for (index, size, want) in inclusion_vectors() {
        let got = inclusion_proof(&store, index, size).unwrap();
        assert_eq!(got, want, "inclusion proof ({index}, {size})");
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&hashes[index as usize], index, size, &want, &root).unwrap();
    }
}

#[test]
fn rfc6962_consistency_proofs() {
    let (store, _) = vector_store();
    for (old, new, want) in consistency_vectors() {
        let got = consistency_proof(&store, old, new).unwrap();
        assert_eq!(got, want, "consistency proof ({old}, {new})");
        let r1 = h(ROOTS[old as usize - 1]);
        let r2 = h(ROOTS[new as usize - 1]);
        verify_consistency(old, new, &r1, &r2, &want).unwrap();
    }
}

#[test]
fn go_verifier_edge_cases() {
    // Cases from transparency-dev/merkle TestVerifyConsistency.
    let r1 = [1u8; 32];
    let r2 = [2u8; 32];
    // transparency-dev accepts any root for size 0; custody requires the
    // empty-tree root there (issue #13): a "size 0" tree with another root
    // is no tree at all, and 0 -> 0 with two roots is a fork.
    assert!(verify_consistency(0, 0, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &r1, &r1, &[]).is_err());
    assert!(verify_consistency(0, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).is_ok());
    assert!(verify_consistency(0, 1, &EMPTY_ROOT, &r2, &[]).is_ok());
    assert!(verify_consistency(1, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 1, &r2, &r2, &[]).is_ok());
    assert!(verify_consistency(1, 0, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(2, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 2, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[EMPTY_ROOT]).is_err());
    assert!(verify_consistency(0, 1, &EMPTY_ROOT, &EMPTY_ROOT, &[EMPTY_ROOT]).is_err());
    assert!(verify_consistency(1, 1, &EMPTY_ROOT, &EMPTY_ROOT, &[EMPTY_ROOT]).is_err());
    // TestVerifyInclusion: empty proofs for impossible positions.
    let some = [0xabu8; 32];
    for (index, size) in [(0, 0), (1, 0), (2, 1), (1, 1)] {
        assert!(verify_inclusion(&some, index, size, &[], &EMPTY_ROOT).is_err());
    }
    // Single entry: root == leaf hash, empty proof.
    let leaf = leaf_hash(b"data");
    assert!(verify_inclusion(&leaf, 0, 1, &[], &leaf).is_ok());
    assert!(verify_inclusion(&leaf, 0, 1, &[], &some).is_err());
}

#[test]
fn go_corruption_probes_fail() {
    // corruptInclusionProof / corruptConsistencyProof from transparency-dev/merkle.
    let (_, hashes) = vector_store();
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, proof) in inclusion_vectors().into_iter().skip(1) {
        let root = h(ROOTS[size as usize - 1]);
        let leaf = hashes[index as usize];
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index.wrapping_sub(1), size, root, leaf, proof.clone()),
            (index + 1, size, root, leaf, proof.clone()),
            (index ^ 2, size, root, leaf, proof.clone()),
            (index, size * 2, root, leaf, proof.clone()),
            (index, size / 2, root, leaf, proof.clone()),
            (index, size, root, leaf_hash(b"WrongLeaf"), proof.clone()),
            (index, size, EMPTY_ROOT, leaf, proof.clone()),
            (index, size, some, leaf, proof.clone()),
            (
                index,
                size,
                root,
                leaf,
                [proof.clone(), vec![root]].concat(),
            ),
            (
                index,
                size,
                root,
                leaf,
                [vec![root], proof.clone()].concat(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 8;
            probes.push((index, size, root, leaf, p));
        }
        if !proof.is_empty() {
            probes.push((index, size, root, leaf, proof[..proof.len() - 1].to_vec()));
        }
        if proof.len() > 1 {
            let p = [vec![proof[0], some], proof[1..].to_vec()].concat();
            probes.push((index, size, root, leaf, p));
        }
        for (i, (pi, ps, pr, pl, pp)) in probes.into_iter().enumerate() {
            assert!(
                verify_inclusion(&pl, pi, ps, &pp, &pr).is_err(),
                "probe {i} for ({index}, {size}) verified"
            );
        }
    }
    for (old, new, proof) in consistency_vectors().into_iter().skip(1) {
        let r1 = h(ROOTS[old as usize - 1]);
        let r2 = h(ROOTS[new as usize - 1]);
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, new, r1, r2, proof.clone()),
            (old + 1, new, r1, r2, proof.clone()),
            (old ^ 2, new, r1, r2, proof.clone()),
            (old, new * 2, r1, r2, proof.clone()),
            (old, new / 2, r1, r2, proof.clone()),
            (old, new, some, r2, proof.clone()),
            (old, new, r1, some, proof.clone()),
            (old, new, r2, r1, proof.clone()),
            (old, new, r1, r2, vec![]),
            (old, new, r1, r2, [proof.clone(), vec![r1]].concat()),
            (old, new, r1, r2, [proof.clone(), vec![r2]].concat()),
            (old, new, r1, r2, [vec![r1], proof.clone()].concat()),
            (old, new, r1, r2, [vec![r2], proof.clone()].concat()),
            (old, new, r1, r2, [vec![proof[0]], proof.clone()].concat()),
            (old, new, r1, r2, proof[..proof.len() - 1].to_vec()),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 16;
            probes.push((old, new, r1, r2, p));
        }
        for (i, (a, b, ra, rb, p)) in probes.into_iter().enumerate() {
            assert!(
                verify_consistency(a, b, &ra, &rb, &p).is_err(),
                "probe {i} for ({old}, {new}) verified"
            );
        }
    }
}

#[test]
fn roots_match_brute_force_for_all_sizes_up_to_2000() {
    let leaves: Vec<Hash> = (0u32..2000).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut app = Appender::open(MemoryStore::new()).unwrap();
    for size in 0..=2000usize {
        let want = root_from_leaf_hashes(&leaves[..size]);
        assert_eq!(app.root(), want, "appender root at size {size}");
        assert_eq!(
            root_at(app.store(), size as u64).unwrap(),
            want,
            "root_at {size}"
        );
        if size < 2000 {
            app.append_leaf_hashes(&leaves[size..=size]).unwrap();
        }
    }
    // Roots of past sizes stay available from the final store.
    for size in 0..=2000usize {
        assert_eq!(
            root_at(app.store(), size as u64).unwrap(),
            root_from_leaf_hashes(&leaves[..size])
        );
    }
}

// ---- signed notes -------------------------------------------------------

const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn go_sumdb_note_reference_vector() {
    let vkey = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(vkey.name(), "PeterNeumann");
    assert_eq!(vkey.key_id(), 0xc74f20a3);
    assert_eq!(vkey.key_type(), KeyType::Ed25519);
    assert_eq!(vkey.to_vkey(), GO_VKEY);

    let signer = NoteSigner::parse_private_key(GO_SKEY).unwrap();
    assert_eq!(signer.to_private_key(), GO_SKEY);
    assert_eq!(signer.verifier_key(), vkey);

    let mut note = Note::new(GO_TEXT).unwrap();
    note.add_signature(signer.sign(GO_TEXT).unwrap());
    let msg = format!("{GO_TEXT}\n{GO_SIG_LINE}");
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), msg);

    let parsed = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(parsed.text(), GO_TEXT);
    let v = parsed.verify(std::slice::from_ref(&vkey)).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].name, "PeterNeumann");
}

#[test]
fn go_vkey_manglings_rejected() {
    // Every proper substring and every single-byte change must fail.
    let b = GO_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
        }
    }
    // Wrong key length (hash adjusted) and unknown algorithm (hash adjusted), from Go.
    assert!(VerifierKey::parse(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    )
    .is_err());
    assert!(VerifierKey::parse(
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )
    .is_err());
}

#[test]
fn malformed_notes_rejected() {
    let good = format!("{GO_TEXT}\n{GO_SIG_LINE}");
    let cases: Vec<(String, &str)> = vec![
        (GO_TEXT.to_string(), "no signature block"),
        (format!("{GO_TEXT}\n"), "empty signature block"),
        (
            format!("{GO_TEXT}\n{}", GO_SIG_LINE.trim_end()),
            "no final newline",
        ),
        (format!("{GO_TEXT}\n{GO_SIG_LINE}\n"), "trailing blank line"),
        (good.replace('\u{2014}', "-"), "hyphen instead of em dash"),
        (good.replace("\u{2014} ", "\u{2014}"), "no space after dash"),
        (
            good.replace("PeterNeumann ", "Peter+Neumann "),
            "plus in name",
        ),
        (
            good.replace("PeterNeumann ", "Peter\u{a0}Neumann "),
            "unicode space in name",
        ),
        (good.replace("PeterNeumann ", " "), "empty name"),
        (good.replace("AM=", "AM"), "missing padding"),
        (good.replace("AM=", "AN="), "non-canonical trailing bits"),
        (good.replace("x08go", "x08 go"), "space in base64"),
        (
            good.replace("cryptography", "crypto\tgraphy"),
            "tab in text",
        ),
        (
            good.replace("cryptography", "crypto\rgraphy"),
            "carriage return",
        ),
        (
            format!("{GO_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            "3-byte signature",
        ),
        (
            format!("{GO_TEXT}\n\u{2014} PeterNeumann AAAAAA==\n"),
            "4-byte signature",
        ),
    ];
    for (msg, what) in cases {
        assert!(Note::parse(msg.as_bytes()).is_err(), "accepted: {what}");
    }
    let mut bad_utf8 = good.clone().into_bytes();
    bad_utf8[3] = 0xff;
    assert!(matches!(
        Note::parse(&bad_utf8),
        Err(NoteError::NotUtf8 { .. })
    ));
    // Size and signature count limits.
    let huge = vec![b'a'; custody_log::note::MAX_NOTE_SIZE + 1];
    assert!(matches!(
        Note::parse(&huge),
        Err(NoteError::TooLarge { .. })
    ));
    let many = format!("{GO_TEXT}\n{}", GO_SIG_LINE.repeat(101));
    assert!(matches!(
        Note::parse(many.as_bytes()),
        Err(NoteError::TooManySignatures { .. })
    ));
    // 16 signatures must be accepted by the parser (the spec minimum).
    let sixteen = format!("{GO_TEXT}\n{}", GO_SIG_LINE.repeat(16));
    assert_eq!(
        Note::parse(sixteen.as_bytes()).unwrap().signatures().len(),
        16
    );
}

#[test]
fn note_verification_rules() {
    let vkey = VerifierKey::parse(GO_VKEY).unwrap();
    let other = NoteSigner::from_seed("PeterNeumann", [7u8; 32]).unwrap();
    let good = format!("{GO_TEXT}\n{GO_SIG_LINE}");

    // Unknown keys are ignored, but one known signature is required.
    let unknown = NoteSigner::from_seed("someone.example", [9u8; 32]).unwrap();
    let mut n = Note::parse(good.as_bytes()).unwrap();
    n.add_signature(unknown.sign(GO_TEXT).unwrap());
    assert_eq!(n.verify(std::slice::from_ref(&vkey)).unwrap().len(), 1);
    assert!(matches!(
        n.verify(&[other.verifier_key()]),
        Err(NoteError::NoKnownSignature { .. })
    ));

    // Same name, different key ID: a different key, ignored.
    assert_ne!(other.verifier_key().key_id(), vkey.key_id());

    // A known key whose signature fails rejects the whole note.
    let tampered = good.replace("cryptography", "cryptographY");
    assert!(matches!(
        Note::parse(tampered.as_bytes())
            .unwrap()
            .verify(std::slice::from_ref(&vkey)),
        Err(NoteError::InvalidSignature { .. })
    ));

    // The same known key twice is malformed.
    let twice = format!("{GO_TEXT}\n{GO_SIG_LINE}{GO_SIG_LINE}");
    assert!(matches!(
        Note::parse(twice.as_bytes())
            .unwrap()
            .verify(std::slice::from_ref(&vkey)),
        Err(NoteError::DuplicateSignature { .. })
    ));
}

#[test]
fn key_id_is_sha256_of_name_newline_type_key() {
    let vkey = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(
        key_id("PeterNeumann", KeyType::Ed25519, vkey.public_key()),
        0xc74f20a3
    );
    // Same key as a cosignature key gets a different ID (type byte 0x04).
    assert_ne!(
        key_id("PeterNeumann", KeyType::CosignatureV1, vkey.public_key()),
        0xc74f20a3
    );
}

// ---- C2SP examples -------------------------------------------------------

const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
const SPEC_COSIG_LINE: &str = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

#[test]
fn tlog_checkpoint_spec_example() {
    let note = Note::parse(SPEC_CHECKPOINT.as_bytes()).unwrap();
    let cp = Checkpoint::parse_text(note.text()).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(
        hex::encode(cp.root),
        "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    );
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.to_text(), note.text());
    assert_eq!(note.signatures().len(), 1);
    assert_eq!(note.signatures()[0].name, "example.com/behind-the-sofa");
    assert_eq!(note.signatures()[0].key_id, 0x033de0ae);
    assert_eq!(note.signatures()[0].signature.len(), 64);
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), SPEC_CHECKPOINT);
}

#[test]
fn tlog_cosignature_spec_example() {
    let msg = format!("{SPEC_CHECKPOINT}{SPEC_COSIG_LINE}");
    let note = Note::parse(msg.as_bytes()).unwrap();
    let cosig = &note.signatures()[1];
    assert_eq!(cosig.name, "witness.example.com/w1");
    assert_eq!(cosig.signature.len(), 72);
    // The spec's signed-message example uses "time 1679315147".
    assert_eq!(cosig.cosignature_timestamp(), Some(1679315147));
    assert_eq!(
        String::from_utf8(custody_log::note::cosignature_message(note.text(), 1679315147))
            .unwrap(),
        "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
}

#[test]
fn signed_note_spec_example_parses() {
    let msg = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
    let note = Note::parse(msg.as_bytes()).unwrap();
    // The text may contain blank lines; the last blank line separates.
    assert!(note.text().ends_with("subito sera.\n"));
    assert!(note.text().contains("sole:\n\ned"));
    assert_eq!(note.signatures()[0].name, "quasimodo.example/salvatore");
}

#[test]
fn checkpoint_body_rules() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let ok = |s: &str| Checkpoint::parse_text(s).is_ok();
    assert!(ok(&format!("o\n0\n{root}\n")));
    assert!(ok(&format!("o\n18446744073709551615\n{root}\n")));
    assert!(ok(&format!("o\n1\n{root}\next one\next two\n")));
    assert!(!ok(&format!("o\n1\n{root}")), "missing final newline");
    assert!(!ok(&format!("\n1\n{root}\n")), "empty origin");
    assert!(!ok(&format!("o\n01\n{root}\n")), "leading zero");
    assert!(!ok(&format!("o\n+1\n{root}\n")), "sign");
    assert!(!ok(&format!("o\n-1\n{root}\n")), "negative");
    assert!(
        !ok(&format!("o\n18446744073709551616\n{root}\n")),
        "overflow"
    );
    assert!(!ok(&format!("o\n1 \n{root}\n")), "trailing space");
    assert!(!ok("o\n1\nAAAA\n"), "short root");
    assert!(!ok(&format!("o\n1\n{}\n", &root[..43])), "unpadded root");
    assert!(!ok(&format!("o\n1\n{root}\n\n")), "empty extension line");
    assert!(!ok("o\n1\n"), "two lines");
    assert!(!ok(""), "empty");
}

#[test]
fn tlog_tiles_path_examples() {
    let t = TileId::new(0, 1234067, 256).unwrap();
    assert_eq!(t.path(), "tile/0/x001/x234/067");
    assert_eq!(
        TileId::new(3, 1234067, 8).unwrap().path(),
        "tile/3/x001/x234/067.p/8"
    );
    assert_eq!(TileId::new(1, 0, 256).unwrap().path(), "tile/1/000");
    assert_eq!(TileId::new(0, 1000, 256).unwrap().path(), "tile/0/x001/000");
    assert_eq!(
        BundleId::new(1234067, 256).unwrap().path(),
        "tile/entries/x001/x234/067"
    );
    assert_eq!(
        BundleId::new(5, 112).unwrap().path(),
        "tile/entries/005.p/112"
    );
    assert_eq!(
        TileId::new(2, u64::MAX, 1).unwrap().path(),
        "tile/2/x018/x446/x744/x073/x709/x551/615.p/1"
    );
    for p in [
        "tile/0/x001/x234/067",
        "tile/3/x001/x234/067.p/8",
        "tile/entries/x001/x234/067",
        "tile/entries/000.p/1",
        "tile/63/999.p/255",
        "tile/2/x018/x446/x744/x073/x709/x551/615",
    ] {
        let parsed = parse_tile_path(p).unwrap();
        let again = match parsed {
            TilePath::Tile(t) => t.path(),
            TilePath::Entries(b) => b.path(),
        };
        assert_eq!(again, p);
    }
    assert_eq!(
        parse_tile_path("tile/0/x001/x234/067").unwrap(),
        TilePath::Tile(TileId::new(0, 1234067, 256).unwrap())
    );
    for bad in [
        "tile/0/1",
        "tile/0/0001",
        "tile/0/x000/001",
        "tile/0/001/002",
        "tile/0/x001",
        "tile/00/001",
        "tile/64/001",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/001.p/08",
        "tile/0/001.p/",
        "tile/0/001.p",
        "tile/0/001/",
        "tile//001",
        "tile/0/",
        "tile/entries",
        "tiles/0/001",
        "tile/0/y001/002",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        "tile/-1/001",
        "tile/0/00a",
        "/tile/0/001",
    ] {
        assert!(parse_tile_path(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn tlog_tiles_size_examples() {
    // "a tree of size 70,000 will be represented by 273 full level 0 tiles,
    // one partial level 0 tile of width 112, one full level 1 tile, one
    // partial level 1 tile of width 17, and one partial level 2 tile of
    // width 1."
    let tiles = new_tiles(0, 70_000);
    let count = |level: u8, width: u16| {
        tiles
            .iter()
            .filter(|t| t.level == level && t.width == width)
            .count()
    };
    assert_eq!(count(0, 256), 273);
    assert_eq!(count(0, 112), 1);
    assert_eq!(count(1, 256), 1);
    assert_eq!(count(1, 17), 1);
    assert_eq!(count(2, 1), 1);
    assert_eq!(tiles.len(), 277);
    // "a tree of size 256 will be represented by a full level 0 tile and a
    // partial level 1 tile of width 1."
    assert_eq!(
        new_tiles(0, 256),
        vec![
            TileId::new(0, 0, 256).unwrap(),
            TileId::new(1, 0, 1).unwrap()
        ]
    );
    // Growing 256 -> 257 only adds the new partial level-0 tile.
    assert_eq!(new_tiles(256, 257), vec![TileId::new(0, 1, 1).unwrap()]);
    assert!(new_tiles(300, 300).is_empty());
    assert!(new_tiles(0, 0).is_empty());
}

#[test]
fn single_signature_line_parses() {
    let sig = custody_log::NoteSignature::parse_line(GO_SIG_LINE).unwrap();
    assert_eq!(sig.name, "PeterNeumann");
    assert_eq!(sig.key_id, 0xc74f20a3);
    assert_eq!(sig.to_line(), GO_SIG_LINE);
    assert!(custody_log::NoteSignature::parse_line(GO_SIG_LINE.trim_end()).is_ok());
    assert!(custody_log::NoteSignature::parse_line(&GO_SIG_LINE.repeat(2)).is_err());
    assert!(custody_log::NoteSignature::parse_line("- PeterNeumann AAAAAAA=").is_err());
    assert!(custody_log::NoteSignature::parse_line("").is_err());
}
