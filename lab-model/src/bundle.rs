//! The session bundle: a directory holding `manifest.json`, `events.jsonl`
//! and `media/` segments. The manifest is always replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory) so a crash leaves
//! either the old or the new manifest, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
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
/// Where `Bundle::repair_torn_events` keeps the torn tail of `events.jsonl`.
pub const TORN_EVENTS_FILE: &str = "events.jsonl.torn";

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
    #[error("{path} is not a manifest this lab accepts")]
    Invalid {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path} is {len} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("{path} {what}; a bundle may hold only folders and plain files with one link")]
    Unsafe { path: PathBuf, what: &'static str },
    #[error("{path} holds more than {limit} entries (or is nested deeper than {depth})")]
    TooMany {
        path: PathBuf,
        limit: usize,
        depth: usize,
    },
    #[error("{path} line {line}: invalid event")]
    Event {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Limits a manifest must keep (`Manifest::validate`). Far above any real
/// session, low enough that a hostile manifest cannot make a reader allocate
/// or loop without bound, and that session-time arithmetic cannot overflow.
pub mod limits {
    /// Longest line of `events.jsonl`: the recorder stores at most 17 KiB per
    /// client event (16 KiB plus its envelope) and less for its own events.
    pub const MAX_EVENT_LINE_BYTES: usize = 64 * 1024;
    /// Largest `manifest.json` read: 200,000 segments pretty-printed are ~35 MB.
    pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
    /// Longest `session_id` (it is also the bundle's directory name).
    pub const MAX_SESSION_ID_LEN: usize = 128;
    /// Longest participant code (the recorder's rule: 1-32 of `A-Za-z0-9_-`).
    pub const MAX_PARTICIPANT_LEN: usize = 32;
    /// Segments in one manifest: 24 h of 1 s segments in two groups is 172,800.
    pub const MAX_SEGMENTS: usize = 200_000;
    /// Tracks (screen, camera and microphones).
    pub const MAX_TRACKS: usize = 64;
    /// Segment groups one track may be carried by.
    pub const MAX_TRACK_GROUPS: usize = 8;
    /// Longest track id or segment group name.
    pub const MAX_NAME_LEN: usize = 64;
    /// Event clients with a measured clock offset.
    pub const MAX_CLIENTS: usize = 10_000;
    /// Gaps (device losses).
    pub const MAX_GAPS: usize = 10_000;
    /// Largest video frame rate, frames per second.
    pub const MAX_FRAMERATE: u32 = 1000;
    /// Largest video width or height, pixels.
    pub const MAX_FRAME_SIZE: u32 = 16_384;
    /// Largest audio sample rate, Hz.
    pub const MAX_SAMPLE_RATE: u32 = 768_000;
    /// Most audio channels of one track.
    pub const MAX_CHANNELS: u32 = 64;
    /// Largest magnitude of any session time or duration in a manifest:
    /// 30 days. Differences of two such times, and such a time multiplied by
    /// a frame or sample rate within the limits, fit an i64.
    pub const MAX_SESSION_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;
}
pub use limits::MAX_MANIFEST_BYTES;
use limits::*;

/// Why a manifest was refused: it could make a reader leave the bundle,
/// allocate without bound or overflow time arithmetic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "session_id {0:?} must be 1-{MAX_SESSION_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '.'"
    )]
    SessionId(String),
    #[error(
        "participant {0:?} must be 1-{MAX_PARTICIPANT_LEN} letters, digits, '-' or '_' (a pseudonymous code)"
    )]
    Participant(String),
    #[error("consent reference is empty")]
    Consent,
    #[error(
        "life_situation {0:?} is not a journey id (1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit)"
    )]
    LifeSituation(String),
    #[error("{what} {name:?} must be 1-{MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_' or '-'")]
    Name { what: &'static str, name: String },
    #[error(
        "segment file {0:?} must be media/<name> with a plain file name (no '..', no absolute path)"
    )]
    SegmentFile(String),
    #[error("{what}: {found}, more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("{what} = {value} is outside {min}..={max}")]
    OutOfRange {
        what: String,
        value: i64,
        min: i64,
        max: i64,
    },
}

