//! Fleet API under `/api/v1/fleet/…`: enrolment tokens, devices (list,
//! filter, detail with drift, suspend / resume / decommission, pins),
//! rollouts (create, status per stage, pause / resume / abort), yanks with
//! remediation, install history, rollback authorisations, attack records.
//!
//! Scope `fleet:admin` for everything but rollback authorisations, which
//! need `role:sign:rollback` (and verify against the separate rollback
//! keys: the scope lets a caller file an authorisation, only the rollback
//! keys' signatures make it usable). Every change is audited.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{Duration, Utc};
use custody_director::policy::{
    assign, Assignment, DeviceView, Gate, Release, Rollout, RolloutState, Selector, Stage, BUCKETS,
};
use custody_director::registry::{DeviceStatus, EffectiveStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::store::{
    AttackRow, DeviceFilter, DeviceRow, InstallRow, PinRow, ReportRow, RollbackRow, RolloutRow,
    TokenRow, YankRow,
};
use super::{Director, RolloutSpec, WindowSpec};
use crate::auth::scope::{Scope, ScopeKind};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::{now, AppState};

type St = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/fleet/enrolment-tokens", post(issue_tokens))
        .route("/api/v1/fleet/devices", get(list_devices))
        .route("/api/v1/fleet/devices/{id}", get(device_detail))
        .route("/api/v1/fleet/devices/{id}/suspend", post(suspend_device))
        .route("/api/v1/fleet/devices/{id}/resume", post(resume_device))
        .route(
            "/api/v1/fleet/devices/{id}/decommission",
            post(decommission_device),
        )
        .route(
            "/api/v1/fleet/devices/{id}/pin",
            put(pin_device).delete(unpin_device),
        )
        .route(
            "/api/v1/fleet/rollouts",
            post(create_rollout).get(list_rollouts),
        )
        .route("/api/v1/fleet/rollouts/{id}", get(rollout_status))
        .route("/api/v1/fleet/rollouts/{id}/pause", post(pause_rollout))
        .route("/api/v1/fleet/rollouts/{id}/resume", post(resume_rollout))
        .route("/api/v1/fleet/rollouts/{id}/abort", post(abort_rollout))
        .route("/api/v1/fleet/yanks", post(yank).get(list_yanks))
        .route("/api/v1/fleet/installs", get(who_installed))
        .route(
            "/api/v1/fleet/rollback-authorizations",
            post(file_rollback).get(list_rollbacks),
        )
        .route("/api/v1/fleet/attacks", get(list_attacks))
        .merge(super::bundle_export::router())
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(format!("request body: {}", e.body_text())))
}

fn director(st: &AppState) -> ApiResult<Arc<Director>> {
    st.director.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the director is not running on this server (it needs the key passphrase)",
        )
    })
}

async fn fleet_admin(
    st: &AppState,
    caller: &Caller,
    action: &str,
    target: Option<&str>,
) -> ApiResult<()> {
    st.authorize(
        caller,
        Scope::new(ScopeKind::FleetAdmin, None),
        action,
        target,
    )
    .await
}

fn check_name(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1..=1024 bytes without control characters, got {} bytes",
            v.len()
        )));
    }
    Ok(())
}

