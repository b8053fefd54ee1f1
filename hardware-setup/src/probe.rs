//! `lab-setup probe`: what this station has. Screens come from the X server
//! (`xdpyinfo`), cameras and microphones from GStreamer's device monitor,
//! encoders from the registry plus a real 10-frame test encode (a hardware
//! encoder whose plugin loads but whose device is absent fails there, not in
//! the middle of a session).

use std::path::Path;
use std::process::Command;

use gstreamer as gst;
use gstreamer::prelude::*;
use lab_model::station::{
    CameraConfig, CameraSource, EncoderConfig, MicrophoneConfig, MicrophoneSource, RecordingConfig,
    STATION_FORMAT_VERSION, ScreenConfig, ScreenSource,
};
use lab_model::{ChannelRole, StationConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub display: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    /// `Video/Source` or `Audio/Source`.
    pub class: String,
    /// Value for the source element's `device` property.
    pub device: String,
    /// Source element factory (`v4l2src`, `pulsesrc`, `alsasrc`, ...).
    pub element: String,
    pub channels: Option<u32>,
    /// Pulse monitors of outputs: usable, but not a microphone.
    pub is_monitor: bool,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub screens: Vec<Screen>,
    pub cameras: Vec<Device>,
    pub microphones: Vec<Device>,
    /// Working H.264 encoders, preferred first.
    pub encoders: Vec<String>,
    /// Encoders whose plugin exists but whose test encode failed, with why.
    pub broken_encoders: Vec<(String, String)>,
    pub disk_free_bytes: u64,
    /// Lab Streaming Layer streams on the network.
    pub lsl: crate::lsl_scan::LslScan,
}

/// Bytes one hour of recording takes with this encoder config (screen +
/// camera + audio written to both groups), plus 10 % container overhead.
pub fn bytes_per_hour(enc: &EncoderConfig, with_camera: bool) -> u64 {
    let camera = if with_camera {
        enc.video_bitrate_kbps.min(2500)
    } else {
        0
    };
    let audio_copies = if with_camera { 2 } else { 1 };
    let kbps = enc.video_bitrate_kbps + camera + enc.audio_bitrate_kbps * audio_copies;
    u64::from(kbps) * 1000 / 8 * 3600 * 11 / 10
}

pub fn disk_free(path: &Path) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Parses `dimensions:    1920x1080 pixels` out of `xdpyinfo`.
pub fn parse_xdpyinfo(text: &str) -> Option<(u32, u32)> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("dimensions:"))?;
    let dims = line.split_whitespace().nth(1)?;
    let (w, h) = dims.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

pub fn screens() -> Vec<Screen> {
    let Ok(display) = std::env::var("DISPLAY") else {
        return vec![];
    };
    let Ok(out) = Command::new("xdpyinfo")
        .args(["-display", &display])
        .output()
    else {
        return vec![];
    };
    parse_xdpyinfo(&String::from_utf8_lossy(&out.stdout))
        .map(|(width, height)| {
            vec![Screen {
                display,
                width,
                height,
            }]
        })
        .unwrap_or_default()
}

fn devices() -> Vec<Device> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    monitor.add_filter(Some("Audio/Source"), None);
    if monitor.start().is_err() {
        return vec![];
    }
    let list = monitor.devices();
    monitor.stop();
    list.iter()
        .filter_map(|d| {
            let element = d.create_element(None).ok()?;
            let factory = element.factory()?.name().to_string();
            let device = if element.has_property("device") {
                element
                    .property_value("device")
                    .get::<String>()
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let channels = d
                .caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("channels").ok()))
                .map(|c| c as u32);
            let props = d.properties();
            let is_monitor = props
                .as_ref()
                .and_then(|p| p.get::<String>("device.class").ok())
                .is_some_and(|c| c == "monitor")
                || device.ends_with(".monitor");
            Some(Device {
                name: d.display_name().to_string(),
                class: d.device_class().to_string(),
                device,
                element: factory,
                channels,
                is_monitor,
            })
        })
        .collect()
}

/// Tries a 10-frame encode with `encoder`; Err says why it does not work here.
pub fn test_encoder(encoder: &str) -> Result<(), String> {
    let desc = format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! videoconvert ! {encoder} ! fakesink"
    );
    let pipeline = gst::parse::launch(&desc).map_err(|e| e.to_string())?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => Err(e.error().to_string()),
        _ => Err("test encode did not finish in 10 s".into()),
    }
}

pub fn probe(out_dir: &Path) -> anyhow::Result<Probe> {
    gst::init()?;
    let devs = devices();
    let (cameras, microphones): (Vec<_>, Vec<_>) =
        devs.into_iter().partition(|d| d.class.starts_with("Video"));
    let mut encoders = Vec::new();
    let mut broken = Vec::new();
    for e in recorder::pipeline::available_h264_encoders() {
        match test_encoder(e) {
            Ok(()) => encoders.push(e.to_string()),
            Err(why) => broken.push((e.to_string(), why)),
        }
    }
    let existing = out_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    Ok(Probe {
        screens: screens(),
        cameras,
        microphones,
        encoders,
        broken_encoders: broken,
        disk_free_bytes: disk_free(existing).unwrap_or(0),
        // Listing LSL streams waits on the network: `lab-setup probe` asks
        // for it (`lsl_scan::scan`), the station check does not.
        lsl: crate::lsl_scan::LslScan::Unavailable("not looked for".into()),
    })
}

