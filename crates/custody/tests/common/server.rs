//! A real HTTP server on loopback for client tests: serves a directory,
//! records every request path, and has attack hooks (replace a file's bytes,
//! serve endless data, answer slowly, answer with a status).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// What the server does for one path instead of serving the file.
#[derive(Clone, Debug)]
pub enum Attack {
    /// Serve these bytes.
    Bytes(Vec<u8>),
    /// Serve an endless stream of bytes, without Content-Length.
    Endless,
    /// Serve the real file (or the bytes) one byte every `delay`, without
    /// Content-Length.
    Slow(Duration),
    /// Answer with this status and an empty body.
    Status(u16),
}

#[derive(Default)]
struct Inner {
    log: Vec<String>,
    attacks: HashMap<String, Attack>,
}

#[derive(Clone)]
struct Shared {
    root: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

pub struct TestServer {
    addr: std::net::SocketAddr,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serve `root` (files are looked up by URL path under it).
    pub fn start(root: &Path) -> TestServer {
        let shared = Shared {
            root: root.to_owned(),
            inner: Arc::default(),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app_state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback");
                addr_tx
                    .send(listener.local_addr().expect("local addr"))
                    .expect("send addr");
                let app = axum::Router::new().fallback(handler).with_state(app_state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        TestServer {
            addr,
            shared,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The directory being served.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Request paths (raw, as sent, without the leading `/`), in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().log.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.inner.lock().unwrap().log.clear();
    }

    /// Install an attack for a raw request path (no leading `/`).
    pub fn attack(&self, path: &str, attack: Attack) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .attacks
            .insert(path.trim_start_matches('/').to_owned(), attack);
    }

    pub fn clear_attacks(&self) {
        self.shared.inner.lock().unwrap().attacks.clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn decode(seg: &str) -> Option<String> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Find the file for a raw URL path: first literally, then with each
/// segment percent-decoded. Dot segments are refused.
fn lookup(root: &Path, raw: &str) -> Option<PathBuf> {
    let segs: Vec<&str> = raw.split('/').collect();
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return None;
    }
    let literal = segs.iter().fold(root.to_owned(), |p, s| p.join(s));
    if literal.is_file() {
        return Some(literal);
    }
    let mut decoded = root.to_owned();
    for s in segs {
        let d = decode(s)?;
        if d.contains('/') || d == "." || d == ".." {
            return None;
        }
        decoded = decoded.join(d);
    }
    decoded.is_file().then_some(decoded)
}

async fn handler(State(shared): State<Shared>, uri: Uri) -> Response {
    let raw = uri.path().trim_start_matches('/').to_owned();
    let attack = {
        let mut inner = shared.inner.lock().unwrap();
        inner.log.push(raw.clone());
        inner.attacks.get(&raw).cloned()
    };
    let file = || lookup(&shared.root, &raw).and_then(|p| std::fs::read(p).ok());
    match attack {
        None => match file() {
            Some(bytes) => bytes.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Some(Attack::Bytes(b)) => b.into_response(),
        Some(Attack::Status(s)) => StatusCode::from_u16(s)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Some(Attack::Endless) => {
            let chunk = bytes_chunk(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            Response::new(Body::from_stream(stream))
        }
        Some(Attack::Slow(delay)) => {
            let bytes = Arc::new(file().unwrap_or_else(|| b"{}".to_vec()));
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let bytes = bytes.clone();
                async move {
                    let byte = *bytes.get(i)?;
                    tokio::time::sleep(delay).await;
                    Some((
                        Ok::<_, std::convert::Infallible>(bytes_chunk(vec![byte])),
                        i + 1,
                    ))
                }
            });
            Response::new(Body::from_stream(stream))
        }
    }
}

fn bytes_chunk(v: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(v)
}
