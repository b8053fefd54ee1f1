//! `lab-setup check`: a short real recording with the station's own devices,
//! measured the way the sync test measures the recorder: dropped frames per
//! video track, and (when Chromium can be shown on the station's screen)
//! flashes and beeps from an instrumented page compared with where they
//! landed in the recorded media.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use lab_model::station::{CameraSource, MicrophoneSource, ScreenSource};
use lab_model::{Bundle, SessionStatus, StationConfig};
use recorder::browser::BrowserOptions;
use recorder::preflight::{
    OffsetStats, SYNC_FIGURES_VERSION, SyncFigures, TrackFrameFigures, offsets_or_none,
};
use recorder::{RecordOptions, record};

use crate::media::{audio_samples, flash_offsets_ms, hex_colour, onset_ns, video_frames};

const FLASH_HTML: &str = include_str!("flash.html");

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub station: StationConfig,
    pub seconds: f64,
    /// Where the check's bundle goes; kept for inspection.
    pub out_dir: PathBuf,
    /// Show a flashing, beeping page in Chromium on the recorded screen.
    pub optical: bool,
    pub chromium: PathBuf,
}

#[derive(Debug, Default)]
pub struct TrackFrames {
    pub track: String,
    pub recorded: usize,
    pub expected: usize,
}

impl TrackFrames {
    pub fn dropped(&self) -> usize {
        self.expected.saturating_sub(self.recorded)
    }
}

/// A flash whose event the page stamped at most this long after setting its
/// colour (idle: 0.8-4.3 ms, measured) has its event as the reference for
/// when it reached the screen.
pub const NARROW_BRACKET_MS: f64 = 5.0;
/// At least this many flashes with such a reference, or the browser was too
/// busy to measure by.
pub const MIN_REFERENCE_FLASHES: usize = 6;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub bundle: PathBuf,
    pub frames: Vec<TrackFrames>,
    pub audio_seconds: f64,
    /// Event -> first frame showing it, ms.
    pub flash_offsets_ms: Vec<f64>,
    /// Per flash, how long after the page set the colour its event was
    /// stamped, ms, on the page's clock (NaN when the page did not say when
    /// it asked): no frame can show a flash before its event less this.
    pub flash_stamp_delay_ms: Vec<f64>,
    /// Scheduled beep -> its onset in the recorded audio, ms.
    pub beep_offsets_ms: Vec<f64>,
    pub clock_uncertainty_ms: Option<f64>,
    pub frame_ms: f64,
}

/// Devices the config names that this machine does not have, each with what to do.
pub fn missing_devices(station: &StationConfig, microphones_found: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    let s = &station.screen;
    if s.source == ScreenSource::Ximage {
        let display = if s.device.is_empty() {
            std::env::var("DISPLAY").unwrap_or_default()
        } else {
            s.device.clone()
        };
        let ok = !display.is_empty()
            && std::process::Command::new("xdpyinfo")
                .args(["-display", &display])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
        if !ok {
            missing.push(format!("screen: X display {display:?} cannot be opened (is the session running, is DISPLAY right?)"));
        }
    }
    if let Some(c) = &station.camera
        && c.source == CameraSource::V4l2
        && !Path::new(&c.device).exists()
    {
        missing.push(format!(
            "camera: {} is configured but not present (is it plugged in?)",
            c.device
        ));
    }
    for (i, m) in station.microphones.iter().enumerate() {
        let known = match m.source {
            MicrophoneSource::Test => true,
            _ if m.device.is_empty() => !microphones_found.is_empty(),
            _ => microphones_found.iter().any(|d| d == &m.device),
        };
        if !known {
            let dev = if m.device.is_empty() {
                "the default source"
            } else {
                &m.device
            };
            missing.push(format!("microphones[{i}]: {dev} is configured but not present (found: {microphones_found:?})"));
        }
    }
    missing
}

