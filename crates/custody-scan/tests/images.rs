//! Images built by the test itself, scanned and judged: each problem is
//! found and named by path; a clean image passes; problems deleted by an
//! upper OCI layer's whiteouts are not reported; hostile tars are typed
//! errors.

mod common;

use common::*;
use custody_scan::{evaluate, scan_reader, Finding, Limits, Policy, Rule, Scan, ScanError};

fn scan(bytes: &[u8]) -> Result<Scan, ScanError> {
    scan_reader(&mut &bytes[..], &Limits::default())
}

fn judge(bytes: &[u8]) -> Vec<Finding> {
    let s = scan(bytes).expect("image scans");
    evaluate(&s.inventory, &Policy::default(), at())
}

fn rules(f: &[Finding]) -> Vec<(String, Rule)> {
    f.iter().map(|f| (f.path.clone(), f.rule)).collect()
}

fn filler() -> Vec<E> {
    vec![
        E::Dir("./"),
        E::Dir("./usr/"),
        E::Dir("./usr/bin/"),
        file("./usr/bin/tool", vec![0x7f; 100_000]),
        file("./etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
        E::Dir("./etc/ssl/certs/"),
    ]
}

fn clean_image() -> Vec<u8> {
    let mut e = filler();
    e.push(file("./etc/ssl/certs/ca-certificates.crt", MOZILLA_ROOT));
    e.push(E::Link(
        "./etc/ssl/certs/ISRG_Root_X1.pem",
        "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt",
    ));
    e.push(file(
        "./usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt",
        MOZILLA_ROOT,
    ));
    e.push(file("./var/lib/dpkg/status", clean_packages()));
    tar(&e)
}

/// Each problem of the issue, in one rootfs.
fn bad_entries() -> Vec<E> {
    let corp = root("Corp Root CA", (2020, 1, 1), (2036, 1, 1));
    let expired = intermediate("Corp Issuing CA 1", &corp, (2020, 1, 1), (2025, 6, 1));
    let evil = root("Removed Root CA", (2020, 1, 1), (2035, 1, 1));
    let mut e = filler();
    e.push(file(
        "./etc/ssl/certs/ca-certificates.crt",
        format!("{MOZILLA_ROOT}{}", expired.cert.pem()),
    ));
    e.push(file(
        "./usr/local/share/ca-certificates/removed-root.crt",
        evil.cert.pem(),
    ));
    e.push(file(
        "./var/lib/dpkg/status",
        dpkg_status(&[("libssl1.1", "1.1.1w-0+deb11u1"), ("libc6", "2.36-9")]),
    ));
    e
}

fn assert_bad(f: &[Finding]) {
    assert_eq!(
        rules(f),
        [
            (
                "etc/ssl/certs/ca-certificates.crt".into(),
                Rule::CertificateExpired
            ),
            ("var/lib/dpkg/status".into(), Rule::PackageForbidden),
            (
                "usr/local/share/ca-certificates/removed-root.crt".into(),
                Rule::RootNotTrusted
            ),
        ],
        "{f:#?}"
    );
    assert!(f[0].item.contains("Corp Issuing CA 1"), "{}", f[0].item);
    assert!(
        f[1].item.contains("libssl1.1 1.1.1w-0+deb11u1"),
        "{}",
        f[1].item
    );
    assert!(f[2].item.contains("Removed Root CA"), "{}", f[2].item);
}

#[test]
fn clean_image_passes_and_lists_its_inventory() {
    let img = clean_image();
    let s = scan(&img).unwrap();
    assert_eq!(
        s.inventory.certificates.len(),
        2,
        "bundle and the mozilla dir"
    );
    assert!(s.inventory.certificates.iter().all(|c| c.self_signed));
    assert_eq!(s.inventory.packages.len(), 6);
    let f = evaluate(&s.inventory, &Policy::default(), at());
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn expired_intermediate_removed_root_and_old_libssl_are_refused_by_path() {
    assert_bad(&judge(&tar(&bad_entries())));
}

#[test]
fn expired_intermediate_alone() {
    let corp = root("Corp Root CA", (2020, 1, 1), (2036, 1, 1));
    let expired = intermediate("Corp Issuing CA 1", &corp, (2020, 1, 1), (2025, 6, 1));
    let mut e = filler();
    e.push(file("./etc/pki/tls/certs/issuing.pem", expired.cert.pem()));
    let f = judge(&tar(&e));
    assert_eq!(
        rules(&f),
        [(
            "etc/pki/tls/certs/issuing.pem".into(),
            Rule::CertificateExpired
        )]
    );
    assert!(f[0].detail.contains("2025-06-01"), "{}", f[0].detail);
}

#[test]
fn expiring_within_the_window_is_reported_and_the_window_is_policy() {
    let soon = root("Soon Root", (2020, 1, 1), (2026, 12, 20));
    let mut e = filler();
    e.push(file("./etc/ssl/certs/soon.pem", soon.cert.pem()));
    let s = scan(&tar(&e)).unwrap();
    let mut policy = Policy::default();
    policy.trusted_roots.add_bundle(soon.cert.pem().as_bytes());
    let f = evaluate(&s.inventory, &policy, at());
    assert_eq!(
        rules(&f),
        [("etc/ssl/certs/soon.pem".into(), Rule::CertificateExpiring)]
    );
    policy.window = chrono::Duration::days(7);
    assert!(evaluate(&s.inventory, &policy, at()).is_empty());
}

#[test]
fn distrusted_certificate_is_refused_even_when_mozilla_trusts_it() {
    let s = scan(&clean_image()).unwrap();
    let mut policy = Policy::default();
    let fp = s.inventory.certificates[0].sha256.clone();
    policy.distrust.insert(fp);
    let f = evaluate(&s.inventory, &policy, at());
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|f| f.rule == Rule::CertificateDistrusted));
}

