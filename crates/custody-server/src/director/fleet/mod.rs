//! Fleet API under `/api/v1/fleet/…`: enrolment tokens, devices (list,
//! filter, detail with drift, suspend / resume / decommission, pins),
//! rollouts (create, status per stage, pause / resume / abort), install
//! history, rollback authorisations, attack records; and what a yank with a
//! replacement does to the fleet (the yank itself is `crate::yanks`).
//!
//! Scope `fleet:admin` for everything but rollback authorisations, which
//! need `role:sign:rollback` (and verify against the separate rollback
//! keys: the scope lets a caller file an authorisation, only the rollback
//! keys' signatures make it usable). Every change is audited.

use std::collections::BTreeSet;
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
    TokenRow,
};
use super::{Director, RolloutSpec, WindowSpec};
use crate::auth::scope::{Scope, ScopeKind};
use crate::auth::Caller;
use crate::director::DirectorState;
use crate::error::{ApiError, ErrorBody};
use crate::storage::now;

type St = State<Arc<DirectorState>>;
type ApiResult<T> = Result<T, ApiError>;

mod devices;
mod rollouts;
mod yanks;

pub use devices::*;
pub use rollouts::*;
pub use yanks::*;

pub(super) fn router() -> Router<Arc<DirectorState>> {
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
        .route("/api/v1/fleet/installs", get(who_installed))
        .route(
            "/api/v1/fleet/rollback-authorizations",
            post(file_rollback).get(list_rollbacks),
        )
        .route("/api/v1/fleet/attacks", get(list_attacks))
}

use crate::error::json_body;

/// The running director, or 503 when this server runs without one.
pub(super) fn director(st: &DirectorState) -> ApiResult<Arc<Director>> {
    st.director.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the director is not running on this server (it needs the key passphrase)",
        )
    })
}

async fn fleet_admin(
    st: &DirectorState,
    caller: &Caller,
    action: &str,
    target: Option<&str>,
) -> ApiResult<()> {
    st.auth
        .authorize(
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
    st.auth
        .audit(
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
    st.auth
        .authorize(
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
        st.auth
            .audit(
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
    st.auth
        .audit(
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
        RollbackFiled,
        InstallRow,
        ReportRow,
        AttackRow
    ))
)]
pub struct FleetDoc;
