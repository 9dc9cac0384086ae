//! One TUF refresh (spec §5) as a sans-IO step machine over
//! [`TrustedMetadata`], in the manner of [`TargetSearch`].
//!
//! ```text
//! let mut r = Refresh::new(&local_root_bytes, limits, now)?
//!     .with_targets_check(Box::new(|targets| check(targets)));  // optional hook
//! loop {
//!     match r.step()? {
//!         Step::Fetch(f) => {
//!             // f.source: Local (the caller's trusted store, file f.file_name)
//!             //        or Remote (the repository, file f.file_name);
//!             // read at most f.max_bytes; None = not there
//!             r.provide(bytes.as_deref())?;
//!         }
//!         Step::Refreshed => break,
//!         _ => unreachable in a refresh (lookup answers)
//!     }
//! }
//! for w in r.take_writes() { apply w to the store }   // now, or once the caller trusts the whole update
//! r.lookup("a/b.tgz");            // then drive the same loop until Found / NotFound
//! ```
//!
//! The order is python-tuf ngclient's, which tuf-conformance asserts on:
//! 1. remote `N+1.root.json`, `N+2.root.json`, … until one is not found, at
//!    most `Limits::max_root_rotations` requests; each verified root is to
//!    be persisted, and a rotation that changed the timestamp or snapshot
//!    keys removes the local timestamp and snapshot (fast-forward recovery,
//!    spec 5.3.11), which are then not read either;
//! 2. local `timestamp.json` (only a rollback reference: its verdict is
//!    ignored), then remote `timestamp.json`, persisted unless its version is
//!    unchanged;
//! 3. local `snapshot.json`: if custody-tuf accepts it as final, no fetch;
//!    else remote `[V.]snapshot.json` (consistent-snapshot name from the
//!    timestamp's meta), at most the length the timestamp signed;
//! 4. the same for `targets` (top-level, through the caller's hook if one
//!    was given), then for delegated roles on demand while a [`lookup`]
//!    walks the delegation graph; a role the snapshot does not list is an
//!    error before any request.
//!
//! Every verdict is [`TrustedMetadata`]'s. The machine decides which file
//! to ask for, from where and how many bytes at most, and which verified
//! bytes the store must keep ([`Refresh::take_writes`]). It never writes:
//! the caller persists when it decides. custody-client's `Updater` applies
//! the writes after every step (python-tuf semantics); the device agent
//! applies them only after the whole update was verified, so a refused
//! update leaves its trusted store unchanged.
//!
//! A caller that holds the whole repository (custody-repo's publish
//! check) asks for each delegated role by name instead, with
//! [`Refresh::load_delegated`]; a [`Refresh`] is [`Clone`], so independent
//! roles can be verified on copies in parallel.
//!
//! [`lookup`]: Refresh::lookup

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::naming::local_metadata_filename;
use crate::schema::{TargetFile, Targets};
use crate::search::{SearchStep, TargetSearch};
use crate::trusted::{TimestampUpdate, TrustedMetadata};

/// The error a [`TargetsCheck`] returns (the caller's own type, boxed).
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;

/// A caller's check of the top-level targets role, run after its
/// signatures, version, length, hashes and expiry were verified and before
/// it is accepted (see [`TrustedMetadata::update_targets_checked`]).
pub type TargetsCheck = Box<dyn Fn(&Targets) -> std::result::Result<(), CheckError> + Send + Sync>;

/// A [`TargetsCheck`] shared by the clones of one [`Refresh`].
type SharedCheck =
    std::sync::Arc<dyn Fn(&Targets) -> std::result::Result<(), CheckError> + Send + Sync>;

/// Where the bytes of a [`Fetch`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The caller's trusted store (what an earlier refresh persisted).
    Local,
    /// The repository.
    Remote,
}

/// A file the refresh needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// role ("root", "timestamp", "snapshot", "targets", or a delegated role)
    pub role: String,
    /// where to read it
    pub source: Source,
    /// file name: in the store for [`Source::Local`] (`ROLE.json`,
    /// percent-encoded); relative to the repository's metadata base for
    /// [`Source::Remote`] (`N.root.json`, `timestamp.json`, and with
    /// consistent snapshots `V.snapshot.json` / `V.ROLE.json`)
    pub file_name: String,
    /// the version asked for, when one is known (root N+1; snapshot and
    /// targets versions from the timestamp / snapshot meta)
    pub version: Option<u64>,
    /// read at most this many bytes (the signed length, else the limit);
    /// more is refused as endless data
    pub max_bytes: u64,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Read this file and hand it to [`Refresh::provide`].
    Fetch(Fetch),
    /// Root, timestamp, snapshot and top-level targets are trusted, and no
    /// lookup is in progress.
    Refreshed,
    /// The lookup started with [`Refresh::lookup`] found its target.
    Found {
        /// role that lists it
        role: String,
        /// the signed target info
        target: TargetFile,
    },
    /// No role on the lookup's search path lists the target.
    NotFound {
        /// the search stopped at `Limits::max_delegations`
        limit_reached: bool,
    },
}