/// One plain path component: `[A-Za-z0-9_-]` (plus `.` where `dot`), never `.`-first.
fn safe_component(s: &str, max: usize, dot: bool) -> bool {
    (1..=max).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || (dot && c == b'.'))
}

/// The recorder's participant rule (`lab-recorder record --participant`).
pub fn valid_participant(code: &str) -> bool {
    safe_component(code, MAX_PARTICIPANT_LEN, false)
}

/// A session id is a single path component (the bundle's directory name).
pub fn valid_session_id(id: &str) -> bool {
    safe_component(id, MAX_SESSION_ID_LEN, true)
}

/// A segment's `file`: `media/<name>` where `<name>` is one plain file name.
pub fn valid_segment_file(file: &str) -> bool {
    file.strip_prefix("media/")
        .is_some_and(|name| safe_component(name, 255, true))
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

impl Manifest {
    /// Checks what a reader relies on before it touches the file system or
    /// does arithmetic with the manifest's values; see [`limits`]. Called by
    /// [`Bundle::read_manifest`], so every reader of a bundle gets it.
    pub fn validate(&self) -> Result<(), ManifestError> {
        use ManifestError as E;
        if !valid_session_id(&self.session_id) {
            return Err(E::SessionId(self.session_id.clone()));
        }
        if !valid_participant(&self.participant) {
            return Err(E::Participant(self.participant.clone()));
        }
        if self.consent.trim().is_empty() {
            return Err(E::Consent);
        }
        if let Some(ls) = &self.life_situation
            && !crate::journey::valid_id(ls)
        {
            return Err(E::LifeSituation(ls.clone()));
        }
        let count = |what, found: usize, limit| {
            if found > limit {
                Err(E::TooMany { what, found, limit })
            } else {
                Ok(())
            }
        };
        count("segments", self.segments.len(), MAX_SEGMENTS)?;
        count("tracks", self.tracks.len(), MAX_TRACKS)?;
        count("clock clients", self.clock.clients.len(), MAX_CLIENTS)?;
        count("gaps", self.gaps.len(), MAX_GAPS)?;
        let name = |what, name: &str| {
            if safe_component(name, MAX_NAME_LEN, false) {
                Ok(())
            } else {
                Err(E::Name {
                    what,
                    name: name.to_string(),
                })
            }
        };
        let range = |what: &dyn Fn() -> String, value: i64, min: i64, max: i64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(E::OutOfRange {
                    what: what(),
                    value,
                    min,
                    max,
                })
            }
        };
        let time =
            |what: &dyn Fn() -> String, t: i64| range(what, t, -MAX_SESSION_NS, MAX_SESSION_NS);
        for t in &self.tracks {
            name("track id", &t.id)?;
            if t.groups.is_empty() || t.groups.len() > MAX_TRACK_GROUPS {
                return Err(E::OutOfRange {
                    what: format!("track {} groups", t.id),
                    value: t.groups.len() as i64,
                    min: 1,
                    max: MAX_TRACK_GROUPS as i64,
                });
            }
            for g in &t.groups {
                name("segment group", g)?;
            }
            let opt = |what: &str, v: Option<u32>, max: u32| match v {
                Some(v) => range(
                    &|| format!("track {} {what}", t.id),
                    v.into(),
                    1,
                    max.into(),
                ),
                None => Ok(()),
            };
            opt("framerate", t.framerate, MAX_FRAMERATE)?;
            opt("width", t.width, MAX_FRAME_SIZE)?;
            opt("height", t.height, MAX_FRAME_SIZE)?;
            opt("sample_rate", t.sample_rate, MAX_SAMPLE_RATE)?;
            opt("channels", t.channels, MAX_CHANNELS)?;
            count(
                "channel roles",
                t.channel_roles.len(),
                MAX_CHANNELS as usize,
            )?;
        }
        for s in &self.segments {
            name("segment group", &s.group)?;
            if !valid_segment_file(&s.file) {
                return Err(E::SegmentFile(s.file.clone()));
            }
            range(
                &|| format!("segment {} start_ns", s.file),
                s.start_ns,
                0,
                MAX_SESSION_NS,
            )?;
            if let Some(end) = s.end_ns {
                range(
                    &|| format!("segment {} end_ns", s.file),
                    end,
                    0,
                    MAX_SESSION_NS,
                )?;
            }
        }
        if let Some(d) = self.duration_ns {
            range(&|| "duration_ns".into(), d, 0, MAX_SESSION_NS)?;
        }
        for g in &self.gaps {
            time(&|| format!("gap of {} start_ns", g.track), g.start_ns)?;
            if let Some(end) = g.end_ns {
                time(&|| format!("gap of {} end_ns", g.track), end)?;
            }
        }
        for c in &self.clock.clients {
            let what = |field: &'static str| move || format!("client {:?} {field}", c.client);
            range(&what("uncertainty_ns"), c.uncertainty_ns, 0, MAX_SESSION_NS)?;
            range(&what("rtt_ns"), c.rtt_ns, 0, MAX_SESSION_NS)?;
            time(&what("measured_at_ns"), c.measured_at_ns)?;
        }
        Ok(())
    }
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

    /// Refuses a bundle holding anything but real folders and regular files
    /// with a single link: a symlink, a hard link (to a server file such as
    /// lab-web's database), a FIFO (which would hang a reader) or a device.
    /// The analyzer runs this before it reads or writes anything, so it
    /// never reads a segment or writes a result through a link that leads
    /// outside the bundle. (What lab-web reads and serves is opened without
    /// following links as well: `lab-web/src/bundle_files.rs`.)
    pub fn check_contents(&self) -> Result<(), BundleError> {
        use std::os::unix::fs::MetadataExt;
        const MAX_ENTRIES: usize = 1_000_000;
        const MAX_DEPTH: usize = 8;
        let unsafe_at = |path: &Path, what| BundleError::Unsafe {
            path: path.to_path_buf(),
            what,
        };
        let meta = fs::symlink_metadata(&self.dir).map_err(|source| BundleError::Read {
            path: self.dir.clone(),
            source,
        })?;
        if !meta.file_type().is_dir() {
            return Err(unsafe_at(&self.dir, "is not a folder (a link?)"));
        }
        let mut stack = vec![(self.dir.clone(), 0usize)];
        let mut seen = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            let entries = fs::read_dir(&dir).map_err(|source| BundleError::Read {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| BundleError::Read {
                    path: dir.clone(),
                    source,
                })?;
                seen += 1;
                if seen > MAX_ENTRIES || depth >= MAX_DEPTH {
                    return Err(BundleError::TooMany {
                        path: self.dir.clone(),
                        limit: MAX_ENTRIES,
                        depth: MAX_DEPTH,
                    });
                }
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).map_err(|source| BundleError::Read {
                    path: path.clone(),
                    source,
                })?;
                let t = meta.file_type();
                if t.is_symlink() {
                    return Err(unsafe_at(&path, "is a symbolic link"));
                } else if t.is_dir() {
                    stack.push((path, depth + 1));
                } else if !t.is_file() {
                    return Err(unsafe_at(
                        &path,
                        "is not a regular file (a FIFO, socket or device)",
                    ));
                } else if meta.nlink() != 1 {
                    return Err(unsafe_at(&path, "has more than one hard link"));
                }
            }
        }
        Ok(())
    }

    /// Reads, parses and validates the manifest ([`Manifest::validate`]).
    pub fn read_manifest(&self) -> Result<Manifest, BundleError> {
        let path = self.manifest_path();
        let bytes = read_limited(&path, MAX_MANIFEST_BYTES)?;
        let manifest = parse_manifest(&bytes).map_err(|e| e.at(&path))?;
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
    /// a bad line anywhere else is an error naming the line. See [`parse_events`].
    pub fn read_events(&self) -> Result<(Vec<Event>, usize), BundleError> {
        let path = self.events_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(source) => return Err(BundleError::Read { path, source }),
        };
        parse_events(&bytes).map_err(|e| BundleError::Event {
            path,
            line: e.line,
            source: e.source,
        })
    }

    /// Path of the file that keeps a torn tail cut off `events.jsonl`.
    pub fn torn_events_path(&self) -> PathBuf {
        self.dir.join(TORN_EVENTS_FILE)
    }

    /// Makes `events.jsonl` end on a complete line again after a crash, for
    /// `lab-recorder recover`. A torn tail (bytes after the last newline that
    /// are not a whole event) is appended to `events.jsonl.torn` and synced
    /// before `events.jsonl` is truncated to its last complete line and synced,
    /// so no byte is lost even if this is interrupted (then the tail is in both
    /// files, and the next call moves it again). A complete event that only
    /// lacks its newline gets the newline. Returns the number of bytes moved,
    /// `None` when there was nothing to repair; safe to call again.
    pub fn repair_torn_events(&self) -> Result<Option<usize>, BundleError> {
        let path = self.events_path();
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Write { path, source }
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(BundleError::Read { path, source }),
        };
        let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let tail = &bytes[keep..];
        if tail.is_empty() {
            return Ok(None);
        }
        if serde_json::from_slice::<Event>(tail).is_ok() {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(werr(&path))?;
            f.write_all(b"\n").map_err(werr(&path))?;
            f.sync_data().map_err(werr(&path))?;
            return Ok(None);
        }
        let torn_path = self.torn_events_path();
        {
            let mut t = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&torn_path)
                .map_err(werr(&torn_path))?;
            t.write_all(tail).map_err(werr(&torn_path))?;
            t.sync_all().map_err(werr(&torn_path))?;
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(werr(&path))?;
        f.set_len(keep as u64).map_err(werr(&path))?;
        f.sync_all().map_err(werr(&path))?;
        // The new `.torn` file's directory entry; not worth failing the repair over.
        let _ = File::open(&self.dir).and_then(|d| d.sync_all());
        Ok(Some(tail.len()))
    }
}

