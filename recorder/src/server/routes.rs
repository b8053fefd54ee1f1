//! The endpoint's routes and its HTTP handlers: the embedded pages and
//! scripts, clock sync, events, operator markers, status and stop.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use futures_util::StreamExt;
use lab_model::{EventSource, IncomingEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, parse_event};
use super::guard::{guard, header_str};
use super::state::EndpointState;
use super::ws::ws_upgrade;
use crate::clock::SyncSample;
use crate::limits;

pub const PROBE_JS: &str = include_str!("../probe.js");
const OPERATOR_HTML: &str = include_str!("../operator.html");
const OPERATOR_JS: &str = include_str!("../operator.js");

pub fn router(state: Arc<EndpointState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/operator") }),
        )
        .route("/operator", get(|| async { Html(OPERATOR_HTML) }))
        .route("/operator.js", get(operator_js))
        .route("/probe.js", get(probe_js))
        .route("/api/clock", get(clock_now))
        .route("/api/clock/sync", post(clock_sync))
        .route("/api/events", post(post_event))
        .route("/api/markers", post(post_marker))
        .route("/api/status", get(status))
        .route("/api/stop", post(stop))
        .route("/api/browser/open", post(open_page))
        .route("/ws", get(ws_upgrade))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A POST body, read up to [`limits::MAX_BODY_BYTES`]; over it, a counted 413.
struct ClientBody(Bytes);

impl FromRequest<Arc<EndpointState>> for ClientBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &Arc<EndpointState>) -> Result<Self, ApiError> {
        let too_large = || {
            s.reject(ApiError::TooLarge(format!(
                "request body is over the {}-byte limit",
                limits::MAX_BODY_BYTES
            )))
        };
        let declared = header_str(req.headers(), &header::CONTENT_LENGTH)
            .and_then(|l| l.trim().parse::<u64>().ok());
        if declared.is_some_and(|l| l > limits::MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let mut stream = Body::into_data_stream(req.into_body());
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("request body was cut off: {e}")))?;
            if buf.len() + chunk.len() > limits::MAX_BODY_BYTES {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Self(Bytes::from(buf)))
    }
}

async fn probe_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        PROBE_JS,
    )
}

async fn operator_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        OPERATOR_JS,
    )
}

async fn clock_now(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    axum::Json(json!({ "session_ns": s.clock.now_ns() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    client: String,
    t0: f64,
    t1: f64,
    ts_ns: i64,
}

async fn clock_sync(
    State(s): State<Arc<EndpointState>>,
    ClientBody(body): ClientBody,
) -> Result<StatusCode, ApiError> {
    let now = s.clock.now_ns();
    let b: SyncBody = serde_json::from_slice(&body)
        .map_err(|e| s.reject(ApiError::BadRequest(format!("bad sync sample: {e}"))))?;
    check_client_id(&s, &b.client)?;
    let sample = SyncSample {
        t0_ms: b.t0,
        t1_ms: b.t1,
        ts_ns: b.ts_ns,
    };
    s.add_sample(&b.client, sample, now)?;
    Ok(StatusCode::NO_CONTENT)
}

fn check_client_id(s: &EndpointState, client: &str) -> Result<(), ApiError> {
    if limits::valid_client_id(client) {
        Ok(())
    } else {
        Err(s.reject(ApiError::BadRequest(format!(
            "client name must be 1-{} of A-Z a-z 0-9 - _ .",
            limits::MAX_CLIENT_ID_BYTES
        ))))
    }
}

#[derive(Deserialize)]
struct ClientQuery {
    client: Option<String>,
}

async fn post_event(
    State(s): State<Arc<EndpointState>>,
    Query(q): Query<ClientQuery>,
    ClientBody(body): ClientBody,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    if let Some(c) = &q.client {
        check_client_id(&s, c)?;
    }
    let incoming = parse_event(&body).map_err(|e| s.reject(e))?;
    let id = incoming.id.clone();
    // A client that names itself and its event may send it again safely.
    let dedup = q.client.clone().zip(
        incoming
            .id
            .as_ref()
            .filter(|id| !id.is_null())
            .map(|id| id.to_string()),
    );
    let e = s.accept(incoming, q.client.as_deref(), dedup).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(
            json!({ "id": id, "seq": e.seq(), "t_ns": e.t_ns(), "uncertainty_ns": e.uncertainty_ns() }),
        ),
    ))
}

/// Operator markers: `{"type": "task_start" | "task_end" | "step" | "note" | "help", "label"?, "text"?}`.
async fn post_marker(
    State(s): State<Arc<EndpointState>>,
    ClientBody(body): ClientBody,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let data: Value = serde_json::from_slice(&body)
        .map_err(|e| s.reject(ApiError::BadRequest(format!("marker is not JSON: {e}"))))?;
    let incoming = IncomingEvent {
        source: EventSource::Operator,
        kind: "marker".into(),
        data,
        t: None,
        id: None,
    };
    incoming
        .validate()
        .map_err(|e| s.reject(ApiError::BadRequest(e.to_string())))?;
    let e = s.accept(incoming, None, None).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "seq": e.seq(), "t_ns": e.t_ns() })),
    ))
}

async fn status(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    axum::Json(json!({
        "session_id": s.session_id,
        "bundle": s.bundle_dir,
        "t_ns": s.clock.now_ns(),
        "events": { "accepted": s.accepted(), "rejected": s.rejected() },
        "clients": s.clock_estimates(),
        "stopping": s.stop.borrow().is_some(),
        "warnings": *s.warnings.lock().unwrap_or_else(|e| e.into_inner()),
        "browser": s.pages.lock().unwrap_or_else(|e| e.into_inner()).is_some(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenPage {
    url: String,
}

/// Opens a page in the station browser: `{"url": "http://…"}` (the console
/// shows the participant's self-report page, then the prototype again).
async fn open_page(
    State(s): State<Arc<EndpointState>>,
    ClientBody(body): ClientBody,
) -> Result<StatusCode, ApiError> {
    let b: OpenPage = serde_json::from_slice(&body)
        .map_err(|e| s.reject(ApiError::BadRequest(format!("bad page request: {e}"))))?;
    if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
        return Err(s.reject(ApiError::BadRequest(
            "only http(s) pages are opened in the station browser".into(),
        )));
    }
    let pages = s
        .pages
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| ApiError::Unavailable("no station browser in this recording".into()))?;
    pages
        .send(b.url)
        .map_err(|_| ApiError::Unavailable("the station browser has closed".into()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stop(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    s.stop.send_if_modified(|r| {
        if r.is_none() {
            *r = Some("api".into());
            true
        } else {
            false
        }
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "stopping": true })),
    )
}
