//! The station's local event endpoint: HTTP for operator markers and simple
//! clients, a WebSocket for the browser probe (clock sync + events), the probe
//! script itself, a small operator console, and stop/status control.
//!
//! ```text
//! curl -X POST localhost:7700/api/markers -H 'Content-Type: application/json' -d '{"type":"task_start","label":"Задание 1"}'
//! curl -X POST localhost:7700/api/events -H 'Content-Type: application/json' -d '{"source":"observer","kind":"note","data":{"text":"…"}}'
//! curl -X POST localhost:7700/api/stop
//! ```
//!
//! Malformed input gets a 4xx with a JSON `{"error": ...}` and is counted in
//! the manifest's `events.rejected`; nothing a client sends can stop the
//! recording except `/api/stop`.
//!
//! Who may do what. The station's browser shows a third-party site, and any
//! page can send requests to 127.0.0.1; so the endpoint only serves requests
//! that name it by its own address (`Host` an IP literal or `localhost` with
//! our port: a DNS-rebinding page has its own name there), refuses any
//! request whose `Origin` is not the endpoint's own (browsers always send it
//! on cross-origin POSTs and WebSocket handshakes; local tools such as curl,
//! the demo's personas and the tests send none), refuses POST bodies that are
//! not `application/json` (so a plain form cannot reach it either), and sends
//! no CORS headers. A WebSocket from a page is the probe only if it presents
//! the per-recording token, which the recorder passes to the probe it injects
//! into an isolated world over DevTools (never in `/probe.js`), or if its
//! origin is in the station's `recording.probe_origins`; any other page may
//! open one and sync clocks, but its events are refused and counted.
//! Every limit is in [`crate::limits`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use lab_model::{ClockOffsetEstimate, Event, EventSource, IncomingEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::clock::{ClientClock, ClockError, SessionClock, SyncSample};
use crate::event_log::{EventLog, OnWritten};
use crate::limits::{self, TokenBucket};

pub const PROBE_JS: &str = include_str!("probe.js");
const OPERATOR_HTML: &str = include_str!("operator.html");
const OPERATOR_JS: &str = include_str!("operator.js");

/// Served with every response: no framing (clickjacking of the stop button),
/// no sniffing, nothing but our own script, no referrer, no caching.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Locks a mutex even if a thread panicked while holding it: every structure
/// behind these locks stays consistent between statements, and a panic in one
/// request must not turn every later request into another panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the endpoint needs to know about itself to tell its own clients from others.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The bound address; requests must name its port.
    pub listen: SocketAddr,
    /// Random per recording; the injected probe presents it as `/ws?token=`.
    pub probe_token: String,
    /// Origins (`scheme://host[:port]`) of lab-controlled pages that include
    /// `/probe.js` themselves; their WebSockets may send events without the token.
    pub probe_origins: Vec<String>,
}

impl EndpointConfig {
    /// A config with a fresh random probe token.
    pub fn new(listen: SocketAddr, probe_origins: Vec<String>) -> std::io::Result<Self> {
        Ok(Self {
            listen,
            probe_token: random_token()?,
            probe_origins,
        })
    }

    /// The probe's WebSocket URL, token included: for the injected probe only.
    pub fn probe_ws_url(&self) -> String {
        format!("ws://{}/ws?token={}", self.listen, self.probe_token)
    }
}

/// 128 random bits from the kernel, as hex.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Event ids already written (or being written), for resend dedup; oldest
/// forgotten first.
#[derive(Default)]
struct Remembered {
    map: HashMap<(String, String), Slot>,
    order: VecDeque<(String, String)>,
}

#[derive(Clone, Copy)]
enum Slot {
    InFlight,
    Written { seq: u64, t_ns: i64 },
}

impl Remembered {
    fn get(&self, key: &(String, String)) -> Option<Slot> {
        self.map.get(key).copied()
    }

