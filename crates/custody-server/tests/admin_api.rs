//! Admin API behaviour: blob upload (streaming, size limit, hash check),
//! blob listing, staging, yanks, and publish/sign before a repository exists.

mod common;

use common::{http, sha256_hex, start_with, TestServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn upload(s: &TestServer, token: &str, repo: &str, sha: &str, data: Vec<u8>) -> common::Resp {
    let auth = format!("Bearer {token}");
    http(
        "PUT",
        &format!("{}/api/v1/repos/{repo}/blobs/{sha}", s.url),
        &[
            ("authorization", &auth),
            ("content-type", "application/octet-stream"),
        ],
        Some(data),
    )
    .await
}

fn tmp_is_empty(s: &TestServer) -> bool {
    std::fs::read_dir(s.dir.path().join("tmp")).unwrap().count() == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_stage_yank_and_stubs() {
    let s = start_with(|c| c.max_blob_bytes = 64 * 1024).await;
    let cred = s
        .credential(
            "ci",
            &["target:upload@app", "target:stage@app", "target:revoke@app"],
        )
        .await;
    let t = s.token(&cred, None).await;

    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let sha = sha256_hex(&data);
    let r = upload(&s, &t, "app", &sha, data.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["size"], 50_000);
    let stored = s.dir.path().join("blobs/sha256").join(&sha[..2]).join(&sha);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        data,
        "content-addressed file"
    );

    // hash mismatch: 422, nothing stored, no temp left
    let wrong = sha256_hex(b"something else");
    let r = upload(&s, &t, "app", &wrong, data.clone()).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains(&sha),
        "names the actual hash: {}",
        r.text()
    );
    assert_eq!(
        s.api("GET", &format!("/api/v1/repos/app/blobs/{wrong}"), &t, None)
            .await
            .status,
        404
    );
    assert!(tmp_is_empty(&s));

    // too large by Content-Length
    let big = vec![0u8; 64 * 1024 + 1];
    let r = upload(&s, &t, "app", &sha256_hex(&big), big.clone()).await;
    assert_eq!(r.status, 413, "{}", r.text());

    // too large while streaming (chunked, no Content-Length)
    let mut sock = tokio::net::TcpStream::connect(s.server.addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/repos/app/blobs/{} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {t}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        sha256_hex(&big)
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for chunk in big.chunks(16 * 1024) {
        let frame = format!("{:x}\r\n", chunk.len());
        if sock.write_all(frame.as_bytes()).await.is_err()
            || sock.write_all(chunk).await.is_err()
            || sock.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = sock.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(tmp_is_empty(&s));

    // bad hash syntax
    let r = upload(&s, &t, "app", "../../etc", b"x".to_vec()).await;
    assert!(r.status == 400 || r.status == 404, "{}", r.status);

    // listing and inspecting
    let r = s.api("GET", "/api/v1/repos/app/blobs", &t, None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = s
        .api("GET", &format!("/api/v1/repos/app/blobs/{sha}"), &t, None)
        .await;
    assert_eq!(r.json()["sha256"], sha.as_str());
    assert!(r.json()["uploaded_by"].as_str().unwrap().contains("ci"));

    // staging needs a blob uploaded to this repository
    let r = s
        .api(
            "PUT",
            "/api/v1/repos/app/targets/fw/app.bin",
            &t,
            Some(json!({"blob_sha256": "ab".repeat(32)})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = s
        .api(
            "PUT",
            "/api/v1/repos/app/targets/fw/app.bin",
            &t,
            Some(json!({"blob_sha256": sha, "custom": {"hardware": ["rev-b"]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["length"], 50_000);
    let r = s
        .api("GET", "/api/v1/repos/app/targets/fw/app.bin", &t, None)
        .await;
    assert_eq!(r.json()["custom"], json!({"hardware": ["rev-b"]}));
    let r = s.api("GET", "/api/v1/repos/app/targets", &t, None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    for (name, body) in [
        ("fw/app.bin", json!({"blob_sha256": sha, "custom": [1]})),
        ("fw/%2E%2E/x", json!({"blob_sha256": sha})),
        ("fw/.hidden", json!({"blob_sha256": sha})),
        ("fw/app.bin", json!({"blob_sha256": sha, "extra": 1})),
    ] {
        let r = s
            .api(
                "PUT",
                &format!("/api/v1/repos/app/targets/{name}"),
                &t,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{name} {body}: {}", r.text());
    }

    // yank with reason
    let r = s
        .api(
            "POST",
            "/api/v1/repos/app/yanks",
            &t,
            Some(json!({"target": "fw/app.bin", "reason": "boot loop on rev-b"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .api(
            "POST",
            "/api/v1/repos/app/yanks",
            &t,
            Some(json!({"target": "fw/app.bin", "reason": "  "})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s.api("GET", "/api/v1/repos/app/yanks", &t, None).await;
    let yanks = r.json();
    assert_eq!(yanks.as_array().unwrap().len(), 1);
    assert_eq!(yanks[0]["reason"], "boot loop on rev-b");

    // invalid repository names are refused before anything else
    let r = s.api("GET", "/api/v1/repos/App/blobs", &t, None).await;
    assert_eq!(r.status, 400);

    // publish and sign before the repository is created: 404 naming it
    let p = s
        .credential("publisher", &["repo:publish@app", "role:sign:targets@app"])
        .await;
    let pt = s.token(&p, None).await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("create it first"), "{}", r.text());
    let r = s
        .api(
            "POST",
            "/api/v1/repos/app/roles/targets/signatures",
            &pt,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s.api("GET", "/api/v1/repos/app/publishes", &pt, None).await;
    assert_eq!(r.json(), json!([]));
}

/// The inventory endpoint: a bad window or reference time is a 400 naming
/// it; the answer lists the credentials in force with their age, most
/// urgent first, and an old credential is due for rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_answers_and_refuses_bad_parameters() {
    let s = common::start().await;
    let cred = s.credential("inv", &["inventory:read"]).await;
    let t = s.token(&cred, None).await;
    for (q, want) in [
        ("window=root%3D3w", "unit"),
        ("window=nope%3D1d", "unknown kind"),
        ("at=yesterday", "inventory"),
    ] {
        let r = s
            .api("GET", &format!("/api/v1/inventory?{q}"), &t, None)
            .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.text().contains(want), "{q}: {}", r.text());
    }
    let r = s.api("GET", "/api/v1/inventory", &t, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "credential")
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"inv"), "{v}");
    // Two years from now every credential is older than its 365 days.
    let later = (chrono::Utc::now() + chrono::Duration::days(730))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = s
        .api("GET", &format!("/api/v1/inventory?at={later}"), &t, None)
        .await;
    let v = r.json();
    assert_eq!(v["items"][0]["status"], "renew", "{v}");
    assert!(v["counts"]["renew"].as_u64().unwrap() >= 1, "{v}");
}
