//! Admin API authorisation on a real server: token minting, every scope
//! denied outside its grant, expired/tampered/wrong-audience tokens,
//! immediate revocation and rotation, separation of duties, audit.

mod common;

use common::{http, sha256_hex, start, start_with, TestServer};
use custody_server::fuzzing::{Claims, TokenKeys, AUDIENCE, ISSUER};
use serde_json::{json, Value};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One call per guarded endpoint on repository `app`; returns the status.
async fn call(s: &TestServer, endpoint: &str, token: &str) -> u16 {
    let blob = b"blob-bytes".to_vec();
    let sha = sha256_hex(&blob);
    match endpoint {
        "upload" => {
            let auth = format!("Bearer {token}");
            http(
                "PUT",
                &format!("{}/api/v1/repos/app/blobs/{sha}", s.url),
                &[("authorization", &auth)],
                Some(blob),
            )
            .await
            .status
        }
        "stage" => {
            s.api(
                "PUT",
                "/api/v1/repos/app/targets/x.bin",
                token,
                Some(json!({"blob_sha256": sha})),
            )
            .await
            .status
        }
        "publish" => {
            s.api("POST", "/api/v1/repos/app/publish", token, None)
                .await
                .status
        }
        "sign" => {
            s.api(
                "POST",
                "/api/v1/repos/app/roles/targets/signatures",
                token,
                None,
            )
            .await
            .status
        }
        "yank" => {
            s.api(
                "POST",
                "/api/v1/repos/app/yanks",
                token,
                Some(json!({"target": "x.bin", "reason": "broken"})),
            )
            .await
            .status
        }
        "audit" => {
            s.api("GET", "/api/v1/audit?repo=app", token, None)
                .await
                .status
        }
        "fleet" => {
            s.api("GET", "/api/v1/credentials", token, None)
                .await
                .status
        }
        "inventory" => s.api("GET", "/api/v1/inventory", token, None).await.status,
        other => panic!("unknown endpoint {other}"),
    }
}

