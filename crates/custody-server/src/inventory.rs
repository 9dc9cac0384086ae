//! `GET /api/v1/inventory` (scope `inventory:read`): the trust-stack
//! inventory of this server at a reference time. Every hosted repository's
//! roles (the hash bins as one group) and keys, and the admin credentials
//! with their age; statuses, windows and order are custody-inventory's.
//! `custody inventory --server` reads it.
//!
//! Above the slices: it reads the repositories (under the authoring lock,
//! so it never sees half a publish) and the credentials.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, TimeZone, Utc};
use custody_inventory::{assess, counts, Assessed, Item, Kind, Windows};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::scope::{Scope, ScopeKind};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::repos::{authoring, Repos};

type ApiResult<T> = Result<T, ApiError>;
type St = State<Arc<Repos>>;

/// The inventory route over the repositories slice, for any router state.
pub(crate) fn router<S>(repos: Arc<Repos>) -> Router<S> {
    Router::new()
        .route("/api/v1/inventory", get(inventory))
        .with_state(repos)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    /// reference time, RFC 3339 (default: now)
    #[param(value_type = Option<String>)]
    pub at: Option<DateTime<Utc>>,
    /// renewal windows, comma-separated `[SCOPE:]KIND=DURATION` (`root=90d,app:timestamp=6h`)
    pub window: Option<String>,
}

/// The inventory: every item with its status at `at`, most urgent first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inventory {
    /// the reference time (RFC 3339)
    #[schema(value_type = String)]
    pub at: DateTime<Utc>,
    /// items (custody-inventory `Assessed`: the item's fields, `status`,
    /// `why`, `expires_in_seconds`, `age_seconds`)
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Assessed>,
    /// how many items have each status
    #[schema(value_type = Object)]
    pub counts: std::collections::BTreeMap<String, usize>,
}

#[utoipa::path(get, path = "/api/v1/inventory", tag = "inventory",
    security(("bearer" = [])), params(InventoryQuery),
    responses((status = 200, body = Inventory),
              (status = 400, body = ErrorBody, description = "a bad `at` or `window`"),
              (status = 403, body = ErrorBody, description = "needs inventory:read")))]
async fn inventory(
    State(st): St,
    caller: Caller,
    q: Result<Query<InventoryQuery>, QueryRejection>,
) -> ApiResult<Json<Inventory>> {
    st.auth
        .authorize(
            &caller,
            Scope::new(ScopeKind::InventoryRead, None),
            "inventory.read",
            None,
        )
        .await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("inventory: {}", e.body_text())))?;
    let at = q.at.unwrap_or_else(Utc::now);
    let mut windows = Windows::default();
    for spec in q.window.iter().flat_map(|w| w.split(',')) {
        windows
            .apply(spec.trim())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let mut items = authoring(&st, move |s| {
        let mut items = Vec::new();
        for repo in s.authoring.repos() {
            items.extend(s.authoring.inventory_items(&repo, at)?);
        }
        Ok(items)
    })
    .await?;
    items.extend(credentials(&st).await?);
    let assessed = assess(&items, &windows, at);
    let counts = (counts(&assessed).into_iter())
        .map(|(s, n)| (s.name().to_owned(), n))
        .collect();
    Ok(Json(Inventory {
        at,
        items: assessed,
        counts,
    }))
}

/// The admin credentials in force, with their age (a long-lived secret
/// older than its kind's maximum age should be rotated).
async fn credentials(st: &Repos) -> ApiResult<Vec<Item>> {
    let creds = st.storage.list_credentials().await?;
    Ok(creds
        .into_iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| Item {
            first_seen: Utc.timestamp_opt(c.created_at, 0).single(),
            detail: format!(
                "credential {} (generation {}); scopes {}",
                c.id,
                c.generation,
                c.scopes.join(" ")
            ),
            ..Item::new(Kind::Credential, "server", &c.name)
        })
        .collect())
}

/// The inventory route's OpenAPI path and schema.
#[derive(OpenApi)]
#[openapi(paths(inventory), components(schemas(Inventory)))]
pub(crate) struct InventoryDoc;
