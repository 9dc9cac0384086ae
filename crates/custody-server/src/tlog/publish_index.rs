//! Where each `target_publish` entry is: derived from the log, persisted
//! beside it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use custody_log::tile::TILE_WIDTH;

use super::{EntryBody, LogEntry, LogError};

/// File of the publish index inside the log directory.
pub const PUBLISH_INDEX_FILE: &str = "publish-index";
/// Entries scanned since the last persisted marker before a new marker is
/// written (bounds the re-scan after a restart).
const INDEX_MARKER_EVERY: u64 = 4096;

/// Where each `target_publish` entry is: `(repo, name, sha256) → index`.
///
/// Derived data, rebuilt from the log itself: the index tails the committed
/// log in order (on each lookup it parses the entries committed since the
/// last one), so it sees every `target_publish` whichever code path
/// appended it, never depends on an append and an index write both
/// surviving a crash, and can be deleted at any time (the next lookup
/// rescans). Persisted as JSON lines in `<log>/publish-index`:
/// `{"i":N,"repo":..,"name":..,"sha256":..}` per publish and
/// `{"upto":N}` markers ("every entry below N is indexed"); lines that do
/// not parse (a torn tail) are ignored. Why a file in the log directory and
/// not a database table: it is a function of the log alone, lives and is
/// backed up with it, and needs no schema or cross-store consistency.
#[derive(Debug, Default)]
pub(super) struct PublishIndex {
    path: PathBuf,
    map: std::collections::HashMap<(String, String, String), u64>,
    /// every entry below this index has been indexed
    upto: u64,
    /// the last `upto` marker written to the file
    persisted_upto: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum IndexLine {
    Publish {
        i: u64,
        repo: String,
        name: String,
        sha256: String,
    },
    Upto {
        upto: u64,
    },
}

impl PublishIndex {
    pub(super) fn load(path: PathBuf) -> Self {
        let mut me = PublishIndex {
            path,
            ..PublishIndex::default()
        };
        let Ok(text) = std::fs::read_to_string(&me.path) else {
            return me;
        };
        let mut publishes = Vec::new();
        for line in text.lines() {
            match serde_json::from_str::<IndexLine>(line) {
                Ok(IndexLine::Upto { upto }) => me.upto = me.upto.max(upto),
                Ok(IndexLine::Publish {
                    i,
                    repo,
                    name,
                    sha256,
                }) => publishes.push((i, repo, name, sha256)),
                Err(_) => {}
            }
        }
        // Only what a marker covers is trusted as complete; publishes at or
        // beyond it are found again by the next scan.
        for (i, repo, name, sha256) in publishes {
            if i < me.upto {
                me.map.entry((repo, name, sha256)).or_insert(i);
            }
        }
        me.persisted_upto = me.upto;
        me
    }

    pub(super) fn get(&self, repo: &str, name: &str, sha256: &str) -> Option<u64> {
        self.map
            .get(&(repo.to_owned(), name.to_owned(), sha256.to_owned()))
            .copied()
    }

    /// Index the committed entries `[upto, size)`.
    pub(super) fn catch_up(
        &mut self,
        tiles: &custody_log::fs::TileStore,
        size: u64,
    ) -> Result<(), LogError> {
        if self.upto >= size {
            return Ok(());
        }
        let mut lines = String::new();
        let mut bundle = self.upto >> 8;
        while bundle << 8 < size {
            let width = if bundle < size >> 8 {
                TILE_WIDTH
            } else {
                u16::try_from(size & 0xff).unwrap_or(TILE_WIDTH)
            };
            let bytes = tiles
                .bundle_bytes(custody_log::BundleId {
                    index: bundle,
                    width,
                })?
                .ok_or_else(|| {
                    LogError::Encode(format!("entry bundle {bundle} missing below size {size}"))
                })?;
            let entries = custody_log::tile::parse_entry_bundle(&bytes)
                .map_err(|e| LogError::Encode(format!("entry bundle {bundle}: {e}")))?;
            for (k, e) in entries.iter().enumerate() {
                let i = (bundle << 8) + k as u64;
                if i < self.upto {
                    continue;
                }
                let Ok(LogEntry {
                    body:
                        EntryBody::TargetPublish {
                            repo, name, hashes, ..
                        },
                    ..
                }) = LogEntry::from_bytes(e)
                else {
                    continue;
                };
                let Some(sha) = hashes.get("sha256") else {
                    continue;
                };
                let key = (repo, name, sha.to_ascii_lowercase());
                if self.map.contains_key(&key) {
                    continue;
                }
                let line = IndexLine::Publish {
                    i,
                    repo: key.0.clone(),
                    name: key.1.clone(),
                    sha256: key.2.clone(),
                };
                if let Ok(l) = serde_json::to_string(&line) {
                    lines.push_str(&l);
                    lines.push('\n');
                }
                self.map.insert(key, i);
            }
            bundle += 1;
        }
        self.upto = size;
        if !lines.is_empty() || self.upto - self.persisted_upto >= INDEX_MARKER_EVERY {
            lines.push_str(&format!("{{\"upto\":{}}}\n", self.upto));
            self.persist(&lines);
        }
        Ok(())
    }

    /// Append lines (fsynced: a marker must never outlive the publish lines
    /// before it). A failure is logged, not fatal: the index is rebuilt
    /// from the log on the next start.
    fn persist(&mut self, lines: &str) {
        use std::io::Write as _;
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(lines.as_bytes())?;
                f.sync_data()
            });
        match res {
            Ok(()) => self.persisted_upto = self.upto,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "publish index not persisted; it is rebuilt from the log at the next start")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_index_ignores_torn_lines_and_trusts_only_marked_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUBLISH_INDEX_FILE);
        std::fs::write(
            &p,
            concat!(
                "{\"i\":3,\"repo\":\"main\",\"name\":\"a\",\"sha256\":\"aa\"}\n",
                "{\"upto\":10}\n",
                "{\"i\":12,\"repo\":\"main\",\"name\":\"b\",\"sha256\":\"bb\"}\n",
                "{\"i\":14,\"re"
            ),
        )
        .unwrap();
        let idx = PublishIndex::load(p);
        assert_eq!(idx.get("main", "a", "aa"), Some(3));
        // beyond the marker: found again by the next scan, not trusted now
        assert_eq!(idx.get("main", "b", "bb"), None);
        assert_eq!(idx.upto, 10);
    }
}
