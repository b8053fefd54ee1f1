//! Jobs (list, live stream, cancel, retry), users, API tokens and the audit log.

use std::convert::Infallible;

use axum::extract::{Json, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::auth::{self, Auth, Right};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{JOB_COLUMNS, job_from_row};
use crate::state::AppState;
use crate::types::ROLES;

#[derive(Deserialize, Default)]
pub struct JobsQuery {
    #[serde(default)]
    active: Option<String>,
}

pub async fn jobs(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Value>> {
    auth.require(Right::Findings)?;
    let active = q.active.as_deref().is_some_and(|a| a == "1" || a == "true");
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 = 0 OR status IN ('queued', 'running')) ORDER BY id DESC LIMIT 200"
    )))
    .bind(i64::from(active))
    .fetch_all(&state.db.pool)
    .await?;
    let jobs = rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "jobs": jobs })))
}

/// Server-sent events: one `job` event per job change.
pub async fn job_events(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    auth.require(Right::Findings)?;
    let rx = state.job_events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(text) => return Some((Ok(Event::default().event("job").data(text)), rx)),
                // A slow client missed some; the next change brings it up to date.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub async fn cancel_job(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let job = crate::jobs::get(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    if job.kind == "clip" {
        auth.require(Right::Review)?;
    } else {
        auth.require(Right::Operate)?;
    }
    if !crate::jobs::cancel(&state, id).await? {
        return Err(ApiError::Conflict(
            "задание уже завершено / the job has already ended".into(),
        ));
    }
    auth::audit(
        &state,
        Some(&auth.user),
        "cancel_job",
        &format!("job:{id}"),
        "",
    )
    .await;
    // A running job ends a moment later; give the worker a chance.
    for _ in 0..20 {
        let j = crate::jobs::get(&state, id).await?;
        if j.as_ref().is_some_and(|j| j.status != "running") {
            return Ok(Json(json!(j)));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(Json(json!(crate::jobs::get(&state, id).await?)))
}

pub async fn retry_job(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let r = sqlx::query("SELECT kind, session_id, tag_id, args, status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    let kind: String = r.try_get(0)?;
    let right = if kind == "clip" {
        Right::Review
    } else {
        Right::Operate
    };
    auth.require(right)?;
    let status: String = r.try_get(4)?;
    if status == "queued" || status == "running" {
        return Err(ApiError::Conflict(
            "задание ещё выполняется / the job is still active".into(),
        ));
    }
    let args: Value = serde_json::from_str(&r.try_get::<String, _>(3)?)?;
    let session: Option<String> = r.try_get(1)?;
    if let Some(s) = &session {
        // A job of a withdrawn session is never run again.
        super::require_session(&state, &auth, s, right).await?;
    }
    let new = crate::jobs::enqueue(
        &state,
        &kind,
        session.as_deref(),
        r.try_get(2)?,
        args,
        Some(auth.user.id),
    )
    .await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "retry_job",
        &format!("job:{id}"),
        &format!("job:{new}"),
    )
    .await;
    Ok(Json(json!({ "job_id": new })))
}

pub async fn users(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Right::Admin)?;
    let rows =
        sqlx::query("SELECT id, login, name, role, disabled, created_at FROM users ORDER BY login")
            .fetch_all(&state.db.pool)
            .await?;
    let users = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>(0)?, "login": r.try_get::<String, _>(1)?, "name": r.try_get::<String, _>(2)?,
                "role": r.try_get::<String, _>(3)?, "disabled": r.try_get::<i64, _>(4)? != 0, "created_at": r.try_get::<i64, _>(5)?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "users": users })))
}

#[derive(Deserialize)]
pub struct NewUser {
    login: String,
    #[serde(default)]
    name: String,
    password: String,
    role: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    Json(u): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require(Right::Admin)?;
    let id = auth::create_user(&state, &u.login, &u.name, &u.password, &u.role).await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "create_user",
        &format!("user:{id}"),
        &format!("{} {}", u.login, u.role),
    )
    .await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

#[derive(Deserialize)]
pub struct PatchUser {
    role: Option<String>,
    password: Option<String>,
    disabled: Option<bool>,
}

