//! The observation room's hub: sessions being recorded right now, as their
//! stations stream them (`lab-recorder record --live-server`), relayed to
//! up to [`MAX_OBSERVERS`] observers each. The station sends one stream;
//! lab-web keeps what a new observer needs to start at once (the hello,
//! each track's init segment and the fragments since its last key frame,
//! the recent events) and fans every message out. Nothing here is stored:
//! what lasts is the station's bundle, observers' notes included.
//!
//! Wire format (both sockets): text messages are JSON (`hello`, `event`,
//! `step`, `clock`, `end`, `station_lost`, `note`); a binary message is `[track
//! index][kind][bytes]`, kind 0 an init segment, 1 a fragment starting at a
//! key frame, 2 any other fragment (`recorder/src/live/mod.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::Message;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

/// Observers one live session takes at once.
pub const MAX_OBSERVERS: usize = 20;
/// Live sessions at once (each holds a few MiB).
pub const MAX_SESSIONS: usize = 64;
/// Tracks a station may send (screen, camera, ...).
pub const MAX_TRACKS: usize = 4;
/// Events kept for an observer who joins late.
const RECENT_EVENTS: usize = 300;
/// Bytes kept per track since its last key frame; a GOP beyond it is cut
/// (a joining observer then waits for the next key frame).
const MAX_GOP_BYTES: usize = 16 << 20;
/// The largest message a station may send (a fragment of 100 ms).
pub const MAX_STATION_MESSAGE: usize = 8 << 20;
/// The largest text message (an event is at most 17 KiB in the bundle).
const MAX_STATION_TEXT: usize = 64 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a new observer is sent first.
#[derive(Default)]
struct Cache {
    hello: Value,
    /// The station's last `clock` and when it came: a joiner is handed it
    /// aged by the time since (`aged_clock`), not as it was up to a second
    /// ago, so its session clock is right from the first frame.
    clock: Option<(Value, Instant)>,
    /// The journey step the participant is in (the station's last `step`).
    step: Option<String>,
    inits: Vec<Option<Bytes>>,
    gops: Vec<Vec<Bytes>>,
    gop_bytes: Vec<usize>,
    events: VecDeque<String>,
    /// The station is connected now.
    connected: bool,
}

pub struct LiveSession {
    pub id: String,
    pub station: String,
    cache: Mutex<Cache>,
    tx: broadcast::Sender<Message>,
    /// Notes on their way to the station, while one is connected.
    to_station: Mutex<Option<mpsc::Sender<String>>>,
    observers: AtomicUsize,
    /// Station connections so far: a closing old one leaves a newer alone.
    connection: AtomicUsize,
}

/// The hub in `AppState`.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
}

/// Why a station's hello is refused.
#[derive(Debug)]
pub enum Refused {
    NotOurs,
    Full,
}

impl Hub {
    /// The live sessions for the list: what their hellos say.
    pub fn list(&self) -> Vec<Value> {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        let mut out: Vec<Value> = sessions
            .iter()
            .map(|s| {
                let c = lock(&s.cache);
                json!({
                    "session_id": s.id,
                    "station": s.station,
                    "participant": c.hello["participant"],
                    "study": c.hello["study"],
                    "life_situation": c.hello["life_situation"],
                    "session_zero_unix_ms": c.hello["session_zero_unix_ms"],
                    "connected": c.connected,
                    "observers": s.observers.load(Ordering::SeqCst),
                })
            })
            .collect();
        out.sort_by(|a, b| a["session_id"].as_str().cmp(&b["session_id"].as_str()));
        out
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// A station's connection for session `id`: the session it streams
    /// (the same one again after a reconnection, so observers stay), and
    /// the connection's number and its notes' receiver.
    pub fn attach(
        &self,
        id: &str,
        station: &str,
    ) -> Result<(Arc<LiveSession>, usize, mpsc::Receiver<String>), Refused> {
        let mut sessions = lock(&self.sessions);
        let session = match sessions.get(id) {
            Some(s) if s.station != station => return Err(Refused::NotOurs),
            Some(s) => s.clone(),
            None => {
                if sessions.len() >= MAX_SESSIONS {
                    return Err(Refused::Full);
                }
                let s = Arc::new(LiveSession {
                    id: id.to_string(),
                    station: station.to_string(),
                    cache: Mutex::default(),
                    tx: broadcast::channel(512).0,
                    to_station: Mutex::default(),
                    observers: AtomicUsize::new(0),
                    connection: AtomicUsize::new(0),
                });
                sessions.insert(id.to_string(), s.clone());
                s
            }
        };
        let n = session.connection.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = mpsc::channel(64);
        *lock(&session.to_station) = Some(tx);
        lock(&session.cache).connected = true;
        Ok((session, n, rx))
    }

    /// The station's connection `n` closed: the session ends (`ended`) or
    /// waits for the station to come back.
    pub fn detach(&self, session: &Arc<LiveSession>, n: usize, ended: bool) {
        if session.connection.load(Ordering::SeqCst) != n {
            return;
        }
        *lock(&session.to_station) = None;
        {
            let mut c = lock(&session.cache);
            c.connected = false;
            let text = if ended {
                json!({ "type": "end" })
            } else {
                json!({ "type": "station_lost" })
            };
            let _ = session.tx.send(Message::Text(text.to_string().into()));
        }
        if ended {
            let mut sessions = lock(&self.sessions);
            if sessions
                .get(&session.id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.id);
            }
        }
    }

