//! One preview pipeline per configured device, as a `gst-launch-1.0`
//! description. The source is the recorder's own (`crate::pipeline`), so the
//! preview opens a device exactly as the recording will; what follows it is
//! cheap: video is thinned to `PREVIEW_FPS`, scaled to at most
//! `PREVIEW_MAX_WIDTH` and JPEG-encoded into an appsink, audio goes through
//! `level` into a fakesink.
//!
//! ```text
//! gst-launch-1.0 videotestsrc is-live=true ! queue max-size-buffers=2 leaky=downstream \
//!   ! videorate drop-only=true ! videoconvert ! videoscale \
//!   ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1,framerate=2/1 \
//!   ! jpegenc quality=75 ! fakesink
//! gst-launch-1.0 -m audiotestsrc is-live=true ! audioconvert ! audioresample \
//!   ! audio/x-raw,rate=48000,channels=1 ! level interval=100000000 ! fakesink
//! ```

use std::path::Path;

use lab_model::station::{CameraSource, MicrophoneSource};
use lab_model::{ChannelRole, StationConfig};
use serde::Serialize;

use super::problems::{DeviceKind, DeviceNames};
use crate::pipeline::{camera_source, microphone_source, screen_source};

/// Preview snapshots per second (the console wants at least one).
pub const PREVIEW_FPS: u32 = 2;
/// Snapshots are scaled down to this width at most, keeping the aspect.
pub const PREVIEW_MAX_WIDTH: u32 = 640;
/// `level` message interval.
pub(super) const LEVEL_INTERVAL_MS: u64 = 100;

/// Names of the elements the preview reads from.
pub(super) const APPSINK: &str = "preview";

/// How the pre-flight opens the station's devices.
#[derive(Debug, Clone, Default)]
pub struct PreflightOptions {
    /// Replace every device with a GStreamer test source (`--test-sources`):
    /// screen and camera patterns as in a recording, a sine tone per microphone.
    pub test_sources: bool,
    /// Track ids (`mic1`, ...) of test microphones that play silence instead
    /// of a tone, to show (and test) a dead channel.
    pub silent_test_mics: Vec<String>,
}

/// A device the pre-flight previews, for laying out its tile even when it fails.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewDevice {
    /// Track id as the recorder names it: `screen`, `camera`, `mic0`, ...
    pub track: String,
    pub kind: DeviceKind,
    /// Source element (`ximagesrc`, `v4l2src`, `pulsesrc`, `videotestsrc`, ...).
    pub source: String,
    /// The configured device; empty for the system default and test sources.
    pub device: String,
    pub name_ru: String,
    pub name_en: String,
    /// Microphones: one role per channel, in channel order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channel_roles: Vec<ChannelRole>,
}

pub(super) struct Branch {
    pub device: PreviewDevice,
    pub names: DeviceNames,
    pub description: String,
    /// Known to be absent before trying (a `/dev/video` path that does not exist).
    pub absent: bool,
}

/// Preview size for a source of `width`×`height`: at most
/// `PREVIEW_MAX_WIDTH` wide, same aspect, even sides (I420 and JPEG want them).
pub(super) fn preview_size(width: u32, height: u32) -> (u32, u32) {
    let w = width.clamp(2, PREVIEW_MAX_WIDTH) & !1;
    let h = (u64::from(height) * u64::from(w) / u64::from(width.max(1))) as u32;
    (w, h.max(2) & !1)
}

fn video(src: &str, width: u32, height: u32) -> String {
    let (w, h) = preview_size(width, height);
    format!(
        "{src} ! queue max-size-buffers=2 leaky=downstream ! videorate drop-only=true \
         ! videoconvert ! videoscale \
         ! video/x-raw,format=I420,width={w},height={h},pixel-aspect-ratio=1/1,framerate={PREVIEW_FPS}/1 \
         ! jpegenc quality=75 ! appsink name={APPSINK} drop=true max-buffers=1 sync=false"
    )
}

fn audio(src: &str, channels: u32) -> String {
    format!(
        "{src} ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels={channels} \
         ! level interval={} post-messages=true ! fakesink sync=false",
        LEVEL_INTERVAL_MS * 1_000_000
    )
}

