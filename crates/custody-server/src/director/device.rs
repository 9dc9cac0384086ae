//! Device routes (docs/DEVICE-API.md): enrolment, signed check-in, director
//! root chain. Every refusal answers `ErrorBody {error, message}` with a
//! stable code; refusals that can be attacks are recorded (attack table
//! and audit log).
//!
//! # Check-in pipeline
//!
//! `POST /device/v1/checkin` runs four stages, each a function with a typed
//! output; any stage may refuse with a [`DeviceError`]:
//!
//! ```text
//! request ─ authenticate ─▶ Authenticated   signed request: headers, device row,
//!                                           route, timestamp, signature; nonce captured
//!         ─ assess ───────▶ Assessment      manifest: device, hardware, signature,
//!                                           counter, usable; policy: what to assign,
//!                                           anti-rollback (custody-director)
//!         ─ sign_metadata ▶ DirectorMetadata  answer, signing half: the device's
//!                                           director targets/snapshot/timestamp
//!         ─ record ───────▶ ()              writes, in durability order: install
//!                                           reports in the log; one transaction
//!                                           (nonce, counter, metadata versions,
//!                                           assignment, reports, attacks); the
//!                                           delivery in the log; audit
//!         ─ answer ───────▶ CheckinResponse metadata + missing director roots
//! ```
//!
//! The metadata is signed before `record` because the versions it bumps
//! are committed there; nothing is written before `record` (a refused
//! request costs no write beyond the attack record), and the device is
//! answered only after the log entries are durable and the transaction has
//! committed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use custody_director::director::{
    build_director_metadata, DeviceDirectorState, DirectorMetadata, DirectorTarget,
};
use custody_director::enrol::{EnrolError, TokenRecord, TokenRefusal, TokenStore};
use custody_director::manifest::{verify_manifest, ManifestError};
use custody_director::policy::{assign, Assignment, DeviceView, Installed};
use custody_director::registry::{Purpose, StatusError};
use custody_director::request::{verify_device_request, NonceCache, RequestError, Route};
use custody_director::wire::{
    headers as h, CheckinResponse, DirectorMetadataSet, EnrolResponse, EnrolmentRequest, ErrorBody,
    ManifestBody, SignedManifest, SignedRequest, WireError, MAX_ENROLMENT_BYTES,
    MAX_MANIFEST_BYTES, MAX_ROOT_CHAIN, WIRE_VERSION,
};

use super::store::{AttackRow, CheckinWrite, DeviceRow, ReportRow, WriteOutcome};
use super::DirectorState;
use super::{Director, PolicyCache};

/// A refused device request.
#[derive(Debug)]
pub struct DeviceError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// the device concerned (claimed or authenticated)
    pub device: Option<String>,
    /// record as an attack (attack table + audit)
    pub record: bool,
}

impl DeviceError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        DeviceError {
            status,
            code,
            message: message.into(),
            device: None,
            record: true,
        }
    }
    fn malformed(message: impl Into<String>) -> Self {
        DeviceError {
            record: false,
            ..Self::new(StatusCode::BAD_REQUEST, "malformed", message)
        }
    }
    fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(error = %message, "director internal error");
        DeviceError {
            record: false,
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error (see server log)",
            )
        }
    }
    fn unavailable(message: impl Into<String>) -> Self {
        DeviceError {
            record: false,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }
    fn for_device(mut self, id: &str) -> Self {
        self.device = Some(id.to_owned());
        self
    }
}

impl From<WireError> for DeviceError {
    fn from(e: WireError) -> Self {
        DeviceError::malformed(e.to_string())
    }
}

impl From<crate::storage::StorageError> for DeviceError {
    fn from(e: crate::storage::StorageError) -> Self {
        DeviceError::internal(e.to_string())
    }
}

