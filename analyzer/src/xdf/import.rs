//! `lab-analyze import-xdf FILE.xdf BUNDLE`: a LabRecorder file made beside
//! a session becomes sensor streams of its bundle, on the session clock.
//!
//! The file's stamps are synchronised and dejittered as pyxdf does
//! ([`super::sync`]), which puts every stream on the clock of the machine
//! LabRecorder ran on. That clock is then tied to the session by one rule:
//!
//! - `--align marker` (the default): the recorder announced the session on
//!   the LSL marker stream `lab-session` (`lab-recorder record
//!   --lsl-announce`) and LabRecorder recorded it: the `start <session id>`
//!   marker is session time 0. A `stop` marker, when there, checks the
//!   result against the manifest's duration (reported, not applied).
//! - `--align offset`: LabRecorder ran on the station itself, so its clock
//!   is the station's `CLOCK_MONOTONIC` (liblsl's clock on Linux) and
//!   session time is the stamp minus the manifest's
//!   `clock.session_zero_monotonic_ns`.
//!
//! Samples outside the session (LabRecorder usually starts before it and
//! stops after) are left out and counted. Marker streams also become events
//! (`source: sensor`, `kind: lsl_marker`, `data.origin: "xdf"`). Each
//! imported stream carries `origin: "xdf <sha256> <file name>"`, and a file
//! already imported into the bundle is refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use lab_model::bundle::Bundle;
use lab_model::bundle::sensors::{
    SENSOR_FORMAT, SENSOR_FORMAT_VERSION, SENSORS_DIR, SESSION_MARKER_STREAM, SampleValues,
    SensorGap, SensorHeader, SensorLine, SensorStream, sensor_file_for, session_marker, summarize,
};
use lab_model::event::{Event, EventSource};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::read::{Values, XdfStream, read_xdf};
use super::sync::{SyncReport, synchronize};

/// How the file's clock is tied to the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Align {
    /// The `lab-session` start marker is session time 0.
    Marker,
    /// The file's clock is the station's `CLOCK_MONOTONIC`.
    Offset,
}

/// Samples per line of a written sensor file.
const LINE_SAMPLES: usize = 128;
/// A marker's text kept in its event.
const MAX_MARKER_CHARS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ImportedStream {
    pub name: String,
    pub file: String,
    pub samples: usize,
    pub before_session: usize,
    pub after_session: usize,
    pub sync: SyncReport,
}

#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The file's (synchronised) clock at session time 0, seconds.
    pub zero_s: f64,
    /// Session time of the `stop` marker, seconds (marker alignment): the
    /// recorder sends it when asked to stop, shortly before the manifest's
    /// `duration_ns`.
    pub stop_marker_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub streams: Vec<ImportedStream>,
    pub marker_events: usize,
    pub skipped_chunks: usize,
}

/// The file the user names may be a link (unlike a bundle's files, which
/// `worker::mirror::hash_file` reads without following one).
fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", h.finalize()))
}

/// The synchronised stamp of `marker` on the session marker stream.
fn marker_time(streams: &[XdfStream], marker: &str) -> Option<f64> {
    streams
        .iter()
        .filter(|s| s.name == SESSION_MARKER_STREAM)
        .find_map(|s| match &s.values {
            Values::Strings(rows) => rows
                .iter()
                .position(|r| r.first().is_some_and(|m| m.trim() == marker))
                .map(|i| s.stamps[i]),
            Values::Numbers(_) => None,
        })
}

