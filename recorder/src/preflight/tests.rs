//! The pre-flight on GStreamer's test sources (no display, camera or sound
//! server needed), and the sync self-test against stand-in `lab-setup`
//! scripts that print what the real one prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab_model::station::{CameraSource, MicrophoneSource, ScreenSource};
use lab_model::{ChannelRole, StationConfig};

use super::*;

/// Polls `f` every 20 ms until it gives a value or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_jpeg(b: &[u8]) -> bool {
    b.len() > 4 && b.starts_with(&[0xFF, 0xD8]) && b.ends_with(&[0xFF, 0xD9])
}

/// The default station (720p screen and camera, one mono microphone).
fn station() -> StationConfig {
    StationConfig::default_station()
}

#[test]
fn snapshots_arrive_within_3_s_as_small_jpegs_and_refresh() {
    let started = Instant::now();
    let pf = Preflight::start(&station(), true).unwrap();
    let mut firsts = Vec::new();
    for track in ["screen", "camera"] {
        let first = wait_for(Duration::from_secs(3), || pf.snapshot(track))
            .unwrap_or_else(|| panic!("no {track} snapshot within 3 s: {:?}", pf.problems()));
        eprintln!(
            "{track}: first snapshot {} ms after start ({} ms on the pre-flight clock), {} bytes",
            started.elapsed().as_millis(),
            first.at_ms,
            first.jpeg.len()
        );
        firsts.push((track, first));
    }
    for (track, first) in firsts {
        assert!(is_jpeg(&first.jpeg), "{track} is not a JPEG");
        assert_eq!((first.width, first.height), (640, 360), "{track}");
        // At 2 fps the next one is due within 0.5 s; allow for a loaded machine.
        let next = wait_for(Duration::from_secs(2), || {
            pf.snapshot(track).filter(|s| s.at_ms > first.at_ms)
        })
        .unwrap_or_else(|| panic!("{track} snapshot did not refresh"));
        assert!(is_jpeg(&next.jpeg));
        assert!(next.at_ms <= pf.elapsed_ms());
    }
    assert!(pf.snapshot("mic0").is_none() && pf.snapshot("nope").is_none());
    assert_eq!(pf.problems(), []);
}

#[test]
fn a_tone_reads_well_above_a_silent_microphone_which_is_reported() {
    let mut s = station();
    s.camera = None;
    s.microphones[0].channels = 2;
    s.microphones[0].roles = vec![ChannelRole::Participant, ChannelRole::Moderator];
    s.microphones.push(s.microphones[0].clone());
    let options = PreflightOptions {
        test_sources: true,
        silent_test_mics: vec!["mic1".into()],
    };
    let pf = Preflight::start_with(&s, &options).unwrap();
    // Several level messages per microphone, so the meters have settled.
    let levels = wait_for(Duration::from_secs(3), || {
        let l = pf.levels();
        (l.len() == 4 && l.iter().all(|l| l.at_ms >= 300)).then_some(l)
    })
    .unwrap_or_else(|| panic!("no levels for 2 × 2 channels: {:?}", pf.levels()));
    for l in &levels {
        let want_role = [ChannelRole::Participant, ChannelRole::Moderator][l.channel as usize];
        assert_eq!(l.role, want_role, "{l:?}");
        match l.track.as_str() {
            "mic0" => assert!(l.rms_db > -30.0 && l.peak_db > -30.0, "{l:?}"),
            "mic1" => assert!(l.rms_db < -60.0 && l.peak_db < -60.0, "{l:?}"),
            other => panic!("unexpected track {other}"),
        }
        assert!(l.rms_db >= FLOOR_DB);
    }
    // After 3 s of digital silence both channels of mic1 are named.
    let silent = wait_for(Duration::from_secs(6), || {
        let p = pf.problems();
        (p.len() == 2).then_some(p)
    })
    .unwrap_or_else(|| panic!("silence not reported: {:?}", pf.problems()));
    for (p, channel) in silent.iter().zip([0, 1]) {
        assert_eq!(p.track, "mic1");
        assert_eq!(p.kind, ProblemKind::Silent);
        assert_eq!(p.channel, Some(channel));
        assert!(
            p.message_ru.starts_with(&format!(
                "Микрофон 2 (тестовый сигнал), канал {}",
                channel + 1
            )),
            "{}",
            p.message_ru
        );
    }
}

