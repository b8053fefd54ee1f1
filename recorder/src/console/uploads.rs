//! The console's upload queue: after Stop each bundle goes to the lab server
//! in the background, one at a time, through the same protocol as
//! `lab-recorder upload` (so a shell upload and the console never send one
//! bundle together: the upload's lock refuses the second). At start-up the
//! queue takes every finished bundle in the sessions folder that the server
//! has not acknowledged. A refused bundle stays, with the reason, until the
//! operator asks again; an unreachable server is retried forever.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lab_model::{Bundle, SessionStatus};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::lab_client::LabClient;
use crate::upload::state::{STATE_DIR, UploadRecord};
use crate::upload::{Phase, Progress, UploadOptions, upload_bundle};

/// One bundle in the queue, as the console page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub bundle: String,
    pub state: Phase,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: usize,
    pub files_total: usize,
    pub error: Option<String>,
    pub server_session_id: Option<String>,
}

struct Inner {
    entries: Vec<Entry>,
    waiting: VecDeque<PathBuf>,
}

#[derive(Clone)]
pub struct UploadQueue {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl UploadQueue {
    /// Starts the background uploader to `server`; `None` keeps bundles on
    /// the station (offline).
    pub fn start(out: &Path, server: Option<(String, String)>, delete_after_ack: bool) -> Self {
        let q = UploadQueue {
            inner: Arc::new(Mutex::new(Inner {
                entries: vec![],
                waiting: VecDeque::new(),
            })),
            wake: Arc::new(Notify::new()),
        };
        if let Some((url, token)) = server {
            for b in unacknowledged(out, &url) {
                q.push(&b);
            }
            let q2 = q.clone();
            tokio::spawn(async move { q2.run(url, token, delete_after_ack).await });
        }
        q
    }

    /// Queues a finished bundle.
    pub fn push(&self, bundle: &Path) {
        let name = bundle
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut g = lock(&self.inner);
        if !g.entries.iter().any(|e| e.bundle == name) {
            g.entries.push(Entry {
                bundle: name,
                state: Phase::Queued,
                bytes_done: 0,
                bytes_total: 0,
                files_done: 0,
                files_total: 0,
                error: None,
                server_session_id: None,
            });
        }
        if !g.waiting.contains(&bundle.to_path_buf()) {
            g.waiting.push_back(bundle.to_path_buf());
        }
        drop(g);
        self.wake.notify_one();
    }

    pub fn snapshot(&self) -> Vec<Entry> {
        lock(&self.inner).entries.clone()
    }

    /// Asks again for a refused bundle.
    pub fn retry(&self, out: &Path, bundle: &str) -> bool {
        let known = lock(&self.inner)
            .entries
            .iter()
            .any(|e| e.bundle == bundle && e.state == Phase::Refused);
        if known {
            self.push(&out.join(bundle));
        }
        known
    }

    fn update(&self, bundle: &str, f: impl FnOnce(&mut Entry)) {
        let mut g = lock(&self.inner);
        if let Some(e) = g.entries.iter_mut().find(|e| e.bundle == bundle) {
            f(e);
        }
    }

    async fn run(self, url: String, token: String, delete_after_ack: bool) {
        let opts = UploadOptions {
            delete_after_ack,
            max_backoff: Duration::from_secs(300),
            // The console keeps trying; the operator sees the error.
            give_up_after: Duration::from_secs(365 * 86_400),
            ..UploadOptions::default()
        };
        loop {
            let next = lock(&self.inner).waiting.pop_front();
            let Some(bundle) = next else {
                self.wake.notified().await;
                continue;
            };
            let name = bundle
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut client = match LabClient::new(&url, &token) {
                Ok(c) => c,
                Err(e) => {
                    self.update(&name, |en| {
                        en.state = Phase::Refused;
                        en.error = Some(e.to_string());
                    });
                    continue;
                }
            };
            let (tx, mut rx) = watch::channel(Progress::default());
            let me = self.clone();
            let watched = name.clone();
            let follower = tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let p = rx.borrow_and_update().clone();
                    me.update(&watched, |e| {
                        e.state = p.phase;
                        e.bytes_done = p.bytes_done;
                        e.bytes_total = p.bytes_total;
                        e.files_done = p.files_done;
                        e.files_total = p.files_total;
                        e.error = p.last_error.clone();
                    });
                }
            });
            let note = |n: crate::upload::Note| tracing::info!("upload: {n}");
            let r = upload_bundle(&mut client, &bundle, &opts, &tx, &note).await;
            drop(tx);
            let _ = follower.await;
            match r {
                Ok(ack) => self.update(&name, |e| {
                    e.state = Phase::Acknowledged;
                    e.error = None;
                    e.bytes_done = e.bytes_total;
                    e.server_session_id = Some(ack.server_session_id);
                }),
                Err(err) => {
                    tracing::warn!("upload of {name}: {err}");
                    self.update(&name, |e| {
                        e.state = Phase::Refused;
                        e.error = Some(err.to_string());
                    });
                }
            }
        }
    }
}

/// Finished bundles in `out` the server `url` has not acknowledged.
fn unacknowledged(out: &Path, url: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(out) else {
        return vec![];
    };
    let mut found: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            Bundle::new(p)
                .read_manifest()
                .is_ok_and(|m| m.status != SessionStatus::Recording)
        })
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_string());
            let record = name
                .and_then(|n| std::fs::read(out.join(STATE_DIR).join(format!("{n}.json"))).ok())
                .and_then(|b| serde_json::from_slice::<UploadRecord>(&b).ok());
            // The record holds the server as the client writes it (`http://host:port`).
            let server = LabClient::new(url, "x")
                .map(|c| c.server())
                .unwrap_or_default();
            !record.is_some_and(|r| r.acknowledged.is_some() && r.server == server)
        })
        .collect();
    found.sort();
    found
}
