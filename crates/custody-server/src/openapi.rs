//! The admin API's OpenAPI document (`GET /openapi.json`): the composition
//! of every slice's paths and schemas (derived by `utoipa` next to the
//! handlers, so the document cannot drift from the code).

use axum::http::{header, HeaderMap};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ApiError, ErrorBody};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "custody admin API", version = "1",
         description = "Upload, stage and yank targets; manage credentials; read the audit log. Every call except POST /api/v1/token needs a bearer token."),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The whole admin API document: the repository routes, the auth slice's
/// (with the audit trail), the fleet API's, bundle export's and
/// provenance's.
fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::repos::routes::ReposDoc::openapi());
    doc.merge(crate::auth::AuthDoc::openapi());
    doc.merge(crate::director::fleet::FleetDoc::openapi());
    doc.merge(crate::yanks::YanksDoc::openapi());
    doc.merge(crate::inventory::InventoryDoc::openapi());
    doc.merge(crate::director::bundle_export::BundleExportDoc::openapi());
    doc.merge(crate::repos::provenance::ProvenanceDoc::openapi());
    doc
}

/// `GET /openapi.json`.
pub(crate) async fn openapi_json() -> Result<(HeaderMap, String), ApiError> {
    let text = openapi_document()
        .to_json()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok((h, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_lists_every_route() {
        let doc = openapi_document().to_json().unwrap();
        for p in [
            "/api/v1/token",
            "/api/v1/repos/{repo}/blobs/{sha256}",
            "/api/v1/repos/{repo}/publish",
            "/api/v1/audit",
        ] {
            assert!(doc.contains(p), "{p} missing");
        }
    }
}
