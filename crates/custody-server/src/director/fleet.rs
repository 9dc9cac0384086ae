//! Fleet API under `/api/v1/fleet/…` (scope `fleet:admin`; rollback
//! authorisations need `role:sign:rollback`).

use std::sync::Arc;

use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
}
