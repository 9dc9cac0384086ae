//! Repository hosting against a real server on loopback: content types,
//! strong ETags and 304, single ranges (206/416, If-Range), cache headers,
//! path traversal, and atomic generation switches.

mod common;

use common::{sha256_hex, start, TestServer};
use custody_server::testing::{Hosting, CACHE_IMMUTABLE, CACHE_REVALIDATE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn publish(server: &TestServer, files: &[(&str, &[u8])], targets: &[(&str, &[u8])]) -> String {
    let hosting = custody_server::testing::hosting(&server.server);
    let g = hosting.begin_generation("app").unwrap();
    g.inherit_current().unwrap();
    for (name, bytes) in files {
        g.write_metadata(name, bytes).unwrap();
    }
    for (name, bytes) in targets {
        g.write_target(name, bytes).unwrap();
    }
    g.commit(hosting).unwrap()
}

fn hashed(name: &str, data: &[u8]) -> String {
    format!("{}.{name}", sha256_hex(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_cache_headers_and_etags() {
    let s = start().await;
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let target = hashed("app.bin", &payload);
    publish(
        &s,
        &[
            ("1.root.json", b"{\"root\":1}"),
            ("root.json", b"{\"root\":1}"),
            ("3.snapshot.json", b"{\"snapshot\":3}"),
            ("timestamp.json", b"{\"timestamp\":7}"),
            ("2.a%2Fb.json", b"{\"delegated\":\"a/b\"}"),
        ],
        &[(&target, &payload), ("notes/plain.txt", b"plain")],
    );

    let r = s.get("/repos/app/metadata/timestamp.json", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{\"timestamp\":7}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some(CACHE_REVALIDATE));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let etag = r.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong etag: {etag}"
    );

    for (inm, expect) in [
        (etag.clone(), 304),
        (format!("W/{etag}"), 304),
        (format!("\"nope\", {etag}"), 304),
        ("*".to_string(), 304),
        ("\"nope\"".to_string(), 200),
    ] {
        let r = s
            .get(
                "/repos/app/metadata/timestamp.json",
                &[("if-none-match", &inm)],
            )
            .await;
        assert_eq!(r.status, expect, "If-None-Match: {inm}");
        if expect == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_eq!(r.header("cache-control"), Some(CACHE_REVALIDATE));
        }
    }

    for (path, cc) in [
        ("/repos/app/metadata/1.root.json", CACHE_IMMUTABLE),
        ("/repos/app/metadata/3.snapshot.json", CACHE_IMMUTABLE),
        ("/repos/app/metadata/root.json", CACHE_REVALIDATE),
        // delegated role "a/b": its file name is percent-encoded on disk and
        // in the URL (python-tuf / custody-tuf convention)
        ("/repos/app/metadata/2.a%2Fb.json", CACHE_IMMUTABLE),
    ] {
        let r = s.get(path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some(cc), "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    let r = s.get(&format!("/repos/app/targets/{target}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, payload);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("cache-control"), Some(CACHE_IMMUTABLE));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let tetag = r.header("etag").unwrap().to_string();
    let r = s
        .get(
            &format!("/repos/app/targets/{target}"),
            &[("if-none-match", &tetag)],
        )
        .await;
    assert_eq!(r.status, 304);

    // HEAD: same headers, no body
    let r = common::http(
        "HEAD",
        &format!("{}/repos/app/targets/{target}", s.url),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-length"),
        Some(payload.len().to_string().as_str())
    );
    assert_eq!(r.header("etag"), Some(tetag.as_str()));

    let r = s.get("/repos/app/targets/notes/plain.txt", &[]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"plain".as_slice()));
    assert_eq!(r.header("cache-control"), Some(CACHE_REVALIDATE));

    for missing in [
        "/repos/app/metadata/2.root.json",
        "/repos/app/targets/none.bin",
        "/repos/nope/metadata/timestamp.json",
        "/repos/app/other/x",
        "/repos/app/targets/notes",
    ] {
        assert_eq!(s.get(missing, &[]).await.status, 404, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests() {
    let s = start().await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let target = hashed("big.bin", &payload);
    publish(
        &s,
        &[("timestamp.json", b"0123456789")],
        &[(&target, &payload)],
    );
    let path = format!("/repos/app/targets/{target}");
    let len = payload.len();

    let r = s.get(&path, &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &payload[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("10"));

    let r = s.get(&path, &[("range", "bytes=99990-")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &payload[99_990..]));

    let r = s.get(&path, &[("range", "bytes=-5")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &payload[len - 5..]));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 5, len - 1).as_str())
    );

    // resume in the middle, past the end clamps
    let r = s.get(&path, &[("range", "bytes=50000-999999999")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &payload[50_000..]));

    for bad in [format!("bytes={len}-"), "bytes=-0".to_string()] {
        let r = s.get(&path, &[("range", &bad)]).await;
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
        assert!(r.body.is_empty());
    }

    // several ranges or garbage: whole representation
    for ignored in ["bytes=0-1,5-6", "bytes=9-1", "lines=1-2"] {
        let r = s.get(&path, &[("range", ignored)]).await;
        assert_eq!((r.status, r.body.len()), (200, len), "{ignored}");
    }

    // If-Range: matching strong ETag honours the range, anything else
    // sends the whole (changed) representation.
    let etag = s.get(&path, &[]).await.header("etag").unwrap().to_string();
    let r = s
        .get(&path, &[("range", "bytes=0-0"), ("if-range", &etag)])
        .await;
    assert_eq!((r.status, r.body.len()), (206, 1));
    let r = s
        .get(&path, &[("range", "bytes=0-0"), ("if-range", "\"stale\"")])
        .await;
    assert_eq!((r.status, r.body.len()), (200, len));

    // ranges on in-memory metadata too
    let r = s
        .get(
            "/repos/app/metadata/timestamp.json",
            &[("range", "bytes=2-4")],
        )
        .await;
    assert_eq!((r.status, r.body.as_slice()), (206, b"234".as_slice()));
    let r = s
        .get(
            "/repos/app/metadata/timestamp.json",
            &[("range", "bytes=10-")],
        )
        .await;
    assert_eq!(r.status, 416);
}

/// Raw request line, so no client library normalises the path for us.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_is_rejected() {
    let s = start().await;
    publish(&s, &[("timestamp.json", b"{}")], &[("a.bin", b"a")]);
    // Files that a traversal would reach.
    std::fs::write(s.dir.path().join("repos/app/secret.txt"), b"SECRET").unwrap();
    let addr = s.server.addr;
    for path in [
        "/repos/app/targets/../../../custody.db",
        "/repos/app/targets/..%2F..%2Fsecret.txt",
        "/repos/app/targets/%2e%2e/%2e%2e/secret.txt",
        "/repos/app/targets/%2E%2E/x",
        "/repos/app/targets/a%2Fb",
        "/repos/app/targets/a%5C..%5Csecret.txt",
        "/repos/app/targets//etc/passwd",
        "/repos/app/metadata/..",
        "/repos/app/targets/.hidden",
        "/repos/%2e%2e/app/targets/a.bin",
        "/repos/app/targets/a.bin%00",
    ] {
        let (status, body) = raw_get(addr, path).await;
        assert!(status == 400 || status == 404, "{path}: status {status}");
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("SECRET") && !body.contains("SQLite"),
            "{path} leaked: {body}"
        );
    }
    let (status, _) = raw_get(addr, "/repos/app/targets/a.bin").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_switches_atomically_and_invalidates_the_cache() {
    let s = start().await;
    publish(
        &s,
        &[("timestamp.json", b"{\"v\":1}"), ("1.snapshot.json", b"s1")],
        &[],
    );
    let r1 = s.get("/repos/app/metadata/timestamp.json", &[]).await;
    assert_eq!(r1.body, b"{\"v\":1}");
    publish(
        &s,
        &[("timestamp.json", b"{\"v\":2}"), ("2.snapshot.json", b"s2")],
        &[],
    );
    let r2 = s.get("/repos/app/metadata/timestamp.json", &[]).await;
    assert_eq!(r2.body, b"{\"v\":2}");
    assert_ne!(r1.header("etag"), r2.header("etag"));
    // the old versioned file is still there for clients mid-update
    assert_eq!(
        s.get("/repos/app/metadata/1.snapshot.json", &[]).await.body,
        b"s1"
    );

    // A publisher in another process (here: another Hosting over the same
    // directory) switches `current`; the server notices without being told.
    let other = Hosting::new(s.dir.path().join("repos"), 1 << 20, 1 << 20);
    let g = other.begin_generation("app").unwrap();
    g.write_metadata("timestamp.json", b"{\"v\":3}").unwrap();
    g.commit(&other).unwrap();
    let r3 = s.get("/repos/app/metadata/timestamp.json", &[]).await;
    assert_eq!(r3.body, b"{\"v\":3}");
    // An uncommitted generation is invisible and leaves nothing behind.
    let g = other.begin_generation("app").unwrap();
    g.write_metadata("timestamp.json", b"{\"v\":4}").unwrap();
    let tmp = g.path().to_path_buf();
    drop(g);
    assert!(!tmp.exists());
    assert_eq!(
        s.get("/repos/app/metadata/timestamp.json", &[]).await.body,
        b"{\"v\":3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_streaming_during_switch_gets_consistent_bytes() {
    let s = start().await;
    let size = 24 << 20;
    let old: Vec<u8> = vec![b'A'; size];
    let new: Vec<u8> = vec![b'B'; size];
    publish(&s, &[("timestamp.json", b"1")], &[("big.bin", &old)]);

    let mut sock = tokio::net::TcpStream::connect(s.server.addr).await.unwrap();
    sock.write_all(
        b"GET /repos/app/targets/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    // Read the head and the first bytes of the body, then switch.
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    while got.len() < 256 * 1024 {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }

    // New generation replaces big.bin; the old generation is deleted.
    let hosting = custody_server::testing::hosting(&s.server);
    let g = hosting.begin_generation("app").unwrap();
    g.write_metadata("timestamp.json", b"2").unwrap();
    g.write_target("big.bin", &new).unwrap();
    g.commit(hosting).unwrap();
    assert_eq!(hosting.prune_generations("app", 1).unwrap(), 1);
    // New readers see the new bytes.
    let fresh = s
        .get("/repos/app/targets/big.bin", &[("range", "bytes=0-3")])
        .await;
    assert_eq!(fresh.body, b"BBBB");

    sock.read_to_end(&mut got).await.unwrap();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let body = &got[head_end..];
    assert_eq!(body.len(), size, "full length despite the switch");
    assert!(
        body.iter().all(|b| *b == b'A'),
        "old reader saw bytes of the new generation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_openapi() {
    let s = start().await;
    assert_eq!(s.get("/healthz", &[]).await.status, 200);
    let r = s.get("/readyz", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("sqlite"));
    let _ = s.get("/repos/app/metadata/timestamp.json", &[]).await;
    let m = s.get("/metrics", &[]).await;
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(
        text.contains(
            "custody_http_requests_total{method=\"GET\",route=\"/repos/{*path}\",status=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("custody_http_request_duration_seconds_bucket"));
    let o = s.get("/openapi.json", &[]).await;
    assert_eq!(o.status, 200);
    assert_eq!(o.header("content-type"), Some("application/json"));
    let doc = o.json();
    assert!(doc["paths"]["/api/v1/token"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let s = common::start_with(|c| c.header_read_timeout_seconds = 1).await;
    let mut sock = tokio::net::TcpStream::connect(s.server.addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // never finish the head: the server must give up on us
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "connection still open 10 s after a 1 s header timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}
