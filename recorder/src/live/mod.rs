//! The observation room's station side (`--live-server`): one WebSocket to
//! lab-web (`/api/v1/live/station/{session id}`, the station token) that carries the
//! session live, and brings observers' notes back.
//!
//! - Media: the pipeline's live branches (`pipeline`, `live_sink_<group>`)
//!   give fragmented MP4; `fmp4` cuts it into the init segment and 100 ms
//!   fragments. A binary message is `[track index][kind][bytes]`, kind 0 the
//!   init segment, 1 a fragment a viewer can start at (a key frame), 2 any
//!   other fragment.
//! - Text: `hello` (the session, its tracks' MSE types and its journey's
//!   steps), `event` (every event once it is durable in `events.jsonl`),
//!   `step` (the journey step entered, by `lab_model::step_tracker`, the
//!   analyzer's rules), `clock` (session time against Unix time, each
//!   second), `end`.
//! - From lab-web: `note` (an observer's note), written through the
//!   endpoint as an `observer` `marker` event at the session time the
//!   observer typed it, so it is in the bundle on the session clock and
//!   comes back to every observer as an `event`.
//!
//! Recording stays first: media readers hand fragments on with `try_send`
//! and drop them (then wait for the next key frame) when the link is
//! behind; every send to lab-web has a deadline; a lost connection is
//! retried with back-off while the recording goes on untouched.

pub mod fmp4;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use lab_model::EventSource;
use lab_model::step_tracker::{StepChange, StepTracker};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use self::fmp4::{Piece, Splitter};
use crate::server::EndpointState;

/// Where the live view goes.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// lab-web's address, `http://host:port`.
    pub server: String,
    /// The station token (`lab-web station add`).
    pub token: String,
    /// The life situation's journey: the step entered goes out as it happens.
    pub journey: Option<lab_model::Journey>,
}

/// The longest an observer's note may be, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// The longest a note may take from the observer's page to here and still
/// keep the time it was typed.
const MAX_NOTE_AGE: Duration = Duration::from_secs(5);
/// A send to lab-web that takes longer drops the connection.
const SEND_DEADLINE: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A media piece on its way to the link.
struct Media {
    track: u8,
    piece: Piece,
}

/// The running live link: media reader threads and the connection task.
pub struct LiveLink {
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
    end: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveLink {
    /// Starts reading the live branches of `pipeline` (`groups`) and
    /// connecting to lab-web. `hello` describes the session.
    pub fn start(
        pipeline: &gst::Pipeline,
        groups: &[String],
        opts: LiveOptions,
        hello: Value,
        state: Arc<EndpointState>,
    ) -> LiveLink {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Media>(256);
        let mut readers = Vec::new();
        let zeros: Vec<Arc<AtomicI64>> = groups
            .iter()
            .map(|g| first_timestamp(pipeline, g))
            .collect();
        for (i, g) in groups.iter().enumerate() {
            let Some(sink) = pipeline
                .by_name(&format!("live_sink_{g}"))
                .and_then(|e| e.downcast::<AppSink>().ok())
            else {
                continue;
            };
            let (stop, tx) = (stop.clone(), tx.clone());
            let track = i as u8;
            let spawned = std::thread::Builder::new()
                .name(format!("live-{g}"))
                .spawn(move || read_media(&sink, track, &tx, &stop));
            match spawned {
                Ok(h) => readers.push(h),
                Err(e) => tracing::warn!("live view: no reader for {g}: {e}"),
            }
        }
        let (end, end_rx) = watch::channel(false);
        let events = state.log.subscribe();
        let link = Link {
            opts,
            hello,
            groups: groups.to_vec(),
            state,
            inits: vec![None; groups.len()],
            zeros,
            notes: Default::default(),
            media_open: true,
            events_open: true,
            tracker: StepTracker::default(),
            step: None,
        };
        let task = tokio::spawn(link.run(rx, events, end_rx));
        LiveLink {
            stop,
            readers,
            end,
            task,
        }
    }

    /// Tells lab-web the session ended and closes the link (bounded: the
    /// recording's finish never waits on the network for long).
    pub async fn stop(self) {
        let _ = self.end.send(true);
        self.stop.store(true, Ordering::SeqCst);
        let mut task = self.task;
        if tokio::time::timeout(SEND_DEADLINE * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        let readers = self.readers;
        let _ = tokio::task::spawn_blocking(move || {
            for r in readers {
                let _ = r.join();
            }
        })
        .await;
    }
}

/// Unknown yet, in [`first_timestamp`]'s cell.
const UNKNOWN: i64 = i64::MIN;

/// The session time of the first buffer entering the live muxer of
/// `track`, once it has passed (mp4mux starts each track's timeline at 0;
/// the viewer shifts it by this).
fn first_timestamp(pipeline: &gst::Pipeline, track: &str) -> Arc<AtomicI64> {
    let cell = Arc::new(AtomicI64::new(UNKNOWN));
    let pad = pipeline
        .by_name(&format!("live_{track}"))
        .and_then(|mux| mux.sink_pads().into_iter().next());
    if let Some(pad) = pad {
        let c = cell.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            // Running time, i.e. session time: an encoder's timestamps may
            // be shifted inside their segment (x264enc adds 1000 hours).
            let segment = pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|e| e.segment().downcast_ref::<gst::ClockTime>().cloned());
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data
                && let (Some(pts), Some(segment)) = (b.pts(), segment)
                && let Some(t) = segment.to_running_time(pts)
            {
                c.store(t.nseconds() as i64, Ordering::SeqCst);
                return gst::PadProbeReturn::Remove;
            }
            gst::PadProbeReturn::Ok
        });
    }
    cell
}

