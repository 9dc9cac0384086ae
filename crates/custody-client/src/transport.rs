//! Transports: where bytes come from. Nothing here trusts what it fetches;
//! its only duties are to bound how much is read (endless-data attack) and
//! how long it may take (slow-retrieval attack), and to say precisely why a
//! fetch failed.
//!
//! Every fetch is given its length bound *before* it starts. The bound is
//! enforced in exactly one place, [`Fetched`], which every transport must
//! return: a transport cannot hand out an unbounded reader.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

use url::Url;

/// Why a fetch failed. Each variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// HTTP 404 or 403 (or a missing `file://` path). During root rotation
    /// this ends the walk (TUF spec 5.3.3); everywhere else it is an error.
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    /// Any other non-success HTTP status.
    #[error("{url}: server answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The server sent (or announced) more bytes than the bound allows.
    #[error("{url}: endless data: the response is longer than its {bound}-byte bound")]
    EndlessData { url: String, bound: u64 },
    /// Slow retrieval: a connect, read or overall time budget ran out.
    #[error("{url}: slow retrieval: {detail}")]
    Timeout { url: String, detail: String },
    /// Only `http`, `https` and `file` URLs are supported.
    #[error("{url}: unsupported URL scheme {scheme:?} (use http, https or file)")]
    UnsupportedScheme { url: String, scheme: String },
    /// A URL that could not be formed or used.
    #[error("{url}: invalid URL: {reason}")]
    BadUrl { url: String, reason: String },
    /// Connection, TLS or protocol failure.
    #[error("{url}: transport failure: {message}")]
    Transport { url: String, message: String },
    /// Local IO failure (file transport).
    #[error("{url}: {error}")]
    Io {
        url: String,
        /// shown in the message, so not also reported as `source()`
        error: io::Error,
    },
}

impl FetchError {
    /// True for the "this file does not exist" answers (HTTP 403/404, missing
    /// local file) that end root rotation.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }
}

/// A response body being read, bounded to at most `bound` bytes.
///
/// Reading past the bound yields [`FetchError::EndlessData`]: the bound is
/// detected by asking the source for one byte more than allowed, so a body of
/// exactly `bound` bytes is accepted and nothing beyond it is ever buffered.
pub struct Fetched {
    url: String,
    bound: u64,
    read: u64,
    inner: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("url", &self.url)
            .field("bound", &self.bound)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Fetched {
    /// Wrap a raw body reader. `announced_len` is the length the server
    /// declared (Content-Length, file size) if any; a declared length above
    /// the bound is refused before a single body byte is read.
    pub fn new(
        url: &str,
        bound: u64,
        announced_len: Option<u64>,
        inner: Box<dyn Read + Send>,
    ) -> Result<Self, FetchError> {
        if let Some(len) = announced_len {
            if len > bound {
                return Err(FetchError::EndlessData {
                    url: url.to_owned(),
                    bound,
                });
            }
        }
        Ok(Fetched {
            url: url.to_owned(),
            bound,
            read: 0,
            inner,
        })
    }

    /// The URL this body comes from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The length bound of this fetch.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Bytes delivered so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Read the next chunk into `buf`; `Ok(0)` is the end of the body.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize, FetchError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let remaining = self.bound.saturating_sub(self.read);
        if remaining == 0 {
            // At the bound: the body must end here. Probe for one more byte.
            let mut probe = [0u8; 1];
            let n = self.read_inner(&mut probe)?;
            if n == 0 {
                return Ok(0);
            }
            return Err(FetchError::EndlessData {
                url: self.url.clone(),
                bound: self.bound,
            });
        }
        let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = self.read_inner(chunk)?;
        self.read = self.read.saturating_add(n as u64);
        Ok(n)
    }

    /// Read the whole (bounded) body into memory. Only for metadata, whose
    /// bounds are small.
    pub fn read_all(mut self) -> Result<Vec<u8>, FetchError> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = self.read_chunk(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize, FetchError> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(map_io_error(&self.url, e)),
            }
        }
    }
}

fn map_io_error(url: &str, e: io::Error) -> FetchError {
    if e.kind() == io::ErrorKind::TimedOut {
        return FetchError::Timeout {
            url: url.to_owned(),
            detail: e.to_string(),
        };
    }
    // ureq wraps its own errors in io::Error when reading a body.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
        return map_ureq_error(url, inner);
    }
    FetchError::Io {
        url: url.to_owned(),
        error: e,
    }
}

