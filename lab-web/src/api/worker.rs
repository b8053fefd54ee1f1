//! `/api/v1/worker`: the job queue for `lab-analyze worker`
//! (docs/worker-protocol.md). Every route needs a worker token.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lab_model::worker::{
    FailRequest, Heartbeat, HeartbeatAnswer, JobStateAnswer, LEASE_HEADER, LeaseRequest,
    SHA256_HEADER,
};

use crate::auth::{Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::remote;
use crate::state::AppState;

fn worker(auth: &Auth) -> ApiResult<&str> {
    auth.require(Right::Work)?;
    auth.worker()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad(format!("the {name} header is required")))
}

pub async fn lease(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<LeaseRequest>,
) -> ApiResult<Response> {
    let name = worker(&auth)?;
    Ok(match remote::lease(&state, name, req).await? {
        Some(l) => Json(l).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub async fn file(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, path)): Path<(i64, String)>,
    req: Request,
) -> ApiResult<Response> {
    worker(&auth)?;
    let lease = header(req.headers(), LEASE_HEADER)?.to_string();
    let (_, bundle) = remote::held_bundle(&state, id, &lease).await?;
    if !lab_model::upload::valid_upload_path(&path) {
        return Err(ApiError::not_found(format!(
            "{path:?} is not a bundle file"
        )));
    }
    super::serve::serve_file(&bundle, &path, "application/octet-stream", req).await
}

pub async fn forget(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<lab_model::worker::ForgetRequest>,
) -> ApiResult<Json<lab_model::worker::ForgetAnswer>> {
    worker(&auth)?;
    Ok(Json(remote::forget(&state, req).await?))
}

pub async fn heartbeat(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    Json(hb): Json<Heartbeat>,
) -> ApiResult<Json<HeartbeatAnswer>> {
    worker(&auth)?;
    Ok(Json(remote::heartbeat(&state, id, hb).await?))
}

pub async fn fail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    Json(req): Json<FailRequest>,
) -> ApiResult<Json<JobStateAnswer>> {
    worker(&auth)?;
    Ok(Json(remote::fail(&state, id, req).await?))
}

pub async fn result(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<JobStateAnswer>> {
    worker(&auth)?;
    let lease = header(&headers, LEASE_HEADER)?;
    let sha = header(&headers, SHA256_HEADER)?;
    Ok(Json(
        remote::accept_result(&state, id, lease, sha, body).await?,
    ))
}
