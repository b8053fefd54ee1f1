//! The JSON API under `/api/v1` (`docs/lab-web-api.md`, `assets/openapi.json`).

mod access;
mod admin;
mod exports;
mod filters;
mod responses;
mod review;
mod serve;
mod sessions;

use axum::Router;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};

use serde::Deserialize;

use crate::auth::{self, Auth, SESSION_COOKIE, SESSION_DAYS};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use responses::{Categories, Category, ErrorBody, Me};

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

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::pages::OPENAPI,
    )
        .into_response()
}

async fn categories() -> Json<Categories> {
    Json(Categories {
        categories: crate::types::CATEGORIES
            .iter()
            .map(|&(id, ru, en)| Category { id, ru, en })
            .collect(),
    })
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
    let found = store::users::credentials(&state.db.pool, body.login.trim()).await?;
    let phc = found.as_ref().map(|c| c.password_hash.clone());
    // Verify even for unknown logins, so timing does not reveal which exist.
    let password: String = body.password.chars().take(1024).collect();
    let ok = auth::with_hash_permit(&state, move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_HASH.clone());
        auth::verify_password(&password, &phc) && known
    })
    .await?;
    let Some(found) = found.filter(|_| ok) else {
        auth::audit(&state, None, "login_failed", &format!("user:{name}"), &addr).await;
        return Ok((
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                error: "bad_credentials",
                message: "Неверный логин или пароль / wrong login or password",
            }),
        )
            .into_response());
    };
    auth::clear_login_attempts(&state, &name, &addr).await?;
    let user = found.user;
    let token = auth::new_token();
    let csrf = auth::new_token();
    let now = now_ms();
    store::users::open_login(
        &state.db.pool,
        &auth::token_hash(&token),
        user.id,
        &csrf,
        now,
        now + SESSION_DAYS * 86_400_000,
    )
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
    let mut resp = Json(Me {
        user,
        csrf: Some(csrf),
    })
    .into_response();
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
    if let Some(t) = auth::cookie(&headers, SESSION_COOKIE) {
        store::users::close_login(&state.db.pool, &auth::token_hash(t)).await?;
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

async fn me(auth: Auth) -> Json<Me> {
    Json(Me {
        user: auth.user,
        csrf: auth.csrf,
    })
}
