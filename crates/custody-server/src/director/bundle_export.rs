//! Director metadata for offline bundles (issue #6): `custody bundle
//! create --server …` asks here for the signed per-device director
//! metadata it packs next to the image metadata and payloads.
//!
//! - `POST /api/v1/fleet/devices/{id}/bundle-metadata`: one device.
//! - `POST /api/v1/fleet/bundle-metadata?hardware_id=H`: every enrolled,
//!   active device of a hardware id (one director metadata set each; the
//!   bundle format holds one set per device id).
//!
//! Scope `fleet:admin`. The assignment is computed like a check-in's
//! (custody-director `policy::assign` on the device's last reported
//! running target, `fleet::view`), the metadata is signed with
//! `build_director_metadata` and the device's director versions are bumped
//! in the database (compare-and-set, only while active), so the next online
//! check-in issues higher versions than the bundle and the device's
//! rollback protection stays consistent. Every export is audited
//! (`fleet.device.bundle_export`: who, which device, which assignment).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use custody_director::director::DirectorTarget;
use custody_director::policy::{assign, Assignment};
use custody_director::registry::{EffectiveStatus, Purpose};
use custody_director::wire::DirectorMetadataSet;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::store::{DeviceFilter, DeviceRow};
use super::Director;
use super::DirectorState;
use crate::auth::scope::{Scope, ScopeKind};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

type St = State<Arc<DirectorState>>;
type ApiResult<T> = Result<T, ApiError>;

/// Most devices one hardware-id export signs for.
pub const MAX_EXPORT_DEVICES: usize = 10_000;

pub(super) fn router() -> Router<Arc<DirectorState>> {
    Router::new()
        .route(
            "/api/v1/fleet/devices/{id}/bundle-metadata",
            post(export_device),
        )
        .route("/api/v1/fleet/bundle-metadata", post(export_hardware))
}

/// Signed director metadata of one device, for an offline bundle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleMetadata {
    pub device_id: String,
    pub hardware_id: String,
    /// what the assignment decided (as a check-in would have)
    pub assignment: String,
    /// the device's director root chain (every version, ascending) and its
    /// freshly signed timestamp / snapshot / targets, base64 (the wire
    /// format of a check-in response's `director`)
    #[schema(value_type = Object)]
    pub director: DirectorMetadataSet,
}

/// Exports for a hardware id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleMetadataList {
    pub hardware_id: String,
    pub devices: Vec<BundleMetadata>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HardwareQuery {
    /// hardware id whose enrolled, active devices to export for
    pub hardware_id: String,
}

use super::fleet::director;

/// Assign, sign, record the new versions; the caller audits and logs the
/// returned targets (what the signed director targets role assigns).
async fn export_one(
    d: &Director,
    row: &DeviceRow,
) -> ApiResult<(BundleMetadata, Vec<DirectorTarget>)> {
    let id = &row.record.id;
    let now = Utc::now();
    if let Err(e) = row
        .record
        .check_usable(now, &d.reattestation, Purpose::Normal)
    {
        return Err(ApiError::conflict(format!(
            "device {id}: no bundle metadata for a device that is not active: {e}"
        )));
    }
    let policy = d.policy();
    let view = super::fleet::view(d, row);
    let assignment = assign(&view, &policy.fleet, now);
    let (targets, note) = match &assignment {
        Assignment::Install { release, via, .. } => (
            assignment.director_target().into_iter().collect::<Vec<_>>(),
            format!(
                "install {} (release {}) via {via:?}",
                release.name, release.release_counter
            ),
        ),
        Assignment::Nothing { reason } => (vec![], format!("nothing: {reason}")),
        Assignment::Refused(e) => {
            return Err(ApiError::conflict(format!(
                "device {id}: the assignment refuses to export: {e}"
            )))
        }
    };
    let md = custody_director::director::build_director_metadata(
        d.keys.signers(),
        id,
        &row.record.hardware_id,
        &targets,
        &row.director,
        now,
        &d.metadata,
    )
    .map_err(|e| ApiError::internal(format!("device {id}: signing director metadata: {e}")))?;
    if !d
        .db
        .set_director_state(id, &row.director, &md.state)
        .await?
    {
        return Err(ApiError::conflict(format!(
            "device {id}: its director metadata versions moved (a check-in raced the export) \
             or it stopped being active; retry"
        )));
    }
    let out = BundleMetadata {
        device_id: id.clone(),
        hardware_id: row.record.hardware_id.clone(),
        assignment: note,
        director: DirectorMetadataSet {
            roots: d.roots().to_vec(),
            timestamp: md.timestamp,
            snapshot: md.snapshot,
            targets: md.targets,
        },
    };
    Ok((out, targets))
}