fn status_error(e: &StatusError) -> DeviceError {
    let m = e.to_string();
    match e {
        StatusError::Decommissioned { .. } => {
            DeviceError::new(StatusCode::FORBIDDEN, "decommissioned", m)
        }
        // Overdue re-attestation is a suspension (issue #5: "a device that
        // has not re-proved possession within the period is suspended").
        StatusError::Suspended { .. } | StatusError::ReattestationOverdue { .. } => {
            DeviceError::new(StatusCode::FORBIDDEN, "suspended", m)
        }
    }
}

fn request_error(e: RequestError) -> DeviceError {
    let m = e.to_string();
    match &e {
        RequestError::Status(s) => status_error(s),
        RequestError::WrongDevice { .. } => {
            DeviceError::new(StatusCode::FORBIDDEN, "wrong_device", m)
        }
        RequestError::WrongRoute { .. } | RequestError::BadSignature { .. } => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "bad_signature", m)
        }
        RequestError::Stale { .. } => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "stale_timestamp", m)
        }
        RequestError::ReplayedNonce { .. } => {
            DeviceError::new(StatusCode::CONFLICT, "replayed_nonce", m)
        }
        RequestError::Key { .. } | RequestError::NonceCache(_) => DeviceError::internal(m),
    }
}

fn manifest_error(e: ManifestError) -> DeviceError {
    let m = e.to_string();
    match &e {
        ManifestError::Status(s) => status_error(s),
        ManifestError::WrongDevice { .. } | ManifestError::WrongHardware { .. } => {
            DeviceError::new(StatusCode::FORBIDDEN, "wrong_device", m)
        }
        ManifestError::SignedByOtherKey { .. } | ManifestError::BadSignature { .. } => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "bad_signature", m)
        }
        ManifestError::Replayed { .. } | ManifestError::Reordered { .. } => {
            DeviceError::new(StatusCode::CONFLICT, "replayed_counter", m)
        }
    }
}

fn enrol_error(e: EnrolError) -> DeviceError {
    let m = e.to_string();
    match &e {
        EnrolError::Wire(_) | EnrolError::Key(_) => DeviceError::malformed(m),
        EnrolError::Stale { .. } => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "stale_timestamp", m)
        }
        EnrolError::NoPossession { .. } | EnrolError::NoFactoryPossession => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "bad_signature", m)
        }
        EnrolError::Token(TokenRefusal::Unknown { .. }) => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "token_unknown", m)
        }
        EnrolError::Token(TokenRefusal::Expired { .. }) => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "token_expired", m)
        }
        EnrolError::Token(TokenRefusal::AlreadyUsed { .. }) => {
            DeviceError::new(StatusCode::UNAUTHORIZED, "token_used", m)
        }
        EnrolError::GroupMismatch { .. } | EnrolError::EnvironmentMismatch { .. } => {
            DeviceError::new(StatusCode::FORBIDDEN, "token_scope", m)
        }
        EnrolError::Certificate(_) => DeviceError::new(StatusCode::UNAUTHORIZED, "unknown_ca", m),
        EnrolError::HardwareMismatch { .. } => {
            DeviceError::new(StatusCode::FORBIDDEN, "hardware_mismatch", m)
        }
        EnrolError::AlreadyEnrolled { .. } => DeviceError {
            record: false,
            ..DeviceError::new(StatusCode::CONFLICT, "already_enrolled", m)
        },
        EnrolError::Config(_) | EnrolError::Store(_) => DeviceError::internal(m),
    }
}

pub(super) fn router() -> Router<Arc<DirectorState>> {
    Router::new()
        .route(
            "/device/v1/enrol",
            post(enrol).layer(DefaultBodyLimit::max(MAX_ENROLMENT_BYTES)),
        )
        .route(
            "/device/v1/checkin",
            post(checkin).layer(DefaultBodyLimit::max(MAX_MANIFEST_BYTES)),
        )
        .route("/device/v1/director/{file}", get(root_file))
}

fn director(st: &DirectorState) -> Result<&Arc<Director>, DeviceError> {
    st.director.as_ref().ok_or_else(|| {
        DeviceError::unavailable(
            "the director is not running on this server (it needs the key passphrase: \
             CUSTODY_KEY_PASSPHRASE or key_passphrase_file; see the server log)",
        )
    })
}

