//! Turns a station config into one GStreamer pipeline and the track list the
//! manifest describes.
//!
//! Layout (every source is named `src_<track>` so bus errors name the track):
//!
//! ```text
//! screen src ─ convert ─ queue ─ h264 ─┐
//!                                      ├─ splitmuxsink "main"   → media/main-00000.mkv ...
//! mic0 src ─ convert ─ opusenc ─ tee ──┤
//!                                  └───┼─ splitmuxsink "camera" → media/camera-00000.mkv ...
//! camera src ─ convert ─ queue ─ h264 ─┘
//! ```
//!
//! Audio is tee'd into both groups after encoding so every segment file is a
//! self-contained recording with sound, whichever video it carries. Each
//! microphone is restamped by its sample count after resampling
//! (`rate_<track>`, S16LE 48 kHz; `audio_clock`).
//!
//! With `live` (the observation room, `crate::live`) the encoded screen,
//! camera and first microphone are each tee'd once more, behind a leaky
//! queue, into a fragmented-MP4 muxer of their own (`live_<track>`, 100 ms
//! fragments) ending in an appsink (`live_sink_<track>`). One muxer per
//! track, because mp4mux starts every track's timeline at 0: the viewer
//! places each on the session clock by its first timestamp. The recording's
//! encoders are reused, nothing is encoded twice, and a stalled live branch
//! drops its own buffers instead of holding the recording back.
//! Timestamps are pipeline running time, i.e. session time: the files keep
//! them (segments continue where the previous one ended, they do not restart).

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::station::{
    CameraConfig, CameraSource, MicrophoneConfig, MicrophoneSource, ScreenConfig, ScreenSource,
};
use lab_model::{StationConfig, Track, TrackKind};

pub use lab_model::station::H264_ENCODERS;

#[derive(Debug, Clone)]
pub struct PipelinePlan {
    /// `gst-launch-1.0` syntax, logged and kept for debugging.
    pub description: String,
    pub tracks: Vec<Track>,
    /// Segment groups, i.e. the names of the splitmuxsinks.
    pub groups: Vec<String>,
    /// The tracks with a live branch (`live_sink_<track>`), empty without `live`.
    pub live: Vec<String>,
}

/// A live branch's queue: at most 1 s held, the oldest dropped beyond it.
/// Named `live_…` like every live element: its thread keeps the normal
/// priority ([`crate::priority`]).
fn live_queue(track: &str) -> String {
    format!(
        "queue name={}queue_{track} leaky=downstream max-size-buffers=0 max-size-bytes=0 max-size-time=1000000000",
        crate::priority::LIVE_PREFIX
    )
}

/// The live muxer and sink of `track`.
fn live_mux(track: &str) -> String {
    format!(
        "mp4mux name=live_{track} fragment-duration=100 streamable=true ! appsink name=live_sink_{track} sync=false async=false max-buffers=256 drop=true\n"
    )
}

/// Where the encoded video of `track` goes: its group's muxer, and with
/// `live` a tee into its live muxer too.
fn video_out(track: &str, group: &str, live: bool, queue: &str) -> String {
    if live {
        format!(
            "tee name=tee_{track}\ntee_{track}. ! {queue} ! mux_{group}.video\ntee_{track}. ! {} ! h264parse ! live_{track}.video_0\n{}",
            live_queue(track),
            live_mux(track)
        )
    } else {
        format!("mux_{group}.video\n")
    }
}

/// Pixels a second that one thread converts (videoconvert) or encodes
/// (x264 ultrafast) with room to spare: 1080p30. Each thread a stream needs
/// beyond it costs CPU in hand-offs (measured at 1080p30 here: x264's two
/// slice threads 4 % more than one, videoconvert's two 1-3 % more), so a
/// stream gets one thread per this many pixels a second, at least one.
const PIXELS_PER_THREAD: u64 = 1920 * 1080 * 30;