pub async fn check(
    opts: CheckOptions,
    shutdown: impl Future<Output = String>,
) -> anyhow::Result<CheckReport> {
    gstreamer::init()?;
    let found: Vec<String> = crate::probe::probe(&opts.out_dir)?
        .microphones
        .into_iter()
        .map(|d| d.device)
        .collect();
    let missing = missing_devices(&opts.station, &found);
    if !missing.is_empty() {
        bail!(
            "configured devices are missing:\n  {}",
            missing.join("\n  ")
        );
    }
    std::fs::create_dir_all(&opts.out_dir)?;
    let browser = if opts.optical {
        let page = opts.out_dir.join("flash.html");
        std::fs::write(&page, FLASH_HTML)?;
        let flashes = ((opts.seconds - 3.0) / 1.0).clamp(3.0, 30.0) as u32;
        Some(BrowserOptions {
            chromium: opts.chromium.clone(),
            url: format!(
                "file://{}?n={flashes}&beep=1",
                page.canonicalize()?.display()
            ),
            kiosk: true,
            window: (opts.station.screen.width, opts.station.screen.height),
            extra_args: vec!["--disable-gpu".into()],
        })
    } else {
        None
    };
    let mut station = opts.station.clone();
    station.recording.events_listen = "127.0.0.1:0".into();
    let ropts = RecordOptions {
        station: station.clone(),
        test_sources: false,
        duration: Some(Duration::from_secs_f64(opts.seconds)),
        participant: "CHECK".into(),
        consent: "station-check".into(),
        moderator: None,
        study: Some("station check".into()),
        life_situation: None,
        out_dir: opts.out_dir.clone(),
        events_listen: None,
        browser,
        lsl: vec![],
        lsl_library: PathBuf::new(),
        lsl_announce: false,
        live: None,
    };
    let dir = record(ropts, shutdown)
        .await
        .context("test recording failed")?;
    analyse(&dir, &station)
}

/// Measures a recorded check bundle.
pub fn analyse(dir: &Path, station: &StationConfig) -> anyhow::Result<CheckReport> {
    let bundle = Bundle::new(dir);
    let m = bundle.read_manifest()?;
    if m.status != SessionStatus::Complete {
        bail!(
            "the test recording ended {:?}: {}",
            m.status,
            m.stop_reason.unwrap_or_default()
        );
    }
    let mut report = CheckReport {
        bundle: dir.to_path_buf(),
        frame_ms: 1000.0 / f64::from(station.screen.framerate),
        ..Default::default()
    };
    let mut screen_frames = Vec::new();
    let mut audio = Vec::new();
    let has_audio = m.tracks.iter().any(|t| t.sample_rate.is_some());
    for track in m.tracks.iter().filter(|t| t.framerate.is_some()) {
        let group = &track.groups[0];
        let mut frames = Vec::new();
        for s in m.segments.iter().filter(|s| &s.group == group) {
            frames.extend(video_frames(&dir.join(&s.file))?);
            if group == "main" && has_audio {
                audio.extend(audio_samples(&dir.join(&s.file))?);
            }
        }
        frames.sort_by_key(|f| f.0);
        let fps = f64::from(track.framerate.unwrap_or(30));
        let span = match (frames.first(), frames.last()) {
            (Some(a), Some(b)) => (b.0 - a.0) as f64 / 1e9,
            _ => 0.0,
        };
        report.frames.push(TrackFrames {
            track: track.id.clone(),
            recorded: frames.len(),
            expected: (span * fps).round() as usize + usize::from(!frames.is_empty()),
        });
        if track.id == "screen" {
            screen_frames = frames;
        }
    }
    report.audio_seconds = audio.iter().map(|(_, s)| s.len() as f64 / 48e3).sum();
    let (events, _) = bundle.read_events()?;
    // Each flash: its session time, colour, and how long after setting the
    // colour the page stamped it (both on the page's own clock).
    let flashes: Vec<(i64, [f32; 3], f64)> = events
        .iter()
        .filter(|e| e.kind == "flash")
        .filter_map(|e| {
            let colour = hex_colour(e.data["colour"].as_str()?)?;
            let delay = match (e.client_time_ms, e.data["asked_ms"].as_f64()) {
                (Some(stamped), Some(asked)) => stamped - asked,
                _ => f64::NAN,
            };
            Some((e.t_ns, colour, delay))
        })
        .collect();
    let times: Vec<_> = flashes.iter().map(|&(t, c, _)| (t, c)).collect();
    report.flash_offsets_ms = flash_offsets_ms(&screen_frames, &times);
    report.flash_stamp_delay_ms = flashes.iter().map(|f| f.2).collect();
    if let Some(c) = m.clock.clients.first() {
        report.clock_uncertainty_ms = Some(c.uncertainty_ns as f64 / 1e6);
        report.beep_offsets_ms = events
            .iter()
            .filter(|e| e.kind == "beep")
            .filter_map(|e| e.data["at_ms"].as_f64())
            .map(|at| {
                let t = (at * 1e6).round() as i64 + c.offset_ns;
                onset_ns(&audio, t - 150_000_000, t + 500_000_000, 0.15)
                    .map_or(f64::NAN, |o| (o - t) as f64 / 1e6)
            })
            .collect();
    }
    Ok(report)
}