    /// Forgets a session whose station has been gone for good.
    pub fn forget_if_idle(&self, session: &Arc<LiveSession>, n: usize) {
        let idle =
            session.connection.load(Ordering::SeqCst) == n && !lock(&session.cache).connected;
        if idle {
            let mut sessions = lock(&self.sessions);
            if sessions
                .get(&session.id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.id);
            }
        }
    }
}

/// What the station said, for the station socket's loop.
pub enum FromStation {
    Continue,
    End,
    Bad(String),
}

impl LiveSession {
    /// Takes one message from the station: keeps what joiners need, then
    /// relays it (under the cache's lock, so a joiner's snapshot and its
    /// subscription never miss or repeat a message).
    pub fn from_station(&self, msg: Message) -> FromStation {
        let mut c = lock(&self.cache);
        match &msg {
            Message::Binary(b) => {
                let (Some(&track), Some(&kind)) = (b.first(), b.get(1)) else {
                    return FromStation::Bad("a binary message shorter than its header".into());
                };
                let t = usize::from(track);
                if t >= MAX_TRACKS || kind > 2 {
                    return FromStation::Bad(format!("track {track}, kind {kind}"));
                }
                if c.inits.len() <= t {
                    c.inits.resize(t + 1, None);
                    c.gops.resize(t + 1, Vec::new());
                    c.gop_bytes.resize(t + 1, 0);
                }
                match kind {
                    0 => {
                        c.inits[t] = Some(b.clone());
                        c.gops[t].clear();
                        c.gop_bytes[t] = 0;
                    }
                    1 => {
                        c.gops[t] = vec![b.clone()];
                        c.gop_bytes[t] = b.len();
                    }
                    _ => {
                        if !c.gops[t].is_empty() && c.gop_bytes[t] + b.len() <= MAX_GOP_BYTES {
                            c.gop_bytes[t] += b.len();
                            c.gops[t].push(b.clone());
                        } else {
                            c.gops[t].clear();
                            c.gop_bytes[t] = 0;
                        }
                    }
                }
            }
            Message::Text(text) => {
                if text.len() > MAX_STATION_TEXT {
                    return FromStation::Bad(format!("a text message of {} bytes", text.len()));
                }
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    return FromStation::Bad("a text message that is not JSON".into());
                };
                match v["type"].as_str() {
                    Some("hello") => c.hello = v,
                    Some("clock") => c.clock = Some((v, Instant::now())),
                    Some("step") => c.step = Some(text.to_string()),
                    Some("event") => {
                        if c.events.len() >= RECENT_EVENTS {
                            c.events.pop_front();
                        }
                        c.events.push_back(text.to_string());
                    }
                    Some("end") => return FromStation::End,
                    _ => return FromStation::Continue,
                }
            }
            _ => return FromStation::Continue,
        }
        let _ = self.tx.send(msg);
        FromStation::Continue
    }

    /// A new observer: the messages to send first, and the subscription
    /// for the rest. `None` when [`MAX_OBSERVERS`] are watching.
    pub fn join(&self) -> Option<(Vec<Message>, broadcast::Receiver<Message>)> {
        let n = self.observers.fetch_add(1, Ordering::SeqCst);
        if n >= MAX_OBSERVERS {
            self.observers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let c = lock(&self.cache);
        let rx = self.tx.subscribe();
        let mut first = vec![Message::Text(c.hello.to_string().into())];
        first.extend(
            c.clock
                .as_ref()
                .map(|(v, at)| Message::Text(aged_clock(v, at.elapsed()).into())),
        );
        first.extend(c.events.iter().map(|t| Message::Text(t.clone().into())));
        first.extend(c.step.iter().map(|t| Message::Text(t.clone().into())));
        for (t, init) in c.inits.iter().enumerate() {
            if let Some(init) = init {
                first.push(Message::Binary(init.clone()));
                first.extend(c.gops[t].iter().cloned().map(Message::Binary));
            }
        }
        if !c.connected {
            first.push(Message::Text(
                json!({ "type": "station_lost" }).to_string().into(),
            ));
        }
        Some((first, rx))
    }

    pub fn leave(&self) {
        self.observers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sends an observer's note to the station; false when none is connected
    /// or its queue is full.
    pub fn note(&self, note: Value) -> bool {
        match &*lock(&self.to_station) {
            Some(tx) => tx.try_send(note.to_string()).is_ok(),
            None => false,
        }
    }
}

/// A station's `clock` message as it would read `elapsed` later: its
/// session and wall times moved on by that much (the station sends one a
/// second; an observer page takes the least delayed it has seen, so a stale
/// one would make it read frames as shown before they were captured).
fn aged_clock(clock: &Value, elapsed: Duration) -> String {
    let mut v = clock.clone();
    let ms = elapsed.as_secs_f64() * 1e3;
    for key in ["session_ms", "unix_ms"] {
        if let Some(t) = v[key].as_f64() {
            v[key] = Value::from(t + ms);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(track: u8, kind: u8, tag: u8) -> Message {
        Message::Binary(Bytes::from(vec![track, kind, tag]))
    }

    #[test]
    fn a_joining_observer_starts_at_the_last_key_frame_with_the_init_segment() {
        let hub = Hub::default();
        let (s, _, _rx) = hub.attach("S1", "st1").unwrap();
        s.from_station(Message::Text(
            r#"{"type":"hello","participant":"P01"}"#.into(),
        ));
        for m in [
            bin(0, 0, 1),
            bin(0, 1, 2),
            bin(0, 2, 3),
            bin(0, 1, 4),
            bin(0, 2, 5),
        ] {
            s.from_station(m);
        }
        let (first, _) = s.join().unwrap();
        let tags: Vec<u8> = first
            .iter()
            .filter_map(|m| match m {
                Message::Binary(b) => Some(b[2]),
                _ => None,
            })
            .collect();
        assert_eq!(tags, [1, 4, 5]);
        assert_eq!(hub.list()[0]["participant"], "P01");
    }

    #[test]
    fn a_joining_observer_gets_the_last_clock_aged_to_now() {
        let hub = Hub::default();
        let (s, _, _rx) = hub.attach("S1", "st1").unwrap();
        s.from_station(Message::Text(
            r#"{"type":"clock","session_ms":1000.5,"unix_ms":1700000000000}"#.into(),
        ));
        std::thread::sleep(Duration::from_millis(300));
        let (first, _) = s.join().unwrap();
        let clock: Vec<Value> = first
            .iter()
            .filter_map(|m| match m {
                Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).ok(),
                _ => None,
            })
            .filter(|v| v["type"] == "clock")
            .collect();
        assert_eq!(clock.len(), 1, "{first:?}");
        let session = clock[0]["session_ms"].as_f64().unwrap();
        let unix = clock[0]["unix_ms"].as_f64().unwrap();
        // Aged by the 300 ms slept (and a little for the test's own steps).
        assert!((1300.5..1800.5).contains(&session), "session_ms {session}");
        assert!(
            (1_700_000_000_300.0..1_700_000_000_800.0).contains(&unix),
            "unix_ms {unix}"
        );
    }

    #[test]
    fn another_station_cannot_take_over_a_live_session_and_bad_frames_are_refused() {
        let hub = Hub::default();
        let (s, n, _rx) = hub.attach("S1", "st1").unwrap();
        assert!(matches!(hub.attach("S1", "st2"), Err(Refused::NotOurs)));
        assert!(matches!(s.from_station(bin(9, 1, 0)), FromStation::Bad(_)));
        assert!(matches!(
            s.from_station(Message::Binary(Bytes::from_static(&[0]))),
            FromStation::Bad(_)
        ));
        let huge = format!(
            r#"{{"type":"event","x":"{}"}}"#,
            "a".repeat(MAX_STATION_TEXT)
        );
        assert!(matches!(
            s.from_station(Message::Text(huge.into())),
            FromStation::Bad(_)
        ));
        for _ in 0..MAX_OBSERVERS {
            assert!(s.join().is_some());
        }
        assert!(
            s.join().is_none(),
            "observer {} is refused",
            MAX_OBSERVERS + 1
        );
        hub.detach(&s, n, true);
        assert!(hub.get("S1").is_none());
    }
}