#[test]
fn old_libssl3_below_minimum_by_debian_order() {
    let mut e = filler();
    e.push(file(
        "./var/lib/dpkg/status",
        dpkg_status(&[
            ("libssl3", "3.0.0~alpha1-1"),
            ("libgnutls30", "3.6.13-2ubuntu1"),
        ]),
    ));
    let f = judge(&tar(&e));
    assert_eq!(f.len(), 2);
    assert!(f
        .iter()
        .all(|f| f.rule == Rule::PackageBelowMinimum && f.path == "var/lib/dpkg/status"));
}

#[test]
fn apk_database_is_checked() {
    let mut e = filler();
    e.push(file(
        "./lib/apk/db/installed",
        b"P:musl\nV:1.2.4-r2\n\nP:libcrypto1.1\nV:1.1.1w-r1\n\nP:libssl3\nV:3.1.4-r5\n\n".to_vec(),
    ));
    let f = judge(&tar(&e));
    assert_eq!(
        rules(&f),
        [("lib/apk/db/installed".into(), Rule::PackageForbidden)]
    );
}

#[test]
fn gzip_and_zstd_images_give_the_same_findings() {
    let t = tar(&bad_entries());
    for (name, img) in [("gzip", gzip(&t)), ("zstd", zstd(&t))] {
        let s = scan(&img).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.bytes, t.len() as u64, "{name}");
        assert_bad(&evaluate(&s.inventory, &Policy::default(), at()));
    }
    assert!(judge(&gzip(&clean_image())).is_empty());
    assert!(judge(&zstd(&clean_image())).is_empty());
}

#[test]
fn a_later_entry_replaces_an_earlier_one() {
    let mut e = bad_entries();
    e.push(file("./var/lib/dpkg/status", clean_packages()));
    e.push(E::Link(
        "./usr/local/share/ca-certificates/removed-root.crt",
        "/dev/null",
    ));
    let f = judge(&tar(&e));
    assert_eq!(
        rules(&f),
        [(
            "etc/ssl/certs/ca-certificates.crt".into(),
            Rule::CertificateExpired
        )]
    );
}

/// Lower layer: every problem. Upper layer: deletes them with whiteouts
/// (a file whiteout, a directory whiteout, an opaque directory).
fn layers() -> (Vec<u8>, Vec<u8>) {
    let lower = tar(&bad_entries());
    let upper = tar(&[
        E::Dir("etc/ssl/certs/"),
        file("etc/ssl/certs/.wh.ca-certificates.crt", Vec::new()),
        file("etc/ssl/certs/ca-certificates.crt", MOZILLA_ROOT),
        file("usr/local/share/.wh.ca-certificates", Vec::new()),
        file("var/lib/dpkg/.wh..wh..opq", Vec::new()),
        file("var/lib/dpkg/status", clean_packages()),
    ]);
    (lower, upper)
}

#[test]
fn problems_in_a_lower_oci_layer_removed_by_whiteouts_pass() {
    let (lower, upper) = layers();
    for (gz, reverse) in [(false, false), (true, false), (true, true), (false, true)] {
        let l = if gz {
            vec![gzip(&lower), gzip(&upper)]
        } else {
            vec![lower.clone(), upper.clone()]
        };
        let img = oci(&l).to_tar(reverse);
        let s = scan(&img).unwrap();
        assert_eq!(s.format, custody_scan::ImageFormat::OciTar);
        let f = evaluate(&s.inventory, &Policy::default(), at());
        assert!(f.is_empty(), "gzip {gz} reverse {reverse}: {f:#?}");
        assert_eq!(s.inventory.certificates.len(), 1);
        // the whole image, gzip-compressed, too
        assert!(judge(&gzip(&img)).is_empty());
    }
}

#[test]
fn the_lower_layer_alone_is_refused() {
    let (lower, _) = layers();
    let img = oci(&[gzip(&lower)]).to_tar(false);
    assert_bad(&judge(&img));
}

