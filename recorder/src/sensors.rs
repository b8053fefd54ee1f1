//! Lab Streaming Layer streams recorded beside the media (`--lsl NAME`).
//!
//! One thread a stream: it finds the stream by name (waiting for it while
//! the recording runs), opens an inlet, writes the stream's description as
//! the header of `sensors/<name>.jsonl`, then appends each pulled chunk with
//! every sample's session time, measures the offset to the sender's clock
//! every [`CLOCK_EVERY`], and notes a gap when a regular stream falls
//! silent. A line reaches the file (the OS) as soon as it is pulled and is
//! synced at least every [`SYNC_EVERY`], so a killed recorder loses what was
//! not yet pulled (at most [`PULL_WAIT`] of samples, in liblsl's buffer).
//!
//! Session time: LSL stamps are `CLOCK_MONOTONIC` seconds of the sender;
//! plus the measured offset they are this machine's, and the session's zero
//! is `CLOCK_MONOTONIC` at the pipeline's base time (the pipeline runs on the
//! system's monotonic clock). A marker stream's samples (strings) also become
//! events (`source: sensor`, `kind: lsl_marker`).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lab_lsl::{Format, Inlet, Lsl};
use lab_model::bundle::SENSORS_DIR;
use lab_model::bundle::sensors::{
    SENSOR_FORMAT, SENSOR_FORMAT_VERSION, SampleValues, SensorChannel, SensorGap, SensorHeader,
    SensorLine, SensorStream, SensorTrack, sensor_file_for,
};
use serde_json::{Value, json};

/// How long a pull waits for samples.
pub const PULL_WAIT: Duration = Duration::from_millis(200);
/// How often the clock offset is measured and written.
pub const CLOCK_EVERY: Duration = Duration::from_secs(5);
/// How often the file is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// A regular stream silent this long (or ten sample periods, if longer)
/// has a gap.
pub const SILENT_AFTER: Duration = Duration::from_secs(2);

/// What a `--lsl` entry (or `recording.lsl_streams` item) asks for: a
/// stream name, or `type=…`, `source_id=…`, `hostname=…` or `name=…`.
pub fn selector(entry: &str) -> (&str, &str) {
    match entry.split_once('=') {
        Some((p @ ("type" | "source_id" | "hostname" | "name"), v)) if !v.is_empty() => (p, v),
        _ => ("name", entry),
    }
}

/// What a stream thread tells the recording (it writes events).
#[derive(Debug, Clone, PartialEq)]
pub enum SensorEvent {
    /// A marker at its session time.
    Marker { t_ns: i64, data: Value },
    /// A system event (`sensor_found`, `sensor_lost`, `sensor_back`,
    /// `sensor_missing`, `sensor_failed`).
    System { kind: &'static str, data: Value },
}

/// The running stream threads.
pub struct Sensors {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Option<SensorTrack>>>,
}

impl Sensors {
    /// Starts one thread per stream name; `zero_ns` is `CLOCK_MONOTONIC` at
    /// session time 0, `now_ns` the session clock.
    pub fn start(
        lsl: Arc<Lsl>,
        names: &[String],
        bundle_dir: &Path,
        zero_ns: i64,
        now_ns: Arc<dyn Fn() -> i64 + Send + Sync>,
        events: tokio::sync::mpsc::UnboundedSender<SensorEvent>,
    ) -> std::io::Result<Sensors> {
        fs::create_dir_all(bundle_dir.join(SENSORS_DIR))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut taken: Vec<String> = Vec::new();
        let mut threads = Vec::new();
        for name in names {
            let file = sensor_file_for(name, |f| taken.iter().any(|t| t == f));
            taken.push(file.clone());
            let stream = StreamThread {
                lsl: lsl.clone(),
                name: name.clone(),
                file,
                path: bundle_dir.to_path_buf(),
                zero_ns,
                now_ns: now_ns.clone(),
                events: events.clone(),
                stop: stop.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("lsl-{name}"))
                    .spawn(move || stream.run())?,
            );
        }
        Ok(Sensors { stop, threads })
    }

