//! The guard around a playing pipeline: whatever way a recording ends, the
//! pipeline reaches `Null`, the event endpoint stops and the event log closes.
//!
//! Two ways out. [`Teardown::close`] is the orderly one, awaited by the
//! session's finish: pipeline to `Null` first (its files are closed before
//! anything else happens), the browser closed, `system.recording_stopped`
//! logged, the endpoint's bounded shutdown (grace, then connections cut), the
//! log closed explicitly and its writer joined within
//! [`limits::LOG_CLOSE_TIMEOUT`]; only then are the event counts final, so it
//! hands the endpoint's state back for them. `Drop` is the way out of every
//! other path (an error, a panic, a dropped `record` future): it cannot wait,
//! so it does what needs no waiting: pipeline to `Null`, the endpoint aborted
//! with its connections cut, the log told to close (its writer thread still
//! makes its queued batch durable and stops; nothing unacknowledged was
//! promised), the browser killed (`kill_on_drop`). The manifest then says
//! `recording`, as after a kill, and `lab-recorder recover` finalises it.

use std::sync::Arc;
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::Value;

use crate::browser::Browser;
use crate::limits;
use crate::server::{EndpointState, Server};

/// The event endpoint of a recording: its shared state, the serving task and
/// the event log's writer thread. `close` takes the server out while it
/// shuts it down, so a `close` cancelled half-way still has its log closed
/// by `Drop`.
struct Endpoint {
    state: Arc<EndpointState>,
    server: Option<Server>,
    log_thread: JoinHandle<()>,
}

/// Owns everything a playing recording must release; see the module docs.
pub(super) struct Teardown {
    pipeline: gst::Pipeline,
    endpoint: Option<Endpoint>,
    browser: Option<Browser>,
}

impl Teardown {
    /// Guards `pipeline`, which should be (or be about to go) `Playing`.
    pub(super) fn new(pipeline: gst::Pipeline) -> Self {
        Self {
            pipeline,
            endpoint: None,
            browser: None,
        }
    }

    pub(super) fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Hands the running endpoint to the guard.
    pub(super) fn endpoint(
        &mut self,
        state: Arc<EndpointState>,
        server: Server,
        log_thread: JoinHandle<()>,
    ) {
        self.endpoint = Some(Endpoint {
            state,
            server: Some(server),
            log_thread,
        });
    }

    pub(super) fn browser(&mut self, browser: Browser) {
        self.browser = Some(browser);
    }

    /// The orderly stop (see the module docs). `stopped` is the data of the
    /// `system.recording_stopped` event. Returns the endpoint's state, whose
    /// counts are final now, if an endpoint was running.
    pub(super) async fn close(mut self, stopped: Value) -> Option<Arc<EndpointState>> {
        stop_pipeline(&self.pipeline);
        if let Some(b) = self.browser.take() {
            b.close().await;
        }
        let endpoint = self.endpoint.as_mut()?;
        endpoint
            .state
            .system_event("recording_stopped", stopped)
            .await;
        // Whatever clients do, the bundle is finished promptly: the server gets a
        // bounded grace, then its connections are cut; the log is closed
        // explicitly (an open connection's handle on it must not keep it open),
        // and only then are the counts final.
        if let Some(server) = endpoint.server.take() {
            server.shutdown().await;
        }
        let Endpoint {
            state, log_thread, ..
        } = self.endpoint.take()?;
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
        Some(state)
    }
}

/// Takes `pipeline` to `Null` without the deadlock splitmuxsink (GStreamer
/// 1.22) has when that happens while it opens its first file: it marks
/// itself stopped and wakes its waiting streaming threads, but the thread
/// opening the file, which let go of its lock to report the file open,
/// then writes its next state over `stopped`; a non-reference stream (the
/// audio) goes back to sleep, and `Null`, waiting for that stream's thread,
/// never returns. A flush-start into each of its inputs first marks every
/// stream flushing, which no state it writes undoes, so its waits end and
/// `Null` returns. Whatever was written to its files stays there: a flush
/// discards only what is still queued, which `Null` would discard too (the
/// orderly stop has drained it with EOS before this).
pub(super) fn stop_pipeline(pipeline: &gst::Pipeline) {
    if pipeline.current_state() != gst::State::Null {
        for e in pipeline.iterate_recurse().into_iter().flatten() {
            let is_splitmux = e.factory().is_some_and(|f| f.name() == "splitmuxsink");
            if is_splitmux {
                for pad in e.sink_pads() {
                    pad.send_event(gst::event::FlushStart::new());
                }
            }
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
}

impl Drop for Teardown {
    fn drop(&mut self) {
        // After `close` this finds a pipeline already in `Null` (a no-op) and
        // nothing else left.
        stop_pipeline(&self.pipeline);
        if let Some(Endpoint { state, server, .. }) = self.endpoint.take() {
            tracing::warn!("recording torn down without an orderly stop");
            if let Some(server) = server {
                server.abort();
            }
            state.log.close();
        }
        drop(self.browser.take());
    }
}
