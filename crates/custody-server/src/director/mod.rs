//! The director served by `custody serve` (issue #5): device enrolment,
//! signed check-ins, per-device director metadata, and the fleet API.
//!
//! custody-director holds every rule (request and manifest verification,
//! enrolment, assignment policy, metadata building); this module moves
//! bytes between HTTP, SQL and those functions:
//!
//! - [`store`]: SQL tables on the server's own pools (SQLite WAL default,
//!   PostgreSQL), group-committed check-ins.
//! - [`device`]: `POST /device/v1/enrol`, `POST /device/v1/checkin?root=N`,
//!   `GET /device/v1/director/{N}.root.json` (docs/DEVICE-API.md).
//! - [`fleet`]: `/api/v1/fleet/…` (scope `fleet:admin`; rollback
//!   authorisations `role:sign:rollback`).
//!
//! # Keys
//! Encrypted PKCS#8 files under `<data-dir>/keys/director/` (same
//! passphrase as the image repositories' online keys): `targets`,
//! `snapshot`, `timestamp` are online keys by nature (every check-in signs
//! with them). **The director root key is kept there too for now** so the
//! server can create and renew the director root on its own; this is
//! weaker than the image repository, whose root never touches the server.
//! Moving it offline means drafting director root versions for offline
//! signature like `authoring` does (left to do).

pub mod bundle_export;
pub mod cache;
pub mod device;
pub mod fleet;
pub mod image;
pub mod log_hooks;
pub mod settings;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use custody_director::director::{
    build_director_root, DirectorConfig, DirectorRootKeys, DirectorSigners,
};
use custody_director::enrol::{EnrolmentPolicy, FactoryCas};
use custody_director::policy::{
    FleetPolicy, GateDecision, MaintenanceWindow, Pin, Release, RollbackAuthorization,
    RollbackKeys, Rollout, RolloutState, Selector, Stage, StageStats, Yank,
};
use custody_director::registry::ReattestationPolicy;
use custody_director::request::RequestPolicy;
use custody_keys::keyfile::FileSigner;
use custody_keys::passphrase::SecretSource;
use custody_keys::{KeyType, Signer};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use axum::extract::FromRef;
use axum::Router;

use crate::auth::Auth;
use crate::repos::authoring::KEY_PASSPHRASE_ENV;
use crate::storage::StorageResult;
use crate::tlog::ServerLog;
pub use settings::DirectorSettings;
use store::{CheckinWrite, DirectorDb, WriteOutcome};

/// What the director's HTTP handlers (device API, fleet API, bundle
/// export) work with: the director itself (`None` when it is not running),
/// the auth slice, and the transparency log deliveries and reports go to.
pub struct DirectorState {
    pub director: Option<Arc<Director>>,
    pub auth: Auth,
    pub log: Arc<ServerLog>,
}

/// The callers of the fleet API and bundle export are authenticated by the
/// auth slice (`Caller`).
impl FromRef<Arc<DirectorState>> for Auth {
    fn from_ref(state: &Arc<DirectorState>) -> Auth {
        state.auth.clone()
    }
}

/// The director's routes over `state`, for any router state.
pub(crate) fn router<S>(state: Arc<DirectorState>) -> Router<S> {
    Router::new()
        .merge(device::router())
        .merge(fleet::router())
        .merge(bundle_export::router())
        .with_state(state)
}

/// Why the director could not start.
#[derive(Debug, thiserror::Error)]
pub enum DirectorInitError {
    #[error("director: {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("director key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("director configuration: {0}")]
    Config(String),
    #[error("director root: {0}")]
    Root(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> DirectorInitError {
    let path = path.to_path_buf();
    move |source| DirectorInitError::Io { path, op, source }
}

/// A maintenance window as stored and as given to the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// cron expression, 5 fields (or 6 with seconds), e.g. `0 2 * * SAT,SUN`
    pub cron: String,
    /// IANA time zone, e.g. `Europe/Berlin`
    pub time_zone: String,
    /// how long the window stays open after each start (seconds)
    pub duration_seconds: i64,
}

impl WindowSpec {
    pub fn compile(&self) -> Result<MaintenanceWindow, String> {
        MaintenanceWindow::new(
            &self.cron,
            &self.time_zone,
            Duration::seconds(self.duration_seconds),
        )
        .map_err(|e| e.to_string())
    }
}

/// The immutable part of a rollout (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub release: Release,
    pub selector: Selector,
    pub stages: Vec<Stage>,
    pub windows: Vec<WindowSpec>,
    pub seed: String,
}

