//! Sensor streams recorded beside the media (Lab Streaming Layer: skin
//! conductance, heart rate, EEG, eye trackers, marker streams), one file a
//! stream under `sensors/`, documented in `docs/bundle-format.md`.
//!
//! A sensor file is JSON lines, appended while recording: first a
//! `{"header": …}` line (what the stream said of itself), then
//! `{"samples": …}` lines (each sample's session time, its stamp in the
//! sender's clock and its values), `{"clock": …}` lines (the offset to the
//! sender's clock, measured every few seconds) and `{"gap": …}` lines (the
//! stream went silent, then came back). A reader ignores a torn last line
//! (a killed recorder), as it does for `events.jsonl`.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::limits::safe_component;

/// The folder of sensor files in a bundle.
pub const SENSORS_DIR: &str = "sensors";
/// Value of `format` in a sensor file's header.
pub const SENSOR_FORMAT: &str = "lab-sensor";
pub const SENSOR_FORMAT_VERSION: u32 = 1;
/// Streams one bundle may list.
pub const MAX_SENSORS: usize = 32;
/// Longest stream name, type, unit or label kept (LSL allows any text).
pub const MAX_SENSOR_TEXT: usize = 256;
/// Channels one stream may list (a 256-channel EEG cap fits).
pub const MAX_SENSOR_CHANNELS: usize = 1024;
/// The LSL marker stream a recorder announces its sessions on
/// (`lab-recorder record --lsl-announce`): `start <session id>` stamped at
/// session time 0, `stop <session id>` at the stop, so that a LabRecorder
/// file made beside the session can be put on its clock
/// (`lab-analyze import-xdf --align marker`).
pub const SESSION_MARKER_STREAM: &str = "lab-session";
pub const SESSION_MARKER_TYPE: &str = "Markers";

/// The marker a recorder sends at session time 0 (`start`) and at its stop.
pub fn session_marker(what: &str, session_id: &str) -> String {
    format!("{what} {session_id}")
}

/// A sensor file's `file` in the manifest: `sensors/<name>.jsonl`, one plain
/// file name.
pub fn valid_sensor_file(file: &str) -> bool {
    file.strip_prefix("sensors/")
        .and_then(|f| f.strip_suffix(".jsonl"))
        .is_some_and(|name| safe_component(name, 128, false))
}

/// The file name a stream's samples go to: its name with anything but
/// ASCII letters, digits, `-` and `_` replaced by `_`, then `-2`, `-3`, ...
/// while `taken` says the name is in use.
pub fn sensor_file_for(stream: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut base: String = stream
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() || base.starts_with('.') {
        base.insert(0, 's');
    }
    let mut file = format!("{SENSORS_DIR}/{base}.jsonl");
    let mut n = 2;
    while taken(&file) {
        file = format!("{SENSORS_DIR}/{base}-{n}.jsonl");
        n += 1;
    }
    file
}

/// One channel as the stream described it (empty where it said nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorChannel {
    pub label: String,
    pub unit: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// What a stream said of itself, with its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorStream {
    pub name: String,
    /// LSL's `type`: `EDA`, `EEG`, `Markers`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `sensors/<name>.jsonl`.
    pub file: String,
    /// `float32`, `double64`, `int32`, ..., `string` (a marker stream: its
    /// samples are also events).
    pub channel_format: String,
    /// Samples per second; 0 for an irregular stream.
    pub nominal_srate: f64,
    pub channels: Vec<SensorChannel>,
    #[serde(default)]
    pub source_id: String,
    #[serde(default)]
    pub hostname: String,
    /// Where the samples came from when not recorded live: `xdf <sha256
    /// of the file> <file name>` for `lab-analyze import-xdf`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

