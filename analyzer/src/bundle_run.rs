//! `lab-analyze run BUNDLE`: every stage over a session bundle.
//!
//! Stages ([`Stage`], in order) each write their output atomically under
//! `analysis/`, then record themselves in `analysis/state.json` ([`State`]).
//! A finished stage is skipped on the next run (idempotent, resumable after a
//! crash between stages); `--force STAGE` redoes one and everything after it
//! that depends on it. What each stage writes is [`Stage::outputs`]; the file
//! names, types and the progress line are `lab_model::analysis`'s.

use std::path::{Path, PathBuf};

use lab_model::analysis::{
    ANALYSIS_FORMAT_VERSION, AnalysisDoc, AnalysisFile, CandidateList, Progress, Renditions,
    Speaker, SpeechActivity, Stage, State, StepAnalysis, Transcript,
};
use lab_model::bundle::write_atomic;
use lab_model::journey::ResolvedJourney;
use lab_model::{Bundle, Journey, Manifest, TrackKind};

use crate::audio;
use crate::models::Models;
use crate::transcribe::{Options, Transcriber};
use crate::vad::Vad;
use crate::{qa, renditions, speech};

pub struct RunOptions {
    pub models: Models,
    pub whisper_model: Option<PathBuf>,
    /// `--journey FILE`: the journey definition, whatever its name.
    pub journey: Option<PathBuf>,
    /// `--journeys DIR`: folders searched for `<life_situation>.toml`, in order.
    pub journeys_dirs: Vec<PathBuf>,
    /// Stages to redo (with every later stage); `Stage::forced_from` parses `--force`.
    pub force: Vec<Stage>,
    pub transcribe: Options,
    /// The journey's `vocabulary` as Whisper's initial prompt (`--vocabulary-prompt`).
    pub vocabulary_prompt: bool,
}

#[derive(Debug, Default)]
pub struct RunReport {
    /// (stage, what happened)
    pub stages: Vec<(Stage, String)>,
}

/// What a run tells its caller while it works.
#[derive(Debug, Clone, Copy)]
pub enum RunEvent<'a> {
    /// Machine-readable progress (`lab-analyze` writes [`Progress::to_line`]).
    Progress(Progress),
    /// A line for people (`speech: running`, warnings, a stage's status).
    Line(&'a str),
}