    /// Stops every thread and returns the streams that were recorded.
    pub fn stop(mut self) -> Vec<SensorTrack> {
        self.stop.store(true, Ordering::SeqCst);
        std::mem::take(&mut self.threads)
            .into_iter()
            .filter_map(|t| t.join().ok().flatten())
            .collect()
    }
}

impl Drop for Sensors {
    /// A recording that ends any other way (an error, a panic) still stops
    /// the threads; each syncs its file on the way out.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct StreamThread {
    lsl: Arc<Lsl>,
    name: String,
    file: String,
    path: PathBuf,
    zero_ns: i64,
    now_ns: Arc<dyn Fn() -> i64 + Send + Sync>,
    events: tokio::sync::mpsc::UnboundedSender<SensorEvent>,
    stop: Arc<AtomicBool>,
}

impl StreamThread {
    fn system(&self, kind: &'static str, mut data: Value) {
        data["stream"] = json!(self.name);
        let _ = self.events.send(SensorEvent::System { kind, data });
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(self) -> Option<SensorTrack> {
        let inlet = self.find()?;
        match self.record(inlet) {
            Ok(track) => Some(track),
            Err(e) => {
                tracing::error!("sensor stream {}: {e}", self.name);
                self.system("sensor_failed", json!({ "error": e }));
                None
            }
        }
    }

    /// Waits for the stream while the recording runs.
    fn find(&self) -> Option<Inlet> {
        let started = Instant::now();
        let mut told = false;
        while !self.stopped() {
            let (prop, value) = selector(&self.name);
            match self.lsl.resolve_by(prop, value, Duration::from_millis(500)) {
                Ok(found) if !found.is_empty() => match found[0].open(360) {
                    Ok(inlet) => return Some(inlet),
                    Err(e) => tracing::warn!("sensor stream {}: {e}", self.name),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!("sensor stream {}: {e}", self.name),
            }
            if !told && started.elapsed() > Duration::from_secs(5) {
                told = true;
                self.system("sensor_missing", json!({ "waited_s": 5 }));
            }
        }
        None
    }

    fn record(&self, mut inlet: Inlet) -> Result<SensorTrack, String> {
        let info = inlet
            .full_info(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        inlet
            .open_stream(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let stream = SensorStream {
            name: info.name.clone(),
            kind: info.kind.clone(),
            file: self.file.clone(),
            channel_format: info.format.name().to_string(),
            nominal_srate: info.nominal_srate,
            channels: (0..info.channel_count)
                .map(|i| {
                    let c = info.channels.get(i).cloned().unwrap_or_default();
                    SensorChannel {
                        label: c.label,
                        unit: c.unit,
                        kind: c.kind,
                    }
                })
                .collect(),
            source_id: info.source_id.clone(),
            hostname: info.hostname.clone(),
            origin: String::new(),
        }
        .bounded();
        let mut out = SensorFile::create(&self.path, &self.file)
            .map_err(|e| format!("{}: {e}", self.file))?;
        out.line(&SensorLine::Header(SensorHeader {
            format: SENSOR_FORMAT.into(),
            format_version: SENSOR_FORMAT_VERSION,
            stream: stream.clone(),
            session_zero_monotonic_ns: self.zero_ns,
        }))?;
        self.system(
            "sensor_found",
            json!({ "type": stream.kind, "channels": info.channel_count, "nominal_srate": info.nominal_srate, "file": self.file }),
        );
        let mut track = SensorTrack::new(stream);
        let silent_after = if info.nominal_srate > 0.0 {
            SILENT_AFTER.max(Duration::from_secs_f64(10.0 / info.nominal_srate))
        } else {
            Duration::MAX
        };
        let mut offset = 0.0;
        let mut last_clock: Option<Instant> = None;
        let mut last_data = Instant::now();
        let mut silent_since: Option<i64> = None;
        let markers = info.format == Format::String;
        loop {
            // Not when stopping: a sender that is gone would hold the stop
            // for the probe's timeout; the last offset is at most
            // CLOCK_EVERY old.
            let stopping = self.stopped();
            if !stopping && last_clock.is_none_or(|t| t.elapsed() >= CLOCK_EVERY) {
                if let Ok(c) = inlet.time_correction(Duration::from_secs(2)) {
                    offset = c.offset;
                    track.clock_offset_s = Some(c.offset);
                    track.clock_uncertainty_s = Some(c.uncertainty);
                    out.line(&SensorLine::Clock {
                        t_ns: (self.now_ns)(),
                        offset_s: c.offset,
                        uncertainty_s: c.uncertainty,
                    })?;
                }
                last_clock = Some(Instant::now());
            }
            let wait = if stopping { Duration::ZERO } else { PULL_WAIT };
            let (stamps, values) = if markers {
                let c = inlet.pull_strings(1024, wait).map_err(|e| e.to_string())?;
                let n = info.channel_count.max(1);
                let rows: Vec<Vec<String>> = c.values.chunks(n).map(<[String]>::to_vec).collect();
                (c.stamps, SampleValues::Strings(rows))
            } else {
                let c = inlet.pull_numeric(4096, wait).map_err(|e| e.to_string())?;
                let n = info.channel_count.max(1);
                let rows = c
                    .values
                    .chunks(n)
                    .map(|r| r.iter().map(|v| v.is_finite().then_some(*v)).collect())
                    .collect();
                (c.stamps, SampleValues::Numbers(rows))
            };
            if stamps.is_empty() {
                if silent_since.is_none() && last_data.elapsed() >= silent_after {
                    let since = (self.now_ns)()
                        - i64::try_from(last_data.elapsed().as_nanos()).unwrap_or(i64::MAX);
                    silent_since = Some(since.max(0));
                    self.system(
                        "sensor_lost",
                        json!({ "silent_s": last_data.elapsed().as_secs_f64() }),
                    );
                }
            } else {
                last_data = Instant::now();
                let t_ns: Vec<i64> = stamps
                    .iter()
                    .map(|s| ((s + offset) * 1e9).round() as i64 - self.zero_ns)
                    .collect();
                if let Some(start_ns) = silent_since.take() {
                    let gap = SensorGap {
                        start_ns,
                        end_ns: t_ns[0].max(start_ns),
                    };
                    track.gaps.push(gap);
                    out.line(&SensorLine::Gap(gap))?;
                    self.system(
                        "sensor_back",
                        json!({ "gap_s": (gap.end_ns - gap.start_ns) as f64 / 1e9 }),
                    );
                }
                if let SampleValues::Strings(rows) = &values {
                    for (t, row) in t_ns.iter().zip(rows) {
                        let _ = self.events.send(SensorEvent::Marker {
                            t_ns: *t,
                            data: json!({ "stream": self.name, "marker": row.join("\t") }),
                        });
                    }
                }
                track.samples += t_ns.len() as u64;
                track.first_ns.get_or_insert(t_ns[0]);
                track.last_ns = t_ns.last().copied();
                out.line(&SensorLine::Samples {
                    t_ns,
                    lsl_t: stamps,
                    v: values,
                })?;
            }
            if stopping {
                break;
            }
        }
        if let Some(start_ns) = silent_since {
            let gap = SensorGap {
                start_ns,
                end_ns: (self.now_ns)().max(start_ns),
            };
            track.gaps.push(gap);
            out.line(&SensorLine::Gap(gap))?;
        }
        out.sync()?;
        Ok(track)
    }
}

/// An append-only sensor file: each line written whole, synced every
/// [`SYNC_EVERY`]. Errors name it relative to the bundle.
struct SensorFile {
    file: File,
    name: String,
    synced: Instant,
}

impl SensorFile {
    fn create(bundle: &Path, name: &str) -> std::io::Result<SensorFile> {
        let file = fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(bundle.join(name))?;
        Ok(SensorFile {
            file,
            name: name.to_string(),
            synced: Instant::now(),
        })
    }

    fn line(&mut self, line: &SensorLine) -> Result<(), String> {
        let mut bytes = serde_json::to_vec(line).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .map_err(|e| format!("{}: {e}", self.name))?;
        if self.synced.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), String> {
        self.synced = Instant::now();
        self.file
            .sync_data()
            .map_err(|e| format!("{}: {e}", self.name))
    }
}

/// The recorder's own marker stream (`--lsl-announce`): `start <session>`
/// stamped at session time 0 and `stop <session>` at the stop, on the LSL
/// stream `lab-session`, so that a LabRecorder file made beside the session
/// can be put on its clock (`lab-analyze import-xdf --align marker`). LSL
/// gives a sample only to the inlets connected when it is pushed, so the
/// start marker waits for the first one (LabRecorder picking the stream
/// up); its stamp is still session time 0.
pub struct Announcer {
    stop_at: Arc<std::sync::Mutex<Option<f64>>>,
    thread: JoinHandle<()>,
}

impl Announcer {
    /// Publishes the stream; `zero_ns` is `CLOCK_MONOTONIC` (liblsl's clock
    /// on Linux) at session time 0.
    pub fn start(
        lsl: Arc<Lsl>,
        session_id: &str,
        station: &str,
        zero_ns: i64,
    ) -> Result<Announcer, lab_lsl::LslError> {
        use lab_model::bundle::sensors::{
            SESSION_MARKER_STREAM, SESSION_MARKER_TYPE, session_marker,
        };
        let channel = lab_lsl::Channel {
            label: "marker".into(),
            unit: String::new(),
            kind: SESSION_MARKER_TYPE.into(),
        };
        let mut outlet = lsl.outlet(
            SESSION_MARKER_STREAM,
            SESSION_MARKER_TYPE,
            &[channel],
            0.0,
            Format::String,
            &format!("{SESSION_MARKER_STREAM}-{station}"),
        )?;
        let stop_at = Arc::new(std::sync::Mutex::new(None::<f64>));
        let stop = stop_at.clone();
        let (start, end) = (
            session_marker("start", session_id),
            session_marker("stop", session_id),
        );
        let zero = zero_ns as f64 / 1e9;
        let thread = std::thread::Builder::new()
            .name("lsl-announce".into())
            .spawn(move || {
                let mut sent = false;
                loop {
                    let stop_t = *stop.lock().unwrap_or_else(|e| e.into_inner());
                    if !sent && outlet.wait_for_consumers(Duration::from_millis(200)) {
                        if let Err(e) = outlet.push_strings(&[&start], zero) {
                            tracing::warn!("lab-session marker: {e}");
                        }
                        sent = true;
                    }
                    if let Some(t) = stop_t {
                        if sent {
                            if let Err(e) = outlet.push_strings(&[&end], t) {
                                tracing::warn!("lab-session marker: {e}");
                            }
                            // The sample leaves on liblsl's own thread.
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        return;
                    }
                    if sent {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            })
            .map_err(|e| lab_lsl::LslError::Argument(e.to_string()))?;
        Ok(Announcer { stop_at, thread })
    }

    /// Sends the stop marker stamped `stop_ns` after the session's zero
    /// and closes the stream.
    pub fn stop(self, zero_ns: i64, stop_ns: i64) {
        *self.stop_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((zero_ns.saturating_add(stop_ns)) as f64 / 1e9);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod selector_tests {
    use super::selector;

    #[test]
    fn entries_name_a_stream_or_a_property() {
        assert_eq!(selector("Shimmer EDA"), ("name", "Shimmer EDA"));
        assert_eq!(selector("type=EDA"), ("type", "EDA"));
        assert_eq!(selector("source_id=shimmer-7"), ("source_id", "shimmer-7"));
        assert_eq!(selector("name=a=b"), ("name", "a=b"));
        // Not a property: the whole entry is a name.
        assert_eq!(selector("x=y"), ("name", "x=y"));
        assert_eq!(selector("type="), ("name", "type="));
    }
}
