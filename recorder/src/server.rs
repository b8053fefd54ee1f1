//! The station's local event endpoint: HTTP for operator markers and simple
//! clients, a WebSocket for the browser probe (clock sync + events), the probe
//! script itself, a small operator console, and stop/status control.
//!
//! ```text
//! curl -X POST localhost:7700/api/markers -d '{"type":"task_start","label":"Задание 1"}'
//! curl -X POST localhost:7700/api/events -d '{"source":"observer","kind":"note","data":{"text":"…"}}'
//! curl -X POST localhost:7700/api/stop
//! ```
//!
//! Malformed input gets a 4xx with a JSON `{"error": ...}` and is counted in
//! the manifest's `events.rejected`; nothing a client sends can stop the
//! recording except `/api/stop`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use lab_model::{ClockOffsetEstimate, Event, EventSource, IncomingEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::clock::{ClientClock, SessionClock, SyncSample};
use crate::event_log::EventLog;

pub const PROBE_JS: &str = include_str!("probe.js");
const OPERATOR_HTML: &str = include_str!("operator.html");

/// Everything the endpoint shares with the recording session.
pub struct EndpointState {
    pub session_id: String,
    pub bundle_dir: PathBuf,
    pub clock: SessionClock,
    pub log: EventLog,
    pub clients: Mutex<HashMap<String, ClientClock>>,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Set to a reason to stop the recording.
    pub stop: watch::Sender<Option<String>>,
    next_client: AtomicU64,
    /// (client, event id) -> (seq, t_ns) of events already written, for resends.
    delivered: Mutex<HashMap<(String, String), (u64, i64)>>,
}

/// Resend dedup memory; far more than a probe ever has unacknowledged.
const MAX_REMEMBERED_IDS: usize = 100_000;

impl EndpointState {
    pub fn new(
        session_id: String,
        bundle_dir: PathBuf,
        clock: SessionClock,
        log: EventLog,
        stop: watch::Sender<Option<String>>,
    ) -> Self {
        Self {
            session_id,
            bundle_dir,
            clock,
            log,
            clients: Mutex::default(),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stop,
            next_client: AtomicU64::new(1),
            delivered: Mutex::default(),
        }
    }

    pub fn clock_estimates(&self) -> Vec<ClockOffsetEstimate> {
        let clients = self.clients.lock().expect("clients lock");
        let mut v: Vec<_> = clients
            .iter()
            .filter_map(|(id, c)| c.estimate(id))
            .collect();
        v.sort_by(|a, b| a.client.cmp(&b.client));
        v
    }

    /// Places an incoming event on the session clock and appends it to the log.
    pub async fn accept(
        &self,
        incoming: IncomingEvent,
        client: Option<&str>,
    ) -> Result<Event, ApiError> {
        let received = self.clock.now_ns();
        let mapped = match (incoming.t, client) {
            (Some(t), Some(c)) => self
                .clients
                .lock()
                .expect("clients lock")
                .get(c)
                .and_then(|cc| cc.to_session(t)),
            _ => None,
        };
        let (t_ns, uncertainty_ns) = match mapped {
            Some((t, u)) => (t, Some(u)),
            None => (received, None),
        };
        let event = Event {
            seq: 0,
            t_ns,
            source: incoming.source,
            kind: incoming.kind,
            data: incoming.data,
            client: client.map(str::to_string),
            client_time_ms: incoming.t,
            uncertainty_ns,
        };
        let event = self
            .log
            .append(event)
            .await
            .map_err(ApiError::Unavailable)?;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(event)
    }

    /// Records a system event (segment, device, disk) from the recorder itself.
    pub async fn system_event(&self, kind: &str, data: Value) {
        let event = Event {
            seq: 0,
            t_ns: self.clock.now_ns(),
            source: EventSource::System,
            kind: format!("system.{kind}"),
            data,
            client: None,
            client_time_ms: None,
            uncertainty_ns: None,
        };
        if let Err(e) = self.log.append(event).await {
            tracing::warn!("could not log system event {kind}: {e}");
        }
    }

    fn reject(&self, e: ApiError) -> ApiError {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("rejected event: {e:?}");
        e
    }
}

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    TooLarge(String),
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::BadRequest(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        (status, axum::Json(json!({ "error": msg }))).into_response()
    }
}

fn parse_event(bytes: &[u8]) -> Result<IncomingEvent, ApiError> {
    IncomingEvent::parse(bytes).map_err(|e| match e {
        lab_model::EventError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })
}

pub fn router(state: Arc<EndpointState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/operator") }),
        )
        .route("/operator", get(|| async { Html(OPERATOR_HTML) }))
        .route("/probe.js", get(probe_js))
        .route("/api/clock", get(clock_now))
        .route("/api/clock/sync", post(clock_sync))
        .route("/api/events", post(post_event))
        .route("/api/markers", post(post_marker))
        .route("/api/status", get(status))
        .route("/api/stop", post(stop))
        .route("/ws", get(ws_upgrade))
        // Well above MAX_EVENT_BYTES, so oversized events reach our own check
        // and get a counted JSON 413 rather than the framework's plain one.
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(state)
}

async fn probe_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PROBE_JS,
    )
}

async fn clock_now(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    axum::Json(json!({ "session_ns": s.clock.now_ns() }))
}

#[derive(Deserialize)]
struct SyncBody {
    client: String,
    t0: f64,
    t1: f64,
    ts_ns: i64,
}

