//! What every handler shares.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Notify, Semaphore, broadcast};

use crate::db::Db;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Watched folder of session bundles; API imports must lie inside it.
    pub sessions_dir: PathBuf,
    /// Where journey definitions (`<life_situation>.toml`) are looked up
    /// when a bundle does not carry its own.
    pub journeys_dirs: Vec<PathBuf>,
    /// `lab-analyze` binary used by analysis jobs.
    pub analyzer: PathBuf,
    /// `ffmpeg` binary used for clips.
    pub ffmpeg: PathBuf,
    /// Set the `Secure` flag on cookies (behind https).
    pub secure_cookies: bool,
    /// How often the sessions folder is scanned; 0 disables watching.
    pub watch_every: std::time::Duration,
    /// In-process workers for analysis and clips (`serve --workers N`);
    /// with 0, analysis is left to external workers.
    pub workers: usize,
    /// Queue an analysis of every bundle imported (watched folder, station
    /// upload) whose analysis is not complete (`serve --analyze-new`).
    pub analyze_new: bool,
    /// How long a job's lease lasts after its worker's last heartbeat
    /// (`serve --lease-seconds`, default `lab_model::worker::LEASE_SECONDS`).
    pub lease_seconds: u64,
    /// With `workers` 0: still run clip jobs in this process (one worker).
    /// False only with `serve --no-worker`, which runs no job at all here.
    pub clip_worker: bool,
    /// The address clients use (`https://lab.example`), for absolute links in
    /// exports; never taken from a request's Host header.
    pub public_url: String,
    /// The reverse proxy in front of lab-web, if any: requests from it are
    /// throttled by the last `X-Forwarded-For` hop it added.
    pub trusted_proxy: Option<std::net::IpAddr>,
    /// The largest bundle a station may upload.
    pub max_upload_bytes: u64,
}

pub struct Inner {
    pub db: Db,
    pub config: Config,
    /// Job changes, as JSON, for `/api/v1/jobs/events`.
    pub job_events: broadcast::Sender<String>,
    /// Wakes the worker when a job is queued or cancelled.
    pub job_wakeup: Notify,
    /// Bounds concurrent password hashes (`limits::max_concurrent_hashes`).
    pub hashes: Semaphore,
    /// One lock per upload id: its requests run one at a time (`upload`).
    pub upload_locks: std::sync::Mutex<std::collections::HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Sessions streaming live now (`crate::live`), this process's only.
    pub live: crate::live::Hub,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(db: Db, config: Config) -> Self {
        let (job_events, _) = broadcast::channel(256);
        Self(Arc::new(Inner {
            db,
            config,
            job_events,
            job_wakeup: Notify::new(),
            hashes: Semaphore::new(crate::limits::max_concurrent_hashes()),
            upload_locks: std::sync::Mutex::default(),
            live: crate::live::Hub::default(),
        }))
    }

    /// Staging of uploads in progress, inside the sessions folder so that
    /// placing a finished bundle is one rename on one filesystem. The
    /// watcher never reads it: it holds no `manifest.json` of its own.
    pub fn incoming_dir(&self) -> PathBuf {
        self.config.sessions_dir.join(".incoming")
    }

    /// A lease's length in ms.
    pub fn lease_ms(&self) -> i64 {
        (self.config.lease_seconds.max(1) * 1000) as i64
    }

    pub fn clips_dir(&self) -> PathBuf {
        self.config.data_dir.join("clips")
    }
}
