//! The demo's compromised mirror: an HTTP relay on loopback between one
//! device and the server, as a site cache, a CDN node or a TLS-terminating
//! proxy would be. It forwards every request unchanged (device requests are
//! signed, so a relay may carry them) until it is armed; then it flips one
//! byte of the next download whose path ends with the armed file name.
//!
//! A small HTTP/1.1 relay: one request per connection (`connection: close`),
//! bodies by `content-length` only, which is what the agent sends. Bad
//! input ends that connection with an error; nothing here panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The largest request body relayed (device check-ins are a few KiB).
const MAX_REQUEST_BODY: usize = 1 << 20;
/// The largest answer relayed (the demo's payloads are at most 1 GiB).
const MAX_ANSWER: u64 = 1 << 31;

#[derive(Default)]
struct Tamper {
    /// flip a byte of the next download whose path ends with this
    armed: Option<String>,
    /// paths tampered with so far
    done: Vec<String>,
}

pub(super) struct Mirror {
    pub url: String,
    tamper: Arc<Mutex<Tamper>>,
}

impl Mirror {
    /// Listen on a free loopback port and relay to `upstream`.
    pub(super) fn start(upstream: &str) -> Result<Mirror> {
        let listener = TcpListener::bind("127.0.0.1:0").context("mirror: binding a port")?;
        let url = format!("http://{}", listener.local_addr()?);
        let tamper = Arc::new(Mutex::new(Tamper::default()));
        let (t, up) = (tamper.clone(), upstream.trim_end_matches('/').to_owned());
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let (t, up, http) = (t.clone(), up.clone(), http.clone());
                std::thread::spawn(move || {
                    if let Err(e) = relay(conn, &up, &http, &t) {
                        tracing::debug!("mirror: {e:#}");
                    }
                });
            }
        });
        Ok(Mirror { url, tamper })
    }

    /// Flip a byte of the next download whose path ends with `file`.
    pub(super) fn arm(&self, file: &str) {
        self.lock().armed = Some(file.to_owned());
    }

    /// The paths tampered with so far.
    pub(super) fn tampered(&self) -> Vec<String> {
        self.lock().done.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tamper> {
        self.tamper.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Relay one request.
fn relay(
    mut conn: TcpStream,
    upstream: &str,
    http: &ureq::Agent,
    tamper: &Mutex<Tamper>,
) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    if r.by_ref().take(8192).read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        bail!("bad request line {line:?}");
    };
    if !path.starts_with('/') {
        bail!("request target {path:?} is not a path");
    }
    let mut headers = Vec::new();
    let mut len = 0usize;
    for _ in 0..100 {
        let mut h = String::new();
        if r.by_ref().take(16384).read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let Some((k, v)) = h.trim_end().split_once(':') else {
            bail!("bad header line {h:?}");
        };
        let (k, v) = (k.trim(), v.trim());
        let lower = k.to_ascii_lowercase();
        if lower == "content-length" {
            len = v.parse().with_context(|| format!("content-length {v:?}"))?;
        } else if !["host", "connection", "accept-encoding", "transfer-encoding"]
            .contains(&lower.as_str())
        {
            headers.push((k.to_owned(), v.to_owned()));
        }
    }
    if len > MAX_REQUEST_BODY {
        bail!("request body of {len} bytes is over {MAX_REQUEST_BODY}");
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;

    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{upstream}{path}"));
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let mut resp = http.run(req.body(body)?)?;
    let status = resp.status().as_u16();
    let out_headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !["transfer-encoding", "connection", "content-length"].contains(&k.as_str())
        })
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let mut out = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()?;
    if method == "GET" && (200..300).contains(&status) {
        let mut t = tamper.lock().unwrap_or_else(PoisonError::into_inner);
        if t.armed.as_deref().is_some_and(|f| path.ends_with(f)) {
            let at = 4096.min(out.len().saturating_sub(1));
            if let Some(b) = out.get_mut(at) {
                *b ^= 0x01;
                t.armed = None;
                t.done.push(path.to_owned());
            }
        }
    }
    let mut head = format!("HTTP/1.1 {status} relayed\r\n");
    for (k, v) in &out_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        out.len()
    ));
    conn.write_all(head.as_bytes())?;
    conn.write_all(&out)?;
    conn.flush()?;
    Ok(())
}
