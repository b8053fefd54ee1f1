//! One recording, from consent check to finalized bundle.
//!
//! Order matters for "nothing lost": identity is checked before anything is
//! created; the pipeline is built and the endpoint bound before the bundle
//! directory exists (a bad config creates nothing); the manifest is written
//! as soon as session time 0 is known and rewritten (atomically) whenever a
//! segment opens or closes, so after a kill -9 it lists every segment on disk.
//! A small reserve file is deleted on "disk full" so the final manifest and
//! events can still be written.
//!
//! The steps: `prepare` (checks, pipeline built, endpoint bound, bundle
//! directory created; nothing plays yet), `start` (pipeline playing, first
//! manifest, event log, endpoint, browser), `Recording::run` (the bus loop)
//! and `Recording::finish` (orderly teardown, final manifest). From `Playing`
//! on, the pipeline lives in a `Teardown` guard, whose `Drop` sets it to
//! `Null` on every other way out (an error, a panic, a dropped future).
//!
//! Files, lowest first (none uses this one): `error` (`RecordError`), `bus`
//! (bus messages in the session's terms), `teardown` (the guard),
//! `recording` (the playing recording: bus loop, finish, abandon).

mod bus;
mod error;
mod recording;
mod teardown;

use std::fs;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::bundle::RecorderInfo;
use lab_model::{
    BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, Bundle, ClockMapping, EventStats, Manifest,
    SessionStatus, StationConfig,
};
use serde_json::json;

pub use self::error::RecordError;
use self::recording::{Live, Recording, Stop};
use self::teardown::Teardown;
use crate::browser::{Browser, BrowserOptions};
use crate::clock::SessionClock;
use crate::pipeline;
use lab_model::bundle::RESERVE_FILE;

const RESERVE_BYTES: usize = 4 << 20;

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
    /// Lab Streaming Layer streams to record, by name.
    pub lsl: Vec<String>,
    /// liblsl, loaded only when `lsl` names a stream or the session is
    /// announced.
    pub lsl_library: PathBuf,
    /// Announce the session on the LSL marker stream `lab-session` (also
    /// the station's `recording.lsl_announce`).
    pub lsl_announce: bool,
    /// Stream the session live to lab-web's observation room.
    pub live: Option<crate::live::LiveOptions>,
}

fn lsl_announce(opts: &RecordOptions) -> bool {
    opts.lsl_announce || opts.station.recording.lsl_announce
}

/// The LSL streams to record: the station's, then those given for this
/// recording, each name once.
fn lsl_streams(opts: &RecordOptions) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in opts.station.recording.lsl_streams.iter().chain(&opts.lsl) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
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
/// on `POST /api/stop`. A step that fails once the pipeline plays leaves the
/// bundle `interrupted`, with what was recorded, and returns that step's error.
pub async fn record(
    opts: RecordOptions,
    shutdown: impl Future<Output = String>,
) -> Result<PathBuf, RecordError> {
    record_with(opts, shutdown, |_, _| {}).await
}

/// [`record`], calling `after_playing` once the pipeline plays, before the
/// first manifest is written, the event log opened and the endpoint started:
/// the seam through which tests make a later step fail (or panic) while the
/// pipeline is playing.
async fn record_with(
    opts: RecordOptions,
    shutdown: impl Future<Output = String>,
    after_playing: impl FnOnce(&gst::Pipeline, &Bundle),
) -> Result<PathBuf, RecordError> {
    let prepared = prepare(&opts).await?;
    let (mut recording, live) = start(prepared, &opts, after_playing).await?;
    let stop = recording.run(live, opts.duration, shutdown).await;
    recording.finish(stop).await
}

/// Everything made before the pipeline plays; dropping it leaves a pipeline
/// that never left `Null`.
struct Prepared {
    id: String,
    bundle: Bundle,
    plan: pipeline::PipelinePlan,
    pipeline: gst::Pipeline,
    listener: tokio::net::TcpListener,
    events_addr: SocketAddr,
    reserve: PathBuf,
    lsl: Option<std::sync::Arc<lab_lsl::Lsl>>,
}