/// A line of `events.jsonl` that is not an event (1-based line number).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: invalid event")]
pub struct EventLineError {
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Parses the bytes of `events.jsonl`: one JSON event per `\n`-terminated line;
/// blank lines are skipped. The last line, when it lacks its newline and is
/// not an event, is torn (the writer died mid-write, before acknowledging it):
/// it is skipped and counted in the second value. Any other bad line, including
/// one that is not UTF-8, is an error naming the line. Works on bytes because a
/// torn line can end inside a multi-byte character.
pub fn parse_events(bytes: &[u8]) -> Result<(Vec<Event>, usize), EventLineError> {
    let mut events = Vec::new();
    let mut torn = 0;
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        // `split` yields one piece after the last newline: empty when the file
        // ends on a newline, the torn tail otherwise.
        let unterminated = lines.peek().is_none();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > limits::MAX_EVENT_LINE_BYTES {
            // Bounded before parsing: one huge line of `[0,0,…]` in `data`
            // would take ~16 times its size in memory as a JSON value.
            if unterminated {
                torn += 1;
                continue;
            }
            return Err(EventLineError {
                line: i + 1,
                source: <serde_json::Error as serde::de::Error>::custom(format!(
                    "the line is {} bytes, more than the {}-byte limit",
                    line.len(),
                    limits::MAX_EVENT_LINE_BYTES
                )),
            });
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) if unterminated => torn += 1,
            Err(source) => {
                return Err(EventLineError {
                    line: i + 1,
                    source,
                });
            }
        }
    }
    Ok((events, torn))
}

