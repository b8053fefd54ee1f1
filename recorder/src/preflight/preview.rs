//! The running pre-flight: one GStreamer pipeline per device, so a device
//! that fails (unplugged, busy, a missing plugin) costs only its own tile.
//!
//! Nothing here runs a thread of its own: the appsink callback stores the
//! latest JPEG, and each bus has a sync handler that reads `level` messages
//! and errors in the thread that posts them. Both hold the shared state
//! weakly and never the pipeline, so dropping `Preflight` frees everything;
//! teardown sets every pipeline to `Null`, which closes the devices before
//! it returns (the recording opens them right after).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lab_model::StationConfig;

use super::branch::{APPSINK, Branch, PreflightOptions, PreviewDevice, branches};
use super::error::PreflightError;
use super::problems::{DeviceProblem, ProblemKind, classify};
use super::state::{ChannelLevel, Snapshot, TrackState};

/// A running pre-flight check; stops (every pipeline to `Null`) on drop.
pub struct Preflight {
    shared: Arc<Shared>,
    pipelines: Vec<gst::Pipeline>,
}

struct Shared {
    started: Instant,
    /// One per device, in `branches` order.
    tracks: Mutex<Vec<TrackState>>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn tracks(&self) -> MutexGuard<'_, Vec<TrackState>> {
        // The state stays consistent whatever a panicking holder did: every
        // update is a plain assignment.
        self.tracks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut TrackState, u64)) {
        let now = self.now_ms();
        f(&mut self.tracks()[index], now);
    }
}

impl Preflight {
    /// Starts a preview of every configured device (test sources when
    /// `test_sources`). A device that fails is reported by `problems`; the
    /// others go on. Errs only when GStreamer itself cannot start.
    pub fn start(station: &StationConfig, test_sources: bool) -> Result<Self, PreflightError> {
        Self::start_with(
            station,
            &PreflightOptions {
                test_sources,
                ..PreflightOptions::default()
            },
        )
    }

    pub fn start_with(
        station: &StationConfig,
        options: &PreflightOptions,
    ) -> Result<Self, PreflightError> {
        gst::init().map_err(PreflightError::Init)?;
        let branches = branches(station, options);
        let shared = Arc::new(Shared {
            started: Instant::now(),
            tracks: Mutex::new(Vec::new()),
        });
        *shared.tracks() = branches
            .iter()
            .map(|b| TrackState::new(b.device.clone(), b.names.clone(), 0))
            .collect();
        let mut pipelines = Vec::new();
        for (index, branch) in branches.iter().enumerate() {
            if branch.absent {
                shared.update(index, |t, _| {
                    t.on_failure(
                        ProblemKind::NotFound,
                        format!("{} does not exist", branch.device.device),
                    )
                });
                continue;
            }
            match launch(&shared, index, branch) {
                Ok(p) => pipelines.push(p),
                Err((kind, detail)) => {
                    tracing::warn!("preflight {}: {detail}", branch.device.track);
                    shared.update(index, |t, _| t.on_failure(kind, detail));
                }
            }
        }
        Ok(Self { shared, pipelines })
    }

    /// Every configured device, in track order, whether it works or not.
    pub fn devices(&self) -> Vec<PreviewDevice> {
        self.shared
            .tracks()
            .iter()
            .map(|t| t.device.clone())
            .collect()
    }

    /// The latest preview frame of `track` (`screen`, `camera`), if any came.
    pub fn snapshot(&self, track: &str) -> Option<Snapshot> {
        self.shared
            .tracks()
            .iter()
            .find(|t| t.device.track == track)?
            .snapshot
            .clone()
    }

    /// The latest level of every microphone channel that has delivered
    /// sound; compare `at_ms` with `elapsed_ms` for freshness.
    pub fn levels(&self) -> Vec<ChannelLevel> {
        self.shared
            .tracks()
            .iter()
            .flat_map(|t| t.levels.iter().cloned())
            .collect()
    }

