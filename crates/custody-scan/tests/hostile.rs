//! Hostile and broken images: each is a typed error naming the entry or
//! offset and the rule, never a panic, never unbounded memory.

mod common;

use common::*;
use custody_scan::{scan_reader, LimitRule, Limits, Scan, ScanError};

fn scan_with(bytes: &[u8], limits: &Limits) -> Result<Scan, ScanError> {
    scan_reader(&mut &bytes[..], limits)
}

fn scan(bytes: &[u8]) -> Result<Scan, ScanError> {
    scan_with(bytes, &Limits::default())
}

/// A raw tar header with any name (the tar crate refuses to write `..`
/// and absolute paths, which is the point of these tests).
fn raw_header(name: &[u8], size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn raw_tar(parts: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in parts {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn refused(err: ScanError) -> (String, LimitRule) {
    match err {
        ScanError::Refused { entry, rule, .. } => (entry, rule),
        other => panic!("expected a refused entry, got {other}"),
    }
}

#[test]
fn dot_dot_entries_are_refused_by_name() {
    for name in [
        &b"../../etc/shadow"[..],
        b"usr/../../x",
        b"./etc/ssl/../../..",
    ] {
        let t = raw_tar(&[(
            raw_header(name, 3, tar::EntryType::Regular),
            b"abc".to_vec(),
        )]);
        let err = scan(&t).unwrap_err();
        let msg = err.to_string();
        let (entry, rule) = refused(err);
        assert_eq!(rule, LimitRule::DotDot);
        assert_eq!(entry.as_bytes(), name);
        assert!(msg.contains("`..`") && msg.contains("offset 0"), "{msg}");
    }
}

#[test]
fn absolute_paths_are_refused() {
    let t = raw_tar(&[(
        raw_header(b"/etc/passwd", 1, tar::EntryType::Regular),
        b"x".to_vec(),
    )]);
    assert_eq!(
        refused(scan(&t).unwrap_err()),
        ("/etc/passwd".into(), LimitRule::Absolute)
    );
}

#[test]
fn huge_declared_size_is_refused_before_reading() {
    let mut h = tar::Header::new_gnu();
    h.set_path("big.img").unwrap();
    h.set_size(1 << 50);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let t = raw_tar(&[(h, vec![0; 4096])]);
    let (entry, rule) = refused(scan(&t).unwrap_err());
    assert_eq!(entry, "big.img");
    assert!(
        matches!(rule, LimitRule::EntryTooLarge { size, .. } if size == 1 << 50),
        "{rule}"
    );
}

#[test]
fn declared_size_beyond_the_stream_is_a_truncation() {
    let mut h = tar::Header::new_gnu();
    h.set_path("usr/lib/big.so").unwrap();
    h.set_size(1 << 30);
    h.set_cksum();
    let mut t = h.as_bytes().to_vec();
    t.extend_from_slice(&[7u8; 5000]);
    let err = scan(&t).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::MalformedTar { .. }), "{msg}");
    assert!(
        msg.contains("usr/lib/big.so") && msg.contains("1073741824"),
        "{msg}"
    );
}

#[test]
fn oversized_package_database_is_refused_not_skipped() {
    let big = vec![b'a'; (32 << 20) + 1];
    let t = tar(&[file("var/lib/dpkg/status", big)]);
    let (entry, rule) = refused(scan(&gzip(&t)).unwrap_err());
    assert_eq!(entry, "var/lib/dpkg/status");
    assert!(matches!(rule, LimitRule::FileTooLarge { .. }), "{rule}");
}

#[test]
fn deep_and_long_paths_are_refused() {
    let deep = "d/".repeat(200) + "f";
    let t = tar(&[E::Owned(deep.clone(), b"x".to_vec())]);
    let (_, rule) = refused(scan(&t).unwrap_err());
    assert_eq!(
        rule,
        LimitRule::TooDeep {
            depth: 201,
            max: 128
        }
    );
    let long = "x".repeat(5000);
    let t = tar(&[E::Owned(long, b"x".to_vec())]);
    let (entry, rule) = refused(scan(&t).unwrap_err());
    assert_eq!(
        rule,
        LimitRule::PathTooLong {
            len: 5000,
            max: 4096
        }
    );
    assert!(entry.len() < 100, "the error does not echo 5000 bytes");
}

#[test]
fn too_many_entries() {
    let entries: Vec<E> = (0..11).map(|i| E::Owned(format!("f{i}"), vec![])).collect();
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let err = scan_with(&tar(&entries), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ScanError::Limit {
                rule: LimitRule::TooManyEntries { max: 10 },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn gnu_long_name_bomb_is_bounded() {
    // A 64 MiB GNU long name: the tar crate would read it all into memory.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(64 << 20);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    let t = raw_tar(&[
        (h, vec![b'a'; 64 << 20]),
        (raw_header(b"x", 0, tar::EntryType::Regular), vec![]),
    ]);
    let small = gzip(&t);
    assert!(small.len() < 1 << 20);
    let err = scan(&small).unwrap_err();
    assert!(
        matches!(err, ScanError::Limit { rule: LimitRule::HeadersTooLarge { max } , .. } if max == 1 << 20),
        "{err}"
    );
}

#[test]
fn decompression_bomb_hits_the_total() {
    let t = tar(&[E::Owned("zeros".into(), vec![0; 8 << 20])]);
    let limits = Limits {
        max_total_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = scan_with(&zstd(&t), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ScanError::Limit {
                rule: LimitRule::ImageTooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_gzip_and_zstd_are_named() {
    let t = tar(&[E::Owned(
        "data".into(),
        (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect(),
    )]);
    for (format, img) in [("gzip", gzip(&t)), ("zstd", zstd(&t))] {
        let cut = &img[..img.len() / 2];
        let err = scan(cut).unwrap_err();
        let msg = err.to_string();
        match err {
            ScanError::Decompress {
                format: f, offset, ..
            } => {
                assert_eq!(f, format);
                assert!(offset > 0 && offset <= cut.len() as u64, "{msg}");
            }
            other => panic!("{format}: {other}"),
        }
        assert!(msg.contains("truncated or corrupt"), "{msg}");
    }
}

#[test]
fn truncated_and_corrupt_plain_tars() {
    let t = tar(&[
        E::Owned("usr/bin/a".into(), vec![1; 10_000]),
        E::Owned("b".into(), vec![2; 10]),
    ]);
    let err = scan(&t[..5000]).unwrap_err();
    assert!(matches!(err, ScanError::MalformedTar { .. }), "{err}");
    assert!(err.to_string().contains("usr/bin/a"), "{err}");
    // a corrupt header after the first entry: checksum mismatch
    let mut bad = t.clone();
    bad[10_752 + 3] ^= 0x55;
    let err = scan(&bad).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("checksum") && msg.contains("after entry \"usr/bin/a\""),
        "{msg}"
    );
}

#[test]
fn garbage_empty_and_unsupported_inputs() {
    assert!(matches!(
        scan(b"").unwrap_err(),
        ScanError::MalformedTar { .. }
    ));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(
        scan(&garbage).unwrap_err(),
        ScanError::MalformedTar { .. }
    ));
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
    assert!(matches!(
        scan(&xz).unwrap_err(),
        ScanError::UnsupportedCompression { format: "xz", .. }
    ));
    // a gzip stream of garbage
    assert!(matches!(
        scan(&gzip(&garbage)).unwrap_err(),
        ScanError::MalformedTar { .. }
    ));
}

#[test]
fn hostile_layer_inside_an_oci_layout_names_the_layer() {
    let bad = raw_tar(&[(
        raw_header(b"../escape", 1, tar::EntryType::Regular),
        b"x".to_vec(),
    )]);
    let d = sha256(&gzip(&bad));
    let img = oci(&[gzip(&bad)]).to_tar(false);
    let err = scan(&img).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("layer {d}")) && msg.contains("../escape"),
        "{msg}"
    );
}

/// The seeking reader of uncompressed files checks each entry's extent
/// against the file: a truncated file is not a clean end of archive.
#[test]
fn truncated_tar_files_are_malformed_not_short() {
    let dir = tempfile::tempdir().unwrap();
    let t = tar(&[
        E::Owned("usr/bin/a".into(), vec![1; 10_000]),
        E::Owned("usr/bin/b".into(), vec![2; 100_000]),
    ]);
    // cut inside b's data, and right after b's header
    for cut in [50_000, 10_752 + 512] {
        let p = dir.path().join(format!("cut{cut}.tar"));
        std::fs::write(&p, &t[..cut]).unwrap();
        let err = custody_scan::scan_path(&p, &Limits::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ScanError::MalformedTar { .. }), "{msg}");
        assert!(msg.contains("usr/bin/b") && msg.contains("100000"), "{msg}");
    }
    // hostile entries are refused from files as from streams
    let evil = raw_tar(&[(
        raw_header(b"../x", 1, tar::EntryType::Regular),
        b"x".to_vec(),
    )]);
    let p = dir.path().join("evil.tar");
    std::fs::write(&p, &evil).unwrap();
    let (_, rule) = refused(custody_scan::scan_path(&p, &Limits::default()).unwrap_err());
    assert_eq!(rule, LimitRule::DotDot);
}
