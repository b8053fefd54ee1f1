//! The endpoint's answer to bad client input: one error type, sent as a 4xx
//! (or 503) with a JSON `{"error": ...}` and, when waiting helps, `Retry-After`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lab_model::IncomingEvent;
use serde_json::json;

use crate::clock::ClockError;

pub(super) fn clock_error(e: ClockError) -> ApiError {
    match e {
        ClockError::TooManySamples => ApiError::TooMany {
            msg: e.to_string(),
            retry_after: None,
        },
        _ => ApiError::BadRequest(e.to_string()),
    }
}

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    TooLarge(String),
    TooMany {
        msg: String,
        retry_after: Option<Duration>,
    },
    Forbidden(String),
    UnsupportedType(String),
    Unavailable(String),
}

impl ApiError {
    pub(super) fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::TooMany { msg: m, .. }
            | ApiError::Forbidden(m)
            | ApiError::UnsupportedType(m)
            | ApiError::Unavailable(m) => m,
        }
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooMany { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut resp = (status, axum::Json(json!({ "error": self.message() }))).into_response();
        if let Some(wait) = self.retry_after() {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub(super) fn parse_event(bytes: &[u8]) -> Result<IncomingEvent, ApiError> {
    IncomingEvent::parse(bytes).map_err(|e| match e {
        lab_model::EventError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })
}
