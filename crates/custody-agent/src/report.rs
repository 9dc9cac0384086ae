//! The durable report queue.
//!
//! Every attempt outcome becomes a [`Report`] written to `reports/` as one
//! file per report, `<seq:020>-<id>.json`, atomically (temp, fsync, rename,
//! dir fsync). A report counts as reported once its file exists. The
//! uploader hands them to a [`ReportSink`] in sequence order and deletes a
//! file only after the sink acknowledged it; a crash between the
//! acknowledgement and the delete re-sends it, so the server must treat the
//! report id as an idempotency key (at-least-once delivery, exactly-once on
//! disk).
//!
//! [`ReportQueue::enqueue`] is idempotent on the report id: the id is derived
//! from the attempt number, so re-running the "queue the report" step after a
//! crash finds the file already there and writes nothing.
//! Sequence numbers only grow: the highest sequence ever acknowledged is
//! kept in `reports/acked` (written before the file is deleted), so an empty
//! queue does not restart at 1.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, AgentError};
use crate::fsutil::{read_json, remove_file_durable, write_json};
use crate::target::TargetMeta;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The new version is committed.
    Installed,
    /// Nothing was installed; the old version is kept.
    Failed {
        /// why, with values
        reason: String,
    },
    /// The new version was activated but did not pass its trial (health
    /// check failed or timed out, or the agent died before commit); the old
    /// version is active again.
    RolledBack {
        /// why, with values
        reason: String,
    },
    /// Verification found an attack (bad signature, hash mismatch, rollback,
    /// freeze, ...); nothing was installed.
    AttackDetected {
        /// the rule that broke, with values
        reason: String,
    },
}

impl Outcome {
    /// Short name: `installed`, `failed`, `rolled_back`, `attack_detected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Installed => "installed",
            Outcome::Failed { .. } => "failed",
            Outcome::RolledBack { .. } => "rolled_back",
            Outcome::AttackDetected { .. } => "attack_detected",
        }
    }
}

/// One report about one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// stable id, `attempt-<n>`: the idempotency key for queue and server
    pub id: String,
    /// the attempt number
    pub attempt: u64,
    /// the target the attempt was about
    pub target: TargetMeta,
    /// what happened
    pub outcome: Outcome,
    /// the target that is committed after the attempt (name, counter)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<CommittedRef>,
    /// when the outcome was decided, seconds since the Unix epoch
    pub decided_at: u64,
}

/// Name and release counter of a committed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedRef {
    /// target name
    pub name: String,
    /// release counter
    pub release_counter: u64,
}

/// The report id for attempt `n`.
pub fn report_id(attempt: u64) -> String {
    format!("attempt-{attempt}")
}

/// Where reports go once they leave the device (the server's report
/// endpoint in the network half; [`MemorySink`] in tests).
pub trait ReportSink {
    /// Deliver one report. `Ok(())` means the receiver acknowledged it
    /// durably; only then is it deleted from the queue. Receivers must
    /// treat `report.id` as an idempotency key.
    fn deliver(&mut self, seq: u64, report: &Report) -> Result<(), String>;
}

/// A sink that keeps what it receives (for tests and dry runs), and can be
/// told to refuse after a number of reports.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// acknowledged reports, in delivery order
    pub received: Vec<(u64, Report)>,
    /// refuse every delivery once `received.len()` reaches this
    pub fail_after: Option<usize>,
}

impl ReportSink for MemorySink {
    fn deliver(&mut self, seq: u64, report: &Report) -> Result<(), String> {
        if self.fail_after.is_some_and(|n| self.received.len() >= n) {
            return Err("memory sink configured to refuse".to_owned());
        }
        self.received.push((seq, report.clone()));
        Ok(())
    }
}

/// A queued report file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedReport {
    /// sequence number (file name prefix)
    pub seq: u64,
    /// the file
    pub path: PathBuf,
    /// its content
    pub report: Report,
}

/// The on-disk queue directory.
#[derive(Debug, Clone)]
pub struct ReportQueue {
    dir: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Acked {
    highest_acked_seq: u64,
}

impl ReportQueue {
    /// Open (and create) the queue directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let dir = dir.into();
        crate::fsutil::ensure_dir(&dir)?;
        Ok(ReportQueue { dir })
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn acked_path(&self) -> PathBuf {
        self.dir.join("acked")
    }

    fn highest_acked(&self) -> Result<u64, AgentError> {
        Ok(
            read_json::<Acked>(&self.acked_path(), "report queue acked marker")?
                .map_or(0, |a| a.highest_acked_seq),
        )
    }

    /// (seq, id, path) of every report file, in sequence order. Files that
    /// do not follow the naming scheme (temp files of an interrupted write)
    /// are ignored.
    fn entries(&self) -> Result<Vec<(u64, String, PathBuf)>, AgentError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(io_err(&self.dir, "list report queue"))?;
        for entry in rd {
            let entry = entry.map_err(io_err(&self.dir, "list report queue"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let Some((seq, id)) = stem.split_once('-') else {
                continue;
            };
            if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            out.push((seq, id.to_owned(), entry.path()));
        }
        out.sort_by_key(|(seq, _, _)| *seq);
        Ok(out)
    }

    /// Queue `report` durably unless a report with the same id is already
    /// queued. Returns its sequence number either way.
    pub fn enqueue(&self, report: &Report) -> Result<u64, AgentError> {
        let entries = self.entries()?;
        if let Some((seq, _, _)) = entries.iter().find(|(_, id, _)| *id == report.id) {
            return Ok(*seq);
        }
        let last = entries.last().map_or(0, |(s, _, _)| *s);
        let seq = last.max(self.highest_acked()?).saturating_add(1);
        let path = self.dir.join(format!("{seq:020}-{}.json", report.id));
        write_json(&path, report)?;
        Ok(seq)
    }

    /// All queued reports, oldest first.
    pub fn pending(&self) -> Result<Vec<QueuedReport>, AgentError> {
        let mut out = Vec::new();
        for (seq, _, path) in self.entries()? {
            let Some(report) = read_json::<Report>(&path, "queued report")? else {
                continue;
            };
            out.push(QueuedReport { seq, path, report });
        }
        Ok(out)
    }

    /// Forget a report the receiver acknowledged: record the sequence
    /// number as acknowledged first, then delete the file.
    pub fn ack(&self, queued: &QueuedReport) -> Result<(), AgentError> {
        if queued.seq > self.highest_acked()? {
            write_json(
                &self.acked_path(),
                &Acked {
                    highest_acked_seq: queued.seq,
                },
            )?;
        }
        remove_file_durable(&queued.path)
    }

    /// Deliver queued reports in order until the queue is empty or the sink
    /// refuses one (that one and later ones stay queued, order kept).
    /// Returns how many were delivered.
    pub fn upload(&self, sink: &mut dyn ReportSink) -> Result<usize, AgentError> {
        let mut delivered = 0;
        for queued in self.pending()? {
            sink.deliver(queued.seq, &queued.report)
                .map_err(|reason| AgentError::Upload {
                    seq: queued.seq,
                    id: queued.report.id.clone(),
                    reason,
                })?;
            self.ack(&queued)?;
            delivered += 1;
        }
        Ok(delivered)
    }
}