fn map_ureq_error(url: &str, e: &ureq::Error) -> FetchError {
    match e {
        ureq::Error::Timeout(which) => FetchError::Timeout {
            url: url.to_owned(),
            detail: format!("the {which} timeout ran out"),
        },
        ureq::Error::StatusCode(status @ (403 | 404)) => FetchError::NotFound {
            url: url.to_owned(),
            status: *status,
        },
        ureq::Error::StatusCode(status) => FetchError::Status {
            url: url.to_owned(),
            status: *status,
        },
        ureq::Error::BodyExceedsLimit(bound) => FetchError::EndlessData {
            url: url.to_owned(),
            bound: *bound,
        },
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => FetchError::Timeout {
            url: url.to_owned(),
            detail: io.to_string(),
        },
        other => FetchError::Transport {
            url: url.to_owned(),
            message: other.to_string(),
        },
    }
}

/// Where metadata and targets come from.
pub trait Transport: Send + Sync {
    /// Start fetching `url`; the returned body yields at most `max_len`
    /// bytes and fails with [`FetchError::EndlessData`] past that.
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError>;
}

/// Time budgets against slow retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and DNS) budget. Default 10 s.
    pub connect: Duration,
    /// Longest wait for any single read from the socket. Default 30 s: a
    /// server that trickles one byte every 29 s is stopped by `overall`.
    pub per_read: Duration,
    /// Overall budget for one request, from connect to the last body byte.
    /// Default 600 s.
    pub overall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            per_read: Duration::from_secs(30),
            overall: Duration::from_secs(600),
        }
    }
}

/// HTTP(S) via ureq (rustls + ring). No compression is negotiated, so the
/// bytes counted against the bound are the bytes on the wire.
pub struct HttpTransport {
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport").finish_non_exhaustive()
    }
}

/// A CA bundle that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("CA certificates: {reason}")]
pub struct TlsRootsError {
    reason: String,
}

impl HttpTransport {
    /// A transport with the given time budgets, trusting the Mozilla root
    /// CAs (webpki-roots) for https.
    pub fn new(timeouts: Timeouts) -> Self {
        Self::build(timeouts, None)
    }

    /// A transport that trusts only the CA certificates in `pem_bundle`
    /// for https (a private repository's CA). TLS is transport hygiene
    /// here: every byte is still verified against signed metadata.
    pub fn with_ca_certs(timeouts: Timeouts, pem_bundle: &[u8]) -> Result<Self, TlsRootsError> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem_bundle) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(TlsRootsError {
                        reason: format!("invalid PEM: {e}"),
                    })
                }
            }
        }
        if certs.is_empty() {
            return Err(TlsRootsError {
                reason: "no CERTIFICATE found in the PEM data".to_owned(),
            });
        }
        Ok(Self::build(
            timeouts,
            Some(ureq::tls::RootCerts::new_with_certs(&certs)),
        ))
    }

    fn build(timeouts: Timeouts, roots: Option<ureq::tls::RootCerts>) -> Self {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(roots) = roots {
            tls = tls.root_certs(roots);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_per_read(Some(timeouts.per_read))
            .timeout_global(Some(timeouts.overall))
            .max_redirects(5)
            .user_agent(concat!("custody/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        HttpTransport {
            agent: config.new_agent(),
        }
    }
}

impl HttpTransport {
    /// POST a JSON `body` to `url`; the status and the answer (at most
    /// `max_len` bytes), whatever the status. For the few writes a log
    /// client makes (a witness posting its cosignature).
    pub fn post_json(
        &self,
        url: &Url,
        body: &[u8],
        max_len: u64,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        self.post_json_with(url, body, &[], max_len)
    }

    /// [`HttpTransport::post_json`] with extra request headers (a webhook's
    /// signature).
    pub fn post_json_with(
        &self,
        url: &Url,
        body: &[u8],
        headers: &[(&str, &str)],
        max_len: u64,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let url_s = url.as_str();
        let mut request = self
            .agent
            .post(url_s)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send(body).map_err(|e| map_ureq_error(url_s, &e))?;
        let status = response.status().as_u16();
        let reader = response.into_body().into_reader();
        let answer = Fetched::new(url_s, max_len, None, Box::new(reader))?.read_all()?;
        Ok((status, answer))
    }
}

impl Default for HttpTransport {
    fn default() -> Self {
        HttpTransport::new(Timeouts::default())
    }
}

impl Transport for HttpTransport {
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
        let url_s = url.as_str();
        let response = self
            .agent
            .get(url_s)
            .call()
            .map_err(|e| map_ureq_error(url_s, &e))?;
        let status = response.status().as_u16();
        if status == 403 || status == 404 {
            return Err(FetchError::NotFound {
                url: url_s.to_owned(),
                status,
            });
        }
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                url: url_s.to_owned(),
                status,
            });
        }
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let reader = response.into_body().into_reader();
        Fetched::new(url_s, max_len, announced, Box::new(reader))
    }
}

