//! One clock, measured: under Xvfb, the recorder launches Chromium on a page
//! (instrumented through DevTools) that flashes the whole screen and emits
//! an event in the same frame, then schedules a beep through Web Audio at a
//! known instant on its clock, played through PulseAudio into the null sink
//! whose monitor the recorder records. We decode what was recorded,
//! independently of the recorder (`hardware_setup::check::analyse`, the
//! same measurement `lab-setup check` makes on a real station), and compare:
//!   video: event time vs the first frame showing the flash colour (one frame, 33 ms);
//!   audio: the beep's scheduled time vs its onset in the recorded track (±20 ms);
//!   A/V:   the two combined (±20 ms).

use std::path::Path;
use std::time::Duration;

use hardware_setup::check::{MIN_REFERENCE_FLASHES, NARROW_BRACKET_MS, analyse};
use lab_model::{Bundle, StationConfig};
use lab_tests::{Pulse, RecorderProcess, Xvfb, http, require, temp_dir};

const FPS: u32 = 30;
const FLASHES: usize = 12;

fn station_toml(display: &str) -> String {
    format!(
        r#"format_version = 1
station = "sync-test"

[screen]
source = "ximage"
device = "{display}"
width = 1280
height = 720
framerate = {FPS}

[[microphones]]
source = "pulse"
device = "{monitor}"
channels = 1
roles = ["participant"]

[recording]
segment_seconds = 2
events_listen = "127.0.0.1:0"
"#,
        monitor = Pulse::MONITOR
    )
}