impl SensorStream {
    /// The stream within the manifest's bounds: texts cut to
    /// [`MAX_SENSOR_TEXT`] characters, at most [`MAX_SENSOR_CHANNELS`]
    /// channels listed (LSL allows any).
    pub fn bounded(self) -> SensorStream {
        let clip = |s: String| s.chars().take(MAX_SENSOR_TEXT).collect::<String>();
        SensorStream {
            name: clip(self.name),
            kind: clip(self.kind),
            file: self.file,
            channel_format: clip(self.channel_format),
            nominal_srate: self.nominal_srate,
            channels: self
                .channels
                .into_iter()
                .take(MAX_SENSOR_CHANNELS)
                .map(|c| SensorChannel {
                    label: clip(c.label),
                    unit: clip(c.unit),
                    kind: clip(c.kind),
                })
                .collect(),
            source_id: clip(self.source_id),
            hostname: clip(self.hostname),
            origin: clip(self.origin),
        }
    }
}

/// A stream as the manifest lists it once the recording ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorTrack {
    #[serde(flatten)]
    pub stream: SensorStream,
    pub samples: u64,
    /// Session time of the first and last sample.
    #[serde(default)]
    pub first_ns: Option<i64>,
    #[serde(default)]
    pub last_ns: Option<i64>,
    /// The last measured offset to the sender's clock (seconds added to its
    /// stamps) and its uncertainty (the best probe's round trip).
    #[serde(default)]
    pub clock_offset_s: Option<f64>,
    #[serde(default)]
    pub clock_uncertainty_s: Option<f64>,
    /// Times the stream went silent (session ns; an open end is the stop).
    #[serde(default)]
    pub gaps: Vec<SensorGap>,
}