pub async fn patch_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    Json(p): Json<PatchUser>,
) -> ApiResult<StatusCode> {
    auth.require(Right::Admin)?;
    if sqlx::query("SELECT 1 FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("user {id}")));
    }
    if let Some(role) = &p.role {
        if !ROLES.contains(&role.as_str()) {
            return Err(ApiError::bad(format!("unknown role {role:?}")));
        }
        if id == auth.user.id && role != "admin" {
            return Err(ApiError::bad(
                "нельзя снять роль администратора с себя / you cannot demote yourself",
            ));
        }
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(id)
            .bind(role)
            .execute(&state.db.pool)
            .await?;
    }
    if let Some(pw) = &p.password {
        auth::password_ok(pw)?;
        let pw = pw.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|e| ApiError::Internal(e.into()))??;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(&state.db.pool)
            .await?;
        sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
            .bind(id)
            .execute(&state.db.pool)
            .await?;
    }
    if let Some(d) = p.disabled {
        if id == auth.user.id && d {
            return Err(ApiError::bad(
                "нельзя отключить себя / you cannot disable yourself",
            ));
        }
        sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(d))
            .execute(&state.db.pool)
            .await?;
        if d {
            sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
                .bind(id)
                .execute(&state.db.pool)
                .await?;
        }
    }
    auth::audit(
        &state,
        Some(&auth.user),
        "update_user",
        &format!("user:{id}"),
        &format!(
            "role={:?} password={} disabled={:?}",
            p.role,
            p.password.is_some(),
            p.disabled
        ),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tokens(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Right::Admin)?;
    let rows = sqlx::query("SELECT id, name, created_at, scope FROM api_tokens ORDER BY id")
        .fetch_all(&state.db.pool)
        .await?;
    let tokens = rows
        .iter()
        .map(|r| Ok(json!({"id": r.try_get::<i64, _>(0)?, "name": r.try_get::<String, _>(1)?, "created_at": r.try_get::<i64, _>(2)?, "scope": r.try_get::<String, _>(3)?})))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
    /// `overlay` (default: the findings overlay's feed only) or `viewer`
    /// (viewer rights: findings, exports of findings, clips).
    #[serde(default)]
    scope: Option<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    Json(t): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require(Right::Admin)?;
    let name: String = t.name.trim().chars().take(80).collect();
    if name.is_empty() {
        return Err(ApiError::bad("укажите название / a name is required"));
    }
    let scope = t.scope.as_deref().unwrap_or("overlay");
    if !["overlay", "viewer"].contains(&scope) {
        return Err(ApiError::bad(format!(
            "scope must be \"overlay\" or \"viewer\", not {scope:?}"
        )));
    }
    let token = auth::new_token();
    let r = sqlx::query("INSERT INTO api_tokens (name, token_hash, created_by, created_at, scope) VALUES ($1, $2, $3, $4, $5) RETURNING id")
        .bind(&name)
        .bind(auth::token_hash(&token))
        .bind(auth.user.id)
        .bind(now_ms())
        .bind(scope)
        .fetch_one(&state.db.pool)
        .await?;
    let id: i64 = r.try_get(0)?;
    auth::audit(
        &state,
        Some(&auth.user),
        "create_token",
        &format!("token:{id}"),
        &name,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": name, "scope": scope, "token": token })),
    ))
}

pub async fn delete_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    auth.require(Right::Admin)?;
    sqlx::query("DELETE FROM api_tokens WHERE id = $1")
        .bind(id)
        .execute(&state.db.pool)
        .await?;
    auth::audit(
        &state,
        Some(&auth.user),
        "delete_token",
        &format!("token:{id}"),
        "",
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    auth.require(Right::Admin)?;
    let rows = sqlx::query(
        "SELECT id, at, login, action, object, detail FROM audit WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(q.before.unwrap_or(0))
    .bind(q.limit.unwrap_or(100).clamp(1, 1000))
    .fetch_all(&state.db.pool)
    .await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>(0)?, "at": r.try_get::<i64, _>(1)?, "user": r.try_get::<String, _>(2)?,
                "action": r.try_get::<String, _>(3)?, "object": r.try_get::<String, _>(4)?, "detail": r.try_get::<String, _>(5)?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "entries": entries })))
}
