//! The custody log: an append-only, hash-chained JSON-lines record of
//! every change.
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::error::RepoError;

use super::codec::io_err;
use super::Repository;
use super::LOG_FILE;

impl Repository {
    pub(super) fn log_event(
        &mut self,
        now: DateTime<Utc>,
        action: &str,
        detail: serde_json::Value,
    ) {
        self.log.push(serde_json::json!({
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "action": action,
            "detail": detail,
        }));
    }

    pub(super) fn flush_log(&mut self) -> Result<(), RepoError> {
        if self.log.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(LOG_FILE);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // Hash chain: each entry carries the sha256 of the previous line, so
        // an edit or deletion inside the log breaks every later link
        // (`verify_log`). It is tamper-evident, not tamper-proof: whoever can
        // rewrite the whole file can rebuild the chain.
        let mut prev = last_line_hash(&mut f).map_err(io_err(&path))?;
        let mut buf = Vec::new();
        for mut ev in self.log.drain(..) {
            if let Some(obj) = ev.as_object_mut() {
                obj.insert("prev".into(), serde_json::Value::String(prev.clone()));
            }
            let line = serde_json::to_vec(&ev)
                .map_err(|e| RepoError::Invalid(format!("serializing log: {e}")))?;
            prev = custody_tuf::crypto::sha256_hex(&line);
            buf.extend(line);
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))
    }
}

/// sha256 (hex) of the last line of the custody log, or 64 zeros for an
/// empty log.
fn last_line_hash(f: &mut std::fs::File) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    // Log lines are small; the last one is within the final 64 KiB.
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    if body.is_empty() {
        return Ok("0".repeat(64));
    }
    let last = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => body.get(i + 1..).unwrap_or_default(),
        None => body,
    };
    Ok(custody_tuf::crypto::sha256_hex(last))
}

/// Check the custody log's hash chain. Returns the number of entries, or
/// the 1-based line number of the first entry whose `prev` does not match.
pub fn verify_log(dir: &Path) -> Result<usize, RepoError> {
    let path = dir.join(LOG_FILE);
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    let mut prev = "0".repeat(64);
    let mut n = 0;
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| RepoError::BadFile {
                path: path.clone(),
                detail: format!("line {}: not JSON: {e}", i + 1),
            })?;
        if v.get("prev").and_then(|p| p.as_str()) != Some(prev.as_str()) {
            return Err(RepoError::BadFile {
                path: path.clone(),
                detail: format!(
                    "line {}: hash chain broken: prev should be {prev} (sha256 of the line before); the log was edited or truncated",
                    i + 1
                ),
            });
        }
        prev = custody_tuf::crypto::sha256_hex(line);
        n += 1;
    }
    Ok(n)
}
