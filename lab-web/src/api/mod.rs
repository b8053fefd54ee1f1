//! The JSON API under `/api/v1` (`docs/lab-web-api.md`, `assets/openapi.json`).

mod admin;
mod exports;
mod review;
mod sessions;

use axum::Router;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::auth::{self, Auth, Right, SESSION_COOKIE, SESSION_DAYS};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::types::{TranscriptView, User};

pub use sessions::journey_info;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/openapi.json", get(openapi))
        .route("/categories", get(categories))
        .route("/studies", get(sessions::studies))
        .route("/sessions", get(sessions::list))
        .route(
            "/sessions/{id}",
            get(sessions::detail).patch(sessions::patch),
        )
        .route("/sessions/{id}/withdraw", post(sessions::withdraw))
        .route("/sessions/{id}/timeline", get(sessions::timeline))
        .route("/sessions/{id}/transcript", get(sessions::transcript))
        .route("/sessions/{id}/events", get(sessions::events))
        .route("/sessions/{id}/media/{*file}", get(sessions::media))
        .route("/sessions/{id}/analyze", post(sessions::analyze))
        .route(
            "/sessions/{id}/candidates/{cid}/accept",
            post(review::accept),
        )
        .route(
            "/sessions/{id}/candidates/{cid}/reject",
            post(review::reject),
        )
        .route(
            "/sessions/{id}/tags",
            get(review::list_tags).post(review::create_tag),
        )
        .route(
            "/tags/{tag}",
            put(review::update_tag).delete(review::delete_tag),
        )
        .route("/tags/{tag}/history", get(review::history))
        .route("/tags/{tag}/clip", post(review::make_clip))
        .route("/clips/{file}", get(review::clip))
        .route("/journeys", get(exports::journeys))
        .route("/journeys/{id}/map", get(exports::map))
        .route("/journeys/{id}/report.html", get(exports::report))
        .route("/findings", get(exports::findings))
        .route(
            "/overlay/findings",
            get(exports::overlay_findings).options(exports::overlay_preflight),
        )
        .route("/sessions/{id}/export.eaf", get(exports::eaf))
        .route("/sessions/{id}/export.vtt", get(exports::vtt))
        .route("/sessions/{id}/export.srt", get(exports::srt))
        .route("/search", get(sessions::search))
        .route("/imports", post(sessions::import))
        .route("/jobs", get(admin::jobs))
        .route("/jobs/events", get(admin::job_events))
        .route("/jobs/{id}/cancel", post(admin::cancel_job))
        .route("/jobs/{id}/retry", post(admin::retry_job))
        .route("/users", get(admin::users).post(admin::create_user))
        .route("/users/{id}", axum::routing::patch(admin::patch_user))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{id}", delete(admin::delete_token))
        .route("/audit", get(admin::audit_log))
        .fallback(|| async { ApiError::not_found("no such API route") })
}

/// The UI language from the `lab_lang` cookie (Russian unless `en`).
pub fn lang(headers: &HeaderMap) -> &'static str {
    if auth::cookie(headers, "lab_lang") == Some("en") {
        "en"
    } else {
        "ru"
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::pages::OPENAPI,
    )
        .into_response()
}

async fn categories() -> Json<Value> {
    Json(json!({
        "categories": crate::types::CATEGORIES.iter().map(|(id, ru, en)| json!({"id": id, "ru": ru, "en": en})).collect::<Vec<_>>()
    }))
}

