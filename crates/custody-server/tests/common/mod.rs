//! Shared helpers: a real server on loopback, a blocking HTTP client (ureq)
//! driven from the async tests, PostgreSQL discovery.
#![allow(dead_code)]

pub mod repo;

use std::net::SocketAddr;
use std::time::Duration;

use custody_server::{RunningServer, ServerConfig};
use serde_json::{json, Value};

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// One HTTP request, run on the blocking pool.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let method = method.to_string();
    let url = url.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut b = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        let req = b.body(body.unwrap_or_default()).unwrap();
        let mut resp = agent()
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    })
    .await
    .unwrap()
}

pub fn config(data_dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        // Tests mint dozens of tokens from 127.0.0.1 within a second; the
        // limit itself is tested in auth.rs with its own low setting.
        token_requests_per_minute: 100_000,
        token_request_burst: 10_000,
        ..ServerConfig::default()
    }
}

pub struct TestServer {
    pub server: RunningServer,
    pub url: String,
    pub bootstrap: String,
    pub dir: tempfile::TempDir,
}

pub async fn start_with(mut f: impl FnMut(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    f(&mut cfg);
    let server = custody_server::start(cfg).await.expect("server starts");
    let url = server.url();
    let bootstrap = server
        .bootstrap_credential
        .clone()
        .expect("fresh data dir prints a bootstrap credential");
    TestServer {
        server,
        url,
        bootstrap,
        dir,
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

impl TestServer {
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        http("GET", &format!("{}{path}", self.url), headers, None).await
    }

    pub async fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        http(
            method,
            &format!("{}{path}", self.url),
            &headers,
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
    }

    /// Mints a token; panics unless 200.
    pub async fn token(&self, credential: &str, scopes: Option<&[&str]>) -> String {
        let r = self.mint(credential, scopes).await;
        assert_eq!(r.status, 200, "mint: {}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    pub async fn mint(&self, credential: &str, scopes: Option<&[&str]>) -> Resp {
        let mut body = json!({ "credential": credential });
        if let Some(s) = scopes {
            body["scopes"] = json!(s);
        }
        http(
            "POST",
            &format!("{}/api/v1/token", self.url),
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    /// Creates a credential with `scopes` using the bootstrap credential;
    /// returns its secret string.
    pub async fn credential(&self, name: &str, scopes: &[&str]) -> String {
        let admin = self.token(&self.bootstrap, None).await;
        let r = self
            .api(
                "POST",
                "/api/v1/credentials",
                &admin,
                Some(json!({"name": name, "scopes": scopes})),
            )
            .await;
        assert_eq!(r.status, 201, "create credential: {}", r.text());
        r.json()["secret"].as_str().unwrap().to_string()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// The PostgreSQL the tests must use, or None when explicitly skipped.
/// Unset without CUSTODY_SKIP_PG=1 is a failure, not a silent pass.
pub fn pg_url() -> Option<String> {
    match std::env::var("CUSTODY_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CUSTODY_SKIP_PG").as_deref() == Ok("1") {
                eprintln!("CUSTODY_SKIP_PG=1: skipping the PostgreSQL storage tests");
                None
            } else {
                panic!(
                    "CUSTODY_TEST_DATABASE_URL is not set: the PostgreSQL storage tests need a \
                     server. Start one with `export CUSTODY_TEST_DATABASE_URL=$(scripts/pg-test-server)` \
                     (or run ./scripts/test), or set CUSTODY_SKIP_PG=1 to skip them knowingly."
                )
            }
        }
    }
}

/// Creates a fresh database on the test server and returns its URL, so
/// parallel tests never see each other's rows.
pub async fn fresh_pg_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
    let name = format!(
        "custody_t_{}",
        hex::encode(
            ring::rand::generate::<[u8; 8]>(&ring::rand::SystemRandom::new())
                .unwrap()
                .expose()
        )
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}
