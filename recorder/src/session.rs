//! One recording, from consent check to finalized bundle.
//!
//! Order matters for "nothing lost": identity is checked before anything is
//! created; the pipeline is built and the endpoint bound before the bundle
//! directory exists (a bad config creates nothing); the manifest is written
//! as soon as session time 0 is known and rewritten (atomically) whenever a
//! segment opens or closes, so after a kill -9 it lists every segment on disk.
//! A small reserve file is deleted on "disk full" so the final manifest and
//! events can still be written.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::bundle::RecorderInfo;
use lab_model::{
    BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, Bundle, ClockMapping, EventStats, Gap, Manifest, Segment,
    SegmentState, SessionStatus, StationConfig,
};
use serde_json::json;
use tokio::sync::watch;

use crate::browser::{Browser, BrowserOptions};
use crate::clock::SessionClock;
use crate::event_log::EventLog;
use crate::limits;
use crate::pipeline;
use crate::server::{EndpointConfig, EndpointState, Server};

const RESERVE_FILE: &str = ".reserve";
const RESERVE_BYTES: usize = 4 << 20;
/// How long finalizing (EOS through encoders and muxers) may take before we give up on it.
const EOS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "consent is required: pass --consent with the reference of the participant's signed consent form"
    )]
    ConsentRequired,
    #[error(
        "participant code {0:?} must be 1-32 letters, digits, '-' or '_' (a pseudonymous code, not a name)"
    )]
    Participant(String),
    #[error(
        "life situation {0:?} must be a journey id: 1-64 of a-z, 0-9, '-' or '_', starting with a letter or digit (the name of its journeys/<id>.toml)"
    )]
    LifeSituation(String),
    #[error("failed to build the capture pipeline")]
    Pipeline(#[source] gst::glib::Error),
    #[error("failed to start capture: {0}")]
    Start(String),
    #[error("failed to listen for events on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the session bundle in {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] lab_model::BundleError),
    #[error("failed to launch the station browser")]
    Browser(#[source] anyhow::Error),
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub station: StationConfig,
    pub test_sources: bool,
    pub duration: Option<Duration>,
    pub participant: String,
    pub consent: String,
    pub moderator: Option<String>,
    pub study: Option<String>,
    pub life_situation: Option<String>,
    pub out_dir: PathBuf,
    /// Overrides `recording.events_listen` of the station.
    pub events_listen: Option<String>,
    pub browser: Option<BrowserOptions>,
}

/// Checks what must hold before anything is created.
pub fn check_identity(participant: &str, consent: &str) -> Result<(), RecordError> {
    if consent.trim().is_empty() {
        return Err(RecordError::ConsentRequired);
    }
    // The bundle contract's rule, so every manifest written is one readers accept.
    if !lab_model::bundle::valid_participant(participant) {
        return Err(RecordError::Participant(participant.into()));
    }
    Ok(())
}

/// The life situation must be a journey id (`lab_model::journey::valid_id`):
/// readers refuse a manifest with any other, so the recording would be lost
/// to review.
pub fn check_life_situation(life_situation: Option<&str>) -> Result<(), RecordError> {
    match life_situation {
        Some(ls) if !lab_model::journey::valid_id(ls) => Err(RecordError::LifeSituation(ls.into())),
        _ => Ok(()),
    }
}

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn session_id(now: SystemTime, participant: &str, out_dir: &Path) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = format!("{stamp}-{participant}");
    let mut id = base.clone();
    let mut n = 2;
    while out_dir.join(&id).exists() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// Records one session and returns the bundle directory. Stops at
/// `opts.duration`, when `shutdown` completes (its output is the reason), or
/// on `POST /api/stop`.
pub async fn record(
    opts: RecordOptions,
    shutdown: impl Future<Output = String>,
) -> Result<PathBuf, RecordError> {
    check_identity(&opts.participant, &opts.consent)?;
    check_life_situation(opts.life_situation.as_deref())?;
    gst::init().map_err(RecordError::Pipeline)?;

    let id = session_id(SystemTime::now(), &opts.participant, &opts.out_dir);
    let bundle = Bundle::new(opts.out_dir.join(&id));
    let plan = pipeline::plan(&opts.station, opts.test_sources, &bundle.media_dir());
    tracing::debug!("pipeline:\n{}", plan.description);
    let pipeline = pipeline::build(&plan).map_err(RecordError::Pipeline)?;
    let listen = opts
        .events_listen
        .clone()
        .unwrap_or_else(|| opts.station.recording.events_listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| RecordError::Bind {
            addr: listen.clone(),
            source,
        })?;
    let events_addr = listener.local_addr().map_err(|source| RecordError::Bind {
        addr: listen,
        source,
    })?;

    let create = |path: &Path| {
        fs::create_dir_all(path).map_err(|source| RecordError::Create {
            path: path.to_path_buf(),
            source,
        })
    };
    create(&bundle.media_dir())?;
    let reserve = bundle.dir.join(RESERVE_FILE);
    fs::write(&reserve, vec![0u8; RESERVE_BYTES]).map_err(|source| RecordError::Create {
        path: reserve.clone(),
        source,
    })?;

    let started = start(&pipeline);
    let clock = match started {
        Ok(c) => c,
        Err(e) => {
            let _ = pipeline.set_state(gst::State::Null);
            // Nothing was recorded: leave no empty bundle behind.
            let _ = fs::remove_dir_all(&bundle.dir);
            return Err(e);
        }
    };
    let wall = SystemTime::now();
    let since_zero = clock.now_ns();
    let zero_unix_ns = unix_ns(wall) - since_zero;
    let zero_wall = UNIX_EPOCH + Duration::from_nanos(zero_unix_ns.max(0) as u64);

    let mut manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        format_version: BUNDLE_FORMAT_VERSION,
        session_id: id.clone(),
        station: opts.station.station.clone(),
        study: opts.study.clone(),
        life_situation: opts.life_situation.clone(),
        journey_version: None,
        participant: opts.participant.clone(),
        consent: opts.consent.clone(),
        moderator: opts.moderator.clone(),
        clock: ClockMapping {
            session_zero_monotonic_ns: clock.base_ns(),
            session_zero_unix_ns: zero_unix_ns,
            session_zero_utc: humantime::format_rfc3339_millis(zero_wall).to_string(),
            clients: vec![],
        },
        tracks: plan.tracks.clone(),
        segments: vec![],
        status: SessionStatus::Recording,
        stop_reason: None,
        duration_ns: None,
        gaps: vec![],
        events: EventStats::default(),
        recorder: RecorderInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            events_url: Some(format!("http://{events_addr}")),
        },
    };
    bundle.write_manifest(&manifest)?;

    let (log, log_thread) =
        EventLog::open(&bundle.events_path(), 1).map_err(|source| RecordError::Create {
            path: bundle.events_path(),
            source,
        })?;
    let (stop_tx, mut stop_rx) = watch::channel(None::<String>);
    let endpoint = EndpointConfig::new(events_addr, opts.station.recording.probe_origins.clone())
        .map_err(|source| RecordError::Create {
        path: PathBuf::from("/dev/urandom"),
        source,
    })?;
    let state = Arc::new(EndpointState::new(
        id.clone(),
        bundle.dir.clone(),
        clock.clone(),
        log,
        endpoint,
        stop_tx,
    ));
    let server = Server::spawn(listener, state.clone());
    tracing::info!("recording {id}: events at http://{events_addr} (operator console: /operator)");
    state
        .system_event(
            "recording_started",
            json!({ "participant": opts.participant, "station": manifest.station }),
        )
        .await;

    let mut fatal: Option<String> = None;
    let mut reason: Option<String> = None;
    let mut browser = None;
    if let Some(b) = &opts.browser {
        match Browser::launch(b, &state.config).await {
            Ok(br) => browser = Some(br),
            Err(e) => {
                let why = format!("browser failed to start: {e:#}");
                reason = Some(why.clone());
                fatal = Some(why);
            }
        }
    }

    // The bus loop: segments, device errors, stop requests, EOS.
    let mut bus = pipeline.bus().expect("a pipeline has a bus").stream();
    let deadline = opts.duration.map(|d| {
        tokio::time::Instant::now()
            + d.saturating_sub(Duration::from_nanos(since_zero.max(0) as u64))
    });
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until);
    tokio::pin!(shutdown);
    let mut stopping: Option<tokio::time::Instant> = None;
    let mut lost_tracks = std::collections::HashSet::new();
    loop {
        if reason.is_some() && stopping.is_none() {
            tracing::info!("stopping ({})", reason.as_deref().unwrap_or(""));
            stopping = Some(tokio::time::Instant::now() + EOS_TIMEOUT);
            pipeline.send_event(gst::event::Eos::new());
        }
        let eos_deadline = async {
            match stopping {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut sleep_until, if reason.is_none() => {
                reason = Some("duration".into());
            }
            why = &mut shutdown, if reason.is_none() => {
                reason = Some(why);
            }
            r = stop_rx.changed(), if reason.is_none() => {
                if r.is_ok() { reason = stop_rx.borrow().clone(); }
            }
            _ = eos_deadline => {
                tracing::warn!("finalizing took over {EOS_TIMEOUT:?}; the last segment may lack its index");
                break;
            }
            msg = bus.next() => {
                let Some(msg) = msg else { break };
                match handle_message(&msg, &mut manifest, &bundle, &clock) {
                    BusOutcome::Continue => {}
                    BusOutcome::Eos => break,
                    BusOutcome::SegmentChanged => {
                        refresh_stats(&mut manifest, &state);
                        if let Err(e) = bundle.write_manifest(&manifest) {
                            tracing::error!("{e:#}");
                        }
                    }
                    BusOutcome::SourceLost { track, error } => {
                        // A dying source often posts more than one error; the first says why.
                        if !lost_tracks.insert(track.clone()) {
                            continue;
                        }
                        tracing::error!("{track} stopped: {error}; other tracks continue");
                        manifest.gaps.push(Gap { track: track.clone(), start_ns: clock.now_ns(), end_ns: None, reason: error.clone() });
                        state.system_event("device_lost", json!({ "track": track, "error": error })).await;
                        end_branch(&pipeline, &track);
                        let _ = bundle.write_manifest(&manifest);
                        if lost_tracks.len() == manifest.tracks.len() {
                            fatal = Some("every source failed".into());
                            break;
                        }
                    }
                    BusOutcome::DiskFull(e) => {
                        let _ = fs::remove_file(&reserve);
                        fatal = Some(format!("disk full: {e}"));
                        break;
                    }
                    BusOutcome::Fatal(e) => {
                        fatal = Some(e);
                        break;
                    }
                }
            }
        }
    }
    let end_ns = clock.now_ns();
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(b) = browser.take() {
        b.close().await;
    }
    state
        .system_event(
            "recording_stopped",
            json!({ "reason": fatal.as_ref().or(reason.as_ref()) }),
        )
        .await;
    // Whatever clients do, the bundle is finished promptly: the server gets a
    // bounded grace, then its connections are cut; the log is closed
    // explicitly (an open connection's handle on it must not keep it open),
    // and only then are the counts final.
    server.shutdown().await;
    state.log.close();
    let joined = tokio::time::timeout(
        limits::LOG_CLOSE_TIMEOUT,
        tokio::task::spawn_blocking(move || log_thread.join()),
    )
    .await;
    if joined.is_err() {
        tracing::error!(
            "the event log did not finish writing within {:?}; its last batch may be missing",
            limits::LOG_CLOSE_TIMEOUT
        );
    }

    for g in &mut manifest.gaps {
        g.end_ns.get_or_insert(end_ns);
    }
    manifest.duration_ns = Some(end_ns);
    match &fatal {
        Some(e) => {
            tracing::error!("recording stopped early: {e}");
            manifest.status = SessionStatus::Interrupted;
            manifest.stop_reason = Some(e.clone());
        }
        None => {
            manifest.status = SessionStatus::Complete;
            manifest.stop_reason = reason;
        }
    }
    for s in &mut manifest.segments {
        if s.state == SegmentState::Open {
            s.state = SegmentState::Recovered;
            s.end_ns.get_or_insert(end_ns);
        }
    }
    refresh_stats(&mut manifest, &state);
    let _ = fs::remove_file(&reserve);
    bundle.write_manifest(&manifest)?;
    Ok(bundle.dir)
}