/// A change the caller's trusted store must make to reflect this refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// Keep these verified bytes as the role's local file (`ROLE.json`).
    Persist {
        /// role
        role: String,
        /// verified bytes
        bytes: Vec<u8>,
    },
    /// Delete the role's local file (fast-forward attack recovery).
    Remove {
        /// role
        role: String,
    },
}

impl StoreWrite {
    /// The role the write is about.
    pub fn role(&self) -> &str {
        match self {
            StoreWrite::Persist { role, .. } | StoreWrite::Remove { role } => role,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Root,
    LocalTimestamp,
    RemoteTimestamp,
    LocalSnapshot,
    RemoteSnapshot,
    LocalTargets { role: String, delegator: String },
    RemoteTargets { role: String, delegator: String },
    Idle,
    Failed,
}

/// State of one refresh (and of the lookups after it). A clone is an
/// independent copy (trusted metadata, stage, pending request, store
/// writes so far); the targets hook is shared.
#[derive(Clone)]
pub struct Refresh {
    trusted: TrustedMetadata,
    now: DateTime<Utc>,
    stage: Stage,
    root_requests: u32,
    pending: Option<Fetch>,
    writes: Vec<StoreWrite>,
    check: Option<SharedCheck>,
    search: Option<TargetSearch>,
    delegated: Vec<String>,
}

impl std::fmt::Debug for Refresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresh")
            .field("now", &self.now)
            .field("stage", &self.stage)
            .field("pending", &self.pending)
            .field("writes", &self.writes.len())
            .field("targets_check", &self.check.is_some())
            .finish_non_exhaustive()
    }
}

impl Refresh {
    /// Start a refresh from the locally trusted root's bytes (checked to be
    /// signed by a threshold of its own root keys). `now` is the reference
    /// time of every expiry decision.
    pub fn new(trusted_root: &[u8], limits: Limits, now: DateTime<Utc>) -> Result<Self> {
        Ok(Self::from_trusted(
            TrustedMetadata::with_limits(trusted_root, limits)?,
            now,
        ))
    }

    /// Start a refresh from a freshly loaded [`TrustedMetadata`] (nothing
    /// but its root loaded).
    pub fn from_trusted(trusted: TrustedMetadata, now: DateTime<Utc>) -> Self {
        Refresh {
            trusted,
            now,
            stage: Stage::Root,
            root_requests: 0,
            pending: None,
            writes: Vec::new(),
            check: None,
            search: None,
            delegated: Vec::new(),
        }
    }

    /// Run `check` on the top-level targets role (local or remote) before
    /// it is accepted; a refusal is [`Error::Refused`] for a remote role,
    /// and for the local one the remote role is asked for instead.
    pub fn with_targets_check(mut self, check: TargetsCheck) -> Self {
        self.check = Some(check.into());
        self
    }

    /// The trusted metadata so far.
    pub fn trusted(&self) -> &TrustedMetadata {
        &self.trusted
    }

    /// True once the top-level roles are trusted.
    pub fn is_refreshed(&self) -> bool {
        self.trusted.targets().is_some() && matches!(self.stage, Stage::Idle)
    }

    /// Delegated roles loaded so far, in load order.
    pub fn delegated_roles(&self) -> &[String] {
        &self.delegated
    }

    /// Store changes accumulated since the last call, in order.
    pub fn take_writes(&mut self) -> Vec<StoreWrite> {
        std::mem::take(&mut self.writes)
    }

    /// Start looking up `target_path` through the delegation graph (after
    /// the refresh, or the refresh runs first); drive [`Refresh::step`]
    /// until [`Step::Found`] or [`Step::NotFound`].
    pub fn lookup(&mut self, target_path: &str) {
        self.search = Some(TargetSearch::new(
            target_path,
            self.trusted.limits().max_delegations,
        ));
    }

