//! The session bundle: a directory holding `manifest.json`, `events.jsonl`
//! and `media/` segments. The manifest is always replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory) so a crash leaves
//! either the old or the new manifest, never a torn one.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Value of `format` in every manifest.
pub const BUNDLE_FORMAT: &str = "lab-session-bundle";
/// Bumped whenever the saved shape of the manifest or events changes.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const MEDIA_DIR: &str = "media";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid manifest")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} has format {found:?} version {version}, expected {BUNDLE_FORMAT:?} version <= {BUNDLE_FORMAT_VERSION}"
    )]
    Version {
        path: PathBuf,
        found: String,
        version: u32,
    },
    #[error("{path} line {line}: invalid event")]
    Event {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// The recorder is (or was, if it died) writing the bundle.
    Recording,
    /// Stopped normally (duration, signal, control API) and finalized.
    Complete,
    /// The recorder died or stopped on an error; the listed segments are what survived.
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Video,
    Audio,
}

/// Who speaks on an audio channel: lets the analyzer give every word a speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelRole {
    Participant,
    Moderator,
    Mixed,
    Ambient,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Stable id: `screen`, `camera`, `mic0`, `mic1`, ...
    pub id: String,
    pub kind: TrackKind,
    /// `h264` or `opus`.
    pub codec: String,
    /// Encoder element that produced it, e.g. `x264enc`, `vaapih264enc`, `opusenc`.
    pub encoder: String,
    /// Source element (`ximagesrc`, `v4l2src`, `pulsesrc`, `videotestsrc`, ...).
    pub source: String,
    /// Device the source read from (display, `/dev/video0`, pulse source name), empty for test sources.
    pub device: String,
    /// Segment groups (file name prefixes under `media/`) that carry this track.
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framerate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    /// One role per audio channel, in channel order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_roles: Vec<ChannelRole>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentState {
    /// Being written; after a crash its header lacks a duration but its packets decode.
    Open,
    /// Closed and finalized by the muxer.
    Closed,
    /// Was open when the recorder died or stopped on an error: its header may
    /// lack a duration and an index, but its packets decode up to `end_ns`.
    Recovered,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Segment group: `main` (screen + audio) or `camera` (camera + audio).
    pub group: String,
    pub index: u32,
    /// Path relative to the bundle directory.
    pub file: String,
    /// Session time of the segment's first buffer.
    pub start_ns: i64,
    /// Session time where the segment ends; `None` while open or after a crash.
    #[serde(default)]
    pub end_ns: Option<i64>,
    pub state: SegmentState,
}

/// The mapping between session time and the clocks of the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockMapping {
    /// The pipeline clock's reading (CLOCK_MONOTONIC, ns) at session time 0.
    pub session_zero_monotonic_ns: u64,
    /// Wall clock at session time 0, as Unix nanoseconds.
    pub session_zero_unix_ns: i64,
    /// The same instant as RFC 3339 UTC, for people.
    pub session_zero_utc: String,
    /// Measured offsets of event clients (browser tabs, operator consoles).
    #[serde(default)]
    pub clients: Vec<ClockOffsetEstimate>,
}

/// One client's clock, measured by round trips: `session_ns = client_ns + offset_ns`,
/// known to within `uncertainty_ns` (half the round trip of the best sample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockOffsetEstimate {
    pub client: String,
    pub offset_ns: i64,
    pub uncertainty_ns: i64,
    /// Round trip of the kept (minimum-RTT) sample.
    pub rtt_ns: i64,
    pub samples: u32,
    /// Session time of the last refresh.
    pub measured_at_ns: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventStats {
    pub accepted: u64,
    pub rejected: u64,
}

/// A stretch of session time where a track has no media (device lost, source error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub track: String,
    pub start_ns: i64,
    /// `None`: the track never came back.
    #[serde(default)]
    pub end_ns: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub session_id: String,
    pub station: String,
    #[serde(default)]
    pub study: Option<String>,
    #[serde(default)]
    pub life_situation: Option<String>,
    #[serde(default)]
    pub journey_version: Option<String>,
    /// Pseudonymous participant code (never a name).
    pub participant: String,
    /// Reference to the signed consent form; a session cannot exist without one.
    pub consent: String,
    #[serde(default)]
    pub moderator: Option<String>,
    pub clock: ClockMapping,
    pub tracks: Vec<Track>,
    pub segments: Vec<Segment>,
    pub status: SessionStatus,
    /// Why the recording stopped: `duration`, `api`, `signal: interrupt`, `signal: terminate`,
    /// `disk full: ...`, `every source failed`, `browser failed to start: ...`, or, after
    /// `lab-recorder recover`, `recorder (pid N) ended without finalizing; ...`.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Session time at which recording stopped, when known.
    #[serde(default)]
    pub duration_ns: Option<i64>,
    #[serde(default)]
    pub gaps: Vec<Gap>,
    #[serde(default)]
    pub events: EventStats,
    /// Recorder version and process, for recovery (`pid` of a dead process => interrupted).
    pub recorder: RecorderInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecorderInfo {
    pub version: String,
    pub pid: u32,
    /// Address of the event endpoint while recording.
    #[serde(default)]
    pub events_url: Option<String>,
}