fn check_device_id(id: &str) -> ApiResult<()> {
    if !custody_director::keys::is_device_id(id) {
        return Err(ApiError::bad_request(format!(
            "device id must be 64 lowercase hex digits (the key id of the device key), got {:?}",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

// ------------------------------------------------------------ image repo

/// A target of the hosted image repository, read through custody-tuf's
/// client checks (the director only assigns what a device would accept),
/// found through delegations and hash bins as a device finds it
/// ([`super::image::lookup_target`]).
fn image_release(
    d: &Director,
    name: &str,
    counter: Option<u64>,
    hardware_ids: Option<BTreeSet<String>>,
) -> ApiResult<Release> {
    let dir = d.image_dir.join("current").join("metadata");
    let repo = &d.settings.image_repository;
    let (_role, tf) = super::image::lookup_target(repo, &dir, name, Utc::now()).map_err(|e| {
        use super::image::ImageLookupError as E;
        match e {
            E::NotFound { .. } => ApiError::not_found(e.to_string()),
            E::Unreadable { .. } | E::Invalid { .. } => {
                ApiError::new(StatusCode::CONFLICT, "image_repository", e.to_string())
            }
        }
    })?;
    // custody-director reads the counter and hardware ids from the signed
    // custom with the reader the device checks them with.
    Release::from_image(name, &tf, counter, hardware_ids)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

// ------------------------------------------------------------------ tokens

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIssue {
    /// fleet group the enrolled devices join
    pub group: String,
    /// environment the devices must claim (absent: any)
    pub environment: Option<String>,
    /// lifetime (default 1 day, at most `director.token_max_ttl_seconds`)
    pub ttl_seconds: Option<u64>,
    /// how many single-use tokens (1..=1000, default 1)
    pub count: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokensIssued {
    /// shown once; the server keeps only their SHA-256
    pub tokens: Vec<String>,
    pub group: String,
    pub environment: Option<String>,
    pub expires_at: i64,
}

#[utoipa::path(post, path = "/api/v1/fleet/enrolment-tokens", tag = "fleet", security(("bearer" = [])),
    request_body = TokenIssue,
    responses((status = 201, body = TokensIssued), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn issue_tokens(
    State(st): St,
    caller: Caller,
    body: Result<Json<TokenIssue>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<TokensIssued>)> {
    fleet_admin(&st, &caller, "fleet.token.issue", None).await?;
    let d = director(&st)?;
    let req = json_body(body)?;
    check_name("group", &req.group)?;
    if let Some(e) = &req.environment {
        check_name("environment", e)?;
    }
    let ttl = req.ttl_seconds.unwrap_or(86_400);
    if ttl == 0 || ttl > d.settings.token_max_ttl_seconds {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds must be 1..={}, got {ttl}",
            d.settings.token_max_ttl_seconds
        )));
    }
    let count = req.count.unwrap_or(1);
    if !(1..=1000).contains(&count) {
        return Err(ApiError::bad_request(format!(
            "count must be 1..=1000, got {count}"
        )));
    }
    let at = Utc::now();
    let mut tokens = Vec::new();
    let mut expires_at = 0;
    for _ in 0..count {
        let (token, rec) = custody_director::enrol::issue_token(
            &req.group,
            req.environment.as_deref(),
            at,
            Duration::seconds(i64::try_from(ttl).unwrap_or(86_400)),
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        expires_at = rec.expires_at.timestamp();
        d.db.insert_token(&TokenRow {
            rec,
            created_by: caller.identity().to_owned(),
        })
        .await?;
        tokens.push(token);
    }
    st.audit(
        &caller,
        "fleet.token.issue",
        None,
        Some(&req.group),
        "ok",
        &format!(
            "{count} enrolment token(s) for group {:?}, environment {:?}, ttl {ttl} s",
            req.group, req.environment
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokensIssued {
            tokens,
            group: req.group,
            environment: req.environment,
            expires_at,
        }),
    ))
}

// ----------------------------------------------------------------- devices

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    pub target: String,
    pub release_counter: u64,
}

/// One device as the fleet API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceSummary {
    pub id: String,
    pub hardware_id: String,
    pub group: String,
    pub environment: String,
    pub tags: Vec<String>,
    /// stored status: `active`, `suspended`, `decommissioned`
    pub status: String,
    /// status in force now (`overdue` when re-attestation is due)
    pub effective_status: String,
    pub status_reason: Option<String>,
    pub enrolled_at: i64,
    #[schema(value_type = Object)]
    pub enrolled_with: serde_json::Value,
    /// last proof of key possession (enrolment or signed check-in)
    pub last_attestation: i64,
    pub last_checkin: Option<i64>,
    pub last_report_counter: Option<u64>,
    /// what the last accepted manifest says is running
    pub installed: Option<Deployed>,
    /// what the director last signed for it
    pub assigned: Option<Deployed>,
    /// installed differs from assigned
    pub drift: bool,
}

fn summary(d: &Director, r: &DeviceRow) -> DeviceSummary {
    let rec = &r.record;
    let (status, reason) = match &rec.status {
        DeviceStatus::Active => ("active", None),
        DeviceStatus::Suspended { reason, .. } => ("suspended", Some(reason.clone())),
        DeviceStatus::Decommissioned { .. } => ("decommissioned", None),
    };
    let eff = match rec.effective_status(Utc::now(), &d.reattestation) {
        EffectiveStatus::Active => "active",
        EffectiveStatus::Overdue { .. } => "overdue",
        EffectiveStatus::Suspended { .. } => "suspended",
        EffectiveStatus::Decommissioned => "decommissioned",
    };
    let installed = r.running.as_ref().map(|i| Deployed {
        target: i.name.clone(),
        release_counter: i.release_counter,
    });
    let assigned = r.assigned.as_ref().map(|(t, c)| Deployed {
        target: t.clone(),
        release_counter: *c,
    });
    let drift = match (&installed, &assigned) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(i), Some(a)) => i.target != a.target || i.release_counter != a.release_counter,
    };
    DeviceSummary {
        id: rec.id.clone(),
        hardware_id: rec.hardware_id.clone(),
        group: rec.group.clone(),
        environment: rec.attributes.environment.clone(),
        tags: rec.attributes.tags.iter().cloned().collect(),
        status: status.into(),
        effective_status: eff.into(),
        status_reason: reason,
        enrolled_at: rec.enrolled_at.timestamp(),
        enrolled_with: serde_json::to_value(&rec.enrolled_with).unwrap_or_default(),
        last_attestation: rec.last_attestation.timestamp(),
        last_checkin: r.last_checkin,
        last_report_counter: r.last_counter,
        installed,
        assigned,
        drift,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeviceQuery {
    pub hardware_id: Option<String>,
    pub group: Option<String>,
    pub environment: Option<String>,
    /// devices carrying this tag
    pub tag: Option<String>,
    /// `active`, `suspended`, `decommissioned`
    pub status: Option<String>,
    /// devices running this target
    pub target: Option<String>,
    /// only devices whose installed differs from assigned
    pub drift: Option<bool>,
    /// paging: ids after this one
    pub after: Option<String>,
    /// 1..=1000, default 100
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/fleet/devices", tag = "fleet", security(("bearer" = [])),
    params(DeviceQuery), responses((status = 200, body = Vec<DeviceSummary>)))]
async fn list_devices(
    State(st): St,
    caller: Caller,
    Query(q): Query<DeviceQuery>,
) -> ApiResult<Json<Vec<DeviceSummary>>> {
    fleet_admin(&st, &caller, "fleet.device.list", None).await?;
    let d = director(&st)?;
    let rows =
        d.db.list_devices(&DeviceFilter {
            hardware_id: q.hardware_id,
            group: q.group,
            environment: q.environment,
            tag: q.tag,
            status: q.status,
            running_target: q.target,
            after: q.after,
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
        })
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| summary(&d, r))
            .filter(|s| q.drift.is_none_or(|want| s.drift == want))
            .collect(),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: DeviceSummary,
    /// installed state of the last accepted manifest (slots)
    #[schema(value_type = Object)]
    pub installed_state: Option<serde_json::Value>,
    /// the director's decision if the device checked in now
    pub assignment_now: String,
    /// the pin holding it, if any
    pub pinned_to: Option<Deployed>,
    /// newest install reports
    pub reports: Vec<ReportRow>,
    /// newest attack records about it
    pub attacks: Vec<AttackRow>,
}

pub(super) fn view(d: &Director, r: &DeviceRow) -> DeviceView {
    DeviceView {
        id: r.record.id.clone(),
        hardware_id: r.record.hardware_id.clone(),
        environment: r.record.attributes.environment.clone(),
        group: r.record.group.clone(),
        tags: r.record.attributes.tags.clone(),
        usable: r.record.effective_status(Utc::now(), &d.reattestation) == EffectiveStatus::Active,
        installed: r.running.clone(),
    }
}

async fn load_device(d: &Director, id: &str) -> ApiResult<DeviceRow> {
    check_device_id(id)?;
    d.db.get_device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} is not enrolled")))
}

