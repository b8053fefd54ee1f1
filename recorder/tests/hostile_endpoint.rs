//! The event endpoint against hostile and careless clients: a real listener on
//! 127.0.0.1:0, a real `EventLog` in a temp dir and the system clock, driven
//! by raw TCP (so requests can be half-sent or reset) and real WebSockets.
//! Each test is named after a hole an attack probe found.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gstreamer::prelude::*;
use lab_model::{Bundle, EventSource, IncomingEvent};
use recorder::clock::{SessionClock, SyncSample};
use recorder::event_log::EventLog;
use recorder::limits;
use recorder::server::{EndpointConfig, EndpointState, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Endpoint {
    dir: PathBuf,
    addr: SocketAddr,
    state: Arc<EndpointState>,
    server: Option<Server>,
    log_thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Receiver<Option<String>>,
}

impl Endpoint {
    async fn start(probe_origins: &[&str]) -> Self {
        gstreamer::init().unwrap();
        let clock = gstreamer::SystemClock::obtain();
        // Session time 0 a minute ago, so sync samples from "the last 60 s" exist.
        let base = clock.time().nseconds() - 60_000_000_000;
        let dir = std::env::temp_dir().join(format!(
            "recorder-hostile-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, log_thread) = EventLog::open(&Bundle::new(&dir).events_path(), 1).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config =
            EndpointConfig::new(addr, probe_origins.iter().map(|s| s.to_string()).collect())
                .unwrap();
        let (stop_tx, stop) = watch::channel(None);
        let state = Arc::new(EndpointState::new(
            "S".into(),
            dir.clone(),
            SessionClock::new(clock, base),
            log,
            config,
            stop_tx,
        ));
        let server = Server::spawn(listener, state.clone());
        Self {
            dir,
            addr,
            state,
            server: Some(server),
            log_thread: Some(log_thread),
            stop,
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server and closes the log the way a recording does; returns how long it took.
    async fn finish(&mut self) -> Duration {
        let t = Instant::now();
        self.server.take().unwrap().shutdown().await;
        self.state.log.close();
        let thread = self.log_thread.take().unwrap();
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .expect("the log writer stops once closed, whatever clients still hold")
        .unwrap()
        .unwrap();
        t.elapsed()
    }

    /// Client (non-system) lines in events.jsonl.
    fn client_lines(&self) -> usize {
        let (events, torn) = Bundle::new(&self.dir).read_events().unwrap();
        assert_eq!(torn, 0);
        events
            .iter()
            .filter(|e| e.source != EventSource::System)
            .count()
    }

    async fn request(&self, head: &str, body: &[u8]) -> (u16, String, String) {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    /// A POST with our Host, the given extra headers and a JSON content type
    /// unless `extra` names one.
    async fn post(&self, path: &str, extra: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.host(),
            body.len()
        );
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.request(&head, body).await
    }

    async fn get(&self, path: &str, extra: &[(&str, &str)]) -> (u16, String, String) {
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.request(&head, b"").await
    }

    async fn ws(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        tokio_tungstenite::tungstenite::Error,
    > {
        let mut req = format!("ws://{}/ws{query}", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws)
    }

    fn sample_now(&self, t0: f64) -> SyncSample {
        SyncSample {
            t0_ms: t0,
            t1_ms: t0 + 1.0,
            ts_ns: self.state.clock.now_ns(),
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ask(ws: &mut Ws, msg: Value) -> Value {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a reply")
        .unwrap()
        .unwrap();
    serde_json::from_str(reply.to_text().unwrap()).unwrap()
}

/// One round of the probe's clock sync over `ws`.
async fn sync_once(ws: &mut Ws, t0: f64) {
    let r = ask(ws, json!({ "type": "sync", "id": 1, "t0": t0 })).await;
    let ts = r["ts_ns"].as_i64().unwrap();
    ws.send(Message::Text(
        json!({ "type": "sync_result", "t0": t0, "t1": t0 + 0.5, "ts_ns": ts })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
}

fn event(kind: &str) -> Value {
    json!({ "source": "browser", "kind": kind, "data": { "y": 1 } })
}

/// `ts_ns: i64::MIN` was taken with 204, and the manifest refresh 2 s later
/// panicked the recorder's main thread (overflow in `offset_ns`).
#[tokio::test]
async fn sync_sample_with_i64_min_ts_is_refused_and_estimates_never_overflow() {
    let mut e = Endpoint::start(&[]).await;
    for body in [
        r#"{"client":"c","t0":1,"t1":2,"ts_ns":-9223372036854775808}"#,
        r#"{"client":"c","t0":1,"t1":2,"ts_ns":9223372036854775807}"#,
        r#"{"client":"c","t0":-9.2e15,"t1":-9.2e15,"ts_ns":0}"#,
        r#"{"client":"c","t0":1e300,"t1":1e300,"ts_ns":0}"#,
        r#"{"client":"c","t0":5,"t1":1,"ts_ns":0}"#,
    ] {
        let (status, _, resp) = e.post("/api/clock/sync", &[], body.as_bytes()).await;
        assert_eq!(status, 422, "{body}: {resp}");
        assert!(resp.contains("error"), "{resp}");
    }
    assert!(e.state.clock_estimates().is_empty());
    assert_eq!(e.state.rejected(), 5);
    // A sample of a real GET /api/clock is taken.
    let (_, _, clock) = e.get("/api/clock", &[]).await;
    let ts: Value = serde_json::from_str(&clock).unwrap();
    let body =
        json!({ "client": "c", "t0": 1.7e12, "t1": 1.7e12 + 2.0, "ts_ns": ts["session_ns"] });
    let (status, _, resp) = e
        .post("/api/clock/sync", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(status, 204, "{resp}");
    assert_eq!(e.state.clock_estimates().len(), 1);
    e.finish().await;
}

/// A mapped event time far from its arrival was wrapped into garbage in
/// release builds; it must be refused with a clear error.
#[tokio::test]
async fn event_time_far_from_arrival_is_rejected_not_wrapped() {
    let mut e = Endpoint::start(&[]).await;
    let now = e.state.clock.now_ns();
    // Client clock = session clock + 1.7e12 ms.
    let sample = SyncSample {
        t0_ms: 1.7e12 + now as f64 / 1e6,
        t1_ms: 1.7e12 + now as f64 / 1e6 + 1.0,
        ts_ns: now,
    };
    e.state.add_sample("hr-1", sample, now).unwrap();
    let client_now = 1.7e12 + e.state.clock.now_ns() as f64 / 1e6;
    for (t, want) in [
        (client_now - 3_600_000.0, 422), // an hour before it arrived
        (client_now + 60_000.0, 422),    // a minute in the future
        (4.1e12, 422),                   // beyond any plausible clock
        (client_now - 1000.0, 201),      // a second ago: fine
    ] {
        let body = json!({ "source": "sensor", "kind": "heart_rate", "data": {}, "t": t });
        let (status, _, resp) = e
            .post("/api/events?client=hr-1", &[], body.to_string().as_bytes())
            .await;
        assert_eq!(status, want, "t={t}: {resp}");
        if want == 422 {
            assert!(
                resp.contains("client time") || resp.contains("maps to"),
                "{resp}"
            );
        }
    }
    assert_eq!((e.state.accepted(), e.state.rejected()), (1, 3));
    e.finish().await;
    let (events, _) = Bundle::new(&e.dir).read_events().unwrap();
    let t = events.iter().find(|x| x.kind == "heart_rate").unwrap().t_ns;
    assert!(
        (t - (e.state.clock.now_ns() - 1_000_000_000)).abs() < 2_000_000_000,
        "{t}"
    );
}

/// From `Origin: evil.example` with `text/plain`, markers and events were
/// accepted (201), `/api/stop` stopped the recording (202).
#[tokio::test]
async fn foreign_pages_cannot_post_markers_events_or_stop() {
    let mut e = Endpoint::start(&[]).await;
    let marker = br#"{"type":"note","text":"forged"}"#;
    let evil = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    for path in [
        "/api/markers",
        "/api/events",
        "/api/stop",
        "/api/clock/sync",
    ] {
        let (status, head, _) = e.post(path, &evil, marker).await;
        assert_eq!(status, 403, "{path}");
        assert!(!head.contains("access-control-allow"), "{head}");
    }
    // A same-site page on another port is another origin too.
    let (status, _, _) = e
        .post("/api/stop", &[("Origin", "http://127.0.0.1:1")], b"")
        .await;
    assert_eq!(status, 403);
    // A browser that leaves Origin out still says where the request came from.
    let (status, _, _) = e
        .post("/api/stop", &[("Sec-Fetch-Site", "cross-site")], b"")
        .await;
    assert_eq!(status, 403);
    // DNS rebinding: the page's own name in Host.
    let head = format!(
        "POST /api/stop HTTP/1.1\r\nHost: rebind.evil.example:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        e.addr.port()
    );
    let (status, _, _) = e.request(&head, b"").await;
    assert_eq!(status, 403);
    let (status, _, _) = e
        .request(
            "GET /api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            b"",
        )
        .await;
    assert_eq!(status, 403);
    // A plain form (no Origin, as an old browser might send) cannot post either.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, _, resp) = e
            .post("/api/markers", &[("Content-Type", ct)], marker)
            .await;
        assert_eq!(status, 415, "{ct}: {resp}");
    }
    assert!(e.stop.borrow().is_none(), "the recording was stopped");
    assert_eq!(e.client_lines(), 0);

    // The endpoint's own console and local tools keep working.
    let own = format!("http://{}", e.host());
    let (status, _, resp) = e
        .post(
            "/api/markers",
            &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
            marker,
        )
        .await;
    assert_eq!(status, 201, "{resp}");
    let (status, _, _) = e
        .post(
            "/api/markers",
            &[("Content-Type", "application/json; charset=utf-8")],
            marker,
        )
        .await;
    assert_eq!(status, 201);
    // Every response forbids framing and sniffing and allows only our scripts.
    let (status, head, body) = e.get("/operator", &[]).await;
    assert_eq!(status, 200);
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("script-src 'self'"), "{head}");
    assert!(
        !body.contains("<script>"),
        "inline script would need unsafe-inline"
    );
    let (status, _, js) = e.get("/operator.js", &[]).await;
    assert_eq!(status, 200);
    assert!(js.contains("/api/markers"));
    let (_, head, _) = e.get("/api/status", &[]).await;
    assert!(head.contains("frame-ancestors 'none'") && !head.contains("access-control-allow"));

    let (status, _, _) = e.post("/api/stop", &[], b"").await;
    assert_eq!(status, 202);
    assert_eq!(e.stop.borrow().as_deref(), Some("api"));
    assert_eq!(e.state.rejected(), 11);
    e.finish().await;
}

/// A page's WebSocket was treated like the probe's. Now a page without the
/// token may sync but its events are refused and counted; the probe's token,
/// an allow-listed origin, or no Origin at all (a local tool) may send.
#[tokio::test]
async fn websocket_from_a_page_without_the_token_may_sync_but_not_send_events() {
    let mut e = Endpoint::start(&["http://prototype.lab:8080"]).await;
    let mut page = e.ws("", Some("http://evil.example")).await.unwrap();
    // It cannot pose as another client either.
    let hello = ask(
        &mut page,
        json!({ "type": "hello", "client": "tab-victim" }),
    )
    .await;
    assert_ne!(hello["client"], "tab-victim");
    sync_once(&mut page, 1.7e12).await;
    let r = ask(
        &mut page,
        json!({ "type": "event", "id": 1, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "reject", "{r}");
    assert!(r["error"].as_str().unwrap().contains("token"), "{r}");
    assert!(
        e.state.clock_estimates().is_empty(),
        "a page's samples are not kept"
    );
    // A wrong token is no token.
    let mut guess = e
        .ws(
            "?token=00000000000000000000000000000000",
            Some("http://evil.example"),
        )
        .await
        .unwrap();
    let r = ask(
        &mut guess,
        json!({ "type": "event", "id": 1, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "reject");

    let token = format!("?token={}", e.state.config.probe_token);
    for (query, origin) in [
        (token.as_str(), Some("https://portal.example")),
        ("", Some("http://prototype.lab:8080")),
        ("", None),
    ] {
        let mut ws = e.ws(query, origin).await.unwrap();
        let c = format!("tab-{}", origin.map_or(0, str::len));
        ask(&mut ws, json!({ "type": "hello", "client": c })).await;
        sync_once(&mut ws, 1.7e12).await;
        let r = ask(
            &mut ws,
            json!({ "type": "event", "id": 1, "event": event("scroll") }),
        )
        .await;
        assert_eq!(r["type"], "ack", "{origin:?}: {r}");
        // A resend is acknowledged again, not re-recorded.
        let again = ask(
            &mut ws,
            json!({ "type": "event", "id": 1, "event": event("scroll") }),
        )
        .await;
        assert_eq!(
            (again["duplicate"].as_bool(), &again["seq"]),
            (Some(true), &r["seq"])
        );
    }
    assert_eq!(e.state.clock_estimates().len(), 3);
    // A sync_result must answer a sync of its own connection.
    let mut local = e.ws("", None).await.unwrap();
    let r = ask(
        &mut local,
        json!({ "type": "sync_result", "t0": 1.0, "t1": 2.0, "ts_ns": e.state.clock.now_ns() }),
    )
    .await;
    assert_eq!(r["type"], "reject");

    // Pages may hold only a few sockets open.
    let mut held = Vec::new();
    for _ in 2..limits::MAX_UNTRUSTED_WS {
        held.push(e.ws("", Some("http://evil.example")).await.unwrap());
    }
    let over = e.ws("", Some("http://evil.example")).await;
    assert!(over.is_err(), "socket over the page limit was opened");
    assert_eq!(e.state.accepted(), 3);
    assert_eq!(e.state.rejected(), 4);
    drop((page, guess, held));
    e.finish().await;
    assert_eq!(e.client_lines(), 3);
}

#[tokio::test]
async fn probe_js_over_http_never_carries_the_token() {
    let mut e = Endpoint::start(&[]).await;
    let (status, head, body) = e
        .get("/probe.js", &[("Origin", "http://prototype.lab")])
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("__lab_probe_present"));
    assert!(!body.contains(&e.state.config.probe_token));
    assert!(
        head.contains("cross-origin-resource-policy: cross-origin"),
        "{head}"
    );
    assert!(
        e.state
            .config
            .probe_ws_url()
            .contains(&e.state.config.probe_token)
    );
    e.finish().await;
}

/// `/api/markers` skipped the event size check and took a 900 KiB marker.
#[tokio::test]
async fn oversized_bodies_are_413_on_every_route_and_counted() {
    let mut e = Endpoint::start(&[]).await;
    // Refused on the declared length, before a byte of the body is read (so
    // the test sends none: unread data would make the close a reset).
    for (path, len) in [
        ("/api/markers", 900 * 1024),
        ("/api/markers", limits::MAX_BODY_BYTES + 1),
        ("/api/events", 900 * 1024),
        ("/api/clock/sync", 900 * 1024),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            e.host()
        );
        let (status, _, resp) = e.request(&head, b"").await;
        assert_eq!(status, 413, "{path}: {resp}");
        assert!(resp.contains("limit"), "{resp}");
    }
    // Chunked, without a length up front: cut off once it passes the limit.
    let head = format!(
        "POST /api/markers HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        e.host()
    );
    let n = limits::MAX_BODY_BYTES + 1;
    let mut chunked = format!("{n:x}\r\n").into_bytes();
    chunked.extend(std::iter::repeat_n(b' ', n));
    let (status, _, resp) = e.request(&head, &chunked).await;
    assert_eq!(status, 413, "{resp}");
    // Exactly at the limit is fine.
    let text = "x".repeat(limits::MAX_BODY_BYTES - 25);
    let body = format!(r#"{{"type":"note","text":"{text}"}}"#);
    assert_eq!(body.len(), limits::MAX_BODY_BYTES);
    let (status, _, resp) = e.post("/api/markers", &[], body.as_bytes()).await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!((e.state.rejected(), e.state.accepted()), (5, 1));
    e.finish().await;
}

/// WebSocket event ids were unbounded and remembered (150 ids of 900 KiB
/// = +137 MiB); messages over the limit are refused before parsing.
#[tokio::test]
async fn websocket_ids_and_messages_are_bounded() {
    let mut e = Endpoint::start(&[]).await;
    let mut ws = e.ws("", None).await.unwrap();
    let long_id = "i".repeat(limits::MAX_ID_BYTES);
    let r = ask(
        &mut ws,
        json!({ "type": "event", "id": long_id, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "reject");
    assert!(r["error"].as_str().unwrap().contains("id must be"), "{r}");
    let r = ask(
        &mut ws,
        json!({ "type": "event", "id": {"a": 1}, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "reject");
    let big = "x".repeat(limits::MAX_WS_MESSAGE_BYTES);
    let r = ask(&mut ws, json!({ "type": "event", "id": 1, "event": { "source": "browser", "kind": "x", "data": { "s": big } } })).await;
    assert_eq!(r["type"], "reject");
    assert!(r["error"].as_str().unwrap().contains("limit"), "{r}");
    let ok_id = "i".repeat(limits::MAX_ID_BYTES - 2); // quoted: exactly the limit
    let r = ask(
        &mut ws,
        json!({ "type": "event", "id": ok_id, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    // A frame far over the limit closes the socket instead of being buffered.
    let huge = "x".repeat(limits::MAX_WS_FRAME_BYTES + 1);
    let _ = ws.send(Message::Text(huge.into())).await;
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert_eq!(e.state.rejected(), 3);
    drop(ws);
    e.finish().await;
}

/// 400 forged clients were all copied into the manifest (1.7 MB rewritten every 2 s).
#[tokio::test]
async fn clock_clients_and_their_samples_are_bounded() {
    let mut e = Endpoint::start(&[]).await;
    for i in 0..limits::MAX_CLIENTS {
        e.state
            .add_sample(
                &format!("c{i}"),
                e.sample_now(1.7e12),
                e.state.clock.now_ns(),
            )
            .unwrap();
    }
    let body = json!({ "client": "one-too-many", "t0": 1.7e12, "t1": 1.7e12 + 1.0, "ts_ns": e.state.clock.now_ns() });
    let (status, _, resp) = e
        .post("/api/clock/sync", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(status, 429, "{resp}");
    assert_eq!(e.state.clock_estimates().len(), limits::MAX_CLIENTS);
    // A known client still syncs, up to its sample limit in the window.
    for _ in 1..limits::MAX_SAMPLES_PER_CLIENT {
        e.state
            .add_sample("c0", e.sample_now(1.7e12), e.state.clock.now_ns())
            .unwrap();
    }
    let body = json!({ "client": "c0", "t0": 1.7e12, "t1": 1.7e12 + 1.0, "ts_ns": e.state.clock.now_ns() });
    let (status, _, resp) = e
        .post("/api/clock/sync", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(status, 429, "{resp}");
    assert!(resp.contains("sync samples"), "{resp}");
    // Client names are bounded too.
    let body = json!({ "client": "x".repeat(limits::MAX_CLIENT_ID_BYTES + 1), "t0": 1.7e12, "t1": 1.7e12 + 1.0, "ts_ns": e.state.clock.now_ns() });
    let (status, _, _) = e
        .post("/api/clock/sync", &[], body.to_string().as_bytes())
        .await;
    assert_eq!(status, 422);
    assert_eq!(e.state.rejected(), 3);
    e.finish().await;
}

/// One client could flood the log; now it gets a burst, then 429 with Retry-After.
#[tokio::test]
async fn event_flood_from_one_client_is_rate_limited() {
    let mut e = Endpoint::start(&[]).await;
    let incoming = || IncomingEvent {
        source: EventSource::Observer,
        kind: "note".into(),
        data: json!({}),
        t: None,
        id: None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..limits::EVENT_BURST + 50 {
        let s = e.state.clone();
        tasks.push(tokio::spawn(async move {
            s.accept(incoming(), Some("flood"), None).await.is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    // The burst, plus at most what refilled while they ran.
    let refill =
        (started.elapsed().as_secs_f64() * f64::from(limits::EVENTS_PER_SECOND)).ceil() as usize;
    assert!(
        ok >= limits::EVENT_BURST as usize && ok <= limits::EVENT_BURST as usize + refill + 1,
        "{ok} accepted, refill {refill}"
    );
    // Over HTTP the same client, still flooding, gets 429 with Retry-After.
    let mut posts = Vec::new();
    for _ in 0..200 {
        let addr = e.addr;
        posts.push(tokio::spawn(async move {
            let body = br#"{"source":"observer","kind":"note"}"#;
            let head = format!(
                "POST /api/events?client=flood HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            String::from_utf8_lossy(&resp).to_ascii_lowercase()
        }));
    }
    let (mut created, mut limited) = (0, 0);
    for p in posts {
        let resp = p.await.unwrap();
        if resp.starts_with("http/1.1 201") {
            created += 1;
        } else {
            assert!(resp.starts_with("http/1.1 429"), "{resp}");
            assert!(resp.contains("retry-after: 1"), "{resp}");
            assert!(resp.contains("events per second"), "{resp}");
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "200 more posts from a flooding client were all accepted"
    );
    // Other clients are not affected.
    let (status, _, _) = e
        .post(
            "/api/events?client=calm",
            &[],
            br#"{"source":"observer","kind":"note"}"#,
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        e.state.rejected() as usize,
        limits::EVENT_BURST as usize + 50 - ok + limited
    );
    e.finish().await;
    assert_eq!(e.state.accepted() as usize, ok + created + 1);
    assert_eq!(e.client_lines(), ok + created + 1);
}

/// Of 300 posts whose client reset the connection, 82 were written but
/// neither counted nor acknowledged: the handler future was dropped between
/// queueing the event and counting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_never_leave_written_events_uncounted() {
    let mut e = Endpoint::start(&[]).await;
    let mut clients = Vec::new();
    for i in 0..300 {
        let addr = e.addr;
        let host = e.host();
        clients.push(tokio::spawn(async move {
            let body = format!(r#"{{"source":"observer","kind":"note","data":{{"n":{i}}}}}"#);
            let req = format!(
                "POST /api/events?client=r{} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                i % 7,
                body.len()
            );
            let s = TcpStream::connect(addr).await.unwrap();
            let mut s = s;
            s.write_all(req.as_bytes()).await.unwrap();
            // Reset rather than close, at a varying moment after the request.
            if i % 3 != 0 {
                tokio::time::sleep(Duration::from_micros((i % 5) * 300)).await;
            }
            let std = s.into_std().unwrap();
            let sock = socket_with_reset(std);
            drop(sock);
        }));
    }
    // And handler futures aborted right after they started.
    let mut aborted = Vec::new();
    for i in 0..100u64 {
        let s = e.state.clone();
        let t = tokio::spawn(async move {
            let ev = IncomingEvent {
                source: EventSource::Observer,
                kind: "note".into(),
                data: json!({ "aborted": i }),
                t: None,
                id: None,
            };
            let _ = s.accept(ev, Some("aborted"), None).await;
        });
        if i % 2 == 0 {
            tokio::task::yield_now().await;
        }
        t.abort();
        aborted.push(t);
    }
    for c in clients {
        c.await.unwrap();
    }
    for t in aborted {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    e.finish().await;
    let lines = e.client_lines();
    println!(
        "reset/aborted: {lines} of 400 events written, accepted = {}",
        e.state.accepted()
    );
    assert_eq!(e.state.accepted() as usize, lines);
    assert!(lines > 0);
}

/// SO_LINGER 0, so dropping the socket sends RST instead of FIN.
fn socket_with_reset(s: std::net::TcpStream) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    s
}

/// A half-sent request body held shutdown for 20 s (unbounded), and an open
/// WebSocket kept the log writer alive after the manifest was written.
#[tokio::test]
async fn half_sent_body_and_open_websocket_do_not_hold_shutdown() {
    let mut e = Endpoint::start(&[]).await;
    let mut half = TcpStream::connect(e.addr).await.unwrap();
    half.write_all(
        format!(
            "POST /api/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"source\":",
            e.host()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut ws = e.ws("", None).await.unwrap();
    sync_once(&mut ws, 1.7e12).await;
    let r = ask(
        &mut ws,
        json!({ "type": "event", "id": 1, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "ack");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = e.finish().await;
    assert!(took < Duration::from_millis(2000), "shutdown took {took:?}");
    // The WebSocket was told, and the half-sent request was cut.
    let mut closed = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        match m {
            Ok(Message::Close(f)) => {
                closed = f.is_some_and(|f| f.reason.contains("stopped"));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert!(closed, "the probe's socket got no close frame");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(2), half.read_to_end(&mut rest))
        .await
        .expect("the half-sent request's connection was cut");
    assert!(n.is_ok() || n.is_err());
    // After the stop nothing more is written or counted.
    let incoming = IncomingEvent {
        source: EventSource::Observer,
        kind: "note".into(),
        data: json!({}),
        t: None,
        id: None,
    };
    assert!(e.state.accept(incoming, None, None).await.is_err());
    assert_eq!((e.state.accepted(), e.client_lines()), (1, 1));
}

/// A marker nested 127 levels deep was accepted and stored 128 deep, one
/// level more than serde_json reads, so the whole bundle failed to import;
/// and numbers that grow when re-serialised (`9e15` is stored as
/// `9000000000000000.0`) slipped a 34 KB line past the 16 KiB limit.
#[tokio::test]
async fn events_that_would_not_read_back_are_refused_and_the_log_stays_readable() {
    let mut e = Endpoint::start(&[]).await;
    let deep = format!(
        "{{\"type\":\"note\",\"x\":{}{}}}",
        "[".repeat(126),
        "]".repeat(126)
    );
    let (status, _, body) = e.post("/api/markers", &[], deep.as_bytes()).await;
    assert_eq!(status, 422, "{body}");
    let nums = vec!["9e15"; 1800].join(",");
    let grow = format!("{{\"source\":\"observer\",\"kind\":\"note\",\"data\":{{\"n\":[{nums}]}}}}");
    assert!(grow.len() <= limits::MAX_EVENT_BYTES);
    let (status, _, body) = e.post("/api/events", &[], grow.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    let (status, _, _) = e
        .post("/api/markers", &[], br#"{"type":"note","text":"ok"}"#)
        .await;
    assert_eq!(status, 201);
    let rejected = e.state.rejected();
    assert!(rejected >= 2, "{rejected}");
    e.finish().await;
    assert_eq!(e.client_lines(), 1, "the log reads back whole");
    assert_eq!(e.state.accepted(), 1);
}

/// A string the probe cut inside an emoji carries a lone UTF-16 surrogate;
/// serde_json refused the whole message before reading its id, so the probe
/// never matched the reject and resent the event forever.
#[tokio::test]
async fn an_event_with_a_lone_surrogate_is_acknowledged_with_a_replacement_character() {
    let mut e = Endpoint::start(&[]).await;
    let mut ws = e.ws("", None).await.unwrap();
    ws.send(Message::Text(
        r#"{"type":"event","id":57,"event":{"source":"browser","kind":"custom","data":{"x":"Далее \ud83d"}}}"#
            .into(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let r: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(
        (r["type"].as_str(), r["id"].as_i64()),
        (Some("ack"), Some(57)),
        "{r}"
    );
    drop(ws);
    e.finish().await;
    let (events, _) = Bundle::new(&e.dir).read_events().unwrap();
    let custom = events.iter().find(|ev| ev.kind == "custom").unwrap();
    assert_eq!(custom.data["x"], "Далее \u{fffd}");
}

/// A header a check relies on was read as absent when its value was not
/// ASCII: a WebSocket with a garbled Origin was trusted as a local tool, and
/// a POST with a garbled Sec-Fetch-Site was let through.
#[tokio::test]
async fn unreadable_origin_or_fetch_site_headers_count_as_foreign() {
    let mut e = Endpoint::start(&[]).await;
    let (status, _, body) = e
        .post("/api/stop", &[("Sec-Fetch-Site", "cross-siteé")], b"")
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(e.stop.borrow().is_none(), "the recording was not stopped");
    let mut req = format!("ws://{}/ws", e.addr).into_client_request().unwrap();
    req.headers_mut().insert(
        "origin",
        axum::http::HeaderValue::from_bytes("http://évil.example".as_bytes()).unwrap(),
    );
    let (mut page, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello = ask(
        &mut page,
        json!({ "type": "hello", "client": "tab-victim" }),
    )
    .await;
    assert_ne!(hello["client"], "tab-victim", "{hello}");
    let r = ask(
        &mut page,
        json!({ "type": "event", "id": 1, "event": event("scroll") }),
    )
    .await;
    assert_eq!(r["type"], "reject", "{r}");
    drop(page);
    e.finish().await;
    assert_eq!(e.client_lines(), 0);
}

/// The station console sends a participant's answer again after a failure
/// half way: named by `?client=` and `id`, it is written once. A participant
/// answer out of range, or any other kind under that source, is refused.
#[tokio::test]
async fn participant_answers_are_checked_and_written_once_when_resent() {
    let e = Endpoint::start(&[]).await;
    let answer =
        br#"{"source":"participant","kind":"self_report.seq","data":{"task":"t1","score":6},"id":"S-0-0"}"#;
    let (first, _, a) = e
        .post("/api/events?client=station-console", &[], answer)
        .await;
    let (again, _, b) = e
        .post("/api/events?client=station-console", &[], answer)
        .await;
    assert_eq!((first, again), (201, 201), "{a} {b}");
    let seq = |body: &str| serde_json::from_str::<Value>(body).unwrap()["seq"].clone();
    assert_eq!(
        seq(&a),
        seq(&b),
        "the resend is acknowledged with the first seq"
    );
    for bad in [
        &br#"{"source":"participant","kind":"self_report.seq","data":{"task":"t1","score":9}}"#[..],
        br#"{"source":"participant","kind":"click","data":{"x":1,"y":2,"selector":"a"}}"#,
    ] {
        let (status, _, body) = e.post("/api/events", &[], bad).await;
        assert_eq!(status, 422, "{body}");
    }
    // A page the station browser should open, without a browser: 503.
    let (status, _, _) = e
        .post(
            "/api/browser/open",
            &[],
            br#"{"url":"http://127.0.0.1:7600/participant"}"#,
        )
        .await;
    assert_eq!(status, 503);
    let (status, _, _) = e
        .post(
            "/api/browser/open",
            &[],
            br#"{"url":"javascript:alert(1)"}"#,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(e.client_lines(), 1, "one answer written");
}
