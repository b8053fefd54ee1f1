//! XDF files (LabRecorder's format): `lab-analyze xdf-info` must give the
//! stamps pyxdf gives (pyxdf from PyPI, run here) on the XDF project's
//! reference files and on a file with drifting, jittered, reset clocks; and
//! a file recorded beside a real session (this test plays LabRecorder:
//! real liblsl inlets on the recorder's `lab-session` stream and on a
//! sensor) must import onto the session clock where the recorder's own
//! live recording of the same stream put it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lab_lsl::{Channel, Format};
use lab_model::bundle::sensors::{SampleValues, SensorLine, read_sensor_file};
use lab_model::{Bundle, EventSource};
use lab_tests::scripted::models;
use lab_tests::xdf_writer::XdfWriter;
use lab_tests::{RecorderProcess, bin, temp_dir};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Python with pyxdf: `.venv-test`, made from PyPI on first use.
fn pyxdf() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = repo().join(".venv-test");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pyxdf, numpy"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success();
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "pyxdf", "numpy"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pip install pyxdf numpy failed");
    }
    python
}

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Stream id → synchronised stamps.
fn stamps(v: &Value) -> Vec<(u64, String, Vec<f64>)> {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["name"].as_str().unwrap().to_string(),
                s["time_stamps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_f64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// Compares both readers on `file`; returns ours.
fn same_as_pyxdf(file: &Path) -> Vec<(u64, String, Vec<f64>)> {
    let ours = stamps(&json_of(
        Command::new(bin("lab-analyze"))
            .args(["xdf-info", "--json"])
            .arg(file),
    ));
    let theirs = stamps(&json_of(
        Command::new(pyxdf())
            .arg(repo().join("tests/fixtures/xdf/pyxdf_stamps.py"))
            .arg(file),
    ));
    assert_eq!(ours.len(), theirs.len(), "{}: stream count", file.display());
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!((o.0, &o.1), (t.0, &t.1), "{}", file.display());
        assert_eq!(o.2.len(), t.2.len(), "{} stream {}", file.display(), o.1);
        let worst =
            o.2.iter()
                .zip(&t.2)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
        println!(
            "xdf: {} «{}»: {} stamps, max |lab-analyze - pyxdf| = {:.3} us",
            file.file_name().unwrap().to_string_lossy(),
            o.1,
            o.2.len(),
            worst * 1e6
        );
        assert!(
            worst < 1e-3,
            "{} «{}»: {worst} s from pyxdf",
            file.display(),
            o.1
        );
    }
    ours
}

/// A deterministic pseudo-random number in [-1, 1).
fn noise(i: u64) -> f64 {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// Two senders: skin conductance at 128 Hz whose clock runs 20 ppm slow
/// and 1000 s behind, stamps jittered ±2 ms, a 6 s dropout (pyxdf's
/// dejitter keeps a break only over max(1 s, 500 samples)), offsets
/// measured every 5 s with ±0.2 ms noise and one 30 ms outlier; and a
/// marker stream whose sender restarts (its clock resets) half-way.
/// Returns the file and each stream's true times (the recording machine's
/// clock).
fn field_file(dir: &Path) -> (PathBuf, Vec<f64>, Vec<f64>) {
    let mut w = XdfWriter::new();
    w.header(
        1,
        "Shimmer EDA",
        "EDA",
        "double64",
        128.0,
        &[("EDA", "microsiemens")],
    );
    w.header(2, "Стимулы", "Markers", "string", 0.0, &[("marker", "")]);
    let off = |s: f64| 1000.0 + 2e-5 * s;
    let sender = |t: f64| (t - 1000.0) / (1.0 + 2e-5);
    let (t0, secs) = (5000.0, 120.0);
    let truth: Vec<f64> = (0..(secs * 128.0) as u64)
        .map(|i| t0 + i as f64 / 128.0)
        .filter(|t| !(t0 + 60.0..t0 + 66.0).contains(t))
        .collect();
    for (k, chunk) in truth.chunks(256).enumerate() {
        let stamps: Vec<f64> = chunk
            .iter()
            .enumerate()
            .map(|(j, t)| sender(*t) + 0.002 * noise((k * 256 + j) as u64))
            .collect();
        let rows: Vec<Vec<f64>> = chunk.iter().map(|t| vec![2.0 + (t - t0) / 100.0]).collect();
        w.samples(1, &stamps, &rows);
        w.boundary();
    }
    for k in 0..=(secs / 5.0) as u64 {
        let s = sender(t0 + 5.0 * k as f64);
        let outlier = if k == 9 { 0.03 } else { 0.0 };
        w.clock_offset(1, s, off(s) + 0.0002 * noise(1000 + k) + outlier);
    }
    // Markers every 7 s; the sender's clock is 250 s behind, then restarts
    // at 0 at t0 + 61 s (its offset becomes t0 + 61).
    let marker_off = |t: f64| if t < t0 + 61.0 { 250.0 } else { t0 + 61.0 };
    let marks: Vec<f64> = (0..17).map(|k| t0 + 1.5 + 7.0 * k as f64).collect();
    let names: Vec<String> = (0..marks.len()).map(|k| format!("стимул {k}")).collect();
    for (t, n) in marks.iter().zip(&names) {
        w.strings(2, &[t - marker_off(*t)], &[n]);
    }
    for k in 0..=(secs / 4.0) as u64 {
        let t = t0 + 4.0 * k as f64;
        w.clock_offset(2, t - marker_off(t), marker_off(t));
    }
    w.footer(1, truth.len());
    w.footer(2, marks.len());
    let path = dir.join("field.xdf");
    w.write(&path).unwrap();
    (path, truth, marks)
}

#[test]
fn xdf_stamps_match_pyxdf_on_reference_and_field_files() {
    let fixtures = repo().join("tests/fixtures/xdf");
    for f in ["minimal.xdf", "empty_streams.xdf", "clock_resets.xdf"] {
        same_as_pyxdf(&fixtures.join(f));
    }
    let dir = temp_dir("xdf-field");
    let (path, truth, marks) = field_file(&dir);
    let ours = same_as_pyxdf(&path);
    // Not only the same as pyxdf: the true times.
    for ((_, name, got), want) in ours.iter().zip([&truth, &marks]) {
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "xdf: field «{name}»: max error against the true times {:.3} ms",
            worst * 1e3
        );
        assert!(worst < 1e-3, "{name}: {worst} s from the true times");
    }

    // Damage: a cut-off file keeps what came before the cut; not XDF at all
    // is a clear error.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.xdf");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = Command::new(bin("lab-analyze"))
        .args(["xdf-info"])
        .arg(&cut)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("damaged chunk(s) skipped"), "{text}");
    let bad = dir.join("bad.xdf");
    std::fs::write(&bad, b"<html>not xdf</html>").unwrap();
    let out = Command::new(bin("lab-analyze"))
        .args(["xdf-info"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an XDF file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Session time and LSL stamp of every sample in a sensor file.
fn samples_of(path: &Path) -> Vec<(i64, f64)> {
    let (_, lines) = read_sensor_file(path).unwrap();
    lines
        .into_iter()
        .filter_map(|l| match l {
            SensorLine::Samples { t_ns, lsl_t, v } => {
                assert!(matches!(v, SampleValues::Numbers(_)));
                Some(t_ns.into_iter().zip(lsl_t).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_labrecorder_file_made_beside_a_session_imports_on_its_clock() {
    let models = models();
    let lsl = lab_tests::scripted::lsl();
    let dir = temp_dir("xdf-import");
    let eda_name = format!("lab-xdf-eda-{}", std::process::id());
    let stim_name = format!("lab-xdf-stim-{}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let eda = {
        let (lsl, name, stop) = (lsl.clone(), eda_name.clone(), stop.clone());
        std::thread::spawn(move || {
            let ch = [Channel {
                label: "EDA".into(),
                unit: "microsiemens".into(),
                kind: "EDA".into(),
            }];
            let mut o = lsl
                .outlet(&name, "EDA", &ch, 128.0, Format::Double64, &name)
                .unwrap();
            let t0 = lsl.local_clock();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let due = t0 + i as f64 / 128.0;
                let wait = due - lsl.local_clock();
                if wait > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(wait));
                }
                o.push(&[2.0 + (i as f64 * 0.01).sin()], due).unwrap();
                i += 1;
            }
        })
    };
    let mut stim = lsl
        .outlet(
            &stim_name,
            "Markers",
            &[Channel::default()],
            0.0,
            Format::String,
            &stim_name,
        )
        .unwrap();
    let consent = "C-P17";
    let mut rec = RecorderProcess::spawn(
        &[
            "--test-sources",
            "--participant",
            "P17",
            "--consent",
            consent,
            "--models",
            models.to_str().unwrap(),
            "--duration",
            "10",
            "--lsl-announce",
            "--lsl",
            &eda_name,
        ],
        &[],
        &dir.join("sessions"),
    )
    .unwrap();
    let (bundle_dir, _url) = rec.wait_started().unwrap();

    // This test is LabRecorder: it records the session stream, the sensor
    // and the stimulus markers, with clock offsets, into an XDF file.
    let open = |name: &str| {
        let found = lsl
            .resolve_by("name", name, Duration::from_secs(10))
            .unwrap();
        assert!(!found.is_empty(), "no LSL stream {name}");
        let inlet = found[0].open(360).unwrap();
        inlet.open_stream(Duration::from_secs(5)).unwrap();
        inlet
    };
    let mut session = open("lab-session");
    let mut sensor = open(&eda_name);
    let mut markers = open(&stim_name);
    assert!(stim.wait_for_consumers(Duration::from_secs(5)));
    let mut w = XdfWriter::new();
    w.header(
        1,
        &eda_name,
        "EDA",
        "double64",
        128.0,
        &[("EDA", "microsiemens")],
    );
    w.header(
        2,
        "lab-session",
        "Markers",
        "string",
        0.0,
        &[("marker", "")],
    );
    w.header(3, &stim_name, "Markers", "string", 0.0, &[("marker", "")]);
    let mut sent_markers = Vec::new();
    let mut counts = [0usize; 3];
    let mut last_offset = std::time::Instant::now() - Duration::from_secs(10);
    let started = std::time::Instant::now();
    let mut recorder_done = None;
    loop {
        if last_offset.elapsed() >= Duration::from_secs(2) {
            last_offset = std::time::Instant::now();
            for (id, inlet) in [(1, &sensor), (2, &session), (3, &markers)] {
                let c = inlet.time_correction(Duration::from_secs(2)).unwrap();
                w.clock_offset(id, lsl.local_clock() - c.offset, c.offset);
            }
        }
        if sent_markers.len() < 2
            && started.elapsed() > Duration::from_secs(3 + 3 * sent_markers.len() as u64)
        {
            let t = lsl.local_clock();
            let text = format!("стимул {}", sent_markers.len() + 1);
            stim.push_strings(&[&text], t).unwrap();
            sent_markers.push((text, t));
        }
        let c = sensor
            .pull_numeric(512, Duration::from_millis(100))
            .unwrap();
        if !c.stamps.is_empty() {
            let rows: Vec<Vec<f64>> = c.values.iter().map(|v| vec![*v]).collect();
            w.samples(1, &c.stamps, &rows);
            counts[0] += c.stamps.len();
        }
        for (id, inlet) in [(2, &mut session), (3, &mut markers)] {
            let c = inlet.pull_strings(16, Duration::ZERO).unwrap();
            if !c.stamps.is_empty() {
                let v: Vec<&str> = c.values.iter().map(String::as_str).collect();
                w.strings(id, &c.stamps, &v);
                counts[id as usize - 1] += c.stamps.len();
            }
        }
        w.boundary();
        // Go on 1.5 s after the recorder exits: the stop marker comes last.
        if recorder_done.is_none() && rec.child.try_wait().unwrap().is_some() {
            recorder_done = Some(std::time::Instant::now());
        }
        if recorder_done.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the recorder did not stop"
        );
    }
    stop.store(true, Ordering::SeqCst);
    eda.join().unwrap();
    for (id, n) in counts.iter().enumerate() {
        w.footer(id as u32 + 1, *n);
    }
    assert_eq!(counts[1], 2, "the start and stop markers of the session");
    let (ok, _, err) = rec.wait().unwrap();
    assert!(ok, "{err}");
    let xdf = dir.join("labrecorder.xdf");
    w.write(&xdf).unwrap();
    // The file is one pyxdf reads the same way.
    same_as_pyxdf(&xdf);

    // A copy of the bundle's manifest and events, for the offset rule.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["manifest.json", "events.jsonl"] {
        std::fs::copy(bundle_dir.join(f), copy.join(f)).unwrap();
    }
    let import = |bundle: &Path, align: &str| {
        Command::new(bin("lab-analyze"))
            .arg("import-xdf")
            .arg(&xdf)
            .arg(bundle)
            .args(["--align", align])
            .output()
            .unwrap()
    };
    let out = import(&bundle_dir, "marker");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(text.contains("2 marker event(s) added"), "{text}");

    let bundle = Bundle::new(&bundle_dir);
    let manifest = bundle.read_manifest().unwrap();
    let live = manifest
        .sensors
        .iter()
        .find(|t| t.stream.origin.is_empty())
        .expect("the live stream");
    let imported: Vec<_> = manifest
        .sensors
        .iter()
        .filter(|t| t.stream.origin.starts_with("xdf "))
        .collect();
    assert_eq!(imported.len(), 2, "{:?}", manifest.sensors);
    let imported_eda = imported.iter().find(|t| t.stream.name == eda_name).unwrap();
    assert_eq!(imported_eda.stream.channels[0].unit, "microsiemens");
    assert_ne!(imported_eda.stream.file, live.stream.file);

    // The same samples, at the same session times as recorded live.
    let live_samples = samples_of(&bundle_dir.join(&live.stream.file));
    let by_stamp: std::collections::HashMap<u64, i64> = live_samples
        .iter()
        .map(|(t, s)| (s.to_bits(), *t))
        .collect();
    let got = samples_of(&bundle_dir.join(&imported_eda.stream.file));
    let diffs: Vec<i64> = got
        .iter()
        .filter_map(|(t, s)| by_stamp.get(&s.to_bits()).map(|l| (t - l).abs()))
        .collect();
    assert!(
        diffs.len() * 10 >= live_samples.len() * 9,
        "{} of {} live samples found in the import",
        diffs.len(),
        live_samples.len()
    );
    let worst = *diffs.iter().max().unwrap();
    println!(
        "xdf import: {} samples matched the live recording, worst session-time difference {:.3} ms",
        diffs.len(),
        worst as f64 / 1e6
    );
    assert!(worst < 1_000_000, "{worst} ns from the live recording");

    // Stimulus markers are events at their session times.
    let zero = manifest.clock.session_zero_monotonic_ns as f64 / 1e9;
    let (events, _) = bundle.read_events().unwrap();
    let xdf_markers: Vec<_> = events
        .iter()
        .filter(|e| e.source == EventSource::Sensor && e.data["origin"] == "xdf")
        .collect();
    assert_eq!(xdf_markers.len(), 2);
    for (e, (text, t)) in xdf_markers.iter().zip(&sent_markers) {
        assert_eq!(e.data["marker"], text.as_str());
        let want = ((t - zero) * 1e9) as i64;
        assert!((e.t_ns - want).abs() < 1_000_000, "{} vs {want}", e.t_ns);
    }
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq numbers stay gapless"
    );

    // The same file again is refused; the offset rule (LabRecorder on the
    // station) gives the same times.
    let again = import(&bundle_dir, "marker");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already imported"));
    let out = import(&copy, "offset");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m2 = Bundle::new(&copy).read_manifest().unwrap();
    let t2 = m2
        .sensors
        .iter()
        .find(|t| t.stream.name == eda_name && !t.stream.origin.is_empty())
        .unwrap();
    let d = (t2.first_ns.unwrap() - imported_eda.first_ns.unwrap()).abs();
    assert!(
        d < 1_000_000,
        "offset and marker alignment differ by {d} ns"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
