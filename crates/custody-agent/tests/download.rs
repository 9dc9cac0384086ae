//! Payload download against a real loopback HTTP server: verified while
//! streaming, resumed with `Range` after a dropped connection, restarted
//! when the server ignores `Range`, and refused for tampered or oversized
//! bodies.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custody_agent::download::{download_payload, http_agent, DownloadConfig, DownloadError};
use custody_tuf::TargetFile;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// first request: send half the body, then fail the stream; honour Range
    DropThenRange,
    /// first request dropped; ignore Range afterwards (always 200)
    DropThenIgnoreRange,
    /// serve these bytes as they are
    Plain,
}

#[derive(Clone)]
struct Srv {
    data: Arc<Vec<u8>>,
    mode: Mode,
    log: Arc<Mutex<Vec<Option<String>>>>,
}

async fn handler(State(s): State<Srv>, headers: HeaderMap) -> Response {
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let n = {
        let mut log = s.log.lock().unwrap();
        log.push(range.clone());
        log.len()
    };
    let len = s.data.len();
    if n == 1 && s.mode != Mode::Plain {
        let half = axum::body::Bytes::from(s.data[..len / 2].to_vec());
        // half the body, a pause (so it reaches the client), then the
        // connection breaks
        let stream = futures_util::stream::unfold(0u8, move |step| {
            let half = half.clone();
            async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(half), 1)),
                    1 => {
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        Some((Err(std::io::Error::other("connection dropped")), 2))
                    }
                    _ => None,
                }
            }
        });
        return Response::builder()
            .header("content-length", len.to_string())
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if let (Some(r), Mode::DropThenRange) = (&range, s.mode) {
        let start: usize = r
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        return (
            StatusCode::PARTIAL_CONTENT,
            [("content-range", format!("bytes {start}-{}/{len}", len - 1))],
            s.data[start..].to_vec(),
        )
            .into_response();
    }
    s.data.as_ref().clone().into_response()
}

fn serve(data: Vec<u8>, mode: Mode) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let srv = Srv {
        data: Arc::new(data),
        mode,
        log: log.clone(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(handler).with_state(srv);
            axum::serve(l, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}/payload"), log)
}

fn info(data: &[u8]) -> TargetFile {
    TargetFile {
        length: data.len() as u64,
        hashes: [(
            "sha256".to_owned(),
            hex::encode(ring::digest::digest(&ring::digest::SHA256, data)),
        )]
        .into(),
        custom: None,
        unknown: Default::default(),
    }
}

fn data() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

fn fetch(url: &str, signed: &TargetFile) -> (Result<(), DownloadError>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("p");
    let cfg = DownloadConfig::default();
    let r = download_payload(&http_agent(&cfg), url, "app.img", signed, &dest, &cfg);
    (r, std::fs::read(&dest).unwrap_or_default())
}

#[test]
fn dropped_connection_resumes_with_range() {
    let d = data();
    let (url, log) = serve(d.clone(), Mode::DropThenRange);
    let (r, got) = fetch(&url, &info(&d));
    r.unwrap();
    assert_eq!(got, d);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0], None);
    let r = log[1].clone().expect("second request carries a Range");
    assert!(r.starts_with("bytes=") && r != "bytes=0-", "{r}");
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let d = data();
    let (url, log) = serve(d.clone(), Mode::DropThenIgnoreRange);
    let (r, got) = fetch(&url, &info(&d));
    r.unwrap();
    assert_eq!(got, d);
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[test]
fn tampered_body_is_refused_as_an_attack() {
    let d = data();
    let mut evil = d.clone();
    evil[1234] ^= 1;
    let (url, _) = serve(evil, Mode::Plain);
    let (r, _) = fetch(&url, &info(&d));
    let e = r.unwrap_err();
    assert!(e.is_attack(), "{e}");
    assert!(
        e.to_string().contains("differs from the signed hash"),
        "{e}"
    );
}

#[test]
fn body_longer_than_signed_is_refused_without_reading_it_all() {
    let d = data();
    let (url, _) = serve(d.clone(), Mode::Plain);
    let (r, got) = fetch(&url, &info(&d[..1000]));
    let e = r.unwrap_err();
    assert!(e.is_attack(), "{e}");
    assert!(got.len() <= 1000, "{}", got.len());
}
