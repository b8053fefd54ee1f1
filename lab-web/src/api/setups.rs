//! `/api/v1/setups`: study set-ups (`docs/study-format.md`). Stations (their
//! token), operators, researchers and admins read them; researchers and
//! admins edit them (cookie, so CSRF applies); every change is audited.

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use lab_model::study::Study;

use super::responses::Setups;
use super::serve::download;
use crate::auth::{self, Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "настройки исследования {id:?} нет / no study set-up {id:?}"
    ))
}

/// `GET /setups` → `{setups: [Study]}`, by id.
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Setups>> {
    auth.require(Right::Setups)?;
    let setups = store::setups::list(&state.db.pool).await?;
    Ok(Json(Setups { setups }))
}

/// `GET /setups/{id}` → Study.
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Study>> {
    auth.require(Right::Setups)?;
    store::setups::get(&state.db.pool, &id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

/// `GET /setups/{id}/study.toml`: the set-up as the study file a station
/// reads when offline, as an attachment `<id>.toml`.
pub async fn toml(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(Right::Setups)?;
    let study = store::setups::get(&state.db.pool, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(download(
        "application/toml; charset=utf-8",
        &format!("{}.toml", study.id),
        study.to_toml(),
    ))
}

/// `PUT /setups/{id}` Study → Study: creates or replaces it.
pub async fn put(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<Study>> {
    auth.require(Right::EditSetups)?;
    let study = crate::setups::save(&state, &id, body, &auth.user).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "save_setup",
        &format!("setup:{id}"),
        &study.title,
    )
    .await;
    Ok(Json(study))
}

/// `DELETE /setups/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Right::EditSetups)?;
    if !store::setups::delete(&state.db.pool, &id).await? {
        return Err(not_found(&id));
    }
    auth::audit(
        &state,
        Some(&auth.user),
        "delete_setup",
        &format!("setup:{id}"),
        "",
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
