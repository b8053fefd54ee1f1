//! `lab-analyze run BUNDLE`: every stage over a session bundle.
//!
//! Stages run in order and each writes its output atomically under
//! `analysis/`, then records itself in `analysis/state.json`. A finished
//! stage is skipped on the next run (idempotent, resumable after a crash
//! between stages); `--force STAGE` redoes one and everything after it that
//! depends on it.
//!
//! | stage | output |
//! |---|---|
//! | `speech` | `speech.json` (VAD spans per channel role), `transcript.json` |
//! | `steps` | `steps.json` (needs a journey definition) |
//! | `candidates` | `candidates.json` |
//! | `renditions` | `web/screen.mp4`, `web/camera.mp4`, `web/peaks.json`, `web/renditions.json` |
//! | `qa` | `qa.json` |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lab_model::analysis::{
    ANALYSIS_DIR, ANALYSIS_FORMAT_VERSION, CandidateList, Speaker, SpeechActivity, StepAnalysis,
    Transcript,
};
use lab_model::bundle::write_atomic;
use lab_model::{Bundle, Journey, Manifest, TrackKind};
use serde::{Deserialize, Serialize};

use crate::audio::{self, Pcm};
use crate::models::Models;
use crate::transcribe::{Options, Transcriber};
use crate::vad::Vad;
use crate::{renditions, speech};

pub const STAGES: &[&str] = &["speech", "steps", "candidates", "renditions", "qa"];

/// Bumped per stage when its output changes meaning, so old results are
/// redone: renditions 2 and qa 2 added the per-segment checks.
fn stage_version(stage: &str) -> u32 {
    match stage {
        "renditions" | "qa" => 2,
        _ => 1,
    }
}

/// How far a segment's video may end before the manifest's `end_ns` without
/// being reported: a keyframe-split segment's last frame ends within a frame
/// or two of it, and a recovered one ends where its packets end.
pub const QA_SHORT_TOLERANCE_NS: i64 = 250_000_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    format_version: u32,
    stages: BTreeMap<String, StageRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StageRecord {
    version: u32,
    status: String,
}

pub struct RunOptions {
    pub models: Models,
    pub whisper_model: Option<PathBuf>,
    pub journey: Option<PathBuf>,
    pub force: Vec<String>,
    pub transcribe: Options,
}

#[derive(Debug, Default)]
pub struct RunReport {
    /// (stage, what happened)
    pub stages: Vec<(String, String)>,
}

fn analysis_dir(b: &Bundle) -> PathBuf {
    b.dir.join(ANALYSIS_DIR)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display()))
}

