//! The 5-second sync self-test: `lab-setup check --json` run as a child
//! process. It records with the station's real devices while Chromium
//! shows a page that flashes and beeps, then measures where each flash and
//! beep landed in the recorded media.
//!
//! `SyncFigures` is the format of that JSON: written by `lab-setup check
//! --json` (hardware-setup builds it from its report), read here. It lives
//! in `recorder` because hardware-setup already depends on it and the
//! console is its only reader.
//!
//! The child opens the station's devices itself: stop the `Preflight`
//! first, or a camera that allows one reader is "busy" for the check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lab_model::StationConfig;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::error::PreflightError;

pub const SYNC_FIGURES_VERSION: u32 = 1;
/// Length of the test recording.
pub const SYNC_TEST_SECONDS: u32 = 5;
/// The whole check: device probe and test encodes, Chromium start, the
/// recording, decoding it back. Past this it is interrupted.
pub const SYNC_TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// After SIGINT the check stops its recording and exits; past this it is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// What `lab-setup check --json` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncFigures {
    /// `SYNC_FIGURES_VERSION`.
    pub version: u32,
    /// No problems: every video track has frames, under 1 % dropped, the
    /// event-to-frame offset within one frame.
    pub passed: bool,
    /// What failed the check, in English as `lab-setup check` words it.
    pub problems: Vec<String>,
    /// The test recording, kept for inspection.
    pub bundle: PathBuf,
    pub frames: Vec<TrackFrameFigures>,
    /// Seconds of audio decoded from the recording.
    pub audio_seconds: f64,
    /// One screen frame, ms (the resolution of `event_to_frame_ms`).
    pub frame_ms: f64,
    /// How well the browser's clock is placed on the session clock, ± ms.
    pub clock_uncertainty_ms: Option<f64>,
    /// Flash event → first recorded frame showing it, over the flashes the
    /// check judges (those the page stamped promptly; every flash is in
    /// `flash_offsets_ms`). `None`: not measured (no flashing page: not an
    /// X screen, or `--no-optical`).
    pub event_to_frame_ms: Option<OffsetStats>,
    /// Scheduled beep → its onset in the recorded audio.
    pub event_to_audio_ms: Option<OffsetStats>,
    /// Audio relative to video, ms; positive when the audio is later.
    pub audio_video_offset_ms: Option<f64>,
    /// Per flash / beep, `None` where it was not found in the media.
    pub flash_offsets_ms: Vec<Option<f64>>,
    pub beep_offsets_ms: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackFrameFigures {
    pub track: String,
    pub recorded: u64,
    pub expected: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetStats {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Events found in the media.
    pub measured: u64,
    /// Events not found.
    pub missed: u64,
}

impl OffsetStats {
    /// Over `offsets` where NaN marks an event not found; `None` when none was.
    pub fn from_offsets(offsets: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = offsets.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Self {
            min: *v.first()?,
            median: v[v.len() / 2],
            max: v[v.len() - 1],
            measured: v.len() as u64,
            missed: (offsets.len() - v.len()) as u64,
        })
    }
}

/// Offsets as JSON carries them: NaN (not found) becomes `None`.
pub fn offsets_or_none(offsets: &[f64]) -> Vec<Option<f64>> {
    offsets
        .iter()
        .map(|x| x.is_finite().then_some(*x))
        .collect()
}

/// Runs `lab_setup check --station FILE --seconds 5 --json` and reads its
/// figures. Without `station_file` the recorder's default station is
/// checked (as `lab-recorder record` without `--station` records it).
/// With `test_sources` there is nothing to measure (no screen Chromium can
/// show the flashing page on), so it errs with `SyncNeedsRealStation`.
pub async fn sync_self_test(
    lab_setup: &Path,
    station_file: Option<&Path>,
    test_sources: bool,
) -> Result<SyncFigures, PreflightError> {
    if test_sources {
        return Err(PreflightError::SyncNeedsRealStation);
    }
    let default_file = match station_file {
        Some(_) => None,
        None => Some(write_default_station()?),
    };
    let station = station_file
        .or(default_file.as_deref())
        .expect("one is set");
    let result = run_check(lab_setup, station, SYNC_TEST_TIMEOUT).await;
    if let Some(f) = default_file {
        let _ = std::fs::remove_file(f);
    }
    result
}

fn write_default_station() -> Result<PathBuf, PreflightError> {
    let path = std::env::temp_dir().join(format!(
        "lab-preflight-station-{}-{}.toml",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::write(&path, StationConfig::default_station().to_toml()).map_err(|source| {
        PreflightError::SyncStationFile {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

pub(super) async fn run_check(
    lab_setup: &Path,
    station: &Path,
    timeout: Duration,
) -> Result<SyncFigures, PreflightError> {
    let mut command = Command::new(lab_setup);
    // SAFETY: signal(2) is async-signal-safe. A process started with SIGINT
    // ignored (a background job of a shell, some service managers) passes
    // that on to its children, and `interrupt` could then only stop the
    // check after its grace period; the check gets SIGINT's default back.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command
        .arg("check")
        .arg("--station")
        .arg(station)
        .args(["--seconds", &SYNC_TEST_SECONDS.to_string(), "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PreflightError::SyncSpawn {
            program: lab_setup.to_path_buf(),
            source,
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let finished = tokio::time::timeout(timeout, async {
        tokio::join!(read_all(&mut stdout), read_all(&mut stderr), child.wait())
    })
    .await;
    let Ok((out, err, status)) = finished else {
        interrupt(&mut child).await;
        return Err(PreflightError::SyncTimeout {
            seconds: timeout.as_secs(),
        });
    };
    let status = status.map_err(|source| PreflightError::SyncSpawn {
        program: lab_setup.to_path_buf(),
        source,
    })?;
    // A check that found problems exits 1 but still prints its figures;
    // one that could not record prints none and says why on stderr.
    match parse_figures(&out) {
        Ok(f) => Ok(f),
        Err(_) if !status.success() => Err(PreflightError::SyncFailed {
            status: status.to_string(),
            stderr: tail(&err, 2000),
        }),
        Err(e) => Err(e),
    }
}

async fn read_all(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}

/// Asks the check to stop the way Ctrl-C does (it ends its recording and
/// closes Chromium), then kills it if it does not.
async fn interrupt(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid of our own child that has not been reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        if tokio::time::timeout(INTERRUPT_GRACE, child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_string()
}

pub(super) fn parse_figures(stdout: &[u8]) -> Result<SyncFigures, PreflightError> {
    let value: serde_json::Value =
        serde_json::from_slice(stdout).map_err(PreflightError::SyncOutput)?;
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version != u64::from(SYNC_FIGURES_VERSION) {
        return Err(PreflightError::SyncVersion {
            found: version,
            wanted: SYNC_FIGURES_VERSION,
        });
    }
    serde_json::from_value(value).map_err(PreflightError::SyncOutput)
}
