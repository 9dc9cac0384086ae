//! Rollouts: create (stages, canary gates, maintenance windows), status
//! per stage, pause, resume, abort.

use super::*;

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

pub(super) fn valid_id(id: &str) -> ApiResult<()> {
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

pub(super) fn bp(field: &str, percent: f64) -> ApiResult<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(ApiError::bad_request(format!(
            "{field} must be a percentage in 0..=100, got {percent}"
        )));
    }
    Ok((percent * 100.0).round() as u32)
}

/// Every device row (paged) — for rollout status and remediation sets.
pub(super) async fn all_devices(d: &Director) -> ApiResult<Vec<DeviceRow>> {
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

pub(super) fn state_text(s: &RolloutState) -> (String, Option<String>) {
    match s {
        RolloutState::Active => ("active".into(), None),
        RolloutState::Paused { reason } => ("paused".into(), Some(reason.clone())),
        RolloutState::Aborted { reason } => ("aborted".into(), Some(reason.clone())),
        RolloutState::Completed => ("completed".into(), None),
    }
}

pub(super) async fn status_of(d: &Director, r: &Rollout) -> ApiResult<RolloutStatus> {
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
    let counts = crate::director::store::stage_counts(&d.db.report_counts(&r.id).await?);
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
pub(super) async fn create_rollout(
    State(st): St,
    caller: Caller,
    body: Result<Json<RolloutRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RolloutStatus>)> {
    fleet_admin(&st, &caller, "fleet.rollout.create", None).await?;
    let d = director(&st)?;
    let req = json_body(body)?;
    let id = match &req.id {
        Some(id) => id.clone(),
        None => format!("r-{}", crate::ids::random_hex(8)),
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
    st.auth
        .audit(
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

pub(super) fn find_rollout(d: &Director, id: &str) -> ApiResult<Rollout> {
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
pub(super) async fn list_rollouts(
    State(st): St,
    caller: Caller,
) -> ApiResult<Json<Vec<RolloutStatus>>> {
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
pub(super) async fn rollout_status(
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

pub(super) async fn change_rollout(
    st: &DirectorState,
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
    st.auth
        .audit(caller, action, None, Some(id), "ok", &new_state)
        .await?;
    Ok(Json(status_of(&d, &next).await?))
}

#[utoipa::path(post, path = "/api/v1/fleet/rollouts/{id}/pause", tag = "fleet", security(("bearer" = [])),
    params(("id" = String, Path, description = "rollout id")), request_body = Reason,
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn pause_rollout(
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
pub(super) async fn resume_rollout(
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
pub(super) async fn abort_rollout(
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