fn refresh_stats(manifest: &mut Manifest, state: &EndpointState) {
    manifest.events = EventStats {
        accepted: state.accepted(),
        rejected: state.rejected(),
    };
    manifest.clock.clients = state.clock_estimates();
}

/// Sets the pipeline playing and returns the session clock once it runs.
fn start(pipeline: &gst::Pipeline) -> Result<SessionClock, RecordError> {
    pipeline.set_state(gst::State::Playing).map_err(|_| {
        RecordError::Start(
            first_error(pipeline).unwrap_or_else(|| "pipeline refused to play".into()),
        )
    })?;
    let (res, state, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    if res.is_err() || state != gst::State::Playing {
        return Err(RecordError::Start(
            first_error(pipeline).unwrap_or_else(|| format!("pipeline stuck in {state:?}")),
        ));
    }
    let clock = pipeline.clock().expect("a playing pipeline has a clock");
    let base = pipeline
        .base_time()
        .expect("a playing pipeline has a base time");
    Ok(SessionClock::new(clock, base.nseconds()))
}

fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(500),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{}: {} ({})",
            msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
            e.error(),
            e.debug().map(|d| d.to_string()).unwrap_or_default()
        )),
        _ => None,
    }
}

enum BusOutcome {
    Continue,
    SegmentChanged,
    Eos,
    SourceLost { track: String, error: String },
    DiskFull(String),
    Fatal(String),
}

