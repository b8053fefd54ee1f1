//! The probe's WebSocket: how far a connection is trusted (per-recording
//! token, `recording.probe_origins`, or an untrusted page that may only sync
//! clocks), the connection caps, and the message protocol.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, parse_event};
use super::guard::{own_origin, present_header};
use super::state::{Accepted, EndpointState};
use crate::clock::SyncSample;
use crate::limits::{self, TokenBucket};

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
pub(super) struct WsQuery {
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

pub(super) async fn ws_upgrade(
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