/// Everything assignment reads, rebuilt from SQL after every change (and
/// periodically, for other replicas' changes).
pub struct PolicyCache {
    pub fleet: FleetPolicy,
    /// rollout id → (stored stage, stored state JSON) for compare-and-set
    pub stored: BTreeMap<String, (u64, String)>,
}

/// The director's signing keys (loaded once; signing is in memory).
pub struct DirectorKeys {
    pub root: FileSigner,
    pub targets: FileSigner,
    pub snapshot: FileSigner,
    pub timestamp: FileSigner,
}

impl DirectorKeys {
    pub fn signers(&self) -> DirectorSigners<'_> {
        DirectorSigners {
            targets: &self.targets,
            snapshot: &self.snapshot,
            timestamp: &self.timestamp,
        }
    }
}

type Reply = oneshot::Sender<Result<WriteOutcome, String>>;

/// What the check-in writer takes. Check-ins are the common case and are
/// not boxed (an allocation per check-in on the hot path); marks are rare.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// A check-in to write; answered after the commit.
    Checkin(CheckinWrite, Reply),
    /// A delivery mark (device id, marker) to write with the next batch;
    /// not answered (a lost mark only logs a delivery twice).
    Mark(String, String),
}

/// Group commit for check-ins: one task drains the queue and writes every
/// waiting check-in in one transaction; each caller gets its own outcome
/// after the commit.
#[derive(Clone)]
pub struct CheckinWriter {
    tx: mpsc::Sender<Job>,
    /// marks ride in the batches (the embedded store's own connection)
    batched_marks: bool,
}

/// Most check-ins per transaction.
const MAX_BATCH: usize = 512;

impl CheckinWriter {
    /// Starts the writer: on a dedicated thread with the store's own
    /// synchronous connection when it has one (embedded SQLite), else as
    /// a task over [`DirectorDb::apply_checkins`].
    pub fn spawn(db: Arc<dyn DirectorDb>) -> Result<CheckinWriter, DirectorInitError> {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let batched_marks = match db.checkin_connection()? {
            Some(conn) => {
                std::thread::Builder::new()
                    .name("director-checkin-writer".into())
                    .spawn(move || Self::run_sync(db, conn, rx))
                    .map_err(|e| {
                        DirectorInitError::Config(format!("start the check-in writer thread: {e}"))
                    })?;
                true
            }
            None => {
                tokio::spawn(Self::run_async(db, rx));
                false
            }
        };
        Ok(CheckinWriter { tx, batched_marks })
    }

