//! A playing recording and how it ends: the bus loop ([`Recording::run`])
//! and the final manifest ([`Recording::finish`]), or, when a step after
//! `Playing` fails, [`Recording::abandon`].

use std::fs;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::{Bundle, EventStats, Gap, Manifest, SegmentState, SessionStatus};
use serde_json::json;
use tokio::sync::watch;

use super::bus::{BusOutcome, end_branch, handle_message};
use super::error::RecordError;
use super::teardown::Teardown;
use crate::clock::SessionClock;
use crate::event_log::EventLog;
use crate::sensors::{Announcer, SensorEvent, Sensors};
use crate::server::{EndpointConfig, EndpointState, Server};

/// How long finalizing (EOS through encoders and muxers) may take before we give up on it.
const EOS_TIMEOUT: Duration = Duration::from_secs(10);

/// A playing recording: the guard that tears it down, and its manifest.
pub(super) struct Recording {
    pub(super) teardown: Teardown,
    pub(super) bundle: Bundle,
    pub(super) manifest: Manifest,
    pub(super) clock: SessionClock,
    pub(super) reserve: PathBuf,
    /// Lab Streaming Layer streams being recorded, and the task writing
    /// their events.
    pub(super) sensors: Option<(Sensors, tokio::task::JoinHandle<()>)>,
    /// The `lab-session` marker stream (`--lsl-announce`).
    pub(super) announcer: Option<Announcer>,
    /// The live view to lab-web (`--live-server`).
    pub(super) live: Option<crate::live::LiveLink>,
}

/// What only the bus loop needs.
pub(super) struct Live {
    pub(super) state: Arc<EndpointState>,
    pub(super) stop_rx: watch::Receiver<Option<String>>,
    /// Session time when the loop starts, counted against `duration`.
    pub(super) since_zero: i64,
    /// Set before the loop when the browser failed to start.
    pub(super) stop: Stop,
}

/// Why the recording stopped: `fatal` if it stopped early (the bundle is
/// `interrupted`), else the reason of a planned stop.
#[derive(Default)]
pub(super) struct Stop {
    pub(super) fatal: Option<String>,
    pub(super) reason: Option<String>,
}

impl Recording {
    /// Starts recording the named LSL streams; their markers and system
    /// events go through `state`. A stream that cannot start is a system
    /// event, never the recording's end.
    pub(super) fn start_sensors(
        &mut self,
        lsl: Arc<lab_lsl::Lsl>,
        names: &[String],
        state: &Arc<EndpointState>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let clock = self.clock.clone();
        let zero = i64::try_from(self.clock.base_ns()).unwrap_or(i64::MAX);
        let started = Sensors::start(
            lsl,
            names,
            &self.bundle.dir,
            zero,
            Arc::new(move || clock.now_ns()),
            tx,
        );
        let state = state.clone();
        match started {
            Ok(sensors) => {
                let writer = tokio::spawn(async move {
                    while let Some(e) = rx.recv().await {
                        match e {
                            SensorEvent::Marker { t_ns, data } => {
                                state.sensor_event(t_ns, "lsl_marker", data).await
                            }
                            SensorEvent::System { kind, data } => {
                                state.system_event(kind, data).await
                            }
                        }
                    }
                });
                self.sensors = Some((sensors, writer));
            }
            Err(e) => {
                tokio::spawn(async move {
                    state
                        .system_event("sensor_failed", json!({ "error": e.to_string() }))
                        .await
                });
            }
        }
    }

    /// Announces the session on the `lab-session` LSL marker stream; a
    /// stream that cannot be published is a system event.
    pub(super) async fn announce(&mut self, lsl: Arc<lab_lsl::Lsl>, state: &Arc<EndpointState>) {
        let zero = i64::try_from(self.clock.base_ns()).unwrap_or(i64::MAX);
        match Announcer::start(lsl, &self.manifest.session_id, &self.manifest.station, zero) {
            Ok(a) => self.announcer = Some(a),
            Err(e) => {
                state
                    .system_event("sensor_failed", json!({ "stream": lab_model::bundle::sensors::SESSION_MARKER_STREAM, "error": e.to_string() }))
                    .await
            }
        }
    }

