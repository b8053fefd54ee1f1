use super::*;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("lab-model-analysis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn transcript() -> Transcript {
    Transcript {
        initial_prompt: None,
        format_version: ANALYSIS_FORMAT_VERSION,
        language: "ru".into(),
        model: "ggml-base.bin (1 bytes)".into(),
        model_info: None,
        status: "ok".into(),
        segments: vec![TranscriptSegment {
            suspect: false,
            suspect_reason: None,
            start_ns: 1,
            end_ns: 2,
            text: "да".into(),
            speaker: Speaker::Participant,
            words: vec![],
        }],
    }
}

#[test]
fn every_file_has_one_relative_path_under_analysis() {
    let mut seen = std::collections::HashSet::new();
    for f in AnalysisFile::ALL {
        let p = f.relative_path();
        assert!(p.starts_with("analysis/") && !p.contains(".."), "{p}");
        assert!(seen.insert(p), "{p} twice");
    }
    assert_eq!(
        AnalysisFile::Renditions.relative_path(),
        "analysis/web/renditions.json"
    );
    assert_eq!(video_file("screen"), "analysis/web/screen.mp4");
    assert_eq!(
        thumbnail_file(&thumbnail_name(70_500_000_000)),
        "analysis/web/thumbs/000070.jpg"
    );
}

#[test]
fn a_written_file_reads_back_and_a_missing_one_is_none() {
    let dir = temp_dir("round-trip");
    assert!(Transcript::read_optional(&dir).unwrap().is_none());
    let t = transcript();
    t.write(&dir).unwrap();
    assert_eq!(Transcript::read(&dir).unwrap(), t);
    assert_eq!(Transcript::read_optional(&dir).unwrap(), Some(t.clone()));
    assert_eq!(Transcript::parse(&t.to_bytes()).unwrap(), t);
    let peaks = Peaks {
        per_second: 50,
        channels: vec![vec![0, 128, 255]],
    };
    peaks.write(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join("analysis/web/peaks.json")).unwrap();
    assert_eq!(text, "{\"per_second\":50,\"channels\":[[0,128,255]]}\n");
    assert_eq!(Peaks::read(&dir).unwrap(), peaks);
    let mut state = State::default();
    assert!(!state.is_done(Stage::Qa));
    state.record(Stage::Qa, "ok: 0 issues noted");
    assert!(state.is_done(Stage::Qa));
    state.stages.get_mut("qa").unwrap().version = 1;
    assert!(
        !state.is_done(Stage::Qa),
        "an older stage version is redone"
    );
    state.write(&dir).unwrap();
    assert_eq!(State::read(&dir).unwrap(), state);
}

#[test]
fn newer_oversized_and_broken_files_are_refused_by_name() {
    let mut t = serde_json::to_value(transcript()).unwrap();
    t["format_version"] = 2.into();
    let e = Transcript::parse(t.to_string().as_bytes()).unwrap_err();
    assert!(matches!(e, AnalysisError::Version { found: 2, .. }), "{e}");
    assert!(e.to_string().contains("analysis/transcript.json"), "{e}");
    // A newer file whose shape changed is reported as newer, not as broken.
    let e = Transcript::parse(br#"{"format_version": 7, "words": 3}"#).unwrap_err();
    assert!(matches!(e, AnalysisError::Version { found: 7, .. }), "{e}");
    let e = QaReport::parse(b"{\"format_version\": 1").unwrap_err();
    assert!(matches!(e, AnalysisError::Parse { .. }), "{e}");
    assert_eq!(e.to_string(), "analysis/qa.json is not valid");
    let big = vec![b' '; crate::bundle::limits::MAX_ANALYSIS_JSON_BYTES as usize + 1];
    let e = Renditions::parse(&big).unwrap_err();
    assert!(matches!(e, AnalysisError::TooLarge { .. }), "{e}");
}

#[test]
fn the_model_info_round_trips_and_old_transcripts_without_it_parse() {
    let mut t = transcript();
    let old = t.to_bytes();
    assert!(!String::from_utf8_lossy(&old).contains("model_info"));
    assert_eq!(Transcript::parse(&old).unwrap().model_info, None);
    t.model_info = Some(crate::models::WhisperModelInfo {
        file: "ggml-base-q5_0.bin".into(),
        name: "base-q5_0".into(),
        bytes: 59_707_625,
        weights: "q5_0".into(),
        sha256: "0".repeat(64),
        modified_ns: None,
    });
    let v: serde_json::Value = serde_json::from_slice(&t.to_bytes()).unwrap();
    assert_eq!(v["model_info"]["weights"], "q5_0");
    assert_eq!(v["model_info"]["bytes"], 59_707_625);
    assert_eq!(Transcript::parse(&t.to_bytes()).unwrap(), t);
}

#[test]
fn suspect_and_prompt_are_optional_and_written_only_when_set() {
    let t = transcript();
    let text = serde_json::to_string(&t).unwrap();
    // Files written before these fields existed, and clean ones, look the same.
    assert!(
        !text.contains("suspect") && !text.contains("initial_prompt"),
        "{text}"
    );
    let back: Transcript = serde_json::from_str(&text).unwrap();
    assert!(!back.segments[0].suspect && back.segments[0].suspect_reason.is_none());
    let mut t = t;
    t.segments[0].suspect = true;
    t.segments[0].suspect_reason = Some(SuspectReason::Repetition);
    t.initial_prompt = Some("СНИЛС, Госуслуги.".into());
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["segments"][0]["suspect"], true);
    assert_eq!(v["segments"][0]["suspect_reason"], "repetition");
    assert_eq!(v["initial_prompt"], "СНИЛС, Госуслуги.");
    assert_eq!(serde_json::from_value::<Transcript>(v).unwrap(), t);
}