#[test]
fn whiteouts_only_hide_lower_layers() {
    // A whiteout in the bottom layer hides nothing of that layer, and a
    // later layer can bring the problem back.
    let (lower, upper) = layers();
    let again = tar(&[file("usr/local/share/ca-certificates/removed-root.crt", {
        let r = root("Returned Root", (2020, 1, 1), (2035, 1, 1));
        r.cert.pem()
    })]);
    let img = oci(&[lower, upper, again]).to_tar(true);
    let f = judge(&img);
    assert_eq!(
        rules(&f),
        [(
            "usr/local/share/ca-certificates/removed-root.crt".into(),
            Rule::RootNotTrusted
        )]
    );
}

#[test]
fn oci_layout_directory() {
    let (lower, upper) = layers();
    let dir = tempfile::tempdir().unwrap();
    oci(&[gzip(&lower), upper.clone()]).write_dir(dir.path());
    let s = custody_scan::scan_path(dir.path(), &Limits::default()).unwrap();
    assert_eq!(s.format, custody_scan::ImageFormat::OciDir);
    assert!(evaluate(&s.inventory, &Policy::default(), at()).is_empty());
    let dir2 = tempfile::tempdir().unwrap();
    oci(&[gzip(&lower)]).write_dir(dir2.path());
    let s = custody_scan::scan_path(dir2.path(), &Limits::default()).unwrap();
    assert_bad(&evaluate(&s.inventory, &Policy::default(), at()));
}

#[test]
fn oci_blob_with_wrong_digest_is_refused() {
    let (lower, _) = layers();
    let mut o = oci(&[lower]);
    // the last byte of the end-of-archive blocks: the tar still parses
    if let Some(b) = o.blobs[0].1.last_mut() {
        *b ^= 1;
    }
    let err = scan(&o.to_tar(false)).unwrap_err();
    assert!(err.to_string().contains("content digest"), "{err}");
}

#[test]
fn oci_manifest_naming_a_missing_layer_is_refused() {
    let (lower, _) = layers();
    let mut o = oci(&[gzip(&lower)]);
    o.blobs.remove(0);
    let err = scan(&o.to_tar(false)).unwrap_err();
    assert!(err.to_string().contains("is not in the layout"), "{err}");
}

/// `scan_path` on files: an uncompressed tar is read with seeks over the
/// data that does not matter; the findings are the same as streaming.
#[test]
fn files_scan_like_streams() {
    let dir = tempfile::tempdir().unwrap();
    let t = tar(&bad_entries());
    let (lower, upper) = layers();
    let cases = [
        ("bad.tar", t.clone(), false),
        ("bad.tar.gz", gzip(&t), false),
        ("bad.tar.zst", zstd(&t), false),
        ("clean.tar", clean_image(), true),
        (
            "oci.tar",
            oci(&[lower.clone(), gzip(&upper)]).to_tar(true),
            true,
        ),
    ];
    for (name, bytes, clean) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        let from_file = custody_scan::scan_path(&p, &Limits::default()).unwrap();
        let from_stream = scan(&bytes).unwrap();
        assert_eq!(from_file.inventory, from_stream.inventory, "{name}");
        assert_eq!(from_file.entries, from_stream.entries, "{name}");
        assert_eq!(from_file.bytes, from_stream.bytes, "{name}");
        let f = evaluate(&from_file.inventory, &Policy::default(), at());
        if clean {
            assert!(f.is_empty(), "{name}: {f:#?}");
        } else {
            assert_bad(&f);
        }
    }
}

/// `docker save` archives (manifest.json, `<id>/layer.tar`): the layers
/// are applied in the order the manifest lists them, whiteouts included.
#[test]
fn docker_save_archives() {
    let (lower, upper) = layers();
    let archive = |layers: &[(&'static str, Vec<u8>)]| {
        let names: Vec<&str> = layers.iter().map(|(n, _)| *n).collect();
        let manifest = serde_json::to_vec(&serde_json::json!([
            {"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": names}
        ]))
        .unwrap();
        let mut e = vec![file("cfg.json", b"{}".to_vec())];
        // the tar holds the upper layer first: the manifest decides the order
        for (n, data) in layers.iter().rev() {
            e.push(E::Owned((*n).to_owned(), data.clone()));
        }
        e.push(file("manifest.json", manifest));
        tar(&e)
    };
    let both = archive(&[("aaa/layer.tar", lower.clone()), ("bbb/layer.tar", upper)]);
    let s = scan(&both).unwrap();
    assert_eq!(s.format, custody_scan::ImageFormat::DockerArchive);
    assert!(evaluate(&s.inventory, &Policy::default(), at()).is_empty());
    assert_bad(&judge(&archive(&[("aaa/layer.tar", lower)])));
}
