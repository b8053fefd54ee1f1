//! Scripted inputs shared by the end-to-end tests: espeak-ng speech, word
//! error rate, the installed models, and a real recorded session (test video,
//! PulseAudio speech, scripted browser and operator events).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::truth::edits;
pub use crate::truth::words;
use crate::{Pulse, RecorderProcess, http, require};

/// liblsl from the installed models (`lab-setup models`).
pub fn lsl() -> std::sync::Arc<lab_lsl::Lsl> {
    lab_lsl::Lsl::open(&models().join(lab_lsl::LIBRARY), None)
        .expect("liblsl is installed by `lab-setup models` (scripts/test does)")
}

pub fn models() -> PathBuf {
    let dir = std::env::var_os("LAB_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"));
    assert!(
        dir.join(lab_model::models::WHISPER_BASE).exists()
            && dir.join(lab_model::models::VAD_MODEL).exists(),
        "models are not installed in {}: run `lab-setup models` (scripts/test does)",
        dir.display()
    );
    dir
}

/// espeak-ng speech of `text` with `pad` seconds of silence around it.
pub fn speech(dir: &Path, name: &str, text: &str, pad: f64) -> PathBuf {
    require("espeak-ng");
    require("sox");
    let raw = dir.join(format!("{name}-raw.wav"));
    let out = dir.join(format!("{name}.wav"));
    assert!(
        Command::new("espeak-ng")
            .args(["-v", "ru", "-s", "140", "-w"])
            .arg(&raw)
            .arg(text)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("sox")
            .arg(&raw)
            .arg(&out)
            .args(["pad", &pad.to_string(), &pad.to_string()])
            .status()
            .unwrap()
            .success()
    );
    out
}

/// Word error rate by Levenshtein distance over words.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (edits, n) = edits(reference, hypothesis);
    edits as f64 / n.max(1) as f64
}

pub fn post(url: &str, path: &str, body: &str) {
    let (status, resp) = http("POST", &format!("{url}{path}"), body.as_bytes()).unwrap();
    assert!(status == 201 || status == 202, "{path}: {status} {resp}");
}

/// Records a session with speech played into the microphone and scripted
/// browser and operator events; returns the bundle.
pub fn record_session(dir: &Path, speech_wav: &Path) -> PathBuf {
    let pulse = Pulse::start().unwrap();
    let station = dir.join("station.toml");
    std::fs::write(
        &station,
        format!(
            "format_version = 1\nstation = \"analyze-test\"\n\n[screen]\nsource = \"test\"\nwidth = 640\nheight = 360\nframerate = 30\n\n\
             [camera]\nsource = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\n\n\
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
            "P10",
            "--consent",
            "C10",
            "--life-situation",
            "test-benefit",
        ],
        &[("PULSE_SERVER", &pulse.server)],
        &dir.join("sessions"),
    )
    .unwrap();
    let (bundle, url) = rec.wait_started().unwrap();
    std::thread::sleep(Duration::from_secs(3)); // PulseAudio delivers its first audio after ~2 s
    post(
        &url,
        "/api/markers",
        r#"{"type":"task_start","label":"Задание 1"}"#,
    );
    post(
        &url,
        "/api/events",
        r#"{"source":"browser","kind":"navigation","data":{"url":"http://proto.local/catalog","title":"Каталог"}}"#,
    );
    std::thread::sleep(Duration::from_secs(1));
    post(
        &url,
        "/api/events",
        r#"{"source":"browser","kind":"navigation","data":{"url":"http://proto.local/form","title":"Заявление"}}"#,
    );
    // The participant speaks while stuck on the form...
    let player = Command::new("paplay")
        .arg("--device")
        .arg(Pulse::SINK)
        .arg(speech_wav)
        .env("PULSE_SERVER", &pulse.server)
        .spawn()
        .unwrap();
    // ...and hammers an unresponsive button.
    for i in 0..4 {
        post(
            &url,
            "/api/events",
            &format!(
                r##"{{"source":"browser","kind":"click","data":{{"x":300,"y":200,"selector":"#submit","text":"Далее","tag":"button","click_id":{i}}}}}"##
            ),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...which answers with a script error: a friction that does not
    // depend on what the recogniser heard.
    post(
        &url,
        "/api/events",
        r#"{"source":"browser","kind":"js_error","data":{"message":"TypeError: form.submit is not a function"}}"#,
    );
    let _ = player.wait_with_output();
    post(
        &url,
        "/api/events",
        r#"{"source":"browser","kind":"navigation","data":{"url":"http://proto.local/done","title":"Готово"}}"#,
    );
    std::thread::sleep(Duration::from_secs(1));
    post(
        &url,
        "/api/markers",
        r#"{"type":"task_end","label":"Задание 1"}"#,
    );
    post(&url, "/api/stop", "");
    let (ok, _, err) = rec.wait().unwrap();
    assert!(ok, "{err}");
    bundle
}

/// Records `secs` seconds from the test sources into `out` and returns the
/// bundle (the fleet test and bench analyse copies of it).
pub fn record_test_sources(out: &Path, secs: u32) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let secs = secs.to_string();
    let rec = RecorderProcess::spawn(
        &[
            "--test-sources",
            "--duration",
            &secs,
            "--participant",
            "P41",
            "--consent",
            "C41",
        ],
        &[],
        out,
    )
    .unwrap();
    let (ok, _, err) = rec.wait().unwrap();
    assert!(ok, "recording failed: {err}");
    std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("manifest.json").is_file())
        .expect("a bundle")
}

/// A copy of `bundle` at `to` as session `id` (the manifest's id rewritten).
pub fn copy_bundle_as(bundle: &Path, to: &Path, id: &str) {
    let old = bundle.file_name().unwrap().to_str().unwrap().to_string();
    let ok = Command::new("cp")
        .arg("-r")
        .arg(bundle)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -r {} {}", bundle.display(), to.display());
    let m = to.join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap().replace(&old, id);
    std::fs::write(&m, text).unwrap();
}
