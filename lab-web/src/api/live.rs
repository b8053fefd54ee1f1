//! The observation room's routes (`crate::live`): the list of live
//! sessions, the station's socket and the observers' socket.

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{self, Auth, Right};
use crate::error::{ApiError, ApiResult};
use crate::live::{FromStation, LiveSession, MAX_STATION_MESSAGE, Refused};
use crate::state::AppState;

/// The longest note an observer may type, in characters.
const MAX_NOTE_CHARS: usize = 2000;
/// Notes per observer per minute.
const NOTES_PER_MINUTE: usize = 30;
/// A send to an observer that takes longer drops that observer.
const SEND_DEADLINE: Duration = Duration::from_secs(5);
/// How long a session whose station dropped stays listed.
const STATION_GRACE: Duration = Duration::from_secs(120);

/// `GET /live`: the sessions streaming now.
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Right::Live)?;
    Ok(Json(json!({ "sessions": state.live.list() })))
}

/// `GET /live/station/{id}`: a station streams session `id` (station token).
pub async fn station(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let (_, name) = auth.station()?;
    if !lab_model::bundle::valid_session_id(&id) {
        return Err(ApiError::BadRequest(format!("{id:?} is not a session id")));
    }
    let (session, n, mut notes) = match state.live.attach(&id, name) {
        Ok(x) => x,
        Err(Refused::NotOurs) => {
            return Err(ApiError::Conflict(format!(
                "сессию {id} ведёт другая станция / another station streams session {id}"
            )));
        }
        Err(Refused::Full) => return Err(ApiError::Busy),
    };
    let hub = state.clone();
    Ok(ws
        .max_message_size(MAX_STATION_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (mut tx, mut rx) = socket.split();
            // A newer connection of the station takes the notes' sender:
            // this one stops listening for notes (a closed channel would
            // answer at once, for ever).
            let mut notes_open = true;
            let ended = loop {
                tokio::select! {
                    m = rx.next() => match m {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break false,
                        Some(Ok(m)) => match session.from_station(m) {
                            FromStation::Continue => {}
                            FromStation::End => break true,
                            FromStation::Bad(why) => {
                                tracing::warn!("live {}: the station sent {why}; closing", session.id);
                                break false;
                            }
                        },
                    },
                    note = notes.recv(), if notes_open => {
                        let Some(note) = note else {
                            notes_open = false;
                            continue;
                        };
                        let sent = tokio::time::timeout(SEND_DEADLINE, tx.send(Message::Text(note.into()))).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            break false;
                        }
                    }
                }
            };
            hub.live.detach(&session, n, ended);
            if !ended {
                tokio::time::sleep(STATION_GRACE).await;
                hub.live.forget_if_idle(&session, n);
            }
        }))
}

/// A cookie-authenticated socket must come from a page of this server: the
/// `Origin` names the `Host` it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => {
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            bare == Some(host)
        }
        _ => false,
    }
}

/// `GET /live/{id}/watch`: an observer watches session `id`.
pub async fn watch(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    auth.require(Right::Live)?;
    if auth.csrf.is_some() && !same_origin(&headers) {
        return Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "просмотр открывается только со страниц этого сервера / live view opens from this server's pages only",
        ));
    }
    let session = state
        .live
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("live session {id}")))?;
    let Some((first, mut feed)) = session.join() else {
        return Err(ApiError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "observers_full",
            format!(
                "сессию уже смотрят {} наблюдателей / {} observers are watching already",
                crate::live::MAX_OBSERVERS,
                crate::live::MAX_OBSERVERS
            ),
        ));
    };
    // Counted from here: the guard gives the place back when the socket
    // closes, or when the upgrade never happens and the callback is dropped.
    let watching = Watching(session);
    auth::audit(&state, Some(&auth.user), "live_watch", &id, "").await;
    let observer = if auth.user.name.is_empty() {
        auth.user.login.clone()
    } else {
        auth.user.name.clone()
    };
    Ok(ws
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| async move {
            serve_observer(socket, &watching.0, first, &mut feed, &observer).await;
        }))
}

/// One observer's place in [`LiveSession::join`]'s count.
struct Watching(std::sync::Arc<LiveSession>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.leave();
    }
}

async fn serve_observer(
    socket: WebSocket,
    session: &LiveSession,
    first: Vec<Message>,
    feed: &mut tokio::sync::broadcast::Receiver<Message>,
    observer: &str,
) {
    let (mut tx, mut rx) = socket.split();
    macro_rules! send {
        ($m:expr) => {
            match tokio::time::timeout(SEND_DEADLINE, tx.send($m)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        };
    }
    for m in first {
        send!(m);
    }
    // After a lag, each track waits for its next key frame.
    let mut resync = [false; crate::live::MAX_TRACKS];
    let mut sent_notes: std::collections::VecDeque<std::time::Instant> = Default::default();
    loop {
        tokio::select! {
            m = feed.recv() => match m {
                Ok(Message::Binary(b)) => {
                    let (t, kind) = (usize::from(b[0]), b[1]);
                    if kind != 2 {
                        resync[t] = false;
                    }
                    if !resync[t] {
                        send!(Message::Binary(b));
                    }
                }
                Ok(m) => send!(m),
                Err(RecvError::Lagged(_)) => resync = [true; crate::live::MAX_TRACKS],
                Err(RecvError::Closed) => return,
            },
            m = rx.next() => match m {
                Some(Ok(Message::Text(text))) => {
                    let reply = note(session, text.as_str(), observer, &mut sent_notes);
                    send!(Message::Text(reply.to_string().into()));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// An observer's `{"type":"note","id":…,"text":…,"typed_ms":…,"seen_ms":…}`: checked, named
/// and sent to the station. The answer says whether it went; the note
/// itself comes back to everyone as the station's event.
fn note(
    session: &LiveSession,
    text: &str,
    observer: &str,
    sent: &mut std::collections::VecDeque<std::time::Instant>,
) -> Value {
    let refuse = |id: &Value, why: &str| json!({ "type": "note_refused", "id": id, "reason": why });
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return refuse(&Value::Null, "не JSON / not JSON");
    };
    let id = v["id"].clone();
    if v["type"] != "note" {
        return refuse(&id, "неизвестное сообщение / unknown message");
    }
    let body = v["text"].as_str().unwrap_or("").trim();
    if body.is_empty() || body.chars().count() > MAX_NOTE_CHARS {
        return refuse(
            &id,
            &format!(
                "заметка от 1 до {MAX_NOTE_CHARS} знаков / a note is 1 to {MAX_NOTE_CHARS} characters"
            ),
        );
    }
    let note_id = match id.as_str() {
        Some(s)
            if !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            s.to_string()
        }
        _ => return refuse(&id, "нет id заметки / the note needs an id"),
    };
    let now = std::time::Instant::now();
    while sent
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        sent.pop_front();
    }
    if sent.len() >= NOTES_PER_MINUTE {
        return refuse(&id, "слишком часто / too many notes, wait a minute");
    }
    let mut out = json!({ "type": "note", "id": note_id, "text": body, "observer": observer });
    for key in ["seen_ms", "typed_ms"] {
        if let Some(x) = v[key].as_f64().filter(|x| x.is_finite()) {
            out[key] = json!(x);
        }
    }
    if session.note(out) {
        sent.push_back(now);
        json!({ "type": "note_sent", "id": id })
    } else {
        refuse(&id, "станция не на связи / the station is not connected")
    }
}
