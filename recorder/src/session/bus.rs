//! What the pipeline's bus says, in the session's terms: segment files opened
//! and closed (written into the manifest at once), a source lost (its branch
//! ended so the other tracks go on), a full disk, a fatal error, EOS.

use std::fs;
use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::{Bundle, Manifest, Segment, SegmentState};

use crate::clock::SessionClock;

pub(super) enum BusOutcome {
    Continue,
    SegmentChanged,
    Eos,
    SourceLost {
        track: String,
        error: String,
    },
    /// A live-view element (`live_*`) failed: the live view ends, the
    /// recording goes on.
    LiveFailed(String),
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

pub(super) fn handle_message(
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
            let live = msg.src().is_some_and(|s| s.name().starts_with("live_"));
            if live {
                return BusOutcome::LiveFailed(text);
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
            // splitmuxsink writes where we told it, inside the bundle; were
            // it ever elsewhere, the manifest still gets no absolute path.
            let file = Path::new(&location)
                .strip_prefix(&bundle.dir)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| {
                    tracing::warn!("segment {location} is outside the bundle");
                    Path::new(&location)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
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
pub(super) fn end_branch(pipeline: &gst::Pipeline, track: &str) {
    let Some(src) = pipeline.by_name(&format!("src_{track}")) else {
        return;
    };
    if let Some(peer) = src.static_pad("src").and_then(|p| p.peer()) {
        peer.send_event(gst::event::Eos::new());
    }
    let _ = src.set_state(gst::State::Null);
}