    fn insert(&mut self, key: (String, String), slot: Slot) {
        if self.map.insert(key.clone(), slot).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > limits::MAX_REMEMBERED_IDS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&old);
        }
        // Entries of removed ids linger in the queue; drop them now and then.
        if self.order.len() > 2 * limits::MAX_REMEMBERED_IDS {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    fn remove(&mut self, key: &(String, String)) {
        // The order entry stays until it is popped or compacted away.
        self.map.remove(key);
    }
}

/// Everything the endpoint shares with the recording session.
pub struct EndpointState {
    pub session_id: String,
    pub bundle_dir: PathBuf,
    pub clock: SessionClock,
    pub log: EventLog,
    pub config: EndpointConfig,
    clients: Mutex<HashMap<String, ClientClock>>,
    rejected: AtomicU64,
    /// Set to a reason to stop the recording.
    pub stop: watch::Sender<Option<String>>,
    /// Set when the endpoint shuts down: WebSocket sessions close.
    closing: watch::Sender<bool>,
    next_client: AtomicU64,
    remembered: Arc<Mutex<Remembered>>,
    /// Event rate per client key.
    buckets: Mutex<HashMap<String, TokenBucket>>,
    ws_open: AtomicUsize,
    ws_untrusted: AtomicUsize,
}

/// An event that went through [`EndpointState::accept`].
#[derive(Debug)]
pub enum Accepted {
    New(Event),
    /// A resend of an event already written: its original place.
    Duplicate {
        seq: u64,
        t_ns: i64,
    },
}

impl Accepted {
    pub fn seq(&self) -> u64 {
        match self {
            Accepted::New(e) => e.seq,
            Accepted::Duplicate { seq, .. } => *seq,
        }
    }

    pub fn t_ns(&self) -> i64 {
        match self {
            Accepted::New(e) => e.t_ns,
            Accepted::Duplicate { t_ns, .. } => *t_ns,
        }
    }

    pub fn uncertainty_ns(&self) -> Option<i64> {
        match self {
            Accepted::New(e) => e.uncertainty_ns,
            Accepted::Duplicate { .. } => None,
        }
    }
}

impl EndpointState {
    pub fn new(
        session_id: String,
        bundle_dir: PathBuf,
        clock: SessionClock,
        log: EventLog,
        config: EndpointConfig,
        stop: watch::Sender<Option<String>>,
    ) -> Self {
        Self {
            session_id,
            bundle_dir,
            clock,
            log,
            config,
            clients: Mutex::default(),
            rejected: AtomicU64::new(0),
            stop,
            closing: watch::channel(false).0,
            next_client: AtomicU64::new(1),
            remembered: Arc::default(),
            buckets: Mutex::default(),
            ws_open: AtomicUsize::new(0),
            ws_untrusted: AtomicUsize::new(0),
        }
    }

    /// Client events durably written (counted by the log's writer).
    pub fn accepted(&self) -> u64 {
        self.log.accepted()
    }