fn error_response(e: &DeviceError) -> Response {
    (
        e.status,
        Json(ErrorBody {
            error: e.code.to_owned(),
            message: e.message.clone(),
        }),
    )
        .into_response()
}

impl Director {
    /// Records an attack (attack table + audit log).
    pub async fn record_attack(
        &self,
        st: &DirectorState,
        device: Option<&str>,
        code: &str,
        source: &str,
        detail: &str,
    ) {
        let a = AttackRow {
            id: crate::ids::random_hex(16),
            at: crate::storage::now(),
            device_id: device.map(str::to_owned),
            code: code.to_owned(),
            source: source.to_owned(),
            detail: detail.to_owned(),
        };
        if let Err(e) = self.db.insert_attack(&a).await {
            tracing::error!(error = %e, "attack record could not be written");
        }
        let identity = format!("device:{}", device.unwrap_or("unauthenticated"));
        let _ = st
            .auth
            .audit_as(
                &identity,
                &[],
                "device.attack",
                None,
                device,
                "rejected",
                &format!("{code}: {detail}"),
            )
            .await;
    }

    async fn refuse(&self, st: &DirectorState, e: DeviceError) -> Response {
        if e.record {
            self.record_attack(st, e.device.as_deref(), e.code, "server", &e.message)
                .await;
        }
        error_response(&e)
    }
}

/// Captures the nonce `verify_device_request` would record, so the atomic
/// SQL insert-or-conflict can run afterwards (the trait is synchronous; the
/// check is last in verification either way, so forged requests never
/// reach the nonce table).
#[derive(Default)]
struct Deferred {
    seen: std::sync::Mutex<Option<(String, i64)>>,
}