async fn clock_sync(
    State(s): State<Arc<EndpointState>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let b: SyncBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("bad sync sample: {e}")))?;
    let sample = SyncSample {
        t0_ms: b.t0,
        t1_ms: b.t1,
        ts_ns: b.ts_ns,
    };
    let ok = s
        .clients
        .lock()
        .expect("clients lock")
        .entry(b.client)
        .or_default()
        .add(sample);
    if ok {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::BadRequest("implausible sync sample".into()))
    }
}

#[derive(Deserialize)]
struct ClientQuery {
    client: Option<String>,
}

async fn post_event(
    State(s): State<Arc<EndpointState>>,
    Query(q): Query<ClientQuery>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let incoming = parse_event(&body).map_err(|e| s.reject(e))?;
    let id = incoming.id.clone();
    let e = s.accept(incoming, q.client.as_deref()).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(
            json!({ "id": id, "seq": e.seq, "t_ns": e.t_ns, "uncertainty_ns": e.uncertainty_ns }),
        ),
    ))
}

/// Operator markers: `{"type": "task_start" | "task_end" | "step" | "note" | "help", "label"?, "text"?}`.
async fn post_marker(
    State(s): State<Arc<EndpointState>>,
    body: Bytes,
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
    let e = s.accept(incoming, None).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "seq": e.seq, "t_ns": e.t_ns })),
    ))
}

async fn status(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    axum::Json(json!({
        "session_id": s.session_id,
        "bundle": s.bundle_dir,
        "t_ns": s.clock.now_ns(),
        "events": { "accepted": s.accepted.load(Ordering::Relaxed), "rejected": s.rejected.load(Ordering::Relaxed) },
        "clients": s.clock_estimates(),
        "stopping": s.stop.borrow().is_some(),
    }))
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

async fn ws_upgrade(State(s): State<Arc<EndpointState>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(1 << 20)
        .on_upgrade(move |socket| ws_session(s, socket))
}

/// One probe connection. Messages are JSON objects with a `type`:
/// `hello {client}`, `sync {id, t0}` (answered at once with `ts_ns`),
/// `sync_result {t0, t1, ts_ns}`, `event {id, event}` (answered with `ack` or `reject`).
async fn ws_session(s: Arc<EndpointState>, mut socket: WebSocket) {
    let mut client = format!("ws-{}", s.next_client.fetch_add(1, Ordering::Relaxed));
    while let Some(Ok(msg)) = socket.recv().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = handle_ws_message(&s, &mut client, text.as_bytes()).await;
        if let Some(reply) = reply
            && socket
                .send(Message::Text(reply.to_string().into()))
                .await
                .is_err()
        {
            break;
        }
    }
}

async fn handle_ws_message(s: &EndpointState, client: &mut String, bytes: &[u8]) -> Option<Value> {
    let received = s.clock.now_ns();
    let msg: Value = match serde_json::from_slice(bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            return Some(json!({ "type": "reject", "error": "message is not a JSON object" }));
        }
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    match msg.get("type").and_then(Value::as_str) {
        Some("hello") => {
            if let Some(c) = msg.get("client").and_then(Value::as_str)
                && !c.is_empty()
                && c.len() <= 64
            {
                *client = c.to_string();
            }
            Some(json!({ "type": "hello", "client": client, "session_id": s.session_id }))
        }
        Some("sync") => {
            Some(json!({ "type": "sync", "id": id, "t0": msg.get("t0"), "ts_ns": received }))
        }
        Some("sync_result") => {
            let f = |k: &str| msg.get(k).and_then(Value::as_f64);
            if let (Some(t0), Some(t1), Some(ts)) =
                (f("t0"), f("t1"), msg.get("ts_ns").and_then(Value::as_i64))
            {
                let sample = SyncSample {
                    t0_ms: t0,
                    t1_ms: t1,
                    ts_ns: ts,
                };
                s.clients
                    .lock()
                    .expect("clients lock")
                    .entry(client.clone())
                    .or_default()
                    .add(sample);
            }
            None
        }
        Some("event") => {
            // The probe resends unacknowledged events after a reconnect; one
            // whose ack was lost on the way is acknowledged again, not re-recorded.
            let key = (client.clone(), id.to_string());
            if !id.is_null()
                && let Some((seq, t_ns)) = s.delivered.lock().expect("delivered lock").get(&key)
            {
                return Some(
                    json!({ "type": "ack", "id": id, "seq": seq, "t_ns": t_ns, "duplicate": true }),
                );
            }
            let raw = msg.get("event").map(|e| e.to_string()).unwrap_or_default();
            let result = match parse_event(raw.as_bytes()) {
                Ok(incoming) => s.accept(incoming, Some(client)).await,
                Err(e) => Err(s.reject(e)),
            };
            if let (Ok(e), false) = (&result, id.is_null()) {
                let mut d = s.delivered.lock().expect("delivered lock");
                if d.len() >= MAX_REMEMBERED_IDS {
                    d.clear();
                }
                d.insert(key, (e.seq, e.t_ns));
            }
            Some(match result {
                Ok(e) => json!({ "type": "ack", "id": id, "seq": e.seq, "t_ns": e.t_ns }),
                Err(ApiError::BadRequest(m) | ApiError::TooLarge(m) | ApiError::Unavailable(m)) => {
                    json!({ "type": "reject", "id": id, "error": m })
                }
            })
        }
        _ => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            Some(json!({ "type": "reject", "id": id, "error": "unknown message type" }))
        }
    }
}