const ENDPOINTS: &[(&str, &str)] = &[
    ("upload", "target:upload"),
    ("stage", "target:stage"),
    ("publish", "repo:publish"),
    ("sign", "role:sign:targets"),
    ("yank", "target:revoke"),
    ("audit", "audit:read"),
    ("fleet", "fleet:admin"),
    ("inventory", "inventory:read"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scope_is_denied_outside_its_grant() {
    let s = start().await;
    for (granted_endpoint, kind) in ENDPOINTS {
        let scope = if matches!(*kind, "fleet:admin" | "inventory:read") {
            kind.to_string()
        } else {
            format!("{kind}@app")
        };
        let cred = s
            .credential(&format!("only-{granted_endpoint}"), &[&scope])
            .await;
        let token = s.token(&cred, None).await;
        for (endpoint, _) in ENDPOINTS {
            let status = call(&s, endpoint, &token).await;
            if endpoint == granted_endpoint {
                assert_ne!(status, 403, "{scope} must allow {endpoint}");
                assert_ne!(status, 401, "{scope} must allow {endpoint}");
            } else {
                assert_eq!(status, 403, "{scope} must not allow {endpoint}");
            }
        }
        // The same scope bound to another repository allows nothing on app.
        if *kind != "fleet:admin" {
            let other = s
                .credential(
                    &format!("other-{granted_endpoint}"),
                    &[&format!("{kind}@other")],
                )
                .await;
            let token = s.token(&other, None).await;
            assert_eq!(
                call(&s, granted_endpoint, &token).await,
                403,
                "{kind}@other on app"
            );
        }
    }
    // Publish is guarded; authorised, it names the missing repository.
    let publisher = s.credential("publisher", &["repo:publish@app"]).await;
    let t = s.token(&publisher, None).await;
    let r = s.api("POST", "/api/v1/repos/app/publish", &t, None).await;
    assert_eq!(r.status, 404);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_rules() {
    let s = start().await;
    // bootstrap credential: fleet admin + audit reader
    let r = s.mint(&s.bootstrap, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scopes"], json!(["audit:read", "fleet:admin"]));
    let who = s
        .api(
            "GET",
            "/api/v1/whoami",
            body["token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(who.status, 200);
    assert!(who.json()["subject"]
        .as_str()
        .unwrap()
        .contains("bootstrap"));

    // narrowing works, widening does not
    let r = s.mint(&s.bootstrap, Some(&["audit:read"])).await;
    assert_eq!(r.json()["scopes"], json!(["audit:read"]));
    let r = s.mint(&s.bootstrap, Some(&["target:upload@app"])).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("target:upload@app"));

    // ttl bounds: max 1 h
    let mint_ttl = |ttl: u64| {
        let url = format!("{}/api/v1/token", s.url);
        let body =
            serde_json::to_vec(&json!({"credential": s.bootstrap, "ttl_seconds": ttl})).unwrap();
        async move {
            http(
                "POST",
                &url,
                &[("content-type", "application/json")],
                Some(body),
            )
            .await
        }
    };
    assert_eq!(mint_ttl(3600).await.status, 200);
    let r = mint_ttl(3601).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("3600"));

    // wrong secret, garbage, both/neither
    let mut wrong = s.bootstrap.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(s.mint(&wrong, None).await.status, 401);
    assert_eq!(s.mint("cst1.zz.zz", None).await.status, 401);
    let r = http(
        "POST",
        &format!("{}/api/v1/token", s.url),
        &[("content-type", "application/json")],
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");

    // no token, bad scheme
    let r = http("GET", &format!("{}/api/v1/whoami", s.url), &[], None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let r = http(
        "GET",
        &format!("{}/api/v1/whoami", s.url),
        &[("authorization", "Basic abc")],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
}

fn claims(sub: &str, scopes: &[&str], iat: i64, exp: i64) -> Claims {
    Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: sub.into(),
        cred: None,
        cgen: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        iat,
        nbf: iat,
        exp,
        jti: format!("test-{iat}-{exp}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_and_foreign_tokens_are_rejected() {
    let s = start().await;
    let keys = custody_server::testing::token_keys(&s.server);
    let t = now();

    // control: a token we sign ourselves with the server key works
    let ok = keys.sign(&claims("t", &["audit:read"], t, t + 60)).unwrap();
    assert_eq!(s.api("GET", "/api/v1/audit", &ok, None).await.status, 200);

    let expired = keys
        .sign(&claims("t", &["audit:read"], t - 600, t - 60))
        .unwrap();
    let r = s.api("GET", "/api/v1/audit", &expired, None).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("expired"), "{}", r.text());

    let mut future = claims("t", &["audit:read"], t, t + 600);
    future.nbf = t + 300;
    let r = s
        .api("GET", "/api/v1/audit", &keys.sign(&future).unwrap(), None)
        .await;
    assert_eq!(r.status, 401);

    let mut wrong_aud = claims("t", &["audit:read"], t, t + 60);
    wrong_aud.aud = "custody-device".into();
    let r = s
        .api(
            "GET",
            "/api/v1/audit",
            &keys.sign(&wrong_aud).unwrap(),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("audience"), "{}", r.text());

    let mut wrong_iss = claims("t", &["audit:read"], t, t + 60);
    wrong_iss.iss = "someone".into();
    let r = s
        .api(
            "GET",
            "/api/v1/audit",
            &keys.sign(&wrong_iss).unwrap(),
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    // tampered: widen the scopes in the payload, keep the signature
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = ok.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["scopes"] = json!(["fleet:admin", "audit:read"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    let r = s.api("GET", "/api/v1/credentials", &forged, None).await;
    assert_eq!(r.status, 401);

    // signed by another key
    let other = TokenKeys::new(&[9u8; 32]).unwrap();
    let foreign = other
        .sign(&claims("t", &["fleet:admin"], t, t + 60))
        .unwrap();
    assert_eq!(
        s.api("GET", "/api/v1/credentials", &foreign, None)
            .await
            .status,
        401
    );

    // alg none
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(serde_json::to_vec(&claims("t", &["fleet:admin"], t, t + 60)).unwrap())
    );
    assert_eq!(
        s.api("GET", "/api/v1/credentials", &none, None)
            .await
            .status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_rotation_take_effect_at_once() {
    let s = start().await;
    let admin = s.token(&s.bootstrap, None).await;
    let r = s
        .api(
            "POST",
            "/api/v1/credentials",
            &admin,
            Some(json!({"name": "ci", "scopes": ["audit:read"]})),
        )
        .await;
    assert_eq!(r.status, 201);
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    // the list never shows secrets or hashes
    let list = s
        .api("GET", "/api/v1/credentials", &admin, None)
        .await
        .text();
    assert!(
        !list.contains(&secret[10..]) && !list.contains("secret_hash"),
        "{list}"
    );

    // rotation: old token and old secret die, new secret works
    let t1 = s.token(&secret, None).await;
    assert_eq!(s.api("GET", "/api/v1/audit", &t1, None).await.status, 200);
    let r = s
        .api(
            "POST",
            &format!("/api/v1/credentials/{id}/rotate"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let secret2 = r.json()["secret"].as_str().unwrap().to_string();
    let r = s.api("GET", "/api/v1/audit", &t1, None).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("rotated"), "{}", r.text());
    assert_eq!(s.mint(&secret, None).await.status, 401);
    let t2 = s.token(&secret2, None).await;
    assert_eq!(s.api("GET", "/api/v1/audit", &t2, None).await.status, 200);

    // revocation: the live token stops at once, minting stops
    let r = s
        .api(
            "POST",
            &format!("/api/v1/credentials/{id}/revoke"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s.api("GET", "/api/v1/audit", &t2, None).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"), "{}", r.text());
    assert_eq!(s.mint(&secret2, None).await.status, 401);

    // revoking the bootstrap credential itself
    let boot_id = s.bootstrap.split('.').nth(1).unwrap().to_string();
    let admin2 = s.token(&s.bootstrap, None).await;
    let r = s
        .api(
            "POST",
            &format!("/api/v1/credentials/{boot_id}/revoke"),
            &admin2,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.api("GET", "/api/v1/credentials", &admin, None)
            .await
            .status,
        401
    );
    assert_eq!(s.mint(&s.bootstrap, None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_can_revoke_itself() {
    let s = start().await;
    let t = s.token(&s.bootstrap, None).await;
    assert_eq!(s.api("DELETE", "/api/v1/token", &t, None).await.status, 204);
    let r = s.api("GET", "/api/v1/whoami", &t, None).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separation_of_duties_is_enforced_unless_overridden() {
    let s = start().await;
    let admin = s.token(&s.bootstrap, None).await;
    for scopes in [
        json!(["target:upload@app", "repo:publish@app"]),
        json!(["target:upload", "repo:publish@app"]),
        json!(["target:upload@app", "repo:publish"]),
    ] {
        let r = s
            .api(
                "POST",
                "/api/v1/credentials",
                &admin,
                Some(json!({"name": "both", "scopes": scopes})),
            )
            .await;
        assert_eq!(r.status, 403, "{scopes}");
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("separation of duties") && msg.contains("allow_upload_and_publish"),
            "{msg}"
        );
    }
    // different repositories are fine
    let r = s
        .api(
            "POST",
            "/api/v1/credentials",
            &admin,
            Some(json!({"name": "split", "scopes": ["target:upload@a", "repo:publish@b"]})),
        )
        .await;
    assert_eq!(r.status, 201);

    // the refusal is audited
    let audit = s.api("GET", "/api/v1/audit", &admin, None).await.json();
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "credential.create" && a["outcome"] == "denied"));

    let o = start_with(|c| c.allow_upload_and_publish = true).await;
    let admin = o.token(&o.bootstrap, None).await;
    let r = o
        .api(
            "POST",
            "/api/v1/credentials",
            &admin,
            Some(json!({"name": "both", "scopes": ["target:upload@app", "repo:publish@app"]})),
        )
        .await;
    assert_eq!(r.status, 201, "operator override: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_audited() {
    let s = start().await;
    let up = s
        .credential("uploader", &["target:upload@app", "target:stage@app"])
        .await;
    let token = s.token(&up, None).await;
    let data = b"firmware image".to_vec();
    let sha = sha256_hex(&data);
    let auth = format!("Bearer {token}");
    let r = http(
        "PUT",
        &format!("{}/api/v1/repos/app/blobs/{sha}", s.url),
        &[("authorization", &auth)],
        Some(data),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // a denied call is audited too
    assert_eq!(call(&s, "publish", &token).await, 403);

    let admin = s.token(&s.bootstrap, None).await;
    let audit = s.api("GET", "/api/v1/audit?repo=app", &admin, None).await;
    assert_eq!(audit.status, 200);
    let entries = audit.json();
    let entries = entries.as_array().unwrap();
    let upload = entries
        .iter()
        .find(|a| a["action"] == "blob.upload")
        .expect("upload audited");
    assert_eq!(upload["outcome"], "ok");
    assert_eq!(upload["target"], sha.as_str());
    assert!(upload["identity"].as_str().unwrap().contains("uploader"));
    assert_eq!(
        upload["scopes"],
        json!(["target:stage@app", "target:upload@app"])
    );
    assert!(upload["at"].as_i64().unwrap() > 0);
    let denied = entries
        .iter()
        .find(|a| a["action"] == "repo.publish")
        .expect("denial audited");
    assert_eq!(denied["outcome"], "denied");
    assert!(denied["detail"]
        .as_str()
        .unwrap()
        .contains("repo:publish@app"));

    // the whole log (no repo filter) has the token mints as well
    let all = s
        .api("GET", "/api/v1/audit?limit=1000", &admin, None)
        .await
        .json();
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "token.mint" && a["outcome"] == "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_rate_limited_per_address_before_any_lookup() {
    let s = custody_server_tests_start_limited().await;
    // A guesser burns the burst with wrong secrets…
    let mut wrong = s.bootstrap.clone();
    wrong.pop();
    wrong.push(if s.bootstrap.ends_with('A') { 'B' } else { 'A' });
    for _ in 0..3 {
        let r = s.mint(&wrong, None).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    // …then even the right secret is refused from that address, with a
    // Retry-After, and the message names the setting.
    let r = s.mint(&s.bootstrap, None).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"], "rate_limited");
    assert!(
        r.text().contains("token_requests_per_minute"),
        "{}",
        r.text()
    );
    let retry = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.parse::<u64>().expect("Retry-After is whole seconds"))
        .expect("Retry-After header");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

async fn custody_server_tests_start_limited() -> TestServer {
    start_with(|c| {
        c.token_requests_per_minute = 1;
        c.token_request_burst = 3;
    })
    .await
}