/// What [`parse_manifest`] refuses, before it is tied to a path.
#[derive(Debug)]
pub enum ManifestParseError {
    Parse(serde_json::Error),
    Version { found: String, version: u32 },
    Invalid(ManifestError),
}

impl ManifestParseError {
    /// The error naming the manifest file it came from.
    pub fn at(self, path: &Path) -> BundleError {
        let path = path.to_path_buf();
        match self {
            Self::Parse(source) => BundleError::Parse { path, source },
            Self::Version { found, version } => BundleError::Version {
                path,
                found,
                version,
            },
            Self::Invalid(source) => BundleError::Invalid { path, source },
        }
    }
}

/// Parses the bytes of `manifest.json`, checks format and version, and
/// validates it: everything [`Bundle::read_manifest`] does but the reading.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestParseError> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(ManifestParseError::Parse)?;
    if manifest.format != BUNDLE_FORMAT || manifest.format_version > BUNDLE_FORMAT_VERSION {
        return Err(ManifestParseError::Version {
            found: manifest.format,
            version: manifest.format_version,
        });
    }
    manifest.validate().map_err(ManifestParseError::Invalid)?;
    Ok(manifest)
}

/// Reads a whole file that must not be larger than `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    use std::io::Read;
    let rerr = |source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(rerr)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).map_err(rerr)?;
    if bytes.len() as u64 > limit {
        return Err(BundleError::TooLarge {
            path: path.to_path_buf(),
            len: f_len(path).unwrap_or(bytes.len() as u64),
        });
    }
    Ok(bytes)
}