/// The name of the element (or its nearest named ancestor) that posted `msg`.
fn source_track(msg: &gst::Message) -> Option<String> {
    let mut obj = msg.src().cloned();
    while let Some(o) = obj {
        if let Some(track) = o.name().strip_prefix("src_") {
            return Some(track.to_string());
        }
        obj = o.parent();
    }
    None
}

fn handle_message(
    msg: &gst::Message,
    manifest: &mut Manifest,
    bundle: &Bundle,
    clock: &SessionClock,
) -> BusOutcome {
    use gst::MessageView;
    match msg.view() {
        MessageView::Eos(_) => BusOutcome::Eos,
        MessageView::Error(e) => {
            let text = format!(
                "{} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            );
            if e.error().matches(gst::ResourceError::NoSpaceLeft) || text.contains("No space left")
            {
                return BusOutcome::DiskFull(e.error().to_string());
            }
            match source_track(msg) {
                Some(track) => BusOutcome::SourceLost {
                    track,
                    error: e.error().to_string(),
                },
                None => BusOutcome::Fatal(format!(
                    "{}: {text}",
                    msg.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default()
                )),
            }
        }
        MessageView::Warning(w) => {
            tracing::warn!(
                "{}: {}",
                msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
                w.error()
            );
            BusOutcome::Continue
        }
        MessageView::Element(e) => {
            let Some(s) = e.structure() else {
                return BusOutcome::Continue;
            };
            let opened = s.name() == "splitmuxsink-fragment-opened";
            let closed = s.name() == "splitmuxsink-fragment-closed";
            if !(opened || closed) {
                return BusOutcome::Continue;
            }
            let group = msg
                .src()
                .and_then(|o| o.name().strip_prefix("mux_").map(str::to_string))
                .unwrap_or_default();
            let location = s.get::<String>("location").unwrap_or_default();
            let running = s
                .get::<u64>("running-time")
                .map(|t| t as i64)
                .unwrap_or_else(|_| clock.now_ns());
            let file = Path::new(&location)
                .strip_prefix(&bundle.dir)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or(location.clone());
            if opened {
                let index = manifest
                    .segments
                    .iter()
                    .filter(|x| x.group == group)
                    .count() as u32;
                manifest.segments.push(Segment {
                    group,
                    index,
                    file,
                    start_ns: running,
                    end_ns: None,
                    state: SegmentState::Open,
                });
            } else if let Some(seg) = manifest.segments.iter_mut().rev().find(|x| x.file == file) {
                seg.end_ns = Some(running);
                seg.state = SegmentState::Closed;
                // A closed segment survives power loss, not only a crash.
                if let Err(e) = fs::File::open(&location).and_then(|f| f.sync_data()) {
                    tracing::warn!("could not sync {location}: {e}");
                }
            }
            BusOutcome::SegmentChanged
        }
        _ => BusOutcome::Continue,
    }
}

/// Ends one source's branch with EOS so the muxers stop waiting for it and
/// the other tracks go on.
fn end_branch(pipeline: &gst::Pipeline, track: &str) {
    let Some(src) = pipeline.by_name(&format!("src_{track}")) else {
        return;
    };
    if let Some(peer) = src.static_pad("src").and_then(|p| p.peer()) {
        peer.send_event(gst::event::Eos::new());
    }
    let _ = src.set_state(gst::State::Null);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rules() {
        assert!(matches!(
            check_identity("P01", ""),
            Err(RecordError::ConsentRequired)
        ));
        assert!(matches!(
            check_identity("P01", "  "),
            Err(RecordError::ConsentRequired)
        ));
        assert!(matches!(
            check_identity("Ivan Petrov", "C1"),
            Err(RecordError::Participant(_))
        ));
        assert!(check_identity("P01", "C-2026-17").is_ok());
        assert!(check_life_situation(Some("child-benefit")).is_ok());
        assert!(check_life_situation(None).is_ok());
        for bad in ["../../evil", "Рождение", "", "a b"] {
            assert!(matches!(
                check_life_situation(Some(bad)),
                Err(RecordError::LifeSituation(_))
            ));
        }
    }
}