pub fn import_xdf(xdf: &Path, dir: &Path, align: Align) -> anyhow::Result<ImportReport> {
    let bundle = Bundle::new(dir);
    let mut manifest = bundle.read_manifest()?;
    // The recorder writes the manifest's sensors when it stops: what is
    // added before would be overwritten.
    if manifest.status == lab_model::bundle::SessionStatus::Recording {
        bail!(
            "{} is still recording (or its recorder was killed: run `lab-recorder recover` on it first)",
            dir.display()
        );
    }
    let sha = sha256_file(xdf)?;
    let file_name = xdf
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(100).collect::<String>())
        .unwrap_or_default();
    let origin = format!("xdf {sha} {file_name}");
    if manifest
        .sensors
        .iter()
        .any(|t| t.stream.origin.split(' ').nth(1) == Some(sha.as_str()))
    {
        bail!(
            "{} is already imported into {} (the same file, sha256 {sha})",
            xdf.display(),
            dir.display()
        );
    }
    let mut file = read_xdf(xdf)?;
    // The stamps as the senders wrote them, kept in the sensor file.
    let raw: Vec<Vec<f64>> = file.streams.iter().map(|s| s.stamps.clone()).collect();
    let reports = synchronize(&mut file.streams);
    let zero_ns = i64::try_from(manifest.clock.session_zero_monotonic_ns)
        .context("the manifest's session_zero_monotonic_ns is out of range")?;
    let id = manifest.session_id.clone();
    let (zero_s, stop_marker_s) = match align {
        Align::Marker => {
            let start = marker_time(&file.streams, &session_marker("start", &id)).with_context(|| {
                format!(
                    "{} has no «{}» marker on a «{SESSION_MARKER_STREAM}» stream: record the session with `lab-recorder record --lsl-announce` while LabRecorder records that stream, or, if LabRecorder ran on the station itself, use --align offset",
                    xdf.display(),
                    session_marker("start", &id)
                )
            })?;
            let stop = marker_time(&file.streams, &session_marker("stop", &id));
            (start, stop.map(|s| s - start))
        }
        Align::Offset => (zero_ns as f64 / 1e9, None),
    };
    let end_ns = manifest.duration_ns.unwrap_or(i64::MAX);
    let sensors_dir = dir.join(SENSORS_DIR);
    match fs::symlink_metadata(&sensors_dir) {
        Ok(m) if !m.is_dir() => bail!("{} is not a folder", sensors_dir.display()),
        Ok(_) => {}
        Err(_) => fs::create_dir(&sensors_dir)
            .with_context(|| format!("cannot create {}", sensors_dir.display()))?,
    }
    let mut report = ImportReport {
        zero_s,
        stop_marker_s,
        duration_s: manifest.duration_ns.map(|d| d as f64 / 1e9),
        streams: Vec::new(),
        marker_events: 0,
        skipped_chunks: file.skipped_chunks,
    };
    let mut events = Vec::new();
    for ((s, sync), raw) in file.streams.iter().zip(reports).zip(&raw) {
        if s.name == SESSION_MARKER_STREAM || s.stamps.is_empty() {
            continue;
        }
        if manifest.sensors.len() >= lab_model::bundle::sensors::MAX_SENSORS {
            bail!(
                "the bundle would list more than {} sensor streams",
                lab_model::bundle::sensors::MAX_SENSORS
            );
        }
        let taken =
            |f: &str| manifest.sensors.iter().any(|t| t.stream.file == f) || dir.join(f).exists();
        let rel = sensor_file_for(&s.name, taken);
        let stream = SensorStream {
            name: s.name.clone(),
            kind: s.kind.clone(),
            file: rel.clone(),
            channel_format: s.channel_format.clone(),
            nominal_srate: s.nominal_srate,
            channels: (0..s.channel_count)
                .map(|i| s.channels.get(i).cloned().unwrap_or_default())
                .collect(),
            source_id: s.source_id.clone(),
            hostname: s.hostname.clone(),
            origin: origin.clone(),
        }
        .bounded();
        let header = SensorHeader {
            format: SENSOR_FORMAT.into(),
            format_version: SENSOR_FORMAT_VERSION,
            stream,
            session_zero_monotonic_ns: zero_ns,
        };
        let (lines, kept) = sensor_lines(s, raw, &sync, zero_s, end_ns);
        let mut text = serde_json::to_string(&SensorLine::Header(header.clone()))?;
        text.push('\n');
        for l in &lines {
            text += &serde_json::to_string(l)?;
            text.push('\n');
        }
        lab_model::bundle::write_atomic(&dir.join(&rel), text.as_bytes())?;
        if let Values::Strings(rows) = &s.values {
            for (i, t) in &kept {
                let marker: String = rows[*i].join("\t").chars().take(MAX_MARKER_CHARS).collect();
                events.push((
                    *t,
                    json!({ "stream": s.name, "marker": marker, "origin": "xdf" }),
                ));
            }
        }
        let before = s.stamps.iter().filter(|t| to_ns(**t, zero_s) < 0).count();
        report.streams.push(ImportedStream {
            name: s.name.clone(),
            file: rel,
            samples: kept.len(),
            before_session: before,
            after_session: s.stamps.len() - kept.len() - before,
            sync,
        });
        manifest.sensors.push(summarize(&header, &lines));
    }
    report.marker_events = events.len();
    append_events(&bundle, events)?;
    manifest.validate()?;
    bundle.write_manifest(&manifest)?;
    Ok(report)
}