    /// Client input refused (events, sync samples, requests).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::SeqCst)
    }

    pub fn clock_estimates(&self) -> Vec<ClockOffsetEstimate> {
        let clients = lock(&self.clients);
        let mut v: Vec<_> = clients
            .iter()
            .filter_map(|(id, c)| c.estimate(id))
            .collect();
        v.sort_by(|a, b| a.client.cmp(&b.client));
        v
    }

    /// Adds a clock sync sample of `client`, received at `now_ns`.
    pub fn add_sample(
        &self,
        client: &str,
        sample: SyncSample,
        now_ns: i64,
    ) -> Result<(), ApiError> {
        let mut clients = lock(&self.clients);
        let full = clients.len() >= limits::MAX_CLIENTS;
        let r = match clients.get_mut(client) {
            Some(c) => c.add(sample, now_ns),
            None if full => {
                drop(clients);
                return Err(self.reject(ApiError::TooMany {
                    msg: format!(
                        "this recording already has {} clients with a clock",
                        limits::MAX_CLIENTS
                    ),
                    retry_after: None,
                }));
            }
            None => {
                let mut c = ClientClock::default();
                let r = c.add(sample, now_ns);
                if r.is_ok() {
                    clients.insert(client.to_string(), c);
                }
                r
            }
        };
        drop(clients);
        r.map_err(|e| self.reject(clock_error(e)))
    }

    /// Takes one event token of `key`.
    fn take_event_token(&self, key: &str, now_ns: i64) -> Result<(), ApiError> {
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(key) && buckets.len() >= limits::MAX_CLIENTS {
            // Forget clients that have been idle long enough to be full again.
            buckets.retain(|_, b| !b.is_full_at(now_ns));
        }
        let bucket_key = if buckets.contains_key(key) || buckets.len() < limits::MAX_CLIENTS {
            key
        } else {
            // Still full of busy clients: newcomers share one bucket.
            "(overflow)"
        };
        let r = buckets
            .entry(bucket_key.to_string())
            .or_insert_with(|| {
                TokenBucket::new(limits::EVENT_BURST, limits::EVENTS_PER_SECOND, now_ns)
            })
            .take(now_ns);
        drop(buckets);
        r.map_err(|wait| {
            self.reject(ApiError::TooMany {
                msg: format!(
                    "more than {} events per second from client {key:?}",
                    limits::EVENTS_PER_SECOND
                ),
                retry_after: Some(wait),
            })
        })
    }

    /// Places an incoming event on the session clock and appends it to the
    /// log. `dedup` is the (client, id) of a WebSocket event for resend
    /// detection. Once this future has been polled past its checks, the
    /// event's fate no longer depends on it: the log writes, counts and
    /// remembers the event even if the future is dropped.
    pub async fn accept(
        &self,
        incoming: IncomingEvent,
        client: Option<&str>,
        dedup: Option<(String, String)>,
    ) -> Result<Accepted, ApiError> {
        let received = self.clock.now_ns();
        self.take_event_token(client.unwrap_or("(http)"), received)?;
        let mapped = match (incoming.t, client) {
            (Some(t), Some(c)) => lock(&self.clients)
                .get(c)
                .map(|cc| cc.to_session(t))
                .transpose()
                .map_err(|e| self.reject(clock_error(e)))?
                .flatten(),
            _ => None,
        };
        if let Some((t, u)) = mapped {
            let earliest = i128::from(received) - i128::from(limits::MAX_EVENT_AGE_NS);
            let latest =
                i128::from(received) + i128::from(u) + i128::from(limits::MAX_EVENT_LEAD_NS);
            if !(earliest..=latest).contains(&i128::from(t)) {
                let off = (i128::from(t) - i128::from(received)) as f64 / 1e9;
                return Err(self.reject(ApiError::BadRequest(format!(
                    "event time maps to {off:+.3} s from its arrival; allowed is -{} s to +{} s",
                    limits::MAX_EVENT_AGE_NS / 1_000_000_000,
                    (i128::from(u) + i128::from(limits::MAX_EVENT_LEAD_NS)) as f64 / 1e9
                ))));
            }
        }
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
        self.check_storable(&event)?;
        let on_written: Option<OnWritten> = match &dedup {
            Some(key) => {
                let mut r = lock(&self.remembered);
                match r.get(key) {
                    Some(Slot::Written { seq, t_ns }) => {
                        return Ok(Accepted::Duplicate { seq, t_ns });
                    }
                    Some(Slot::InFlight) => {
                        return Err(ApiError::TooMany {
                            msg: "this event is being written; wait for its ack".into(),
                            retry_after: Some(Duration::from_millis(100)),
                        });
                    }
                    None => r.insert(key.clone(), Slot::InFlight),
                }
                let remembered = self.remembered.clone();
                let key = key.clone();
                Some(Box::new(move |result: Result<&Event, &str>| {
                    let mut r = lock(&remembered);
                    match result {
                        Ok(e) => {
                            if r.get(&key).is_some() {
                                r.insert(
                                    key,
                                    Slot::Written {
                                        seq: e.seq,
                                        t_ns: e.t_ns,
                                    },
                                );
                            }
                        }
                        Err(_) => r.remove(&key),
                    }
                }))
            }
            None => None,
        };
        let event = self
            .log
            .append_then(event, on_written)
            .await
            .map_err(ApiError::Unavailable)?;
        Ok(Accepted::New(event))
    }

    /// Whether `event` can be written as a line every reader reads back: its
    /// stored form within [`limits::MAX_STORED_EVENT_BYTES`] (numbers can grow
    /// when re-serialised: `9e15` is stored as `9000000000000000.0`), and
    /// parseable as an `Event` (serde_json reads at most 128 levels of
    /// nesting, and a marker's body gains one level when stored). One bad
    /// line would make the whole bundle unreadable.
    fn check_storable(&self, event: &Event) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(event).map_err(|e| {
            self.reject(ApiError::BadRequest(format!("event cannot be stored: {e}")))
        })?;
        if bytes.len() > limits::MAX_STORED_EVENT_BYTES {
            return Err(self.reject(ApiError::TooLarge(format!(
                "event would be stored as {} bytes, more than the {}-byte limit",
                bytes.len(),
                limits::MAX_STORED_EVENT_BYTES
            ))));
        }
        serde_json::from_slice::<Event>(&bytes).map_err(|e| {
            self.reject(ApiError::BadRequest(format!(
                "event would not read back from events.jsonl ({e}); nest data less deeply"
            )))
        })?;
        Ok(())
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
        self.rejected.fetch_add(1, Ordering::SeqCst);
        tracing::debug!("rejected client input: {e:?}");
        e
    }
}

