//! The station config: which screen, camera and microphones a test room has
//! and how to encode them. Written by `lab-setup probe --write`, edited by
//! people, read by `lab-recorder record --station`. Versioned; unknown fields
//! are errors so a typo does not silently fall back to a default.

use serde::{Deserialize, Serialize};

use crate::bundle::ChannelRole;

pub const STATION_FORMAT_VERSION: u32 = 1;

/// H.264 encoder elements the recorder knows how to configure, preferred
/// first: hardware (NVIDIA, VA-API, Intel Quick Sync, V4L2 M2M), then x264.
pub const H264_ENCODERS: &[&str] = &[
    "nvh264enc",
    "vaapih264enc",
    "qsvh264enc",
    "v4l2h264enc",
    "x264enc",
];

#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("station config is not valid TOML of the expected shape")]
    Parse(#[source] Box<toml::de::Error>),
    #[error(
        "station config has format_version {0}; this build reads version {STATION_FORMAT_VERSION}"
    )]
    Version(u32),
    #[error("station config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    pub format_version: u32,
    /// Station name, written into every bundle.
    pub station: String,
    pub screen: ScreenConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraConfig>,
    #[serde(default)]
    pub microphones: Vec<MicrophoneConfig>,
    #[serde(default)]
    pub encoder: EncoderConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenSource {
    /// X11 / Xvfb through `ximagesrc`.
    Ximage,
    /// Wayland / PipeWire screencast through `pipewiresrc` (`device` = node path).
    Pipewire,
    /// `videotestsrc`.
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenConfig {
    pub source: ScreenSource,
    /// X display (`:0`) or PipeWire node; empty means `$DISPLAY`.
    #[serde(default)]
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraSource {
    V4l2,
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub source: CameraSource,
    /// `/dev/videoN`.
    #[serde(default)]
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MicrophoneSource {
    Pulse,
    Alsa,
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrophoneConfig {
    pub source: MicrophoneSource,
    /// Pulse source name or ALSA device; empty means the default source.
    #[serde(default)]
    pub device: String,
    pub channels: u32,
    /// One role per channel; a stereo interface with two lavalier mics gives
    /// `["participant", "moderator"]`.
    pub roles: Vec<ChannelRole>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// H.264 encoder element: `x264enc`, `nvh264enc`, `vaapih264enc`, `qsvh264enc`, `v4l2h264enc`.
    pub video: String,
    pub video_bitrate_kbps: u32,
    pub audio_bitrate_kbps: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            video: "x264enc".into(),
            video_bitrate_kbps: 4000,
            audio_bitrate_kbps: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Length of one media segment; a crash loses at most the open one.
    pub segment_seconds: u32,
    /// Where the event endpoint listens (`127.0.0.1:0` picks a free port).
    pub events_listen: String,
    /// Origins (`scheme://host[:port]`) of lab-controlled pages that include
    /// `/probe.js` themselves; their probe may send events without the
    /// token the recorder gives the probe it injects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probe_origins: Vec<String>,
    /// Lab Streaming Layer streams (by name) every recording on this
    /// station records, besides those given with `lab-recorder record --lsl`
    /// (`lab-setup probe` lists the streams it sees).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lsl_streams: Vec<String>,
    /// Announce each session on the LSL marker stream `lab-session`
    /// (`start <session id>` at session time 0, `stop <session id>`), for a
    /// LabRecorder running beside the station (`lab-analyze import-xdf`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lsl_announce: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            segment_seconds: 2,
            events_listen: "127.0.0.1:7700".into(),
            probe_origins: Vec::new(),
            lsl_streams: Vec::new(),
            lsl_announce: false,
        }
    }
}

impl StationConfig {
    pub fn from_toml(text: &str) -> Result<Self, StationError> {
        let config: StationConfig =
            toml::from_str(text).map_err(|e| StationError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("station config serialises")
    }

    pub fn validate(&self) -> Result<(), StationError> {
        if self.format_version != STATION_FORMAT_VERSION {
            return Err(StationError::Version(self.format_version));
        }
        let bad = |m: String| Err(StationError::Invalid(m));
        let s = &self.screen;
        if s.width == 0 || s.height == 0 || !(1..=120).contains(&s.framerate) {
            return bad(format!(
                "screen {}x{}@{} is not a usable size and rate",
                s.width, s.height, s.framerate
            ));
        }
        if let Some(c) = &self.camera {
            if c.width == 0 || c.height == 0 || !(1..=120).contains(&c.framerate) {
                return bad(format!(
                    "camera {}x{}@{} is not a usable size and rate",
                    c.width, c.height, c.framerate
                ));
            }
            if c.source == CameraSource::V4l2 && c.device.is_empty() {
                return bad("camera.device must name a /dev/video device".into());
            }
        }
        for (i, m) in self.microphones.iter().enumerate() {
            if !(1..=8).contains(&m.channels) {
                return bad(format!("microphones[{i}].channels must be 1-8"));
            }
            if m.roles.len() != m.channels as usize {
                return bad(format!(
                    "microphones[{i}] has {} channels but {} roles; give one role per channel",
                    m.channels,
                    m.roles.len()
                ));
            }
        }
        if !H264_ENCODERS.contains(&self.encoder.video.as_str()) {
            return bad(format!(
                "encoder.video {:?} is not one of {H264_ENCODERS:?}",
                self.encoder.video
            ));
        }
        if !(100..=50_000).contains(&self.encoder.video_bitrate_kbps)
            || !(6..=510).contains(&self.encoder.audio_bitrate_kbps)
        {
            return bad(
                "encoder bitrates must be 100-50000 kbit/s (video) and 6-510 kbit/s (audio)".into(),
            );
        }
        if self
            .recording
            .events_listen
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return bad(format!(
                "recording.events_listen {:?} is not an address like 127.0.0.1:7700",
                self.recording.events_listen
            ));
        }
        let lsl = &self.recording.lsl_streams;
        if lsl.len() > crate::bundle::sensors::MAX_SENSORS
            || lsl
                .iter()
                .any(|n| n.trim().is_empty() || n.chars().count() > 256 || n.contains('\0'))
        {
            return bad(format!(
                "recording.lsl_streams must be at most {} stream names of 1-256 characters",
                crate::bundle::sensors::MAX_SENSORS
            ));
        }
        if !(1..=60).contains(&self.recording.segment_seconds) {
            return bad("recording.segment_seconds must be 1-60".into());
        }
        for o in &self.recording.probe_origins {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            if !rest.is_some_and(|h| !h.is_empty() && !h.contains(['/', '?', '#', ' '])) {
                return bad(format!(
                    "recording.probe_origins entry {o:?} is not an origin like https://prototype.example:8443"
                ));
            }
        }
        Ok(())
    }

    /// The configuration used when none is given: this machine's X display,
    /// a 720p camera and the default microphone. `--test-sources` swaps every
    /// source for a GStreamer test pattern but keeps sizes and rates.
    pub fn default_station() -> Self {
        Self {
            format_version: STATION_FORMAT_VERSION,
            station: "station".into(),
            screen: ScreenConfig {
                source: ScreenSource::Ximage,
                device: String::new(),
                width: 1280,
                height: 720,
                framerate: 30,
            },
            camera: Some(CameraConfig {
                source: CameraSource::V4l2,
                device: "/dev/video0".into(),
                width: 1280,
                height: 720,
                framerate: 30,
            }),
            microphones: vec![MicrophoneConfig {
                source: MicrophoneSource::Pulse,
                device: String::new(),
                channels: 1,
                roles: vec![ChannelRole::Mixed],
            }],
            encoder: EncoderConfig::default(),
            recording: RecordingConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_toml() {
        let c = StationConfig::default_station();
        assert_eq!(StationConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn lsl_streams_round_trip_and_are_bounded() {
        let mut c = StationConfig::default_station();
        c.recording.lsl_streams = vec!["Shimmer EDA".into(), "Маркеры".into()];
        assert_eq!(StationConfig::from_toml(&c.to_toml()).unwrap(), c);
        for bad in [
            vec![" ".to_string()],
            vec!["x".repeat(257)],
            vec!["a".into(); 33],
        ] {
            c.recording.lsl_streams = bad;
            let err = StationConfig::from_toml(&c.to_toml())
                .unwrap_err()
                .to_string();
            assert!(err.contains("recording.lsl_streams"), "{err}");
        }
    }

    #[test]
    fn partial_tables_take_defaults() {
        let base = StationConfig::default_station().to_toml();
        let c = StationConfig::from_toml(&base.replace("video_bitrate_kbps = 4000\n", "")).unwrap();
        assert_eq!(
            c.encoder.video_bitrate_kbps,
            EncoderConfig::default().video_bitrate_kbps
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let base = StationConfig::default_station().to_toml();
        let cases = [
            (
                base.replace("format_version = 1", "format_version = 9"),
                "format_version 9",
            ),
            (
                base.replace("channels = 1", "channels = 2"),
                "2 channels but 1 roles",
            ),
            (
                base.replace("framerate = 30", "framerate = 0"),
                "not a usable size",
            ),
            (format!("{base}\nbogus = 1\n"), "expected shape"),
            (
                base.replace("video = \"x264enc\"", "video = \"x264enc ! evil\""),
                "not one of",
            ),
            (
                base.replace("127.0.0.1:7700", "localhost"),
                "not an address",
            ),
        ];
        for (text, want) in cases {
            let err = StationConfig::from_toml(&text).unwrap_err();
            let chain = format!("{err} {:?}", std::error::Error::source(&err));
            assert!(chain.contains(want), "want {want:?} in {chain}");
        }
    }
}