/// Pulls the muxer's output, cuts it into pieces and hands them on; when
/// the link is behind, drops fragments until the next key frame.
fn read_media(sink: &AppSink, track: u8, tx: &mpsc::Sender<Media>, stop: &AtomicBool) {
    let mut splitter = Splitter::default();
    let mut waiting_key = false;
    while !stop.load(Ordering::SeqCst) {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            if sink.is_eos() {
                break;
            }
            continue;
        };
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let Ok(map) = buffer.map_readable() else {
            continue;
        };
        let pieces = match splitter.push(map.as_slice()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("live view: {e}; the live branch stops, the recording goes on");
                break;
            }
        };
        for piece in pieces {
            let key = matches!(
                piece,
                Piece::Init { .. } | Piece::Fragment { key: true, .. }
            );
            if waiting_key && !key {
                continue;
            }
            waiting_key = tx.try_send(Media { track, piece }).is_err();
        }
    }
}

/// Why a connection ended.
enum Closed {
    /// The session ended and lab-web was told.
    Ended,
    Dropped(String),
}

struct Link {
    opts: LiveOptions,
    hello: Value,
    groups: Vec<String>,
    state: Arc<EndpointState>,
    /// Each track's init segment and MSE type, sent first on every connection.
    inits: Vec<Option<(Vec<u8>, String)>>,
    /// Each track's first timestamp ([`first_timestamp`]).
    zeros: Vec<Arc<AtomicI64>>,
    /// Ids of the notes written, so a resend is not written twice.
    notes: std::collections::HashSet<String>,
    /// Whether the media readers and the event log still send (a closed
    /// channel is ready at once: polling it again would spin).
    media_open: bool,
    events_open: bool,
    /// The journey step the session is in, and its last `step` message.
    tracker: StepTracker,
    step: Option<Value>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn frame(track: u8, kind: u8, bytes: &[u8]) -> Message {
    let mut m = Vec::with_capacity(bytes.len() + 2);
    m.extend_from_slice(&[track, kind]);
    m.extend_from_slice(bytes);
    Message::Binary(m.into())
}

impl Link {
    async fn run(
        mut self,
        mut media: mpsc::Receiver<Media>,
        mut events: broadcast::Receiver<lab_model::Event>,
        mut end: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_secs(1);
        let mut said = false;
        loop {
            match self.connect().await {
                Ok(ws) => {
                    backoff = Duration::from_secs(1);
                    if said {
                        tracing::info!("live view: connected to {} again", self.opts.server);
                    }
                    said = false;
                    match self.serve(ws, &mut media, &mut events, &mut end).await {
                        Closed::Ended => return,
                        Closed::Dropped(why) => {
                            tracing::warn!("live view: connection to lab-web lost: {why}");
                        }
                    }
                }
                Err(e) if !said => {
                    tracing::warn!(
                        "live view: cannot reach {}: {e}; retrying, the recording goes on",
                        self.opts.server
                    );
                    said = true;
                }
                Err(_) => {}
            }
            // Until the next try, keep the init segments and let the rest go.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                let (media_open, events_open) = (self.media_open, self.events_open);
                tokio::select! {
                    _ = &mut wait => break,
                    m = media.recv(), if media_open => match m {
                        Some(Media { track, piece: Piece::Init { bytes, mime } }) => {
                            if let Some(slot) = self.inits.get_mut(usize::from(track)) {
                                *slot = Some((bytes, mime));
                            }
                        }
                        Some(_) => {}
                        None => self.media_open = false,
                    },
                    e = events.recv(), if events_open => match e {
                        Ok(e) => {
                            self.track(&e);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => self.events_open = false,
                    },
                    _ = end.changed() => return,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        String,
    > {
        let base = self.opts.server.trim_end_matches('/');
        let url = match base.strip_prefix("http://") {
            Some(rest) => format!(
                "ws://{rest}/api/v1/live/station/{}",
                self.hello["session_id"].as_str().unwrap_or("")
            ),
            None => return Err(format!("{base}: only http:// servers are supported")),
        };
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        let auth = format!("Bearer {}", self.opts.token)
            .parse()
            .map_err(|_| "the station token is not a valid header value".to_string())?;
        req.headers_mut().insert("authorization", auth);
        // No Nagle delay: notes and events are small and must go at once.
        let connect = tokio_tungstenite::connect_async_with_config(req, None, true);
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in 5 s".into()),
        }
    }

    fn hello(&self) -> Message {
        let mut h = self.hello.clone();
        h["type"] = json!("hello");
        if let Some(j) = &self.opts.journey {
            h["journey"] = json!({
                "id": j.id,
                "title": j.title,
                "steps": j.steps.iter().map(|s| json!({ "id": s.id, "title": s.title })).collect::<Vec<_>>(),
            });
        }
        h["tracks"] = json!(
            self.groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let zero = self
                        .zeros
                        .get(i)
                        .map_or(UNKNOWN, |z| z.load(Ordering::SeqCst));
                    json!({
                        "id": g,
                        "mime": self.inits.get(i).and_then(|x| x.as_ref()).map(|(_, m)| m),
                        "media_zero_ms": (zero != UNKNOWN).then(|| zero as f64 / 1e6),
                    })
                })
                .collect::<Vec<_>>()
        );
        Message::Text(h.to_string().into())
    }

    /// Follows the journey with event `e`; the `step` message when it
    /// entered or left a step.
    fn track(&mut self, e: &lab_model::Event) -> Option<Message> {
        let journey = self.opts.journey.as_ref()?;
        let step = match self.tracker.observe(journey, e) {
            StepChange::Same => return None,
            StepChange::Entered { step, .. } => json!({
                "type": "step",
                "step": journey.steps[step].id,
                "title": journey.steps[step].title,
                "index": step,
                "t_ns": e.t_ns,
            }),
            StepChange::TaskEnd { .. } => json!({ "type": "step", "step": null, "t_ns": e.t_ns }),
        };
        let message = Message::Text(step.to_string().into());
        self.step = Some(step);
        Some(message)
    }

    fn clock(&self) -> Message {
        let session_ms = self.state.clock.now_ns() as f64 / 1e6;
        Message::Text(
            json!({ "type": "clock", "session_ms": session_ms, "unix_ms": unix_ms() })
                .to_string()
                .into(),
        )
    }

    async fn serve<S>(
        &mut self,
        ws: S,
        media: &mut mpsc::Receiver<Media>,
        events: &mut broadcast::Receiver<lab_model::Event>,
        end: &mut watch::Receiver<bool>,
    ) -> Closed
    where
        S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
            + futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        let (mut tx, mut rx) = ws.split();
        macro_rules! send {
            ($m:expr) => {
                match tokio::time::timeout(SEND_DEADLINE, tx.send($m)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Closed::Dropped(e.to_string()),
                    Err(_) => {
                        return Closed::Dropped("lab-web did not take a message in 2 s".into())
                    }
                }
            };
        }
        send!(self.hello());
        if let Some(step) = &self.step {
            send!(Message::Text(step.to_string().into()));
        }
        for (i, init) in self.inits.iter().enumerate() {
            if let Some((bytes, _)) = init {
                send!(frame(i as u8, 0, bytes));
            }
        }
        // Each track starts (again) at a key frame on a new connection.
        let mut synced = vec![false; self.groups.len()];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let (media_open, events_open) = (self.media_open, self.events_open);
            tokio::select! {
                m = media.recv(), if media_open => {
                    // The readers are gone (the live branches ended): only
                    // events and notes go on.
                    let Some(Media { track, piece }) = m else {
                        self.media_open = false;
                        continue;
                    };
                    let t = usize::from(track);
                    match piece {
                        Piece::Init { bytes, mime } => {
                            let message = frame(track, 0, &bytes);
                            if let Some(slot) = self.inits.get_mut(t) {
                                *slot = Some((bytes, mime));
                            }
                            // The type and time zero first, then the segment.
                            send!(self.hello());
                            send!(message);
                        }
                        Piece::Fragment { bytes, key } => {
                            if key && let Some(s) = synced.get_mut(t) {
                                *s = true;
                            }
                            if synced.get(t).copied().unwrap_or(false) {
                                send!(frame(track, if key { 1 } else { 2 }, &bytes));
                            }
                        }
                    }
                }
                e = events.recv(), if events_open => match e {
                    Ok(e) => {
                        let step = self.track(&e);
                        send!(Message::Text(json!({ "type": "event", "event": e }).to_string().into()));
                        if let Some(step) = step {
                            send!(step);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("live view: {n} events not sent (the bundle has them)");
                    }
                    Err(broadcast::error::RecvError::Closed) => self.events_open = false,
                },
                _ = tick.tick() => send!(self.clock()),
                _ = end.changed() => {
                    send!(Message::Text(json!({ "type": "end" }).to_string().into()));
                    let _ = tokio::time::timeout(SEND_DEADLINE, tx.close()).await;
                    return Closed::Ended;
                }
                m = rx.next() => match m {
                    Some(Ok(Message::Text(text))) => self.note(text.as_str()).await,
                    Some(Ok(Message::Close(_))) | None => return Closed::Dropped("lab-web closed the connection".into()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Closed::Dropped(e.to_string()),
                },
            }
        }
    }

    /// An observer's note from lab-web: an `observer` `marker` event at the
    /// session time the observer's page says it was typed (from the clock
    /// messages it gets; taken only within [`MAX_NOTE_AGE`] before it
    /// arrives, else its arrival), written once per note id.
    async fn note(&mut self, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            tracing::warn!("live view: lab-web sent something that is not JSON");
            return;
        };
        if msg["type"] != "note" {
            return;
        }
        let body = msg["text"].as_str().unwrap_or("").trim();
        let id = msg["id"].as_str().unwrap_or("");
        if body.is_empty() || id.is_empty() || id.len() > 64 {
            return;
        }
        if self.notes.contains(id) {
            return;
        }
        if self.notes.len() >= 10_000 {
            self.notes.clear();
        }
        self.notes.insert(id.to_string());
        let body: String = body.chars().take(MAX_NOTE_CHARS).collect();
        let mut data = json!({
            "type": "note",
            "text": body,
            "observer": msg["observer"].as_str().unwrap_or("").chars().take(120).collect::<String>(),
            "note_id": id,
            "via": "live",
        });
        if let Some(seen) = msg["seen_ms"].as_f64().filter(|s| s.is_finite()) {
            data["seen_ms"] = json!(seen);
        }
        let now = self.state.clock.now_ns();
        let typed = msg["typed_ms"]
            .as_f64()
            .filter(|t| t.is_finite())
            .map(|t| (t * 1e6) as i64)
            .filter(|t| (now - MAX_NOTE_AGE.as_nanos() as i64..=now).contains(t));
        let (t_ns, uncertainty) = match typed {
            Some(t) => (t, Some(now - t)),
            None => (now, None),
        };
        self.state
            .stamped_event(EventSource::Observer, t_ns, uncertainty, "marker", data)
            .await;
    }
}