fn clock_error(e: ClockError) -> ApiError {
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
    fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::TooMany { msg: m, .. }
            | ApiError::Forbidden(m)
            | ApiError::UnsupportedType(m)
            | ApiError::Unavailable(m) => m,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
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
        .route("/operator.js", get(operator_js))
        .route("/probe.js", get(probe_js))
        .route("/api/clock", get(clock_now))
        .route("/api/clock/sync", post(clock_sync))
        .route("/api/events", post(post_event))
        .route("/api/markers", post(post_marker))
        .route("/api/status", get(status))
        .route("/api/stop", post(stop))
        .route("/ws", get(ws_upgrade))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The `Host` check: an IP literal or `localhost`, with our port. A page that
/// reached us through DNS rebinding names its own domain here.
fn host_is_ours(host: &str, port: u16) -> bool {
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host, Some(80)),
    };
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    p == Some(port)
        && (name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok())
}

/// The origin a page served by this endpoint has, given the request's `Host`.
fn own_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header that is present, with its value; a value that is not visible
/// ASCII reads as `"(unreadable)"`, never as absent, so a header a check
/// relies on cannot be hidden by garbling it.
fn present_header<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("(unreadable)"))
}

/// Refuses requests that do not come from the endpoint's own clients (see the
/// module docs), and adds the security headers to every response.
async fn guard(State(s): State<Arc<EndpointState>>, req: Request, next: Next) -> Response {
    let verdict = check_request(&s, &req);
    let is_probe = req.uri().path() == "/probe.js";
    let mut resp = match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => s.reject(e).into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Only the probe script may be loaded by other origins' pages.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static(if is_probe {
            "cross-origin"
        } else {
            "same-origin"
        }),
    );
    resp
}

