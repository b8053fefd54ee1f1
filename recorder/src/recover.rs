//! Recovery of a bundle whose recorder died (kill -9, power loss, OOM).
//!
//! The manifest on disk already lists every segment that was opened (it is
//! rewritten on each open/close). What the crash leaves unfinished is the
//! last segment of each group: its Matroska header has no duration and no
//! index, but its clusters decode. We find how far it really goes by
//! demuxing it, mark it `recovered`, and set the session `interrupted`.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::{Bundle, Segment, SegmentState, SessionStatus};

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Bundle(#[from] lab_model::BundleError),
    #[error(
        "the recorder (pid {0}) of this bundle is still running; stop it first or pass --force"
    )]
    StillRunning(u32),
    #[error("failed to initialise GStreamer")]
    Gst(#[source] gst::glib::Error),
}

#[derive(Debug)]
pub struct RecoverReport {
    /// False when the bundle was already final and nothing changed.
    pub changed: bool,
    pub status: SessionStatus,
    pub segments: usize,
    /// Seconds of media (main group) from session start to the end of the last readable packet.
    pub recorded_secs: f64,
    /// Bytes of a torn last event line moved to `events.jsonl.torn`.
    pub torn_bytes: Option<usize>,
}

/// Whether a recorder process with this pid still runs (a zombie, or a pid
/// reused by another program, does not count).
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised command name: state is the first.
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            state != Some(Some('Z')) && comm.trim() == "lab-recorder"
        }
        Err(_) => false,
    }
}

/// The sensor streams a killed recorder wrote but did not list: every plain
/// `sensors/<name>.jsonl` whose header reads (a torn last line is left out;
/// a file that does not read is left unlisted, and logged).
fn recover_sensors(bundle: &Bundle) -> Vec<lab_model::SensorTrack> {
    use lab_model::bundle::sensors::{MAX_SENSORS, read_sensor_file, summarize, valid_sensor_file};
    let dir = bundle.dir.join(lab_model::SENSORS_DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| valid_sensor_file(&format!("{}/{n}", lab_model::SENSORS_DIR)))
        .collect();
    names.sort();
    names
        .into_iter()
        .take(MAX_SENSORS)
        .filter_map(|n| match read_sensor_file(&dir.join(&n)) {
            Ok((header, lines)) => {
                let mut track = summarize(&header, &lines);
                // Where the file is, not what its header claims.
                track.stream.file = format!("{}/{n}", lab_model::SENSORS_DIR);
                Some(track)
            }
            Err(e) => {
                tracing::warn!("{}/{n} not listed: {e}", lab_model::SENSORS_DIR);
                None
            }
        })
        .collect()
}

/// Repairs the manifest of a bundle left in `recording` by a dead recorder.
pub fn recover(dir: &Path, force: bool) -> Result<RecoverReport, RecoverError> {
    let bundle = Bundle::new(dir);
    let mut m = bundle.read_manifest()?;
    let report = |m: &lab_model::Manifest, changed, torn_bytes| RecoverReport {
        changed,
        torn_bytes,
        status: m.status,
        segments: m.segments.len(),
        recorded_secs: m
            .segments
            .iter()
            .filter(|s| s.group == "main")
            .filter_map(|s| s.end_ns)
            .max()
            .unwrap_or(0) as f64
            / 1e9,
    };
    if m.status == SessionStatus::Recording
        && !force
        && m.recorder.pid != std::process::id()
        && process_alive(m.recorder.pid)
    {
        return Err(RecoverError::StillRunning(m.recorder.pid));
    }
    // A line torn by the crash (possibly inside a UTF-8 character) moves to
    // events.jsonl.torn, so the log ends on a whole event again and no byte is lost.
    let torn = bundle.repair_torn_events()?;
    if m.status != SessionStatus::Recording {
        return Ok(report(&m, torn.is_some(), torn));
    }
    gst::init().map_err(RecoverError::Gst)?;

    // Segments the manifest may not know yet (opened in the instant before the crash).
    if let Ok(entries) = fs::read_dir(bundle.media_dir()) {
        // Only plain files with names the bundle contract allows: a link or an
        // odd name must not end up in the manifest (or be read by the demuxer).
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| {
                n.ends_with(".mkv")
                    && lab_model::bundle::valid_segment_file(&format!(
                        "{}/{n}",
                        lab_model::bundle::MEDIA_DIR
                    ))
            })
            .collect();
        files.sort();
        for name in files {
            let file = format!("{}/{name}", lab_model::bundle::MEDIA_DIR);
            if m.segments.iter().any(|s| s.file == file) {
                continue;
            }
            let Some((group, index)) = name.trim_end_matches(".mkv").rsplit_once('-') else {
                continue;
            };
            let start = m
                .segments
                .iter()
                .filter(|s| s.group == group)
                .filter_map(|s| s.end_ns)
                .max()
                .unwrap_or(0);
            m.segments.push(Segment {
                group: group.to_string(),
                index: index.parse().unwrap_or(0),
                file,
                start_ns: start,
                end_ns: None,
                state: SegmentState::Open,
            });
        }
    }
    if m.sensors.is_empty() {
        m.sensors = recover_sensors(&bundle);
    }
    for s in &mut m.segments {
        if s.state == SegmentState::Open {
            s.end_ns = last_timestamp(&dir.join(&s.file));
            s.state = SegmentState::Recovered;
        }
    }
    m.segments
        .retain(|s| s.end_ns.is_some() || s.state == SegmentState::Closed);
    let end = m.segments.iter().filter_map(|s| s.end_ns).max();
    m.duration_ns = end;
    for g in &mut m.gaps {
        if g.end_ns.is_none() {
            g.end_ns = end;
        }
    }
    m.status = SessionStatus::Interrupted;
    m.stop_reason = Some(format!(
        "recorder (pid {}) ended without finalizing; recovered from the segments on disk",
        m.recorder.pid
    ));
    let _ = fs::remove_file(dir.join(lab_model::bundle::RESERVE_FILE));
    bundle.write_manifest(&m)?;
    Ok(report(&m, true, torn))
}

/// End (pts + duration) of the last packet of a possibly truncated Matroska file.
pub fn last_timestamp(path: &Path) -> Option<i64> {
    let desc = format!(
        "filesrc location=\"{}\" ! matroskademux ! fakesink name=sink sync=false",
        path.to_string_lossy().replace('"', "\\\"")
    );
    let pipeline = gst::parse::launch(&desc)
        .ok()?
        .downcast::<gst::Pipeline>()
        .ok()?;
    let end = Arc::new(Mutex::new(None::<i64>));
    let sink = pipeline.by_name("sink")?;
    let end2 = end.clone();
    sink.static_pad("sink")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                let t = buf
                    .pts()
                    .map(|p| p + buf.duration().unwrap_or(gst::ClockTime::ZERO));
                if let Some(t) = t {
                    let mut e = end2.lock().expect("end lock");
                    *e = Some(e.map_or(t.nseconds() as i64, |x| x.max(t.nseconds() as i64)));
                }
            }
            gst::PadProbeReturn::Ok
        });
    if pipeline.set_state(gst::State::Playing).is_err() {
        let _ = pipeline.set_state(gst::State::Null);
        return None;
    }
    let bus = pipeline.bus()?;
    // A truncated file ends in EOS or in a demuxer error; either way we keep what decoded.
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    *end.lock().expect("end lock")
}