/// `file://` URLs: a local mirror, a USB stick, a test fixture.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileTransport;

impl Transport for FileTransport {
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
        let url_s = url.as_str();
        let path = url.to_file_path().map_err(|()| FetchError::BadUrl {
            url: url_s.to_owned(),
            reason: "not a local absolute file path".to_owned(),
        })?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FetchError::NotFound {
                    url: url_s.to_owned(),
                    status: 404,
                })
            }
            Err(e) => {
                return Err(FetchError::Io {
                    url: url_s.to_owned(),
                    error: e,
                })
            }
        };
        let meta = file.metadata().map_err(|e| FetchError::Io {
            url: url_s.to_owned(),
            error: e,
        })?;
        if meta.is_dir() {
            return Err(FetchError::NotFound {
                url: url_s.to_owned(),
                status: 404,
            });
        }
        Fetched::new(url_s, max_len, Some(meta.len()), Box::new(file))
    }
}

/// Dispatches on the URL scheme: `http`/`https` to [`HttpTransport`],
/// `file` to [`FileTransport`].
#[derive(Debug, Default)]
pub struct AnyTransport {
    http: HttpTransport,
    file: FileTransport,
}

impl AnyTransport {
    /// HTTP with the given time budgets, plus `file://`.
    pub fn new(timeouts: Timeouts) -> Self {
        Self::with_http(HttpTransport::new(timeouts))
    }

    /// This HTTP transport, plus `file://`.
    pub fn with_http(http: HttpTransport) -> Self {
        AnyTransport {
            http,
            file: FileTransport,
        }
    }
}

impl Transport for AnyTransport {
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
        match url.scheme() {
            "http" | "https" => self.http.fetch(url, max_len),
            "file" => self.file.fetch(url, max_len),
            other => Err(FetchError::UnsupportedScheme {
                url: url.as_str().to_owned(),
                scheme: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(data: &'static [u8], bound: u64) -> Fetched {
        Fetched::new("mem://x", bound, None, Box::new(data)).unwrap()
    }

    #[test]
    fn body_exactly_at_bound_is_accepted() {
        assert_eq!(fetched(b"abcd", 4).read_all().unwrap(), b"abcd");
    }

    #[test]
    fn body_past_bound_is_endless_data() {
        let err = fetched(b"abcde", 4).read_all().unwrap_err();
        assert!(
            matches!(err, FetchError::EndlessData { bound: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("4-byte bound"));
    }

    #[test]
    fn announced_length_past_bound_fails_before_reading() {
        let err = Fetched::new("mem://x", 3, Some(4), Box::new(&b""[..])).unwrap_err();
        assert!(matches!(err, FetchError::EndlessData { .. }));
    }

    #[test]
    fn zero_bound_accepts_only_empty() {
        assert!(fetched(b"", 0).read_all().unwrap().is_empty());
        assert!(fetched(b"x", 0).read_all().is_err());
    }

    #[test]
    fn file_transport_missing_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_file_path(dir.path().join("nope.json")).unwrap();
        let err = FileTransport.fetch(&url, 10).unwrap_err();
        assert!(err.is_not_found());
    }

    #[test]
    fn ca_bundle_must_hold_a_certificate() {
        let err = HttpTransport::with_ca_certs(Timeouts::default(), b"no pem here").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn unsupported_scheme() {
        let url = Url::parse("ftp://example.com/x").unwrap();
        let err = AnyTransport::default().fetch(&url, 10).unwrap_err();
        assert!(matches!(err, FetchError::UnsupportedScheme { .. }));
    }
}
