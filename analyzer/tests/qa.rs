//! The QA stage on real Matroska segments made with GStreamer the way the
//! recorder makes them (x264 in matroskamux, session timestamps kept).

use std::path::{Path, PathBuf};
use std::process::Command;

use analyzer::bundle_run::{self, RunOptions};
use analyzer::models::Models;
use lab_model::analysis::{AnalysisDoc, QaReport, Renditions, Stage};
use lab_model::bundle::RecorderInfo;
use lab_model::{
    BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, Bundle, ClockMapping, EventStats, Manifest, Segment,
    SegmentState, SessionStatus, Track, TrackKind,
};

const SEGMENT_NS: i64 = 2_000_000_000;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("analyzer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 2 s, 30 fps H.264 segment in Matroska whose timestamps start at `start_ns`.
fn make_segment(path: &Path, start_ns: i64) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(
            format!(
                "videotestsrc num-buffers=60 timestamp-offset={start_ns} ! \
             video/x-raw,width=160,height=120,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! \
             h264parse ! matroskamux ! filesink location={}",
                path.display()
            )
            .split(' '),
        )
        .status()
        .expect("gst-launch-1.0 is installed (hardware-setup/install.sh)");
    assert!(status.success(), "gst-launch-1.0 failed to make {path:?}");
}

fn manifest() -> Manifest {
    let segment = |index: u32| Segment {
        group: "main".into(),
        index,
        file: format!("media/main-{index:05}.mkv"),
        start_ns: i64::from(index) * SEGMENT_NS,
        end_ns: Some(i64::from(index + 1) * SEGMENT_NS),
        state: SegmentState::Closed,
    };
    Manifest {
        format: BUNDLE_FORMAT.into(),
        format_version: BUNDLE_FORMAT_VERSION,
        session_id: "20261123T101500Z-P21".into(),
        station: "qa-test".into(),
        study: None,
        life_situation: None,
        journey_version: None,
        participant: "P21".into(),
        consent: "C21".into(),
        moderator: None,
        clock: ClockMapping {
            session_zero_monotonic_ns: 1,
            session_zero_unix_ns: 2,
            session_zero_utc: "2026-11-23T10:15:00Z".into(),
            clients: vec![],
        },
        tracks: vec![Track {
            id: "screen".into(),
            kind: TrackKind::Video,
            codec: "h264".into(),
            encoder: "x264enc".into(),
            source: "videotestsrc".into(),
            device: String::new(),
            groups: vec!["main".into()],
            width: Some(160),
            height: Some(120),
            framerate: Some(30),
            sample_rate: None,
            channels: None,
            channel_roles: vec![],
        }],
        segments: vec![segment(0), segment(1)],
        status: SessionStatus::Complete,
        stop_reason: Some("duration".into()),
        duration_ns: Some(2 * SEGMENT_NS),
        gaps: vec![],
        events: EventStats::default(),
        recorder: RecorderInfo {
            version: "test".into(),
            pid: 1,
            events_url: None,
        },
        sensors: vec![],
    }
}

fn run_qa(dir: &Path) -> (QaReport, String) {
    let opts = RunOptions {
        models: Models {
            dir: dir.join("no-models"),
        },
        whisper_model: None,
        journey: None,
        journeys_dirs: vec![],
        force: vec![Stage::Renditions],
        transcribe: Default::default(),
        vocabulary_prompt: false,
    };
    bundle_run::run(dir, &opts, &mut |_| {}).unwrap();
    let text = std::fs::read_to_string(lab_model::analysis::AnalysisFile::Qa.path(dir)).unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

/// Halving the last closed segment lost ~1 s of screen, and QA said "0
/// issues" because the expected frames were derived from what decoded.
#[test]
fn qa_reports_a_truncated_segment_with_the_seconds_missing() {
    let dir = temp_dir("qa-truncated");
    let bundle = Bundle::new(&dir);
    std::fs::create_dir_all(bundle.media_dir()).unwrap();
    let m = manifest();
    for s in &m.segments {
        make_segment(&dir.join(&s.file), s.start_ns);
    }
    bundle.write_manifest(&m).unwrap();

    // Whole segments: nothing to report, and every promised frame is there.
    let (qa, _) = run_qa(&dir);
    assert!(qa.issues.is_empty(), "{:?}", qa.issues);
    assert_eq!(qa.frames, vec![("screen".to_string(), 120, 120)]);

    let last = dir.join(&m.segments[1].file);
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (qa, text) = run_qa(&dir);
    println!("qa of a halved segment: {:?}", qa.issues);
    let [short] = &qa.short_segments[..] else {
        panic!("want one short segment, got {:?}", qa.short_segments);
    };
    assert_eq!(
        (short.file.as_str(), short.track.as_str()),
        ("media/main-00001.mkv", "screen")
    );
    let missing = short.missing_ns as f64 / 1e9;
    assert!((0.6..=1.4).contains(&missing), "{missing} s missing");
    assert!(
        qa.issues.iter().any(|i| i.contains("media/main-00001.mkv")
            && i.contains(&format!("{missing:.2} s missing"))),
        "{:?}",
        qa.issues
    );
    let (_, read, expected) = &qa.frames[0];
    assert_eq!(*expected, 120, "expected frames come from the manifest");
    assert!(*read < 100, "{read} frames read of a halved segment");
    // The report names files relative to the bundle, never this machine's paths.
    assert!(!text.contains(dir.to_str().unwrap()), "{text}");
}

/// The QA report stored this machine's absolute paths (an audio segment that
/// would not open was named by its full path), so a bundle moved to a server
/// pointed nowhere. Every file the analyzer writes names bundle files
/// relative to the bundle: after a move, each still resolves.
#[test]
fn an_analysed_bundle_moved_elsewhere_keeps_working_and_names_no_absolute_path() {
    let dir = temp_dir("qa-moved");
    let bundle = Bundle::new(&dir);
    std::fs::create_dir_all(bundle.media_dir()).unwrap();
    let m = manifest();
    make_segment(&dir.join(&m.segments[0].file), m.segments[0].start_ns);
    // The second segment is not Matroska at all: audio and video decoding fail on it.
    std::fs::write(dir.join(&m.segments[1].file), b"not a matroska file").unwrap();
    bundle.write_manifest(&m).unwrap();
    let (qa, _) = run_qa(&dir);
    assert!(
        qa.decode_errors
            .iter()
            .any(|e| e.contains("media/main-00001.mkv")),
        "{:?}",
        qa.decode_errors
    );

    println!("decode errors: {:?}", qa.decode_errors);
    let root = dir.to_str().unwrap().to_string();
    for entry in walk(&dir.join("analysis")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(
            !text.contains(&root),
            "{} names {root}: {text}",
            entry.display()
        );
    }

    let moved = dir.with_extension("moved");
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&dir, &moved).unwrap();
    let r = Renditions::read(&moved).unwrap();
    let mut files: Vec<String> = r.videos.iter().map(|v| v.file.clone()).collect();
    files.extend(r.thumbnails.iter().map(|t| t.file.clone()));
    files.extend(r.peaks.clone());
    assert!(!r.videos.is_empty() && !r.thumbnails.is_empty());
    for f in files {
        assert!(
            moved.join(&f).is_file(),
            "{f} does not resolve after the move"
        );
    }
    // And the moved bundle analyses again from where it is.
    let (qa_again, _) = run_qa(&moved);
    assert_eq!(qa_again.decode_errors, qa.decode_errors);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json" || x == "toml") {
            out.push(p);
        }
    }
    out
}
