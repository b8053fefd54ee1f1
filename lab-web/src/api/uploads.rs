//! `/api/v1/uploads`: bundles from stations (`docs/upload-protocol.md`).
//! Every route but the admin's list needs a station token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use lab_model::upload::{ChunkAck, Completed, UploadRequest, UploadStatus};
use serde::{Deserialize, Serialize};

use crate::auth::{Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use crate::upload::{self, Station};

fn station(auth: &Auth) -> ApiResult<Station<'_>> {
    auth.require(Right::Upload)?;
    let (token_id, name) = auth.station()?;
    Ok(Station { token_id, name })
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<UploadRequest>,
) -> ApiResult<(StatusCode, Json<UploadStatus>)> {
    let st = station(&auth)?;
    let (new, status) = upload::create(&state, st, req).await?;
    let code = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(status)))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<UploadStatus>> {
    let st = station(&auth)?;
    let row = upload::find(&state, st, id).await?;
    Ok(Json(upload::status(&state, &row).await?))
}

#[derive(Deserialize)]
pub struct Offset {
    offset: u64,
}

pub async fn put_chunk(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, path)): Path<(i64, String)>,
    Query(q): Query<Offset>,
    body: Bytes,
) -> ApiResult<Json<ChunkAck>> {
    let st = station(&auth)?;
    Ok(Json(
        upload::put_chunk(&state, st, id, &path, q.offset, body).await?,
    ))
}

pub async fn complete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<Completed>> {
    let st = station(&auth)?;
    Ok(Json(upload::complete(&state, st, id).await?))
}

/// One row of the admin's view of uploads.
#[derive(Serialize)]
pub struct UploadRow {
    id: i64,
    station: String,
    session_id: String,
    assigned_id: Option<String>,
    status: String,
    total_bytes: i64,
    bytes_written: i64,
    withdrawn: bool,
    created_at: i64,
    updated_at: i64,
    imported_at: Option<i64>,
}

/// `GET /uploads`: the newest 200 uploads (admin).
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Right::Admin)?;
    if auth.station().is_ok() {
        return Err(ApiError::Forbidden);
    }
    let rows: Vec<UploadRow> = store::uploads::recent(&state.db.pool, 200)
        .await?
        .into_iter()
        .map(|r| UploadRow {
            id: r.id,
            station: r.station,
            session_id: r.session_id,
            assigned_id: r.assigned_id,
            status: r.status,
            total_bytes: r.total_bytes,
            bytes_written: r.bytes_written,
            withdrawn: r.withdrawn,
            created_at: r.created_at,
            updated_at: r.updated_at,
            imported_at: r.imported_at,
        })
        .collect();
    Ok(Json(serde_json::json!({ "uploads": rows })))
}
