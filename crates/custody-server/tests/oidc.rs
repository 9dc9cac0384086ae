//! Workload identity federation against a local OIDC issuer: discovery and
//! JWKS served by axum on loopback, ES256 and RS256 keys generated here.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use common::{http, start_with, TestServer};
use custody_server::{OidcProviderConfig, OidcRule};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair;
use serde_json::{json, Value};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Issuer {
    url: String,
    ec: EncodingKey,
    ec_other: EncodingKey,
    rsa: EncodingKey,
    jwks_fetches: Arc<AtomicUsize>,
}

fn ec_key() -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

/// RSA keys come from the openssl CLI (ring cannot generate RSA keys).
fn rsa_key(dir: &std::path::Path) -> (EncodingKey, Value) {
    let pem = dir.join("rsa.pem");
    let der = dir.join("rsa.der");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl CLI is needed to generate the RSA test key");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "genrsa",
        "-traditional",
        "-out",
        pem.to_str().unwrap(),
        "2048",
    ]);
    run(&[
        "rsa",
        "-in",
        pem.to_str().unwrap(),
        "-traditional",
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let modulus = String::from_utf8(run(&[
        "rsa",
        "-in",
        pem.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]))
    .unwrap();
    let n = hex::decode(modulus.trim().trim_start_matches("Modulus=")).unwrap();
    let jwk = json!({"kty": "RSA", "alg": "RS256", "use": "sig", "n": b64(&n), "e": "AQAB"});
    (EncodingKey::from_rsa_der(&std::fs::read(der).unwrap()), jwk)
}

async fn issuer(dir: &std::path::Path) -> Issuer {
    let (ec, mut ec_jwk) = ec_key();
    let (ec_other, _) = ec_key();
    let (rsa, mut rsa_jwk) = rsa_key(dir);
    ec_jwk["kid"] = json!("ec1");
    rsa_jwk["kid"] = json!("rsa1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
    let jwks = json!({"keys": [ec_jwk, rsa_jwk, {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}]});
    let counter = fetches.clone();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route(
            "/keys",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { Json(jwks) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Issuer {
        url,
        ec,
        ec_other,
        rsa,
        jwks_fetches: fetches,
    }
}

fn provider(issuer: &str) -> OidcProviderConfig {
    let rule = |name: &str, claims: &[(&str, &str)], scopes: &[&str]| OidcRule {
        name: name.into(),
        claims: claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    OidcProviderConfig {
        issuer: issuer.into(),
        audience: "custody".into(),
        jwks_cache_seconds: 600,
        jwks_min_refetch_seconds: 600,
        leeway_seconds: 60,
        rules: vec![
            rule(
                "app builds on main",
                &[("repository", "acme/app"), ("ref", "refs/heads/main")],
                &["target:upload@app", "target:stage@app"],
            ),
            rule(
                "app release workflow",
                &[
                    ("repository", "acme/app"),
                    (
                        "job_workflow_ref",
                        "acme/app/.github/workflows/release.yml@refs/tags/v*",
                    ),
                ],
                &["repo:publish@app"],
            ),
        ],
    }
}

fn id_token(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn ci_claims(iss: &str) -> Value {
    let t = now();
    json!({
        "iss": iss, "aud": "custody", "sub": "repo:acme/app:ref:refs/heads/main",
        "iat": t, "nbf": t, "exp": t + 300,
        "repository": "acme/app", "ref": "refs/heads/main",
        "job_workflow_ref": "acme/app/.github/workflows/build.yml@refs/heads/main",
    })
}

async fn exchange(s: &TestServer, token: &str) -> common::Resp {
    http(
        "POST",
        &format!("{}/api/v1/token", s.url),
        &[("content-type", "application/json")],
        Some(serde_json::to_vec(&json!({"oidc_token": token})).unwrap()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let iss = issuer(dir.path()).await;
    let s = start_with(|c| c.oidc = vec![provider(&iss.url)]).await;
    let claims = ci_claims(&iss.url);

    // ES256 and RS256 both accepted; scopes come from the matching rule
    for (key, alg, kid) in [
        (&iss.ec, Algorithm::ES256, "ec1"),
        (&iss.rsa, Algorithm::RS256, "rsa1"),
    ] {
        let r = exchange(&s, &id_token(key, alg, kid, &claims)).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
        let body = r.json();
        assert_eq!(
            body["scopes"],
            json!(["target:stage@app", "target:upload@app"])
        );
        assert!(body["subject"]
            .as_str()
            .unwrap()
            .contains("repo:acme/app:ref:refs/heads/main"));
        // the minted token works for what it grants, and only that
        let t = body["token"].as_str().unwrap();
        assert_eq!(
            s.api("GET", "/api/v1/repos/app/blobs", t, None)
                .await
                .status,
            200
        );
        assert_eq!(
            s.api("POST", "/api/v1/repos/app/publish", t, None)
                .await
                .status,
            403
        );
    }
    // JWKS fetched once and cached
    assert_eq!(iss.jwks_fetches.load(Ordering::SeqCst), 1);

    let mut attacks: Vec<(&str, String, u16)> = Vec::new();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = ci_claims(&iss.url);
        f(&mut c);
        c
    };
    attacks.push((
        "wrong audience",
        id_token(
            &iss.ec,
            Algorithm::ES256,
            "ec1",
            &with(&|c| c["aud"] = json!("other")),
        ),
        401,
    ));
    attacks.push((
        "expired",
        id_token(
            &iss.ec,
            Algorithm::ES256,
            "ec1",
            &with(&|c| {
                c["exp"] = json!(now() - 3600);
                c["iat"] = json!(now() - 4000);
                c["nbf"] = json!(now() - 4000);
            }),
        ),
        401,
    ));
    attacks.push((
        "not yet valid",
        id_token(
            &iss.ec,
            Algorithm::ES256,
            "ec1",
            &with(&|c| c["nbf"] = json!(now() + 3600)),
        ),
        401,
    ));
    attacks.push((
        "issued in the future",
        id_token(
            &iss.ec,
            Algorithm::ES256,
            "ec1",
            &with(&|c| c["iat"] = json!(now() + 3600)),
        ),
        401,
    ));
    attacks.push((
        "unconfigured issuer",
        id_token(
            &iss.ec,
            Algorithm::ES256,
            "ec1",
            &with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        401,
    ));
    attacks.push((
        "signed by another key under a known kid",
        id_token(&iss.ec_other, Algorithm::ES256, "ec1", &claims),
        401,
    ));
    attacks.push((
        "alg/key mismatch (RS256 header on the EC kid)",
        id_token(&iss.rsa, Algorithm::RS256, "ec1", &claims),
        401,
    ));
    attacks.push((
        "HS256 with the symmetric JWK",
        id_token(
            &EncodingKey::from_secret(b"secret"),
            Algorithm::HS256,
            "sym",
            &claims,
        ),
        401,
    ));
    attacks.push((
        "claims match no rule",
        id_token(
            &iss.ec,
            Algorithm::ES256,
            "ec1",
            &with(&|c| c["repository"] = json!("acme/other")),
        ),
        403,
    ));
    let valid = id_token(&iss.ec, Algorithm::ES256, "ec1", &claims);
    let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["repository"] = json!("acme/app");
    payload["ref"] = json!("refs/tags/v9");
    payload["job_workflow_ref"] = json!("acme/app/.github/workflows/release.yml@refs/tags/v9");
    parts[1] = b64(&serde_json::to_vec(&payload).unwrap());
    attacks.push(("tampered payload", parts.join("."), 401));

    for (what, token, expect) in &attacks {
        let r = exchange(&s, token).await;
        assert_eq!(r.status, *expect, "{what}: {}", r.text());
    }

    // A token matching both rules would get upload and publish for app:
    // separation of duties refuses it.
    let both = with(&|c| {
        c["job_workflow_ref"] = json!("acme/app/.github/workflows/release.yml@refs/tags/v1.0");
    });
    let r = exchange(&s, &id_token(&iss.ec, Algorithm::ES256, "ec1", &both)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("separation of duties"));

    // The release workflow alone (not on main) may publish.
    let release = with(&|c| {
        c["ref"] = json!("refs/tags/v1.0");
        c["job_workflow_ref"] = json!("acme/app/.github/workflows/release.yml@refs/tags/v1.0");
    });
    let r = exchange(&s, &id_token(&iss.ec, Algorithm::ES256, "ec1", &release)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["scopes"], json!(["repo:publish@app"]));

    // Unknown kids: one refetch, then bounded by jwks_min_refetch_seconds.
    let before = iss.jwks_fetches.load(Ordering::SeqCst);
    for kid in ["k-unknown-1", "k-unknown-2", "k-unknown-3"] {
        let r = exchange(&s, &id_token(&iss.ec, Algorithm::ES256, kid, &claims)).await;
        assert_eq!(r.status, 401);
    }
    let after = iss.jwks_fetches.load(Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "unknown kids refetched {} times",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_issuer_is_a_gateway_error_and_oidc_off_is_a_bad_request() {
    let s = start_with(|c| c.oidc = vec![provider("http://127.0.0.1:9")]).await;
    let (key, _) = ec_key();
    let r = exchange(
        &s,
        &id_token(
            &key,
            Algorithm::ES256,
            "ec1",
            &ci_claims("http://127.0.0.1:9"),
        ),
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.text());

    let plain = common::start().await;
    let r = exchange(&plain, "a.b.c").await;
    assert_eq!(r.status, 400);
}
