//! The append-only `events.jsonl` writer. One thread owns the file; requests
//! arrive on a channel and are written in batches, each batch made durable
//! with one `fdatasync` before any of its events is acknowledged (group
//! commit). So an acknowledged event survives kill -9 and power loss, and a
//! burst of clicks costs one sync, not one per click.
//!
//! The writer, not the request that queued an event, counts it: `accepted` is
//! the number of client (non-`system`) lines made durable, so a request whose
//! connection is reset after queueing its event still gets counted exactly
//! once, and the count always equals the file. The log is closed explicitly
//! ([`EventLog::close`]), never by waiting for the last sender to drop, so an
//! open connection cannot keep the recorder from finishing.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use lab_model::{Event, EventSource};
use tokio::sync::{broadcast, oneshot};

/// Runs on the writer thread once the event's batch is durable (`Ok`) or failed.
pub type OnWritten = Box<dyn FnOnce(Result<&Event, &str>) + Send>;

/// An event waiting for its sequence number and its place in the file.
pub struct Pending {
    pub event: Event,
    pub ack: oneshot::Sender<Result<Event, String>>,
    pub on_written: Option<OnWritten>,
}

enum Msg {
    Append(Pending),
    Close,
}

#[derive(Clone)]
pub struct EventLog {
    tx: mpsc::Sender<Msg>,
    accepted: Arc<AtomicU64>,
    /// Every event once it is durable, for the live view (`crate::live`).
    written: broadcast::Sender<Event>,
}

impl EventLog {
    /// Opens (appending to) the log and starts its writer thread. `next_seq`
    /// continues numbering after events already in the file.
    pub fn open(path: &Path, next_seq: u64) -> io::Result<(Self, thread::JoinHandle<()>)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let (written, _) = broadcast::channel(1024);
        let tap = written.clone();
        let handle = thread::Builder::new()
            .name("event-log".into())
            .spawn(move || writer(file, rx, next_seq, &counter, &tap))?;
        Ok((
            Self {
                tx,
                accepted,
                written,
            },
            handle,
        ))
    }

    /// Events as they become durable, with their `seq`. A receiver that
    /// falls more than 1,024 events behind misses some (the log has them).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.written.subscribe()
    }

    /// Appends an event (its `seq` is assigned here) and waits until it is durable.
    pub async fn append(&self, event: Event) -> Result<Event, String> {
        self.append_then(event, None).await
    }

    /// [`append`](Self::append), running `on_written` on the writer thread once
    /// the outcome is known, even if this future is dropped before then.
    pub async fn append_then(
        &self,
        event: Event,
        on_written: Option<OnWritten>,
    ) -> Result<Event, String> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Pending {
                event,
                ack,
                on_written,
            }))
            .map_err(|_| "event log is closed".to_string())?;
        rx.await
            .map_err(|_| "event log writer stopped".to_string())?
    }

    /// Client (non-system) events made durable so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Asks the writer to finish what is queued and stop; later appends fail
    /// with "event log is closed". Join the writer's thread to wait for it.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
    }
}

fn writer(
    mut file: File,
    rx: mpsc::Receiver<Msg>,
    mut next_seq: u64,
    accepted: &AtomicU64,
    written: &broadcast::Sender<Event>,
) {
    let mut closing = false;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let mut batch = Vec::new();
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            match msg {
                Msg::Append(p) => batch.push(p),
                Msg::Close => {
                    closing = true;
                    break;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut buf = Vec::new();
        let mut lines = Vec::with_capacity(batch.len());
        for p in &mut batch {
            let start = buf.len();
            p.event.seq = next_seq;
            match serde_json::to_writer(&mut buf, &p.event) {
                Ok(()) => {
                    next_seq += 1;
                    buf.push(b'\n');
                    lines.push(Ok(()));
                }
                Err(e) => {
                    buf.truncate(start);
                    lines.push(Err(format!("event does not serialise: {e}")));
                }
            }
        }
        let before = file.metadata().map(|m| m.len()).ok();
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = &result {
            // Cut a partially written batch off again, so a later batch never
            // follows a torn line. Its seqs are not reused: readers see a gap.
            tracing::error!("failed to write events: {e}");
            if let Some(len) = before {
                let _ = file.set_len(len);
            }
        }
        for (p, line) in batch.into_iter().zip(lines) {
            let r = match (&result, line) {
                (Ok(()), Ok(())) => {
                    if p.event.source != EventSource::System {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    if written.receiver_count() > 0 {
                        let _ = written.send(p.event.clone());
                    }
                    Ok(p.event)
                }
                (_, Err(e)) => Err(e),
                (Err(e), _) => Err(format!("failed to write event: {e}")),
            };
            if let Some(f) = p.on_written {
                f(r.as_ref().map_err(String::as_str));
            }
            let _ = p.ack.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_model::{Bundle, EventSource};

    #[tokio::test]
    async fn concurrent_appends_get_distinct_seqs_and_all_reach_the_file() {
        let dir = std::env::temp_dir().join(format!("event-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = Bundle::new(&dir);
        let (log, _h) = EventLog::open(&bundle.events_path(), 1).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(Event {
                    seq: 0,
                    t_ns: i,
                    source: EventSource::Operator,
                    kind: "marker".into(),
                    data: serde_json::json!({"type": "note"}),
                    client: None,
                    client_time_ms: None,
                    uncertainty_ns: None,
                })
                .await
                .unwrap()
                .seq
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        let (events, torn) = bundle.read_events().unwrap();
        assert_eq!((events.len(), torn), (50, 0));
    }

    /// An open WebSocket held a clone of the log, so joining the writer never
    /// returned and the bundle path was never printed.
    #[test]
    fn close_stops_the_writer_while_clones_are_still_held() {
        let dir = std::env::temp_dir().join(format!("event-log-close-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = Bundle::new(&dir);
        let (log, handle) = EventLog::open(&bundle.events_path(), 1).unwrap();
        let held = log.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ev = |source| Event {
            seq: 0,
            t_ns: 0,
            source,
            kind: "note".into(),
            data: serde_json::json!({}),
            client: None,
            client_time_ms: None,
            uncertainty_ns: None,
        };
        rt.block_on(async {
            held.append(ev(EventSource::Observer)).await.unwrap();
            held.append(ev(EventSource::System)).await.unwrap();
        });
        assert_eq!(log.accepted(), 1, "system events are not client events");
        log.close();
        handle.join().unwrap();
        assert!(rt.block_on(held.append(ev(EventSource::Observer))).is_err());
        assert_eq!(held.accepted(), 1);
        let (events, torn) = bundle.read_events().unwrap();
        assert_eq!((events.len(), torn), (2, 0));
    }
}
