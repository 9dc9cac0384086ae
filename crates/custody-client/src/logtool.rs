//! What the log's independent tools ([`crate::witness`], [`crate::audit`])
//! share: fetching from a log's HTTP surface (`<base>/log/v1/...`) through
//! the bounded [`Transport`], and finding the log key to trust.

use std::path::{Path, PathBuf};

use custody_log::audit::AuditError;
use custody_log::wire::WireError;
use custody_log::VerifierKey;
use url::Url;

use crate::store::StoreError;
use crate::transport::{FetchError, Transport};

/// Largest entry bundle (256 entries of at most 64 KiB, with their length
/// prefixes).
pub(crate) const MAX_BUNDLE_BYTES: u64 = 17 * 1024 * 1024;
/// Largest tile (256 hashes).
pub(crate) const MAX_TILE_BYTES: u64 = 256 * 32;
/// Largest verifier key answer or file.
pub(crate) const MAX_KEY_BYTES: u64 = 4096;

/// Why a witness or an auditor could not do its job (not an alarm: what
/// they detect about the log is reported as an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum LogToolError {
    /// A GET failed (network, status other than 404, bound).
    #[error("GET {0}")]
    Fetch(FetchError),
    /// A required document is not served.
    #[error("GET {url}: HTTP 404")]
    Missing {
        /// the URL
        url: String,
    },
    /// The log refused a POST.
    #[error("POST {url}: HTTP {status}: {body}")]
    Post {
        /// the URL
        url: String,
        /// its status
        status: u16,
        /// its answer (first 300 characters)
        body: String,
    },
    /// An answer is not the document asked for.
    #[error("{url}: {error}")]
    Wire {
        /// the URL
        url: String,
        /// the rule broken
        error: WireError,
    },
    /// A key (given, pinned or served) is unusable.
    #[error("{what}: {reason}")]
    Key {
        /// which key, from where
        what: String,
        /// why
        reason: String,
    },
    /// A checkpoint (served or stored) does not verify.
    #[error("{what}: {reason}")]
    Checkpoint {
        /// which checkpoint
        what: String,
        /// why
        reason: String,
    },
    /// A local file.
    #[error("{op} {}: {error}", path.display())]
    File {
        /// the file
        path: PathBuf,
        /// what was done
        op: &'static str,
        /// the failure
        error: std::io::Error,
    },
    /// Writing state durably failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The replay could not be computed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<FetchError> for LogToolError {
    fn from(e: FetchError) -> Self {
        LogToolError::Fetch(e)
    }
}

/// `<base>/log/v1/<path>`.
pub(crate) fn log_url(base: &str, path: &str) -> Result<Url, LogToolError> {
    let s = format!("{}/log/v1/{path}", base.trim_end_matches('/'));
    Url::parse(&s).map_err(|e| {
        LogToolError::Fetch(FetchError::BadUrl {
            url: s.clone(),
            reason: e.to_string(),
        })
    })
}

/// GET: the body, `None` when the log answers 404 (or 403).
pub(crate) fn get<T: Transport + ?Sized>(
    t: &T,
    url: &Url,
    max: u64,
) -> Result<Option<Vec<u8>>, LogToolError> {
    match t.fetch(url, max).and_then(|f| f.read_all()) {
        Ok(b) => Ok(Some(b)),
        Err(FetchError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// GET a document that must exist.
pub(crate) fn get_required<T: Transport + ?Sized>(
    t: &T,
    url: &Url,
    max: u64,
) -> Result<Vec<u8>, LogToolError> {
    get(t, url, max)?.ok_or_else(|| LogToolError::Missing {
        url: url.to_string(),
    })
}

fn read_small(path: &Path, op: &'static str) -> Result<String, LogToolError> {
    let file = |error| LogToolError::File {
        path: path.to_path_buf(),
        op,
        error,
    };
    let bytes = crate::store::read_bounded(path, MAX_KEY_BYTES)
        .map_err(|e| LogToolError::Key {
            what: format!("{op} {}", path.display()),
            reason: e.to_string(),
        })?
        .ok_or_else(|| file(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    String::from_utf8(bytes).map_err(|e| LogToolError::Key {
        what: format!("{op} {}", path.display()),
        reason: e.to_string(),
    })
}

/// A verifier key given on the command line: a vkey string, or a file
/// holding one. `what` names it in errors (`--log-key`, `witness key`).
pub fn parse_vkey_arg(given: &str, what: &str) -> Result<VerifierKey, LogToolError> {
    let text = if Path::new(given).is_file() {
        read_small(Path::new(given), "reading key file")?
    } else {
        given.to_owned()
    };
    VerifierKey::parse(text.trim()).map_err(|e| LogToolError::Key {
        what: format!("{what} {given:?}"),
        reason: e.to_string(),
    })
}

/// The log key to trust: `given` (string or file), else the copy pinned
/// at `pin`, else the key the log serves, pinned at `pin` (trust on first
/// use). Returns the key and whether it was pinned just now.
pub fn resolve_log_key<T: Transport + ?Sized>(
    t: &T,
    base: &str,
    given: Option<&str>,
    pin: Option<&Path>,
) -> Result<(VerifierKey, bool), LogToolError> {
    if let Some(g) = given {
        return Ok((parse_vkey_arg(g, "--log-key")?, false));
    }
    if let Some(p) = pin {
        if p.exists() {
            let text = read_small(p, "reading pinned log key")?;
            let key = VerifierKey::parse(text.trim()).map_err(|e| LogToolError::Key {
                what: format!("pinned log key {}", p.display()),
                reason: e.to_string(),
            })?;
            return Ok((key, false));
        }
    }
    let url = log_url(base, "key")?;
    let text = get_required(t, &url, MAX_KEY_BYTES)?;
    let key = VerifierKey::parse(String::from_utf8_lossy(&text).trim()).map_err(|e| {
        LogToolError::Key {
            what: "the key served at /log/v1/key".into(),
            reason: e.to_string(),
        }
    })?;
    if let Some(p) = pin {
        crate::store::write_atomic(p, format!("{}\n", key.to_vkey()).as_bytes())?;
        return Ok((key, true));
    }
    Ok((key, false))
}