fn stats(xs: &[f64]) -> String {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return "no measurement".into();
    }
    v.sort_by(f64::total_cmp);
    let missed = xs.len() - v.len();
    format!(
        "min {:.1} / median {:.1} / max {:.1} ms over {}{}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1],
        v.len(),
        if missed > 0 {
            format!(" ({missed} not found)")
        } else {
            String::new()
        }
    )
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

impl CheckReport {
    /// Problems worth failing the check for.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for f in &self.frames {
            if f.recorded == 0 {
                p.push(format!("{}: no frames recorded", f.track));
            } else if f.dropped() * 100 > f.expected {
                p.push(format!(
                    "{}: {} of {} frames dropped (over 1 %)",
                    f.track,
                    f.dropped(),
                    f.expected
                ));
            }
        }
        let reference = self.flash_reference_offsets_ms();
        if !self.flash_offsets_ms.is_empty() && reference.len() < MIN_REFERENCE_FLASHES {
            p.push(format!(
                "the browser stamped only {} of {} flashes within {NARROW_BRACKET_MS} ms of setting their colour: too busy to measure the video's timing",
                reference.len(),
                self.flash_offsets_ms.len()
            ));
        }
        if let Some(v) = median(&reference)
            && !(-1.0..=self.frame_ms + 3.0).contains(&v)
        {
            p.push(format!("event-to-frame offset {v:.1} ms is over one frame"));
        }
        p
    }

    /// Event -> first frame of the flashes whose event the page stamped
    /// within [`NARROW_BRACKET_MS`] of setting the colour, where the event
    /// is a good reference for when the colour reached the screen; all the
    /// flashes where the page did not say when it set the colour. A loaded
    /// browser stamps some events late, and a frame then seems early.
    pub fn flash_reference_offsets_ms(&self) -> Vec<f64> {
        self.flash_offsets_ms
            .iter()
            .enumerate()
            .filter(|&(i, _)| match self.flash_stamp_delay_ms.get(i) {
                Some(d) if d.is_finite() => *d <= NARROW_BRACKET_MS,
                _ => true,
            })
            .map(|(_, o)| *o)
            .collect()
    }

    /// Median beep onset against the median flash (of those with a good
    /// reference), less half a frame (a flash lands on average half a frame
    /// after its event); positive when the audio is later.
    fn audio_video_offset_ms(&self) -> Option<f64> {
        let a = median(&self.beep_offsets_ms)?;
        let v = median(&self.flash_reference_offsets_ms())?;
        Some(a - (v - self.frame_ms / 2.0))
    }

    /// The figures as `lab-setup check --json` prints them for the station
    /// console (`recorder::preflight::sync_self_test` reads them).
    pub fn figures(&self) -> SyncFigures {
        let problems = self.problems();
        SyncFigures {
            version: SYNC_FIGURES_VERSION,
            passed: problems.is_empty(),
            problems,
            bundle: self.bundle.clone(),
            frames: self
                .frames
                .iter()
                .map(|f| TrackFrameFigures {
                    track: f.track.clone(),
                    recorded: f.recorded as u64,
                    expected: f.expected as u64,
                    dropped: f.dropped() as u64,
                })
                .collect(),
            audio_seconds: self.audio_seconds,
            frame_ms: self.frame_ms,
            clock_uncertainty_ms: self.clock_uncertainty_ms,
            // The flashes the verdict is judged on; all of them are in
            // `flash_offsets_ms`.
            event_to_frame_ms: OffsetStats::from_offsets(&self.flash_reference_offsets_ms()),
            event_to_audio_ms: OffsetStats::from_offsets(&self.beep_offsets_ms),
            audio_video_offset_ms: self.audio_video_offset_ms(),
            flash_offsets_ms: offsets_or_none(&self.flash_offsets_ms),
            beep_offsets_ms: offsets_or_none(&self.beep_offsets_ms),
        }
    }

    pub fn render(&self) -> String {
        let mut r = format!("Test recording: {}\n", self.bundle.display());
        for f in &self.frames {
            r += &format!(
                "  {}: {} frames recorded, {} expected, {} dropped\n",
                f.track,
                f.recorded,
                f.expected,
                f.dropped()
            );
        }
        r += &format!("  audio: {:.1} s decoded\n", self.audio_seconds);
        if let Some(u) = self.clock_uncertainty_ms {
            r += &format!("  browser clock offset known to ±{u:.2} ms\n");
        }
        if !self.flash_offsets_ms.is_empty() {
            r += &format!(
                "  event -> frame: {} (one frame is {:.1} ms)\n",
                stats(&self.flash_offsets_ms),
                self.frame_ms
            );
        }
        if self.flash_stamp_delay_ms.iter().any(|x| x.is_finite()) {
            r += &format!(
                "  page: colour set -> event stamped: {}\n",
                stats(&self.flash_stamp_delay_ms)
            );
        }
        if !self.beep_offsets_ms.is_empty() {
            r += &format!("  event -> audio onset: {}\n", stats(&self.beep_offsets_ms));
            if let Some(o) = self.audio_video_offset_ms() {
                r += &format!("  audio/video offset: {o:+.1} ms (audio later when positive)\n");
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only flashes the page stamped within 5 ms of setting their colour
    /// (or that carry no such figure) judge the video's timing; too few of
    /// them is a problem of its own.
    #[test]
    fn flashes_are_judged_on_those_stamped_promptly() {
        let mut r = CheckReport {
            flash_offsets_ms: vec![20.0, -3.0, f64::NAN, 30.0, 10.0, 12.0, 14.0, 16.0],
            flash_stamp_delay_ms: vec![2.0, 10.0, 1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0],
            beep_offsets_ms: vec![0.0],
            frame_ms: 33.3,
            ..Default::default()
        };
        let refs = r.flash_reference_offsets_ms();
        assert_eq!(refs.len(), 7, "the 10 ms one is left out: {refs:?}");
        assert!(!refs.contains(&-3.0));
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        // Median of [10, 12, 14, 16, 20, 30] (NaN left out) is 16.
        let av = r.audio_video_offset_ms().unwrap();
        assert!((av - (16.65 - 16.0)).abs() < 1e-9, "{av}");
        // A busy browser: most stamps late.
        r.flash_stamp_delay_ms = vec![9.0; 8];
        r.flash_stamp_delay_ms[0] = 1.0;
        let p = r.problems();
        assert!(p.iter().any(|x| x.contains("too busy")), "{p:?}");
        // Without the page's figures every flash counts, as before.
        r.flash_stamp_delay_ms.clear();
        assert_eq!(r.flash_reference_offsets_ms().len(), 8);
    }

    #[test]
    fn missing_devices_are_named() {
        let mut s = StationConfig::default_station();
        s.screen.source = ScreenSource::Test;
        s.camera.as_mut().unwrap().device = "/dev/video-nonexistent".into();
        s.microphones[0].device = "usb-mic".into();
        let m = missing_devices(&s, &["other".into()]);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("/dev/video-nonexistent") && m[0].contains("not present"));
        assert!(m[1].contains("usb-mic"));
        assert!(missing_devices(&s, &["usb-mic".into()]).len() == 1);
    }

    #[test]
    fn json_figures_carry_the_rendered_numbers() {
        let r = CheckReport {
            bundle: "/tmp/b".into(),
            frames: vec![TrackFrames {
                track: "screen".into(),
                recorded: 140,
                expected: 150,
            }],
            audio_seconds: 5.0,
            flash_offsets_ms: vec![20.0, f64::NAN, 24.0],
            flash_stamp_delay_ms: vec![],
            beep_offsets_ms: vec![50.0],
            clock_uncertainty_ms: Some(0.5),
            frame_ms: 40.0,
        };
        let f = r.figures();
        assert!(!f.passed);
        assert_eq!(f.problems, r.problems());
        assert_eq!(f.frames[0].dropped, 10);
        let e = f.event_to_frame_ms.as_ref().unwrap();
        assert_eq!((e.median, e.measured, e.missed), (24.0, 2, 1));
        // 50 - (24 - 40 / 2)
        assert_eq!(f.audio_video_offset_ms, Some(46.0));
        assert!(r.render().contains("audio/video offset: +46.0 ms"));
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains("\"flash_offsets_ms\":[20.0,null,24.0]"),
            "{json}"
        );

        // A loaded browser stamped the second and third flash late: the
        // summary the console shows is of those the check judges, the list
        // keeps them all.
        let late = CheckReport {
            flash_offsets_ms: vec![20.0, -9.0, -12.0, 22.0],
            flash_stamp_delay_ms: vec![1.0, 14.0, 20.0, 2.0],
            ..r
        };
        let f = late.figures();
        let e = f.event_to_frame_ms.as_ref().unwrap();
        assert_eq!((e.min, e.median, e.measured), (20.0, 22.0, 2));
        assert_eq!(f.flash_offsets_ms.len(), 4);
    }
}