    /// Takes what is waiting (at least one job, at most [`MAX_BATCH`]
    /// check-ins and as many marks).
    fn batch(first: Job, rx: &mut mpsc::Receiver<Job>) -> Batch {
        let mut b = Batch {
            jobs: Vec::with_capacity(64),
            replies: Vec::with_capacity(64),
            marks: Vec::new(),
        };
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Checkin(j, r) => {
                    b.jobs.push(j);
                    b.replies.push(r);
                }
                Job::Mark(id, marker) => b.marks.push((id, marker)),
            }
            if b.jobs.len() >= MAX_BATCH || b.marks.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        b
    }

    fn answer(jobs: usize, replies: Vec<Reply>, r: StorageResult<Vec<WriteOutcome>>) {
        match r {
            Ok(outcomes) => {
                for (r, o) in replies.into_iter().zip(outcomes) {
                    let _ = r.send(Ok(o));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = jobs, "check-in batch failed");
                for r in replies {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }

    /// The writer thread: blocks on the queue, writes each batch in one
    /// transaction (durable on return), updates the store's caches, then
    /// answers. While it waits for the fsync, the next batch queues up.
    fn run_sync(
        db: Arc<dyn DirectorDb>,
        mut conn: Box<dyn store::CheckinConnection>,
        mut rx: mpsc::Receiver<Job>,
    ) {
        while let Some(first) = rx.blocking_recv() {
            let b = Self::batch(first, &mut rx);
            let r = conn.apply(&b.jobs, &b.marks);
            if let Err(e) = &r {
                if !b.marks.is_empty() {
                    tracing::warn!(error = %e, marks = b.marks.len(),
                        "delivery marks not written; those deliveries are logged again at the next check-in");
                }
            }
            db.checkins_written(&b.jobs, &r);
            Self::answer(b.jobs.len(), b.replies, r);
        }
    }

    async fn run_async(db: Arc<dyn DirectorDb>, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let b = Self::batch(first, &mut rx);
            if !b.jobs.is_empty() {
                let r = db.apply_checkins(&b.jobs).await;
                Self::answer(b.jobs.len(), b.replies, r);
            }
            for (id, marker) in &b.marks {
                if let Err(e) = db.mark_delivery_logged(id, marker).await {
                    tracing::warn!(device = %id, error = %e,
                        "delivery logged, but recording that failed; the next check-in logs it again");
                }
            }
        }
    }

    pub async fn write(&self, job: CheckinWrite) -> Result<WriteOutcome, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Checkin(job, tx))
            .await
            .map_err(|_| "check-in writer stopped".to_string())?;
        rx.await
            .map_err(|_| "check-in writer dropped the request".to_string())?
    }

    /// Record that device `id`'s assignment delivery (`marker`) is in the
    /// transparency log. On the embedded store the mark is visible to the
    /// device's next check-in at once and written with the next batch; on
    /// PostgreSQL it is written now (replicas do not share a cache).
    pub async fn mark_delivery(&self, db: &dyn DirectorDb, id: &str, marker: &str) {
        if self.batched_marks {
            db.delivery_marked(id, marker);
            if self
                .tx
                .send(Job::Mark(id.to_owned(), marker.to_owned()))
                .await
                .is_err()
            {
                tracing::warn!(device = %id, "check-in writer stopped; delivery mark not written");
            }
        } else if let Err(e) = db.mark_delivery_logged(id, marker).await {
            tracing::warn!(device = %id, error = %e,
                "delivery logged, but recording that failed; the next check-in logs it again");
        }
    }
}

/// One batch of the check-in writer.
struct Batch {
    jobs: Vec<CheckinWrite>,
    replies: Vec<Reply>,
    marks: Vec<(String, String)>,
}

pub struct Director {
    pub settings: DirectorSettings,
    pub db: Arc<dyn DirectorDb>,
    pub keys: DirectorKeys,
    /// director root versions, index i = version i + 1
    roots: RwLock<Arc<Vec<Vec<u8>>>>,
    root_dir: PathBuf,
    policy: RwLock<Arc<PolicyCache>>,
    pub writer: CheckinWriter,
    pub enrolment: EnrolmentPolicy,
    pub request_policy: RequestPolicy,
    pub reattestation: ReattestationPolicy,
    pub metadata: DirectorConfig,
    pub rollback_keys: RollbackKeys,
    /// `<data-dir>/repos/<image repository>`
    pub image_dir: PathBuf,
    /// serialises canary gate evaluation
    gate_lock: tokio::sync::Mutex<()>,
}