/// Threads for converting or encoding `width`x`height` at `fps`.
fn video_threads(width: u32, height: u32, fps: u32) -> u32 {
    let rate = u64::from(width)
        .saturating_mul(u64::from(height))
        .saturating_mul(u64::from(fps));
    u32::try_from(rate.div_ceil(PIXELS_PER_THREAD).clamp(1, 16)).unwrap_or(16)
}

/// Encoder settings for one H.264 encoder element, tuned for low latency so
/// that a crash loses as little as possible. `threads` is used by x264enc.
fn h264_encoder(element: &str, bitrate_kbps: u32, fps: u32, threads: u32) -> String {
    match element {
        // Average bitrate without a VBV buffer (x264enc's `pass=cbr` adds
        // one unless its capacity is 0), as FFmpeg's `-b:v`: the recording
        // goes to disk, and the VBV's per-row rate control cost 4 % more
        // CPU at 1080p30 here for no gain there.
        "x264enc" => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate={bitrate_kbps} vbv-buf-capacity=0 threads={threads}"
        ),
        "nvh264enc" => format!("nvh264enc bitrate={bitrate_kbps} gop-size={fps} zerolatency=true"),
        "vaapih264enc" => {
            format!("vaapih264enc rate-control=cbr bitrate={bitrate_kbps} keyframe-period={fps}")
        }
        "qsvh264enc" => format!("qsvh264enc bitrate={bitrate_kbps} gop-size={fps}"),
        "v4l2h264enc" => format!(
            "v4l2h264enc extra-controls=\"controls,video_bitrate={},h264_i_frame_period={fps}\"",
            bitrate_kbps * 1000
        ),
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The screen's source element: (factory, device it reads, launch fragment
/// named `src_screen`). Shared with `preflight`, which must open the devices
/// exactly as a recording will.
pub(crate) fn screen_source(
    s: &ScreenConfig,
    test_sources: bool,
) -> (&'static str, String, String) {
    match (test_sources, s.source) {
        (true, _) | (_, ScreenSource::Test) => (
            "videotestsrc",
            String::new(),
            "videotestsrc name=src_screen is-live=true pattern=smpte".to_string(),
        ),
        (false, ScreenSource::Ximage) => {
            let display = if s.device.is_empty() {
                std::env::var("DISPLAY").unwrap_or_else(|_| ":0".into())
            } else {
                s.device.clone()
            };
            let src = format!(
                "ximagesrc name=src_screen display-name={} use-damage=false show-pointer=true",
                quote(&display)
            );
            ("ximagesrc", display, src)
        }
        (false, ScreenSource::Pipewire) => (
            "pipewiresrc",
            s.device.clone(),
            format!(
                "pipewiresrc name=src_screen path={} do-timestamp=true",
                quote(&s.device)
            ),
        ),
    }
}

/// The screen's conversion to I420. An X server's captures (BGRx) go
/// through `labscreenconvert` (`crate::screen_convert`: SIMD, a third of
/// videoconvert's cost), behind a videoconvert that passes BGRx through and
/// converts only an unusual server's pixels; other sources through
/// videoconvert alone.
fn screen_convert(source: &str, threads: u32) -> String {
    if source == "ximagesrc" {
        format!("videoconvert ! {}", crate::screen_convert::FACTORY)
    } else {
        format!("videoconvert n-threads={threads}")
    }
}

/// The camera's source element, as `screen_source` (`src_camera`).
pub(crate) fn camera_source(
    c: &CameraConfig,
    test_sources: bool,
) -> (&'static str, String, String) {
    match (test_sources, c.source) {
        // 75 % colour bars scrolling 4 px a frame: every frame moves, so the
        // encoder does real work, at a sixth of `pattern=ball`'s cost (1.3 ms
        // against 6.4 ms a 720p frame here; `smpte` adds a patch of fresh
        // noise each frame). FFmpeg's `pal75bars` + `scroll` draws the same
        // moving picture, which `scripts/bench-record` relies on.
        (true, _) | (_, CameraSource::Test) => (
            "videotestsrc",
            String::new(),
            "videotestsrc name=src_camera is-live=true pattern=smpte75 horizontal-speed=4"
                .to_string(),
        ),
        (false, CameraSource::V4l2) => (
            "v4l2src",
            c.device.clone(),
            format!(
                "v4l2src name=src_camera device={} ! decodebin",
                quote(&c.device)
            ),
        ),
    }
}

/// A microphone's source element (factory, launch fragment named `src_<id>`).
pub(crate) fn microphone_source(
    id: &str,
    m: &MicrophoneConfig,
    test_sources: bool,
) -> (&'static str, String) {
    let dev = |prop: &str| {
        if m.device.is_empty() {
            String::new()
        } else {
            format!(" {prop}={}", quote(&m.device))
        }
    };
    match (test_sources, m.source) {
        (true, _) | (_, MicrophoneSource::Test) => (
            "audiotestsrc",
            format!("audiotestsrc name=src_{id} is-live=true wave=ticks volume=0.3"),
        ),
        // 20 ms reads: the timeline comes from the sample count
        // (`audio_clock`), not from each read's stamp, and 5 ms reads cost
        // 4 % of a core more in wake-ups (server, mainloop, every element).
        (false, MicrophoneSource::Pulse) => (
            "pulsesrc",
            format!(
                "pulsesrc name=src_{id}{} client-name=lab-recorder provide-clock=false slave-method=re-timestamp buffer-time=100000 latency-time=20000",
                dev("device")
            ),
        ),
        (false, MicrophoneSource::Alsa) => (
            "alsasrc",
            format!("alsasrc name=src_{id}{} provide-clock=false", dev("device")),
        ),
    }
}

/// Builds the pipeline description for `config`. With `test_sources` every
/// source becomes a GStreamer test pattern of the same size and rate.
pub fn plan(
    config: &StationConfig,
    test_sources: bool,
    media_dir: &Path,
    live: bool,
) -> PipelinePlan {
    let enc = &config.encoder;
    let seg_ns = u64::from(config.recording.segment_seconds) * 1_000_000_000;
    let mut d = String::new();
    let mut tracks = Vec::new();
    let mut groups = vec!["main".to_string()];
    if config.camera.is_some() {
        groups.push("camera".to_string());
    }
    let queue = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000";
    for g in &groups {
        let loc = media_dir.join(format!("{g}-%05d.mkv"));
        d += &format!(
            "splitmuxsink name=mux_{g} location={} muxer-factory=matroskamux max-size-time={seg_ns} send-keyframe-requests=true\n",
            quote(&loc.to_string_lossy())
        );
    }

    // Screen.
    let s = &config.screen;
    let (source, device, src) = screen_source(s, test_sources);
    let threads = video_threads(s.width, s.height, s.framerate);
    let convert = screen_convert(source, threads);
    d += &format!(
        "{src} ! {convert} ! videoscale ! videorate drop-only=true ! video/x-raw,format=I420,width={},height={},framerate={}/1 ! {queue} ! {} ! h264parse ! {}",
        s.width,
        s.height,
        s.framerate,
        h264_encoder(&enc.video, enc.video_bitrate_kbps, s.framerate, threads),
        video_out("screen", "main", live, queue)
    );
    tracks.push(Track {
        id: "screen".into(),
        kind: TrackKind::Video,
        codec: "h264".into(),
        encoder: enc.video.clone(),
        source: source.into(),
        device,
        groups: vec!["main".into()],
        width: Some(s.width),
        height: Some(s.height),
        framerate: Some(s.framerate),
        sample_rate: None,
        channels: None,
        channel_roles: vec![],
    });

    // Camera.
    if let Some(c) = &config.camera {
        let (source, device, src) = camera_source(c, test_sources);
        let threads = video_threads(c.width, c.height, c.framerate);
        d += &format!(
            "{src} ! videoconvert n-threads={threads} ! videoscale ! videorate ! video/x-raw,format=I420,width={},height={},framerate={}/1 ! {queue} ! {} ! h264parse ! {}",
            c.width,
            c.height,
            c.framerate,
            h264_encoder(
                &enc.video,
                enc.video_bitrate_kbps.min(2500),
                c.framerate,
                threads
            ),
            video_out("camera", "camera", live, queue)
        );
        tracks.push(Track {
            id: "camera".into(),
            kind: TrackKind::Video,
            codec: "h264".into(),
            encoder: enc.video.clone(),
            source: source.into(),
            device,
            groups: vec!["camera".into()],
            width: Some(c.width),
            height: Some(c.height),
            framerate: Some(c.framerate),
            sample_rate: None,
            channels: None,
            channel_roles: vec![],
        });
    }

    // Microphones.
    for (i, m) in config.microphones.iter().enumerate() {
        let id = format!("mic{i}");
        let (source, src) = microphone_source(&id, m, test_sources);
        d += &format!(
            "{src} ! audioconvert ! audioresample ! capsfilter name=rate_{id} caps=audio/x-raw,format=S16LE,rate=48000,channels={} ! {queue} ! opusenc bitrate={} ! tee name=tee_{id}\n",
            m.channels,
            enc.audio_bitrate_kbps * 1000 * m.channels.min(2)
        );
        for g in &groups {
            d += &format!("tee_{id}. ! {queue} leaky=downstream ! mux_{g}.audio_{i}\n");
        }
        if live && i == 0 {
            d += &format!(
                "tee_{id}. ! {} ! live_{id}.audio_0\n{}",
                live_queue(&id),
                live_mux(&id)
            );
        }
        tracks.push(Track {
            id,
            kind: TrackKind::Audio,
            codec: "opus".into(),
            encoder: "opusenc".into(),
            source: source.into(),
            device: if test_sources {
                String::new()
            } else {
                m.device.clone()
            },
            groups: groups.clone(),
            width: None,
            height: None,
            framerate: None,
            sample_rate: Some(48_000),
            channels: Some(m.channels),
            channel_roles: m.roles.clone(),
        });
    }
    let live = if live {
        tracks
            .iter()
            .map(|t| t.id.clone())
            .filter(|id| matches!(id.as_str(), "screen" | "camera" | "mic0"))
            .collect()
    } else {
        vec![]
    };
    PipelinePlan {
        description: d,
        tracks,
        live,
        groups,
    }
}

/// Parses the plan into a pipeline clocked by the system's monotonic clock,
/// so that session time can be read by the event endpoint at any moment.
pub fn build(plan: &PipelinePlan) -> Result<gst::Pipeline, gst::glib::Error> {
    crate::screen_convert::register().map_err(|e| {
        gst::glib::Error::new(
            gst::CoreError::Failed,
            &format!("registering {}: {e}", crate::screen_convert::FACTORY),
        )
    })?;
    let element = gst::parse::launch(&plan.description)?;
    let pipeline = element
        .downcast::<gst::Pipeline>()
        .expect("a multi-branch description parses into a pipeline");
    pipeline.use_clock(Some(&gst::SystemClock::obtain()));
    // Microphones are timed by their sample count (`audio_clock`).
    for t in plan.tracks.iter().filter(|t| t.kind == TrackKind::Audio) {
        let channels = t.channels.unwrap_or(1);
        crate::audio_clock::attach(&pipeline, &format!("rate_{}", t.id), 48_000, 2 * channels);
    }
    // Unbuffered file writes: every muxed cluster reaches the kernel at once,
    // so a kill -9 loses only what the encoder and muxer still held, not a
    // 64 KiB stdio buffer (seconds of a low-bitrate camera).
    for g in &plan.groups {
        if let Some(mux) = pipeline.by_name(&format!("mux_{g}")) {
            let sink = gst::ElementFactory::make("filesink")
                .property_from_str("buffer-mode", "unbuffered")
                .build()
                .map_err(|e| {
                    gst::glib::Error::new(gst::CoreError::MissingPlugin, &e.to_string())
                })?;
            mux.set_property("sink", &sink);
        }
    }
    Ok(pipeline)
}

/// Which of `H264_ENCODERS` this machine has, in preference order.
pub fn available_h264_encoders() -> Vec<&'static str> {
    H264_ENCODERS
        .iter()
        .copied()
        .filter(|name| gst::ElementFactory::find(name).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_model::ChannelRole;

    #[test]
    fn test_sources_replace_every_device_and_keep_roles() {
        let mut c = StationConfig::default_station();
        c.microphones[0].channels = 2;
        c.microphones[0].roles = vec![ChannelRole::Participant, ChannelRole::Moderator];
        let p = plan(&c, true, Path::new("/tmp/b/media"), false);
        assert!(!p.description.contains("ximagesrc"));
        assert!(!p.description.contains("v4l2src"));
        assert!(!p.description.contains("pulsesrc"));
        assert_eq!(p.groups, ["main", "camera"]);
        let ids: Vec<_> = p.tracks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["screen", "camera", "mic0"]);
        assert_eq!(
            p.tracks[2].channel_roles,
            [ChannelRole::Participant, ChannelRole::Moderator]
        );
        assert!(
            p.description.contains("mux_main.audio_0")
                && p.description.contains("mux_camera.audio_0")
        );
    }

    #[test]
    fn a_live_plan_tees_the_recording_encoders_and_parses() {
        gst::init().unwrap();
        let c = StationConfig::default_station();
        let p = plan(&c, true, Path::new("/tmp/b/media"), true);
        assert_eq!(p.live, ["screen", "camera", "mic0"]);
        // One encoder per source, live or not.
        assert_eq!(p.description.matches("x264enc").count(), 2);
        assert_eq!(p.description.matches("opusenc").count(), 1);
        assert!(p.description.contains("live_mic0.audio_0"));
        let pipeline = build(&p).expect("the live description parses");
        for g in &p.live {
            assert!(pipeline.by_name(&format!("live_sink_{g}")).is_some());
        }
    }

    #[test]
    fn video_gets_one_thread_per_1080p30_of_pixels() {
        assert_eq!(video_threads(1920, 1080, 30), 1);
        assert_eq!(video_threads(1280, 720, 30), 1);
        assert_eq!(video_threads(1920, 1080, 60), 2);
        assert_eq!(video_threads(2560, 1440, 60), 4);
        assert_eq!(video_threads(3840, 2160, 30), 4);
        assert_eq!(video_threads(1, 1, 1), 1);
        assert_eq!(video_threads(u32::MAX, u32::MAX, u32::MAX), 16);
        let mut c = StationConfig::default_station();
        c.screen.width = 3840;
        c.screen.height = 2160;
        c.screen.framerate = 30;
        let p = plan(&c, true, Path::new("/m"), false);
        let screen = p
            .description
            .lines()
            .find(|l| l.contains("src_screen"))
            .unwrap();
        assert!(screen.contains("videoconvert n-threads=4") && screen.contains(" threads=4"));
    }

    #[test]
    fn no_camera_means_one_group() {
        let mut c = StationConfig::default_station();
        c.camera = None;
        let p = plan(&c, false, Path::new("/m"), false);
        assert_eq!(p.groups, ["main"]);
        assert!(p.live.is_empty() && !p.description.contains("mp4mux"));
        assert!(p.description.contains("ximagesrc") && p.description.contains("pulsesrc"));
        // The X server's BGRx goes through the SIMD converter.
        assert!(
            p.description
                .contains("show-pointer=true ! videoconvert ! labscreenconvert ! ")
        );
    }
}
