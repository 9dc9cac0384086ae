//! `custody serve` end to end with publishing wired to custody-repo, and
//! crash safety: a CI identity uploads and stages, a separate publisher
//! publishes, an offline targets key signs through the API, and
//! `custody client` downloads and verifies the target from the server.
//! Then `kill -9` during a large upload and during publishes: after a
//! restart nothing published is lost, no partial blob is kept, and the
//! repository still verifies with `custody client`.

mod agent_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use agent_support::common::cli::command;
use agent_support::{api, http, sha256_hex, start, token, Server, Setup, REPO};

/// `custody client`: trust root 1 from the server (test only; real clients
/// get it out of band), refresh, download `names`; returns their bytes.
fn client_download(s: &Server, work: &Path, names: &[String]) -> Vec<Vec<u8>> {
    let md = work.join("tuf");
    let out = work.join("out");
    let _ = std::fs::remove_dir_all(&md);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&md).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let root = http(
        &s.url,
        "GET",
        &format!("/repos/{REPO}/metadata/1.root.json"),
        None,
        b"",
    );
    assert_eq!(root.status, 200);
    let root_file = work.join("root.json");
    std::fs::write(&root_file, &root.body).unwrap();
    let run = |args: &[&str]| {
        let o = command()
            .arg("client")
            .arg("--metadata-dir")
            .arg(&md)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "custody client {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["init", root_file.to_str().unwrap()]);
    let mut args = vec![
        "--metadata-url".to_string(),
        format!("{}/repos/{REPO}/metadata/", s.url),
        "--target-base-url".to_string(),
        format!("{}/repos/{REPO}/targets/", s.url),
        "--target-dir".to_string(),
        out.to_str().unwrap().to_string(),
    ];
    for n in names {
        args.push("--target-name".into());
        args.push(n.clone());
    }
    args.push(
        if names.is_empty() {
            "refresh"
        } else {
            "download"
        }
        .into(),
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&a);
    names
        .iter()
        .map(|n| std::fs::read(out.join(n.replace('/', "%2F"))).unwrap())
        .collect()
}

#[test]
fn ci_uploads_publisher_publishes_client_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"));
    let setup = Setup::new(&s);
    let data = b"release 1.2.3 ".repeat(5000);
    setup.stage(&s, "fw/app.bin", &data, serde_json::Value::Null);
    // CI may not publish (separation of duties).
    let ci = token(&s, &setup.ci);
    assert_eq!(
        api(
            &s,
            "POST",
            &format!("/api/v1/repos/{REPO}/publish"),
            &ci,
            None
        )
        .status,
        403
    );
    setup.publish(&s);
    let got = client_download(&s, dir.path(), &["fw/app.bin".to_string()]);
    assert_eq!(got, vec![data]);
}

/// Pseudo-random delays without a dependency (xorshift on the clock).
fn jitter_ms(seed: &mut u64, max: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % max
}

#[test]
fn kill_9_during_upload_and_publish_loses_nothing_published() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut s = start(&data_dir);
    let setup = Setup::new(&s);
    let mut published: Vec<(String, Vec<u8>)> = Vec::new();
    let first = b"first published target".to_vec();
    setup.stage(&s, "base.bin", &first, serde_json::Value::Null);
    setup.publish(&s);
    published.push(("base.bin".into(), first));

    // 1. kill -9 in the middle of a large upload.
    let big_len: usize = 64 << 20;
    let big_sha = sha256_hex(&vec![7u8; big_len]);
    let t = token(&s, &setup.ci);
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "PUT /api/v1/repos/{REPO}/blobs/{big_sha} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {t}\r\nContent-Length: {big_len}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..20 {
        sock.write_all(&chunk).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    s.kill9();
    drop(sock);
    s = start(&data_dir);
    let t = token(&s, &setup.ci);
    let r = api(
        &s,
        "GET",
        &format!("/api/v1/repos/{REPO}/blobs/{big_sha}"),
        &t,
        None,
    );
    assert_eq!(
        r.status,
        404,
        "partial upload must not be kept: {}",
        r.text()
    );
    let blob = data_dir
        .join("blobs/sha256")
        .join(&big_sha[..2])
        .join(&big_sha);
    assert!(!blob.exists(), "no partial blob file");
    let names: Vec<String> = published.iter().map(|(n, _)| n.clone()).collect();
    let got = client_download(&s, dir.path(), &names);
    assert_eq!(
        got,
        published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>()
    );

    // 2. kill -9 at random points of publishes of many targets.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    for round in 0..3 {
        let mut batch = Vec::new();
        for i in 0..40 {
            let name = format!("r{round}/t{i}.bin");
            let bytes = format!("round {round} target {i} ")
                .repeat(200)
                .into_bytes();
            setup.stage(&s, &name, &bytes, serde_json::Value::Null);
            batch.push((name, bytes));
        }
        let url = s.url.clone();
        let pt = token(&s, &setup.publisher);
        let publishing = std::thread::spawn(move || {
            // The connection dies with the server; any outcome is fine.
            let addr = url.trim_start_matches("http://").to_string();
            if let Ok(mut sock) = TcpStream::connect(&addr) {
                let _ = write!(
                    sock,
                    "POST /api/v1/repos/{REPO}/publish HTTP/1.1\r\nHost: {addr}\r\n\
                     Authorization: Bearer {pt}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut sink = Vec::new();
                let _ = sock.read_to_end(&mut sink);
            }
        });
        std::thread::sleep(Duration::from_millis(jitter_ms(&mut seed, 400)));
        s.kill9();
        let _ = publishing.join();
        s = start(&data_dir);
        // Unfinished generations of the killed publish are gone.
        for e in std::fs::read_dir(data_dir.join("repos").join(REPO).join("generations")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "leftover {name} after restart");
        }
        // Everything published before the crash is still served and verifies.
        let names: Vec<String> = published.iter().map(|(n, _)| n.clone()).collect();
        let got = client_download(&s, dir.path(), &names);
        assert_eq!(
            got,
            published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            "round {round}: published targets lost after kill -9"
        );
        // The interrupted publish completes after the restart.
        setup.publish(&s);
        published.extend(batch);
        let names: Vec<String> = published.iter().map(|(n, _)| n.clone()).collect();
        let got = client_download(&s, dir.path(), &names);
        assert_eq!(
            got,
            published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            "round {round}: publish after restart"
        );
    }
}