impl SensorTrack {
    /// A stream with nothing recorded yet.
    pub fn new(stream: SensorStream) -> SensorTrack {
        SensorTrack {
            stream,
            samples: 0,
            first_ns: None,
            last_ns: None,
            clock_offset_s: None,
            clock_uncertainty_s: None,
            gaps: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorGap {
    pub start_ns: i64,
    pub end_ns: i64,
}

/// The first line of a sensor file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorHeader {
    pub format: String,
    pub format_version: u32,
    pub stream: SensorStream,
    /// `CLOCK_MONOTONIC` (ns) at session time 0, as in the manifest: a
    /// sample's `t_ns` is its stamp, plus the clock offset, minus this.
    pub session_zero_monotonic_ns: i64,
}

/// Values of the samples of one line: numbers (a non-finite value is
/// `null`) or strings (marker streams).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleValues {
    Numbers(Vec<Vec<Option<f64>>>),
    Strings(Vec<Vec<String>>),
}

impl SampleValues {
    pub fn len(&self) -> usize {
        match self {
            SampleValues::Numbers(v) => v.len(),
            SampleValues::Strings(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One line of a sensor file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorLine {
    Header(SensorHeader),
    Samples {
        /// Session time of each sample.
        t_ns: Vec<i64>,
        /// Each sample's stamp in the sender's clock (seconds).
        lsl_t: Vec<f64>,
        v: SampleValues,
    },
    Clock {
        /// Session time of the measurement.
        t_ns: i64,
        offset_s: f64,
        uncertainty_s: f64,
    },
    Gap(SensorGap),
}

/// What the manifest lists for a sensor file, from the file alone (what
/// `lab-recorder recover` uses when the recorder died before listing it).
/// A gap still open at the end stays out: the file cannot say when it ended.
pub fn summarize(header: &SensorHeader, lines: &[SensorLine]) -> SensorTrack {
    // The manifest's bounds hold whatever the file says.
    let mut track = SensorTrack::new(header.stream.clone().bounded());
    for line in lines {
        match line {
            SensorLine::Samples { t_ns, .. } => {
                track.samples += t_ns.len() as u64;
                if let Some(&t) = t_ns.first() {
                    track.first_ns.get_or_insert(t);
                }
                if let Some(&t) = t_ns.last() {
                    track.last_ns = Some(t);
                }
            }
            SensorLine::Clock {
                offset_s,
                uncertainty_s,
                ..
            } => {
                track.clock_offset_s = Some(*offset_s);
                track.clock_uncertainty_s = Some(*uncertainty_s);
            }
            SensorLine::Gap(g) => track.gaps.push(*g),
            SensorLine::Header(_) => {}
        }
    }
    track.gaps.truncate(super::limits::MAX_GAPS);
    track
}

#[derive(Debug, thiserror::Error)]
pub enum SensorFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads a sensor file: its header and the lines after it. A last line
/// without its newline that does not parse is a torn write and is left out.
pub fn read_sensor_file(path: &Path) -> Result<(SensorHeader, Vec<SensorLine>), SensorFileError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| SensorFileError::Io {
        path: name.clone(),
        source,
    })?;
    let mut lines = Vec::new();
    let mut reader = BufReader::new(file);
    let mut buf = String::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .map_err(|source| SensorFileError::Io {
                path: name.clone(),
                source,
            })?;
        if read == 0 {
            break;
        }
        n += 1;
        let complete = buf.ends_with('\n');
        match serde_json::from_str::<SensorLine>(buf.trim_end()) {
            Ok(l) => lines.push(l),
            Err(_) if !complete => break,
            Err(e) => {
                return Err(SensorFileError::Line {
                    path: name,
                    line: n,
                    message: e.to_string(),
                });
            }
        }
    }
    match lines.first() {
        Some(SensorLine::Header(h)) if h.format == SENSOR_FORMAT => {
            let h = h.clone();
            lines.remove(0);
            Ok((h, lines))
        }
        _ => Err(SensorFileError::Line {
            path: name,
            line: 1,
            message: format!("not a {SENSOR_FORMAT} header"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain_and_unique() {
        let taken = |f: &str| f == "sensors/Shimmer_EDA.jsonl";
        assert_eq!(
            sensor_file_for("Shimmer EDA", taken),
            "sensors/Shimmer_EDA-2.jsonl"
        );
        assert_eq!(
            sensor_file_for("../etc/passwd", |_| false),
            "sensors/___etc_passwd.jsonl"
        );
        assert_eq!(sensor_file_for("", |_| false), "sensors/s.jsonl");
        assert_eq!(sensor_file_for("Кожа", |_| false), "sensors/____.jsonl");
        for ok in ["sensors/a.jsonl", "sensors/Shimmer_EDA-2.jsonl"] {
            assert!(valid_sensor_file(ok), "{ok}");
        }
        for bad in [
            "sensors/../x.jsonl",
            "sensors/.x.jsonl",
            "media/a.jsonl",
            "sensors/a.txt",
            "sensors/a/b.jsonl",
            "/sensors/a.jsonl",
        ] {
            assert!(!valid_sensor_file(bad), "{bad}");
        }
    }

    #[test]
    fn a_file_reads_back_without_its_torn_tail() {
        let dir = std::env::temp_dir().join(format!("lab-sensor-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stream = SensorStream {
            name: "EDA".into(),
            kind: "EDA".into(),
            file: "sensors/EDA.jsonl".into(),
            channel_format: "float32".into(),
            nominal_srate: 128.0,
            channels: vec![SensorChannel {
                label: "EDA".into(),
                unit: "microsiemens".into(),
                kind: "EDA".into(),
            }],
            source_id: "s1".into(),
            hostname: "pc".into(),
            origin: String::new(),
        };
        let header = SensorLine::Header(SensorHeader {
            format: SENSOR_FORMAT.into(),
            format_version: SENSOR_FORMAT_VERSION,
            stream,
            session_zero_monotonic_ns: 5,
        });
        let samples = SensorLine::Samples {
            t_ns: vec![1, 2],
            lsl_t: vec![0.5, 0.6],
            v: SampleValues::Numbers(vec![vec![Some(1.5)], vec![None]]),
        };
        let mut text = String::new();
        for l in [&header, &samples] {
            text += &serde_json::to_string(l).unwrap();
            text.push('\n');
        }
        let path = dir.join("EDA.jsonl");
        std::fs::write(&path, format!("{text}{{\"samples\":{{\"t_ns\":[3")).unwrap();
        let (h, lines) = read_sensor_file(&path).unwrap();
        assert_eq!(h.session_zero_monotonic_ns, 5);
        assert_eq!(lines, vec![samples]);
        let track = summarize(&h, &lines);
        assert_eq!(
            (track.samples, track.first_ns, track.last_ns),
            (2, Some(1), Some(2))
        );
        std::fs::write(&path, format!("{text}garbage\n")).unwrap();
        let err = read_sensor_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(&path, "{\"gap\":{\"start_ns\":1,\"end_ns\":2}}\n").unwrap();
        assert!(read_sensor_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
