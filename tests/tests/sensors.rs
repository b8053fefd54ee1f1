//! Lab Streaming Layer streams recorded by the real recorder (`--lsl`):
//! a real liblsl outlet in this process streams a 128 Hz signal and a marker
//! stream while `lab-recorder record --test-sources` records; the bundle's
//! sensor file must hold every sample pulled, at its true session time, the
//! markers must be events, and an outlet that goes away and comes back must
//! leave a gap while the recording completes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lab_lsl::{Channel, Format, Lsl};
use lab_model::analysis::{AnalysisDoc, CandidateList};
use lab_model::bundle::sensors::{SampleValues, SensorLine, read_sensor_file};
use lab_model::{Bundle, EventSource, SessionStatus};
use lab_tests::scripted::models;
use lab_tests::{RecorderProcess, temp_dir};

/// Starts `lab-recorder record --test-sources` for participant `code` with
/// liblsl from the installed models; `args` adds `--lsl`, `--duration`, ...
fn record(dir: &Path, code: &str, args: &[&str]) -> RecorderProcess {
    let models = models();
    let consent = format!("C-{code}");
    let mut all = vec![
        "--test-sources",
        "--participant",
        code,
        "--consent",
        &consent,
        "--models",
        models.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    RecorderProcess::spawn(&all, &[], &dir.join("sessions")).unwrap()
}

/// What the test sent: (stamp in LSL's clock, value).
type Sent = Vec<(f64, f64)>;

/// Streams skin conductance at 128 Hz until `stop`: a tonic level near
/// 2 µS, and a 0.2 µS response rising over 1 s from the LSL time `scr`
/// holds once set (f64 bits; 0 is none). Between `pause.0` and `pause.1`
/// seconds after its start the outlet is gone (a sensor switched off), then
/// a new one with the same source id comes back.
fn stream_eda(
    lsl: Arc<Lsl>,
    name: String,
    pause: (f64, f64),
    scr: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Sent> {
    std::thread::spawn(move || {
        let channels = [Channel {
            label: "EDA".into(),
            unit: "microsiemens".into(),
            kind: "EDA".into(),
        }];
        let open = || {
            lsl.outlet(&name, "EDA", &channels, 128.0, Format::Double64, &name)
                .unwrap()
        };
        let mut outlet = Some(open());
        let mut sent = Vec::new();
        let t0 = lsl.local_clock();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let since = lsl.local_clock() - t0;
            if since >= pause.0 && since < pause.1 {
                outlet = None;
            } else if outlet.is_none() {
                outlet = Some(open());
            }
            let due = t0 + i as f64 / 128.0;
            if lsl.local_clock() < due {
                std::thread::sleep(Duration::from_secs_f64((due - lsl.local_clock()).max(0.0)));
            }
            if let Some(o) = outlet.as_mut() {
                let onset = f64::from_bits(scr.load(Ordering::SeqCst));
                let d = due - onset;
                let response = if onset > 0.0 && d > 0.0 {
                    0.2 * if d < 1.0 { d } else { (-(d - 1.0) / 4.0).exp() }
                } else {
                    0.0
                };
                let v = 2.0 + 0.002 * (due - t0) + 0.003 * (i as f64 * 0.05).sin() + response;
                o.push(&[v], due).unwrap();
                sent.push((due, v));
            }
            i += 1;
        }
        sent
    })
}

#[test]
fn lsl_streams_land_on_the_session_clock_with_markers_and_a_gap() {
    let models = models();
    let lsl = lab_tests::scripted::lsl();
    let dir = temp_dir("sensors");
    let eda_name = format!("lab-e2e-eda-{}", std::process::id());
    let marker_name = format!("lab-e2e-markers-{}", std::process::id());
    let mut markers = lsl
        .outlet(
            &marker_name,
            "Markers",
            &[Channel::default()],
            0.0,
            Format::String,
            &marker_name,
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let scr = Arc::new(AtomicU64::new(0));
    let eda = stream_eda(
        lsl.clone(),
        eda_name.clone(),
        (7.0, 10.0),
        scr.clone(),
        stop.clone(),
    );

    let mut rec = record(
        &dir,
        "P16",
        &[
            "--duration",
            "14",
            "--lsl",
            &eda_name,
            "--lsl",
            &marker_name,
        ],
    );
    let (bundle_dir, url) = rec.wait_started().unwrap();
    assert!(
        markers.wait_for_consumers(Duration::from_secs(10)),
        "the recorder did not connect to the marker stream"
    );
    let mut marker_times = Vec::new();
    for text in ["задание 1: начало", "stimulus A"] {
        std::thread::sleep(Duration::from_millis(700));
        let t = lsl.local_clock();
        markers.push_strings(&[text], t).unwrap();
        marker_times.push((text, t));
    }
    // A validation error, and 1.5 s later the skin answers.
    let (status, body) = lab_tests::http(
        "POST",
        &format!("{url}/api/events"),
        r##"{"source":"browser","kind":"validation_error","data":{"selector":"#snils","message":"Неверный СНИЛС"}}"##.as_bytes(),
    )
    .unwrap();
    assert!(status == 201 || status == 202, "{status} {body}");
    let error_at = lsl.local_clock();
    scr.store((error_at + 1.5).to_bits(), Ordering::SeqCst);
    let (ok, _, err) = rec.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    let sent = eda.join().unwrap();
    assert!(ok, "{err}");

    let bundle = Bundle::new(&bundle_dir);
    let manifest = bundle.read_manifest().unwrap();
    assert_eq!(manifest.status, SessionStatus::Complete);
    let zero_ns = manifest.clock.session_zero_monotonic_ns as i64;
    assert_eq!(manifest.sensors.len(), 2, "{:?}", manifest.sensors);
    let track = manifest
        .sensors
        .iter()
        .find(|s| s.stream.name == eda_name)
        .unwrap();
    assert_eq!(track.stream.channels[0].unit, "microsiemens");
    assert_eq!(track.stream.nominal_srate, 128.0);
    let offset = track.clock_offset_s.unwrap();
    assert!(
        offset.abs() < 0.001,
        "one machine, one clock: offset {offset}"
    );

    // Every sample pulled, at its true session time, with its value.
    let (header, lines) = read_sensor_file(&bundle_dir.join(&track.stream.file)).unwrap();
    assert_eq!(header.session_zero_monotonic_ns, zero_ns);
    let mut got = Vec::new();
    let mut gaps = Vec::new();
    for l in lines {
        match l {
            SensorLine::Samples {
                t_ns,
                lsl_t,
                v: SampleValues::Numbers(v),
            } => {
                for ((t, s), row) in t_ns.iter().zip(&lsl_t).zip(&v) {
                    got.push((*t, *s, row[0].unwrap()));
                }
            }
            SensorLine::Gap(g) => gaps.push(g),
            _ => {}
        }
    }
    assert_eq!(got.len() as u64, track.samples);
    let mut worst_ns = 0i64;
    for (t_ns, stamp, value) in &got {
        let (_, v) = sent
            .iter()
            .find(|(s, _)| s == stamp)
            .unwrap_or_else(|| panic!("a sample at {stamp} that was never sent"));
        assert_eq!(value, v);
        let truth = (stamp * 1e9).round() as i64 - zero_ns;
        worst_ns = worst_ns.max((t_ns - truth).abs());
    }
    println!(
        "sensors: {} of {} samples sent, worst time error {:.3} ms, offset {:.3} ms, gaps {:?}",
        got.len(),
        sent.len(),
        worst_ns as f64 / 1e6,
        offset * 1e3,
        gaps
    );
    assert!(worst_ns <= 5_000_000, "worst time error {worst_ns} ns");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    // Nothing lost while the stream ran: before the gap and after it, every
    // sample sent between the first and the last received is there (what a
    // new outlet sends before the inlet has found it again is not).
    let (before, after): (Vec<&(i64, f64, f64)>, Vec<_>) =
        got.iter().partition(|g| g.0 < gaps[0].end_ns);
    for run in [before, after] {
        assert!(run.len() > 128, "a run of {} samples", run.len());
        let (first, last) = (run[0].1, run[run.len() - 1].1);
        let expected = sent
            .iter()
            .filter(|(s, _)| *s >= first && *s <= last)
            .count();
        assert_eq!(run.len(), expected, "samples from {first} to {last}");
    }
    let gap_s = (gaps[0].end_ns - gaps[0].start_ns) as f64 / 1e9;
    assert!(
        (2.5..=5.0).contains(&gap_s),
        "a 3 s pause gave a gap of {gap_s} s"
    );
    assert_eq!(track.gaps, gaps);

    // Markers are events at their own times.
    let (events, _) = bundle.read_events().unwrap();
    for (text, t) in marker_times {
        let e = events
            .iter()
            .find(|e| e.source == EventSource::Sensor && e.data["marker"] == text)
            .unwrap_or_else(|| panic!("marker {text:?} is not an event"));
        assert_eq!(e.kind, "lsl_marker");
        let truth = (t * 1e9).round() as i64 - zero_ns;
        assert!(
            (e.t_ns - truth).abs() <= 5_000_000,
            "{text}: {} vs {truth}",
            e.t_ns
        );
    }
    for kind in [
        "system.sensor_found",
        "system.sensor_lost",
        "system.sensor_back",
    ] {
        assert!(events.iter().any(|e| e.kind == kind), "no {kind} event");
    }

    // The analysis reads the skin's answer as arousal after the error.
    let out = std::process::Command::new(lab_tests::bin("lab-analyze"))
        .arg("--models")
        .arg(&models)
        .arg("run")
        .arg(&bundle_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let candidates = CandidateList::read(&bundle_dir).unwrap();
    let arousal: Vec<_> = candidates
        .candidates
        .iter()
        .filter(|c| c.detector == "arousal")
        .collect();
    let error_ns = (error_at * 1e9).round() as i64 - zero_ns;
    println!(
        "sensors: arousal candidates {:?}",
        arousal
            .iter()
            .map(|c| (c.start_ns, &c.evidence.note))
            .collect::<Vec<_>>()
    );
    assert_eq!(arousal.len(), 1, "{:?}", candidates.candidates);
    assert!(
        (arousal[0].start_ns - error_ns).abs() < 50_000_000,
        "{} vs {error_ns}",
        arousal[0].start_ns
    );
    assert!(
        arousal[0]
            .evidence
            .note
            .contains("кожно-гальваническая реакция"),
        "{}",
        arousal[0].evidence.note
    );
}

#[test]
fn a_killed_recorder_keeps_the_samples_it_pulled_and_recover_lists_them() {
    let lsl = lab_tests::scripted::lsl();
    let dir = temp_dir("sensors-kill");
    let name = format!("lab-e2e-kill-{}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let eda = stream_eda(
        lsl.clone(),
        name.clone(),
        (f64::MAX, f64::MAX),
        Arc::new(AtomicU64::new(0)),
        stop.clone(),
    );
    let mut rec = record(&dir, "P17", &["--lsl", &name]);
    let (bundle_dir, _) = rec.wait_started().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    rec.signal(libc::SIGKILL);
    let killed_at = lsl.local_clock();
    let _ = rec.wait();
    stop.store(true, Ordering::SeqCst);
    eda.join().unwrap();

    let out = std::process::Command::new(lab_tests::bin("lab-recorder"))
        .arg("recover")
        .arg(&bundle_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Bundle::new(&bundle_dir).read_manifest().unwrap();
    assert_eq!(manifest.status, SessionStatus::Interrupted);
    assert_eq!(manifest.sensors.len(), 1, "{:?}", manifest.sensors);
    let track = &manifest.sensors[0];
    let zero_ns = manifest.clock.session_zero_monotonic_ns as i64;
    let kill_ns = (killed_at * 1e9).round() as i64 - zero_ns;
    let last = track.last_ns.expect("samples were written");
    let lost_s = (kill_ns - last) as f64 / 1e9;
    println!(
        "sensors: kill -9 lost {lost_s:.2} s of samples ({} kept)",
        track.samples
    );
    assert!(lost_s <= 2.0, "lost {lost_s} s");
    assert!(track.samples > 128 * 2, "{} samples", track.samples);
}