/// Runs all stages that are not done yet (or forced).
pub fn run(
    bundle_dir: &Path,
    opts: &RunOptions,
    report_to: &mut dyn FnMut(RunEvent<'_>),
) -> anyhow::Result<RunReport> {
    let bundle = Bundle::new(bundle_dir);
    // Nothing is read or written through a link, hard link or FIFO that a
    // bundle's writer planted (lab-web runs this as its own user).
    bundle.check_contents()?;
    let manifest = bundle.read_manifest()?;
    std::fs::create_dir_all(bundle.dir.join(lab_model::analysis::ANALYSIS_DIR))?;
    let mut state = State::read_optional(&bundle.dir)?.unwrap_or_default();
    state.format_version = ANALYSIS_FORMAT_VERSION;
    // Forcing a stage also redoes the stages that read its output.
    let first_forced = opts.force.iter().min().copied();
    let mut report = RunReport::default();
    for stage in Stage::ALL {
        let forced = first_forced.is_some_and(|f| stage >= f);
        if state.is_done(stage) && !forced {
            report.stages.push((stage, "already done".into()));
            continue;
        }
        report_to(RunEvent::Progress(Progress::started(stage)));
        report_to(RunEvent::Line(&format!("{stage}: running")));
        let status = match stage {
            Stage::Speech => stage_speech(&bundle, &manifest, opts, report_to)?,
            Stage::Steps => stage_steps(&bundle, &manifest, opts)?,
            Stage::Candidates => stage_candidates(&bundle, &manifest)?,
            Stage::Renditions => renditions::build(&bundle, &manifest)?,
            Stage::Qa => stage_qa(&bundle, &manifest)?,
        };
        report_to(RunEvent::Progress(Progress::finished(stage)));
        report_to(RunEvent::Line(&format!("{stage}: {status}")));
        state.record(stage, status.clone());
        state.write(&bundle.dir)?;
        report.stages.push((stage, status));
    }
    Ok(report)
}

fn stage_speech(
    bundle: &Bundle,
    manifest: &Manifest,
    opts: &RunOptions,
    report_to: &mut dyn FnMut(RunEvent<'_>),
) -> anyhow::Result<String> {
    let language = opts.transcribe.language.clone();
    let model_path = opts
        .whisper_model
        .clone()
        .unwrap_or_else(|| opts.models.whisper());
    let mut transcript = Transcript {
        initial_prompt: None,
        format_version: ANALYSIS_FORMAT_VERSION,
        language,
        model: String::new(),
        model_info: None,
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
    let (pieces, errors) = audio::session_audio(bundle, manifest);
    for e in &errors {
        report_to(RunEvent::Line(&format!("speech: warning: {e}")));
    }
    let status = if roles.is_empty() || pieces.is_empty() {
        "skipped: no audio track".to_string()
    } else if pieces.iter().all(|p| p.peak() < 1e-4) {
        "skipped: audio track is silent".to_string()
    } else {
        let timeline = audio::place(&pieces, roles.len());
        let mut vad = Vad::new(&opts.models.onnxruntime(), &opts.models.vad())?;
        let info = opts.models.describe_whisper(&model_path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the Whisper model {}: {e} (run `lab-setup models`, or pass --model with a GGML file)",
                model_path.display()
            )
        })?;
        report_to(RunEvent::Line(&format!(
            "speech: model {} ({}, {}, {} bytes, sha256 {})",
            info.name, info.file, info.weights, info.bytes, info.sha256
        )));
        let whisper = Transcriber::new(&model_path)?;
        transcript.model = whisper.model_name.clone();
        transcript.model_info = Some(info);
        // The journey's words as Whisper's prompt, when asked for. A journey
        // that cannot be read costs only the prompt here; the steps stage
        // reports why.
        let mut transcribe = opts.transcribe.clone();
        if transcribe.prompt.is_none() && opts.vocabulary_prompt {
            match journey(manifest, opts) {
                Ok(j) => transcribe.prompt = j.and_then(|j| crate::prompt::for_journey(&j.journey)),
                Err(e) => report_to(RunEvent::Line(&format!(
                    "speech: warning: no journey vocabulary: {e:#}"
                ))),
            }
        }
        transcript.initial_prompt = transcribe.prompt.clone();
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
                &transcribe,
                &mut |d, t| {
                    report_to(RunEvent::Progress(Progress {
                        stage: Stage::Speech,
                        done: d as u64,
                        total: t as u64,
                    }));
                    report_to(RunEvent::Line(&format!(
                        "speech: channel {c} ({role:?}) window {d}/{t}"
                    )));
                },
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
    activity.write(&bundle.dir)?;
    transcript.write(&bundle.dir)?;
    Ok(status)
}

/// The session's journey definition and its source text, by the one rule
/// (`Journey::resolve`): `--journey`, else `<life_situation>.toml` in the
/// `--journeys` folders; its id must be the session's life situation.
fn journey(manifest: &Manifest, opts: &RunOptions) -> anyhow::Result<Option<ResolvedJourney>> {
    Ok(Journey::resolve(
        opts.journey.as_deref(),
        &opts.journeys_dirs,
        manifest.life_situation.as_deref(),
    )?)
}

fn timeline(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<crate::timeline::Timeline> {
    let (events, _) = bundle.read_events()?;
    let transcript = Transcript::read(&bundle.dir)?;
    let mut timeline = crate::timeline::Timeline::new(
        events,
        crate::timeline::detector_words(&transcript),
        manifest.duration_ns.unwrap_or(0),
    );
    timeline.uncertain = crate::timeline::uncertain_spans(&transcript);
    timeline.signals = signals(bundle, manifest);
    Ok(timeline)
}

/// The sensor channels the detectors read (skin conductance, heart rate),
/// from the streams the manifest lists. A file that does not read is left
/// out with a warning: sensors add evidence, they never stop an analysis.
fn signals(bundle: &Bundle, manifest: &Manifest) -> Vec<crate::timeline::Signal> {
    use lab_model::bundle::sensors::{SampleValues, SensorLine, read_sensor_file};
    let mut out = Vec::new();
    for track in &manifest.sensors {
        let s = &track.stream;
        let wanted: Vec<(usize, crate::timeline::SignalKind)> = s
            .channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                crate::timeline::signal_kind(&s.kind, &c.kind, &c.unit).map(|k| (i, k))
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let lines = match read_sensor_file(&bundle.dir.join(&s.file)) {
            Ok((_, lines)) => lines,
            Err(e) => {
                tracing::warn!("sensor stream {:?} left out: {e}", s.name);
                continue;
            }
        };
        for (channel, kind) in wanted {
            let mut signal = crate::timeline::Signal {
                kind,
                t_ns: Vec::new(),
                v: Vec::new(),
            };
            for line in &lines {
                if let SensorLine::Samples {
                    t_ns,
                    v: SampleValues::Numbers(rows),
                    ..
                } = line
                {
                    for (t, row) in t_ns.iter().zip(rows) {
                        if let Some(Some(x)) = row.get(channel) {
                            signal.t_ns.push(*t);
                            signal.v.push(*x);
                        }
                    }
                }
            }
            out.push(signal);
        }
    }
    out
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
    let Some(found) = journey(manifest, opts)? else {
        // No definition now: no copy of an earlier one either, so the
        // candidates stage and the review app see the same (no) steps.
        match std::fs::remove_file(AnalysisFile::Journey.path(&bundle.dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        empty_steps().write(&bundle.dir)?;
        return Ok(
            "skipped: no journey definition (pass --journey or --journeys, or set the life situation)"
                .into(),
        );
    };
    let journey = &found.journey;
    let tl = timeline(bundle, manifest)?;
    let mut steps = crate::steps::segment(journey, &tl);
    crate::step_arousal::annotate(&mut steps, &tl.signals);
    // The bundle keeps the definition it was cut by, so the review app shows
    // the same steps, titles and expected times.
    write_atomic(
        &AnalysisFile::Journey.path(&bundle.dir),
        found.text.as_bytes(),
    )?;
    steps.write(&bundle.dir)?;
    Ok(format!(
        "ok: {} intervals over {} steps of {:?}",
        steps.intervals.len(),
        journey.steps.len(),
        journey.id
    ))
}

/// The candidates stage reads the journey the steps were cut by (the
/// bundle's copy), never a second lookup that could find another one.
fn stage_candidates(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<String> {
    let steps = StepAnalysis::read(&bundle.dir)?;
    let journey = match std::fs::read(AnalysisFile::Journey.path(&bundle.dir)) {
        Ok(bytes) => Some(Journey::from_bytes(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let empty = Journey {
        format_version: lab_model::journey::JOURNEY_FORMAT_VERSION,
        id: String::new(),
        title: String::new(),
        version: String::new(),
        vocabulary: vec![],
        steps: vec![],
    };
    let candidates = crate::friction::detect_all(
        journey.as_ref().unwrap_or(&empty),
        &timeline(bundle, manifest)?,
        &steps,
        &crate::lexicon::Lexicon::builtin(),
    );
    let n = candidates.len();
    CandidateList {
        format_version: ANALYSIS_FORMAT_VERSION,
        candidates,
    }
    .write(&bundle.dir)?;
    Ok(format!("ok: {n} candidates"))
}

fn stage_qa(bundle: &Bundle, manifest: &Manifest) -> anyhow::Result<String> {
    let transcript = Transcript::read(&bundle.dir)?;
    let renditions = Renditions::read(&bundle.dir)?;
    let (_, torn) = bundle.read_events()?;
    let report = qa::qa_report(manifest, &renditions, transcript.status, torn as u64);
    let n = report.issues.len();
    report.write(&bundle.dir)?;
    Ok(format!("ok: {n} issues noted"))
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
            journeys_dirs: vec![],
            force: vec![],
            transcribe: Options::default(),
            vocabulary_prompt: false,
        };
        let err = journey(&manifest, &opts).unwrap_err().to_string();
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
            journeys_dirs: vec![],
            force: vec![],
            transcribe: Options::default(),
            vocabulary_prompt: false,
        };
        let err = format!("{:#}", run(&dir, &opts, &mut |_| {}).unwrap_err());
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&db).unwrap(), b"SQLite format 3");
        assert!(!lab_model::analysis::AnalysisFile::State.path(&dir).exists());
    }
}