fn check_request(s: &EndpointState, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    let port = s.config.listen.port();
    let host = header_str(headers, &header::HOST).unwrap_or("");
    if !host_is_ours(host, port) {
        return Err(ApiError::Forbidden(format!(
            "Host {host:?} is not this endpoint; use 127.0.0.1:{port} or localhost:{port}"
        )));
    }
    let path = req.uri().path();
    // The WebSocket decides about its origin itself (token or allow-list), and
    // the probe script is public.
    if path != "/ws"
        && path != "/probe.js"
        && let Some(origin) = headers.get(header::ORIGIN)
        && Some(origin.to_str().unwrap_or("")) != own_origin(headers).as_deref()
    {
        return Err(ApiError::Forbidden(format!(
            "requests from origin {origin:?} are not accepted; only local tools and this endpoint's own pages may call it"
        )));
    }
    if req.method() == Method::POST {
        if let Some(site) = present_header(headers, &HeaderName::from_static("sec-fetch-site"))
            && !matches!(site, "same-origin" | "none")
        {
            return Err(ApiError::Forbidden(format!(
                "a {site} page may not post to the recorder"
            )));
        }
        match present_header(headers, &header::CONTENT_TYPE) {
            Some(ct) => {
                let essence = ct.split(';').next().unwrap_or("").trim();
                if !essence.eq_ignore_ascii_case("application/json") {
                    return Err(ApiError::UnsupportedType(format!(
                        "POST bodies must be Content-Type: application/json, not {ct:?}"
                    )));
                }
            }
            None => {
                let empty = headers.get(header::TRANSFER_ENCODING).is_none()
                    && header_str(headers, &header::CONTENT_LENGTH).is_none_or(|l| l.trim() == "0");
                if !empty {
                    return Err(ApiError::UnsupportedType(
                        "POST bodies must be Content-Type: application/json".into(),
                    ));
                }
            }
        }
    }
    Ok(())
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
    let e = s.accept(incoming, q.client.as_deref(), None).await?;
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

/// How far a WebSocket connection is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// No `Origin` (a local tool), or the endpoint's own origin.
    Local,
    /// Presented the per-recording probe token.
    Probe,
    /// Its origin is in the station's `probe_origins`.
    Listed,
    /// Any other page: clock sync only.
    Untrusted,
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn ws_upgrade(
    State(s): State<Arc<EndpointState>>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = present_header(&headers, &header::ORIGIN);
    let trust = if q
        .token
        .as_deref()
        .is_some_and(|t| same_secret(t, &s.config.probe_token))
    {
        Trust::Probe
    } else {
        match origin {
            None => Trust::Local,
            Some(o) if Some(o) == own_origin(&headers).as_deref() => Trust::Local,
            Some(o) if s.config.probe_origins.iter().any(|x| x == o) => Trust::Listed,
            Some(_) => Trust::Untrusted,
        }
    };
    let Some(slot) = WsSlot::claim(&s, trust) else {
        return s
            .reject(ApiError::TooMany {
                msg: "too many open WebSocket connections".into(),
                retry_after: Some(Duration::from_secs(5)),
            })
            .into_response();
    };
    ws.max_message_size(limits::MAX_WS_FRAME_BYTES)
        .max_frame_size(limits::MAX_WS_FRAME_BYTES)
        .on_upgrade(move |socket| ws_session(s, socket, trust, slot))
}

/// One open WebSocket in the connection counts, released on drop.
struct WsSlot {
    state: Arc<EndpointState>,
    untrusted: bool,
}

impl WsSlot {
    fn claim(s: &Arc<EndpointState>, trust: Trust) -> Option<Self> {
        let untrusted = trust == Trust::Untrusted;
        if s.ws_open.fetch_add(1, Ordering::SeqCst) >= limits::MAX_WS {
            s.ws_open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let slot = Self {
            state: s.clone(),
            untrusted,
        };
        if untrusted {
            s.ws_untrusted.fetch_add(1, Ordering::SeqCst);
            if s.ws_untrusted.load(Ordering::SeqCst) > limits::MAX_UNTRUSTED_WS {
                return None; // dropping the slot gives both counts back
            }
        }
        Some(slot)
    }
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.state.ws_open.fetch_sub(1, Ordering::SeqCst);
        if self.untrusted {
            self.state.ws_untrusted.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Per-connection state of a WebSocket session.
struct WsConn {
    client: String,
    trust: Trust,
    /// Session times answered to this connection's `sync` requests, newest
    /// last; a `sync_result` must carry one of them.
    issued: VecDeque<i64>,
    bucket: TokenBucket,
}

/// Sync answers a connection may have outstanding.
const MAX_ISSUED_SYNCS: usize = 16;

/// One probe connection. Messages are JSON objects with a `type`:
/// `hello {client}`, `sync {id, t0}` (answered at once with `ts_ns`),
/// `sync_result {t0, t1, ts_ns}`, `event {id, event}` (answered with `ack` or `reject`).
/// Ends when the client leaves or when the endpoint shuts down.
async fn ws_session(s: Arc<EndpointState>, mut socket: WebSocket, trust: Trust, _slot: WsSlot) {
    let n = s.next_client.fetch_add(1, Ordering::Relaxed);
    let mut conn = WsConn {
        client: if trust == Trust::Untrusted {
            format!("anon-{n}")
        } else {
            format!("ws-{n}")
        },
        trust,
        issued: VecDeque::new(),
        bucket: TokenBucket::new(
            limits::WS_MESSAGE_BURST,
            limits::WS_MESSAGES_PER_SECOND,
            s.clock.now_ns(),
        ),
    };
    let mut closing = s.closing.subscribe();
    loop {
        let msg = tokio::select! {
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
                let bye = Message::Close(Some(CloseFrame { code: 1001, reason: "recording stopped".into() }));
                let _ = tokio::time::timeout(Duration::from_millis(200), socket.send(bye)).await;
                break;
            }
            msg = socket.recv() => msg,
        };
        let Some(Ok(msg)) = msg else { break };
        let reply = match msg {
            Message::Text(t) => handle_ws_message(&s, &mut conn, t.as_bytes()).await,
            Message::Binary(_) => {
                s.rejected.fetch_add(1, Ordering::SeqCst);
                Some(
                    json!({ "type": "reject", "error": "binary messages are not part of the protocol" }),
                )
            }
            Message::Close(_) => break,
            _ => None,
        };
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

fn ws_reject(id: &Value, e: &ApiError) -> Value {
    let mut v = json!({ "type": "reject", "id": id, "error": e.message() });
    if let Some(wait) = e.retry_after() {
        v["retry_after_ms"] = json!(wait.as_millis().max(1) as u64);
    }
    v
}

async fn handle_ws_message(s: &EndpointState, conn: &mut WsConn, bytes: &[u8]) -> Option<Value> {
    let received = s.clock.now_ns();
    if bytes.len() > limits::MAX_WS_MESSAGE_BYTES {
        let e = s.reject(ApiError::TooLarge(format!(
            "message is over the {}-byte limit",
            limits::MAX_WS_MESSAGE_BYTES
        )));
        return Some(ws_reject(&Value::Null, &e));
    }
    if let Err(wait) = conn.bucket.take(received) {
        let e = s.reject(ApiError::TooMany {
            msg: format!(
                "more than {} messages per second on this connection",
                limits::WS_MESSAGES_PER_SECOND
            ),
            retry_after: Some(wait),
        });
        return Some(ws_reject(&Value::Null, &e));
    }
    // A string the probe cut inside an emoji carries a lone surrogate, which
    // serde_json refuses: repaired to U+FFFD, so the event (and its id) survive.
    let parsed = serde_json::from_slice(bytes).or_else(|e| {
        lab_model::event::replace_lone_surrogates(bytes)
            .map_or(Err(e), |fixed| serde_json::from_slice(&fixed))
    });
    let msg: Value = match parsed {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let e = s.reject(ApiError::BadRequest("message is not a JSON object".into()));
            return Some(ws_reject(&Value::Null, &e));
        }
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::Null | Value::Number(_) | Value::String(_))
        && id.to_string().len() <= limits::MAX_ID_BYTES;
    if !id_ok {
        let e = s.reject(ApiError::BadRequest(format!(
            "id must be a number or a string of at most {} bytes",
            limits::MAX_ID_BYTES
        )));
        return Some(ws_reject(&Value::Null, &e));
    }
    match msg.get("type").and_then(Value::as_str) {
        Some("hello") => {
            // Only a trusted connection may name itself; a page must not be able
            // to pose as (and skew the clock of) the probe's client.
            if conn.trust != Trust::Untrusted
                && let Some(c) = msg.get("client").and_then(Value::as_str)
            {
                if limits::valid_client_id(c) {
                    conn.client = c.to_string();
                } else {
                    let e = s.reject(ApiError::BadRequest(format!(
                        "client name must be 1-{} of A-Z a-z 0-9 - _ .",
                        limits::MAX_CLIENT_ID_BYTES
                    )));
                    return Some(ws_reject(&id, &e));
                }
            }
            Some(json!({ "type": "hello", "client": conn.client, "session_id": s.session_id }))
        }
        Some("sync") => {
            if conn.issued.len() >= MAX_ISSUED_SYNCS {
                conn.issued.pop_front();
            }
            conn.issued.push_back(received);
            let t0 = msg.get("t0").filter(|v| v.is_number()).cloned();
            Some(json!({ "type": "sync", "id": id, "t0": t0, "ts_ns": received }))
        }
        Some("sync_result") => {
            let f = |k: &str| msg.get(k).and_then(Value::as_f64);
            let ts = msg.get("ts_ns").and_then(Value::as_i64);
            let (Some(t0), Some(t1), Some(ts)) = (f("t0"), f("t1"), ts) else {
                let e = s.reject(ApiError::BadRequest(
                    "sync_result needs numbers t0, t1 and ts_ns".into(),
                ));
                return Some(ws_reject(&id, &e));
            };
            // The recorder, not the client, vouches for ts: it must be one we issued here.
            let Some(pos) = conn.issued.iter().position(|&x| x == ts) else {
                let e = s.reject(ApiError::BadRequest(
                    "sync_result does not answer a sync of this connection".into(),
                ));
                return Some(ws_reject(&id, &e));
            };
            conn.issued.remove(pos);
            if conn.trust == Trust::Untrusted {
                // Its events are refused, so there is nothing to place on the clock.
                return None;
            }
            let sample = SyncSample {
                t0_ms: t0,
                t1_ms: t1,
                ts_ns: ts,
            };
            match s.add_sample(&conn.client, sample, received) {
                Ok(()) => None,
                Err(e) => Some(ws_reject(&id, &e)),
            }
        }
        Some("event") => {
            if conn.trust == Trust::Untrusted {
                let e = s.reject(ApiError::Forbidden(
                    "this page is not the recorder's probe: events need the probe token or an allowed origin".into(),
                ));
                return Some(ws_reject(&id, &e));
            }
            let raw = msg.get("event").map(|e| e.to_string()).unwrap_or_default();
            let incoming = match parse_event(raw.as_bytes()) {
                Ok(i) => i,
                Err(e) => return Some(ws_reject(&id, &s.reject(e))),
            };
            // The probe resends unacknowledged events after a reconnect; one
            // whose ack was lost on the way is acknowledged again, not re-recorded.
            let dedup = (!id.is_null()).then(|| (conn.client.clone(), id.to_string()));
            Some(match s.accept(incoming, Some(&conn.client), dedup).await {
                Ok(Accepted::New(e)) => {
                    json!({ "type": "ack", "id": id, "seq": e.seq, "t_ns": e.t_ns })
                }
                Ok(a @ Accepted::Duplicate { .. }) => {
                    json!({ "type": "ack", "id": id, "seq": a.seq(), "t_ns": a.t_ns(), "duplicate": true })
                }
                Err(e) => ws_reject(&id, &e),
            })
        }
        _ => {
            let e = s.reject(ApiError::BadRequest("unknown message type".into()));
            Some(ws_reject(&id, &e))
        }
    }
}

/// Open connections by id, so a stop can cut the ones that outlast the grace.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, RawFd>>,
    next: AtomicU64,
}

impl Connections {
    fn track(self: &Arc<Self>, inner: TcpStream) -> TrackedStream {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, inner.as_raw_fd());
        TrackedStream {
            inner,
            id,
            conns: self.clone(),
        }
    }

    /// Shuts every open socket down: pending reads see end of file and writes
    /// fail, so each connection's task (a half-sent body, a WebSocket) ends.
    fn cut_all(&self) -> usize {
        let open = lock(&self.open);
        for &fd in open.values() {
            // SAFETY: `fd` belongs to a live `TrackedStream`: its entry is removed
            // (under this lock) in `Drop` before the stream closes the descriptor,
            // so it cannot have been closed or reused. shutdown(2) does not close it.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        open.len()
    }
}

/// A TCP connection registered in [`Connections`].
struct TrackedStream {
    inner: TcpStream,
    id: u64,
    conns: Arc<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        lock(&self.conns.open).remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct TrackedListener {
    inner: TcpListener,
    conns: Arc<Connections>,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (self.conns.track(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The endpoint, running.
pub struct Server {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: oneshot::Sender<()>,
    conns: Arc<Connections>,
    state: Arc<EndpointState>,
}

impl Server {
    /// Serves [`router`] on `listener` until [`Server::shutdown`].
    pub fn spawn(listener: TcpListener, state: Arc<EndpointState>) -> Self {
        let conns = Arc::new(Connections::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = TrackedListener {
            inner: listener,
            conns: conns.clone(),
        };
        let task = tokio::spawn(
            axum::serve(listener, router(state.clone()))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Self {
            task,
            stop,
            conns,
            state,
        }
    }

    /// Stops accepting, lets in-flight requests finish for at most
    /// [`limits::SHUTDOWN_GRACE`], closes WebSockets, then cuts whatever is
    /// still open. Returns within about the grace plus half a second whatever
    /// clients do.
    pub async fn shutdown(self) {
        let Self {
            mut task,
            stop,
            conns,
            state,
        } = self;
        state.closing.send_replace(true);
        let _ = stop.send(());
        if tokio::time::timeout(limits::SHUTDOWN_GRACE, &mut task)
            .await
            .is_ok()
        {
            return;
        }
        let n = conns.cut_all();
        tracing::warn!(
            "cut {n} client connection(s) still open {:?} after the stop",
            limits::SHUTDOWN_GRACE
        );
        if tokio::time::timeout(Duration::from_millis(500), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebSocket event ids were remembered without bound (and the old bound
    /// forgot every id at once when it was hit).
    #[test]
    fn remembered_ids_are_bounded_and_forgotten_oldest_first() {
        let mut r = Remembered::default();
        let key = |i: usize| ("tab".to_string(), i.to_string());
        for i in 0..limits::MAX_REMEMBERED_IDS + 10 {
            r.insert(
                key(i),
                Slot::Written {
                    seq: i as u64,
                    t_ns: 0,
                },
            );
        }
        assert_eq!(r.map.len(), limits::MAX_REMEMBERED_IDS);
        assert!(r.get(&key(9)).is_none());
        assert!(r.get(&key(10)).is_some());
        assert!(r.get(&key(limits::MAX_REMEMBERED_IDS + 9)).is_some());
        // Removed entries leave the order queue as it drains, so it stays bounded.
        for i in 0..limits::MAX_REMEMBERED_IDS * 3 {
            r.insert(key(1_000_000 + i), Slot::InFlight);
            r.remove(&key(1_000_000 + i));
        }
        assert!(r.order.len() <= 2 * limits::MAX_REMEMBERED_IDS + 1);
    }

    #[test]
    fn host_must_name_this_endpoint() {
        for ok in [
            "127.0.0.1:7700",
            "localhost:7700",
            "[::1]:7700",
            "LOCALHOST:7700",
        ] {
            assert!(host_is_ours(ok, 7700), "{ok}");
        }
        for bad in [
            "evil.example:7700",
            "127.0.0.1:7701",
            "127.0.0.1",
            "",
            "[::1]",
            "127.0.0.1:x",
        ] {
            assert!(!host_is_ours(bad, 7700), "{bad}");
        }
        assert!(host_is_ours("127.0.0.1", 80));
    }
}
