//! API errors: every failure becomes `{"error": code, "message": text}` with a
//! fitting status; internal errors are logged with their cause and answered
//! with a generic 500, never a panic.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    Csrf,
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    /// Too many attempts (log-in throttling).
    TooMany(String),
    /// A bounded resource (password hashing) is saturated; try again shortly.
    Busy,
    /// Any other refusal with its own status and machine-readable code
    /// (the upload protocol's `offset_mismatch`, `checksum_mismatch`,
    /// `too_large`, `no_space`, …; `docs/upload-protocol.md`).
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    Internal(anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
    pub fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }
    /// The answer to a change of a session whose participant withdrew
    /// (also when the change lost the race with the withdrawal).
    pub fn withdrawn() -> Self {
        Self::Conflict(
            "участник отозвал согласие, сессию нельзя менять / the participant withdrew; the session is read-only"
                .into(),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => Self::NotFound("not found".into()),
            e => Self::Internal(e.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Требуется вход / login required".to_string(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Недостаточно прав / not allowed for your role".to_string(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "Нет или неверный X-CSRF-Token / missing or wrong CSRF token".to_string(),
            ),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            Self::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", m),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Сервер занят, повторите через несколько секунд / server busy, retry in a few seconds"
                    .to_string(),
            ),
            Self::Refused {
                status,
                code,
                message,
            } => (status, code, message),
            Self::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Внутренняя ошибка сервера / internal server error".to_string(),
                )
            }
        };
        (
            status,
            axum::Json(json!({"error": code, "message": message})),
        )
            .into_response()
    }
}

/// Makes every API error JSON, including the framework's own rejections
/// (a body that is not JSON, a path parameter that is not a number, a body
/// over the limit, a wrong method), which axum answers in plain text.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if status.is_server_error() || text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().to_string()
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = json!({"error": code, "message": message}).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}