fn to_ns(t: f64, zero_s: f64) -> i64 {
    ((t - zero_s) * 1e9).round() as i64
}

/// The sensor file's lines after its header, and the kept samples (index,
/// session time).
fn sensor_lines(
    s: &XdfStream,
    raw: &[f64],
    sync: &SyncReport,
    zero_s: f64,
    end_ns: i64,
) -> (Vec<SensorLine>, Vec<(usize, i64)>) {
    let kept: Vec<(usize, i64)> = s
        .stamps
        .iter()
        .enumerate()
        .map(|(i, t)| (i, to_ns(*t, zero_s)))
        .filter(|(_, t)| (0..=end_ns).contains(t))
        .collect();
    let mut lines = Vec::new();
    for (t, v) in s.clock_times.iter().zip(&s.clock_values) {
        let t_ns = to_ns(*t, zero_s);
        if (0..=end_ns).contains(&t_ns) {
            lines.push(SensorLine::Clock {
                t_ns,
                offset_s: *v,
                uncertainty_s: sync.fit_residual_s.unwrap_or(0.0),
            });
        }
    }
    // A break between dejitter segments is a gap.
    for w in sync.segments.windows(2) {
        let (a, b) = (
            to_ns(s.stamps[w[0].1], zero_s),
            to_ns(s.stamps[w[1].0], zero_s),
        );
        if a >= 0 && b <= end_ns {
            lines.push(SensorLine::Gap(SensorGap {
                start_ns: a,
                end_ns: b,
            }));
        }
    }
    for chunk in kept.chunks(LINE_SAMPLES) {
        let v = match &s.values {
            Values::Numbers(_) => SampleValues::Numbers(
                chunk
                    .iter()
                    .map(|(i, _)| {
                        s.numbers(*i)
                            .unwrap_or_default()
                            .iter()
                            .map(|x| x.is_finite().then_some(*x))
                            .collect()
                    })
                    .collect(),
            ),
            Values::Strings(rows) => {
                SampleValues::Strings(chunk.iter().map(|(i, _)| rows[*i].clone()).collect())
            }
        };
        lines.push(SensorLine::Samples {
            t_ns: chunk.iter().map(|(_, t)| *t).collect(),
            lsl_t: chunk.iter().map(|(i, _)| raw[*i]).collect(),
            v,
        });
    }
    (lines, kept)
}

/// Appends marker events after the log's last, numbered on from it.
fn append_events(bundle: &Bundle, mut events: Vec<(i64, serde_json::Value)>) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    events.sort_by_key(|(t, _)| *t);
    let path = bundle.events_path();
    let last = if path.exists() {
        bundle.repair_torn_events()?;
        bundle
            .read_events()?
            .0
            .iter()
            .map(|e| e.seq)
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let mut text = String::new();
    for (seq, (t_ns, data)) in (last + 1..).zip(events) {
        let e = Event {
            seq,
            t_ns,
            source: EventSource::Sensor,
            kind: "lsl_marker".into(),
            data,
            client: None,
            client_time_ms: None,
            uncertainty_ns: None,
        };
        text += &serde_json::to_string(&e)?;
        text.push('\n');
    }
    // A planted link is refused, never followed.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot append to {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