fn f_len(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

/// Writes `bytes` to a new file at `path`, replacing whatever was there
/// (a link at `path` is removed, never followed). Not atomic: for files that
/// are written once and listed in a manifest only afterwards.
pub fn write_fresh(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

/// Writes `bytes` to `path` so that readers see either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let err = |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        // A fresh file, never one reached through a link planted at the
        // temporary name (create_new does not follow links).
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(err)?;
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
    fn an_event_line_over_the_limit_is_refused_before_parsing() {
        let huge = format!(
            "{{\"seq\":1,\"t_ns\":0,\"source\":\"operator\",\"kind\":\"marker\",\"data\":{{\"x\":[{}0]}}}}",
            "0,".repeat(limits::MAX_EVENT_LINE_BYTES)
        );
        let e = parse_events(format!("{huge}\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.source.to_string().contains("byte limit"), "{}", e.source);
        // Unterminated at the end, it is a torn line.
        assert_eq!(parse_events(huge.as_bytes()).unwrap().1, 1);
    }

    #[test]
    fn bundles_with_links_fifos_or_hard_links_are_refused() {
        let dir = temp_dir("contents");
        fs::create_dir_all(dir.join("media")).unwrap();
        fs::write(dir.join("media/main-00001.mkv"), b"x").unwrap();
        let b = Bundle::new(&dir);
        b.check_contents().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("media/main-00002.mkv")).unwrap();
        assert!(matches!(
            b.check_contents(),
            Err(BundleError::Unsafe { .. })
        ));
        fs::remove_file(dir.join("media/main-00002.mkv")).unwrap();
        fs::hard_link(dir.join("media/main-00001.mkv"), dir.join("copy.mkv")).unwrap();
        assert!(matches!(
            b.check_contents(),
            Err(BundleError::Unsafe { .. })
        ));
        fs::remove_file(dir.join("copy.mkv")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.with_extension("link")).unwrap();
        assert!(
            Bundle::new(dir.with_extension("link"))
                .check_contents()
                .is_err()
        );
        let _ = fs::remove_file(dir.with_extension("link"));
        // A planted link at the temporary name is replaced, not written through.
        let target = dir.with_extension("target");
        fs::write(&target, b"server file").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("state.tmp")).unwrap();
        write_atomic(&dir.join("state.json"), b"{}").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"server file");
        assert_eq!(fs::read(dir.join("state.json")).unwrap(), b"{}");
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

    const GOOD_EVENT: &str = r#"{"seq":1,"t_ns":5,"source":"operator","kind":"marker","data":{}}"#;

    /// A power cut tore the last line inside a two-byte Cyrillic character:
    /// the bundle became unreadable ("stream did not contain valid UTF-8").
    #[test]
    fn torn_last_line_with_a_split_utf8_character_is_skipped() {
        let torn = "{\"seq\":2,\"t_ns\":9,\"source\":\"operator\",\"kind\":\"marker\",\"data\":{\"label\":\"Вход";
        let mut bytes = format!("{GOOD_EVENT}\n").into_bytes();
        bytes.extend_from_slice(&torn.as_bytes()[..torn.len() - 1]);
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "the tail must split a character"
        );
        let (events, torn) = parse_events(&bytes).unwrap();
        assert_eq!((events.len(), torn), (1, 1));
        let b = Bundle::new(temp_dir("events-utf8"));
        fs::write(b.events_path(), &bytes).unwrap();
        let (events, torn) = b.read_events().unwrap();
        assert_eq!((events.len(), torn), (1, 1));
    }

    #[test]
    fn event_lines_table() {
        /// (events, torn) or the line of the error.
        type Want = Result<(usize, usize), usize>;
        let cases: Vec<(Vec<u8>, Want)> = vec![
            (b"".to_vec(), Ok((0, 0))),
            (b"\n\n  \n".to_vec(), Ok((0, 0))),
            (format!("{GOOD_EVENT}\n{GOOD_EVENT}\n").into_bytes(), Ok((2, 0))),
            // A whole event that only lacks its newline is kept.
            (format!("{GOOD_EVENT}\n{GOOD_EVENT}").into_bytes(), Ok((2, 0))),
            (format!("{GOOD_EVENT}\n{{\"seq").into_bytes(), Ok((1, 1))),
            (format!("{GOOD_EVENT}\n\0\0\0\0").into_bytes(), Ok((1, 1))),
            // A bad line that has its newline was not torn by a crash.
            (format!("{GOOD_EVENT}\n{{\"seq\n").into_bytes(), Err(2)),
            (format!("nonsense\n{GOOD_EVENT}\n").into_bytes(), Err(1)),
            (b"{\"seq\":1,\"t_ns\":5,\"source\":\"operator\",\"kind\":\"m\xd0\",\"data\":{}}\n{}".to_vec(), Err(1)),
        ];
        for (input, want) in &cases {
            let got = parse_events(input)
                .map(|(e, t)| (e.len(), t))
                .map_err(|e| e.line);
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
        }
    }

    /// `lab-recorder recover` must leave an events file every reader accepts,
    /// without throwing the torn bytes away.
    #[test]
    fn repair_moves_a_torn_utf8_tail_to_events_torn_and_loses_no_byte() {
        let b = Bundle::new(temp_dir("repair"));
        assert_eq!(b.repair_torn_events().unwrap(), None, "no events file");
        let head = format!("{GOOD_EVENT}\n");
        let tail = &"{\"seq\":2,\"kind\":\"Вход".as_bytes()[..20];
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(tail);
        fs::write(b.events_path(), &bytes).unwrap();
        assert_eq!(b.repair_torn_events().unwrap(), Some(tail.len()));
        assert_eq!(fs::read(b.events_path()).unwrap(), head.as_bytes());
        assert_eq!(fs::read(b.torn_events_path()).unwrap(), tail);
        assert_eq!(b.read_events().unwrap().1, 0);
        // Idempotent.
        assert_eq!(b.repair_torn_events().unwrap(), None);
        assert_eq!(fs::read(b.torn_events_path()).unwrap(), tail);
        // A complete last event without its newline gets one and stays.
        fs::write(b.events_path(), format!("{head}{GOOD_EVENT}")).unwrap();
        assert_eq!(b.repair_torn_events().unwrap(), None);
        assert_eq!(
            fs::read_to_string(b.events_path()).unwrap(),
            format!("{head}{GOOD_EVENT}\n")
        );
    }

    /// A manifest naming `../../x/evil` as its life situation made lab-web and
    /// the analyzer load a TOML from outside the journeys folder.
    #[test]
    fn hostile_manifest_values_are_refused_by_read_manifest() {
        let b = Bundle::new(temp_dir("hostile"));
        let seg = |file: &str, start: i64, end: Option<i64>| Segment {
            group: "main".into(),
            index: 0,
            file: file.into(),
            start_ns: start,
            end_ns: end,
            state: SegmentState::Closed,
        };
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|m| m.life_situation = Some("../../../../tmp/evil".into())),
                "life_situation \"../../../../tmp/evil\" is not a journey id",
            ),
            (
                Box::new(|m| m.life_situation = Some("Пособие".into())),
                "not a journey id",
            ),
            (Box::new(|m| m.session_id = "../x".into()), "session_id"),
            (Box::new(|m| m.session_id = ".hidden".into()), "session_id"),
            (Box::new(|m| m.session_id = "a".repeat(129)), "session_id"),
            (
                Box::new(|m| m.participant = "Иван Петров".into()),
                "participant",
            ),
            (Box::new(|m| m.participant = "P".repeat(33)), "participant"),
            (Box::new(|m| m.consent = " ".into()), "consent"),
            (
                Box::new(move |m| m.segments = vec![seg("/etc/passwd", 0, None)]),
                "segment file \"/etc/passwd\"",
            ),
            (
                Box::new(move |m| m.segments = vec![seg("media/../../x.mkv", 0, None)]),
                "segment file",
            ),
            (
                Box::new(move |m| m.segments = vec![seg("analysis/x.mkv", 0, None)]),
                "segment file",
            ),
            (
                Box::new(move |m| m.segments = vec![seg("media/a/b.mkv", 0, None)]),
                "segment file",
            ),
            (
                Box::new(move |m| m.segments = vec![seg("media/x.mkv", -1, None)]),
                "start_ns = -1",
            ),
            (
                Box::new(move |m| m.segments = vec![seg("media/x.mkv", 0, Some(i64::MAX))]),
                "end_ns",
            ),
            (
                Box::new(move |m| m.segments = vec![seg("media/x.mkv", 0, None); MAX_SEGMENTS + 1]),
                "segments: 200001, more than the limit of 200000",
            ),
            (Box::new(|m| m.duration_ns = Some(i64::MIN)), "duration_ns"),
            (
                Box::new(|m| {
                    m.tracks = vec![video_track("../../screen", 30)];
                }),
                "track id",
            ),
            (
                Box::new(|m| m.tracks = vec![video_track("screen", 0)]),
                "framerate = 0",
            ),
            (
                Box::new(|m| {
                    let mut t = video_track("screen", 30);
                    t.groups.clear();
                    m.tracks = vec![t];
                }),
                "groups",
            ),
        ];
        for (edit, want) in cases {
            let mut m = sample_manifest();
            edit(&mut m);
            b.write_manifest(&m).unwrap();
            let err = b.read_manifest().unwrap_err();
            let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
            assert!(chain.contains(want), "want {want:?} in {chain}");
        }
        let mut m = sample_manifest();
        m.life_situation = Some("child-benefit".into());
        m.tracks = vec![video_track("screen", 30)];
        m.segments = vec![seg("media/main-00000.mkv", 0, Some(2_000_000_000))];
        b.write_manifest(&m).unwrap();
        assert_eq!(b.read_manifest().unwrap(), m);
    }

    fn video_track(id: &str, fps: u32) -> Track {
        Track {
            id: id.into(),
            kind: TrackKind::Video,
            codec: "h264".into(),
            encoder: "x264enc".into(),
            source: "videotestsrc".into(),
            device: String::new(),
            groups: vec!["main".into()],
            width: Some(320),
            height: Some(240),
            framerate: Some(fps),
            sample_rate: None,
            channels: None,
            channel_roles: vec![],
        }
    }

    #[test]
    fn an_oversized_manifest_is_refused_before_parsing() {
        let b = Bundle::new(temp_dir("huge"));
        let f = File::create(b.manifest_path()).unwrap();
        f.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let err = b.read_manifest().unwrap_err().to_string();
        assert!(err.contains("-byte limit"), "{err}");
    }

    #[test]
    fn torn_last_event_line_is_skipped_but_a_bad_middle_line_is_an_error() {
        let b = Bundle::new(temp_dir("events"));
        fs::write(b.events_path(), format!("{GOOD_EVENT}\n{{\"seq\":2,\"t_")).unwrap();
        let (events, torn) = b.read_events().unwrap();
        assert_eq!((events.len(), torn), (1, 1));
        fs::write(b.events_path(), format!("nonsense\n{GOOD_EVENT}\n")).unwrap();
        let err = b.read_events().unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
