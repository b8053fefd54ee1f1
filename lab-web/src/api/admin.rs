//! Jobs (list, live stream, cancel, retry), users, API tokens and the audit log.

use std::convert::Infallible;

use axum::extract::{Json, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;

use super::access::require_session;
use super::responses::{AuditLog, Created, JobQueued, Jobs, NewTokenCreated, Tokens, Users};
use crate::auth::{self, Auth, Right};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use crate::types::{Job, JobKind, ROLES};

#[derive(Deserialize, Default)]
pub struct JobsQuery {
    #[serde(default)]
    active: Option<String>,
}

pub async fn jobs(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Jobs>> {
    auth.require(Right::Findings)?;
    let active = q.active.as_deref().is_some_and(|a| a == "1" || a == "true");
    let jobs = store::jobs::list(&state.db.pool, active).await?;
    Ok(Json(Jobs { jobs }))
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
) -> ApiResult<Json<Option<Job>>> {
    let job = crate::jobs::get(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    if job.kind == JobKind::Clip {
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
            return Ok(Json(j));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(Json(crate::jobs::get(&state, id).await?))
}

pub async fn retry_job(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<JobQueued>> {
    let r = store::jobs::request(&state.db.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    let kind = r.kind;
    let right = if kind == JobKind::Clip {
        Right::Review
    } else {
        Right::Operate
    };
    auth.require(right)?;
    let status = r.status;
    if status == "queued" || status == "running" {
        return Err(ApiError::Conflict(
            "задание ещё выполняется / the job is still active".into(),
        ));
    }
    let session = r.session_id;
    if let Some(s) = &session {
        // A job of a withdrawn session is never run again.
        require_session(&state, &auth, s, right).await?;
    }
    let new = crate::jobs::enqueue(
        &state,
        kind,
        session.as_deref(),
        r.tag_id,
        r.args,
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
    Ok(Json(JobQueued {
        job_id: new,
        already: None,
    }))
}

pub async fn users(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Users>> {
    auth.require(Right::Admin)?;
    let users = store::users::list(&state.db.pool).await?;
    Ok(Json(Users { users }))
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
) -> ApiResult<(StatusCode, Json<Created>)> {
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
    Ok((StatusCode::CREATED, Json(Created { id })))
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
    if !store::users::exists(&state.db.pool, id).await? {
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
        store::users::set_role(&state.db.pool, id, role).await?;
    }
    if let Some(pw) = &p.password {
        auth::password_ok(pw)?;
        let pw = pw.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|e| ApiError::Internal(e.into()))??;
        store::users::set_password(&state.db.pool, id, &hash).await?;
    }
    if let Some(d) = p.disabled {
        if id == auth.user.id && d {
            return Err(ApiError::bad(
                "нельзя отключить себя / you cannot disable yourself",
            ));
        }
        store::users::set_disabled(&state.db.pool, id, d).await?;
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

#[derive(serde::Serialize)]
pub struct Workers {
    workers: Vec<store::leases::WorkerRow>,
}

/// `GET /workers`: the workers seen, newest call first (admin page).
pub async fn workers(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Workers>> {
    auth.require(Right::Admin)?;
    let workers = store::leases::workers(&state.db).await?;
    Ok(Json(Workers { workers }))
}

pub async fn tokens(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Tokens>> {
    auth.require(Right::Admin)?;
    let tokens = store::tokens::list(&state.db.pool).await?;
    Ok(Json(Tokens { tokens }))
}

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
    /// `overlay` (default: the findings overlay's feed only), `viewer`
    /// (viewer rights: findings, exports of findings, clips) or `station`
    /// (uploads its bundles, nothing else; the name is the station's).
    #[serde(default)]
    scope: Option<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    Json(t): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<NewTokenCreated>)> {
    auth.require(Right::Admin)?;
    let name: String = t.name.trim().chars().take(80).collect();
    if name.is_empty() {
        return Err(ApiError::bad("укажите название / a name is required"));
    }
    let scope = t.scope.as_deref().unwrap_or("overlay");
    if !["overlay", "viewer", "station", "worker"].contains(&scope) {
        return Err(ApiError::bad(format!(
            "scope must be \"overlay\", \"viewer\", \"station\" or \"worker\", not {scope:?}"
        )));
    }
    let (id, token) = if scope == "station" {
        auth::create_station(&state, &name, auth.user.id).await?
    } else if scope == "worker" {
        auth::create_worker(&state, &name, auth.user.id).await?
    } else {
        let token = auth::new_token();
        let id = store::tokens::insert(
            &state.db.pool,
            &name,
            &auth::token_hash(&token),
            auth.user.id,
            now_ms(),
            scope,
        )
        .await?;
        (id, token)
    };
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
        Json(NewTokenCreated {
            id,
            name,
            scope: scope.to_string(),
            token,
        }),
    ))
}

pub async fn delete_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    auth.require(Right::Admin)?;
    store::tokens::delete(&state.db.pool, id).await?;
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
) -> ApiResult<Json<AuditLog>> {
    auth.require(Right::Admin)?;
    let entries = store::audit::list(
        &state.db.pool,
        q.before.unwrap_or(0),
        q.limit.unwrap_or(100).clamp(1, 1000),
    )
    .await?;
    Ok(Json(AuditLog { entries }))
}