    /// Starts streaming the session to lab-web's observation room.
    pub(super) fn start_live(
        &mut self,
        opts: crate::live::LiveOptions,
        groups: &[String],
        state: &Arc<EndpointState>,
    ) {
        let m = &self.manifest;
        let hello = json!({
            "session_id": m.session_id,
            "station": m.station,
            "participant": m.participant,
            "study": m.study,
            "life_situation": m.life_situation,
            "session_zero_unix_ms": m.clock.session_zero_unix_ns / 1_000_000,
        });
        self.live = Some(crate::live::LiveLink::start(
            self.teardown.pipeline(),
            groups,
            opts,
            hello,
            state.clone(),
        ));
    }

    /// Stops the live view and the sensor threads and waits until their
    /// events are written.
    async fn stop_sensors(&mut self) {
        if let Some(live) = self.live.take() {
            live.stop().await;
        }
        if let Some(a) = self.announcer.take() {
            let zero = i64::try_from(self.clock.base_ns()).unwrap_or(i64::MAX);
            let end = self.clock.now_ns();
            let _ = tokio::task::spawn_blocking(move || a.stop(zero, end)).await;
        }
        if let Some((sensors, writer)) = self.sensors.take() {
            match tokio::task::spawn_blocking(move || sensors.stop()).await {
                Ok(tracks) => self.manifest.sensors = tracks,
                Err(e) => tracing::error!("sensor threads: {e}"),
            }
            let _ = writer.await;
        }
    }

    /// Writes the first manifest, opens the event log and starts the endpoint
    /// on `listener`, handing it to the guard.
    pub(super) async fn attach_endpoint(
        &mut self,
        listener: tokio::net::TcpListener,
        listen: SocketAddr,
        probe_origins: Vec<String>,
    ) -> Result<(Arc<EndpointState>, watch::Receiver<Option<String>>), RecordError> {
        self.bundle.write_manifest(&self.manifest)?;
        let events = self.bundle.events_path();
        let (log, log_thread) =
            EventLog::open(&events, 1).map_err(|source| RecordError::Create {
                path: events.clone(),
                source,
            })?;
        let (stop_tx, stop_rx) = watch::channel(None::<String>);
        let endpoint = match EndpointConfig::new(listen, probe_origins) {
            Ok(c) => c,
            Err(source) => {
                log.close();
                return Err(RecordError::Create {
                    path: PathBuf::from("/dev/urandom"),
                    source,
                });
            }
        };
        let state = Arc::new(EndpointState::new(
            self.manifest.session_id.clone(),
            self.bundle.dir.clone(),
            self.clock.clone(),
            log,
            endpoint,
            stop_tx,
        ));
        let server = Server::spawn(listener, state.clone());
        self.teardown.endpoint(state.clone(), server, log_thread);
        Ok((state, stop_rx))
    }