    /// Verify delegated role `role` as delegated by `delegator` next (a
    /// caller that knows which role it needs, not a target path): after the
    /// refresh, with no lookup in progress. Drive [`Refresh::step`] until
    /// [`Step::Refreshed`]: the local `ROLE.json` is asked for first, then
    /// the remote file the snapshot names, with the same rules as a lookup's
    /// loads (a role the snapshot does not list is an error before any
    /// request; a role already verified against `delegator` is not asked
    /// for again).
    pub fn load_delegated(&mut self, role: &str, delegator: &str) -> Result<()> {
        if self.stage != Stage::Idle || self.search.is_some() || self.pending.is_some() {
            return Err(Error::order(
                role,
                "a delegated role is loaded only after the refresh, with no lookup in progress",
            ));
        }
        self.stage = Stage::LocalTargets {
            role: role.to_owned(),
            delegator: delegator.to_owned(),
        };
        Ok(())
    }

    /// The next step. Asking again without [`Refresh::provide`] returns the
    /// same [`Step::Fetch`].
    pub fn step(&mut self) -> Result<Step> {
        let r = self.advance();
        if r.is_err() {
            self.stage = Stage::Failed;
            self.pending = None;
        }
        r
    }

    fn advance(&mut self) -> Result<Step> {
        if let Some(p) = &self.pending {
            return Ok(Step::Fetch(p.clone()));
        }
        let limits = *self.trusted.limits();
        let fetch = match &self.stage {
            Stage::Root if self.root_requests < limits.max_root_rotations => Fetch {
                role: "root".into(),
                source: Source::Remote,
                file_name: self.trusted.next_root_filename(),
                version: Some(self.trusted.root().version.saturating_add(1)),
                max_bytes: limits.max_root_bytes,
            },
            Stage::Root => {
                self.stage = Stage::LocalTimestamp;
                return self.advance();
            }
            Stage::LocalTimestamp | Stage::LocalSnapshot
                if self.trusted.must_discard_timestamp_and_snapshot() =>
            {
                self.stage = if self.stage == Stage::LocalTimestamp {
                    Stage::RemoteTimestamp
                } else {
                    Stage::RemoteSnapshot
                };
                return self.advance();
            }
            Stage::LocalTimestamp => local("timestamp", limits.max_timestamp_bytes),
            Stage::RemoteTimestamp => self.remote("timestamp", None)?,
            Stage::LocalSnapshot => local("snapshot", limits.max_snapshot_bytes),
            Stage::RemoteSnapshot => {
                let v = self.trusted.meta_for("snapshot")?.version;
                self.remote("snapshot", Some(v))?
            }
            Stage::LocalTargets { role, delegator } => {
                if self.trusted.is_verified_by(role, delegator) {
                    self.stage = Stage::Idle;
                    return self.advance();
                }
                local(role, limits.max_targets_bytes)
            }
            Stage::RemoteTargets { role, .. } => {
                // Like python-tuf: no request for a role the snapshot does
                // not list (MissingMeta names the role and the file).
                let v = self.trusted.meta_for(role)?.version;
                let role = role.clone();
                self.remote(&role, Some(v))?
            }
            Stage::Idle => return self.search_step(),
            Stage::Failed => {
                return Err(Error::order(
                    "refresh",
                    "an earlier step of this refresh failed; start a new one",
                ))
            }
        };
        self.pending = Some(fetch.clone());
        Ok(Step::Fetch(fetch))
    }

    fn remote(&self, role: &str, version: Option<u64>) -> Result<Fetch> {
        Ok(Fetch {
            role: role.to_owned(),
            source: Source::Remote,
            file_name: self.trusted.remote_filename(role)?,
            version,
            max_bytes: self.trusted.max_length(role),
        })
    }

    fn search_step(&mut self) -> Result<Step> {
        let Some(search) = self.search.as_mut() else {
            return Ok(Step::Refreshed);
        };
        match search.next(&self.trusted)? {
            SearchStep::Found { role, target } => {
                self.search = None;
                Ok(Step::Found { role, target })
            }
            SearchStep::NotFound => {
                let limit_reached = search.limit_reached();
                self.search = None;
                Ok(Step::NotFound { limit_reached })
            }
            SearchStep::Load { role, delegator } => {
                self.stage = Stage::LocalTargets { role, delegator };
                self.advance()
            }
        }
    }

    /// Hand over the file the last [`Step::Fetch`] asked for: its bytes, or
    /// `None` if it is not there (a missing local file, or the end of the
    /// root walk; any other missing remote file is [`Error::Missing`]).
    /// Every rule of custody-tuf is applied here; after an error the refresh
    /// is over.
    pub fn provide(&mut self, bytes: Option<&[u8]>) -> Result<()> {
        let Some(fetch) = self.pending.take() else {
            return Err(Error::order("refresh", "no file was asked for"));
        };
        let r = self.accept(&fetch, bytes);
        if r.is_err() {
            self.stage = Stage::Failed;
        }
        r
    }

