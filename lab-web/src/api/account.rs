//! Account handlers: log in (throttled, password checked under the hash
//! permit, a session token in a cookie), log out, and who am I.

use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::responses::{ErrorBody, Me};
use crate::auth::{self, Auth, SESSION_COOKIE, SESSION_DAYS};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;

/// A real hash to verify against for unknown logins (same cost as a hit).
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| auth::hash_password("no such user").unwrap_or_default());

#[derive(Deserialize)]
pub struct LoginBody {
    login: String,
    password: String,
}

pub async fn login(
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

pub async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(t) = crate::cookies::cookie(&headers, SESSION_COOKIE) {
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
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(resp)
}

pub async fn me(auth: Auth) -> Json<Me> {
    Json(Me {
        user: auth.user,
        csrf: auth.csrf,
    })
}
