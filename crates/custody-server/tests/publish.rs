//! Publish and sign wired to custody-repo: create a repository with offline
//! root/targets keys, sign its drafts through the API, upload + stage as
//! a CI identity (OIDC ID token from a local issuer), publish as another (409 until the offline targets key
//! signs), then verify what the server hosts with custody-tuf, the client's
//! own verification code. Also: signatures that don't verify are refused,
//! and a yank removes the target in a new targets version.

mod common;

use common::repo::{client_view, offline_keys, sign};
use common::{start_with, TestServer};
use serde_json::{json, Value};

/// A local OIDC issuer (discovery + JWKS on loopback) with one P-256 key;
/// returns its URL and a function minting CI ID tokens.
async fn oidc_issuer() -> (String, jsonwebtoken::EncodingKey) {
    use axum::routing::get;
    use base64::Engine;
    use ring::signature::KeyPair;
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "ci1",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
    let jwks = json!({ "keys": [jwk] });
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route("/keys", get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()))
}

fn ci_provider(issuer: &str) -> custody_server::OidcProviderConfig {
    custody_server::OidcProviderConfig {
        issuer: issuer.into(),
        audience: "custody".into(),
        jwks_cache_seconds: 600,
        jwks_min_refetch_seconds: 600,
        leeway_seconds: 60,
        rules: vec![custody_server::OidcRule {
            name: "app builds on main".into(),
            claims: [
                ("repository".to_string(), "acme/app".to_string()),
                ("ref".to_string(), "refs/heads/main".to_string()),
            ]
            .into(),
            scopes: vec!["target:upload@app".into(), "target:stage@app".into()],
        }],
    }
}

