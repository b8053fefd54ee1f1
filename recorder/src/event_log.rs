//! The append-only `events.jsonl` writer. One thread owns the file; requests
//! arrive on a channel and are written in batches, each batch made durable
//! with one `fdatasync` before any of its events is acknowledged (group
//! commit). So an acknowledged event survives kill -9 and power loss, and a
//! burst of clicks costs one sync, not one per click.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use lab_model::Event;
use tokio::sync::oneshot;

/// An event waiting for its sequence number and its place in the file.
pub struct Pending {
    pub event: Event,
    pub ack: oneshot::Sender<Result<Event, String>>,
}

#[derive(Clone)]
pub struct EventLog {
    tx: mpsc::Sender<Pending>,
}

impl EventLog {
    /// Opens (appending to) the log and starts its writer thread. `next_seq`
    /// continues numbering after events already in the file.
    pub fn open(path: &Path, next_seq: u64) -> io::Result<(Self, thread::JoinHandle<()>)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel::<Pending>();
        let handle = thread::Builder::new()
            .name("event-log".into())
            .spawn(move || writer(file, rx, next_seq))?;
        Ok((Self { tx }, handle))
    }

    /// Appends an event (its `seq` is assigned here) and waits until it is durable.
    pub async fn append(&self, event: Event) -> Result<Event, String> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Pending { event, ack })
            .map_err(|_| "event log is closed".to_string())?;
        rx.await
            .map_err(|_| "event log writer stopped".to_string())?
    }
}

fn writer(mut file: File, rx: mpsc::Receiver<Pending>, mut next_seq: u64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut buf = Vec::new();
        for p in &mut batch {
            p.event.seq = next_seq;
            next_seq += 1;
            serde_json::to_writer(&mut buf, &p.event).expect("event serialises");
            buf.push(b'\n');
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
        for p in batch {
            let r = match &result {
                Ok(()) => Ok(p.event),
                Err(e) => Err(format!("failed to write event: {e}")),
            };
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
}