/// Runs all stages that are not done yet (or forced).
pub fn run(
    bundle_dir: &Path,
    opts: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<RunReport> {
    let bundle = Bundle::new(bundle_dir);
    // Nothing is read or written through a link, hard link or FIFO that a
    // bundle's writer planted (lab-web runs this as its own user).
    bundle.check_contents()?;
    let manifest = bundle.read_manifest()?;
    let dir = analysis_dir(&bundle);
    std::fs::create_dir_all(&dir)?;
    let state_path = dir.join("state.json");
    let mut state: State = if state_path.exists() {
        read_json(&state_path)?
    } else {
        State::default()
    };
    state.format_version = ANALYSIS_FORMAT_VERSION;
    for f in &opts.force {
        if f != "all" && !STAGES.contains(&f.as_str()) {
            anyhow::bail!("unknown stage {f:?}; stages are {STAGES:?} or all");
        }
    }
    // Forcing a stage also redoes the stages that read its output.
    let first_forced = STAGES
        .iter()
        .position(|s| opts.force.iter().any(|f| f == s || f == "all"));
    let mut report = RunReport::default();
    for (i, &stage) in STAGES.iter().enumerate() {
        let forced = first_forced.is_some_and(|f| i >= f);
        let done = state
            .stages
            .get(stage)
            .is_some_and(|r| r.version == stage_version(stage));
        if done && !forced {
            report.stages.push((stage.into(), "already done".into()));
            continue;
        }
        log(&format!("{stage}: running"));
        let status = match stage {
            "speech" => stage_speech(&bundle, &manifest, opts, log)?,
            "steps" => stage_steps(&bundle, &manifest, opts)?,
            "candidates" => stage_candidates(&bundle, &manifest, opts)?,
            "renditions" => renditions::build(&bundle, &manifest)?,
            "qa" => stage_qa(&bundle, &manifest)?,
            _ => unreachable!("stage list"),
        };
        log(&format!("{stage}: {status}"));
        state.stages.insert(
            stage.into(),
            StageRecord {
                version: stage_version(stage),
                status: status.clone(),
            },
        );
        write_json(&state_path, &state)?;
        report.stages.push((stage.into(), status));
    }
    Ok(report)
}

/// Decodes the audio track of every `main` segment onto the session timeline.
pub fn session_audio(bundle: &Bundle, manifest: &Manifest) -> (Vec<Pcm>, Vec<String>) {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    for s in manifest.segments.iter().filter(|s| s.group == "main") {
        match audio::decode(&bundle.dir.join(&s.file)) {
            Ok(p) => {
                errors.extend(p.errors.iter().map(|e| format!("{}: {e}", s.file)));
                pieces.push(p);
            }
            Err(audio::AudioError::NoAudio { .. }) => {}
            Err(e) => errors.push(format!("{}: {e}", s.file)),
        }
    }
    (pieces, errors)
}

fn stage_speech(
    bundle: &Bundle,
    manifest: &Manifest,
    opts: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<String> {
    let dir = analysis_dir(bundle);
    let language = opts.transcribe.language.clone();
    let model_path = opts
        .whisper_model
        .clone()
        .unwrap_or_else(|| opts.models.whisper());
    let mut transcript = Transcript {
        format_version: ANALYSIS_FORMAT_VERSION,
        language,
        model: String::new(),
        status: "ok".into(),
        segments: Vec::new(),
    };
    let mut activity = SpeechActivity {
        format_version: ANALYSIS_FORMAT_VERSION,
        spans: Vec::new(),
    };
    // One audio track per bundle today (mic0); its channels carry the roles.
    let roles: Vec<Speaker> = manifest
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .map(|t| t.channel_roles.clone())
        .unwrap_or_default();
    let (pieces, errors) = session_audio(bundle, manifest);
    for e in &errors {
        log(&format!("speech: warning: {e}"));
    }
    let status = if roles.is_empty() || pieces.is_empty() {
        "skipped: no audio track".to_string()
    } else if pieces.iter().all(|p| p.peak() < 1e-4) {
        "skipped: audio track is silent".to_string()
    } else {
        let timeline = audio::place(&pieces, roles.len());
        let mut vad = Vad::new(&opts.models.onnxruntime(), &opts.models.vad())?;
        let whisper = Transcriber::new(&model_path)?;
        transcript.model = whisper.model_name.clone();
        // Channels with the same role (or a single mixed channel) are transcribed once.
        let mut seen = Vec::new();
        for (c, role) in roles.iter().enumerate() {
            if seen.contains(role) {
                continue;
            }
            seen.push(*role);
            let found = speech::detect(&mut vad, &timeline[c], 0, *role)?;
            activity.spans.extend(found.timed.iter().copied());
            let segs = speech::transcribe_speech(
                &whisper,
                &timeline[c],
                &found,
                0,
                *role,
                &opts.transcribe,
                &mut |d, t| log(&format!("speech: channel {c} ({role:?}) window {d}/{t}")),
            )?;
            transcript.segments.extend(segs);
        }
        transcript.segments.sort_by_key(|s| s.start_ns);
        activity.spans.sort_by_key(|s| s.start_ns);
        let words: usize = transcript.segments.iter().map(|s| s.words.len()).sum();
        format!(
            "ok: {} speech spans, {} segments, {words} words",
            activity.spans.len(),
            transcript.segments.len()
        )
    };
    if status != "ok" && !status.starts_with("ok:") {
        transcript.status = status.clone();
    }
    write_json(&dir.join("speech.json"), &activity)?;
    write_json(&dir.join("transcript.json"), &transcript)?;
    Ok(status)
}

/// The journey definition: `--journey`, else `journeys/<life_situation>.toml`.
fn journey(manifest: &Manifest, opts: &RunOptions) -> anyhow::Result<Option<Journey>> {
    Ok(journey_text(manifest, opts)?.map(|(j, _)| j))
}

/// The journey definition and its source text: `--journey`, else
/// `journeys/<life_situation>.toml` relative to the working directory, only
/// for a valid journey id (the manifest was validated on reading; checked
/// again here because this is where the id becomes a path), and only if that
/// file defines that very id.
fn journey_text(
    manifest: &Manifest,
    opts: &RunOptions,
) -> anyhow::Result<Option<(Journey, String)>> {
    let (path, want_id) = match (&opts.journey, &manifest.life_situation) {
        (Some(p), _) => (p.clone(), None),
        (None, Some(ls)) if lab_model::journey::valid_id(ls) => (
            PathBuf::from("journeys").join(format!("{ls}.toml")),
            Some(ls),
        ),
        (None, Some(ls)) => anyhow::bail!("life_situation {ls:?} is not a journey id"),
        (None, None) => return Ok(None),
    };
    if !path.exists() && opts.journey.is_none() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
    let journey =
        Journey::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(want) = want_id
        && journey.id != *want
    {
        anyhow::bail!(
            "{} defines journey {:?}, not the session's life situation {want:?}",
            path.display(),
            journey.id
        );
    }
    Ok(Some((journey, text)))
}

fn timeline(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<crate::timeline::Timeline> {
    let (events, _) = bundle.read_events()?;
    let transcript: Transcript = read_json(&analysis_dir(bundle).join("transcript.json"))?;
    Ok(crate::timeline::Timeline::new(
        events,
        transcript.words().cloned().collect(),
        manifest.duration_ns.unwrap_or(0),
    ))
}

fn empty_steps() -> StepAnalysis {
    StepAnalysis {
        format_version: ANALYSIS_FORMAT_VERSION,
        journey_id: String::new(),
        journey_version: String::new(),
        intervals: vec![],
        steps: vec![],
    }
}

fn stage_steps(bundle: &Bundle, manifest: &Manifest, opts: &RunOptions) -> anyhow::Result<String> {
    let path = analysis_dir(bundle).join("steps.json");
    let Some((journey, text)) = journey_text(manifest, opts)? else {
        write_json(&path, &empty_steps())?;
        return Ok(
            "skipped: no journey definition (pass --journey or set the life situation)".into(),
        );
    };
    let steps = crate::steps::segment(&journey, &timeline(bundle, manifest)?);
    // The bundle keeps the definition it was cut by, so the review app shows
    // the same steps, titles and expected times.
    write_atomic(&analysis_dir(bundle).join("journey.toml"), text.as_bytes())?;
    write_json(&path, &steps)?;
    Ok(format!(
        "ok: {} intervals over {} steps of {:?}",
        steps.intervals.len(),
        journey.steps.len(),
        journey.id
    ))
}

fn stage_candidates(
    bundle: &Bundle,
    manifest: &Manifest,
    opts: &RunOptions,
) -> anyhow::Result<String> {
    let dir = analysis_dir(bundle);
    let steps: StepAnalysis = read_json(&dir.join("steps.json"))?;
    let journey = journey(manifest, opts)?;
    let empty = Journey {
        format_version: lab_model::journey::JOURNEY_FORMAT_VERSION,
        id: String::new(),
        title: String::new(),
        version: String::new(),
        steps: vec![],
    };
    let candidates = crate::friction::detect_all(
        journey.as_ref().unwrap_or(&empty),
        &timeline(bundle, manifest)?,
        &steps,
        &crate::lexicon::Lexicon::builtin(),
    );
    let n = candidates.len();
    write_json(
        &dir.join("candidates.json"),
        &CandidateList {
            format_version: ANALYSIS_FORMAT_VERSION,
            candidates,
        },
    )?;
    Ok(format!("ok: {n} candidates"))
}

pub use lab_model::analysis::{QaReport, ShortSegment};

fn stage_qa(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<String> {
    let dir = analysis_dir(bundle);
    let transcript: Transcript = read_json(&dir.join("transcript.json"))?;
    let renditions: renditions::Renditions = read_json(&dir.join("web/renditions.json"))?;
    let (_, torn) = bundle.read_events()?;
    let qa = qa_report(manifest, &renditions, transcript.status, torn as u64);
    let n = qa.issues.len();
    write_json(&dir.join("qa.json"), &qa)?;
    Ok(format!("ok: {n} issues noted"))
}

/// The QA report: what the manifest promises against what the renditions
/// stage could read. Expected media comes from the manifest (segment bounds
/// and the track's framerate), never from what happened to decode.
pub fn qa_report(
    manifest: &Manifest,
    renditions: &renditions::Renditions,
    transcript_status: String,
    events_torn: u64,
) -> QaReport {
    use lab_model::time::format_session_time as t;
    let mut issues: Vec<String> = renditions.errors.clone();
    for g in &manifest.gaps {
        issues.push(format!(
            "{} had no media from {} to {}: {}",
            g.track,
            t(g.start_ns),
            g.end_ns.map_or("the end".into(), t),
            g.reason
        ));
    }
    let mut short_segments = Vec::new();
    for track in manifest.tracks.iter().filter(|t| t.framerate.is_some()) {
        let Some(group) = track.groups.first() else {
            continue;
        };
        for s in manifest.segments.iter().filter(|s| &s.group == group) {
            // An open segment of a bundle nobody recovered has no end to compare with;
            // it is listed under recovered_segments.
            let Some(expected_end) = s.end_ns else {
                continue;
            };
            let media = renditions
                .segments
                .iter()
                .find(|m| m.track == track.id && m.file == s.file);
            let media_end = media.and_then(|m| m.end_ns);
            let missing = expected_end - media_end.unwrap_or(s.start_ns).max(s.start_ns);
            if missing > QA_SHORT_TOLERANCE_NS {
                issues.push(format!(
                    "{} ({}): media ends at {}, the manifest says {}: {:.2} s missing",
                    s.file,
                    track.id,
                    media_end.map_or("its start (nothing readable)".into(), t),
                    t(expected_end),
                    missing as f64 / 1e9
                ));
                short_segments.push(ShortSegment {
                    track: track.id.clone(),
                    file: s.file.clone(),
                    expected_end_ns: expected_end,
                    media_end_ns: media_end,
                    missing_ns: missing,
                });
            }
        }
    }
    QaReport {
        format_version: ANALYSIS_FORMAT_VERSION,
        status: match manifest.status {
            lab_model::SessionStatus::Recording => {
                "interrupted (recorder died; run `lab-recorder recover`)".into()
            }
            other => format!("{other:?}").to_lowercase(),
        },
        clock_uncertainty_ms: manifest
            .clock
            .clients
            .iter()
            .map(|c| (c.client.clone(), c.uncertainty_ns as f64 / 1e6))
            .collect(),
        gaps: manifest.gaps.clone(),
        recovered_segments: manifest
            .segments
            .iter()
            // Open segments of a bundle nobody recovered were cut off just the same.
            .filter(|s| s.state != lab_model::SegmentState::Closed)
            .map(|s| s.file.clone())
            .collect(),
        // The renditions stage read every segment already and kept what failed.
        decode_errors: renditions.errors.clone(),
        frames: renditions
            .videos
            .iter()
            .map(|v| (v.track.clone(), v.frames, v.expected_frames))
            .collect(),
        short_segments,
        issues,
        events_rejected: manifest.events.rejected,
        events_torn,
        transcript_status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest's `life_situation` of `../../…/evil` made the analyzer load
    /// a TOML from outside the journeys folder. `read_manifest` refuses such a
    /// manifest; this is the second line of defence for one built in memory.
    #[test]
    fn a_hostile_life_situation_never_becomes_a_journey_path() {
        let dir = std::env::temp_dir().join(format!("analyzer-evil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let evil = dir.join("evil.toml");
        std::fs::write(&evil, "this file must never be read").unwrap();
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": "lab-session-bundle", "format_version": 1, "session_id": "S1",
            "station": "s", "life_situation": format!("../../../../../../..{}", dir.join("evil").display()),
            "participant": "P01", "consent": "C01",
            "clock": {"session_zero_monotonic_ns": 1, "session_zero_unix_ns": 2, "session_zero_utc": ""},
            "tracks": [], "segments": [], "status": "complete",
            "recorder": {"version": "0", "pid": 1}
        }))
        .unwrap();
        let opts = RunOptions {
            models: Models { dir: dir.clone() },
            whisper_model: None,
            journey: None,
            force: vec![],
            transcribe: Options::default(),
        };
        let err = journey_text(&manifest, &opts).unwrap_err().to_string();
        assert!(err.contains("is not a journey id"), "{err}");
    }

    /// A bundle with a link planted in it (`analysis/state.tmp` pointing at
    /// lab-web's database, a segment pointing at a server file) is refused
    /// before the analyzer reads or writes anything.
    #[test]
    fn a_bundle_with_a_planted_link_is_refused_before_anything_is_written() {
        let root = std::env::temp_dir().join(format!("analyzer-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("S1");
        std::fs::create_dir_all(dir.join("analysis")).unwrap();
        let manifest = serde_json::json!({
            "format": "lab-session-bundle", "format_version": 1, "session_id": "S1",
            "station": "s", "participant": "P01", "consent": "C01",
            "clock": {"session_zero_monotonic_ns": 1, "session_zero_unix_ns": 2, "session_zero_utc": ""},
            "tracks": [], "segments": [], "status": "complete",
            "recorder": {"version": "0", "pid": 1}
        });
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
        let db = root.join("lab.db");
        std::fs::write(&db, b"SQLite format 3").unwrap();
        std::os::unix::fs::symlink(&db, dir.join("analysis/state.tmp")).unwrap();
        let opts = RunOptions {
            models: Models { dir: root.clone() },
            whisper_model: None,
            journey: None,
            force: vec![],
            transcribe: Options::default(),
        };
        let err = format!("{:#}", run(&dir, &opts, &mut |_| {}).unwrap_err());
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&db).unwrap(), b"SQLite format 3");
        assert!(!dir.join("analysis/state.json").exists());
    }
}