impl NonceCache for Deferred {
    fn check_and_insert(
        &self,
        _device: &str,
        nonce: &str,
        expires_at: i64,
        _now: i64,
    ) -> Result<bool, String> {
        let mut g = self.seen.lock().map_err(|_| "poisoned".to_string())?;
        *g = Some((nonce.to_owned(), expires_at));
        Ok(true)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, DeviceError> {
    headers
        .get(name)
        .ok_or_else(|| {
            DeviceError::malformed(format!(
                "signed request: header {name} is missing (every device call but enrolment is signed: \
                 {}, {}, {}, {})",
                h::DEVICE,
                h::TIMESTAMP,
                h::NONCE,
                h::SIGNATURE
            ))
        })?
        .to_str()
        .map_err(|_| DeviceError::malformed(format!("signed request: header {name} is not ASCII")))
}

/// Stage 1 output: a verified signed request.
struct Authenticated {
    /// the device as stored when the request was verified
    row: DeviceRow,
    /// the request (its body is the check-in's manifest)
    req: SignedRequest,
    /// the nonce and its expiry, recorded atomically by the write that
    /// consumes the request
    nonce: (String, i64),
}

/// Stage 1, authenticate (check-in and root files): parses the signed
/// request headers, loads the device and runs custody-director's request
/// verification (usable, key, route, timestamp, signature). Reads only; the
/// nonce is captured here and inserted by the caller's write.
async fn authenticate(
    d: &Director,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Authenticated, DeviceError> {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| uri.path());
    let req = SignedRequest::from_headers(
        header_str(headers, h::DEVICE)?,
        header_str(headers, h::TIMESTAMP)?,
        header_str(headers, h::NONCE)?,
        header_str(headers, h::SIGNATURE)?,
        method.as_str(),
        path,
        body.to_vec(),
    )?;
    let id = req.device_id.clone();
    let Some(row) = d.db.get_device(&id).await? else {
        // Not recorded: anyone can name random ids, and every recorded
        // refusal costs two writes.
        return Err(DeviceError {
            record: false,
            ..DeviceError::new(
                StatusCode::UNAUTHORIZED,
                "unknown_device",
                format!("device {id} is not enrolled on this server"),
            )
        }
        .for_device(&id));
    };
    let nonces = Deferred::default();
    verify_device_request(
        &row.record,
        &req,
        Route {
            method: method.as_str(),
            path,
            purpose: Purpose::Normal,
        },
        now,
        &d.request_policy,
        &nonces,
    )
    .map_err(|e| request_error(e).for_device(&id))?;
    let nonce = nonces
        .seen
        .lock()
        .ok()
        .and_then(|mut g| g.take())
        .ok_or_else(|| DeviceError::internal("request verified without a nonce"))?;
    Ok(Authenticated { row, req, nonce })
}

// ------------------------------------------------------------------ enrol

/// custody-director's [`TokenStore`] over SQL. Runs on the blocking pool
/// (the trait is synchronous) and waits for the async query there.
struct SqlTokenStore {
    db: Arc<dyn super::store::DirectorDb>,
    handle: tokio::runtime::Handle,
}

impl TokenStore for SqlTokenStore {
    fn insert(&self, rec: TokenRecord) -> Result<(), String> {
        self.handle
            .block_on(self.db.insert_token(&super::store::TokenRow {
                rec,
                created_by: "device-api".into(),
            }))
            .map_err(|e| e.to_string())
    }

    fn consume(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<TokenRecord, TokenRefusal>, String> {
        self.handle
            .block_on(self.db.consume_token(hash, now.timestamp()))
            .map_err(|e| e.to_string())
    }
}

/// The image repository's newest root and its paths.
pub(crate) fn image_root(d: &Director) -> Result<Vec<u8>, DeviceError> {
    let dir = d.image_dir.join("current").join("metadata");
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    let entries = std::fs::read_dir(&dir).map_err(|_| {
        DeviceError::unavailable(format!(
            "image repository {:?} has not been published yet; devices cannot enrol before it is",
            d.settings.image_repository
        ))
    })?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_suffix(".root.json")
            .and_then(|n| n.parse::<u64>().ok())
        {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, e.path()));
            }
        }
    }
    let path = match best {
        Some((_, p)) => p,
        None => dir.join("root.json"),
    };
    std::fs::read(&path).map_err(|e| {
        DeviceError::unavailable(format!(
            "image repository {:?}: cannot read its root ({}): {e}",
            d.settings.image_repository,
            path.display()
        ))
    })
}

async fn enrol(State(st): State<Arc<DirectorState>>, body: Bytes) -> Response {
    let d = match director(&st) {
        Ok(d) => d.clone(),
        Err(e) => return error_response(&e),
    };
    match enrol_inner(&st, &d, body).await {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => d.refuse(&st, e).await,
    }
}

async fn enrol_inner(
    st: &DirectorState,
    d: &Arc<Director>,
    body: Bytes,
) -> Result<EnrolResponse, DeviceError> {
    let now = Utc::now();
    let req = EnrolmentRequest::from_bytes(&body)?;
    let id = custody_director::keys::device_id_for_key(&req.signed.key)
        .map_err(|e| DeviceError::malformed(e.to_string()))?;
    // Before the token is consumed: a server that cannot answer must not
    // burn the device's one-time token.
    let image_root = image_root(d)?;
    let exists = d.db.device_exists(&id).await?;
    let tokens = SqlTokenStore {
        db: d.db.clone(),
        handle: tokio::runtime::Handle::current(),
    };
    let dd = d.clone();
    let rec = tokio::task::spawn_blocking(move || {
        custody_director::enrol::enrol(&req, now, &dd.enrolment, &tokens, &|_| exists)
    })
    .await
    .map_err(|e| DeviceError::internal(format!("enrolment task: {e}")))?
    .map_err(|e| enrol_error(e).for_device(&id))?;
    match d.db.insert_device(&rec).await {
        Ok(()) => {}
        Err(crate::storage::StorageError::Conflict { .. }) => {
            return Err(enrol_error(EnrolError::AlreadyEnrolled { device: id }));
        }
        Err(e) => return Err(e.into()),
    }
    let _ = st
        .auth
        .audit_as(
            &format!("device:{}", rec.id),
            &[],
            "device.enrol",
            None,
            Some(&rec.id),
            "ok",
            &format!(
                "hardware {:?}, group {:?}, environment {:?}, via {:?}",
                rec.hardware_id, rec.group, rec.attributes.environment, rec.enrolled_with
            ),
        )
        .await;
    let roots = d.roots();
    let repo = d.settings.image_repository.clone();
    Ok(EnrolResponse {
        wire_version: WIRE_VERSION,
        device_id: rec.id,
        director_root: roots.last().cloned().unwrap_or_default(),
        image_metadata_path: format!("/repos/{repo}/metadata/"),
        image_targets_path: format!("/repos/{repo}/targets/"),
        image_repository: repo,
        image_root,
        log: Some(st.log.enrol_pin()),
    })
}

