//! Yanks with remediation, and who installed what.

use super::*;

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
pub(super) async fn yank(
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
    st.auth
        .audit(
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
pub(super) async fn list_yanks(State(st): St, caller: Caller) -> ApiResult<Json<Vec<YankSummary>>> {
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
pub(super) async fn who_installed(
    State(st): St,
    caller: Caller,
    Query(q): Query<InstallQuery>,
) -> ApiResult<Json<Vec<InstallRow>>> {
    fleet_admin(&st, &caller, "fleet.installs", Some(&q.target)).await?;
    let d = director(&st)?;
    check_name("target", &q.target)?;
    Ok(Json(d.db.who_installed(&q.target).await?))
}