#[utoipa::path(post, path = "/api/v1/fleet/devices/{id}/bundle-metadata", tag = "fleet",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = BundleMetadata), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn export_device(
    State(st): St,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BundleMetadata>> {
    st.auth
        .authorize(
            &caller,
            Scope::new(ScopeKind::FleetAdmin, None),
            "fleet.device.bundle_export",
            Some(&id),
        )
        .await?;
    let d = director(&st)?;
    if !custody_director::keys::is_device_id(&id) {
        return Err(ApiError::bad_request(format!(
            "device id must be 64 lowercase hex digits (the key id of the device key), got {:?}",
            id.chars().take(80).collect::<String>()
        )));
    }
    let row =
        d.db.get_device(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("device {id} is not enrolled")))?;
    let audit = st
        .auth
        .audit_of(&caller, "fleet.device.bundle_export", None, Some(&id));
    let out = match export_one(&d, &row).await {
        Ok((m, targets)) => {
            // Transparency log (log_hooks.rs): the exported assignment.
            super::log_hooks::log_bundle_delivery(&st, &id, &targets).await?;
            m
        }
        Err(e) => return Err(audit.refused("refused", e).await),
    };
    audit
        .ok(&format!(
            "director metadata exported for an offline bundle: {}; director targets version {}",
            out.assignment,
            row.director.targets_version.saturating_add(1)
        ))
        .await?;
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/fleet/bundle-metadata", tag = "fleet",
    security(("bearer" = [])), params(HardwareQuery),
    responses((status = 200, body = BundleMetadataList), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn export_hardware(
    State(st): St,
    caller: Caller,
    Query(q): Query<HardwareQuery>,
) -> ApiResult<Json<BundleMetadataList>> {
    let hw = q.hardware_id;
    st.auth
        .authorize(
            &caller,
            Scope::new(ScopeKind::FleetAdmin, None),
            "fleet.device.bundle_export",
            Some(&hw),
        )
        .await?;
    let d = director(&st)?;
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page =
            d.db.list_devices(&DeviceFilter {
                hardware_id: Some(hw.clone()),
                status: Some("active".into()),
                after: after.clone(),
                limit: 1000,
                ..DeviceFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.record.id.clone());
        rows.extend(page.into_iter().filter(|r| {
            r.record.effective_status(now, &d.reattestation) == EffectiveStatus::Active
        }));
        if rows.len() > MAX_EXPORT_DEVICES {
            return Err(ApiError::bad_request(format!(
                "hardware id {hw:?}: more than {MAX_EXPORT_DEVICES} active devices; \
                 export per device instead"
            )));
        }
    }
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "hardware id {hw:?}: no enrolled, active device"
        )));
    }
    let mut devices = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = &row.record.id;
        let (outcome, detail) = match export_one(&d, row).await {
            Ok((m, targets)) => {
                // Transparency log (log_hooks.rs): the exported assignment.
                super::log_hooks::log_bundle_delivery(&st, id, &targets).await?;
                let detail = format!(
                    "director metadata exported for an offline bundle (hardware id {hw}): {}",
                    m.assignment
                );
                devices.push(m);
                ("ok", detail)
            }
            Err(e) => ("refused", e.to_string()),
        };
        st.auth
            .audit(
                &caller,
                "fleet.device.bundle_export",
                None,
                Some(id),
                outcome,
                &detail,
            )
            .await?;
    }
    if devices.is_empty() {
        return Err(ApiError::conflict(format!(
            "hardware id {hw:?}: no device could be exported (see the audit log)"
        )));
    }
    Ok(Json(BundleMetadataList {
        hardware_id: hw,
        devices,
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(export_device, export_hardware),
    components(schemas(BundleMetadata, BundleMetadataList))
)]
pub struct BundleExportDoc;
