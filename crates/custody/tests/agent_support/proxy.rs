//! A forwarding HTTP proxy on loopback between agents and the server (a
//! relay, a TLS-terminating proxy, or an attacker on the path). A test may
//! answer a request itself instead of the server ([`Proxy::set`]) or rewrite
//! the server's answer ([`Proxy::rewrite`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the proxy received it.
pub struct Request {
    pub method: String,
    /// path and query
    pub path: String,
    /// headers forwarded upstream (all but host, connection,
    /// content-length and accept-encoding), as sent
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Answer = Box<dyn Fn(&str, &str) -> Option<(u16, Vec<u8>)> + Send>;
type Rewrite = Box<dyn Fn(&Request, u16, Vec<u8>) -> Vec<u8> + Send>;

#[derive(Default)]
struct Hooks {
    answer: Option<Answer>,
    rewrite: Option<Rewrite>,
}

pub struct Proxy {
    pub url: String,
    hooks: Arc<Mutex<Hooks>>,
}

impl Proxy {
    /// Listen on a loopback port, forwarding to `upstream` (`http://…`).
    pub fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hooks: Arc<Mutex<Hooks>> = Arc::default();
        let (h, up) = (hooks.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for s in l.incoming().map_while(Result::ok) {
                let (h, up) = (h.clone(), up.clone());
                std::thread::spawn(move || serve(s, &up, &h));
            }
        });
        Proxy { url, hooks }
    }

    /// `f(method, path_and_query)` may answer (status, JSON body) instead
    /// of the server.
    pub fn set(&self, f: impl Fn(&str, &str) -> Option<(u16, Vec<u8>)> + Send + 'static) {
        self.hooks.lock().unwrap().answer = Some(Box::new(f));
    }

    /// Forward every request again.
    pub fn pass(&self) {
        self.hooks.lock().unwrap().answer = None;
    }

    /// `f(request, status, body)` returns the body the client gets instead
    /// of the server's (for forwarded requests).
    pub fn rewrite(&self, f: impl Fn(&Request, u16, Vec<u8>) -> Vec<u8> + Send + 'static) {
        self.hooks.lock().unwrap().rewrite = Some(Box::new(f));
    }
}

fn serve(mut s: TcpStream, upstream: &str, hooks: &Mutex<Hooks>) {
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let mut req = Request {
        method: parts.next().unwrap_or("").to_owned(),
        path: parts.next().unwrap_or("").to_owned(),
        headers: Vec::new(),
    };
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().unwrap_or(0);
            }
            if !["host", "connection", "content-length", "accept-encoding"]
                .contains(&k.to_ascii_lowercase().as_str())
            {
                req.headers.push((k, v));
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok();
    let canned = hooks
        .lock()
        .unwrap()
        .answer
        .as_ref()
        .and_then(|f| f(&req.method, &req.path));
    let (status, out_headers, out) = match canned {
        Some((st, b)) => (
            st,
            vec![("content-type".to_owned(), "application/json".to_owned())],
            b,
        ),
        None => {
            let (st, hs, b) = forward(upstream, &req, body);
            let b = match &hooks.lock().unwrap().rewrite {
                Some(f) => f(&req, st, b),
                None => b,
            };
            (st, hs, b)
        }
    };
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in out_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        out.len()
    ));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&out);
}

/// The server's answer: status, headers (without the framing ones), body.
fn forward(upstream: &str, req: &Request, body: Vec<u8>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut b = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("{upstream}{}", req.path));
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let mut resp = agent.run(b.body(body).unwrap()).unwrap();
    let hs = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !["transfer-encoding", "connection", "content-length"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let st = resp.status().as_u16();
    let b = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (st, hs, b)
}