    fn accept(&mut self, fetch: &Fetch, bytes: Option<&[u8]>) -> Result<()> {
        if let Some(b) = bytes {
            if b.len() as u64 > fetch.max_bytes {
                if fetch.source == Source::Local {
                    // an oversized local file is simply not used
                    return self.accept(fetch, None);
                }
                return Err(Error::TooLarge {
                    role: fetch.role.clone(),
                    limit: fetch.max_bytes,
                });
            }
        }
        let missing = || Error::Missing {
            role: fetch.role.clone(),
            file: fetch.file_name.clone(),
        };
        let now = self.now;
        match (self.stage.clone(), bytes) {
            // the trusted root is the newest (spec 5.3.3)
            (Stage::Root, None) => self.stage = Stage::LocalTimestamp,
            (Stage::Root, Some(b)) => {
                self.root_requests += 1;
                let update = self.trusted.update_root(b)?;
                self.persist("root", b);
                if update.discard_timestamp_and_snapshot {
                    self.writes.push(StoreWrite::Remove {
                        role: "timestamp".into(),
                    });
                    self.writes.push(StoreWrite::Remove {
                        role: "snapshot".into(),
                    });
                }
            }
            (Stage::LocalTimestamp, b) => {
                if let Some(b) = b {
                    // only a rollback reference: its verdict does not matter
                    let _ = self.trusted.update_timestamp(b, now);
                }
                self.stage = Stage::RemoteTimestamp;
            }
            (Stage::RemoteTimestamp, None) => return Err(missing()),
            (Stage::RemoteTimestamp, Some(b)) => {
                if self.trusted.update_timestamp(b, now)? == TimestampUpdate::Updated {
                    self.persist("timestamp", b);
                }
                self.stage = Stage::LocalSnapshot;
            }
            (Stage::LocalSnapshot, b) => {
                let final_ok =
                    b.is_some_and(|b| self.trusted.update_snapshot(b, now, true).is_ok());
                self.stage = if final_ok {
                    top_targets()
                } else {
                    Stage::RemoteSnapshot
                };
            }
            (Stage::RemoteSnapshot, None) => return Err(missing()),
            (Stage::RemoteSnapshot, Some(b)) => {
                self.trusted.update_snapshot(b, now, false)?;
                self.persist("snapshot", b);
                self.stage = top_targets();
            }
            (Stage::LocalTargets { role, delegator }, b) => {
                let ok = b.is_some_and(|b| self.load_targets(b, &role, &delegator).is_ok());
                self.stage = if ok {
                    self.note_loaded(&role);
                    Stage::Idle
                } else {
                    Stage::RemoteTargets { role, delegator }
                };
            }
            (Stage::RemoteTargets { .. }, None) => return Err(missing()),
            (Stage::RemoteTargets { role, delegator }, Some(b)) => {
                self.load_targets(b, &role, &delegator)?;
                self.persist(&role, b);
                self.note_loaded(&role);
                self.stage = Stage::Idle;
            }
            (Stage::Idle | Stage::Failed, _) => {
                return Err(Error::order("refresh", "no file was asked for"))
            }
        }
        Ok(())
    }

    fn load_targets(&mut self, bytes: &[u8], role: &str, delegator: &str) -> Result<()> {
        match (&self.check, role, delegator) {
            (Some(check), "targets", "root") => {
                self.trusted
                    .update_targets_checked(bytes, self.now, |t| check(t))
            }
            _ => self
                .trusted
                .update_delegated_targets(bytes, role, delegator, self.now),
        }
    }

    fn persist(&mut self, role: &str, bytes: &[u8]) {
        self.writes.push(StoreWrite::Persist {
            role: role.to_owned(),
            bytes: bytes.to_vec(),
        });
    }

    fn note_loaded(&mut self, role: &str) {
        if role != "targets" && !self.delegated.iter().any(|r| r == role) {
            self.delegated.push(role.to_owned());
        }
    }
}

fn top_targets() -> Stage {
    Stage::LocalTargets {
        role: "targets".into(),
        delegator: "root".into(),
    }
}

fn local(role: &str, max_bytes: u64) -> Fetch {
    Fetch {
        role: role.to_owned(),
        source: Source::Local,
        file_name: local_metadata_filename(role),
        version: None,
        max_bytes,
    }
}