async fn ci_token(s: &TestServer, issuer: &str, key: &jsonwebtoken::EncodingKey) -> String {
    let t = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": issuer, "aud": "custody", "sub": "repo:acme/app:ref:refs/heads/main",
        "iat": t, "nbf": t, "exp": t + 300,
        "repository": "acme/app", "ref": "refs/heads/main",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ci1".into());
    let id_token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let r = common::http(
        "POST",
        &format!("{}/api/v1/token", s.url),
        &[("content-type", "application/json")],
        Some(serde_json::to_vec(&json!({ "oidc_token": id_token })).unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "OIDC exchange: {}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sign_upload_stage_publish_sign_verify_yank() {
    let keydir = tempfile::tempdir().unwrap();
    let pass = keydir.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let (issuer, ci_key) = oidc_issuer().await;
    let s = start_with(|c| {
        c.key_passphrase_file = Some(pass.clone());
        c.oidc = vec![ci_provider(&issuer)];
    })
    .await;
    let (o, root_key, targets_key) = offline_keys();

    // Creating needs fleet:admin; the server makes its online keys.
    let admin = s.token(&s.bootstrap, None).await;
    let body = json!({
        "root": {"keys": [root_key], "threshold": 1},
        "targets": {"keys": [targets_key], "threshold": 1},
    });
    let r = s
        .api("POST", "/api/v1/repos/app", &admin, Some(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert!(created["online_keys"]["timestamp"].is_string());
    let r = s.api("POST", "/api/v1/repos/app", &admin, Some(body)).await;
    assert_eq!(r.status, 409, "second create: {}", r.text());
    // Online key files are encrypted PKCS#8, mode 0600.
    let kf = s.dir.path().join("keys/app/timestamp.pem");
    let pem = std::fs::read_to_string(&kf).unwrap();
    assert!(pem.contains("ENCRYPTED PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kf).unwrap().permissions().mode() & 0o077,
        0
    );

    let signer = s
        .credential(
            "offline signer",
            &["role:sign:root@app", "role:sign:targets@app"],
        )
        .await;
    let st = s.token(&signer, None).await;
    // A signature by a key outside the role is refused, nothing merged.
    let r = sign(&s, &st, &o, "root", &o.stranger).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("no new signature"), "{}", r.text());
    // Root first (not live yet: targets still unsigned), then targets.
    let r = sign(&s, &st, &o, "root", &o.root).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["merged"], json!([o.root]));
    assert_eq!(r.json()["published"], Value::Null);
    let r = sign(&s, &st, &o, "targets", &o.targets).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["published"]["version"].is_i64(), "{}", r.text());
    let (_, files) = client_view(&s).await;
    assert!(files.is_empty());

    // CI (OIDC workload identity) uploads and stages; a separate
    // publisher publishes.
    let ct = ci_token(&s, &issuer, &ci_key).await;
    let data = b"firmware image 1.2.3".repeat(1000);
    let sha = common::sha256_hex(&data);
    let r = common::http(
        "PUT",
        &format!("{}/api/v1/repos/app/blobs/{sha}", s.url),
        &[("authorization", &format!("Bearer {ct}"))],
        Some(data.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .api(
            "PUT",
            "/api/v1/repos/app/targets/fw/app.bin",
            &ct,
            Some(json!({"blob_sha256": sha, "custom": {"hw": "rev-b"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // CI cannot publish.
    let r = s.api("POST", "/api/v1/repos/app/publish", &ct, None).await;
    assert_eq!(r.status, 403);

    let publisher = s.credential("publisher", &["repo:publish@app"]).await;
    let pt = s.token(&publisher, None).await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"], "signatures_missing");
    assert!(r.text().contains(&o.targets), "names the key: {}", r.text());
    // Nothing new is live yet.
    assert!(client_view(&s).await.1.is_empty());

    let r = sign(&s, &st, &o, "targets", &o.targets).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["published"]["version"].is_i64(), "{}", r.text());
    let (t, files) = client_view(&s).await;
    assert_eq!(files, vec![("fw/app.bin".to_string(), data.clone())]);
    let tf = t.targets().unwrap().targets.get("fw/app.bin").unwrap();
    assert_eq!(tf.custom, Some(json!({"hw": "rev-b"})));

    // Publishing again with nothing new renews snapshot/timestamp only: it
    // goes live at once (online keys), the targets version stays.
    let tv = t.targets().unwrap().version;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["added"], json!([]));
    let (t2, _) = client_view(&s).await;
    assert_eq!(t2.targets().unwrap().version, tv);

    // Yank: a new targets version without the target, reason recorded.
    let revoker = s.credential("revoker", &["target:revoke@app"]).await;
    let rt = s.token(&revoker, None).await;
    let r = s
        .api(
            "POST",
            "/api/v1/repos/app/yanks",
            &rt,
            Some(json!({"target": "fw/app.bin", "reason": "boot loop"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = sign(&s, &st, &o, "targets", &o.targets).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (t3, files) = client_view(&s).await;
    assert!(files.is_empty());
    assert!(t3.targets().unwrap().version > tv);

    // The housekeeping renewal re-signs the timestamp with the online key
    // when it is close to expiry (forced here with a 2-day window).
    let ts_before = t3.timestamp().unwrap().version;
    let renew = |within| {
        tokio::task::block_in_place(|| {
            custody_server::testing::renew_timestamp(&s.server, "app", within, chrono::Utc::now())
        })
        .unwrap()
    };
    let renewed = renew(chrono::Duration::days(2));
    assert_eq!(renewed, Some(ts_before + 1));
    let (t4, _) = client_view(&s).await;
    assert_eq!(t4.timestamp().unwrap().version, ts_before + 1);
    // Not due yet: nothing happens.
    let again = renew(chrono::Duration::hours(1));
    assert_eq!(again, None);

    // A blob changed on disk after its verified upload is never signed.
    let evil = b"second release".to_vec();
    let evil_sha = common::sha256_hex(&evil);
    let r = common::http(
        "PUT",
        &format!("{}/api/v1/repos/app/blobs/{evil_sha}", s.url),
        &[("authorization", &format!("Bearer {ct}"))],
        Some(evil.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .api(
            "PUT",
            "/api/v1/repos/app/targets/fw/next.bin",
            &ct,
            Some(json!({ "blob_sha256": evil_sha })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let blob = s
        .dir
        .path()
        .join("blobs/sha256")
        .join(&evil_sha[..2])
        .join(&evil_sha);
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, b"tampered on disk").unwrap();
    let draft_before = s
        .api("GET", "/api/v1/repos/app/roles/targets", &pt, None)
        .await
        .body;
    let r = s.api("POST", "/api/v1/repos/app/publish", &pt, None).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("refusing to publish"), "{}", r.text());
    let draft_after = s
        .api("GET", "/api/v1/repos/app/roles/targets", &pt, None)
        .await
        .body;
    assert_eq!(draft_before, draft_after, "nothing saved");

    let r = s.api("GET", "/api/v1/repos/app/publishes", &pt, None).await;
    assert!(r.json().as_array().unwrap().len() >= 4, "{}", r.text());
}
