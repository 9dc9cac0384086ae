//! `custody serve` as a process: zero-config start, bootstrap credential
//! shown once, health, graceful SIGTERM, restart keeps state, --help, TLS.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::command;
use common::serve::{start_serve, ServeProcess};

/// Starts `custody serve` in `cwd` and reads the banner from stdout.
fn start(cwd: &std::path::Path, extra: &[&str]) -> ServeProcess {
    start_serve(Some(cwd), "127.0.0.1:0", extra, &[])
}

/// Minimal HTTP/1.1 over a raw socket (the binary's tests have no client).
fn request(url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn zero_config_start_bootstrap_once_and_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), &[]);
    assert!(
        dir.path().join("custody-data/custody.db").exists(),
        "./custody-data created in the working directory"
    );
    let credential = first
        .credential
        .clone()
        .expect("first start prints the credential");
    assert_eq!(request(&first.url, "GET", "/healthz", None).0, 200);
    assert_eq!(request(&first.url, "GET", "/readyz", None).0, 200);
    let mint = format!("{{\"credential\":\"{credential}\"}}");
    let (status, body) = request(&first.url, "POST", "/api/v1/token", Some(&mint));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"token\""));
    let status = first.sigterm();
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");

    // Restart on the same data dir: no new credential, the old one works.
    let mut second = start(dir.path(), &[]);
    assert!(
        second.credential.is_none(),
        "the credential is shown only once"
    );
    let (status, _) = request(&second.url, "POST", "/api/v1/token", Some(&mint));
    assert_eq!(status, 200);
    assert!(second.sigterm().success());
}

#[test]
fn help_documents_env_and_config() {
    let out = command().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "CUSTODY_DATA_DIR",
        "CUSTODY_DATABASE_URL",
        "CUSTODY_LISTEN",
        "CUSTODY_TLS_CERT",
        "--config",
        "CUSTODY_LOG_FORMAT",
        "/metrics",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "token_ttl_seconds = 7200\n").unwrap();
    let out = command()
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token_ttl_seconds"), "{err}");
}

#[test]
fn tls_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ])
        .output()
        .expect("openssl CLI generates the test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let addr = s.url.trim_start_matches("https://").to_string();
    // A real TLS client: openssl s_client, trusting our certificate.
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr,
            "-CAfile",
            cert.to_str().unwrap(),
            "-verify_return_error",
            "-quiet",
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    client
        .stdin
        .as_mut()
        .unwrap()
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let out = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // plain HTTP to the TLS port is not served
    let plain =
        std::panic::catch_unwind(|| request(&format!("http://{addr}"), "GET", "/healthz", None));
    assert!(plain.map(|(s, _)| s != 200).unwrap_or(true));
    assert!(s.sigterm().success());
}
