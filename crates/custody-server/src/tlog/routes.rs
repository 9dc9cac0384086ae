//! The log's HTTP surface: checkpoints, tiles, proofs, evidence, cosign.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use custody_log::tile::{parse_tile_path, TilePath, TILE_WIDTH};
use custody_log::{consistency_proof, inclusion_proof};
use serde::Deserialize;

use super::{
    ConsistencyProofAnswer, CosignRequest, CosignResponse, EvidenceQuery, InclusionProofAnswer,
    ServerLog,
};
use crate::error::ApiError;

type St = State<Arc<ServerLog>>;

#[derive(Debug, Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct EntryQuery {
    index: u64,
    old: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

/// The log's HTTP surface over `log`, for any router state (merged into
/// the server router).
pub(crate) fn router<S>(log: Arc<ServerLog>) -> Router<S> {
    Router::new()
        .route("/log/v1/checkpoint", get(get_checkpoint))
        .route("/log/v1/checkpoint/cosigned", get(get_cosigned))
        .route("/log/v1/key", get(get_key))
        .route("/log/v1/tile/{*path}", get(get_tile))
        .route("/log/v1/proof/inclusion", get(get_inclusion))
        .route("/log/v1/proof/consistency", get(get_consistency))
        .route("/log/v1/cosign", post(post_cosign))
        .route("/log/v1/evidence", get(get_evidence))
        .route("/log/v1/entry", get(get_entry))
        .with_state(log)
}

fn text(body: Vec<u8>, cache: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    (StatusCode::OK, h, body).into_response()
}

async fn get_checkpoint(State(st): St) -> Response {
    text(st.checkpoint(), "no-cache")
}

async fn get_cosigned(State(st): St) -> Result<Response, ApiError> {
    st.cosigned_checkpoint()
        .map(|b| text(b, "no-cache"))
        .ok_or_else(|| ApiError::not_found("no checkpoint of this log has been cosigned yet"))
}

async fn get_key(State(st): St) -> Response {
    text(
        format!("{}\n", st.verifier_key().to_vkey()).into_bytes(),
        "public, max-age=3600",
    )
}

async fn get_tile(State(st): St, UrlPath(path): UrlPath<String>) -> Result<Response, ApiError> {
    let full_path = format!("tile/{path}");
    let parsed = parse_tile_path(&full_path).map_err(|e| ApiError::not_found(e.to_string()))?;
    let size = st.size();
    let tiles = st.writer().tiles().clone();
    let not_found = || ApiError::not_found(format!("{full_path}: not in the tree of size {size}"));
    // What exists at this size: full tiles below count>>8, and the partial
    // of width count&255 (and every narrower one, same bytes).
    let (count, width, index) = match parsed {
        TilePath::Tile(t) => (
            size.checked_shr(u32::from(t.level) * 8).unwrap_or(0),
            t.width,
            t.index,
        ),
        TilePath::Entries(b) => (size, b.width, b.index),
    };
    let ok = if width == TILE_WIDTH {
        index < count >> 8
    } else {
        index < count >> 8 || (index == count >> 8 && u64::from(width) <= count & 0xff)
    };
    if !ok {
        return Err(not_found());
    }
    let bytes = tokio::task::spawn_blocking(move || match parsed {
        TilePath::Tile(t) => tiles.tile_bytes(t),
        TilePath::Entries(b) => tiles.bundle_bytes(b),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?
    .ok_or_else(not_found)?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Every tile path names fixed bytes (a partial of width W is the same
    // forever too), but partials are short-lived: let caches drop them.
    let cache = if width == TILE_WIDTH {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok((StatusCode::OK, h, bytes).into_response())
}

async fn get_inclusion(
    State(st): St,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionProofAnswer>, ApiError> {
    let cur = st.size();
    let size = q.size.unwrap_or(cur);
    if size > cur || q.index >= size {
        return Err(ApiError::bad_request(format!(
            "inclusion proof: need index < size <= {cur} (current size), got index {} size {size}",
            q.index
        )));
    }
    let tiles = st.writer().tiles().clone();
    let index = q.index;
    let proof = tokio::task::spawn_blocking(move || inclusion_proof(&tiles.at(cur), index, size))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(InclusionProofAnswer::new(index, size, &proof)))
}

async fn get_consistency(
    State(st): St,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofAnswer>, ApiError> {
    let cur = st.size();
    let new = q.new.unwrap_or(cur);
    if new > cur || q.old > new {
        return Err(ApiError::bad_request(format!(
            "consistency proof: need old <= new <= {cur} (current size), got old {} new {new}",
            q.old
        )));
    }
    let tiles = st.writer().tiles().clone();
    let old = q.old;
    let proof = tokio::task::spawn_blocking(move || consistency_proof(&tiles.at(cur), old, new))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(ConsistencyProofAnswer::new(old, new, &proof)))
}

async fn get_evidence(
    State(st): St,
    q: Result<Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("evidence: {}", e.body_text())))?;
    q.validate()?;
    let st2 = st.clone();
    let q2 = q.clone();
    let found = tokio::task::spawn_blocking(move || st2.evidence(&q2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let Some(ev) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_logged",
            format!(
                "no target_publish entry in this log for repo {:?} target {:?} sha256 {}: the target was not published through the log",
                q.repo, q.target, q.sha256
            ),
        ));
    };
    let mut resp = Json(ev).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// `GET /log/v1/entry?index=N[&old=M]`: entry N with its proofs, for
/// operators' tools checking a device event.
async fn get_entry(
    State(st): St,
    q: Result<Query<EntryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("entry: {}", e.body_text())))?;
    let st2 = st.clone();
    let found =
        tokio::task::spawn_blocking(move || st2.entry_evidence(q.index, q.old.unwrap_or(0)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    let Some(ev) = found else {
        return Err(ApiError::not_found(format!(
            "the log has no entry {} (its size is {})",
            q.index,
            st.size()
        )));
    };
    let mut resp = Json(ev).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

async fn post_cosign(
    State(st): St,
    body: Result<Json<CosignRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CosignResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    req.check_bounds()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || st2.add_cosignature(&req))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map(Json)
}