fn finite_median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn optical_and_audio_sync_within_one_frame_and_20_ms() {
    require("chromium");
    let x = Xvfb::start(1280, 720).unwrap();
    let pulse = Pulse::start().unwrap();
    let dir = temp_dir("sync");
    let station_text = station_toml(&x.display);
    let station = dir.join("station.toml");
    std::fs::write(&station, &station_text).unwrap();
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware-setup/src/flash.html");
    let url = format!(
        "file://{}?n={FLASHES}&beep=1",
        page.canonicalize().unwrap().display()
    );
    let mut rec = RecorderProcess::spawn(
        &[
            "--station",
            station.to_str().unwrap(),
            "--participant",
            "SYNC",
            "--consent",
            "test",
            "--browser",
            &url,
            "--browser-arg=--disable-gpu",
        ],
        &[("DISPLAY", &x.display), ("PULSE_SERVER", &pulse.server)],
        &dir.join("sessions"),
    )
    .unwrap();
    let (bundle_dir, events_url) = rec.wait_started().unwrap();
    let bundle = Bundle::new(&bundle_dir);

    // Wait for the page to finish (its last beep sounds 100 ms after the last flash).
    let started = std::time::Instant::now();
    loop {
        let (events, _) = bundle.read_events().unwrap();
        if events.iter().any(|e| e.kind == "flash_done") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "page did not finish; events: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(700));
    let (status, _) = http("POST", &format!("{events_url}/api/stop"), b"").unwrap();
    assert_eq!(status, 202);
    let (ok, _, stderr) = rec.wait().unwrap();
    assert!(ok, "{stderr}");

    let m = bundle.read_manifest().unwrap();
    let (events, _) = bundle.read_events().unwrap();
    let flashes: Vec<_> = events.iter().filter(|e| e.kind == "flash").collect();
    assert_eq!(flashes.len(), FLASHES);
    assert!(
        flashes
            .iter()
            .all(|e| e.uncertainty_ns.is_some_and(|u| u < 5_000_000)),
        "browser events must be mapped through a measured offset"
    );
    assert!(
        !m.clock.clients.is_empty(),
        "the probe's clock estimate is in the manifest"
    );

    let report = analyse(
        &bundle_dir,
        &StationConfig::from_toml(&station_text).unwrap(),
    )
    .unwrap();
    print!("{}", report.render());
    let frame_ms = 1000.0 / f64::from(FPS);
    let video = &report.flash_offsets_ms;
    let audio = &report.beep_offsets_ms;
    assert_eq!((video.len(), audio.len()), (FLASHES, FLASHES));
    assert!(
        video.iter().chain(audio).all(|x| x.is_finite()),
        "a flash or beep was not found: {video:.1?} {audio:.1?}"
    );

    // A frame stamped T shows the screen as it was at T, so the first frame
    // with the colour is captured 0-1 frame after the flash reached the
    // screen. The page brackets that moment: it sets the colour in an
    // animation frame (`asked`, the earliest any frame can show it) and
    // stamps the event in a task Chromium runs after that frame's paint,
    // raster and present following within 1-3 ms (measured under Xvfb).
    // Idle, the bracket is 0.8-4.3 ms wide; beside two busy loops Chromium
    // ran the stamping task up to 28 ms after setting the colour, and
    // flashes then showed up to 20 ms "before" their event, never before
    // their `asked`.
    let delay = &report.flash_stamp_delay_ms;
    assert_eq!(delay.len(), FLASHES, "every flash says when it was asked");
    for (i, d) in delay.iter().enumerate() {
        assert!(
            d.is_finite() && *d >= 0.0,
            "flash {i}: the page set its colour {d:.1} ms after stamping it"
        );
    }
    println!("video: event -> frame {video:.1?} ms");
    println!("page: colour set -> event stamped {delay:.1?} ms");
    // Every flash: never before the page asked (1 ms for the clock
    // mapping), never over two frames after its event.
    for (i, (o, d)) in video.iter().zip(delay).enumerate() {
        assert!(
            *o >= -d - 1.0 && *o <= 2.0 * frame_ms,
            "flash {i} shown {o:.1} ms after its event, which came {d:.1} ms after its colour was set"
        );
    }
    // The timing itself is judged on the flashes stamped promptly, where
    // the event is when the colour reached the screen to within a few ms
    // (a wide bracket could hide a clock error in its width). Chromium's
    // compositor is itself a program on this 2-core box: under load a
    // frame can reach the screen a few ms late, which is not a clock
    // error. So all but two of them within one frame (+3 ms of measured
    // render latency), and their mean at about half a frame: a systematic
    // clock error moves the mean whatever the sampling phase.
    // (`CheckReport::flash_reference_offsets_ms`, the rule `lab-setup
    // check` uses; each of them is already past its lower bound above.)
    let prompt = report.flash_reference_offsets_ms();
    assert!(
        prompt.len() >= MIN_REFERENCE_FLASHES,
        "only {} flashes stamped within {NARROW_BRACKET_MS} ms of their colour: {delay:.1?}",
        prompt.len()
    );
    let within = prompt.iter().filter(|&&o| o <= frame_ms + 3.0).count();
    println!(
        "video: {within} of {} promptly stamped flashes within one frame",
        prompt.len()
    );
    assert!(
        within + 2 >= prompt.len(),
        "only {within} of {} flashes within one frame: {video:.1?}",
        prompt.len()
    );
    let mean_video = prompt.iter().sum::<f64>() / prompt.len() as f64;
    println!(
        "video: mean event->frame {mean_video:.1} ms, expected about half a frame ({:.1} ms)",
        frame_ms / 2.0
    );
    assert!(
        (mean_video - frame_ms / 2.0).abs() <= 8.0,
        "mean video offset {mean_video:.1} ms"
    );
    // Beeps: every one within 20 ms. The microphone is timed by its sample
    // count (`recorder::audio_clock`): pulsesrc's own stamps, which under
    // load came in bursts (one beep once landed 59.5 ms early), only steer it.
    let beeps_within = audio.iter().filter(|o| o.abs() <= 20.0).count();
    println!(
        "audio: {beeps_within} of {} beeps within 20 ms",
        audio.len()
    );
    assert_eq!(
        beeps_within,
        audio.len(),
        "beeps beyond 20 ms of their scheduled time: {audio:.1?}"
    );
    // And no Opus packet overlaps the one before (a decoder may drop it),
    // after the first: the encoder's priming packet (pre-skip) is stamped
    // at the input's start and always overlaps the second.
    let mut with_audio = 0;
    for s in m.segments.iter().filter(|s| s.group == "main") {
        let o = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "a:0",
                "-show_entries",
                "packet=pts_time,duration_time:packet_side_data=discard_padding",
                "-of",
                "csv=p=0",
            ])
            .arg(bundle_dir.join(&s.file))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // pts, duration and, on the stream's last packet, the samples the
        // encoder padded it with (Matroska's DiscardPadding).
        let mut discard = 0usize;
        let packets: Vec<(f64, f64)> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split(',');
                let p = f.next()?.parse().ok()?;
                let d = f.next()?.parse().ok()?;
                discard += f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                Some((p, d))
            })
            .collect();
        // The sink's monitor gives nothing until Chromium first plays (about
        // 1.8 s in): a first segment cut before that has no audio.
        if packets.is_empty() {
            assert!(
                s.end_ns.is_some_and(|e| e <= 3_000_000_000),
                "{}: no audio packet (segment ends at {:?} ns)",
                s.file,
                s.end_ns
            );
            continue;
        }
        with_audio += 1;
        // Matroska keeps milliseconds: two packets 20 ms apart can read
        // 19 ms apart once rounded, which is not an overlap.
        let overlaps = packets[1..]
            .windows(2)
            .filter(|w| w[1].0 < w[0].0 + w[0].1 - 0.0015)
            .count();
        assert_eq!(
            overlaps, 0,
            "{}: {overlaps} audio packets overlap the one before",
            s.file
        );
        // And decoded, every packet gives its 20 ms (960 samples); only the
        // encoder's pre-skip (under one packet) is taken off the first and
        // the padding off the last.
        let pcm = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(bundle_dir.join(&s.file))
            .args(["-map", "0:a:0", "-f", "s16le", "-ac", "1", "-"])
            .output()
            .unwrap();
        assert!(
            pcm.status.success(),
            "{}",
            String::from_utf8_lossy(&pcm.stderr)
        );
        let decoded = pcm.stdout.len() / 2;
        let sent = (packets.len() * 960).saturating_sub(discard);
        assert!(
            decoded <= sent && sent - decoded < 960,
            "{}: {decoded} samples decoded from {} packets: a packet was dropped",
            s.file,
            packets.len()
        );
    }
    assert!(with_audio > 0, "no segment has audio");
    assert!(
        finite_median(audio).abs() <= 10.0,
        "median beep onset {:.1} ms",
        finite_median(audio)
    );
    let av = finite_median(audio) - (finite_median(&prompt) - frame_ms / 2.0);
    println!("A/V offset {av:+.1} ms");
    assert!(av.abs() <= 20.0, "audio/video offset {av:.1} ms");
}