    /// The bus loop: segments, device errors, stop requests, EOS. Returns
    /// once the pipeline has finished (EOS), failed, or exceeded
    /// [`EOS_TIMEOUT`] finishing.
    pub(super) async fn run(
        &mut self,
        live: Live,
        duration: Option<Duration>,
        shutdown: impl Future<Output = String>,
    ) -> Stop {
        let Live {
            state,
            mut stop_rx,
            since_zero,
            stop: Stop {
                mut fatal,
                mut reason,
            },
        } = live;
        let pipeline = self.teardown.pipeline().clone();
        let (manifest, bundle, clock) = (&mut self.manifest, &self.bundle, &self.clock);
        let mut bus = crate::priority::stream(&pipeline.bus().expect("a pipeline has a bus"));
        let deadline = duration.map(|d| {
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
                    match handle_message(&msg, manifest, bundle, clock) {
                        BusOutcome::Continue => {}
                        BusOutcome::Eos => break,
                        BusOutcome::SegmentChanged => {
                            refresh_stats(manifest, &state);
                            if let Err(e) = bundle.write_manifest(manifest) {
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
                            let _ = bundle.write_manifest(manifest);
                            if lost_tracks.len() == manifest.tracks.len() {
                                fatal = Some("every source failed".into());
                                break;
                            }
                        }
                        BusOutcome::LiveFailed(e) => {
                            tracing::warn!("live view: {e}; the recording goes on");
                            state.system_event("live_failed", json!({ "error": e })).await;
                        }
                        BusOutcome::DiskFull(e) => {
                            let _ = fs::remove_file(&self.reserve);
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
        Stop { fatal, reason }
    }

    /// Tears down in order ([`Teardown::close`]), then writes the final
    /// manifest: gaps and open segments closed at the end, the final counts,
    /// `complete` or `interrupted`.
    pub(super) async fn finish(mut self, stop: Stop) -> Result<PathBuf, RecordError> {
        // Before the endpoint closes: markers still in flight are events.
        self.stop_sensors().await;
        let Self {
            teardown,
            bundle,
            mut manifest,
            clock,
            reserve,
            sensors: _,
            announcer: _,
            live: _,
        } = self;
        let end_ns = clock.now_ns();
        // What goes into the bundle names its files relative to it: a
        // bundle moves to the lab server, this machine's folders stay here.
        let stop = Stop {
            fatal: stop.fatal.map(|e| bundle_relative(&e, &bundle.dir)),
            reason: stop.reason.map(|e| bundle_relative(&e, &bundle.dir)),
        };
        let stopped = json!({ "reason": stop.fatal.as_ref().or(stop.reason.as_ref()) });
        let state = teardown.close(stopped).await;

        for g in &mut manifest.gaps {
            g.end_ns.get_or_insert(end_ns);
        }
        manifest.duration_ns = Some(end_ns);
        match stop.fatal {
            Some(e) => {
                tracing::error!("recording stopped early: {e}");
                manifest.status = SessionStatus::Interrupted;
                manifest.stop_reason = Some(e);
            }
            None => {
                manifest.status = SessionStatus::Complete;
                manifest.stop_reason = stop.reason;
            }
        }
        for s in &mut manifest.segments {
            if s.state == SegmentState::Open {
                s.state = SegmentState::Recovered;
                s.end_ns.get_or_insert(end_ns);
            }
        }
        if let Some(state) = &state {
            refresh_stats(&mut manifest, state);
        }
        let _ = fs::remove_file(&reserve);
        bundle.write_manifest(&manifest)?;
        Ok(bundle.dir)
    }

    /// Ends a recording whose start failed after `Playing`: the segments the
    /// bus has announced go into the manifest, which is finished as
    /// `interrupted` with `error` as its reason; `error` is returned.
    pub(super) async fn abandon(mut self, error: RecordError) -> RecordError {
        let pipeline = self.teardown.pipeline().clone();
        if let Some(bus) = pipeline.bus() {
            while let Some(msg) = bus.pop() {
                handle_message(&msg, &mut self.manifest, &self.bundle, &self.clock);
            }
        }
        let stop = Stop {
            fatal: Some(error_chain(&error)),
            reason: None,
        };
        if let Err(e) = self.finish(stop).await {
            tracing::error!("{}", error_chain(&e));
        }
        error
    }
}

/// An error and its sources, `: `-separated.
/// `text` with the bundle's absolute folder taken out of every path in it.
fn bundle_relative(text: &str, dir: &std::path::Path) -> String {
    let dir = dir.display().to_string();
    if dir.is_empty() || dir == "/" {
        return text.to_string();
    }
    text.replace(&format!("{dir}/"), "").replace(&dir, ".")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s += &format!(": {cause}");
        source = cause.source();
    }
    s
}

fn refresh_stats(manifest: &mut Manifest, state: &EndpointState) {
    manifest.events = EventStats {
        accepted: state.accepted(),
        rejected: state.rejected(),
    };
    manifest.clock.clients = state.clock_estimates();
}

#[cfg(test)]
mod tests {
    use super::bundle_relative;
    use std::path::Path;

    #[test]
    fn stop_reasons_name_files_relative_to_the_bundle() {
        let dir = Path::new("/home/lab/sessions/S1");
        assert_eq!(
            bundle_relative(
                "could not create /home/lab/sessions/S1/events.jsonl: Is a directory",
                dir
            ),
            "could not create events.jsonl: Is a directory"
        );
        assert_eq!(
            bundle_relative(
                "Could not open file \"/home/lab/sessions/S1/media/main-00003.mkv\"",
                dir
            ),
            "Could not open file \"media/main-00003.mkv\""
        );
        assert_eq!(bundle_relative("in /home/lab/sessions/S1", dir), "in .");
        assert_eq!(
            bundle_relative("operator pressed stop", dir),
            "operator pressed stop"
        );
    }
}