// ---------------------------------------------------------------- check-in

fn trusted_root(uri: &Uri) -> Result<usize, DeviceError> {
    let q = uri.query().unwrap_or("");
    let mut found = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("root", v)) => {
                let n: usize = v.parse().map_err(|_| {
                    DeviceError::malformed(format!(
                        "query parameter root must be the director root version the device trusts (≥ 1), got {v:?}"
                    ))
                })?;
                found = Some(n);
            }
            _ => {
                return Err(DeviceError::malformed(format!(
                    "unknown query parameter {pair:?}; only root=N is accepted"
                )))
            }
        }
    }
    match found {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(DeviceError::malformed(
            "query parameter root=N (the director root version the device trusts, ≥ 1) is required",
        )),
    }
}

async fn checkin(
    State(st): State<Arc<DirectorState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let d = match director(&st) {
        Ok(d) => d.clone(),
        Err(e) => return error_response(&e),
    };
    match checkin_inner(&st, &d, &method, &uri, &headers, &body).await {
        Ok(r) => (StatusCode::OK, Json(r)).into_response(),
        Err(e) => d.refuse(&st, e).await,
    }
}

/// Stable id of an attack the device reported (so a re-sent manifest does
/// not duplicate it).
fn reported_attack_id(device: &str, counter: u64, i: usize) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{device}\n{counter}\n{i}").as_bytes(),
    );
    hex::encode(&d.as_ref()[..16])
}