/// Checks identity, builds the pipeline, binds the endpoint and only then
/// creates the bundle directory, so a bad config creates nothing.
async fn prepare(opts: &RecordOptions) -> Result<Prepared, RecordError> {
    check_identity(&opts.participant, &opts.consent)?;
    check_life_situation(opts.life_situation.as_deref())?;
    gst::init().map_err(RecordError::Pipeline)?;
    // Sensors were asked for: without liblsl nothing is created.
    let lsl = match lsl_streams(opts).is_empty() && !lsl_announce(opts) {
        true => None,
        false => Some(lab_lsl::Lsl::open(&opts.lsl_library, None).map_err(RecordError::Sensors)?),
    };

    let id = session_id(SystemTime::now(), &opts.participant, &opts.out_dir);
    let bundle = Bundle::new(opts.out_dir.join(&id));
    let plan = pipeline::plan(
        &opts.station,
        opts.test_sources,
        &bundle.media_dir(),
        opts.live.is_some(),
    );
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

    let media = bundle.media_dir();
    fs::create_dir_all(&media).map_err(|source| RecordError::Create {
        path: media.clone(),
        source,
    })?;
    let reserve = bundle.dir.join(RESERVE_FILE);
    fs::write(&reserve, vec![0u8; RESERVE_BYTES]).map_err(|source| RecordError::Create {
        path: reserve.clone(),
        source,
    })?;
    Ok(Prepared {
        id,
        bundle,
        plan,
        pipeline,
        listener,
        events_addr,
        reserve,
        lsl,
    })
}

/// Sets the pipeline playing, writes the first manifest and starts the event
/// log, the endpoint and the browser. From `Playing` on, the pipeline is
/// inside a [`Teardown`]; a step that fails after it finishes the bundle as
/// `interrupted` (what was recorded is kept) and returns the step's error.
async fn start(
    p: Prepared,
    opts: &RecordOptions,
    after_playing: impl FnOnce(&gst::Pipeline, &Bundle),
) -> Result<(Recording, Live), RecordError> {
    let clock = match play(&p.pipeline) {
        Ok(c) => c,
        Err(e) => {
            teardown::stop_pipeline(&p.pipeline);
            // Nothing was recorded: leave no empty bundle behind.
            let _ = fs::remove_dir_all(&p.bundle.dir);
            return Err(e);
        }
    };
    let teardown = Teardown::new(p.pipeline);
    let wall = SystemTime::now();
    let since_zero = clock.now_ns();
    let zero_unix_ns = unix_ns(wall) - since_zero;
    let zero_wall = UNIX_EPOCH + Duration::from_nanos(zero_unix_ns.max(0) as u64);

    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        format_version: BUNDLE_FORMAT_VERSION,
        session_id: p.id.clone(),
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
        tracks: p.plan.tracks.clone(),
        segments: vec![],
        status: SessionStatus::Recording,
        stop_reason: None,
        duration_ns: None,
        gaps: vec![],
        events: EventStats::default(),
        recorder: RecorderInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            events_url: Some(format!("http://{}", p.events_addr)),
        },
        sensors: vec![],
    };
    let mut recording = Recording {
        teardown,
        bundle: p.bundle,
        manifest,
        clock,
        reserve: p.reserve,
        sensors: None,
        announcer: None,
        live: None,
    };
    after_playing(recording.teardown.pipeline(), &recording.bundle);
    match recording
        .attach_endpoint(
            p.listener,
            p.events_addr,
            opts.station.recording.probe_origins.clone(),
        )
        .await
    {
        Ok((state, stop_rx)) => {
            tracing::info!(
                "recording {}: events at http://{} (operator console: /operator)",
                p.id,
                p.events_addr
            );
            state
                .system_event(
                    "recording_started",
                    json!({ "participant": opts.participant, "station": recording.manifest.station }),
                )
                .await;
            if let Some(live) = &opts.live {
                recording.start_live(live.clone(), &p.plan.live, &state);
            }
            if let Some(lsl) = p.lsl {
                if lsl_announce(opts) {
                    recording.announce(lsl.clone(), &state).await;
                }
                if !lsl_streams(opts).is_empty() {
                    recording.start_sensors(lsl, &lsl_streams(opts), &state);
                }
            }
            let mut stop = Stop::default();
            if let Some(b) = &opts.browser {
                match Browser::launch(b, &state.config).await {
                    Ok(br) => {
                        // Pages the console asks for (its self-report page),
                        // opened in the participant's tab.
                        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                        let nav = br.navigator();
                        tokio::spawn(async move {
                            while let Some(url) = rx.recv().await {
                                if let Err(e) = nav.open(&url).await {
                                    tracing::warn!("station browser: cannot open {url}: {e:#}");
                                }
                            }
                        });
                        *state.pages.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
                        recording.teardown.browser(br)
                    }
                    Err(e) => {
                        let why = format!("browser failed to start: {e:#}");
                        stop.reason = Some(why.clone());
                        stop.fatal = Some(why);
                    }
                }
            }
            let live = Live {
                state,
                stop_rx,
                since_zero,
                stop,
            };
            Ok((recording, live))
        }
        Err(e) => Err(recording.abandon(e).await),
    }
}

/// Sets the pipeline playing and returns the session clock once it runs.
fn play(pipeline: &gst::Pipeline) -> Result<SessionClock, RecordError> {
    if let Some(bus) = pipeline.bus() {
        crate::priority::install(&bus);
    }
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

#[cfg(test)]
mod tests;