#[utoipa::path(get, path = "/api/v1/fleet/devices/{id}", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceDetail), (status = 404, body = ErrorBody)))]
async fn device_detail(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceDetail>> {
    fleet_admin(&st, &caller, "fleet.device.read", Some(&id)).await?;
    let d = director(&st)?;
    let row = load_device(&d, &id).await?;
    let policy = d.policy();
    let assignment_now = match assign(&view(&d, &row), &policy.fleet, Utc::now()) {
        Assignment::Install { release, via, .. } => format!(
            "install {} (release {}) via {via:?}",
            release.name, release.release_counter
        ),
        Assignment::Nothing { reason } => format!("nothing: {reason}"),
        Assignment::Refused(e) => format!("refused: {e}"),
    };
    Ok(Json(DeviceDetail {
        device: summary(&d, &row),
        installed_state: row.installed.clone(),
        assignment_now,
        pinned_to: policy.fleet.pins.get(&id).map(|p| Deployed {
            target: p.release.name.clone(),
            release_counter: p.release.release_counter,
        }),
        reports: d.db.list_reports(&id, 50).await?,
        attacks: d.db.list_attacks(Some(&id), 50).await?,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// why (audit)
    pub reason: Option<String>,
}

/// An optional `{"reason": …}` body (empty body: the default reason).
fn reason_of(body: Bytes, default: &str) -> ApiResult<String> {
    let r = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Reason>(&body)
            .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?
            .reason
    };
    let r = r.unwrap_or_else(|| default.to_owned());
    if r.len() > 4096 {
        return Err(ApiError::bad_request("reason must be at most 4096 bytes"));
    }
    Ok(r)
}

async fn set_status(
    st: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
    status: DeviceStatus,
    attested_at: Option<i64>,
    reason: &str,
) -> ApiResult<Json<DeviceSummary>> {
    let d = director(st)?;
    let row = load_device(&d, id).await?;
    if matches!(row.record.status, DeviceStatus::Decommissioned { .. }) {
        return Err(ApiError::conflict(format!(
            "device {id} is decommissioned; that is final (enrol a new key instead)"
        )));
    }
    // A decommission is a `decommission` entry of the transparency log,
    // durable before the status changes: a later status write that fails
    // leaves an entry the retry repeats, never a decommission the log
    // lacks (a decommissioned device cannot be decommissioned again).
    if matches!(status, DeviceStatus::Decommissioned { .. }) {
        crate::log::record(
            st,
            crate::log::EntryBody::Decommission {
                device_id: id.to_owned(),
                reason: reason.to_owned(),
                by: caller.identity().to_owned(),
            },
        )
        .await?;
    }
    if !d.db.set_device_status(id, &status, attested_at).await? {
        return Err(ApiError::conflict(format!(
            "device {id} changed meanwhile; retry"
        )));
    }
    st.audit(caller, action, None, Some(id), "ok", reason)
        .await?;
    let row = load_device(&d, id).await?;
    Ok(Json(summary(&d, &row)))
}

#[utoipa::path(post, path = "/api/v1/fleet/devices/{id}/suspend", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")), request_body = Reason,
    responses((status = 200, body = DeviceSummary), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn suspend_device(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<DeviceSummary>> {
    fleet_admin(&st, &caller, "fleet.device.suspend", Some(&id)).await?;
    let reason = reason_of(body, "suspended by an administrator")?;
    let status = DeviceStatus::Suspended {
        reason: reason.clone(),
        since: Utc::now(),
    };
    set_status(
        &st,
        &caller,
        &id,
        "fleet.device.suspend",
        status,
        None,
        &reason,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/fleet/devices/{id}/resume", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")), request_body = Reason,
    responses((status = 200, body = DeviceSummary), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume_device(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<DeviceSummary>> {
    fleet_admin(&st, &caller, "fleet.device.resume", Some(&id)).await?;
    let reason = reason_of(body, "resumed by an administrator")?;
    // Resuming restarts the re-attestation clock: the administrator vouches.
    set_status(
        &st,
        &caller,
        &id,
        "fleet.device.resume",
        DeviceStatus::Active,
        Some(now()),
        &reason,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/fleet/devices/{id}/decommission", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")), request_body = Reason,
    responses((status = 200, body = DeviceSummary), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn decommission_device(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<DeviceSummary>> {
    fleet_admin(&st, &caller, "fleet.device.decommission", Some(&id)).await?;
    let reason = reason_of(body, "decommissioned by an administrator")?;
    let status = DeviceStatus::Decommissioned { since: Utc::now() };
    set_status(
        &st,
        &caller,
        &id,
        "fleet.device.decommission",
        status,
        None,
        &reason,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// target path in the image repository
    pub target: String,
    /// its release counter (default: the image repository's custom.release_counter)
    pub release_counter: Option<u64>,
    pub reason: String,
}

#[utoipa::path(put, path = "/api/v1/fleet/devices/{id}/pin", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")), request_body = PinRequest,
    responses((status = 200, body = Deployed), (status = 404, body = ErrorBody)))]
async fn pin_device(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PinRequest>, JsonRejection>,
) -> ApiResult<Json<Deployed>> {
    fleet_admin(&st, &caller, "fleet.device.pin", Some(&id)).await?;
    let d = director(&st)?;
    let req = json_body(body)?;
    check_name("target", &req.target)?;
    load_device(&d, &id).await?;
    let release = image_release(&d, &req.target, req.release_counter, None)?;
    d.db.upsert_pin(&PinRow {
        device_id: id.clone(),
        release_json: serde_json::to_string(&release)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        reason: req.reason.clone(),
        created_at: now(),
        created_by: caller.identity().to_owned(),
    })
    .await?;
    d.reload_policy().await?;
    st.audit(
        &caller,
        "fleet.device.pin",
        None,
        Some(&id),
        "ok",
        &format!(
            "pinned to {} (release {}): {}",
            release.name, release.release_counter, req.reason
        ),
    )
    .await?;
    Ok(Json(Deployed {
        target: release.name,
        release_counter: release.release_counter,
    }))
}

#[utoipa::path(delete, path = "/api/v1/fleet/devices/{id}/pin", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn unpin_device(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    fleet_admin(&st, &caller, "fleet.device.unpin", Some(&id)).await?;
    let d = director(&st)?;
    check_device_id(&id)?;
    if !d.db.delete_pin(&id).await? {
        return Err(ApiError::not_found(format!("device {id} has no pin")));
    }
    d.reload_policy().await?;
    st.audit(&caller, "fleet.device.unpin", None, Some(&id), "ok", "")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- rollouts

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// advance when successes / reports ≥ this (percent, default 95)
    pub min_success_percent: Option<f64>,
    /// pause when failures / reports > this (percent, default 5)
    pub max_failure_percent: Option<f64>,
    /// decide only with at least this many reports (default 20)
    pub min_sample: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// cumulative share of the selected devices, percent (0 < p ≤ 100,
    /// increasing; the last is 100); two decimals are kept (basis points)
    pub percent: f64,
    /// canary gate to leave this stage
    pub gate: Option<GateSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectorSpec {
    pub hardware_ids: Option<BTreeSet<String>>,
    pub environments: Option<BTreeSet<String>>,
    pub groups: Option<BTreeSet<String>>,
    /// devices must carry all of these
    #[serde(default)]
    pub tags: BTreeSet<String>,
    pub device_ids: Option<BTreeSet<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// rollout id (1..=64 of [A-Za-z0-9._-]); default: random
    pub id: Option<String>,
    /// target path in the image repository
    pub target: String,
    /// release counter (default: the image target's custom.release_counter)
    pub release_counter: Option<u64>,
    /// hardware ids the release is built for: among those the image
    /// target's custom.hardware_id / hardware_ids allow (default: those,
    /// else any)
    pub hardware_ids: Option<BTreeSet<String>>,
    #[serde(default)]
    pub selector: SelectorSpec,
    /// stages; default one stage of 100 %
    pub stages: Option<Vec<StageSpec>>,
    /// maintenance windows (none: always)
    #[serde(default)]
    pub windows: Vec<WindowSpec>,
    /// bucket seed (default: the rollout id); the same seed gives the same buckets
    pub seed: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StageStatus {
    pub index: usize,
    pub percent: f64,
    #[schema(value_type = Object)]
    pub gate: Gate,
    /// selected devices whose bucket this stage covers (cumulative)
    pub devices: u64,
    /// install reports received while the rollout was at this stage
    pub successes: u64,
    pub failures: u64,
    /// `done`, `current`, `pending`
    pub state: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutStatus {
    pub id: String,
    pub target: String,
    pub release_counter: u64,
    /// `active`, `paused`, `aborted`, `completed`
    pub state: String,
    pub reason: Option<String>,
    pub stage: usize,
    #[schema(value_type = Object)]
    pub selector: Selector,
    pub windows: Vec<WindowSpec>,
    pub window_open_now: bool,
    pub seed: String,
    /// devices the selector matches (and the release supports)
    pub selected_devices: u64,
    /// of those, devices running the release
    pub installed_devices: u64,
    pub stages: Vec<StageStatus>,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
}

fn valid_id(id: &str) -> ApiResult<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ApiError::bad_request(format!(
            "rollout id must be 1..=64 of A-Z a-z 0-9 . _ -, got {:?}",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

fn bp(field: &str, percent: f64) -> ApiResult<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(ApiError::bad_request(format!(
            "{field} must be a percentage in 0..=100, got {percent}"
        )));
    }
    Ok((percent * 100.0).round() as u32)
}

/// Every device row (paged) — for rollout status and remediation sets.
async fn all_devices(d: &Director) -> ApiResult<Vec<DeviceRow>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page =
            d.db.list_devices(&DeviceFilter {
                after: after.clone(),
                limit: 10_000,
                ..DeviceFilter::default()
            })
            .await?;
        let n = page.len();
        after = page.last().map(|r| r.record.id.clone());
        out.extend(page);
        if n < 10_000 {
            return Ok(out);
        }
    }
}

fn state_text(s: &RolloutState) -> (String, Option<String>) {
    match s {
        RolloutState::Active => ("active".into(), None),
        RolloutState::Paused { reason } => ("paused".into(), Some(reason.clone())),
        RolloutState::Aborted { reason } => ("aborted".into(), Some(reason.clone())),
        RolloutState::Completed => ("completed".into(), None),
    }
}

async fn status_of(d: &Director, r: &Rollout) -> ApiResult<RolloutStatus> {
    let rows = d.db.list_rollouts().await?;
    let row = rows
        .iter()
        .find(|x| x.id == r.id)
        .ok_or_else(|| ApiError::not_found(format!("rollout {} does not exist", r.id)))?;
    let spec: RolloutSpec =
        serde_json::from_str(&row.spec).map_err(|e| ApiError::internal(e.to_string()))?;
    let devices = all_devices(d).await?;
    let mut selected = 0u64;
    let mut installed = 0u64;
    let mut per_stage = vec![0u64; r.stages.len()];
    for dev in &devices {
        let v = view(d, dev);
        if !r.selects(&v) {
            continue;
        }
        selected += 1;
        if v.installed
            .as_ref()
            .is_some_and(|i| i.name == r.release.name)
        {
            installed += 1;
        }
        // stages are nested: a device counts from its own stage on
        if let Some(first) = r.device_stage(&v.id) {
            for c in per_stage.iter_mut().skip(first) {
                *c += 1;
            }
        }
    }
    let counts = super::store::stage_counts(&d.db.report_counts(&r.id).await?);
    let (state, reason) = state_text(&r.state);
    let stages = r
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (ok, fail) = counts.get(&(i as u64)).copied().unwrap_or((0, 0));
            StageStatus {
                index: i,
                percent: f64::from(s.share_bp) / 100.0,
                gate: s.gate,
                devices: per_stage.get(i).copied().unwrap_or(0),
                successes: ok,
                failures: fail,
                state: if r.state == RolloutState::Completed || i < r.stage {
                    "done"
                } else if i == r.stage {
                    "current"
                } else {
                    "pending"
                }
                .into(),
            }
        })
        .collect();
    Ok(RolloutStatus {
        id: r.id.clone(),
        target: r.release.name.clone(),
        release_counter: r.release.release_counter,
        state,
        reason,
        stage: r.stage,
        selector: r.selector.clone(),
        windows: spec.windows,
        window_open_now: r.window_open(Utc::now()),
        seed: r.seed.clone(),
        selected_devices: selected,
        installed_devices: installed,
        stages,
        created_at: row.created_at,
        created_by: row.created_by.clone(),
        updated_at: row.updated_at,
    })
}

#[utoipa::path(post, path = "/api/v1/fleet/rollouts", tag = "fleet", security(("bearer" = [])),
    request_body = RolloutRequest,
    responses((status = 201, body = RolloutStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_rollout(
    State(st): St,
    caller: Caller,
    body: Result<Json<RolloutRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RolloutStatus>)> {
    fleet_admin(&st, &caller, "fleet.rollout.create", None).await?;
    let d = director(&st)?;
    let req = json_body(body)?;
    let id = match &req.id {
        Some(id) => id.clone(),
        None => format!("r-{}", crate::blobs::random_hex(8)),
    };
    valid_id(&id)?;
    check_name("target", &req.target)?;
    let release = image_release(
        &d,
        &req.target,
        req.release_counter,
        req.hardware_ids.clone(),
    )?;
    let stages = match &req.stages {
        None => vec![Stage {
            share_bp: BUCKETS,
            gate: Gate::default(),
        }],
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let mut gate = Gate::default();
                if let Some(g) = &s.gate {
                    if let Some(p) = g.min_success_percent {
                        gate.min_success_bp =
                            bp(&format!("stages[{i}].gate.min_success_percent"), p)?;
                    }
                    if let Some(p) = g.max_failure_percent {
                        gate.max_failure_bp =
                            bp(&format!("stages[{i}].gate.max_failure_percent"), p)?;
                    }
                    if let Some(n) = g.min_sample {
                        gate.min_sample = n;
                    }
                }
                out.push(Stage {
                    share_bp: bp(&format!("stages[{i}].percent"), s.percent)?,
                    gate,
                });
            }
            out
        }
    };
    let windows = req
        .windows
        .iter()
        .map(WindowSpec::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    for d_id in req.selector.device_ids.iter().flatten() {
        check_device_id(d_id)?;
    }
    let selector = Selector {
        hardware_ids: req.selector.hardware_ids.clone(),
        environments: req.selector.environments.clone(),
        groups: req.selector.groups.clone(),
        tags: req.selector.tags.clone(),
        device_ids: req.selector.device_ids.clone(),
    };
    let seed = req.seed.clone().unwrap_or_else(|| id.clone());
    let rollout = Rollout::new(
        &id,
        &seed,
        release.clone(),
        selector.clone(),
        stages.clone(),
        windows,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let spec = RolloutSpec {
        release: release.clone(),
        selector,
        stages,
        windows: req.windows.clone(),
        seed,
    };
    let at = now();
    d.db.insert_rollout(&RolloutRow {
        id: id.clone(),
        spec: serde_json::to_string(&spec).map_err(|e| ApiError::internal(e.to_string()))?,
        stage: 0,
        state: serde_json::to_string(&rollout.state)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        created_at: at,
        created_by: caller.identity().to_owned(),
        updated_at: at,
    })
    .await?;
    d.reload_policy().await?;
    st.audit(
        &caller,
        "fleet.rollout.create",
        None,
        Some(&id),
        "ok",
        &format!(
            "release {} (counter {}), {} stage(s), {} window(s)",
            release.name,
            release.release_counter,
            spec.stages.len(),
            spec.windows.len()
        ),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(status_of(&d, &rollout).await?)))
}

fn find_rollout(d: &Director, id: &str) -> ApiResult<Rollout> {
    d.policy()
        .fleet
        .rollouts
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("rollout {id} does not exist")))
}

#[utoipa::path(get, path = "/api/v1/fleet/rollouts", tag = "fleet", security(("bearer" = [])),
    responses((status = 200, body = Vec<RolloutStatus>)))]
async fn list_rollouts(State(st): St, caller: Caller) -> ApiResult<Json<Vec<RolloutStatus>>> {
    fleet_admin(&st, &caller, "fleet.rollout.list", None).await?;
    let d = director(&st)?;
    d.reload_policy().await?;
    let mut out = Vec::new();
    for r in d.policy().fleet.rollouts.iter() {
        out.push(status_of(&d, r).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/fleet/rollouts/{id}", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody)))]
async fn rollout_status(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutStatus>> {
    fleet_admin(&st, &caller, "fleet.rollout.read", Some(&id)).await?;
    let d = director(&st)?;
    d.reload_policy().await?;
    let r = find_rollout(&d, &id)?;
    Ok(Json(status_of(&d, &r).await?))
}

async fn change_rollout(
    st: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
    f: impl Fn(&mut Rollout) -> Result<(), String>,
) -> ApiResult<Json<RolloutStatus>> {
    let d = director(st)?;
    d.reload_policy().await?;
    let policy = d.policy();
    let r = find_rollout(&d, id)?;
    let (old_stage, old_state) = policy
        .stored
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("rollout {id} does not exist")))?;
    let mut next = r.clone();
    f(&mut next).map_err(ApiError::conflict)?;
    let new_state =
        serde_json::to_string(&next.state).map_err(|e| ApiError::internal(e.to_string()))?;
    if !d
        .db
        .update_rollout(
            id,
            (old_stage, &old_state),
            (next.stage as u64, &new_state),
            now(),
        )
        .await?
    {
        return Err(ApiError::conflict(format!(
            "rollout {id} changed meanwhile (canary gate or another administrator); retry"
        )));
    }
    d.reload_policy().await?;
    st.audit(caller, action, None, Some(id), "ok", &new_state)
        .await?;
    Ok(Json(status_of(&d, &next).await?))
}

#[utoipa::path(post, path = "/api/v1/fleet/rollouts/{id}/pause", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "rollout id")), request_body = Reason,
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn pause_rollout(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RolloutStatus>> {
    fleet_admin(&st, &caller, "fleet.rollout.pause", Some(&id)).await?;
    let reason = reason_of(body, "paused by an administrator")?;
    change_rollout(&st, &caller, &id, "fleet.rollout.pause", |r| {
        if !matches!(r.state, RolloutState::Active | RolloutState::Completed) {
            return Err(format!(
                "rollout {} is {:?}; only an active or completed rollout pauses",
                r.id, r.state
            ));
        }
        r.pause(&reason);
        Ok(())
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/fleet/rollouts/{id}/resume", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume_rollout(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutStatus>> {
    fleet_admin(&st, &caller, "fleet.rollout.resume", Some(&id)).await?;
    change_rollout(&st, &caller, &id, "fleet.rollout.resume", |r| {
        if r.resume() {
            Ok(())
        } else {
            Err(format!(
                "rollout {} is {:?}; only a paused rollout resumes",
                r.id, r.state
            ))
        }
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/fleet/rollouts/{id}/abort", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "rollout id")), request_body = Reason,
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody)))]
async fn abort_rollout(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RolloutStatus>> {
    fleet_admin(&st, &caller, "fleet.rollout.abort", Some(&id)).await?;
    let reason = reason_of(body, "aborted by an administrator")?;
    change_rollout(&st, &caller, &id, "fleet.rollout.abort", |r| {
        r.abort(&reason);
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------ yanks

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    /// the yanked target path
    pub target: String,
    /// what devices running it get instead (image repository target)
    pub replacement: String,
    /// replacement's release counter (default: its custom.release_counter)
    pub replacement_release_counter: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct YankResponse {
    pub target: String,
    pub replacement: Deployed,
    /// devices running the yanked target now: each gets a remediation
    /// assignment (the replacement) at its next check-in
    pub remediation: Vec<String>,
    /// every device that ever ran it, and when it was first seen
    pub installed: Vec<InstallRow>,
}

#[utoipa::path(post, path = "/api/v1/fleet/yanks", tag = "fleet", security(("bearer" = [])),
    request_body = YankRequest,
    responses((status = 201, body = YankResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn yank(
    State(st): St,
    caller: Caller,
    body: Result<Json<YankRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<YankResponse>)> {
    fleet_admin(&st, &caller, "fleet.yank", None).await?;
    let d = director(&st)?;
    let req = json_body(body)?;
    check_name("target", &req.target)?;
    check_name("replacement", &req.replacement)?;
    if req.target == req.replacement {
        return Err(ApiError::bad_request(
            "the replacement must differ from the yanked target",
        ));
    }
    let replacement = image_release(&d, &req.replacement, req.replacement_release_counter, None)?;
    d.db.insert_yank(&YankRow {
        target: req.target.clone(),
        replacement_json: serde_json::to_string(&replacement)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        reason: req.reason.clone(),
        created_at: now(),
        created_by: caller.identity().to_owned(),
    })
    .await?;
    d.reload_policy().await?;
    let running = all_devices(&d).await?;
    let remediation: Vec<String> = running
        .iter()
        .filter(|r| r.running.as_ref().is_some_and(|i| i.name == req.target))
        .map(|r| r.record.id.clone())
        .collect();
    let installed = d.db.who_installed(&req.target).await?;
    st.audit(
        &caller,
        "fleet.yank",
        None,
        Some(&req.target),
        "ok",
        &format!(
            "replacement {} (release {}); {} device(s) to remediate: {}",
            replacement.name,
            replacement.release_counter,
            remediation.len(),
            req.reason
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(YankResponse {
            target: req.target,
            replacement: Deployed {
                target: replacement.name,
                release_counter: replacement.release_counter,
            },
            remediation,
            installed,
        }),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct YankSummary {
    pub target: String,
    pub replacement: Deployed,
    pub reason: String,
    pub created_at: i64,
    pub created_by: String,
}

#[utoipa::path(get, path = "/api/v1/fleet/yanks", tag = "fleet", security(("bearer" = [])),
    responses((status = 200, body = Vec<YankSummary>)))]
async fn list_yanks(State(st): St, caller: Caller) -> ApiResult<Json<Vec<YankSummary>>> {
    fleet_admin(&st, &caller, "fleet.yank.list", None).await?;
    let d = director(&st)?;
    let mut out = Vec::new();
    for y in d.db.list_yanks().await? {
        let r: Release = serde_json::from_str(&y.replacement_json)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(YankSummary {
            target: y.target,
            replacement: Deployed {
                target: r.name,
                release_counter: r.release_counter,
            },
            reason: y.reason,
            created_at: y.created_at,
            created_by: y.created_by,
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InstallQuery {
    /// target path
    pub target: String,
}

#[utoipa::path(get, path = "/api/v1/fleet/installs", tag = "fleet", security(("bearer" = [])),
    params(InstallQuery), responses((status = 200, body = Vec<InstallRow>)))]
async fn who_installed(
    State(st): St,
    caller: Caller,
    Query(q): Query<InstallQuery>,
) -> ApiResult<Json<Vec<InstallRow>>> {
    fleet_admin(&st, &caller, "fleet.installs", Some(&q.target)).await?;
    let d = director(&st)?;
    check_name("target", &q.target)?;
    Ok(Json(d.db.who_installed(&q.target).await?))
}

// ------------------------------------------------------ rollback authorisations

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RollbackFiled {
    /// sha256 of the bytes as filed
    pub id: String,
    pub target: String,
    pub release_counter: u64,
    pub devices: usize,
    pub expires: i64,
}

#[utoipa::path(post, path = "/api/v1/fleet/rollback-authorizations", tag = "fleet", security(("bearer" = [])),
    request_body(content = Object, description = "a rollback authorisation envelope `{signed: {_type: custody-rollback-authorization, …}, signatures}` signed by the rollback keys"),
    responses((status = 201, body = RollbackFiled), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn file_rollback(
    State(st): St,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RollbackFiled>)> {
    st.authorize(
        &caller,
        Scope::new(ScopeKind::RoleSign("rollback".into()), None),
        "fleet.rollback.file",
        None,
    )
    .await?;
    let d = director(&st)?;
    let a = custody_director::rollback::RollbackAuthorization::from_bytes(&body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Verify now with the rollback keys, for one named device (the device
    // set is the authorisation's own), so a useless upload is refused.
    let probe = a
        .signed
        .device_ids
        .iter()
        .next()
        .cloned()
        .unwrap_or_default();
    if let Err(e) = a.verify(
        &d.rollback_keys,
        &probe,
        &a.signed.target,
        a.signed.release_counter,
        Utc::now(),
    ) {
        st.audit(
            &caller,
            "fleet.rollback.file",
            None,
            Some(&a.signed.target),
            "rejected",
            &e.to_string(),
        )
        .await?;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rollback_refused",
            e.to_string(),
        ));
    }
    let id = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    d.db.insert_rollback(&RollbackRow {
        id: id.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        target: a.signed.target.clone(),
        release_counter: a.signed.release_counter,
        expires: a.signed.expires,
        uploaded_at: now(),
        uploaded_by: caller.identity().to_owned(),
    })
    .await?;
    d.reload_policy().await?;
    st.audit(
        &caller,
        "fleet.rollback.file",
        None,
        Some(&a.signed.target),
        "ok",
        &format!(
            "release {} for {} device(s) until {}: {}",
            a.signed.release_counter,
            a.signed.device_ids.len(),
            a.signed.expires,
            a.signed.reason
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(RollbackFiled {
            id,
            target: a.signed.target.clone(),
            release_counter: a.signed.release_counter,
            devices: a.signed.device_ids.len(),
            expires: a.signed.expires,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/fleet/rollback-authorizations", tag = "fleet", security(("bearer" = [])),
    responses((status = 200, body = Vec<RollbackFiled>)))]
async fn list_rollbacks(State(st): St, caller: Caller) -> ApiResult<Json<Vec<RollbackFiled>>> {
    fleet_admin(&st, &caller, "fleet.rollback.list", None).await?;
    let d = director(&st)?;
    let mut out = Vec::new();
    for r in d.db.list_rollbacks().await? {
        let devices =
            custody_director::rollback::RollbackAuthorization::from_bytes(r.body.as_bytes())
                .map(|a| a.signed.device_ids.len())
                .unwrap_or(0);
        out.push(RollbackFiled {
            id: r.id,
            target: r.target,
            release_counter: r.release_counter,
            devices,
            expires: r.expires,
        });
    }
    Ok(Json(out))
}

// ----------------------------------------------------------------- attacks

#[derive(Debug, Deserialize, IntoParams)]
pub struct AttackQuery {
    /// only attacks about this device
    pub device: Option<String>,
    /// 1..=1000, default 100, newest first
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/fleet/attacks", tag = "fleet", security(("bearer" = [])),
    params(AttackQuery), responses((status = 200, body = Vec<AttackRow>)))]
async fn list_attacks(
    State(st): St,
    caller: Caller,
    Query(q): Query<AttackQuery>,
) -> ApiResult<Json<Vec<AttackRow>>> {
    fleet_admin(&st, &caller, "fleet.attacks", None).await?;
    let d = director(&st)?;
    Ok(Json(
        d.db.list_attacks(q.device.as_deref(), q.limit.unwrap_or(100))
            .await?,
    ))
}

/// The fleet API's OpenAPI paths and schemas (merged into `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(
        issue_tokens,
        list_devices,
        device_detail,
        suspend_device,
        resume_device,
        decommission_device,
        pin_device,
        unpin_device,
        create_rollout,
        list_rollouts,
        rollout_status,
        pause_rollout,
        resume_rollout,
        abort_rollout,
        yank,
        list_yanks,
        who_installed,
        file_rollback,
        list_rollbacks,
        list_attacks
    ),
    components(schemas(
        TokenIssue,
        TokensIssued,
        Deployed,
        DeviceSummary,
        DeviceDetail,
        Reason,
        PinRequest,
        GateSpec,
        StageSpec,
        SelectorSpec,
        RolloutRequest,
        StageStatus,
        RolloutStatus,
        WindowSpec,
        YankRequest,
        YankResponse,
        YankSummary,
        RollbackFiled,
        InstallRow,
        ReportRow,
        AttackRow
    ))
)]
pub struct FleetDoc;

/// Policy snapshot for tests: rollout id → (stage, state).
pub fn rollout_states(d: &Director) -> BTreeMap<String, (usize, RolloutState)> {
    d.policy()
        .fleet
        .rollouts
        .iter()
        .map(|r| (r.id.clone(), (r.stage, r.state.clone())))
        .collect()
}
