//! What a yank does to the fleet, and who installed what. The yank itself
//! (one request, one table, for every repository) is `crate::yanks`; when
//! it names a replacement in the director's image repository, these
//! resolve the replacement release and list the devices it reaches.

use super::*;

/// The director's image repository (where a yank may name a replacement),
/// or 503 when the director is not running.
pub(crate) fn image_repository(st: &DirectorState) -> ApiResult<String> {
    Ok(director(st)?.settings.image_repository.clone())
}

/// The release a yank of `target` in `repo` sends to the devices running
/// it: `replacement` as the image repository's signed metadata describes it
/// (its counter from `custom` unless `counter` is given). Needs
/// `fleet:admin`: it changes what devices are assigned.
pub(crate) async fn replacement_release(
    st: &DirectorState,
    caller: &Caller,
    repo: &str,
    target: &str,
    replacement: &str,
    counter: Option<u64>,
) -> ApiResult<Release> {
    fleet_admin(st, caller, "fleet.yank", Some(target)).await?;
    let d = director(st)?;
    if repo != d.settings.image_repository {
        return Err(ApiError::bad_request(format!(
            "replacement: only a yank in the director's image repository {:?} can send devices a replacement; {repo:?} is not it (yank without one, or yank in {:?})",
            d.settings.image_repository, d.settings.image_repository
        )));
    }
    check_name("replacement", replacement)?;
    if target == replacement {
        return Err(ApiError::bad_request(
            "the replacement must differ from the yanked target",
        ));
    }
    image_release(&d, replacement, counter, None)
}

/// Which devices a recorded yank with a replacement reaches.
pub(crate) struct Remediation {
    /// devices running the yanked target now: each gets the replacement at
    /// its next check-in
    pub remediation: Vec<String>,
    /// every device that ever ran it, and when it was first seen
    pub installed: Vec<InstallRow>,
}

/// After a yank with a replacement is recorded: the fleet policy reads it
/// again, and the devices it reaches are listed.
pub(crate) async fn remediate(st: &DirectorState, target: &str) -> ApiResult<Remediation> {
    let d = director(st)?;
    d.reload_policy().await?;
    let remediation = all_devices(&d)
        .await?
        .into_iter()
        .filter(|r| r.running.as_ref().is_some_and(|i| i.name == target))
        .map(|r| r.record.id)
        .collect();
    let installed = d.db.who_installed(target).await?;
    Ok(Remediation {
        remediation,
        installed,
    })
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
