//! What the endpoint shares with the recording session, and the one way an
//! event gets in: [`EndpointState::accept`] (rate, clock mapping, storability,
//! resend dedup, then the durable log).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lab_model::{ClockOffsetEstimate, Event, EventSource, IncomingEvent};
use serde_json::Value;
use tokio::sync::watch;

use super::config::EndpointConfig;
use super::dedup::{Remembered, Slot};
use super::error::{ApiError, clock_error};
use crate::clock::{ClientClock, SessionClock, SyncSample};
use crate::event_log::{EventLog, OnWritten};
use crate::limits::{self, TokenBucket};

/// Locks a mutex even if a thread panicked while holding it: every structure
/// behind these locks stays consistent between statements, and a panic in one
/// request must not turn every later request into another panic.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything the endpoint shares with the recording session.
pub struct EndpointState {
    pub session_id: String,
    pub bundle_dir: PathBuf,
    pub clock: SessionClock,
    pub log: EventLog,
    pub config: EndpointConfig,
    clients: Mutex<HashMap<String, ClientClock>>,
    pub(super) rejected: AtomicU64,
    /// Set to a reason to stop the recording.
    pub stop: watch::Sender<Option<String>>,
    /// Set when the endpoint shuts down: WebSocket sessions close.
    pub(super) closing: watch::Sender<bool>,
    pub(super) next_client: AtomicU64,
    remembered: Arc<Mutex<Remembered>>,
    /// Event rate per client key.
    buckets: Mutex<HashMap<String, TokenBucket>>,
    pub(super) ws_open: AtomicUsize,
    pub(super) ws_untrusted: AtomicUsize,
    /// Pages to open in the station browser (`POST /api/browser/open`),
    /// set by the session once the browser runs.
    pub pages: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
    /// What went wrong during the recording (a device lost), for the
    /// console's warning; `system.*` events, newest last.
    pub(super) warnings: Mutex<Vec<Value>>,
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
            pages: Mutex::default(),
            warnings: Mutex::default(),
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
        if !matches!(kind, "recording_started" | "recording_stopped") {
            let mut w = lock(&self.warnings);
            if w.len() < 100 {
                w.push(serde_json::json!({ "kind": kind, "t_ns": self.clock.now_ns(), "data": data.clone() }));
            }
        }
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

    /// Records an event a sensor stream stamped itself (an LSL marker), at
    /// its own session time.
    pub async fn sensor_event(&self, t_ns: i64, kind: &str, data: Value) {
        self.stamped_event(EventSource::Sensor, t_ns, None, kind, data)
            .await;
    }

    /// Records an event stamped by its sender (a sensor, an observer's
    /// page) at that session time, `uncertainty_ns` when known.
    pub async fn stamped_event(
        &self,
        source: EventSource,
        t_ns: i64,
        uncertainty_ns: Option<i64>,
        kind: &str,
        data: Value,
    ) {
        let event = Event {
            seq: 0,
            t_ns,
            source,
            kind: kind.to_string(),
            data,
            client: None,
            client_time_ms: None,
            uncertainty_ns,
        };
        if let Err(e) = self.check_storable(&event) {
            tracing::warn!("sensor event {kind} not stored: {e:?}");
            return;
        }
        if let Err(e) = self.log.append(event).await {
            tracing::warn!("could not log sensor event {kind}: {e}");
        }
    }

    pub(super) fn reject(&self, e: ApiError) -> ApiError {
        self.rejected.fetch_add(1, Ordering::SeqCst);
        tracing::debug!("rejected client input: {e:?}");
        e
    }
}
