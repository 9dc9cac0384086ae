//! A transparency-log witness (the IO loop of `custody witness`): poll a
//! custody log, check that each new checkpoint extends the last one this
//! witness cosigned (custody-log's [`custody_log::Witness`]: log signature,
//! consistency proof, rollback, fork), keep that checkpoint durably, then
//! post the cosignature (c2sp.org/tlog-cosignature) back to the log.
//!
//! On a fork, a rollback, an unproven extension or another origin the
//! witness refuses, keeps its state and returns a [`WitnessAlarm`] whose
//! evidence (both checkpoints) it saved in the state directory.
//!
//! State directory: `checkpoint` (the last cosigned checkpoint note),
//! `log.vkey` (the log key, pinned on first use unless one is given),
//! `alarm-<unix time>.txt` (evidence).

use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_log::wire::{
    ConsistencyProofAnswer, CosignRequest, MAX_CHECKPOINT_BYTES, MAX_PROOF_ANSWER_BYTES,
};
use custody_log::{Checkpoint, Cosigner, LogVerifier, Note, Update, VerifierKey, Witness};

pub use crate::logtool::LogToolError;
use crate::logtool::{get_required, log_url, resolve_log_key};
use crate::transport::{HttpTransport, Timeouts};

/// Where and how to witness.
#[derive(Debug, Clone)]
pub struct WitnessOptions {
    /// Base URL of the custody server (the log is under `/log/v1`).
    pub log: String,
    /// State directory (created if missing).
    pub state: PathBuf,
    /// The log's verifier key (vkey string or file); `None`: the pinned
    /// one, else the served one, pinned (trust on first use).
    pub log_key: Option<String>,
}

/// What one round did when the log behaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitnessEvent {
    /// Same checkpoint as last time, already cosigned.
    Unchanged {
        /// its size
        size: u64,
    },
    /// A checkpoint was cosigned and the cosignature accepted by the log.
    Cosigned {
        /// its size
        size: u64,
        /// `first`, `unchanged` or `advanced`
        update: &'static str,
        /// previous size, when advanced
        from: Option<u64>,
    },
}

/// The witness refused a checkpoint that proves misbehaviour.
#[derive(Debug)]
pub struct WitnessAlarm {
    /// `fork`, `rollback`, `inconsistent` or `origin_mismatch`
    pub kind: &'static str,
    /// custody-log's refusal
    pub error: custody_log::WitnessError,
    /// where the evidence was to be written
    pub evidence: PathBuf,
    /// the evidence: the refusal, the stored and the served checkpoint
    pub text: String,
    /// `Err` if the evidence file could not be written
    pub written: Result<(), String>,
}

impl WitnessAlarm {
    /// Where the evidence is (or, if it could not be written, the evidence
    /// itself).
    pub fn evidence_note(&self) -> String {
        match &self.written {
            Ok(()) => format!("evidence in {}", self.evidence.display()),
            Err(err) => format!(
                "evidence NOT written to {}: {err}; it follows on stderr\n{}",
                self.evidence.display(),
                self.text
            ),
        }
    }
}

/// What one round ended with.
#[derive(Debug)]
pub enum StepOutcome {
    /// The log behaved.
    Event(WitnessEvent),
    /// The log misbehaved.
    Alarm(WitnessAlarm),
}