/// A station with a test screen and microphone and a V4L2 camera at `device`.
fn station_with_camera(device: &str) -> StationConfig {
    let mut s = station();
    s.screen.source = ScreenSource::Test;
    s.microphones[0].source = MicrophoneSource::Test;
    let c = s.camera.as_mut().unwrap();
    c.source = CameraSource::V4l2;
    c.device = device.into();
    s
}

#[test]
fn a_missing_camera_is_named_in_russian_while_the_others_preview() {
    let pf = Preflight::start(&station_with_camera("/dev/video99"), false).unwrap();
    let problems = pf.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(
        (p.track.as_str(), p.kind),
        ("camera", ProblemKind::NotFound)
    );
    assert_eq!(p.device, "/dev/video99");
    assert!(
        p.message_ru.starts_with("Камера /dev/video99 не найдена"),
        "{}",
        p.message_ru
    );
    assert!(p.message_en.starts_with("Camera /dev/video99 not found"));
    let screen = wait_for(Duration::from_secs(3), || pf.snapshot("screen"));
    assert!(screen.is_some_and(|s| is_jpeg(&s.jpeg)));
    assert!(wait_for(Duration::from_secs(3), || pf.levels().first().cloned()).is_some());
    assert!(pf.snapshot("camera").is_none());
    let tracks: Vec<_> = pf.devices().into_iter().map(|d| d.track).collect();
    assert_eq!(tracks, ["screen", "camera", "mic0"]);
    // Still the only problem once the others have run a while.
    assert_eq!(pf.problems().len(), 1, "{:?}", pf.problems());
}

#[test]
fn a_camera_that_fails_in_gstreamer_is_reported_from_the_bus() {
    // /dev/null exists, so only v4l2src itself can find it is no camera.
    let pf = Preflight::start(&station_with_camera("/dev/null"), false).unwrap();
    let p = wait_for(Duration::from_secs(3), || {
        pf.problems().into_iter().find(|p| p.track == "camera")
    })
    .expect("the camera is reported");
    assert_ne!(p.kind, ProblemKind::NoData, "{p:?}");
    assert!(
        p.message_ru.starts_with("Камера /dev/null "),
        "{}",
        p.message_ru
    );
    assert!(!p.detail.is_empty());
    assert!(wait_for(Duration::from_secs(3), || pf.snapshot("screen")).is_some());
}

#[test]
fn stop_returns_within_2_s_and_drop_stops_too() {
    let pf = Preflight::start(&station(), true).unwrap();
    assert!(wait_for(Duration::from_secs(3), || pf.snapshot("camera")).is_some());
    let t = Instant::now();
    pf.stop();
    let took = t.elapsed();
    eprintln!("stop took {} ms", took.as_millis());
    assert!(took < Duration::from_secs(2), "stop took {took:?}");

    let pf = Preflight::start(&station(), true).unwrap();
    assert!(wait_for(Duration::from_secs(3), || pf.snapshot("screen")).is_some());
    let t = Instant::now();
    drop(pf);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn preflight_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Preflight>();
}