/// A real hash to verify against for unknown logins (same cost as a hit).
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| auth::hash_password("no such user").unwrap_or_default());

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    auth::ClientAddr(addr): auth::ClientAddr,
    Json(body): Json<LoginBody>,
) -> ApiResult<Response> {
    let name: String = body.login.trim().to_lowercase().chars().take(128).collect();
    if !auth::reserve_login_attempt(&state, &name, &addr).await? {
        auth::audit(&state, None, "login_locked", &format!("user:{name}"), &addr).await;
        return Err(ApiError::TooMany(
            "Слишком много попыток входа, подождите 10 минут / too many log-in attempts, wait 10 minutes"
                .into(),
        ));
    }
    let row = sqlx::query(
        "SELECT id, login, name, role, password_hash FROM users WHERE login = $1 AND disabled = 0",
    )
    .bind(body.login.trim())
    .fetch_optional(&state.db.pool)
    .await?;
    let phc = row
        .as_ref()
        .map(|r| r.try_get::<String, _>(4))
        .transpose()?;
    // Verify even for unknown logins, so timing does not reveal which exist.
    let password: String = body.password.chars().take(1024).collect();
    let ok = auth::with_hash_permit(&state, move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_HASH.clone());
        auth::verify_password(&password, &phc) && known
    })
    .await?;
    let Some(row) = row.filter(|_| ok) else {
        auth::audit(&state, None, "login_failed", &format!("user:{name}"), &addr).await;
        return Ok((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad_credentials", "message": "Неверный логин или пароль / wrong login or password"})),
        )
            .into_response());
    };
    auth::clear_login_attempts(&state, &name, &addr).await?;
    let user = User {
        id: row.try_get(0)?,
        login: row.try_get(1)?,
        name: row.try_get(2)?,
        role: row.try_get(3)?,
    };
    let token = auth::new_token();
    let csrf = auth::new_token();
    let now = now_ms();
    sqlx::query("INSERT INTO auth_sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(auth::token_hash(&token))
        .bind(user.id)
        .bind(&csrf)
        .bind(now)
        .bind(now + SESSION_DAYS * 86_400_000)
        .execute(&state.db.pool)
        .await?;
    auth::audit(
        &state,
        Some(&user),
        "login",
        &format!("user:{}", user.id),
        "",
    )
    .await;
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_DAYS * 86_400
    );
    let mut resp = Json(json!({"user": user, "csrf": csrf})).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(resp)
}

async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = auth::cookie(&headers, SESSION_COOKIE);
    if let Some(t) = token {
        sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
            .bind(auth::token_hash(t))
            .execute(&state.db.pool)
            .await?;
    }
    auth::audit(
        &state,
        Some(&auth.user),
        "logout",
        &format!("user:{}", auth.user.id),
        "",
    )
    .await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("lab_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

async fn me(auth: Auth) -> Json<Value> {
    Json(json!({"user": auth.user, "csrf": auth.csrf}))
}

/// A session's transcript as the API serves it (JSON, pre-rendered at import).
pub async fn transcript_json(state: &AppState, session: &str) -> anyhow::Result<String> {
    let head = sqlx::query(
        "SELECT transcript_status, language, transcript_json FROM sessions WHERE id = $1",
    )
    .bind(session)
    .fetch_one(&state.db.pool)
    .await?;
    Ok(match head.try_get::<Option<String>, _>(2)? {
        Some(json) => json,
        None => serde_json::to_string(&TranscriptView {
            status: head.try_get(0)?,
            language: head.try_get(1)?,
            segments: vec![],
        })?,
    })
}

/// A session's transcript.
pub async fn load_transcript(state: &AppState, session: &str) -> anyhow::Result<TranscriptView> {
    Ok(serde_json::from_str(
        &transcript_json(state, session).await?,
    )?)
}

/// A 404 unless the session exists; a 403 for raw data unless the role may
/// see it; a 409 for any change (tags, decisions, analysis) to a session
/// whose participant withdrew.
pub async fn require_session(
    state: &AppState,
    auth: &Auth,
    id: &str,
    right: Right,
) -> ApiResult<()> {
    auth.require(right)?;
    let withdrawn: i64 = sqlx::query("SELECT withdrawn FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?
        .try_get(0)?;
    if withdrawn != 0 && matches!(right, Right::Review | Right::Operate) {
        return Err(ApiError::Conflict(
            "участник отозвал согласие, сессию нельзя менять / the participant withdrew; the session is read-only"
                .into(),
        ));
    }
    Ok(())
}

/// [`require_session`] for the session a tag belongs to; returns that session.
pub async fn require_tag_session(
    state: &AppState,
    auth: &Auth,
    tag: i64,
    right: Right,
) -> ApiResult<String> {
    auth.require(right)?;
    let session: String = sqlx::query("SELECT session_id FROM tags WHERE id = $1")
        .bind(tag)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tag {tag} not found")))?
        .try_get(0)?;
    require_session(state, auth, &session, right).await?;
    Ok(session)
}