/// One branch per configured device, in the recorder's track order.
pub(super) fn branches(station: &StationConfig, options: &PreflightOptions) -> Vec<Branch> {
    let test = options.test_sources;
    let mut out = Vec::new();
    let device = |track: &str, kind, source: &str, dev: &str, names: &DeviceNames| PreviewDevice {
        track: track.into(),
        kind,
        source: source.into(),
        device: dev.into(),
        name_ru: names.ru.clone(),
        name_en: names.en.clone(),
        channel_roles: Vec::new(),
    };

    let s = &station.screen;
    let (source, dev, src) = screen_source(s, test);
    let names = DeviceNames::new(DeviceKind::Screen, &dev, 0, source == "videotestsrc");
    out.push(Branch {
        device: device("screen", DeviceKind::Screen, source, &dev, &names),
        description: video(&src, s.width, s.height),
        names,
        absent: false,
    });

    if let Some(c) = &station.camera {
        let (source, dev, src) = camera_source(c, test);
        let names = DeviceNames::new(DeviceKind::Camera, &dev, 0, source == "videotestsrc");
        out.push(Branch {
            device: device("camera", DeviceKind::Camera, source, &dev, &names),
            description: video(&src, c.width, c.height),
            absent: !test && c.source == CameraSource::V4l2 && !Path::new(&c.device).exists(),
            names,
        });
    }

    for (i, m) in station.microphones.iter().enumerate() {
        let id = format!("mic{i}");
        let is_test = test || m.source == MicrophoneSource::Test;
        let (source, src) = if is_test {
            // A steady tone rather than the recording's ticks, so the
            // meters show a level that does not flicker.
            let volume = if options.silent_test_mics.contains(&id) {
                0.0
            } else {
                0.5
            };
            (
                "audiotestsrc",
                format!(
                    "audiotestsrc name=src_{id} is-live=true wave=sine freq={} volume={volume}",
                    440 + 110 * i
                ),
            )
        } else {
            microphone_source(&id, m, false)
        };
        let dev = if is_test { "" } else { m.device.as_str() };
        let names = DeviceNames::new(DeviceKind::Microphone, dev, i, is_test);
        let mut d = device(&id, DeviceKind::Microphone, source, dev, &names);
        d.channel_roles = m.roles.clone();
        out.push(Branch {
            device: d,
            description: audio(&src, m.channels),
            names,
            absent: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_sizes_keep_aspect_within_640() {
        let cases = [
            ((1280, 720), (640, 360)),
            ((1920, 1080), (640, 360)),
            ((320, 240), (320, 240)),
            ((2560, 1600), (640, 400)),
            ((641, 481), (640, 480)),
            ((1, 1), (2, 2)),
        ];
        for ((w, h), want) in cases {
            assert_eq!(preview_size(w, h), want, "{w}x{h}");
        }
    }

    #[test]
    fn real_devices_open_as_the_recorder_opens_them() {
        let mut station = StationConfig::default_station();
        station.camera.as_mut().unwrap().device = "/dev/video99".into();
        station.microphones[0].device = "usb-mic".into();
        let b = branches(&station, &PreflightOptions::default());
        let tracks: Vec<_> = b.iter().map(|b| b.device.track.as_str()).collect();
        assert_eq!(tracks, ["screen", "camera", "mic0"]);
        assert!(b[0].description.starts_with("ximagesrc name=src_screen"));
        assert!(
            b[1].description
                .starts_with("v4l2src name=src_camera device=\"/dev/video99\"")
        );
        assert!(b[1].absent, "a /dev/video path that does not exist");
        assert!(
            b[2].description
                .starts_with("pulsesrc name=src_mic0 device=\"usb-mic\"")
        );
        assert!(b[2].description.contains("channels=1 ! level"));
        assert_eq!(b[1].device.name_ru, "Камера /dev/video99");
        assert_eq!(b[2].device.channel_roles, [ChannelRole::Mixed]);
    }

    #[test]
    fn test_sources_use_patterns_and_tones() {
        let mut station = StationConfig::default_station();
        station.microphones.push(station.microphones[0].clone());
        let options = PreflightOptions {
            test_sources: true,
            silent_test_mics: vec!["mic1".into()],
        };
        let b = branches(&station, &options);
        assert!(b[0].description.starts_with("videotestsrc"));
        assert!(b[1].description.starts_with("videotestsrc") && !b[1].absent);
        assert!(b[2].description.contains("wave=sine freq=440 volume=0.5"));
        assert!(b[3].description.contains("volume=0 "));
        assert!(b.iter().all(|b| b.device.device.is_empty()));
        assert_eq!(b[3].device.name_ru, "Микрофон 2 (тестовый сигнал)");
    }
}
