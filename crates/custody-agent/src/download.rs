//! Payload download: streamed to disk through custody-tuf's
//! [`TargetVerifier`], bounded by the signed length with custody-client's
//! [`Fetched`], resumed with HTTP `Range` after a dropped connection when
//! the server answers `206` for the right offset (otherwise restarted from
//! byte 0 with a fresh verifier). Memory stays at one 64 KiB buffer
//! whatever the payload size. The file is fsynced before the caller marks
//! it downloaded; unverified bytes never reach an installer because
//! [`crate::Agent::install`] re-verifies the file and the slot copy
//! verifies again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use custody_client::{FetchError, Fetched};
use custody_tuf::verify::TargetVerifier;
use custody_tuf::TargetFile;

use crate::fsutil::{parent, CHUNK_SIZE};

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The bytes broke the signed length or hashes (custody-tuf's verdict):
    /// an attack, never retried.
    #[error("{url}: payload refused: {reason}")]
    Rejected {
        /// where it came from
        url: String,
        /// custody-tuf's rule and values
        reason: String,
    },
    /// Network or server failure after the retries: transient.
    #[error("{url}: download failed after {tries} tries: {reason}")]
    Transport {
        /// URL
        url: String,
        /// attempts made
        tries: u32,
        /// last failure
        reason: String,
    },
    /// Local file failure.
    #[error("{path}: {action}: {source}")]
    Io {
        /// file
        path: String,
        /// what was done
        action: &'static str,
        /// OS error
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    /// A broken trust rule (as opposed to a transient failure).
    pub fn is_attack(&self) -> bool {
        matches!(self, DownloadError::Rejected { .. })
    }
}

fn io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> DownloadError + 'a {
    move |source| DownloadError::Io {
        path: path.display().to_string(),
        action,
        source,
    }
}

/// Download settings.
#[derive(Debug, Clone, Copy)]
pub struct DownloadConfig {
    /// connect budget
    pub connect: Duration,
    /// longest wait for one read
    pub per_read: Duration,
    /// attempts (first request + resumes)
    pub tries: u32,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            connect: Duration::from_secs(10),
            per_read: Duration::from_secs(30),
            tries: 5,
        }
    }
}

/// A ureq agent for check-ins and downloads (no status-as-error, so 206 and
/// error bodies can be read; no global timeout: a 1 GiB payload may take
/// long, a stalled one is stopped by the per-read budget).
pub fn http_agent(cfg: &DownloadConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(cfg.connect))
        .timeout_per_read(Some(cfg.per_read))
        .max_redirects(5)
        .user_agent(concat!("custody-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Stream `body` into `out` through `verifier`. Returns bytes written.
fn pump(
    body: &mut Fetched,
    verifier: &mut TargetVerifier,
    out: &mut File,
    dest: &Path,
    buf: &mut [u8],
) -> Result<Result<(), FetchError>, DownloadError> {
    loop {
        let n = match body.read_chunk(buf) {
            Ok(0) => return Ok(Ok(())),
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        verifier
            .update(chunk)
            .map_err(|e| DownloadError::Rejected {
                url: body.url().to_owned(),
                reason: e.to_string(),
            })?;
        out.write_all(chunk).map_err(io(dest, "write payload"))?;
    }
}

fn finish(
    verifier: TargetVerifier,
    out: File,
    dest: &Path,
    url: &str,
) -> Result<(), DownloadError> {
    verifier.finish().map_err(|e| DownloadError::Rejected {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    out.sync_all().map_err(io(dest, "fsync payload"))?;
    custody_fs::sync_dir(parent(dest)).map_err(|e| DownloadError::Io {
        path: dest.display().to_string(),
        action: "fsync directory",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}

fn create(dest: &Path) -> Result<File, DownloadError> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dest)
        .map_err(io(dest, "create payload file"))
}

fn fetch_error_is_attack(e: &FetchError) -> bool {
    matches!(e, FetchError::EndlessData { .. })
}

/// Download `url` (the image repository's target) into `dest`, verified
/// against `info` while streaming; resume with `Range` on a dropped
/// connection.
pub fn download_payload(
    http: &ureq::Agent,
    url: &str,
    target_name: &str,
    info: &TargetFile,
    dest: &Path,
    cfg: &DownloadConfig,
) -> Result<(), DownloadError> {
    let rejected = |reason: String| DownloadError::Rejected {
        url: url.to_owned(),
        reason,
    };
    let new_verifier =
        || TargetVerifier::new(target_name, info).map_err(|e| rejected(e.to_string()));
    let mut verifier = new_verifier()?;
    let mut out = create(dest)?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut last = String::new();
    let tries = cfg.tries.max(1);
    for _ in 0..tries {
        let offset = verifier.received();
        let mut req = http.get(url);
        if offset > 0 {
            req = req.header("range", format!("bytes={offset}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let status = resp.status().as_u16();
        let announced = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let resumed = offset > 0
            && status == 206
            && resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().starts_with(&format!("bytes {offset}-")));
        if status == 200 || (offset > 0 && status == 206 && !resumed) {
            if offset > 0 {
                // The server ignored the range (or answered another one):
                // start over with a fresh verifier and an empty file.
                if status != 200 {
                    last = format!("HTTP 206 for another range than bytes={offset}-");
                    verifier = new_verifier()?;
                    out = create(dest)?;
                    continue;
                }
                verifier = new_verifier()?;
                out = create(dest)?;
            }
        } else if !resumed {
            last = format!("server answered HTTP {status}");
            if status == 404 || status == 403 {
                break;
            }
            continue;
        }
        let remaining = info.length.saturating_sub(verifier.received());
        let mut body = Fetched::new(
            url,
            remaining,
            announced,
            Box::new(resp.into_body().into_reader()),
        )
        .map_err(|e| rejected(e.to_string()))?;
        match pump(&mut body, &mut verifier, &mut out, dest, &mut buf)? {
            Ok(()) => return finish(verifier, out, dest, url),
            Err(e) if fetch_error_is_attack(&e) => return Err(rejected(e.to_string())),
            Err(e) => {
                tracing::warn!(url, received = verifier.received(), error = %e, "download interrupted; resuming");
                last = e.to_string();
            }
        }
    }
    Err(DownloadError::Transport {
        url: url.to_owned(),
        tries,
        reason: last,
    })
}

/// Copy a payload from `reader` (a bundle's blob, already bounded to its
/// recorded length) into `dest` through the same verifier.
pub fn copy_payload(
    reader: Box<dyn Read + Send>,
    source: &str,
    target_name: &str,
    info: &TargetFile,
    dest: &Path,
) -> Result<(), DownloadError> {
    let mut verifier =
        TargetVerifier::new(target_name, info).map_err(|e| DownloadError::Rejected {
            url: source.to_owned(),
            reason: e.to_string(),
        })?;
    let mut out = create(dest)?;
    let mut body =
        Fetched::new(source, info.length, None, reader).map_err(|e| DownloadError::Rejected {
            url: source.to_owned(),
            reason: e.to_string(),
        })?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    match pump(&mut body, &mut verifier, &mut out, dest, &mut buf)? {
        Ok(()) => finish(verifier, out, dest, source),
        Err(e) => Err(DownloadError::Rejected {
            url: source.to_owned(),
            reason: e.to_string(),
        }),
    }
}