fn load_or_generate(path: &Path, pass: &[u8]) -> Result<FileSigner, DirectorInitError> {
    let r = if path.exists() {
        custody_keys::keyfile::load(path, pass)
    } else {
        custody_keys::keyfile::generate(path, KeyType::Ed25519, pass)
    };
    r.map_err(|e| DirectorInitError::Key {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn read_cas(files: &[PathBuf]) -> Result<FactoryCas, DirectorInitError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut certs = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(io_err(f, "read manufacturer CA file"))?;
        if bytes.starts_with(b"-----") {
            for c in CertificateDer::pem_slice_iter(&bytes) {
                let c = c.map_err(|e| {
                    DirectorInitError::Config(format!("manufacturer CA file {}: {e}", f.display()))
                })?;
                certs.push(c.as_ref().to_vec());
            }
        } else {
            certs.push(bytes);
        }
    }
    FactoryCas::new(certs).map_err(|e| DirectorInitError::Config(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackKeysFile {
    threshold: u64,
    keys: Vec<custody_tuf::Key>,
}

fn read_rollback_keys(path: Option<&Path>) -> Result<RollbackKeys, DirectorInitError> {
    let Some(path) = path else {
        // No rollback keys: no authorisation can ever verify.
        return Ok(RollbackKeys {
            keys: BTreeMap::new(),
            threshold: 1,
        });
    };
    let bytes = std::fs::read(path).map_err(io_err(path, "read rollback keys file"))?;
    let f: RollbackKeysFile = serde_json::from_slice(&bytes).map_err(|e| {
        DirectorInitError::Config(format!(
            "rollback keys file {}: expected {{\"threshold\": n, \"keys\": [TUF key, …]}}: {e}",
            path.display()
        ))
    })?;
    let mut keys = BTreeMap::new();
    for k in f.keys {
        let id = k
            .key_id()
            .map_err(|e| DirectorInitError::Config(format!("rollback key: {e}")))?;
        keys.insert(id, k);
    }
    if f.threshold == 0 || f.threshold > keys.len() as u64 {
        return Err(DirectorInitError::Config(format!(
            "rollback keys file {}: threshold {} with {} distinct keys",
            path.display(),
            f.threshold,
            keys.len()
        )));
    }
    Ok(RollbackKeys {
        keys,
        threshold: f.threshold,
    })
}

fn root_expires(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let s = v.get("signed")?.get("expires")?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl Director {
    /// Loads (or creates) the keys and the root chain, reads the policy,
    /// starts the check-in writer.
    pub async fn open(
        data_dir: &Path,
        passphrase: &SecretSource,
        db: Arc<dyn DirectorDb>,
        settings: DirectorSettings,
    ) -> Result<Director, DirectorInitError> {
        settings.validate().map_err(DirectorInitError::Config)?;
        db.migrate().await?;
        let adopted = db.adopt_fleet_yanks(&settings.image_repository).await?;
        if adopted > 0 {
            tracing::info!(
                yanks = adopted,
                repository = %settings.image_repository,
                "moved the fleet API's yanks into the one yank table"
            );
        }
        let pass = passphrase
            .read("passphrase for the director's keys", false)
            .map_err(|e| DirectorInitError::Config(e.to_string()))?;
        if pass.is_empty() {
            return Err(DirectorInitError::Config(
                "the key passphrase is empty; director key files must be encrypted".into(),
            ));
        }
        let kdir = data_dir.join("keys").join("director");
        std::fs::create_dir_all(&kdir).map_err(io_err(&kdir, "create directory"))?;
        let keys = tokio::task::spawn_blocking({
            let kdir = kdir.clone();
            move || -> Result<DirectorKeys, DirectorInitError> {
                let p = pass.as_bytes();
                Ok(DirectorKeys {
                    root: load_or_generate(&kdir.join("root.pem"), p)?,
                    targets: load_or_generate(&kdir.join("targets.pem"), p)?,
                    snapshot: load_or_generate(&kdir.join("snapshot.pem"), p)?,
                    timestamp: load_or_generate(&kdir.join("timestamp.pem"), p)?,
                })
            }
        })
        .await
        .map_err(|e| DirectorInitError::Config(format!("key loading task: {e}")))??;
        let root_dir = data_dir.join("director").join("root");
        std::fs::create_dir_all(&root_dir).map_err(io_err(&root_dir, "create directory"))?;
        let mut enrolment = EnrolmentPolicy {
            window: Duration::seconds(
                i64::try_from(settings.request_window_seconds).unwrap_or(300),
            ),
            factory_cas: read_cas(&settings.factory_ca_files)?,
            factory_default_group: settings.factory_default_group.clone(),
        };
        enrolment.window = enrolment.window.max(Duration::seconds(5));
        let reattestation = ReattestationPolicy {
            period: Duration::seconds(
                i64::try_from(settings.reattestation_period_seconds).unwrap_or(i64::MAX / 2),
            ),
        };
        let request_policy = RequestPolicy {
            window: enrolment.window,
            reattestation,
        };
        let metadata = DirectorConfig {
            expiry: Duration::seconds(
                i64::try_from(settings.metadata_expiry_seconds).unwrap_or(86_400),
            ),
        };
        let rollback_keys = read_rollback_keys(settings.rollback_keys_file.as_deref())?;
        let image_dir = data_dir.join("repos").join(&settings.image_repository);
        let writer = CheckinWriter::spawn(db.clone())?;
        let d = Director {
            settings,
            db,
            keys,
            roots: RwLock::new(Arc::new(Vec::new())),
            root_dir,
            policy: RwLock::new(Arc::new(PolicyCache {
                fleet: FleetPolicy {
                    rollouts: vec![],
                    pins: BTreeMap::new(),
                    yanks: vec![],
                    rollback_authorizations: vec![],
                    rollback_keys: rollback_keys.clone(),
                },
                stored: BTreeMap::new(),
            })),
            writer,
            enrolment,
            request_policy,
            reattestation,
            metadata,
            rollback_keys,
            image_dir,
            gate_lock: tokio::sync::Mutex::new(()),
        };
        d.load_roots(Utc::now())?;
        d.reload_policy().await?;
        Ok(d)
    }

    /// Reads `N.root.json` files 1.. (consecutive); creates version 1 if
    /// there is none, and a new version (same keys) when the newest expires
    /// within 30 days.
    fn load_roots(&self, now: DateTime<Utc>) -> Result<(), DirectorInitError> {
        let mut roots = Vec::new();
        loop {
            let p = self.root_dir.join(format!("{}.root.json", roots.len() + 1));
            match std::fs::read(&p) {
                Ok(b) => roots.push(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_err(&p, "read director root")(e)),
            }
        }
        let renew = match roots.last() {
            None => true,
            Some(b) => root_expires(b).is_none_or(|e| e < now + Duration::days(30)),
        };
        if renew {
            let version = roots.len() as u64 + 1;
            let days = i64::try_from(self.settings.root_expiry_days).unwrap_or(365);
            let signers: [&dyn Signer; 1] = [&self.keys.root];
            let bytes = build_director_root(
                DirectorRootKeys {
                    root: &signers,
                    root_threshold: 1,
                    targets: self.keys.targets.key(),
                    snapshot: self.keys.snapshot.key(),
                    timestamp: self.keys.timestamp.key(),
                },
                version,
                now + Duration::days(days),
            )
            .map_err(|e| DirectorInitError::Root(e.to_string()))?;
            let p = self.root_dir.join(format!("{version}.root.json"));
            custody_repo::fsutil::write_replace(&p, &bytes)
                .map_err(io_err(&p, "write director root"))?;
            roots.push(bytes);
        }
        // The chain must verify (custody-tuf) and list our online keys.
        let first = roots
            .first()
            .ok_or_else(|| DirectorInitError::Root("no root".into()))?;
        // custody-tuf's refresh driver walks the chain as a device does
        // (N+1 signed by N's root keys and its own, versions consecutive);
        // the walk ends where the device's would ask for the timestamp.
        let mut walk = custody_tuf::Refresh::new(first, custody_tuf::Limits::default(), now)
            .map_err(|e| DirectorInitError::Root(format!("1.root.json: {e}")))?;
        while let custody_tuf::Step::Fetch(f) = walk
            .step()
            .map_err(|e| DirectorInitError::Root(e.to_string()))?
        {
            if f.role != "root" {
                break;
            }
            let next = f
                .version
                .and_then(|v| usize::try_from(v).ok())
                .and_then(|v| roots.get(v.wrapping_sub(1)));
            walk.provide(next.map(Vec::as_slice))
                .map_err(|e| DirectorInitError::Root(format!("{}: {e}", f.file_name)))?;
        }
        let t = walk.trusted();
        if usize::try_from(t.root().version).ok() != Some(roots.len()) {
            return Err(DirectorInitError::Root(format!(
                "the root chain stops at version {} of {} (more than {} rotations)",
                t.root().version,
                roots.len(),
                custody_tuf::MAX_ROOT_ROTATIONS
            )));
        }
        for (role, k) in [
            ("targets", &self.keys.targets),
            ("snapshot", &self.keys.snapshot),
            ("timestamp", &self.keys.timestamp),
        ] {
            let listed = t
                .root()
                .roles
                .get(role)
                .is_some_and(|r| r.keyids.iter().any(|id| id == k.keyid()));
            if !listed {
                return Err(DirectorInitError::Root(format!(
                    "the newest director root does not list the {role} key {} found under keys/director/ (keys replaced?)",
                    k.keyid()
                )));
            }
        }
        if let Ok(mut g) = self.roots.write() {
            *g = Arc::new(roots);
        }
        Ok(())
    }

    /// Director root versions (index i = version i + 1).
    pub fn roots(&self) -> Arc<Vec<Vec<u8>>> {
        self.roots
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn policy(&self) -> Arc<PolicyCache> {
        self.policy
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Rebuilds the policy cache from SQL.
    pub async fn reload_policy(&self) -> Result<(), crate::storage::StorageError> {
        let corrupt = |what: &'static str, e: String| crate::storage::StorageError::Corrupt {
            what,
            reason: e,
        };
        let mut rollouts = Vec::new();
        let mut stored = BTreeMap::new();
        for row in self.db.list_rollouts().await? {
            let spec: RolloutSpec = serde_json::from_str(&row.spec)
                .map_err(|e| corrupt("rollout", format!("{}: {e}", row.id)))?;
            let state: RolloutState = serde_json::from_str(&row.state)
                .map_err(|e| corrupt("rollout state", format!("{}: {e}", row.id)))?;
            let windows = spec
                .windows
                .iter()
                .map(WindowSpec::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| corrupt("rollout window", format!("{}: {e}", row.id)))?;
            let mut r = Rollout::new(
                &row.id,
                &spec.seed,
                spec.release,
                spec.selector,
                spec.stages,
                windows,
            )
            .map_err(|e| corrupt("rollout", e.to_string()))?;
            r.stage = usize::try_from(row.stage).unwrap_or(0);
            r.state = state;
            stored.insert(row.id.clone(), (row.stage, row.state.clone()));
            rollouts.push(r);
        }
        let mut pins = BTreeMap::new();
        for p in self.db.list_pins().await? {
            let release: Release = serde_json::from_str(&p.release_json)
                .map_err(|e| corrupt("pin", format!("{}: {e}", p.device_id)))?;
            pins.insert(
                p.device_id,
                Pin {
                    release,
                    reason: p.reason,
                },
            );
        }
        // Oldest first: a later yank of the same target with another
        // replacement supersedes the earlier one.
        let mut by_target = BTreeMap::new();
        for y in self
            .db
            .list_remediations(&self.settings.image_repository)
            .await?
        {
            let replacement: Release = serde_json::from_str(&y.replacement_json)
                .map_err(|e| corrupt("yank", format!("{}: {e}", y.target)))?;
            by_target.insert(y.target, replacement);
        }
        let yanks = by_target
            .into_iter()
            .map(|(target, replacement)| Yank {
                target,
                replacement,
            })
            .collect();
        let mut auths = Vec::new();
        for a in self.db.list_rollbacks().await? {
            match RollbackAuthorization::from_bytes(a.body.as_bytes()) {
                Ok(x) => auths.push(x),
                Err(e) => {
                    tracing::warn!(id = %a.id, error = %e, "stored rollback authorisation unreadable")
                }
            }
        }
        let cache = PolicyCache {
            fleet: FleetPolicy {
                rollouts,
                pins,
                yanks,
                rollback_authorizations: auths,
                rollback_keys: self.rollback_keys.clone(),
            },
            stored,
        };
        if let Ok(mut g) = self.policy.write() {
            *g = Arc::new(cache);
        }
        Ok(())
    }

    /// Runs the canary gate of `rollout` on its current stage's reports and
    /// applies the decision (advance, complete, pause). Returns the decision
    /// when it changed something.
    pub async fn evaluate_gate(
        &self,
        rollout: &str,
    ) -> Result<Option<GateDecision>, crate::storage::StorageError> {
        let _g = self.gate_lock.lock().await;
        self.reload_policy().await?;
        let policy = self.policy();
        let Some(r) = policy.fleet.rollouts.iter().find(|r| r.id == rollout) else {
            return Ok(None);
        };
        let counts = store::stage_counts(&self.db.report_counts(rollout).await?);
        let (successes, failures) = counts.get(&(r.stage as u64)).copied().unwrap_or((0, 0));
        let decision = r.evaluate(&StageStats {
            successes,
            failures,
        });
        if matches!(decision, GateDecision::Hold { .. }) {
            return Ok(None);
        }
        let mut next = r.clone();
        next.apply(&decision);
        let Some((old_stage, old_state)) = policy.stored.get(rollout).cloned() else {
            return Ok(None);
        };
        let new_state = serde_json::to_string(&next.state).unwrap_or_default();
        let changed = self
            .db
            .update_rollout(
                rollout,
                (old_stage, &old_state),
                (next.stage as u64, &new_state),
                crate::storage::now(),
            )
            .await?;
        self.reload_policy().await?;
        Ok(changed.then_some(decision))
    }
}

/// Starts the director for `custody serve`: `None` when disabled in the
/// configuration or when no key passphrase is available (logged; the
/// device routes then answer 503 `unavailable`). Any other failure stops
/// the server (e.g. a director root that no longer matches its keys).
/// The keys share the image repositories' passphrase: `key_passphrase_file`,
/// else the environment variable `KEY_PASSPHRASE_ENV`.
pub async fn start(
    settings: DirectorSettings,
    data_dir: &Path,
    key_passphrase_file: Option<&Path>,
    db: Arc<dyn DirectorDb>,
    log: Arc<ServerLog>,
) -> Result<Option<Arc<Director>>, DirectorInitError> {
    if !settings.enabled {
        return Ok(None);
    }
    let passphrase = match key_passphrase_file {
        Some(p) => SecretSource::File(p.to_path_buf()),
        None => SecretSource::Env(KEY_PASSPHRASE_ENV.into()),
    };
    if passphrase.read("director key passphrase", false).is_err() {
        tracing::warn!(
            "director disabled: no key passphrase ({} or key_passphrase_file) for its key files",
            KEY_PASSPHRASE_ENV
        );
        return Ok(None);
    }
    let d = Arc::new(Director::open(data_dir, &passphrase, db, settings).await?);
    spawn_housekeeping(d.clone(), log);
    Ok(Some(d))
}

/// Every minute: forget expired nonces, persistently suspend devices whose
/// re-attestation is overdue (they are refused at once anyway: the status
/// rule is evaluated on every request), pick up other replicas' policy
/// changes. Sweep suspensions go into the transparency log
/// (`log_hooks::log_suspensions`; retried next minute if the log failed).
fn spawn_housekeeping(d: Arc<Director>, log: Arc<ServerLog>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        let mut unlogged: Vec<String> = Vec::new();
        loop {
            tick.tick().await;
            let now = crate::storage::now();
            if let Err(e) = d.db.purge_nonces(now).await {
                tracing::warn!(error = %e, "purging director nonces failed");
            }
            let period = i64::try_from(d.settings.reattestation_period_seconds).unwrap_or(i64::MAX);
            match d.db.suspend_overdue(now.saturating_sub(period), now).await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(
                        devices = ids.len(),
                        "suspended devices overdue for re-attestation"
                    );
                    unlogged.extend(ids);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "re-attestation sweep failed"),
            }
            if !unlogged.is_empty() {
                let reason =
                    format!("re-attestation overdue: no proof of key possession within {period} s");
                match log_hooks::log_suspensions(&log, &unlogged, &reason).await {
                    Ok(()) => unlogged.clear(),
                    Err(e) => tracing::warn!(error = %e, devices = unlogged.len(),
                        "logging sweep suspensions failed; retrying next minute"),
                }
            }
            if let Err(e) = d.reload_policy().await {
                tracing::warn!(error = %e, "reloading the fleet policy failed");
            }
        }
    });
}