    /// What is wrong now: devices missing, busy, failed, delivering nothing
    /// for 3 s, microphone channels in digital silence for 3 s.
    pub fn problems(&self) -> Vec<DeviceProblem> {
        let now = self.shared.now_ms();
        self.shared
            .tracks()
            .iter()
            .flat_map(|t| t.problems(now))
            .collect()
    }

    /// Milliseconds since `start`, the clock of every `at_ms`.
    pub fn elapsed_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// Stops every preview; the devices are closed when this returns.
    pub fn stop(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        for p in self.pipelines.drain(..) {
            if let Err(e) = p.set_state(gst::State::Null) {
                tracing::warn!("preflight: stopping {}: {e}", p.name());
            }
            if let Some(bus) = p.bus() {
                bus.unset_sync_handler();
            }
        }
    }
}

impl Drop for Preflight {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Builds and starts one device's pipeline; on failure it is already back
/// in `Null` and the error says what kind of problem it is.
fn launch(
    shared: &Arc<Shared>,
    index: usize,
    branch: &Branch,
) -> Result<gst::Pipeline, (ProblemKind, String)> {
    let pipeline = gst::parse::launch(&branch.description)
        .map_err(|e| (classify(&e), e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| {
            (
                ProblemKind::Failed,
                "preview description is not a pipeline".to_string(),
            )
        })?;
    pipeline.set_property("name", format!("preflight_{}", branch.device.track));
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let weak = Arc::downgrade(shared);
    bus.set_sync_handler(move |_, msg| {
        if let Some(shared) = weak.upgrade() {
            on_message(&shared, index, msg);
        }
        gst::BusSyncReply::Drop
    });
    if let Some(sink) = pipeline
        .by_name(APPSINK)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    {
        sink.set_callbacks(snapshot_callbacks(Arc::downgrade(shared), index));
    }
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The element's own error (posted on the bus, so already recorded)
        // says more than this; `on_failure` keeps the first.
        let _ = pipeline.set_state(gst::State::Null);
        bus.unset_sync_handler();
        return Err((ProblemKind::Failed, e.to_string()));
    }
    Ok(pipeline)
}

fn snapshot_callbacks(shared: Weak<Shared>, index: usize) -> gst_app::AppSinkCallbacks {
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let shared = shared.upgrade().ok_or(gst::FlowError::Flushing)?;
            if let Some(snapshot) = snapshot_of(&sample, shared.now_ms()) {
                shared.update(index, |t, _| t.on_snapshot(snapshot));
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

fn snapshot_of(sample: &gst::Sample, at_ms: u64) -> Option<Snapshot> {
    let caps = sample.caps()?.structure(0)?;
    let width = caps.get::<i32>("width").ok()?;
    let height = caps.get::<i32>("height").ok()?;
    let map = sample.buffer()?.map_readable().ok()?;
    Some(Snapshot {
        jpeg: map.as_slice().to_vec(),
        at_ms,
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
    })
}

fn on_message(shared: &Shared, index: usize, msg: &gst::Message) {
    use gst::MessageView;
    match msg.view() {
        MessageView::Element(e) => {
            if let Some(s) = e.structure()
                && s.name() == "level"
                && let (Some(rms), Some(peak)) = (decibels(s, "rms"), decibels(s, "peak"))
            {
                shared.update(index, |t, now| t.on_levels(now, &rms, &peak));
            }
        }
        MessageView::Error(e) => {
            let err = e.error();
            let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
            tracing::warn!(
                "preflight {from}: {err} ({})",
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            );
            shared.update(index, |t, _| t.on_failure(classify(&err), err.to_string()));
        }
        _ => {}
    }
}

/// A `level` field (`rms`, `peak`, `decay`): a `GValueArray` of dB, one per channel.
fn decibels(s: &gst::StructureRef, field: &str) -> Option<Vec<f64>> {
    let values = s.get::<gst::glib::ValueArray>(field).ok()?;
    values.iter().map(|v| v.get::<f64>().ok()).collect()
}