/// The check-in pipeline (see the module documentation). Each stage
/// returns early with the refusal the device gets; nothing is written
/// before stage 3 and nothing is answered before it has committed.
async fn checkin_inner(
    st: &Arc<DirectorState>,
    d: &Arc<Director>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CheckinResponse, DeviceError> {
    let now = Utc::now();
    let trusted = trusted_root(uri)?;
    let who = authenticate(d, method, uri, headers, body, now).await?;
    let verdict = assess(d, &who, now)?;
    let metadata = sign_metadata(d, &who, &verdict, now)?;
    record(st, d, &who, &verdict, metadata.state, now).await?;
    Ok(answer(d, trusted, &verdict, metadata))
}

/// Stage 2 output: the verified manifest and what the director decided
/// for this device.
struct Assessment {
    /// the signed manifest, verified against the device record and its
    /// last accepted counter
    manifest: SignedManifest,
    /// the policy snapshot the decision was taken on (also used to file
    /// the install reports under their rollout)
    policy: Arc<PolicyCache>,
    /// the target the manifest says is running
    running: Option<Installed>,
    /// the director targets to sign for the device (at most one)
    targets: Vec<DirectorTarget>,
    /// the assignment to store: (target, release counter)
    assigned: Option<(String, u64)>,
    /// the assignment note to store (why this, or why nothing)
    note: String,
    /// a candidate refused by anti-rollback: the reason, recorded as an
    /// attack when the note changes
    refused: Option<String>,
}

impl Assessment {
    /// The verified manifest body.
    fn body(&self) -> &ManifestBody {
        &self.manifest.signed
    }
}

/// Stage 2, assess: verifies the manifest (device, hardware, signature,
/// counter monotonicity, device usable) and applies custody-director's
/// assignment policy (stage, anti-rollback, rollback authorisations).
/// Pure: reads only the director's in-memory policy.
fn assess(
    d: &Director,
    who: &Authenticated,
    now: DateTime<Utc>,
) -> Result<Assessment, DeviceError> {
    let row = &who.row;
    let id = &row.record.id;
    let manifest = SignedManifest::from_bytes(&who.req.body)
        .map_err(|e| DeviceError::from(e).for_device(id))?;
    let m = verify_manifest(
        &row.record,
        &manifest,
        row.last_counter,
        now,
        &d.reattestation,
    )
    .map_err(|e| manifest_error(e).for_device(id))?;
    if i64::try_from(m.report_counter).is_err() {
        return Err(DeviceError::malformed(format!(
            "manifest: report_counter {} is above {} (the largest counter the server stores)",
            m.report_counter,
            i64::MAX
        ))
        .for_device(id));
    }
    let running = m.running().map(|t| Installed {
        name: t.name.clone(),
        release_counter: t.release_counter,
        max_release_counter: m.max_release_counter(),
    });
    let policy = d.policy();
    let view = DeviceView {
        id: id.clone(),
        hardware_id: row.record.hardware_id.clone(),
        environment: row.record.attributes.environment.clone(),
        group: row.record.group.clone(),
        tags: row.record.attributes.tags.clone(),
        usable: true,
        installed: running.clone(),
    };
    let assignment = assign(&view, &policy.fleet, now);
    let (targets, assigned, note, refused) = match &assignment {
        Assignment::Install { release, via, .. } => (
            assignment.director_target().into_iter().collect::<Vec<_>>(),
            Some((release.name.clone(), release.release_counter)),
            format!(
                "install {} (release {}) via {via:?}",
                release.name, release.release_counter
            ),
            None,
        ),
        Assignment::Nothing { reason } => (vec![], None, reason.clone(), None),
        Assignment::Refused(e) => (vec![], None, format!("refused: {e}"), Some(e.to_string())),
    };
    Ok(Assessment {
        manifest,
        policy,
        running,
        targets,
        assigned,
        note,
        refused,
    })
}

/// Stage 4a, answer (signing half): the device's director targets,
/// snapshot and timestamp. Runs before stage 3 because the new metadata
/// versions are part of what stage 3 commits.
fn sign_metadata(
    d: &Director,
    who: &Authenticated,
    verdict: &Assessment,
    now: DateTime<Utc>,
) -> Result<DirectorMetadata, DeviceError> {
    let row = &who.row;
    build_director_metadata(
        d.keys.signers(),
        &row.record.id,
        &row.record.hardware_id,
        &verdict.targets,
        &row.director,
        now,
        &d.metadata,
    )
    .map_err(|e| DeviceError::internal(e.to_string()))
}

/// Stage 3, record: everything the check-in writes, in durability order:
/// the carried install reports in the transparency log, then one
/// transaction (nonce, counter, installed state, director versions,
/// assignment, reports, reported attacks), then the delivery log entry,
/// then the audit records. An error leaves the device unanswered.
async fn record(
    st: &Arc<DirectorState>,
    d: &Arc<Director>,
    who: &Authenticated,
    verdict: &Assessment,
    director: DeviceDirectorState,
    now: DateTime<Utc>,
) -> Result<(), DeviceError> {
    let row = &who.row;
    let id = &row.record.id;
    let m = verdict.body();
    let at = now.timestamp();
    // Transparency log: the carried install reports, durable before the
    // commit and the answer (log_hooks.rs; nothing without reports).
    let log_indices = super::log_hooks::log_install_reports(st, row, &who.req.body, m)
        .await
        .map_err(|e| DeviceError::internal(e.to_string()).for_device(id))?;
    let job = checkin_write(who, verdict, director, at, &log_indices);
    let n_attacks = job.attacks.len();
    match d.writer.write(job).await {
        Ok(WriteOutcome::Committed {
            rollouts_with_new_reports,
        }) => spawn_gate_evaluations(st, d, rollouts_with_new_reports),
        Ok(WriteOutcome::ReplayedNonce) => {
            return Err(DeviceError::new(
                StatusCode::CONFLICT,
                "replayed_nonce",
                format!(
                    "request: nonce {} of device {id} was already used (replayed request)",
                    who.req.nonce
                ),
            )
            .for_device(id));
        }
        Ok(WriteOutcome::Conflict) => {
            return Err(lost_race(d, id, m.report_counter, now).await);
        }
        Err(e) => return Err(DeviceError::internal(e)),
    }
    // Transparency log: a newly delivered assignment, once, before the
    // answer (log_hooks.rs; nothing when the store says it is logged).
    super::log_hooks::log_delivery(st, d, row, &verdict.targets, at)
        .await
        .map_err(|e| DeviceError::internal(e.to_string()).for_device(id))?;
    if n_attacks > 0 {
        let _ = st
            .auth
            .audit_as(
                &format!("device:{id}"),
                &[],
                "device.attack_reported",
                None,
                Some(id),
                "recorded",
                &format!(
                    "{n_attacks} attack(s) reported in manifest {}",
                    m.report_counter
                ),
            )
            .await;
    }
    if let Some(reason) = &verdict.refused {
        // Recorded once per change of the refusal, not on every check-in.
        if row.assignment_note.as_deref() != Some(verdict.note.as_str()) {
            d.record_attack(st, Some(id), "downgrade_refused", "server", reason)
                .await;
        }
    }
    Ok(())
}

/// The one transaction of stage 3: what the check-in changes in the store.
/// `log_indices`: the log index of each install report's entry, in the
/// manifest's report order.
fn checkin_write(
    who: &Authenticated,
    verdict: &Assessment,
    director: DeviceDirectorState,
    at: i64,
    log_indices: &[u64],
) -> CheckinWrite {
    let row = &who.row;
    let id = &row.record.id;
    let m = verdict.body();
    let reports = m
        .install_reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let ro = verdict.policy.fleet.rollouts.iter().find(|x| {
                x.release.name == r.target && x.release.release_counter == r.release_counter
            });
            ReportRow {
                device_id: id.clone(),
                report_id: r.id.clone(),
                target: r.target.clone(),
                release_counter: r.release_counter,
                outcome: r.outcome.clone(),
                reason: r.reason.clone(),
                device_time: r.time,
                received_at: at,
                rollout_id: ro.map(|x| x.id.clone()),
                // The device's own stage, not the rollout's current one: a
                // late report of a canary device must not count for the
                // next stage's gate.
                stage: ro.and_then(|x| x.device_stage(id)).map(|s| s as u64),
                log_index: log_indices.get(i).copied(),
            }
        })
        .collect();
    let attacks = m
        .attacks_detected
        .iter()
        .enumerate()
        .map(|(i, a)| AttackRow {
            id: reported_attack_id(id, m.report_counter, i),
            at,
            device_id: Some(id.clone()),
            code: "device_reported".into(),
            source: "device".into(),
            detail: format!("{}: {} (device time {})", a.subject, a.reason, a.time),
        })
        .collect();
    let installed_json = serde_json::json!({
        "installed": m.installed,
        "active_slot": m.active_slot,
    })
    .to_string();
    let running = verdict.running.clone();
    CheckinWrite {
        device_id: id.clone(),
        nonce: who.nonce.0.clone(),
        nonce_expires: who.nonce.1,
        old_counter: row.last_counter,
        new_counter: m.report_counter,
        at,
        installed_json,
        running_changed: running.as_ref().map(|r| (&r.name, r.release_counter))
            != row.running.as_ref().map(|r| (&r.name, r.release_counter)),
        running,
        director,
        assigned: verdict.assigned.clone(),
        assignment_note: verdict.note.clone(),
        reports,
        attacks,
    }
}

