//! The manifest: what a bundle holds (tracks, segments, clock mapping,
//! gaps, status) and the validation every reader applies before trusting it.

use serde::{Deserialize, Serialize};

use super::limits::*;

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
    #[error("sensor file {0:?} is not sensors/<name>.jsonl")]
    SensorFile(String),
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
    /// Lab Streaming Layer streams recorded beside the media (`sensors/`),
    /// listed when the recording ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<super::sensors::SensorTrack>,
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
        count("sensors", self.sensors.len(), super::sensors::MAX_SENSORS)?;
        for t in &self.sensors {
            if !super::sensors::valid_sensor_file(&t.stream.file) {
                return Err(E::SensorFile(t.stream.file.clone()));
            }
            count("sensor gaps", t.gaps.len(), MAX_GAPS)?;
            let texts = [
                &t.stream.name,
                &t.stream.kind,
                &t.stream.source_id,
                &t.stream.hostname,
            ]
            .into_iter()
            .chain(
                t.stream
                    .channels
                    .iter()
                    .flat_map(|c| [&c.label, &c.unit, &c.kind]),
            );
            for text in texts {
                count(
                    "characters in a sensor's text",
                    text.chars().count(),
                    super::sensors::MAX_SENSOR_TEXT,
                )?;
            }
            count(
                "sensor channels",
                t.stream.channels.len(),
                super::sensors::MAX_SENSOR_CHANNELS,
            )?;
        }
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
