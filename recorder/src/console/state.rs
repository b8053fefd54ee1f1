//! What the console was started with and what every request shares.

use std::net::SocketAddr;
use std::path::PathBuf;

use lab_model::StationConfig;
use lab_model::journey::Journey;
use lab_model::study::Study;
use tokio::sync::Mutex;

use super::live::{LiveRecord, RecorderCommand};
use super::uploads::UploadQueue;
use crate::preflight::Preflight;

/// What `lab-recorder console` was started with.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub listen: SocketAddr,
    /// Where bundles are written (and the console's own files, in `.console/`).
    pub out: PathBuf,
    /// A local study set-up (TOML); without it, pulled from the lab server.
    pub study_file: Option<PathBuf>,
    /// Study id to take from the server when it has several.
    pub study_id: Option<String>,
    /// Folders of journey files, for the step titles participants rate.
    pub journeys: Vec<PathBuf>,
    /// The lab server and this station's token, for set-ups and uploads.
    pub server: Option<(String, String)>,
    pub delete_after_ack: bool,
    /// Required of requests not from this machine (`--listen` on the LAN).
    pub console_token: Option<String>,
    pub recorder: RecorderCommand,
}

/// What every request shares.
pub struct Console {
    pub opts: ConsoleOptions,
    pub study: Study,
    /// The study's journey, when found (step titles).
    pub journey: Option<Journey>,
    pub live: Mutex<Option<LiveRecord>>,
    pub uploads: UploadQueue,
    /// Where the set-up came from, for the page.
    pub study_source: String,
    /// The port the console listens on (the `Host` check).
    pub port: u16,
    /// The station config recordings and the pre-flight check use.
    pub station: StationConfig,
    /// `lab-setup` (the sync self-test), next to this binary.
    pub lab_setup: PathBuf,
    /// The running pre-flight preview, if any.
    pub preflight: std::sync::Mutex<Option<Preflight>>,
    /// The last sync self-test's figures or error.
    pub sync_result: std::sync::Mutex<Option<serde_json::Value>>,
}
