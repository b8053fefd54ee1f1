//! A microphone that disappears mid-session (its PulseAudio source is
//! unloaded, as when a USB interface is unplugged): the other tracks go on,
//! the gap is in the manifest and the event log, and the session completes.

use std::time::Duration;

use lab_model::{Bundle, SessionStatus};
use lab_tests::{Pulse, RecorderProcess, ffprobe, http, temp_dir};

#[test]
fn a_lost_microphone_leaves_a_gap_and_the_screen_keeps_recording() {
    let pulse = Pulse::start().unwrap();
    let dir = temp_dir("devloss");
    let station = dir.join("station.toml");
    std::fs::write(
        &station,
        format!(
            "format_version = 1\nstation = \"devloss\"\n\n[screen]\nsource = \"test\"\nwidth = 640\nheight = 360\nframerate = 30\n\n\
             [[microphones]]\nsource = \"pulse\"\ndevice = \"{}\"\nchannels = 1\nroles = [\"participant\"]\n",
            Pulse::MONITOR
        ),
    )
    .unwrap();
    let mut rec = RecorderProcess::spawn(
        &[
            "--station",
            station.to_str().unwrap(),
            "--participant",
            "P06",
            "--consent",
            "C06",
        ],
        &[("PULSE_SERVER", &pulse.server)],
        &dir.join("sessions"),
    )
    .unwrap();
    let (bundle_dir, url) = rec.wait_started().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let module = pulse
        .pactl(&["list", "short", "modules"])
        .unwrap()
        .lines()
        .find(|l| l.contains("module-null-sink"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .expect("null sink module");
    pulse.pactl(&["unload-module", &module]).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (status, body) = http("GET", &format!("{url}/api/status"), b"").unwrap();
    assert_eq!(
        status, 200,
        "recorder must still answer after losing a device: {body}"
    );
    http("POST", &format!("{url}/api/stop"), b"").unwrap();
    let (ok, _, stderr) = rec.wait().unwrap();
    assert!(ok, "{stderr}");

    let bundle = Bundle::new(&bundle_dir);
    let m = bundle.read_manifest().unwrap();
    assert_eq!(m.status, SessionStatus::Complete);
    let gap = m
        .gaps
        .iter()
        .find(|g| g.track == "mic0")
        .unwrap_or_else(|| panic!("no gap recorded: {:?}", m.gaps));
    let (events, _) = bundle.read_events().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "system.device_lost" && e.data["track"] == "mic0")
    );
    // Screen segments keep coming after the loss.
    let last_video_end = m
        .segments
        .iter()
        .filter(|s| s.group == "main")
        .map(|s| ffprobe(&bundle_dir.join(&s.file)).unwrap())
        .filter(|(video, _, _)| *video)
        .map(|(_, _, end)| end)
        .fold(0.0, f64::max);
    let lost_at = gap.start_ns as f64 / 1e9;
    println!(
        "device loss: mic0 lost at {lost_at:.2} s ({}), screen recorded until {last_video_end:.2} s",
        gap.reason
    );
    assert!(
        last_video_end > lost_at + 3.0,
        "screen stopped with the microphone"
    );
}