/// A bundle directory on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join(EVENTS_FILE)
    }

    pub fn media_dir(&self) -> PathBuf {
        self.dir.join(MEDIA_DIR)
    }

    pub fn read_manifest(&self) -> Result<Manifest, BundleError> {
        let path = self.manifest_path();
        let text = fs::read_to_string(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| BundleError::Parse {
                path: path.clone(),
                source,
            })?;
        if manifest.format != BUNDLE_FORMAT || manifest.format_version > BUNDLE_FORMAT_VERSION {
            return Err(BundleError::Version {
                path,
                found: manifest.format,
                version: manifest.format_version,
            });
        }
        Ok(manifest)
    }

    /// Replaces the manifest atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        bytes.push(b'\n');
        write_atomic(&self.manifest_path(), &bytes)
    }

    /// Reads every event. A torn last line (the process died mid-write, before
    /// the event was acknowledged) is skipped and counted in the second value;
    /// a bad line anywhere else is an error naming the line.
    pub fn read_events(&self) -> Result<(Vec<Event>, usize), BundleError> {
        let path = self.events_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(source) => return Err(BundleError::Read { path, source }),
        };
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|source| BundleError::Read {
                path: path.clone(),
                source,
            })?;
        let mut events = Vec::with_capacity(lines.len());
        let mut torn = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(line) {
                Ok(e) => events.push(e),
                Err(_) if i + 1 == lines.len() => torn += 1,
                Err(source) => {
                    return Err(BundleError::Event {
                        path,
                        line: i + 1,
                        source,
                    });
                }
            }
        }
        Ok((events, torn))
    }
}

/// Writes `bytes` to `path` so that readers see either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let err = |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_data().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable; failure here is not worth losing the write over.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_manifest() -> Manifest {
        Manifest {
            format: BUNDLE_FORMAT.into(),
            format_version: BUNDLE_FORMAT_VERSION,
            session_id: "20261123T101500Z-P01".into(),
            station: "lab-1".into(),
            study: None,
            life_situation: None,
            journey_version: None,
            participant: "P01".into(),
            consent: "C01".into(),
            moderator: None,
            clock: ClockMapping {
                session_zero_monotonic_ns: 1,
                session_zero_unix_ns: 2,
                session_zero_utc: "2026-11-23T10:15:00Z".into(),
                clients: vec![],
            },
            tracks: vec![],
            segments: vec![],
            status: SessionStatus::Recording,
            stop_reason: None,
            duration_ns: None,
            gaps: vec![],
            events: EventStats::default(),
            recorder: RecorderInfo {
                version: "0".into(),
                pid: 1,
                events_url: None,
            },
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lab-model-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn manifest_round_trips_and_rejects_newer_versions() {
        let b = Bundle::new(temp_dir("manifest"));
        let mut m = sample_manifest();
        b.write_manifest(&m).unwrap();
        assert_eq!(b.read_manifest().unwrap(), m);
        m.format_version = BUNDLE_FORMAT_VERSION + 1;
        b.write_manifest(&m).unwrap();
        let err = b.read_manifest().unwrap_err().to_string();
        assert!(err.contains("expected \"lab-session-bundle\""), "{err}");
    }

    #[test]
    fn torn_last_event_line_is_skipped_but_a_bad_middle_line_is_an_error() {
        let b = Bundle::new(temp_dir("events"));
        let good = r#"{"seq":1,"t_ns":5,"source":"operator","kind":"marker","data":{}}"#;
        fs::write(b.events_path(), format!("{good}\n{{\"seq\":2,\"t_")).unwrap();
        let (events, torn) = b.read_events().unwrap();
        assert_eq!((events.len(), torn), (1, 1));
        fs::write(b.events_path(), format!("nonsense\n{good}\n")).unwrap();
        let err = b.read_events().unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
