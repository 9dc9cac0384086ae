//! The scale-path blob store against a real S3 protocol peer: moto's S3
//! server (PyPI `moto[server]`, installed into .venv by ./scripts/test) on
//! loopback. Upload, stage, publish and a client-side verification go
//! through S3; a hash-mismatched upload leaves nothing in the bucket; a
//! blob swapped in the bucket cannot be published.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::repo::{client_view, create_live_repo, sign, upload_and_stage};
use common::{http, start_with};
use serde_json::json;

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("CUSTODY_PYTHON") {
        return p.into();
    }
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = ws.join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python venv at {}: run ./scripts/test once (it installs moto[server])",
        p.display()
    );
    p
}

async fn moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import moto.server"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import moto.server: run ./scripts/test (it installs moto[server])",
        py.display()
    );
    let child = Command::new(&py)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto S3 server");
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http("PUT", &format!("{}/custody-blobs", m.url), &[], None).await;
    assert_eq!(r.status, 200, "create bucket: {}", r.text());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_live_in_s3_and_are_rehashed_on_the_way_back() {
    let m = moto().await;
    let keydir = tempfile::tempdir().unwrap();
    let pass = keydir.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let s = start_with(|c| {
        c.key_passphrase_file = Some(pass.clone());
        c.blob_store_url = Some("s3://custody-blobs/prod".into());
        c.blob_store_options = [
            ("aws_endpoint", m.url.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    })
    .await;
    let o = create_live_repo(&s, "app").await;
    let ci = s
        .credential("ci", &["target:upload@app", "target:stage@app"])
        .await;
    let ct = s.token(&ci, None).await;

    // 9 MiB: above the single-PUT size, so it goes up as a multipart upload.
    let data: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let sha = common::sha256_hex(&data);
    let r = http(
        "PUT",
        &format!("{}/api/v1/repos/app/blobs/{sha}", s.url),
        &[("authorization", &format!("Bearer {ct}"))],
        Some(data.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The object is in the bucket under its hash, not on the local disk.
    let key = format!("{}/custody-blobs/prod/sha256/{}/{sha}", m.url, &sha[..2]);
    let r = http("GET", &key, &[], None).await;
    assert_eq!(r.status, 200, "object {key}");
    assert_eq!(r.body, data);
    assert!(!s.dir.path().join("blobs/sha256").join(&sha[..2]).exists());

    // A body that does not hash to its declared name never reaches S3.
    let bad = common::sha256_hex(b"something else");
    let r = http(
        "PUT",
        &format!("{}/api/v1/repos/app/blobs/{bad}", s.url),
        &[("authorization", &format!("Bearer {ct}"))],
        Some(b"not something else".to_vec()),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = http(
        "GET",
        &format!("{}/custody-blobs/prod/sha256/{}/{bad}", m.url, &bad[..2]),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404);

    // Stage, publish, sign targets offline: the client verifies the bytes.
    let r = s
        .api(
            "PUT",
            "/api/v1/repos/app/targets/fw/big.bin",
            &ct,
            Some(json!({ "blob_sha256": sha })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let publisher = s.credential("publisher", &["repo:publish@app"]).await;
    let pt = s.token(&publisher, None).await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let signer = s
        .credential("targets signer", &["role:sign:targets@app"])
        .await;
    let st = s.token(&signer, None).await;
    let r = sign(&s, &st, &o, "targets", &o.targets).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, files) = client_view(&s).await;
    assert_eq!(files, vec![("fw/big.bin".to_string(), data.clone())]);

    // Someone with bucket access swaps a staged blob: the publish that
    // would pick it up refuses, and what is served stays as it was.
    let evil = b"evil".repeat(100);
    let data2 = b"release two".repeat(100);
    let sha2 = common::sha256_hex(&data2);
    upload_and_stage(&s, &ct, "fw/two.bin", &data2).await;
    {
        use object_store::ObjectStoreExt;
        let bucket = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&m.url)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name("custody-blobs")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let key = object_store::path::Path::from(format!("prod/sha256/{}/{sha2}", &sha2[..2]));
        bucket
            .put(&key, object_store::PutPayload::from(evil))
            .await
            .expect("swap the object");
    }
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 422, "publish of a swapped blob: {}", r.text());
    assert!(r.text().contains("hash mismatch"), "{}", r.text());
    let (_, files) = client_view(&s).await;
    assert_eq!(files, vec![("fw/big.bin".to_string(), data)]);
}
