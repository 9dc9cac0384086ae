//! Devices: list and filter, detail with drift and history, suspend,
//! resume, decommission, pins.

use super::*;

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

pub(super) fn summary(d: &Director, r: &DeviceRow) -> DeviceSummary {
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
pub(super) async fn list_devices(
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

pub(in crate::director) fn view(d: &Director, r: &DeviceRow) -> DeviceView {
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

pub(super) async fn load_device(d: &Director, id: &str) -> ApiResult<DeviceRow> {
    check_device_id(id)?;
    d.db.get_device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} is not enrolled")))
}

#[utoipa::path(get, path = "/api/v1/fleet/devices/{id}", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn device_detail(
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
pub(super) fn reason_of(body: Bytes, default: &str) -> ApiResult<String> {
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

pub(super) async fn set_status(
    st: &DirectorState,
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
        st.log
            .append(crate::tlog::EntryBody::Decommission {
                device_id: id.to_owned(),
                reason: reason.to_owned(),
                by: caller.identity().to_owned(),
            })
            .await?;
    }
    if !d.db.set_device_status(id, &status, attested_at).await? {
        return Err(ApiError::conflict(format!(
            "device {id} changed meanwhile; retry"
        )));
    }
    st.auth
        .audit(caller, action, None, Some(id), "ok", reason)
        .await?;
    let row = load_device(&d, id).await?;
    Ok(Json(summary(&d, &row)))
}

#[utoipa::path(post, path = "/api/v1/fleet/devices/{id}/suspend", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")), request_body = Reason,
    responses((status = 200, body = DeviceSummary), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn suspend_device(
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
pub(super) async fn resume_device(
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
pub(super) async fn decommission_device(
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
pub(super) async fn pin_device(
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
    st.auth
        .audit(
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
pub(super) async fn unpin_device(
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
    st.auth
        .audit(&caller, "fleet.device.unpin", None, Some(&id), "ok", "")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