// --- The sync self-test against stand-in `lab-setup` scripts. ---

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("preflight-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An executable shell script standing in for `lab-setup`.
fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("lab-setup");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn figures() -> SyncFigures {
    let flashes = [16.0, f64::NAN, 20.5, 18.0];
    let beeps = [40.0, 42.0];
    SyncFigures {
        version: SYNC_FIGURES_VERSION,
        passed: false,
        problems: vec!["camera: 3 of 150 frames dropped (over 1 %)".into()],
        bundle: "/tmp/lab-check-1/x".into(),
        frames: vec![TrackFrameFigures {
            track: "camera".into(),
            recorded: 147,
            expected: 150,
            dropped: 3,
        }],
        audio_seconds: 5.0,
        frame_ms: 33.3,
        clock_uncertainty_ms: Some(0.4),
        event_to_frame_ms: OffsetStats::from_offsets(&flashes),
        event_to_audio_ms: OffsetStats::from_offsets(&beeps),
        audio_video_offset_ms: Some(40.0),
        flash_offsets_ms: offsets_or_none(&flashes),
        beep_offsets_ms: offsets_or_none(&beeps),
    }
}

#[test]
fn offset_stats_skip_events_not_found() {
    let s = OffsetStats::from_offsets(&[16.0, f64::NAN, 20.5, 18.0]).unwrap();
    assert_eq!((s.min, s.median, s.max), (16.0, 18.0, 20.5));
    assert_eq!((s.measured, s.missed), (3, 1));
    assert_eq!(OffsetStats::from_offsets(&[f64::NAN]), None);
    assert_eq!(OffsetStats::from_offsets(&[]), None);
    assert_eq!(offsets_or_none(&[1.0, f64::NAN]), [Some(1.0), None]);
}

#[tokio::test]
async fn figures_are_read_even_when_the_check_fails_and_the_arguments_are_right() {
    let dir = temp_dir("sync-figures");
    let json = serde_json::to_string(&figures()).unwrap();
    let args = dir.join("args");
    let lab_setup = script(
        &dir,
        &format!(
            "echo \"$@\" > '{}'\ncat <<'EOF'\n{json}\nEOF\nexit 1",
            args.display()
        ),
    );
    let station = dir.join("station.toml");
    let got = sync_self_test(&lab_setup, Some(&station), false)
        .await
        .unwrap();
    assert_eq!(got, figures());
    assert_eq!(got.flash_offsets_ms[1], None, "NaN travels as null");
    let args = std::fs::read_to_string(args).unwrap();
    assert_eq!(
        args.trim(),
        format!("check --station {} --seconds 5 --json", station.display())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_check_that_cannot_record_says_why() {
    let dir = temp_dir("sync-fails");
    let lab_setup = script(
        &dir,
        "echo 'lab-setup: configured devices are missing:\n  camera: /dev/video0 is configured but not present' >&2\nexit 1",
    );
    let err = sync_self_test(&lab_setup, None, false).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PreflightError::SyncFailed { .. }), "{text}");
    assert!(
        text.contains("/dev/video0 is configured but not present"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn figures_of_another_version_or_none_are_errors() {
    let dir = temp_dir("sync-version");
    let mut v2 = serde_json::to_value(figures()).unwrap();
    v2["version"] = 2.into();
    let lab_setup = script(&dir, &format!("echo '{v2}'"));
    let err = sync_self_test(&lab_setup, Some(Path::new("s.toml")), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PreflightError::SyncVersion { found: 2, .. }),
        "{err}"
    );
    let lab_setup = script(&dir, "echo 'Station check passed.'");
    let err = sync_self_test(&lab_setup, Some(Path::new("s.toml")), false)
        .await
        .unwrap_err();
    assert!(matches!(err, PreflightError::SyncOutput(_)), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_check_that_hangs_is_interrupted_at_the_timeout() {
    let dir = temp_dir("sync-hangs");
    let lab_setup = script(&dir, "exec sleep 30");
    let t = Instant::now();
    let err = sync_test::run_check(&lab_setup, Path::new("s.toml"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, PreflightError::SyncTimeout { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn test_sources_have_no_sync_to_measure() {
    let err = sync_self_test(Path::new("/nonexistent/lab-setup"), None, true)
        .await
        .unwrap_err();
    assert!(matches!(err, PreflightError::SyncNeedsRealStation));
    assert!(err.to_string().contains("Chromium"));
}

#[tokio::test]
async fn a_missing_lab_setup_is_named() {
    let err = sync_self_test(Path::new("/nonexistent/lab-setup"), None, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/lab-setup"), "{err}");
}