impl Probe {
    /// A station config using what was found: the first screen, the first
    /// camera, the first real microphone (a two-channel interface is taken
    /// as participant + moderator), and the best working encoder.
    pub fn station_config(&self, station: &str) -> StationConfig {
        let screen = match self.screens.first() {
            Some(s) => ScreenConfig {
                source: ScreenSource::Ximage,
                device: s.display.clone(),
                width: s.width,
                height: s.height,
                framerate: 30,
            },
            None => ScreenConfig {
                source: ScreenSource::Test,
                device: String::new(),
                width: 1280,
                height: 720,
                framerate: 30,
            },
        };
        // Only V4L2 cameras can be recorded; others are listed but not configured.
        let camera = self
            .cameras
            .iter()
            .find(|c| c.element == "v4l2src")
            .map(|c| CameraConfig {
                source: CameraSource::V4l2,
                device: c.device.clone(),
                width: 1280,
                height: 720,
                framerate: 30,
            });
        let microphones = self
            .microphones
            .iter()
            .find(|m| !m.is_monitor)
            .or(self.microphones.first())
            .map(|m| {
                let channels = m.channels.unwrap_or(1).clamp(1, 2);
                MicrophoneConfig {
                    source: if m.element == "alsasrc" {
                        MicrophoneSource::Alsa
                    } else {
                        MicrophoneSource::Pulse
                    },
                    device: m.device.clone(),
                    channels,
                    roles: if channels == 2 {
                        vec![ChannelRole::Participant, ChannelRole::Moderator]
                    } else {
                        vec![ChannelRole::Mixed]
                    },
                }
            })
            .into_iter()
            .collect();
        StationConfig {
            format_version: STATION_FORMAT_VERSION,
            station: station.to_string(),
            screen,
            camera,
            microphones,
            encoder: EncoderConfig {
                video: self
                    .encoders
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "x264enc".into()),
                ..EncoderConfig::default()
            },
            recording: RecordingConfig::default(),
        }
    }

    pub fn report(&self, config: &StationConfig) -> String {
        let mut r = String::new();
        r += "Screens:\n";
        if self.screens.is_empty() {
            r += "  none found ($DISPLAY unset or unreachable); the config uses a test pattern\n";
        }
        for s in &self.screens {
            r += &format!("  X display {} {}x{}\n", s.display, s.width, s.height);
        }
        for (title, list) in [
            ("Cameras", &self.cameras),
            ("Microphones", &self.microphones),
        ] {
            r += &format!("{title}:\n");
            if list.is_empty() {
                r += "  none found\n";
            }
            for d in list.iter() {
                let ch = d.channels.map(|c| format!(", {c} ch")).unwrap_or_default();
                let mon = if d.is_monitor {
                    " (output monitor, not a microphone)"
                } else {
                    ""
                };
                r += &format!(
                    "  {} [{} device={}{ch}]{mon}\n",
                    d.name, d.element, d.device
                );
            }
        }
        r += &crate::lsl_scan::report(&self.lsl);
        r += "H.264 encoders (preferred first):\n";
        for e in &self.encoders {
            let kind = if e == "x264enc" {
                "software"
            } else {
                "hardware"
            };
            r += &format!("  {e} ({kind}, test encode ok)\n");
        }
        for (e, why) in &self.broken_encoders {
            r += &format!("  {e}: present but unusable: {why}\n");
        }
        if self.encoders.is_empty() {
            r += "  none works: install gstreamer1.0-plugins-ugly (x264enc) via hardware-setup/install.sh\n";
        }
        let per_hour = bytes_per_hour(&config.encoder, config.camera.is_some());
        r += &format!(
            "Disk: {:.1} GiB free, about {:.1} hours of recording at {:.2} GiB/hour\n",
            self.disk_free_bytes as f64 / (1u64 << 30) as f64,
            self.disk_free_bytes as f64 / per_hour as f64,
            per_hour as f64 / (1u64 << 30) as f64
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xdpyinfo_dimensions() {
        let text = "name of display:    :99\nscreen #0:\n  dimensions:    1920x1080 pixels (508x285 millimeters)\n";
        assert_eq!(parse_xdpyinfo(text), Some((1920, 1080)));
        assert_eq!(parse_xdpyinfo("no screens"), None);
    }

    #[test]
    fn an_hour_of_default_recording_is_a_few_gib() {
        let enc = EncoderConfig::default();
        let with = bytes_per_hour(&enc, true);
        let without = bytes_per_hour(&enc, false);
        // 4000 + 2500 + 2*64 kbit/s for an hour, +10 %.
        assert_eq!(with, (4000 + 2500 + 128) * 125 * 3600 * 11 / 10);
        assert!(without < with);
    }

    #[test]
    fn station_config_from_a_probe_prefers_real_microphones_and_hardware_encoders() {
        let p = Probe {
            screens: vec![Screen {
                display: ":0".into(),
                width: 1920,
                height: 1080,
            }],
            cameras: vec![],
            microphones: vec![
                Device {
                    name: "Monitor".into(),
                    class: "Audio/Source".into(),
                    device: "out.monitor".into(),
                    element: "pulsesrc".into(),
                    channels: Some(2),
                    is_monitor: true,
                },
                Device {
                    name: "USB interface".into(),
                    class: "Audio/Source".into(),
                    device: "usb".into(),
                    element: "pulsesrc".into(),
                    channels: Some(2),
                    is_monitor: false,
                },
            ],
            encoders: vec!["vaapih264enc".into(), "x264enc".into()],
            broken_encoders: vec![],
            disk_free_bytes: 1 << 40,
            lsl: crate::lsl_scan::LslScan::Streams(vec![]),
        };
        let c = p.station_config("lab-1");
        c.validate().unwrap();
        assert_eq!(c.microphones[0].device, "usb");
        assert_eq!(
            c.microphones[0].roles,
            [ChannelRole::Participant, ChannelRole::Moderator]
        );
        assert_eq!(c.encoder.video, "vaapih264enc");
        assert!(c.camera.is_none());
        assert_eq!((c.screen.width, c.screen.height), (1920, 1080));
    }
}