/// Evaluates the canary gate of every rollout that got new reports, in the
/// background (the device's answer does not wait for it).
fn spawn_gate_evaluations(st: &Arc<DirectorState>, d: &Arc<Director>, rollouts: Vec<String>) {
    for r in rollouts {
        let d = d.clone();
        let st = st.clone();
        tokio::spawn(async move {
            match d.evaluate_gate(&r).await {
                Ok(Some(decision)) => {
                    tracing::info!(rollout = %r, ?decision, "canary gate decision");
                    let _ = st
                        .auth
                        .audit_as(
                            "director",
                            &[],
                            "fleet.rollout.gate",
                            None,
                            Some(&r),
                            "ok",
                            &format!("{decision:?}"),
                        )
                        .await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(rollout = %r, error = %e, "canary gate evaluation failed")
                }
            }
        });
    }
}

/// The refusal for a check-in whose commit found the device moved on:
/// either a racing manifest won or the device stopped being usable after
/// it was read; tells which.
async fn lost_race(d: &Director, id: &str, counter: u64, now: DateTime<Utc>) -> DeviceError {
    let now_row = match d.db.get_device(id).await {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    if let Some(r) = &now_row {
        if let Err(e) = r
            .record
            .check_usable(now, &d.reattestation, Purpose::Normal)
        {
            return status_error(&e).for_device(id);
        }
    }
    DeviceError::new(
        StatusCode::CONFLICT,
        "replayed_counter",
        format!(
            "manifest: report_counter {counter} of device {id} lost a race with another manifest \
             (now at {:?}); reordered or replayed",
            now_row.and_then(|r| r.last_counter)
        ),
    )
    .for_device(id)
}

/// Stage 4b, answer: the signed director metadata, the director roots the
/// device lacks (from its trusted version, at most [`MAX_ROOT_CHAIN`]) and
/// the accepted counter.
fn answer(
    d: &Director,
    trusted: usize,
    verdict: &Assessment,
    md: DirectorMetadata,
) -> CheckinResponse {
    let roots = d.roots();
    let from = trusted.min(roots.len());
    let to = roots.len().min(from.saturating_add(MAX_ROOT_CHAIN));
    CheckinResponse {
        wire_version: WIRE_VERSION,
        accepted_counter: verdict.body().report_counter,
        director: DirectorMetadataSet {
            roots: roots.get(from..to).map(<[_]>::to_vec).unwrap_or_default(),
            timestamp: md.timestamp,
            snapshot: md.snapshot,
            targets: md.targets,
        },
        next_checkin_secs: Some(d.settings.checkin_interval_seconds),
    }
}

// ------------------------------------------------------------------ roots

async fn root_file(
    State(st): State<Arc<DirectorState>>,
    Path(file): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let d = match director(&st) {
        Ok(d) => d.clone(),
        Err(e) => return error_response(&e),
    };
    let result = async {
        let n: usize = file
            .strip_suffix(".root.json")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                DeviceError::malformed(format!(
                    "{file:?}: the director serves only N.root.json (N ≥ 1) here"
                ))
            })?;
        let a = authenticate(&d, &method, &uri, &headers, &[], Utc::now()).await?;
        if !d
            .db
            .insert_nonce(&a.row.record.id, &a.nonce.0, a.nonce.1)
            .await?
        {
            return Err(DeviceError::new(
                StatusCode::CONFLICT,
                "replayed_nonce",
                format!(
                    "request: nonce {} of device {} was already used (replayed request)",
                    a.req.nonce, a.row.record.id
                ),
            )
            .for_device(&a.row.record.id));
        }
        let roots = d.roots();
        roots.get(n - 1).cloned().ok_or_else(|| DeviceError {
            record: false,
            ..DeviceError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "director root version {n} does not exist (newest is {})",
                    roots.len()
                ),
            )
        })
    }
    .await;
    match result {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => d.refuse(&st, e).await,
    }
}