/// What [`LogWitness::run`] reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A round that went well.
    Event(&'a WitnessEvent),
    /// A round that failed (the loop goes on).
    Failed(&'a LogToolError),
}

/// A witness of one log.
#[derive(Debug)]
pub struct LogWitness {
    transport: HttpTransport,
    base: String,
    state: PathBuf,
    verifier: LogVerifier,
    witness: Witness,
    pinned_now: Option<VerifierKey>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The time budgets of the log tools: one minute per request.
pub(crate) fn tool_transport() -> HttpTransport {
    HttpTransport::new(Timeouts {
        overall: Duration::from_secs(60),
        ..Timeouts::default()
    })
}

impl LogWitness {
    /// Open the state directory and find the log key (see
    /// [`WitnessOptions::log_key`]).
    pub fn open(opts: WitnessOptions, cosigner: Cosigner) -> Result<Self, LogToolError> {
        std::fs::create_dir_all(&opts.state).map_err(|error| LogToolError::File {
            path: opts.state.clone(),
            op: "creating state directory",
            error,
        })?;
        let transport = tool_transport();
        let (key, pinned) = resolve_log_key(
            &transport,
            &opts.log,
            opts.log_key.as_deref(),
            Some(&opts.state.join("log.vkey")),
        )?;
        let verifier =
            LogVerifier::new(key.name(), key.clone()).map_err(|e| LogToolError::Key {
                what: "log key".into(),
                reason: e.to_string(),
            })?;
        Ok(LogWitness {
            transport,
            base: opts.log.trim_end_matches('/').to_owned(),
            state: opts.state,
            verifier,
            witness: Witness::new(cosigner),
            pinned_now: pinned.then_some(key),
        })
    }

    /// The log key, if [`LogWitness::open`] pinned it on first use.
    pub fn pinned_on_first_use(&self) -> Option<&VerifierKey> {
        self.pinned_now.as_ref()
    }

    /// Rounds every `interval` (one if `once`) until an alarm; a failed
    /// round is reported and the loop goes on, unless `once`.
    pub fn run(
        &self,
        interval: Duration,
        once: bool,
        mut report: impl FnMut(Progress<'_>),
    ) -> Result<Option<WitnessAlarm>, LogToolError> {
        loop {
            match self.step() {
                Ok(StepOutcome::Event(e)) => report(Progress::Event(&e)),
                Ok(StepOutcome::Alarm(a)) => return Ok(Some(a)),
                Err(e) if once => return Err(e),
                Err(e) => report(Progress::Failed(&e)),
            }
            if once {
                return Ok(None);
            }
            std::thread::sleep(interval);
        }
    }

    fn stored(&self, path: &Path) -> Result<Option<(Vec<u8>, Checkpoint)>, LogToolError> {
        let Some(bytes) = crate::store::read_bounded(path, MAX_CHECKPOINT_BYTES as u64)? else {
            return Ok(None);
        };
        let cp = self
            .verifier
            .verify(&bytes)
            .map_err(|e| LogToolError::Checkpoint {
                what: format!("stored checkpoint {}", path.display()),
                reason: e.to_string(),
            })?
            .checkpoint;
        Ok(Some((bytes, cp)))
    }

    /// One round: fetch, check, store, cosign, post.
    pub fn step(&self) -> Result<StepOutcome, LogToolError> {
        let base = &self.base;
        let signed = get_required(
            &self.transport,
            &log_url(base, "checkpoint")?,
            MAX_CHECKPOINT_BYTES as u64,
        )?;
        let last_path = self.state.join("checkpoint");
        let stored = self.stored(&last_path)?;
        let last = stored.as_ref().map(|(_, c)| c);
        // Parse first (signature checked again inside add_checkpoint) to
        // learn the size for the consistency proof.
        let new = self
            .verifier
            .verify(&signed)
            .map_err(|e| LogToolError::Checkpoint {
                what: format!("checkpoint from {base}"),
                reason: e.to_string(),
            })?
            .checkpoint;
        let proof = match last {
            Some(l) if new.size > l.size => {
                let url = log_url(
                    base,
                    &format!("proof/consistency?old={}&new={}", l.size, new.size),
                )?;
                let body = get_required(&self.transport, &url, MAX_PROOF_ANSWER_BYTES as u64)?;
                ConsistencyProofAnswer::parse_for(&body, l.size, new.size).map_err(|error| {
                    LogToolError::Wire {
                        url: url.to_string(),
                        error,
                    }
                })?
            }
            _ => Vec::new(),
        };
        let c = match self
            .witness
            .add_checkpoint(&self.verifier, last, &signed, &proof, now())
        {
            Ok(c) => c,
            Err(e) => return self.alarm(e, stored.as_ref().map(|(b, _)| b.as_slice()), &signed),
        };
        let me = self.witness.cosigner().verifier_key();
        let already = Note::parse(&signed)
            .map_err(|e| LogToolError::Checkpoint {
                what: format!("checkpoint from {base}"),
                reason: e.to_string(),
            })?
            .signatures()
            .iter()
            .any(|s| s.name == me.name() && s.key_id == me.key_id());
        if c.update == Update::Unchanged && already {
            return Ok(StepOutcome::Event(WitnessEvent::Unchanged {
                size: c.checkpoint.size,
            }));
        }
        // The new state is durable before the cosignature leaves.
        crate::store::write_atomic(&last_path, &signed)?;
        let req = CosignRequest {
            key: me.to_vkey(),
            checkpoint: String::from_utf8_lossy(&signed).into_owned(),
            signature: c.cosignature.to_line(),
        };
        let url = log_url(base, "cosign")?;
        let body = serde_json::to_vec(&req).map_err(|e| LogToolError::Checkpoint {
            what: "cosign request".into(),
            reason: e.to_string(),
        })?;
        let (status, answer) = self
            .transport
            .post_json(&url, &body, 64 * 1024)
            .map_err(LogToolError::Fetch)?;
        if status != 200 {
            return Err(LogToolError::Post {
                url: url.to_string(),
                status,
                body: String::from_utf8_lossy(&answer).chars().take(300).collect(),
            });
        }
        let (update, from) = match c.update {
            Update::First => ("first", None),
            Update::Unchanged => ("unchanged", None),
            Update::Advanced { from, .. } => ("advanced", Some(from)),
        };
        Ok(StepOutcome::Event(WitnessEvent::Cosigned {
            size: c.checkpoint.size,
            update,
            from,
        }))
    }

    fn alarm(
        &self,
        e: custody_log::WitnessError,
        stored: Option<&[u8]>,
        served: &[u8],
    ) -> Result<StepOutcome, LogToolError> {
        use custody_log::WitnessError as W;
        let kind = match &e {
            W::Fork { .. } => "fork",
            W::Rollback { .. } => "rollback",
            W::Inconsistent { .. } => "inconsistent",
            W::OriginMismatch { .. } => "origin_mismatch",
            W::Checkpoint(_) | W::Note(_) => {
                return Err(LogToolError::Checkpoint {
                    what: format!("checkpoint from {} refused", self.base),
                    reason: e.to_string(),
                })
            }
        };
        let evidence = self.state.join(format!("alarm-{}.txt", now()));
        let mut text = format!("{e}\n\n--- stored checkpoint ---\n");
        text.push_str(&String::from_utf8_lossy(stored.unwrap_or(b"")));
        text.push_str("\n--- served checkpoint ---\n");
        text.push_str(&String::from_utf8_lossy(served));
        // The alarm itself must not be lost because its evidence file
        // could not be written: the caller says so, and still raises it.
        let written = std::fs::write(&evidence, &text).map_err(|err| err.to_string());
        Ok(StepOutcome::Alarm(WitnessAlarm {
            kind,
            error: e,
            evidence,
            text,
            written,
        }))
    }
}
