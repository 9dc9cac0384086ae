//! `custody scan IMAGE` through the real binary: exit codes 0 (clean),
//! 1 (findings), 2 (usage, unreadable, malformed), the table and `--json`.
mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use common::cli::command;

const MOZILLA_ROOT: &str = include_str!("../../custody-scan/tests/data/isrg-root-x1.pem");
const AT: &str = "2026-12-07T00:00:00Z";

fn tar(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn dpkg(pkgs: &[(&str, &str)]) -> Vec<u8> {
    pkgs.iter()
        .map(|(n, v)| format!("Package: {n}\nStatus: install ok installed\nVersion: {v}\n\n"))
        .collect::<String>()
        .into_bytes()
}

fn expired_root_pem() -> String {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Old Private Root");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.not_before = rcgen::date_time_ymd(2015, 1, 1);
    p.not_after = rcgen::date_time_ymd(2025, 1, 1);
    p.self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

fn scan(args: &[&str]) -> Output {
    command().arg("scan").args(args).output().unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn exit_codes_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(
        dir.path(),
        "clean.tar.gz",
        &gzip(&tar(&[
            (
                "etc/ssl/certs/ca-certificates.crt",
                MOZILLA_ROOT.as_bytes().to_vec(),
            ),
            (
                "var/lib/dpkg/status",
                dpkg(&[("libssl3", "3.0.15-1~deb12u1")]),
            ),
            ("usr/bin/tool", vec![1; 5000]),
        ])),
    );
    let bad = write(
        dir.path(),
        "bad.img",
        &tar(&[
            (
                "usr/local/share/ca-certificates/old.crt",
                expired_root_pem().into_bytes(),
            ),
            (
                "var/lib/dpkg/status",
                dpkg(&[("libssl1.1", "1.1.1n-0+deb11u5")]),
            ),
        ]),
    );

    // clean: exit 0
    let o = scan(&[&clean, "--at", AT]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.starts_with("pass: 0 finding(s)"), "{out}");

    // the same image on standard input
    let o = command()
        .args(["scan", "-", "--at", AT])
        .stdin(std::fs::File::open(&clean).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("pass: 0 finding(s)"));

    // findings: exit 1, a table sorted by severity naming path, item and rule
    let o = scan(&[&bad, "--at", AT]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("SEVERITY"), "{out}");
    assert!(
        lines[1].starts_with("critical") && lines[1].contains("certificate-expired"),
        "{out}"
    );
    assert!(
        lines[1].contains("usr/local/share/ca-certificates/old.crt"),
        "{out}"
    );
    assert!(
        out.contains("libssl1.1 1.1.1n-0+deb11u5") && out.contains("package-forbidden"),
        "{out}"
    );
    assert!(out.contains("root-not-trusted"), "{out}");
    assert!(out.contains("refuse: 3 finding(s)"), "{out}");

    // --json: the same verdict, findings and a stable inventory digest
    let json = |p: &str| {
        let o = scan(&[p, "--at", AT, "--json"]);
        assert_eq!(o.status.code(), Some(1));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let (a, b) = (json(&bad), json(&bad));
    assert_eq!(a["verdict"], "refuse");
    assert_eq!(a["findings"].as_array().unwrap().len(), 3);
    assert_eq!(a["findings"][0]["rule"], "certificate-expired");
    assert_eq!(
        a["findings"][0]["path"],
        "usr/local/share/ca-certificates/old.crt"
    );
    assert_eq!(a["inventory"]["packages"][0]["name"], "libssl1.1");
    let digest = a["inventory_digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(a["inventory_digest"], b["inventory_digest"]);

    // a policy file: no default package rules, a 4000-day window
    let policy = write(
        dir.path(),
        "policy.toml",
        b"default_packages = false\nwindow_days = 4000\n",
    );
    let o = scan(&[&bad, "--at", AT, "--policy", &policy, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["certificate-expired", "root-not-trusted"]);
    // the window: ISRG Root X1 expires in 2035, within 4000 days of AT
    let o = scan(&[&clean, "--at", AT, "--policy", &policy]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("certificate-expiring"));
    let o = scan(&[&clean, "--at", AT, "--window", "30", "--policy", &policy]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn unscannable_images_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // a `..` entry (written raw: the tar crate refuses to)
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    h.set_cksum();
    let mut t = h.as_bytes().to_vec();
    t.extend_from_slice(&[b'x'; 512]);
    t.extend_from_slice(&[0; 1024]);
    let evil = write(dir.path(), "evil.tar", &t);
    let o = scan(&[&evil]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("../../escape") && err.contains("`..`"),
        "{err}"
    );

    // a truncated gzip
    let full = gzip(&tar(&[(
        "a",
        (0..100_000u32).flat_map(|i| i.to_be_bytes()).collect(),
    )]));
    let cut = write(dir.path(), "cut.tar.gz", &full[..full.len() / 2]);
    let o = scan(&[&cut]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated or corrupt gzip"));

    let missing = dir.path().join("missing.tar");
    assert_eq!(scan(&[missing.to_str().unwrap()]).status.code(), Some(2));
    assert_eq!(scan(&[&evil, "--at", "yesterday"]).status.code(), Some(2));
    assert_eq!(scan(&[]).status.code(), Some(2));
    let o = command().args(["scan", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes:"));
}
